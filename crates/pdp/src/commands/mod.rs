//! One module per command; each orchestrates library calls and reports through the printer.

pub mod build_client;
pub mod config;
pub mod doctor;
pub mod engines;
pub mod init;
pub mod keys;
pub mod migrate;

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
