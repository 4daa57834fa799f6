//! pdp.toml: any text is a configuration or a list of problems, never a panic.
//! The check itself is in `fuzz/checks.rs`, shared with the seed regression test in `make test`.
#![no_main]
#[allow(dead_code)] // Each target calls one check of the shared file.
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config_toml(data));
