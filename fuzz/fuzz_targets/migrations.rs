//! The migrations reader: any migration.sql (BOM, CRLF, invalid UTF-8) is read or refused with its name,
//! a script matches its checksum whatever its line endings, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().expect("tempdir");
    }
    DIR.with(|dir| {
        let m = dir.path().join("migrations");
        let one = m.join("20240101000000_fuzz");
        std::fs::create_dir_all(&one).expect("mkdir");
        std::fs::write(one.join("migration.sql"), data).expect("write");
        std::fs::write(m.join("migration_lock.toml"), "provider = \"postgresql\"\n").expect("write");
        if let Ok(read) = pdp_migrate::source::read(&m) {
            let _ = format!("{read:?}");
        }
        // Prisma's comparison: a script edited only in its line endings still matches its recorded checksum.
        if let Ok(text) = std::str::from_utf8(data)
            && !text.contains('\r')
        {
            let crlf = text.replace('\n', "\r\n");
            let (lf_sum, crlf_sum) = (pdp_migrate::source::checksum(text), pdp_migrate::source::checksum(&crlf));
            assert!(pdp_migrate::source::script_matches(&crlf, &lf_sum), "CRLF against the LF checksum");
            assert!(pdp_migrate::source::script_matches(text, &crlf_sum), "LF against the CRLF checksum");
        }
    });
});
