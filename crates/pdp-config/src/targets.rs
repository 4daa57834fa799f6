//! Prisma's binary target names as data: which names exist, since which Prisma version, and whether Prisma
//! publishes prebuilt engines for them.
//!
//! Detection of the host's target is not here (that probes the machine, see `pdp-toolchain`); this module
//! only answers "is this a name Prisma knows" so `pdp.toml` can be validated without IO.

/// The pseudo-target that stands for the host's own target.
pub const NATIVE: &str = "native";

/// One binary target name.
#[derive(Debug)]
pub struct TargetInfo {
    /// The name as written in `binaryTargets` and in download URLs.
    pub name: &'static str,
    /// First Prisma (major, minor) whose CLI accepts the name.
    pub since: (u64, u64),
    /// Whether Prisma's pipeline publishes engine files for it.
    pub prebuilt: bool,
}

const fn t(name: &'static str, since: (u64, u64), prebuilt: bool) -> TargetInfo {
    TargetInfo { name, since, prebuilt }
}

/// Every name Prisma's CLI knows (5.10 through 7.x: 30 names), oldest era first.
pub static TARGETS: &[TargetInfo] = &[
    t("darwin", (4, 0), true),
    t("darwin-arm64", (4, 0), true),
    t("windows", (4, 0), true),
    t("debian-openssl-1.0.x", (4, 0), true),
    t("debian-openssl-1.1.x", (4, 0), true),
    t("debian-openssl-3.0.x", (4, 0), true),
    t("rhel-openssl-1.0.x", (4, 0), true),
    t("rhel-openssl-1.1.x", (4, 0), true),
    t("rhel-openssl-3.0.x", (4, 0), true),
    t("linux-arm64-openssl-1.0.x", (4, 0), true),
    t("linux-arm64-openssl-1.1.x", (4, 0), true),
    t("linux-arm64-openssl-3.0.x", (4, 0), true),
    t("linux-musl", (4, 0), true),
    t("linux-musl-openssl-3.0.x", (4, 8), true),
    t("linux-musl-arm64-openssl-1.1.x", (4, 10), true),
    t("linux-musl-arm64-openssl-3.0.x", (4, 10), true),
    t("linux-static-x64", (4, 16), true),
    t("linux-static-arm64", (4, 16), true),
    t("linux-arm-openssl-1.0.x", (4, 0), false),
    t("linux-arm-openssl-1.1.x", (4, 0), false),
    t("linux-arm-openssl-3.0.x", (4, 0), false),
    t("arm", (4, 0), false),
    t("linux-nixos", (4, 0), false),
    t("freebsd11", (4, 0), false),
    t("freebsd12", (4, 0), false),
    t("freebsd13", (4, 0), false),
    t("freebsd14", (5, 8), false),
    t("freebsd15", (5, 10), false),
    t("openbsd", (4, 0), false),
    t("netbsd", (4, 0), false),
];

/// Old names from Prisma's Binaries spec and what they are called today.
pub static LEGACY_ALIASES: &[(&str, &str)] = &[
    ("linux-glibc-libssl1.0.1", "debian-openssl-1.0.x"),
    ("linux-glibc-libssl1.0.2", "debian-openssl-1.0.x"),
    ("linux-glibc-libssl1.1.0", "debian-openssl-1.1.x"),
    ("linux-glibc-libssl3.0.0", "debian-openssl-3.0.x"),
    ("linux-musl-libssl1.1.0", "linux-musl"),
];

/// Looks a name up; `native` is not in the table (resolve it through detection first).
pub fn lookup(name: &str) -> Option<&'static TargetInfo> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The modern name for a legacy spec name, if `name` is one.
pub fn modern_name(name: &str) -> Option<&'static str> {
    LEGACY_ALIASES.iter().find(|(old, _)| *old == name).map(|(_, new)| *new)
}

/// The closest known name, for "did you mean" hints.
pub fn closest(name: &str) -> Option<&'static str> {
    TARGETS
        .iter()
        .map(|t| (strsim::jaro_winkler(name, t.name), t.name))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_names_unique() {
        assert_eq!(TARGETS.len(), 30);
        let mut names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 30);
    }

    #[test]
    fn legacy_aliases_point_at_known_names() {
        for (old, new) in LEGACY_ALIASES {
            assert!(lookup(new).is_some(), "{old} -> {new}");
            assert_eq!(modern_name(old), Some(*new));
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("debian-openssl-3.0"), Some("debian-openssl-3.0.x"));
        assert_eq!(closest("linux-static-x86"), Some("linux-static-x64"));
        assert_eq!(closest("zzz"), None);
    }
}
