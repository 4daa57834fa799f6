//! Makes sure the databases the tests talk to are running: PostgreSQL on 127.0.0.1:5432 and MariaDB on
//! 127.0.0.1:3306, started with this machine kind's own commands when they are down. Tests never skip a
//! missing service; this is what keeps a fresh machine green.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

struct Service {
    name: &'static str,
    addr: &'static str,
    /// Set to use a server elsewhere instead (then nothing is started).
    url_var: &'static str,
    start: &'static str,
}

const SERVICES: &[Service] = &[
    Service {
        name: "PostgreSQL",
        addr: "127.0.0.1:5432",
        url_var: "PDP_TEST_POSTGRES_URL",
        start: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | sort -V | tail -n1) main start",
    },
    Service {
        name: "MariaDB",
        addr: "127.0.0.1:3306",
        url_var: "PDP_TEST_MYSQL_URL",
        start: "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
    },
];

fn up(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().expect("static address");
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// Starts whatever is down and waits for it.
pub fn ensure() -> anyhow::Result<()> {
    for s in SERVICES {
        if std::env::var_os(s.url_var).is_some() {
            eprintln!("{}: using {} from the environment", s.name, s.url_var);
            continue;
        }
        if up(s.addr) {
            eprintln!("{}: up at {}", s.name, s.addr);
            continue;
        }
        eprintln!("{}: not answering at {}; starting it with `{}`", s.name, s.addr, s.start);
        let status =
            Command::new("sh").args(["-c", s.start]).status().with_context(|| format!("cannot start {}", s.name))?;
        if !status.success() {
            bail!(
                "could not start {} ({status}); the tests need it at {}, or set {} to a server elsewhere",
                s.name,
                s.addr,
                s.url_var
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !up(s.addr) {
            if Instant::now() > deadline {
                bail!("{} did not come up at {} within 60s", s.name, s.addr);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!("{}: up at {}", s.name, s.addr);
    }
    Ok(())
}
