//! The test harness: `Project` owns a temp directory and builds `pdp` commands with a clean, isolated
//! environment (own HOME and cache, no colour, none of the developer's PDP_* or DATABASE_URL variables).

use std::path::{Path, PathBuf};

use assert_cmd::Command;

// Replicas behind HAProxy: certificates, the balancer, a replica's environment.
pub mod cluster;
// A loopback HTTP server standing in for Prisma's engine host and the npm registry.
pub mod mirror;
// `pdp serve` running in a test: projects, curl, Deno scripts, signals.
pub mod serve;

/// PostgreSQL on this machine (CI starts it through `cargo xtask test`); override with `PDP_TEST_POSTGRES_URL`.
pub fn postgres_url() -> String {
    std::env::var("PDP_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into())
}

/// MariaDB on this machine; override with `PDP_TEST_MYSQL_URL`.
pub fn mysql_url() -> String {
    std::env::var("PDP_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A port on loopback that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// What a finished command printed.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Everything, for assertion messages.
    pub fn all(&self) -> String {
        format!("exit {}\n--- stdout ---\n{}--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }

    /// Asserts the exit code and that pdp did not panic.
    pub fn expect_code(self, code: i32) -> Outcome {
        assert_eq!(self.code, code, "{}", self.all());
        assert!(!self.stderr.contains("panicked"), "pdp panicked:\n{}", self.all());
        self
    }
}

/// A temp project directory.
pub struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
}

impl Project {
    pub fn new() -> Project {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("project");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&home).expect("mkdir");
        Project { _tmp: tmp, root, home }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn write(&self, rel: &str, contents: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, contents).expect("write");
    }

    /// `pdp` in the project directory with an isolated environment.
    pub fn pdp(&self) -> Command {
        Command::from_std(self.std_pdp())
    }

    /// The same isolated `pdp`, as a plain `std` command (for spawning several at once).
    pub fn std_pdp(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pdp"));
        cmd.current_dir(&self.root);
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("PDP_") || key.starts_with("PRISMA_") || key == "DATABASE_URL" || key.starts_with("XDG_")
            {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", &self.home).env("NO_COLOR", "1").env_remove("CLICOLOR_FORCE");
        cmd
    }

    /// Runs `pdp ARGS` and captures the outcome.
    pub fn run(&self, args: &[&str]) -> Outcome {
        run(self.pdp().args(args))
    }

    /// Runs a prepared command.
    pub fn run_with(&self, cmd: &mut Command) -> Outcome {
        run(cmd)
    }

    /// `pdp init --yes` plus `extra`, which must succeed.
    pub fn init(&self, extra: &[&str]) -> Outcome {
        let mut args = vec!["init", "--yes"];
        args.extend_from_slice(extra);
        self.run(&args).expect_code(0)
    }
}

fn run(cmd: &mut Command) -> Outcome {
    let out = cmd.output().expect("pdp runs");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
