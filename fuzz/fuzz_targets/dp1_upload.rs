//! A 4.x–6.x client's schema upload: base64 decoded, then checked for what pdp can serve; any body is a
//! The check itself is in `fuzz/checks.rs`, shared with the seed regression test in `make test`.
#![no_main]
#[allow(dead_code)] // Each target calls one check of the shared file.
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::dp1_upload(data));
