//! The one way pdp runs a child process: a program, a human sentence saying why, an explicit working
//! directory, explicit environment additions, and on failure the child's stderr shown framed.
//!
//! Nothing else in the workspace constructs `std::process::Command` or `duct::cmd` (clippy's
//! `disallowed-methods` enforces it). This module does not print; it returns values and errors.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A command about to run.
#[derive(Clone, Debug)]
pub struct Cmd {
    program: PathBuf,
    args: Vec<OsString>,
    summary: String,
    cwd: PathBuf,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    timeout: Option<Duration>,
}

/// What a finished child printed.
#[derive(Clone, Debug)]
pub struct Output {
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// A child that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started at all.
    #[error("could not {summary}: failed to start `{program}`")]
    Spawn {
        /// The human sentence.
        summary: String,
        /// The program path.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully.
    #[error("could not {summary}: `{command}` {status}\n{}", frame(.stderr))]
    Failed {
        /// The human sentence.
        summary: String,
        /// The command line as run.
        command: String,
        /// "exited with code N" or "was killed by a signal".
        status: String,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The program did not finish in time and was killed.
    #[error("could not {summary}: `{command}` did not finish within {}s and was stopped", .timeout.as_secs_f32())]
    TimedOut {
        /// The human sentence.
        summary: String,
        /// The command line as run.
        command: String,
        /// The limit.
        timeout: Duration,
    },
}

/// Frames a child's stderr between rulers, as ripgrep does, so it reads as quoted material.
pub fn frame(stderr: &str) -> String {
    let body = stderr.trim_end();
    let body = if body.is_empty() { "<stderr is empty>" } else { body };
    let rule = "─".repeat(40);
    format!("{rule} stderr {rule}\n{body}\n{rule}───────{rule}")
}

impl Cmd {
    /// A command for `program`, run for the reason `summary` (completes "could not …"), in `cwd`.
    pub fn new(program: impl Into<PathBuf>, summary: impl Into<String>, cwd: impl AsRef<Path>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            summary: summary.into(),
            cwd: cwd.as_ref().to_path_buf(),
            env: Vec::new(),
            env_remove: Vec::new(),
            timeout: None,
        }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Appends several arguments.
    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets one environment variable for the child (the rest of pdp's environment is inherited).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Removes one inherited environment variable.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.env_remove.push(key.as_ref().to_owned());
        self
    }

    /// Kills the child if it runs longer than `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = Some(timeout);
        self
    }

    /// The human sentence.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    fn expression(&self) -> duct::Expression {
        // duct treats a `Path` program as a path relative to the cwd (`sh` becomes `./sh`); an `OsStr`
        // is looked up on PATH like a shell would, which is what a bare name means.
        #[allow(clippy::disallowed_methods)] // The one approved constructor.
        let mut expr = duct::cmd(self.program.as_os_str(), &self.args)
            .dir(&self.cwd)
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        for k in &self.env_remove {
            expr = expr.env_remove(k);
        }
        expr
    }

    /// Runs to completion and returns its output; a non-zero exit is an error carrying framed stderr.
    pub fn output(&self) -> Result<Output, ProcessError> {
        let handle = self.expression().start().map_err(|source| ProcessError::Spawn {
            summary: self.summary.clone(),
            program: self.program.display().to_string(),
            source,
        })?;
        let out = match self.timeout {
            None => handle.wait().map_err(|source| self.spawn_error(source))?.clone(),
            Some(limit) => {
                let deadline = std::time::Instant::now() + limit;
                loop {
                    if let Some(out) = handle.try_wait().map_err(|source| self.spawn_error(source))? {
                        break out.clone();
                    }
                    if std::time::Instant::now() >= deadline {
                        let _ = handle.kill();
                        return Err(ProcessError::TimedOut {
                            summary: self.summary.clone(),
                            command: self.to_string(),
                            timeout: limit,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        let output = Output {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if out.status.success() {
            Ok(output)
        } else {
            let status = match out.status.code() {
                Some(code) => format!("exited with code {code}"),
                None => "was killed by a signal".to_owned(),
            };
            Err(ProcessError::Failed {
                summary: self.summary.clone(),
                command: self.to_string(),
                status,
                stderr: output.stderr,
            })
        }
    }

    /// Starts a long-running child for a supervisor: stdin, stdout and stderr piped (a launcher that sees
    /// its stdin close knows pdp is gone and exits, so children never outlive pdp even after a SIGKILL),
    /// killed when the handle is dropped. The timeout does not apply; the supervisor owns the lifetime.
    pub fn spawn_supervised(&self) -> Result<tokio::process::Child, ProcessError> {
        #[allow(clippy::disallowed_methods)] // The one approved constructor for long-running children.
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        cmd.spawn().map_err(|source| self.spawn_error(source))
    }

    fn spawn_error(&self, source: std::io::Error) -> ProcessError {
        ProcessError::Spawn { summary: self.summary.clone(), program: self.program.display().to_string(), source }
    }
}

impl fmt::Display for Cmd {
    /// The command line, program then arguments; environment values are never shown (they may be secrets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.display())?;
        for arg in &self.args {
            let arg = arg.to_string_lossy();
            if arg.contains(char::is_whitespace) {
                write!(f, " '{arg}'")?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Cmd {
        Cmd::new("sh", "run a test script", std::env::temp_dir()).arg("-c").arg(script)
    }

    #[test]
    fn success_returns_stdout() {
        let out = sh("echo hello; echo warn >&2").output().expect("sh runs");
        assert_eq!(out.stdout, "hello\n");
        assert_eq!(out.stderr, "warn\n");
    }

    #[test]
    fn failure_frames_stderr_and_names_the_summary() {
        let err = sh("echo 'something broke' >&2; exit 3").output().unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("could not run a test script: `sh -c 'echo"), "{text}");
        assert!(text.contains("exited with code 3"), "{text}");
        assert!(text.contains("stderr ─"), "{text}");
        assert!(text.contains("\nsomething broke\n"), "{text}");
    }

    #[test]
    fn empty_stderr_is_said_explicitly() {
        let text = sh("exit 1").output().unwrap_err().to_string();
        assert!(text.contains("<stderr is empty>"), "{text}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = Cmd::new("/nonexistent/pdp-test-tool", "check a tool", std::env::temp_dir()).output().unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }));
        assert_eq!(err.to_string(), "could not check a tool: failed to start `/nonexistent/pdp-test-tool`");
    }

    #[test]
    fn env_and_cwd_are_explicit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Cmd::new("sh", "print env", dir.path())
            .args(["-c", "echo $PDP_TEST_VALUE; pwd"])
            .env("PDP_TEST_VALUE", "42")
            .output()
            .expect("sh runs");
        let canonical = fs_err::canonicalize(dir.path()).expect("canonical");
        assert_eq!(out.stdout, format!("42\n{}\n", canonical.display()));
    }

    #[test]
    fn timeout_kills() {
        let err = sh("sleep 5").timeout(Duration::from_millis(100)).output().unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
    }
}
