//! What the Accelerate extension sends: `cache-control` and `accelerate-cache-tags` become a strategy or
//! a clear refusal; a request body is a read or not; never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&[u8], &[u8], &[u8])| {
    let (control, tags, body) = input;
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_bytes(control) {
        headers.insert(http::header::CACHE_CONTROL, v);
    }
    if let Ok(v) = http::HeaderValue::from_bytes(tags) {
        headers.insert("accelerate-cache-tags", v);
    }
    let _ = pdp_serve::kit::cache::asked(&headers);
    if let Ok(t) = std::str::from_utf8(tags) {
        let _ = pdp_serve::kit::cache::check_tags(t.split(','));
    }
    for protocol in [pdp_serve::engine::Protocol::Json, pdp_serve::engine::Protocol::GraphQl] {
        let _ = pdp_serve::dp1::is_read(body, protocol);
    }
});
