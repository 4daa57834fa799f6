//! The command line itself: help and version read well and exit 0; a bad flag is a user error.

use crate::support::Project;

#[test]
fn version_prints_the_version() {
    let out = Project::new().run(&["--version"]).expect_code(0);
    assert_eq!(out.stdout.trim(), format!("pdp {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let out = Project::new().run(&["--help"]).expect_code(0);
    for cmd in ["init", "doctor", "config"] {
        assert!(out.stdout.contains(&format!("\n  {cmd} ")), "missing {cmd}:\n{}", out.stdout);
    }
    assert!(out.stdout.contains("2 user error"), "{}", out.stdout);
}

#[test]
fn every_subcommand_has_help() {
    let p = Project::new();
    for cmd in ["init", "doctor", "config"] {
        let out = p.run(&[cmd, "--help"]).expect_code(0);
        assert!(out.stdout.starts_with(char::is_uppercase), "{cmd} help should open with a sentence:\n{}", out.stdout);
        assert!(out.stdout.contains("Usage: pdp "), "{}", out.stdout);
    }
    let init = p.run(&["init", "--help"]).expect_code(0);
    for flag in ["--yes", "--force", "--check", "--prisma", "--provider", "--database-url"] {
        assert!(init.stdout.contains(flag), "init help lacks {flag}");
    }
}

#[test]
fn unknown_flag_is_a_user_error() {
    let out = Project::new().run(&["init", "--frobnicate"]).expect_code(2);
    assert!(out.stderr.contains("--frobnicate"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

/// The README's command table and exit codes stay true to the binary.
#[test]
fn readme_lists_every_command_and_exit_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
    let help = Project::new().run(&["--help"]).expect_code(0).stdout;
    let commands: Vec<&str> = help
        .split("Commands:")
        .nth(1)
        .expect("commands section")
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line is indented two spaces; wrapped description lines are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 3, "{help}");
    for c in commands {
        assert!(readme.contains(&format!("| `pdp {c}")), "README's command table lacks `pdp {c}`");
    }
    for code in ["| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 130 |"] {
        assert!(readme.contains(code), "README's exit codes lack {code}");
    }
}

#[test]
fn keys_new_prints_the_key_on_stdout_and_its_hash_for_pdp_toml() {
    let p = Project::new();
    let out = p.run(&["keys", "new"]).expect_code(0);
    let key = out.stdout.trim();
    assert!(key.starts_with("pdp_") && key.len() == 68, "{}", out.all());
    let line = out.stderr.lines().find(|l| l.contains("\"sha256:")).expect("a sha256 line on stderr");
    let hash = line.trim().split('"').nth(1).expect("quoted");
    // The same hash comes back from `keys hash`, and pdp.toml accepts it.
    let again = p.run_with(p.pdp().args(["keys", "hash"]).write_stdin(format!("{key}\n"))).expect_code(0);
    assert_eq!(again.stdout.trim(), hash);
    p.write("pdp.toml", &format!("[prisma]\nversion = \"7.10.0\"\n[serve]\napi-keys = [\"{hash}\"]\n"));
    let config = p.run(&["config", "--json"]).expect_code(0);
    assert!(config.stdout.contains(hash), "{}", config.all());
    let empty = p.run_with(p.pdp().args(["keys", "hash"]).write_stdin("")).expect_code(2);
    assert!(empty.stderr.contains("no key on standard input"), "{}", empty.all());
}
