//! Replicas behind HAProxy for the tests: a test CA and certificate, HAProxy (Debian's package) in HTTP mode
//! with a production balancer's settings for dead backends, and a replica started with the cluster's
//! environment.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::Project;
use super::serve::{Serving, poll};

/// The cluster secret every test replica shares.
pub const SECRET: &str = "cluster-secret-for-tests-0123456789abcdef";

/// HAProxy in the foreground, its log collected.
pub struct Balancer {
    child: Child,
    /// What HAProxy logged.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a localhost certificate it signed (HAProxy's PEM holds the certificate and key together).
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    std::fs::write(dir.join("leaf.ext"), "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n").expect("ext");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=pdp test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);
    let combined = format!(
        "{}{}",
        std::fs::read_to_string(dir.join("leaf.pem")).expect("leaf"),
        std::fs::read_to_string(dir.join("leaf.key")).expect("key")
    );
    std::fs::write(dir.join("haproxy.pem"), combined).expect("pem");
    (dir.join("ca.pem"), dir.join("haproxy.pem"))
}

/// How HAProxy balances.
pub enum Mode<'a> {
    /// HTTP mode, TLS ended at the balancer with this PEM, round-robin per request, with this `retry-on`.
    Http { pem: &'a Path, retry_on: &'a str },
    /// TCP mode, TLS passed through to pdp (as deploy/haproxy.cfg): a client connection is one replica's.
    Tcp,
}

/// Starts HAProxy on `port` in front of `backends` and waits until it accepts.
pub fn balancer(dir: &Path, port: u16, mode: Mode<'_>, backends: &[u16]) -> Balancer {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server r{i} 127.0.0.1:{p} check inter 300ms fall 2 rise 2\n"))
        .collect();
    let config = match mode {
        Mode::Http { pem, retry_on } => format!(
            "global\n  log stderr format raw local0 info\n\n\
             defaults\n  mode http\n  log global\n  option httplog\n  timeout connect 2s\n  timeout client 90s\n  timeout server 90s\n\
             \x20 option redispatch\n  retries 3\n  retry-on {retry_on}\n\n\
             frontend clients\n  bind 127.0.0.1:{port} ssl crt {pem} alpn http/1.1\n  default_backend replicas\n\n\
             backend replicas\n  balance roundrobin\n  option httpchk GET /ready\n  http-reuse safe\n{servers}",
            pem = pem.display()
        ),
        Mode::Tcp => format!(
            "global\n  log stderr format raw local0 info\n\n\
             defaults\n  mode tcp\n  log global\n  option tcplog\n  timeout connect 2s\n  timeout client 90s\n  timeout server 90s\n\n\
             frontend clients\n  bind 127.0.0.1:{port}\n  default_backend replicas\n\n\
             backend replicas\n  balance roundrobin\n{servers}"
        ),
    };
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).expect("haproxy.cfg");
    let check = Command::new("haproxy").args(["-c", "-f"]).arg(&path).output().expect(
        "haproxy is installed (`cargo xtask test` installs Debian's package; by hand: apt-get install haproxy)",
    );
    assert!(check.status.success(), "haproxy -c: {}", String::from_utf8_lossy(&check.stderr));
    let mut child =
        Command::new("haproxy").args(["-db", "-f"]).arg(&path).stderr(Stdio::piped()).spawn().expect("haproxy starts");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().expect("log");
            log.push_str(&line);
            log.push('\n');
        }
    });
    poll(Duration::from_secs(10), "HAProxy accepting", || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    Balancer { child, log }
}

/// One replica: the project's pdp.toml, its own cluster address, every replica as a peer.
pub fn replica(p: &Project, cluster_port: u16, peers: &str, public: &str) -> Serving {
    Serving::start(
        p,
        &[
            ("PDP_CLUSTER_SECRET", SECRET),
            ("PDP_CLUSTER_ADVERTISE", &format!("127.0.0.1:{cluster_port}")),
            ("PDP_CLUSTER_PEERS", peers),
            ("PDP_PUBLIC_URL", public),
        ],
    )
}
