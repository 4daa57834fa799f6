//! One module per command; each orchestrates library calls and reports through the printer.

pub mod build_client;
pub mod config;
pub mod doctor;
pub mod engines;
pub mod init;
pub mod keys;
pub mod migrate;
pub mod schema;
pub mod serve;
pub mod status;

use std::path::Path;

use pdp_config::env::ProcessEnv;

/// Finds and resolves the project's configuration the way every command that needs one does:
/// `--config`/`PDP_CONFIG` or the nearest `pdp.toml` upwards, with `.env` next to it under the environment.
/// Returns that environment too, so a command reads `.env` once.
pub fn load_config(
    config_flag: Option<&Path>,
    cwd: &Path,
    overrides: &pdp_config::Overrides,
) -> anyhow::Result<(pdp_config::Config, ProcessEnv)> {
    let file = match config_flag {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => cwd.join(p),
        None => pdp_config::discover(cwd)?,
    };
    let root = file.parent().unwrap_or(cwd);
    let env = ProcessEnv::with_dotenv(&root.join(".env"))?;
    // The error names the file, line and key itself; no extra context needed.
    let config = pdp_config::load(&file, &env, overrides)?;
    Ok((config, env))
}

/// `node` and npm as pdp runs them for npm-provisioned helpers (executors, the embedded database): the
/// project's `node_modules/.bin` first, then PATH; the configured registry (`PDP_NPM_REGISTRY`) when set.
/// Either may be missing;
/// the helper that needs it says so.
pub fn node_and_npm(
    config: &pdp_config::Config,
    env: &ProcessEnv,
) -> (Option<std::path::PathBuf>, Option<pdp_toolchain::npm::Npm>) {
    use pdp_config::env::Env as _;
    let path_var = env.var("PATH").map(std::ffi::OsString::from);
    let node = pdp_toolchain::tools::locate(pdp_toolchain::tools::Tool::Node, &config.root, path_var.as_ref());
    let npm =
        pdp_toolchain::tools::locate(pdp_toolchain::tools::Tool::Npm, &config.root, path_var.as_ref()).map(|program| {
            pdp_toolchain::npm::Npm {
                program,
                registry: config.network.npm_registry.as_ref().map(url::Url::to_string),
                timeout: pdp_toolchain::npm::INSTALL_TIMEOUT,
            }
        });
    (node, npm)
}

/// How `pdp serve` and `pdp migrate` start the embedded database: under the project's state dir, its
/// socket directory in the temporary directory, `node` as found (PATH's when none was).
pub fn embedded_options(
    config: &pdp_config::Config,
    node: Option<std::path::PathBuf>,
) -> pdp_toolchain::embedded::Options {
    pdp_toolchain::embedded::Options {
        state_dir: config.state_dir.clone(),
        cache_root: config.engines.cache.clone(),
        node: node.unwrap_or_else(|| "node".into()),
        start_timeout: std::time::Duration::from_secs(120),
        socket_parent: config.temp_dir.clone(),
    }
}
