//! `.env`: any file is variables or one error naming the entry (its value never shown), never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("tempdir");
    }
    DIR.with(|dir| {
        let path = dir.path().join(".env");
        std::fs::write(&path, data).expect("write");
        if let Err(e) = pdp_config::env::ProcessEnv::with_dotenv(&path) {
            let _ = e.to_string();
            let _ = e.hint();
        }
    });
});
