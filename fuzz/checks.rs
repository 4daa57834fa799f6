//! What each fuzz target checks, on one input's raw bytes: decoded as the target's typed input the way
//! libFuzzer's `fuzz_target!` decodes it (`arbitrary`), then parsed by pdp's own code, which must not
//! panic (and, where a target says so, must keep a property). The fuzz targets (`fuzz_targets/*.rs`)
//! call these; the e2e test `fuzz_seeds` runs them over every seed and every finding kept in
//! `fuzz/seeds`, so a crash found once stays a regression test in `make test`.
//!
//! Deliberately not here: the fuzzing engine, corpora, time limits (`cargo xtask fuzz`), the HTTP
//! fuzzer (it needs a running server: `cargo xtask fuzz` runs it).

use arbitrary::{Arbitrary, Unstructured};

/// One target's check of one input.
pub type Check = fn(&[u8]);

/// Every target: its name (the folder of its seeds) and its check.
pub const TARGETS: [(&str, Check); 9] = [
    ("config_toml", config_toml),
    ("dotenv", dotenv),
    ("routes", routes),
    ("dp1_upload", dp1_upload),
    ("schema_scan", schema_scan),
    ("schema_patch", schema_patch),
    ("migrations", migrations),
    ("metrics_relabel", metrics_relabel),
    ("cache_headers", cache_headers),
];

/// `data` as `T`, as `fuzz_target!(|input: T| …)` takes it; `None` where libFuzzer would skip it.
fn decode<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

struct NoEnv;
impl pdp_config::env::Env for NoEnv {
    fn var(&self, name: &str) -> Option<String> {
        // A few variables the file may reference, so `env:` entries resolve both ways.
        matches!(name, "DATABASE_URL" | "PDP_API_KEY").then(|| "postgresql://u:p@h/db".to_owned())
    }
}

/// pdp.toml: any text is a configuration or a list of problems.
pub fn config_toml(data: &[u8]) {
    let Some(text) = decode::<&str>(data) else { return };
    let _ =
        pdp_config::from_str(text, std::path::Path::new("/fuzz/pdp.toml"), &NoEnv, &pdp_config::Overrides::default());
}

/// `.env`: any file is variables or one error naming the entry (its value never shown).
pub fn dotenv(data: &[u8]) {
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
}

/// The route parsers of both protocols: any method and path is a route or none.
pub fn routes(data: &[u8]) {
    let Some((m, path)) = decode::<(u8, &str)>(data) else { return };
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
}

/// A 4.x–6.x client's schema upload: base64 decoded, then checked for what pdp can serve.
pub fn dp1_upload(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // As uploaded (base64) and as the decoded text itself.
    if let Some(decoded) = pdp_serve::engine::base64_decode(text.trim()).and_then(|b| String::from_utf8(b).ok()) {
        let _ = pdp_serve::engine::check_schema(&decoded, pdp_config::Provider::Postgresql);
    }
    for provider in [pdp_config::Provider::Postgresql, pdp_config::Provider::Mysql, pdp_config::Provider::Sqlite] {
        let _ = pdp_serve::engine::check_schema(&text, provider);
    }
}

/// The schema scanner: any text is blocks and fields or a scan error.
pub fn schema_scan(data: &[u8]) {
    let Some(text) = decode::<&str>(data) else { return };
    if let Ok(schema) = pdp_schema::scan(text) {
        if let Some(ds) = schema.datasource() {
            let _ = ds.string("provider");
            let _ = ds.string("url");
        }
        let _ = format!("{schema:?}");
    }
}

/// The schema patcher `pdp build-client` runs: any schema is patched or refused.
pub fn schema_patch(data: &[u8]) {
    let Some(text) = decode::<&str>(data) else { return };
    for generator in
        [pdp_config::prisma::ClientGenerator::JsDenoPreview, pdp_config::prisma::ClientGenerator::PrismaClientDeno]
    {
        let patch = pdp_client::schema::Patch { generator, output: "./generated" };
        let _ = pdp_client::schema::patch(text, std::path::Path::new("/fuzz/schema.prisma"), &patch);
    }
}

/// The migrations reader: any migration.sql (BOM, CRLF, invalid UTF-8) is read or refused with its name,
/// and a script matches its checksum whatever its line endings.
pub fn migrations(data: &[u8]) {
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
}

/// The engines' metrics relabelled into pdp's /metrics: any text and label, and every sample line carries
/// the label.
pub fn metrics_relabel(data: &[u8]) {
    let Some((text, label)) = decode::<(&str, &str)>(data) else { return };
    let mut seen = std::collections::HashSet::new();
    let out = pdp_serve::engine_metrics::relabel(text, label, &mut seen);
    for line in out.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        assert!(line.contains("engine=\""), "a sample without the engine label: {line:?}");
    }
}

/// What the Accelerate extension sends: `cache-control` and `accelerate-cache-tags` become a strategy or
/// a clear refusal; a request body is a read or not.
pub fn cache_headers(data: &[u8]) {
    let Some((control, tags, body)) = decode::<(&[u8], &[u8], &[u8])>(data) else { return };
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
}
