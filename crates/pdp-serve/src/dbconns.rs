//! How many database connections each child holds, counted from Linux's `/proc`: a child's socket inodes
//! (`/proc/<pid>/fd`) matched against the kernel's socket tables (`net/tcp`, `net/tcp6`, `net/unix`).
//! Children listen only on Unix sockets, which pdp connects to, so a child's established TCP sockets to the
//! database's port are its database connections; over a Unix socket (the embedded database, a server's
//! socket directory), its connected sockets that it did not accept (the kernel names accepted ones after
//! their listener, outgoing ones after nothing).
//!
//! Deliberately not here: asking the database (`pg_stat_activity` sees every replica's clients and cannot
//! tell them apart). Elsewhere than Linux, and for SQLite, there is nothing to count: `None`.

use std::collections::HashSet;
use std::path::Path;

use pdp_config::{DatabaseUrl, Provider};

/// Where the children's database connections go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A server's TCP port.
    Tcp(u16),
    /// A server's Unix socket.
    Unix,
}

/// The target of `db`'s connections, if it is a server.
pub fn target(db: &DatabaseUrl) -> Option<Target> {
    let default_port = match db.provider() {
        Provider::Postgresql => 5432,
        Provider::Mysql => 3306,
        Provider::Sqlserver => 1433,
        Provider::Mongodb => 27017,
        Provider::Sqlite => return None,
    };
    let url = url::Url::parse(db.expose()).ok()?;
    let socket = url.query_pairs().any(|(k, v)| (k == "host" || k == "socket") && v.starts_with('/'));
    if socket || url.host_str().is_some_and(|h| h.starts_with("%2F") || h.is_empty()) {
        return Some(Target::Unix);
    }
    Some(Target::Tcp(url.port().unwrap_or(default_port)))
}

/// The database connections of each of `pids` (in their order); `None` where nothing can be counted.
pub fn count(pids: &[u32], target: Option<Target>) -> Vec<Option<usize>> {
    let Some(target) = target.filter(|_| Path::new("/proc/self/net/unix").exists()) else {
        return vec![None; pids.len()];
    };
    let theirs = match target {
        Target::Tcp(port) => {
            let mut all = tcp_to(&read("/proc/self/net/tcp"), port);
            all.extend(tcp_to(&read("/proc/self/net/tcp6"), port));
            all
        }
        Target::Unix => unix_outgoing(&read("/proc/self/net/unix")),
    };
    pids.iter().map(|pid| socket_inodes(*pid).map(|mine| mine.intersection(&theirs).count())).collect()
}

fn read(path: &str) -> String {
    fs_err::read_to_string(path).unwrap_or_default()
}

/// The socket inodes a process has open, or `None` when it cannot be read (gone, not Linux).
fn socket_inodes(pid: u32) -> Option<HashSet<u64>> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(
        dir.filter_map(Result::ok)
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
            .collect(),
    )
}

/// Inodes of established TCP sockets whose remote port is `port` (a `/proc/net/tcp` table).
fn tcp_to(table: &str, port: u16) -> HashSet<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote = f.get(2)?;
            let remote_port = u16::from_str_radix(remote.rsplit(':').next()?, 16).ok()?;
            // 01: ESTABLISHED.
            (remote_port == port && *f.get(3)? == "01").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// Inodes of connected stream sockets with no path: connections a process made, not ones it accepted.
fn unix_outgoing(table: &str) -> HashSet<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Type 0001: stream; state 03: connected; no eighth field: no path.
            (f.len() == 7 && f[4] == "0001" && f[5] == "03").then(|| f[6].parse().ok())?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_read_as_the_kernel_writes_them() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:9C40 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 20 4 30 10 -1\n   1: 0100007F:9C41 0100007F:1538 06 00000000:00000000 00:00000000 00000000     0        0 4243 1\n   2: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4244 1\n";
        assert_eq!(tcp_to(tcp, 5432), HashSet::from([4242]));
        assert!(tcp_to(tcp, 3306).is_empty());
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n0000000043345738: 00000003 00000000 00000000 0001 03 13507\n0000000028367583: 00000002 00000000 00010000 0001 01 13506 /tmp/t.sock\n00000000bbab5477: 00000003 00000000 00000000 0001 03 13508 /tmp/t.sock\n0000000011111111: 00000002 00000000 00000000 0002 01 13509\n";
        assert_eq!(unix_outgoing(unix), HashSet::from([13507]));
    }

    #[test]
    fn targets_from_urls() {
        let url = |u: &str| DatabaseUrl::parse(u, "test").unwrap();
        assert_eq!(target(&url("postgresql://u@127.0.0.1:5433/db")), Some(Target::Tcp(5433)));
        assert_eq!(target(&url("postgresql://u@db/x")), Some(Target::Tcp(5432)));
        assert_eq!(target(&url("mysql://root@localhost/test")), Some(Target::Tcp(3306)));
        assert_eq!(target(&url("postgresql://postgres@localhost:5432/postgres?host=/tmp/pdp-x")), Some(Target::Unix));
        assert_eq!(target(&url("file:./dev.db")), None);
    }

    #[test]
    fn a_connection_this_process_makes_is_counted() {
        // A real socket pair on loopback: this test process holds the client end.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let before = count(&[std::process::id()], Some(Target::Tcp(port)))[0].unwrap();
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _accepted = listener.accept().unwrap();
        let after = count(&[std::process::id()], Some(Target::Tcp(port)))[0].unwrap();
        assert_eq!((before, after), (0, 1));
        assert_eq!(count(&[std::process::id()], None), vec![None]);
    }
}
