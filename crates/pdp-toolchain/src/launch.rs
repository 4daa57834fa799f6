//! Starting a long-running helper (an executor, an engine, the embedded database) and waiting for the one
//! line that says where it listens. Shared by `pdp serve`'s supervisor and the embedded database.
//!
//! Deliberately not here: restarts, backoff and log forwarding after start (the supervisor owns those);
//! this module only gets a child from "spawned" to "serving on this address" or to an error that shows
//! what the child printed.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use crate::process::{Cmd, ProcessError, frame};

/// How many of a child's last output lines an error shows.
const TAIL: usize = 40;

/// Where a ready child listens: a Unix socket in pdp's private directory (every child of pdp's own), or
/// a loopback TCP port (Prisma's native query engines, which cannot listen on anything else).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ChildAddr {
    /// A Unix domain socket.
    Unix(Arc<Path>),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl fmt::Display for ChildAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChildAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            ChildAddr::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// A child that reported its address.
#[derive(Debug)]
pub struct Launched {
    /// The process (killed when dropped).
    pub child: Child,
    /// Where it listens.
    pub addr: ChildAddr,
    /// Its stdin: dropping it asks pdp's launchers to exit.
    pub stdin: Option<ChildStdin>,
    /// The rest of its stdout.
    pub stdout: Lines<BufReader<ChildStdout>>,
    /// The rest of its stderr.
    pub stderr: Lines<BufReader<ChildStderr>>,
}

/// A child that did not get to serving.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// It could not be spawned.
    #[error(transparent)]
    Spawn(#[from] ProcessError),
    /// It exited before reporting an address.
    #[error("could not {summary}: it exited ({status}) before it was ready\n{}", frame(.output))]
    Exited {
        /// The command's sentence.
        summary: String,
        /// How it exited.
        status: String,
        /// Its last output lines (stdout and stderr interleaved).
        output: String,
    },
    /// It did not report an address in time.
    #[error("could not {summary}: not ready within {}s\n{}", .timeout.as_secs(), frame(.output))]
    TimedOut {
        /// The command's sentence.
        summary: String,
        /// The limit.
        timeout: Duration,
        /// Its last output lines.
        output: String,
    },
}

impl LaunchError {
    /// What the child printed before failing, if anything.
    pub fn output(&self) -> &str {
        match self {
            LaunchError::Spawn(_) => "",
            LaunchError::Exited { output, .. } | LaunchError::TimedOut { output, .. } => output,
        }
    }
}

/// Reads pdp's launchers' ready line: `{"pdp_ready":{"path":"/run/dir/x.sock"}}` (or, for a child on
/// TCP, `{"pdp_ready":{"host":"127.0.0.1","port":N}}`).
pub fn pdp_ready(line: &str) -> Option<ChildAddr> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let ready = value.get("pdp_ready")?;
    if let Some(path) = ready.get("path").and_then(|p| p.as_str()) {
        return Some(ChildAddr::Unix(Arc::from(PathBuf::from(path).as_path())));
    }
    let host = ready.get("host")?.as_str()?;
    let port = u16::try_from(ready.get("port")?.as_u64()?).ok()?;
    format!("{host}:{port}").parse().ok().map(ChildAddr::Tcp)
}

/// Spawns `cmd` and waits up to `timeout` for a stdout or stderr line that `ready` turns into an address.
/// Lines before that are passed to `seen` (for logging) and kept for the error.
pub async fn launch(
    cmd: &Cmd,
    ready: impl Fn(&str) -> Option<ChildAddr>,
    timeout: Duration,
    mut seen: impl FnMut(&str),
) -> Result<Launched, LaunchError> {
    let mut child = cmd.spawn_supervised()?;
    let stdin = child.stdin.take();
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        unreachable!("spawn_supervised pipes stdout and stderr")
    };
    let mut stdout = BufReader::new(out).lines();
    let mut stderr = BufReader::new(err).lines();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut keep = |line: String, tail: &mut VecDeque<String>| {
        seen(&line);
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut out_open, mut err_open) = (true, true);
    loop {
        tokio::select! {
            line = stdout.next_line(), if out_open => match line {
                Ok(Some(line)) => {
                    if let Some(addr) = ready(&line) {
                        return Ok(Launched { child, addr, stdin, stdout, stderr });
                    }
                    keep(line, &mut tail);
                }
                _ => out_open = false,
            },
            line = stderr.next_line(), if err_open => match line {
                Ok(Some(line)) => {
                    if let Some(addr) = ready(&line) {
                        return Ok(Launched { child, addr, stdin, stdout, stderr });
                    }
                    keep(line, &mut tail);
                }
                _ => err_open = false,
            },
            status = child.wait(), if !out_open && !err_open => {
                let status = match status.ok().and_then(|s| s.code()) {
                    Some(code) => format!("exit code {code}"),
                    None => "killed by a signal".to_owned(),
                };
                return Err(LaunchError::Exited { summary: cmd.summary().to_owned(), status, output: join(&tail) });
            }
            () = tokio::time::sleep_until(deadline) => {
                let _ = child.start_kill();
                return Err(LaunchError::TimedOut { summary: cmd.summary().to_owned(), timeout, output: join(&tail) });
            }
        }
    }
}

fn join(tail: &VecDeque<String>) -> String {
    tail.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
}

/// Asks a launched child to stop: closes its stdin, sends SIGTERM, and kills it after `grace`.
pub async fn stop(child: &mut Child, stdin: Option<ChildStdin>, grace: Duration) {
    drop(stdin);
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_is_parsed_and_other_lines_are_not() {
        assert_eq!(
            pdp_ready(r#"{"pdp_ready":{"host":"127.0.0.1","port":4567}}"#),
            Some(ChildAddr::Tcp("127.0.0.1:4567".parse().unwrap()))
        );
        assert_eq!(
            pdp_ready(r#"{"pdp_ready":{"path":"/tmp/pdp-x/a.sock"}}"#),
            Some(ChildAddr::Unix(Arc::from(Path::new("/tmp/pdp-x/a.sock"))))
        );
        assert_eq!(pdp_ready(r#"{"level":"info","message":"hi"}"#), None);
        assert_eq!(pdp_ready("listening on 4567"), None);
        assert_eq!(pdp_ready(r#"{"pdp_ready":{"host":"127.0.0.1","port":70000}}"#), None);
    }
}
