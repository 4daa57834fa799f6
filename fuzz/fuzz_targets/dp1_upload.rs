//! A 4.x–6.x client's schema upload: base64 decoded, then checked for what pdp can serve; any body is a
//! schema or a refusal, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // As uploaded (base64) and as the decoded text itself.
    if let Some(decoded) = pdp_serve::engine::base64_decode(text.trim()).and_then(|b| String::from_utf8(b).ok()) {
        let _ = pdp_serve::engine::check_schema(&decoded, pdp_config::Provider::Postgresql);
    }
    for provider in [pdp_config::Provider::Postgresql, pdp_config::Provider::Mysql, pdp_config::Provider::Sqlite] {
        let _ = pdp_serve::engine::check_schema(&text, provider);
    }
});
