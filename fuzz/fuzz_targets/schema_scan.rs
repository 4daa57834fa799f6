//! The schema scanner: any text is blocks and fields or a scan error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(schema) = pdp_schema::scan(text) {
        if let Some(ds) = schema.datasource() {
            let _ = ds.string("provider");
            let _ = ds.string("url");
        }
        let _ = format!("{schema:?}");
    }
});
