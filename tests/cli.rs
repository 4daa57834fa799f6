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
