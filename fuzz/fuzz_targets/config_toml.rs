//! pdp.toml: any text is a configuration or a list of problems, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

struct NoEnv;
impl pdp_config::env::Env for NoEnv {
    fn var(&self, name: &str) -> Option<String> {
        // A few variables the file may reference, so `env:` entries resolve both ways.
        matches!(name, "DATABASE_URL" | "PDP_API_KEY").then(|| "postgresql://u:p@h/db".to_owned())
    }
}

fuzz_target!(|text: &str| {
    let _ =
        pdp_config::from_str(text, std::path::Path::new("/fuzz/pdp.toml"), &NoEnv, &pdp_config::Overrides::default());
});
