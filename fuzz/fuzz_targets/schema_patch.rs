//! The schema patcher `pdp build-client` runs: any schema is patched or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pdp_config::prisma::ClientGenerator;

fuzz_target!(|text: &str| {
    for generator in [ClientGenerator::JsDenoPreview, ClientGenerator::PrismaClientDeno] {
        let patch = pdp_client::schema::Patch { generator, output: "./generated" };
        let _ = pdp_client::schema::patch(text, std::path::Path::new("/fuzz/schema.prisma"), &patch);
    }
});
