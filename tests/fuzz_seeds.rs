//! Every fuzz target's check (`fuzz/checks.rs`, the code `cargo xtask fuzz` runs under libFuzzer) over
//! every seed and kept finding in `fuzz/seeds/<target>` and, for the migrations reader, the migrations
//! `pdp init` writes (as `cargo xtask fuzz` seeds it): what fuzzing once found stays a regression test
//! in `make test`, on the stable toolchain.

use std::path::{Path, PathBuf};

#[allow(dead_code)] // The fuzz targets call the checks one by one; this test calls them through TARGETS.
#[path = "../fuzz/checks.rs"]
mod checks;

/// The files under `dir`, recursively (libFuzzer reads corpus folders so).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn every_fuzz_seed_and_kept_finding_passes_its_targets_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut failed = Vec::new();
    for (target, check) in checks::TARGETS {
        let mut inputs = Vec::new();
        files(&root.join("fuzz/seeds").join(target), &mut inputs);
        if target == "migrations" {
            files(&root.join("templates/prisma/migrations"), &mut inputs);
        }
        assert!(!inputs.is_empty(), "fuzz/seeds/{target} has no seed");
        for input in &inputs {
            let data = std::fs::read(input).expect("read a seed");
            if std::panic::catch_unwind(|| check(&data)).is_err() {
                failed.push(format!("{target}: {}", input.display()));
            }
        }
    }
    // The seed folders and the targets are the same set: a target without seeds, or seeds of a target
    // that no longer exists, is a mistake.
    let mut folders: Vec<String> = std::fs::read_dir(root.join("fuzz/seeds"))
        .expect("fuzz/seeds")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut targets: Vec<&str> = checks::TARGETS.iter().map(|(t, _)| *t).collect();
    targets.sort_unstable();
    assert_eq!(folders, targets, "fuzz/seeds has one folder per target");
    assert!(failed.is_empty(), "inputs that fail their target's check (the panics above say why): {failed:#?}");
}
