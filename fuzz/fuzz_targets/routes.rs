//! The route parsers of both protocols: any method and path is a route or none, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u8, &str)| {
    let (m, path) = input;
    let method = match m % 4 {
        0 => http::Method::GET,
        1 => http::Method::POST,
        2 => http::Method::PUT,
        _ => http::Method::DELETE,
    };
    if let Some(route) = pdp_serve::dp1::Route::parse(&method, path) {
        let _ = (route.name(), route.role().id());
    }
    if let Some(route) = pdp_serve::qpe::Route::parse(&method, path) {
        let _ = (route.name(), route.role().id());
    }
});
