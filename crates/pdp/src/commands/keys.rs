//! `pdp keys new | hash`: makes API keys for `pdp serve` and the `sha256:` form pdp.toml stores, so a
//! plain key never has to be written into a file. The key goes to stdout (data); guidance to stderr.

use std::io::Read as _;

use sha2::{Digest, Sha256};

use crate::cli::{KeysArgs, KeysCommand};
use crate::diagnostics::{Status, UserError};
use crate::printer::Printer;

/// A fresh key: `pdp_` and 32 random bytes in hex (URL-safe, so it fits `?api_key=` as is).
pub fn generate() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::format_err!("cannot generate an API key: {e}"))?;
    Ok(format!("pdp_{}", hex(&bytes)))
}

/// The value `[serve] api-keys` stores for `key`.
pub fn hashed(key: &str) -> String {
    format!("sha256:{}", hex(&Sha256::digest(key.as_bytes())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `pdp keys …`.
pub fn run(args: &KeysArgs, printer: &Printer) -> anyhow::Result<Status> {
    match &args.command {
        KeysCommand::New => {
            let key = generate()?;
            printer.data(&key);
            printer.info("New API key above (shown once). Put one of these in pdp.toml under [serve] api-keys:");
            printer.info(&format!("  \"{}\"   the key's hash: safe to commit", hashed(&key)));
            printer.info("  \"env:PDP_API_KEY\"   with PDP_API_KEY set to the key where pdp serve runs");
            printer.info(
                "Clients use it as `prisma://<host>/?api_key=<key>`. Several keys may be listed at once, to rotate.",
            );
            Ok(Status::Success)
        }
        KeysCommand::Hash => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input)?;
            let key = input.trim_end_matches(['\n', '\r']);
            if key.is_empty() {
                return Err(UserError::new(
                    "no key on standard input",
                    "pipe the key in: `echo \"$PDP_API_KEY\" | pdp keys hash`",
                )
                .into());
            }
            printer.data(&hashed(key));
            Ok(Status::Success)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_url_safe_and_hash_like_sha256sum() {
        let (a, b) = (generate().expect("key"), generate().expect("key"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        // `printf test | sha256sum`
        assert_eq!(hashed("test"), "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    }
}
