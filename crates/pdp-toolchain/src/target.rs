//! Detection of the host's Prisma binary target (`debian-openssl-3.0.x`, `darwin-arm64`, …), following
//! `@prisma/get-platform` rule by rule, plus the `native`/legacy/unknown name resolution built on it.
//!
//! The work is split in two. [`HostFacts::probe`] does all the IO up front: it reads os-release, lists the
//! directories where libssl lives, and asks `ldconfig -p` and `openssl version -v`. [`detect`] is then a pure
//! function of those facts, so every rule is tested with fixture strings. [`resolve_target`] turns a name a
//! user wrote (`native`, a legacy spec name or a known name) into a name from
//! [`pdp_config::targets::TARGETS`].
//!
//! The rules and their pitfalls are recorded in `design/engines.md`, section 2. Where pdp deliberately
//! differs from Prisma, a comment starting "pdp differs" says how and why.
//!
//! Deliberately not here: printing (problems come back as [`Detection::warnings`] for the caller to show),
//! downloading engines, and deciding whether engine files exist for a target.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pdp_config::targets::{NATIVE, TARGETS, closest, lookup, modern_name};

use crate::process::Cmd;

/// Everything detection needs to know about the machine, gathered up front so [`detect`] does no IO.
///
/// Fields are `None` (or empty) when the fact could not be gathered: a missing file or tool is normal,
/// not an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The operating system in Node's spelling where it differs from Rust's: `linux`, `darwin`, `windows`,
    /// `freebsd`, `openbsd`, `netbsd`, …
    pub os: String,
    /// The CPU architecture pdp was built for, as in [`std::env::consts::ARCH`]: `x86_64`, `aarch64`,
    /// `arm`, … (Prisma uses Node's `process.arch`, which is likewise the runtime's own architecture.)
    pub arch: String,
    /// The kernel's machine name (`uname -m`, e.g. `x86_64`, `aarch64`, `armv7l`); Linux only.
    pub machine: Option<String>,
    /// The text of `/etc/os-release` (or `/usr/lib/os-release`); Linux only.
    pub os_release: Option<String>,
    /// The output of `freebsd-version`; FreeBSD only.
    pub freebsd_version: Option<String>,
    /// The library directories that exist, in probe order, each with the entry names detection reads:
    /// `libssl*`, and the dynamic loaders `ld-*` and `ld64.so*` (used to notice musl). Linux only.
    pub libssl_dirs: Vec<(String, Vec<String>)>,
    /// The output of `ldconfig -p`; Linux only.
    pub ldconfig: Option<String>,
    /// The output of `openssl version -v`; Linux only.
    pub openssl_version: Option<String>,
}

/// The host's binary target and how it was reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The target, always a name from [`TARGETS`].
    pub target: &'static str,
    /// Prisma's "target distro" on Linux: `debian`, `rhel`, `musl`, `arm` or `nixos`; `None` elsewhere or
    /// when the distribution is unknown.
    pub distro: Option<&'static str>,
    /// Prisma's "family distro" on Linux: `debian`, `rhel`, `alpine`, `arch` or `nixos`; `None` elsewhere
    /// or when the distribution is unknown.
    pub family: Option<&'static str>,
    /// The libssl version found: `1.0.x`, `1.1.x` or `3.0.x`; `None` when none was found (the target then
    /// carries Prisma's assumed `1.1.x`, and a warning says so) and off Linux.
    pub libssl: Option<&'static str>,
    /// Where the libssl version came from: a file path, a path reported by `ldconfig -p`, or the
    /// `openssl version -v` line.
    pub libssl_source: Option<String>,
    /// Things the user should know, as sentences: a guessed libssl version, an unknown distribution, no
    /// prebuilt engines for this target, and so on. Empty when detection was unambiguous.
    pub warnings: Vec<String>,
    /// Whether Prisma publishes engines for this target that run on this machine.
    pub prebuilt: bool,
}

/// A binary target name that is neither `native`, a legacy spec name, nor a name Prisma knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The name is unknown.
    #[error("unknown binary target `{name}`")]
    Unknown {
        /// The name as written.
        name: String,
        /// The closest known name, if one is close enough to be a likely typo.
        suggestion: Option<&'static str>,
    },
}

impl TargetError {
    /// What to try instead: the closest known name, or the list of every name Prisma knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            TargetError::Unknown { suggestion: Some(name), .. } => Some(format!("did you mean `{name}`?")),
            TargetError::Unknown { suggestion: None, .. } => {
                let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                Some(format!("known targets: {} (or `{NATIVE}` for this machine)", names.join(", ")))
            }
        }
    }
}

/// Turns a target name from the command line or `pdp.toml` into a known name.
///
/// `native` becomes the host's target (`host` is only called then), a legacy name from Prisma's Binaries
/// spec (`linux-glibc-libssl1.1.0`, …) becomes today's name, and a known name is returned as is.
pub fn resolve_target(name: &str, host: impl FnOnce() -> Detection) -> Result<&'static str, TargetError> {
    if name == NATIVE {
        return Ok(host().target);
    }
    if let Some(modern) = modern_name(name) {
        return Ok(modern);
    }
    match lookup(name) {
        Some(info) => Ok(info.name),
        None => Err(TargetError::Unknown { name: name.to_owned(), suggestion: closest(name) }),
    }
}

/// How long each probing command may take before it is treated as absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// os-release locations, in the order os-release(5) says to read them.
// pdp differs: Prisma reads only /etc/os-release; the fallback is the spec's and costs nothing.
const OS_RELEASE_FILES: [&str; 2] = ["/etc/os-release", "/usr/lib/os-release"];

/// Directories scanned when `ldconfig -p` yields no libssl, in Prisma's order.
// pdp differs from Prisma 5.x, like Prisma 6.1+: `/usr/lib` is included, where Alpine 3.21 keeps libssl
// (prisma/orm#25817).
const GENERIC_DIRS: [&str; 4] = ["/lib64", "/usr/lib64", "/lib", "/usr/lib"];

/// The libssl version Prisma assumes when it finds none.
const DEFAULT_LIBSSL: Libssl = Libssl::V11;

/// Prisma's last-resort target.
const DEFAULT_TARGET: &str = "debian-openssl-1.1.x";

impl HostFacts {
    /// Gathers the real facts of this machine. Never fails and never panics: whatever cannot be read is
    /// left empty. On Linux this reads a few files and directories and runs `uname -m`, `ldconfig -p` and
    /// `openssl version -v`; on FreeBSD it runs `freebsd-version`; elsewhere it does no IO.
    pub fn probe() -> HostFacts {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let mut facts =
            HostFacts { os: os.to_owned(), arch: std::env::consts::ARCH.to_owned(), ..HostFacts::default() };
        match os {
            "linux" => {
                facts.machine = stdout_of(
                    "uname",
                    &["/bin/uname", "/usr/bin/uname"],
                    &["-m"],
                    "ask `uname -m` for the machine name",
                )
                .map(|out| out.trim().to_owned())
                .filter(|machine| !machine.is_empty());
                facts.os_release = OS_RELEASE_FILES.iter().find_map(|path| fs_err::read_to_string(path).ok());
                let machine = facts.machine.clone().unwrap_or_else(|| facts.arch.clone());
                facts.libssl_dirs = probed_dirs(&machine)
                    .into_iter()
                    .filter_map(|dir| {
                        let names = library_entries(Path::new(&dir))?;
                        Some((dir, names))
                    })
                    .collect();
                facts.ldconfig = ldconfig_output();
                facts.openssl_version =
                    stdout_of("openssl", &[], &["version", "-v"], "ask `openssl version -v` for the OpenSSL version");
            }
            "freebsd" => {
                facts.freebsd_version = stdout_of(
                    "freebsd-version",
                    &["/bin/freebsd-version"],
                    &[],
                    "ask `freebsd-version` for the FreeBSD release",
                );
            }
            _ => {}
        }
        facts
    }
}

/// Every directory detection may read: Debian's multiarch pair, then the generic ones.
fn probed_dirs(machine: &str) -> Vec<String> {
    let mut dirs = vec![format!("/usr/lib/{machine}-linux-gnu"), format!("/lib/{machine}-linux-gnu")];
    dirs.extend(GENERIC_DIRS.iter().map(|dir| (*dir).to_owned()));
    dirs
}

/// The relevant entry names of one directory, or `None` if it cannot be listed.
// pdp differs: Prisma throws on any error but "not found" (e.g. a permission error); an unreadable
// directory is simply not a place libssl can be found.
fn library_entries(dir: &Path) -> Option<Vec<String>> {
    let entries = fs_err::read_dir(dir).ok()?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with("libssl") || name.starts_with("ld-") || name.starts_with("ld64.so"))
        .collect();
    names.sort();
    Some(names)
}

/// The output of `ldconfig -p`, or `None` if it cannot be run or fails.
// pdp differs: Prisma runs `ldconfig` from PATH only, which on Debian excludes /sbin for non-root users.
// Trying the usual absolute paths too only ever finds more, never something different.
fn ldconfig_output() -> Option<String> {
    stdout_of(
        "ldconfig",
        &["/sbin/ldconfig", "/usr/sbin/ldconfig"],
        &["-p"],
        "list the dynamic linker cache with `ldconfig -p`",
    )
}

/// Standard output of a short probing command, or `None` if it is absent, fails or hangs.
fn stdout_of(program: &str, fallbacks: &[&str], args: &[&str], summary: &str) -> Option<String> {
    let path = locate(program, fallbacks)?;
    Cmd::new(path, summary, "/").args(args).timeout(PROBE_TIMEOUT).output().ok().map(|out| out.stdout)
}

/// The absolute path of a probing tool: from `PATH`, else the first fallback that is a file.
///
/// `Cmd` is always given an absolute path, as in `tools.rs`: a bare name like `uname` would be taken as
/// a file relative to the working directory, not looked up in `PATH`.
fn locate(program: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    which::which(program).ok().or_else(|| fallbacks.iter().map(PathBuf::from).find(|path| path.is_file()))
}

/// Works out the host's binary target from `facts`, the way Prisma's `getBinaryTargetForCurrentPlatform`
/// does, with pdp's fixes. Pure: no IO, and the same facts always give the same answer.
pub fn detect(facts: &HostFacts) -> Detection {
    let mut detection = Detection {
        target: DEFAULT_TARGET,
        distro: None,
        family: None,
        libssl: None,
        libssl_source: None,
        warnings: Vec::new(),
        prebuilt: false,
    };
    let cpu = Cpu::of(&facts.arch);
    // Whether Prisma's published files (all x86_64 or aarch64) can run here at all.
    let mut runnable = true;
    // Whether a warning already explains why nothing prebuilt fits.
    let mut explained = false;
    detection.target = match facts.os.as_str() {
        "darwin" | "macos" => match cpu {
            Cpu::Arm64 => "darwin-arm64",
            _ => "darwin",
        },
        "windows" | "win32" => "windows",
        "freebsd" => freebsd_target(facts.freebsd_version.as_deref(), &mut detection.warnings),
        "openbsd" => "openbsd",
        "netbsd" => "netbsd",
        "linux" => {
            let target = linux_target(facts, cpu, &mut detection);
            if !matches!(cpu, Cpu::X64 | Cpu::Arm64) {
                runnable = false;
                explained = true;
                let machine = facts.machine.as_deref().unwrap_or(&facts.arch);
                detection.warnings.push(format!(
                    "Prisma builds Linux engines only for x86_64 and aarch64, and this machine is `{machine}`: \
                     nothing prebuilt runs here, so `{target}` needs engines compiled for this machine"
                ));
            }
            target
        }
        other => {
            runnable = false;
            explained = true;
            detection.warnings.push(format!(
                "unknown operating system `{other}`: like Prisma, pdp treats it as Linux with no known distribution \
                 or libssl and picks `{DEFAULT_TARGET}`, whose prebuilt engines will not run here"
            ));
            DEFAULT_TARGET
        }
    };
    detection.prebuilt = runnable && lookup(detection.target).is_some_and(|info| info.prebuilt);
    if !detection.prebuilt && !explained {
        detection.warnings.push(format!(
            "Prisma publishes no prebuilt engines for `{}`, so engine files built for this machine are needed",
            detection.target
        ));
    }
    detection
}

/// The CPU classes Prisma distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cpu {
    X64,
    Arm64,
    /// 32-bit ARM.
    Arm,
    Other,
}

impl Cpu {
    fn of(arch: &str) -> Cpu {
        match arch {
            "x86_64" | "x64" | "amd64" => Cpu::X64,
            "aarch64" | "arm64" => Cpu::Arm64,
            "arm" => Cpu::Arm,
            _ => Cpu::Other,
        }
    }

    /// The statically linked target that runs on any Linux of this CPU, if Prisma publishes one.
    fn static_target(self) -> Option<&'static str> {
        match self {
            Cpu::X64 => Some("linux-static-x64"),
            Cpu::Arm64 => Some("linux-static-arm64"),
            Cpu::Arm | Cpu::Other => None,
        }
    }
}

/// The libssl versions Prisma builds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Libssl {
    V10,
    V11,
    V30,
}

impl Libssl {
    fn as_str(self) -> &'static str {
        match self {
            Libssl::V10 => "1.0.x",
            Libssl::V11 => "1.1.x",
            Libssl::V30 => "3.0.x",
        }
    }

    /// Prisma's normalisation: 1.0 and 1.1 stay, any 3.N is ABI-compatible with 3.0, the rest is unsupported.
    fn from_version(major: &str, minor: &str) -> Option<Libssl> {
        match (major, minor) {
            ("1", "0") => Some(Libssl::V10),
            ("1", "1") => Some(Libssl::V11),
            ("3", _) => Some(Libssl::V30),
            _ => None,
        }
    }
}

/// A libssl version and where it was found.
struct Found {
    version: Libssl,
    source: String,
}

/// Linux: distro from os-release, libssl from the library search, then Prisma's target assembly.
fn linux_target(facts: &HostFacts, cpu: Cpu, detection: &mut Detection) -> &'static str {
    let distro = facts.os_release.as_deref().map(Distro::parse);
    let (target_distro, family) = distro.as_ref().map_or((None, None), |d| (d.target, d.family));
    detection.distro = target_distro;
    detection.family = family;

    // pdp differs: when `uname -m` gave nothing Prisma builds the path `/usr/lib/undefined-linux-gnu`;
    // Rust's architecture name is the same as the machine name on x86_64 and aarch64.
    let machine = facts.machine.as_deref().filter(|m| !m.is_empty()).unwrap_or(&facts.arch);
    let found = find_libssl(facts, family, machine);
    let libssl = found.as_ref().map(|f| f.version);
    if let Some(found) = found {
        detection.libssl = Some(found.version.as_str());
        detection.libssl_source = Some(found.source);
    }
    let version = libssl.unwrap_or(DEFAULT_LIBSSL);

    // Whether Prisma's assumed 1.1.x ended up in the target name.
    let mut assumed_libssl = false;
    let target = if target_distro == Some("nixos") {
        "linux-nixos"
    } else if cpu == Cpu::Arm64 {
        assumed_libssl = libssl.is_none();
        if target_distro == Some("musl") {
            // pdp differs: Prisma would name `linux-musl-arm64-openssl-1.0.x`, which does not exist.
            let version = if version == Libssl::V10 {
                detection.warnings.push(
                    "found OpenSSL 1.0 on Alpine aarch64, for which Prisma has no target; using the OpenSSL 1.1 build"
                        .to_owned(),
                );
                Libssl::V11
            } else {
                version
            };
            known(&format!("linux-musl-arm64-openssl-{}", version.as_str()))
        } else {
            known(&format!("linux-arm64-openssl-{}", version.as_str()))
        }
    } else if cpu == Cpu::Arm {
        assumed_libssl = libssl.is_none();
        known(&format!("linux-arm-openssl-{}", version.as_str()))
    } else if target_distro == Some("musl") {
        match libssl {
            Some(Libssl::V30) => "linux-musl-openssl-3.0.x",
            Some(_) => "linux-musl",
            None => {
                assumed_libssl = true;
                "linux-musl"
            }
        }
    } else {
        assumed_libssl = libssl.is_none();
        let name = match target_distro {
            Some("arm") => {
                // pdp differs: Raspbian on a non-ARM CPU gives Prisma the non-target `arm-openssl-…`.
                detection.warnings.push(format!(
                    "os-release says Raspbian but the CPU is `{machine}`, not ARM; using the Debian engines"
                ));
                "debian"
            }
            Some(name) => name,
            None => {
                detection.warnings.push(unknown_distro_warning(distro.as_ref()));
                "debian"
            }
        };
        known(&format!("{name}-openssl-{}", version.as_str()))
    };

    if assumed_libssl {
        detection.warnings.push(missing_libssl_warning(family, cpu));
    }
    if let Some(loader) = musl_loader(facts)
        && !target.starts_with("linux-musl")
        && target != "linux-nixos"
    {
        let alternative = match cpu.static_target() {
            Some(static_target) => format!("; `{static_target}` runs on any Linux"),
            None => String::new(),
        };
        detection.warnings.push(format!(
            "this system looks like it uses musl libc (found `{loader}` and no glibc loader), but Prisma recognises musl \
             only by `ID=alpine` in os-release, so it picked `{target}`, a glibc build that will not load here{alternative}"
        ));
    }
    target
}

/// The `&'static` spelling of a target name assembled at run time. Every name `linux_target` assembles
/// is in the table; the fallback only guards against the table shrinking.
fn known(name: &str) -> &'static str {
    lookup(name).map_or(DEFAULT_TARGET, |info| info.name)
}

fn unknown_distro_warning(distro: Option<&Distro>) -> String {
    match distro {
        None => {
            "found no os-release file, so the Linux distribution is unknown; like Prisma, pdp uses the Debian engines"
                .to_owned()
        }
        Some(d) if d.id.is_empty() => {
            "os-release names no distribution (no `ID=`); like Prisma, pdp uses the Debian engines".to_owned()
        }
        Some(d) => format!(
            "Prisma does not know the Linux distribution `{}` (ID_LIKE `{}`); like Prisma, pdp uses the Debian engines",
            d.id, d.id_like
        ),
    }
}

fn missing_libssl_warning(family: Option<&str>, cpu: Cpu) -> String {
    let install = match family {
        Some("debian") => {
            "install OpenSSL (`apt-get update -y && apt-get install -y openssl`, in the Dockerfile if \
                           this is a container image)"
        }
        _ => "install OpenSSL",
    };
    let alternative = match cpu.static_target() {
        Some(static_target) => format!(", or choose `{static_target}`, which needs no libssl"),
        None => String::new(),
    };
    format!(
        "found no libssl (looked in the library directories, `ldconfig -p` and `openssl version -v`), so like Prisma \
         pdp assumes OpenSSL 1.1.x, and the engines will fail to load if it is absent; {install}{alternative}"
    )
}

/// The musl loader's path when the library directories hold one and no glibc loader.
///
/// pdp differs: Prisma never looks at the C library, so musl distributions other than Alpine get glibc
/// engines silently. pdp keeps Prisma's target but says so.
fn musl_loader(facts: &HostFacts) -> Option<String> {
    let mut musl = None;
    for (dir, names) in &facts.libssl_dirs {
        for name in names {
            if name.starts_with("ld-linux") || name.starts_with("ld64.so") {
                return None;
            }
            if musl.is_none() && name.starts_with("ld-musl-") {
                musl = Some(format!("{}/{name}", dir.trim_end_matches('/')));
            }
        }
    }
    musl
}

/// What Prisma reads from os-release.
struct Distro {
    /// `ID`, lower-cased.
    id: String,
    /// `ID_LIKE`, lower-cased.
    id_like: String,
    target: Option<&'static str>,
    family: Option<&'static str>,
}

impl Distro {
    /// Prisma's table, in its order; `ID_LIKE` is matched by substring, as Prisma does.
    fn parse(os_release: &str) -> Distro {
        let id = os_release_value(os_release, "ID").to_lowercase();
        let id_like = os_release_value(os_release, "ID_LIKE").to_lowercase();
        let like = |word: &str| id_like.contains(word);
        let (target, family) = match id.as_str() {
            "alpine" => ("musl", "alpine"),
            "raspbian" => ("arm", "debian"),
            "nixos" => ("nixos", "nixos"),
            "debian" | "ubuntu" => ("debian", "debian"),
            "rhel" | "centos" | "fedora" => ("rhel", "rhel"),
            _ if like("debian") || like("ubuntu") => ("debian", "debian"),
            "arch" => ("debian", "arch"),
            _ if like("arch") => ("debian", "arch"),
            _ if like("centos") || like("fedora") || like("rhel") || like("suse") => ("rhel", "rhel"),
            _ => return Distro { id, id_like, target: None, family: None },
        };
        Distro { id, id_like, target: Some(target), family: Some(family) }
    }
}

/// The value of the first `KEY=` line (key matched case-insensitively, as Prisma's regex does), unquoted.
// pdp differs: os-release(5) allows shell quoting, so single quotes are removed too, and surrounding
// whitespace is ignored; Prisma only strips double quotes.
fn os_release_value<'a>(text: &'a str, key: &str) -> &'a str {
    let value = text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        k.eq_ignore_ascii_case(key).then_some(v)
    });
    let value = value.unwrap_or("").trim();
    for quote in ['"', '\''] {
        if let Some(inner) = value.strip_prefix(quote) {
            return inner.strip_suffix(quote).unwrap_or(inner);
        }
    }
    value
}

/// Prisma's `getSSLVersion`: the first step that yields a supported version wins.
///
/// The steps: the family's own directories; `ldconfig -p`; only if `ldconfig` listed no libssl, the
/// generic directories; `openssl version -v`.
fn find_libssl(facts: &HostFacts, family: Option<&str>, machine: &str) -> Option<Found> {
    let specific: Vec<String> = match family {
        Some("debian") => vec![format!("/usr/lib/{machine}-linux-gnu"), format!("/lib/{machine}-linux-gnu")],
        Some("rhel") => vec!["/lib64".to_owned(), "/usr/lib64".to_owned()],
        // Prisma also has a branch for family "musl" (`/lib`, and `/usr/lib` from 6.1), but Alpine's family
        // is "alpine", so it never runs and Alpine is found by the steps below. pdp keeps that result.
        _ => Vec::new(),
    };
    if let Some((dir, name)) = first_in_dirs(facts, &specific)
        && let Some(version) = parse_libssl_name(name)
    {
        return Some(Found { version, source: format!("{}/{name}", dir.trim_end_matches('/')) });
    }

    match facts.ldconfig.as_deref().and_then(first_in_ldconfig) {
        // Prisma goes straight on to `openssl` when the name `ldconfig` gave does not parse: the generic
        // directories are only its fallback for `ldconfig` listing nothing.
        Some((name, path)) => {
            if let Some(version) = parse_libssl_name(name) {
                return Some(Found { version, source: format!("{path} (ldconfig -p)") });
            }
        }
        None => {
            if let Some((dir, name)) = first_in_dirs(facts, &GENERIC_DIRS)
                && let Some(version) = parse_libssl_name(name)
            {
                return Some(Found { version, source: format!("{}/{name}", dir.trim_end_matches('/')) });
            }
        }
    }

    let output = facts.openssl_version.as_deref()?;
    let (version, token) = parse_openssl_version(output)?;
    Some(Found { version, source: format!("openssl version -v: OpenSSL {token}") })
}

/// Whether a file name is a versioned OpenSSL libssl.
///
/// pdp differs: Prisma 4.x also took the unversioned `libssl.so` dev symlink; Prisma 5+ takes any
/// `libssl.so.` name. pdp requires a version number after it, and like Prisma ignores `libssl.so.0*`
/// (0.9.8, prisma/orm#17499). NSS's `libssl3.so` never matches.
fn is_libssl_candidate(name: &str) -> bool {
    name.strip_prefix("libssl.so.")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()) && !rest.starts_with('0'))
}

/// The first directory of `dirs` (in that order) holding a candidate, and its first candidate.
///
/// pdp differs: Prisma takes the first name in `readdir` order, which is arbitrary when a directory holds
/// two versions. pdp sorts, so the oldest wins, the same preference as Prisma's `ldconfig` step.
fn first_in_dirs<'a, D: AsRef<str>>(facts: &'a HostFacts, dirs: &[D]) -> Option<(&'a str, &'a str)> {
    dirs.iter().find_map(|dir| {
        let dir = dir.as_ref();
        let (dir, names) = facts.libssl_dirs.iter().find(|(listed, _)| listed == dir)?;
        let name = names.iter().filter(|name| is_libssl_candidate(name)).min()?;
        Some((dir.as_str(), name.as_str()))
    })
}

/// From `ldconfig -p`, the first libssl in file-name order (so the oldest), with its path.
///
/// Prisma keeps what follows the last `=>`, strips the directory, keeps names containing `libssl`, sorts
/// them and drops `libssl.so.0`; then the first `libssl.so.N` in that list wins.
fn first_in_ldconfig(output: &str) -> Option<(&str, &str)> {
    output
        .lines()
        .filter_map(|line| line.rsplit_once("=>"))
        .map(|(_, path)| {
            let path = path.trim();
            let name = path.rsplit_once('/').map_or(path, |(_, name)| name);
            (name, path)
        })
        .filter(|(name, _)| is_libssl_candidate(name))
        .min()
}

/// The version in a libssl file name: `libssl.so.3` → 3.0.x, `libssl.so.1.1` → 1.1.x,
/// `libssl.so.1.0.2k` → 1.0.x, `libssl.so.10` (Red Hat's name for 1.0) → 1.0.x.
///
/// pdp differs: Prisma reads only the first digit of the major number, which happens to get Red Hat's
/// `libssl.so.10` right but reads LibreSSL's `libssl.so.35`/`.39` as OpenSSL 3; pdp reads the whole number
/// and treats LibreSSL's as unsupported.
fn parse_libssl_name(name: &str) -> Option<Libssl> {
    let rest = name.strip_prefix("libssl.so.")?;
    let (major, rest) = split_digits(rest);
    let minor = rest.strip_prefix('.').map_or("", |r| split_digits(r).0);
    match major {
        "10" => Some(Libssl::V10),
        _ => Libssl::from_version(major, if minor.is_empty() { "0" } else { minor }),
    }
}

/// The version in `openssl version -v` output, Prisma's `^OpenSSL\s(\d+\.\d+)\.\d+`, with the version
/// token for the source description. LibreSSL's output does not match.
fn parse_openssl_version(output: &str) -> Option<(Libssl, &str)> {
    let rest = output.strip_prefix("OpenSSL")?;
    let mut chars = rest.chars();
    if !chars.next().is_some_and(char::is_whitespace) {
        return None;
    }
    let token_start = chars.as_str();
    let (major, rest) = split_digits(token_start);
    let (minor, rest) = split_digits(rest.strip_prefix('.')?);
    let (patch, _) = split_digits(rest.strip_prefix('.')?);
    if major.is_empty() || minor.is_empty() || patch.is_empty() {
        return None;
    }
    let token = token_start.split_whitespace().next().unwrap_or(token_start);
    Some((Libssl::from_version(major, minor)?, token))
}

/// Splits a leading run of ASCII digits off `text`.
fn split_digits(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    text.split_at(end)
}

/// `freebsd<major>` from `freebsd-version` output, e.g. `14.1-RELEASE-p5` → `freebsd14`.
///
/// pdp differs: without a version Prisma returns no target at all, and for a release outside its list a
/// name it does not know. pdp picks the nearest known FreeBSD target and says so.
fn freebsd_target(version: Option<&str>, warnings: &mut Vec<String>) -> &'static str {
    let known: Vec<(u64, &'static str)> =
        TARGETS.iter().filter_map(|t| Some((t.name.strip_prefix("freebsd")?.parse().ok()?, t.name))).collect();
    let (Some(oldest), Some(newest)) = (known.iter().min(), known.iter().max()) else {
        return DEFAULT_TARGET;
    };
    let major: Option<u64> = version.and_then(|v| split_digits(v).0.parse().ok());
    match major {
        Some(major) => {
            if let Some(&(_, name)) = known.iter().find(|(n, _)| *n == major) {
                return name;
            }
            let nearest = if major < oldest.0 { oldest.1 } else { newest.1 };
            warnings.push(format!(
                "Prisma has no target for FreeBSD {major} (it knows {} to {}); using `{nearest}`",
                oldest.1, newest.1
            ));
            nearest
        }
        None => {
            warnings.push(format!(
                "could not read the FreeBSD release (`freebsd-version` gave nothing usable); assuming `{}`",
                newest.1
            ));
            newest.1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- os-release fixtures -------------------------------------------------------------------------

    const DEBIAN_12: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

    const UBUNTU_22_04: &str = r#"PRETTY_NAME="Ubuntu 22.04.4 LTS"
NAME="Ubuntu"
VERSION_ID="22.04"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
VERSION_CODENAME=jammy
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=jammy
"#;

    const ALPINE_3_18: &str = r#"NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.18.4
PRETTY_NAME="Alpine Linux v3.18"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"#;

    const ALPINE_3_21: &str = r#"NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.21.0
PRETTY_NAME="Alpine Linux v3.21"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
"#;

    const RHEL_9: &str = r#"NAME="Red Hat Enterprise Linux"
VERSION="9.3 (Plow)"
ID="rhel"
ID_LIKE="fedora"
VERSION_ID="9.3"
PLATFORM_ID="platform:el9"
PRETTY_NAME="Red Hat Enterprise Linux 9.3 (Plow)"
ANSI_COLOR="0;31"
LOGO="fedora-logo-icon"
CPE_NAME="cpe:/o:redhat:enterprise_linux:9::baseos"
HOME_URL="https://www.redhat.com/"
DOCUMENTATION_URL="https://access.redhat.com/documentation/en-us/red_hat_enterprise_linux/9"
BUG_REPORT_URL="https://bugzilla.redhat.com/"
"#;

    const FEDORA_40: &str = r#"NAME="Fedora Linux"
VERSION="40 (Container Image)"
ID=fedora
VERSION_ID=40
VERSION_CODENAME=""
PLATFORM_ID="platform:f40"
PRETTY_NAME="Fedora Linux 40 (Container Image)"
ANSI_COLOR="0;38;2;60;110;180"
LOGO=fedora-logo-icon
CPE_NAME="cpe:/o:fedoraproject:fedora:40"
DEFAULT_HOSTNAME="fedora"
HOME_URL="https://fedoraproject.org/"
VARIANT="Container Image"
VARIANT_ID=container
"#;

    const AMAZON_LINUX_2: &str = r#"NAME="Amazon Linux"
VERSION="2"
ID="amzn"
ID_LIKE="centos rhel fedora"
VERSION_ID="2"
PRETTY_NAME="Amazon Linux 2"
ANSI_COLOR="0;33"
CPE_NAME="cpe:2.3:o:amazon:amazon_linux:2"
HOME_URL="https://amazonlinux.com/"
SUPPORT_END="2025-06-30"
"#;

    const ARCH: &str = r#"NAME="Arch Linux"
PRETTY_NAME="Arch Linux"
ID=arch
BUILD_ID=rolling
ANSI_COLOR="38;2;23;147;209"
HOME_URL="https://archlinux.org/"
DOCUMENTATION_URL="https://wiki.archlinux.org/"
SUPPORT_URL="https://bbs.archlinux.org/"
BUG_REPORT_URL="https://gitlab.archlinux.org/groups/archlinux/-/issues"
LOGO=archlinux-logo
"#;

    const MANJARO: &str = r#"NAME="Manjaro Linux"
PRETTY_NAME="Manjaro Linux"
ID=manjaro
ID_LIKE=arch
BUILD_ID=rolling
HOME_URL="https://manjaro.org/"
LOGO=manjarolinux
"#;

    const OPENSUSE_LEAP_15: &str = r#"NAME="openSUSE Leap"
VERSION="15.5"
ID="opensuse-leap"
ID_LIKE="suse opensuse"
VERSION_ID="15.5"
PRETTY_NAME="openSUSE Leap 15.5"
ANSI_COLOR="0;32"
CPE_NAME="cpe:/o:opensuse:leap:15.5"
BUG_REPORT_URL="https://bugs.opensuse.org"
HOME_URL="https://www.opensuse.org/"
LOGO="distributor-logo-Leap"
"#;

    const RASPBIAN_11: &str = r#"PRETTY_NAME="Raspbian GNU/Linux 11 (bullseye)"
NAME="Raspbian GNU/Linux"
VERSION_ID="11"
VERSION="11 (bullseye)"
VERSION_CODENAME=bullseye
ID=raspbian
ID_LIKE=debian
HOME_URL="http://www.raspbian.org/"
SUPPORT_URL="http://www.raspbian.org/RaspbianForums"
BUG_REPORT_URL="http://www.raspbian.org/RaspbianBugs"
"#;

    const NIXOS: &str = r#"BUG_REPORT_URL="https://github.com/NixOS/nixpkgs/issues"
BUILD_ID="24.05.20240605.57d6973"
DOCUMENTATION_URL="https://nixos.org/learn.html"
HOME_URL="https://nixos.org/"
ID=nixos
LOGO="nix-snowflake"
NAME=NixOS
PRETTY_NAME="NixOS 24.05 (Uakari)"
SUPPORT_URL="https://nixos.org/community.html"
VERSION="24.05 (Uakari)"
VERSION_CODENAME=uakari
VERSION_ID="24.05"
"#;

    const VOID: &str = r#"NAME="Void"
ID="void"
PRETTY_NAME="Void Linux"
HOME_URL="https://voidlinux.org/"
DOCUMENTATION_URL="https://docs.voidlinux.org/"
LOGO="void-logo"
ANSI_COLOR="0;38;2;71;128;97"
DISTRIB_ID="void"
"#;

    // ---- ldconfig -p fixtures ------------------------------------------------------------------------

    /// Debian 12 with OpenSSL 3 and NSS: `libssl3.so` is NSS's, `libssl.so` the dev symlink.
    const LDCONFIG_DEBIAN_12: &str = "534 libs found in cache `/etc/ld.so.cache'
\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1
\tlibxmlsec1-openssl.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libxmlsec1-openssl.so.1
\tlibssl3.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl3.so
\tlibssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3
\tlibssl.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so
\tlibgnutls-openssl.so.27 (libc6,x86-64) => /lib/x86_64-linux-gnu/libgnutls-openssl.so.27
\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6
";

    /// An old Ubuntu with 0.9.8 compat, 1.1 and 3 side by side.
    const LDCONFIG_THREE_VERSIONS: &str = "702 libs found in cache `/etc/ld.so.cache'
\tlibssl3.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libssl3.so
\tlibssl.so.3 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libssl.so.3
\tlibssl.so.1.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libssl.so.1.1
\tlibssl.so.0.9.8 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libssl.so.0.9.8
\tlibssl.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libssl.so
";

    /// Only 0.9.8 and NSS: nothing Prisma can use.
    const LDCONFIG_NSS_AND_098: &str = "310 libs found in cache `/etc/ld.so.cache'
\tlibssl3.so (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libssl3.so
\tlibssl.so.0.9.8 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libssl.so.0.9.8
";

    /// bookworm-slim: a cache without any libssl.
    const LDCONFIG_NO_LIBSSL: &str = "92 libs found in cache `/etc/ld.so.cache'
\tlibz.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libz.so.1
\tlibstdc++.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libstdc++.so.6
\tlibc.so.6 (libc6,x86-64, OS ABI: Linux 3.2.0) => /lib/x86_64-linux-gnu/libc.so.6
";

    const LDCONFIG_ARCH: &str = "1297 libs found in cache `/etc/ld.so.cache'
\tlibssl.so.3 (libc6,x86-64) => /usr/lib/libssl.so.3
\tlibssl.so (libc6,x86-64) => /usr/lib/libssl.so
";

    const LDCONFIG_ARCH_WITH_COMPAT: &str = "1301 libs found in cache `/etc/ld.so.cache'
\tlibssl.so.3 (libc6,x86-64) => /usr/lib/libssl.so.3
\tlibssl.so.1.1 (libc6,x86-64) => /usr/lib/libssl.so.1.1
\tlibssl.so (libc6,x86-64) => /usr/lib/libssl.so
";

    const LDCONFIG_RASPBIAN: &str = "681 libs found in cache `/etc/ld.so.cache'
\tlibssl.so.1.1 (libc6,hard-float) => /usr/lib/arm-linux-gnueabihf/libssl.so.1.1
\tlibssl.so (libc6,hard-float) => /usr/lib/arm-linux-gnueabihf/libssl.so
";

    /// LibreSSL's soname only: found by `ldconfig` but not a version Prisma builds for.
    const LDCONFIG_LIBRESSL: &str = "201 libs found in cache `/etc/ld.so.cache'
\tlibssl.so.48 (libc6,x86-64) => /usr/lib/libssl.so.48
";

    // ---- openssl version -v fixtures -----------------------------------------------------------------

    const OPENSSL_3_0: &str = "OpenSSL 3.0.19 27 Jan 2026 (Library: OpenSSL 3.0.19 27 Jan 2026)\n";
    const OPENSSL_3_2: &str = "OpenSSL 3.2.1 30 Jan 2024 (Library: OpenSSL 3.2.1 30 Jan 2024)\n";
    const OPENSSL_1_1: &str = "OpenSSL 1.1.1w  11 Sep 2023\n";
    const OPENSSL_1_0_FIPS: &str = "OpenSSL 1.0.2k-fips  26 Jan 2017\n";
    const LIBRESSL: &str = "LibreSSL 3.3.6\n";

    // ---- builders ------------------------------------------------------------------------------------

    fn host(os: &str, arch: &str) -> HostFacts {
        HostFacts { os: os.to_owned(), arch: arch.to_owned(), ..HostFacts::default() }
    }

    fn linux(arch: &str, os_release: &str) -> HostFacts {
        let machine = match arch {
            "arm" => "armv7l",
            other => other,
        };
        HostFacts { machine: Some(machine.to_owned()), os_release: Some(os_release.to_owned()), ..host("linux", arch) }
    }

    impl HostFacts {
        fn dir(mut self, dir: &str, names: &[&str]) -> HostFacts {
            self.libssl_dirs.push((dir.to_owned(), names.iter().map(|n| (*n).to_owned()).collect()));
            self
        }
        fn ldconfig(mut self, output: &str) -> HostFacts {
            self.ldconfig = Some(output.to_owned());
            self
        }
        fn openssl(mut self, output: &str) -> HostFacts {
            self.openssl_version = Some(output.to_owned());
            self
        }
        fn freebsd(mut self, output: &str) -> HostFacts {
            self.freebsd_version = Some(output.to_owned());
            self
        }
    }

    /// The one entry point: detects, checks the target and libssl, checks the invariants every
    /// detection must hold, and hands the detection back for the few cases that look further.
    #[track_caller]
    fn check(facts: HostFacts, target: &str, libssl: Option<&str>) -> Detection {
        let d = detect(&facts);
        assert_eq!((d.target, d.libssl), (target, libssl), "{d:#?}");
        assert!(lookup(d.target).is_some(), "not a known target: {d:#?}");
        assert_eq!(d.libssl.is_some(), d.libssl_source.is_some(), "{d:#?}");
        if d.prebuilt {
            assert!(lookup(d.target).is_some_and(|t| t.prebuilt), "{d:#?}");
        } else {
            assert!(!d.warnings.is_empty(), "no prebuilt engines must come with a warning: {d:#?}");
        }
        d
    }

    #[track_caller]
    fn warned(d: &Detection, needle: &str) {
        assert!(d.warnings.iter().any(|w| w.contains(needle)), "no warning containing {needle:?}: {d:#?}");
    }

    // ---- Debian family -------------------------------------------------------------------------------

    #[test]
    fn debian_12_from_multiarch_dir() {
        let d = check(
            linux("x86_64", DEBIAN_12)
                .dir(
                    "/usr/lib/x86_64-linux-gnu",
                    &["ld-linux-x86-64.so.2", "libssl.a", "libssl.so", "libssl.so.3", "libssl3.so"],
                )
                .dir("/lib64", &["ld-linux-x86-64.so.2"])
                .ldconfig(LDCONFIG_DEBIAN_12)
                .openssl(OPENSSL_3_0),
            "debian-openssl-3.0.x",
            Some("3.0.x"),
        );
        assert_eq!(d.libssl_source.as_deref(), Some("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
        assert_eq!((d.distro, d.family), (Some("debian"), Some("debian")));
        assert!(d.prebuilt && d.warnings.is_empty(), "{d:#?}");
    }

    #[test]
    fn ubuntu_22_04() {
        check(
            linux("x86_64", UBUNTU_22_04).dir("/usr/lib/x86_64-linux-gnu", &["libssl.so.3"]),
            "debian-openssl-3.0.x",
            Some("3.0.x"),
        );
    }

    #[test]
    fn debian_lib_dir_is_second_choice() {
        check(
            linux("x86_64", DEBIAN_12).dir("/lib/x86_64-linux-gnu", &["libssl.so.1.1"]),
            "debian-openssl-1.1.x",
            Some("1.1.x"),
        );
    }

    #[test]
    fn two_versions_in_one_dir_pick_the_oldest_whatever_the_listing_order() {
        for names in [["libssl.so.3", "libssl.so.1.1"], ["libssl.so.1.1", "libssl.so.3"]] {
            let d = check(
                linux("x86_64", DEBIAN_12).dir("/usr/lib/x86_64-linux-gnu", &names),
                "debian-openssl-1.1.x",
                Some("1.1.x"),
            );
            assert_eq!(d.libssl_source.as_deref(), Some("/usr/lib/x86_64-linux-gnu/libssl.so.1.1"));
        }
    }

    #[test]
    fn dev_symlink_nss_and_098_are_ignored_in_dirs() {
        check(
            linux("x86_64", DEBIAN_12)
                .dir("/usr/lib/x86_64-linux-gnu", &["libssl.so", "libssl.so.0.9.8", "libssl3.so", "libssl.so.3"]),
            "debian-openssl-3.0.x",
            Some("3.0.x"),
        );
    }

    #[test]
    fn bookworm_slim_without_openssl_assumes_1_1_and_warns() {
        let d = check(
            linux("x86_64", DEBIAN_12)
                .dir("/usr/lib/x86_64-linux-gnu", &["ld-linux-x86-64.so.2"])
                .dir("/lib64", &["ld-linux-x86-64.so.2"])
                .dir("/usr/lib", &[])
                .ldconfig(LDCONFIG_NO_LIBSSL),
            "debian-openssl-1.1.x",
            None,
        );
        warned(&d, "assumes OpenSSL 1.1.x");
        warned(&d, "apt-get install -y openssl");
        warned(&d, "linux-static-x64");
        assert!(d.prebuilt, "{d:#?}");
    }

    #[test]
    fn ldconfig_prefers_the_oldest_and_skips_098_and_nss() {
        let d = check(
            linux("x86_64", UBUNTU_22_04).ldconfig(LDCONFIG_THREE_VERSIONS),
            "debian-openssl-1.1.x",
            Some("1.1.x"),
        );
        assert_eq!(d.libssl_source.as_deref(), Some("/usr/lib/x86_64-linux-gnu/libssl.so.1.1 (ldconfig -p)"));
    }

    #[test]
    fn ldconfig_with_only_nss_and_098_falls_back_to_generic_dirs() {
        check(
            linux("x86_64", DEBIAN_12).ldconfig(LDCONFIG_NSS_AND_098).dir("/usr/lib", &["libssl.so.3"]),
            "debian-openssl-3.0.x",
            Some("3.0.x"),
        );
    }

    #[test]
    fn ldconfig_naming_an_unsupported_libssl_skips_generic_dirs_like_prisma() {
        check(
            linux("x86_64", VOID).ldconfig(LDCONFIG_LIBRESSL).dir("/usr/lib", &["libssl.so.3"]).openssl(LIBRESSL),
            "debian-openssl-1.1.x",
            None,
        );
    }

    #[test]
    fn openssl_binary_is_the_last_resort() {
        let d = check(linux("x86_64", DEBIAN_12).openssl(OPENSSL_3_0), "debian-openssl-3.0.x", Some("3.0.x"));
        assert_eq!(d.libssl_source.as_deref(), Some("openssl version -v: OpenSSL 3.0.19"));
        check(linux("x86_64", DEBIAN_12).openssl(OPENSSL_1_1), "debian-openssl-1.1.x", Some("1.1.x"));
        check(linux("x86_64", DEBIAN_12).openssl(OPENSSL_3_2), "debian-openssl-3.0.x", Some("3.0.x"));
        check(linux("x86_64", DEBIAN_12).openssl(LIBRESSL), "debian-openssl-1.1.x", None);
    }

    #[test]
    fn no_os_release() {
        let mut facts = linux("x86_64", "").dir("/usr/lib64", &["libssl.so.3"]);
        facts.os_release = None;
        let d = check(facts, "debian-openssl-3.0.x", Some("3.0.x"));
        warned(&d, "no os-release");
    }

    // ---- RHEL family ---------------------------------------------------------------------------------

    #[test]
    fn rhel_9() {
        let d = check(
            linux("x86_64", RHEL_9).dir("/lib64", &["ld-linux-x86-64.so.2", "libssl.so.3", "libssl.so.3.0.7"]),
            "rhel-openssl-3.0.x",
            Some("3.0.x"),
        );
        assert_eq!((d.distro, d.family), (Some("rhel"), Some("rhel")));
        assert_eq!(d.libssl_source.as_deref(), Some("/lib64/libssl.so.3"));
    }

    #[test]
    fn fedora_with_compat_1_1() {
        check(
            linux("x86_64", FEDORA_40)
                .dir("/usr/lib64", &["libssl.so.1.1", "libssl.so.1.1.1q", "libssl.so.3", "libssl.so.3.2.1"]),
            "rhel-openssl-1.1.x",
            Some("1.1.x"),
        );
    }

    #[test]
    fn amazon_linux_2_by_id_like() {
        check(
            linux("x86_64", AMAZON_LINUX_2).dir("/lib64", &["libssl.so.10", "libssl.so.1.0.2k"]),
            "rhel-openssl-1.0.x",
            Some("1.0.x"),
        );
        // Red Hat's `libssl.so.10` alone.
        check(
            linux("x86_64", AMAZON_LINUX_2).dir("/usr/lib64", &["libssl.so.10"]),
            "rhel-openssl-1.0.x",
            Some("1.0.x"),
        );
        check(linux("x86_64", AMAZON_LINUX_2).openssl(OPENSSL_1_0_FIPS), "rhel-openssl-1.0.x", Some("1.0.x"));
    }

    #[test]
    fn opensuse_is_rhel_through_suse() {
        let d = check(
            linux("x86_64", OPENSUSE_LEAP_15)
                .dir("/lib64", &["ld-linux-x86-64.so.2"])
                .dir("/usr/lib64", &["libssl.so.1.1"]),
            "rhel-openssl-1.1.x",
            Some("1.1.x"),
        );
        assert_eq!(d.family, Some("rhel"));
    }

    #[test]
    fn rhel_family_without_libssl() {
        let d = check(linux("x86_64", RHEL_9), "rhel-openssl-1.1.x", None);
        warned(&d, "install OpenSSL");
    }

    // ---- Arch ----------------------------------------------------------------------------------------

    #[test]
    fn arch_uses_debian_engines_via_ldconfig() {
        let d = check(linux("x86_64", ARCH).ldconfig(LDCONFIG_ARCH), "debian-openssl-3.0.x", Some("3.0.x"));
        assert_eq!((d.distro, d.family), (Some("debian"), Some("arch")));
        check(linux("x86_64", ARCH).ldconfig(LDCONFIG_ARCH_WITH_COMPAT), "debian-openssl-1.1.x", Some("1.1.x"));
        check(linux("x86_64", MANJARO).ldconfig(LDCONFIG_ARCH), "debian-openssl-3.0.x", Some("3.0.x"));
    }

    #[test]
    fn arch_ignores_family_dirs_but_finds_usr_lib() {
        // Arch has no family directories; without ldconfig, /usr/lib is reached through the generic list.
        check(
            linux("x86_64", ARCH).dir("/usr/lib", &["libssl.so", "libssl.so.3"]),
            "debian-openssl-3.0.x",
            Some("3.0.x"),
        );
    }

    // ---- Alpine and musl -----------------------------------------------------------------------------

    #[test]
    fn alpine_3_18_libssl_in_lib() {
        let d = check(
            linux("x86_64", ALPINE_3_18).dir("/lib", &["ld-musl-x86_64.so.1", "libssl.so.3"]),
            "linux-musl-openssl-3.0.x",
            Some("3.0.x"),
        );
        assert_eq!((d.distro, d.family), (Some("musl"), Some("alpine")));
        assert_eq!(d.libssl_source.as_deref(), Some("/lib/libssl.so.3"));
        assert!(d.warnings.is_empty(), "{d:#?}");
    }

    #[test]
    fn alpine_3_21_libssl_in_usr_lib() {
        let d = check(
            linux("x86_64", ALPINE_3_21).dir("/lib", &["ld-musl-x86_64.so.1"]).dir("/usr/lib", &["libssl.so.3"]),
            "linux-musl-openssl-3.0.x",
            Some("3.0.x"),
        );
        assert_eq!(d.libssl_source.as_deref(), Some("/usr/lib/libssl.so.3"));
    }

    #[test]
    fn alpine_with_openssl_1_1_is_plain_linux_musl() {
        check(linux("x86_64", ALPINE_3_18).dir("/lib", &["libssl.so.1.1"]), "linux-musl", Some("1.1.x"));
    }

    #[test]
    fn alpine_without_libssl_is_linux_musl_with_a_warning() {
        let d = check(linux("x86_64", ALPINE_3_21).dir("/lib", &["ld-musl-x86_64.so.1"]), "linux-musl", None);
        warned(&d, "assumes OpenSSL 1.1.x");
    }

    #[test]
    fn musl_without_alpine_keeps_prismas_glibc_target_but_warns() {
        let d = check(
            linux("x86_64", VOID).dir("/lib", &["ld-musl-x86_64.so.1"]).dir("/usr/lib", &["libssl.so.3"]),
            "debian-openssl-3.0.x",
            Some("3.0.x"),
        );
        warned(&d, "musl libc (found `/lib/ld-musl-x86_64.so.1`");
        warned(&d, "`void`");
    }

    #[test]
    fn musl_package_on_glibc_is_not_musl() {
        let d = check(
            linux("x86_64", DEBIAN_12)
                .dir("/usr/lib/x86_64-linux-gnu", &["libssl.so.3"])
                .dir("/lib64", &["ld-linux-x86-64.so.2"])
                .dir("/lib", &["ld-musl-x86_64.so.1"]),
            "debian-openssl-3.0.x",
            Some("3.0.x"),
        );
        assert!(d.warnings.is_empty(), "{d:#?}");
    }

    // ---- other CPUs ----------------------------------------------------------------------------------

    #[test]
    fn linux_aarch64_glibc() {
        let d = check(
            linux("aarch64", DEBIAN_12).dir("/usr/lib/aarch64-linux-gnu", &["libssl.so.3"]),
            "linux-arm64-openssl-3.0.x",
            Some("3.0.x"),
        );
        assert!(d.prebuilt);
        check(linux("aarch64", RHEL_9).dir("/lib64", &["libssl.so.1.1"]), "linux-arm64-openssl-1.1.x", Some("1.1.x"));
    }

    #[test]
    fn linux_aarch64_musl() {
        check(
            linux("aarch64", ALPINE_3_21).dir("/lib", &["ld-musl-aarch64.so.1"]).dir("/usr/lib", &["libssl.so.3"]),
            "linux-musl-arm64-openssl-3.0.x",
            Some("3.0.x"),
        );
        check(
            linux("aarch64", ALPINE_3_18).dir("/lib", &["libssl.so.1.1"]),
            "linux-musl-arm64-openssl-1.1.x",
            Some("1.1.x"),
        );
        let d = check(
            linux("aarch64", ALPINE_3_18).dir("/lib", &["libssl.so.1.0.0"]),
            "linux-musl-arm64-openssl-1.1.x",
            Some("1.0.x"),
        );
        warned(&d, "no target");
    }

    #[test]
    fn linux_aarch64_without_libssl_assumes_1_1() {
        let d = check(linux("aarch64", UBUNTU_22_04), "linux-arm64-openssl-1.1.x", None);
        warned(&d, "linux-static-arm64");
    }

    #[test]
    fn linux_arm_32_bit_has_no_prebuilt_engines() {
        let d = check(linux("arm", RASPBIAN_11).ldconfig(LDCONFIG_RASPBIAN), "linux-arm-openssl-1.1.x", Some("1.1.x"));
        assert_eq!((d.distro, d.family), (Some("arm"), Some("debian")));
        assert!(!d.prebuilt);
        warned(&d, "`armv7l`");
        check(linux("arm", DEBIAN_12).ldconfig(LDCONFIG_DEBIAN_12), "linux-arm-openssl-3.0.x", Some("3.0.x"));
    }

    #[test]
    fn raspbian_on_aarch64_and_x86_64() {
        check(linux("aarch64", RASPBIAN_11).ldconfig(LDCONFIG_DEBIAN_12), "linux-arm64-openssl-3.0.x", Some("3.0.x"));
        let d = check(linux("x86_64", RASPBIAN_11).ldconfig(LDCONFIG_DEBIAN_12), "debian-openssl-3.0.x", Some("3.0.x"));
        warned(&d, "Raspbian");
    }

    #[test]
    fn other_linux_cpu_gets_prismas_name_but_nothing_prebuilt() {
        let facts = linux("s390x", UBUNTU_22_04).dir("/usr/lib/s390x-linux-gnu", &["libssl.so.3"]);
        let d = check(facts, "debian-openssl-3.0.x", Some("3.0.x"));
        assert!(!d.prebuilt);
        warned(&d, "`s390x`");
    }

    #[test]
    fn missing_uname_uses_the_rust_arch_for_debian_dirs() {
        let mut facts = linux("x86_64", DEBIAN_12).dir("/usr/lib/x86_64-linux-gnu", &["libssl.so.3"]);
        facts.machine = None;
        check(facts, "debian-openssl-3.0.x", Some("3.0.x"));
    }

    // ---- NixOS and unknown distributions -------------------------------------------------------------

    #[test]
    fn nixos_is_linux_nixos_on_any_cpu() {
        let d = check(linux("x86_64", NIXOS), "linux-nixos", None);
        assert!(!d.prebuilt);
        warned(&d, "no prebuilt engines for `linux-nixos`");
        assert!(!d.warnings.iter().any(|w| w.contains("libssl")), "libssl does not matter on NixOS: {d:#?}");
        check(linux("aarch64", NIXOS).openssl(OPENSSL_3_0), "linux-nixos", Some("3.0.x"));
    }

    #[test]
    fn unknown_distro_falls_back_to_debian() {
        let d = check(linux("x86_64", VOID).ldconfig(LDCONFIG_ARCH), "debian-openssl-3.0.x", Some("3.0.x"));
        assert_eq!((d.distro, d.family), (None, None));
        warned(&d, "`void`");
        let d = check(linux("x86_64", VOID), "debian-openssl-1.1.x", None);
        warned(&d, "assumes OpenSSL 1.1.x");
    }

    #[test]
    fn os_release_quoting_and_case() {
        check(linux("x86_64", "NAME=x\nID='Ubuntu'\n").openssl(OPENSSL_3_0), "debian-openssl-3.0.x", Some("3.0.x"));
        check(linux("x86_64", "ID=\"rocky\"\r\nID_LIKE=\"rhel centos fedora\"\r\n"), "rhel-openssl-1.1.x", None);
        let d = check(linux("x86_64", "NAME=nothing\n"), "debian-openssl-1.1.x", None);
        warned(&d, "no `ID=`");
    }

    // ---- other operating systems ---------------------------------------------------------------------

    #[test]
    fn darwin() {
        let d = check(host("darwin", "x86_64"), "darwin", None);
        assert!(d.prebuilt && d.warnings.is_empty() && d.distro.is_none(), "{d:#?}");
        check(host("darwin", "aarch64"), "darwin-arm64", None);
    }

    #[test]
    fn windows() {
        let d = check(host("windows", "x86_64"), "windows", None);
        assert!(d.prebuilt && d.warnings.is_empty(), "{d:#?}");
    }

    #[test]
    fn freebsd_by_release() {
        let d = check(host("freebsd", "x86_64").freebsd("13.2-RELEASE-p4\n"), "freebsd13", None);
        assert!(!d.prebuilt);
        warned(&d, "no prebuilt engines for `freebsd13`");
        check(host("freebsd", "x86_64").freebsd("14.1-RELEASE\n"), "freebsd14", None);
    }

    #[test]
    fn freebsd_outside_prismas_list_or_unknown() {
        let d = check(host("freebsd", "x86_64").freebsd("16.0-CURRENT\n"), "freebsd15", None);
        warned(&d, "FreeBSD 16");
        check(host("freebsd", "x86_64").freebsd("10.4-RELEASE\n"), "freebsd11", None);
        let d = check(host("freebsd", "aarch64"), "freebsd15", None);
        warned(&d, "FreeBSD release");
    }

    #[test]
    fn openbsd_and_netbsd() {
        check(host("openbsd", "x86_64"), "openbsd", None);
        check(host("netbsd", "x86_64"), "netbsd", None);
    }

    #[test]
    fn unknown_os_is_treated_as_linux() {
        let d = check(host("solaris", "x86_64"), "debian-openssl-1.1.x", None);
        assert!(!d.prebuilt);
        warned(&d, "`solaris`");
    }

    // ---- parsers -------------------------------------------------------------------------------------

    #[test]
    fn libssl_file_names() {
        let cases = [
            ("libssl.so.3", Some("3.0.x")),
            ("libssl.so.3.0.7", Some("3.0.x")),
            ("libssl.so.1.1", Some("1.1.x")),
            ("libssl.so.1.1.1q", Some("1.1.x")),
            ("libssl.so.1.0.0", Some("1.0.x")),
            ("libssl.so.1.0.2k", Some("1.0.x")),
            ("libssl.so.10", Some("1.0.x")),
            ("libssl.so.1", Some("1.0.x")),
            ("libssl.so.4", None),
            ("libssl.so.6", None),
            ("libssl.so.39", None),
            ("libssl.so.48", None),
            ("libssl.so", None),
            ("libssl3.so", None),
        ];
        for (name, expected) in cases {
            assert_eq!(parse_libssl_name(name).map(Libssl::as_str), expected, "{name}");
        }
        for name in ["libssl.so", "libssl.so.0.9.8", "libssl3.so", "libssl.a", "libssl.so.hmac"] {
            assert!(!is_libssl_candidate(name), "{name}");
        }
    }

    #[test]
    fn openssl_version_lines() {
        let cases = [
            (OPENSSL_3_0, Some(("3.0.x", "3.0.19"))),
            (OPENSSL_3_2, Some(("3.0.x", "3.2.1"))),
            (OPENSSL_1_1, Some(("1.1.x", "1.1.1w"))),
            (OPENSSL_1_0_FIPS, Some(("1.0.x", "1.0.2k-fips"))),
            ("OpenSSL 4.0.0 1 Apr 2026\n", None),
            ("OpenSSL 3.0\n", None),
            (LIBRESSL, None),
            ("", None),
        ];
        for (output, expected) in cases {
            assert_eq!(parse_openssl_version(output).map(|(v, t)| (v.as_str(), t)), expected, "{output:?}");
        }
    }

    // ---- resolve_target ------------------------------------------------------------------------------

    fn detected(target: &'static str) -> Detection {
        Detection {
            target,
            distro: None,
            family: None,
            libssl: None,
            libssl_source: None,
            warnings: Vec::new(),
            prebuilt: true,
        }
    }

    #[test]
    fn resolve_native_uses_the_host() {
        assert_eq!(resolve_target("native", || detected("darwin-arm64")), Ok("darwin-arm64"));
    }

    #[test]
    fn resolve_known_and_legacy_names_without_detecting() {
        let never = || -> Detection { panic!("detection must not run for a named target") };
        assert_eq!(resolve_target("linux-static-x64", never), Ok("linux-static-x64"));
        assert_eq!(resolve_target("linux-glibc-libssl1.1.0", never), Ok("debian-openssl-1.1.x"));
        assert_eq!(resolve_target("linux-musl-libssl1.1.0", never), Ok("linux-musl"));
    }

    #[test]
    fn resolve_unknown_with_suggestion() {
        let err = resolve_target("debian-openssl-3.0", || detected("darwin")).expect_err("not a target name");
        assert_eq!(err.to_string(), "unknown binary target `debian-openssl-3.0`");
        assert_eq!(err.hint().as_deref(), Some("did you mean `debian-openssl-3.0.x`?"));
    }

    #[test]
    fn resolve_unknown_without_suggestion_lists_the_names() {
        let err = resolve_target("zzz", || detected("darwin")).expect_err("not a target name");
        assert_eq!(err, TargetError::Unknown { name: "zzz".to_owned(), suggestion: None });
        let hint = err.hint().unwrap_or_default();
        assert!(hint.starts_with("known targets: darwin, darwin-arm64, windows, "), "{hint}");
        assert!(hint.contains("linux-static-x64") && hint.contains("`native`"), "{hint}");
    }

    // ---- this machine --------------------------------------------------------------------------------

    #[test]
    fn probe_this_machine() {
        let facts = HostFacts::probe();
        let d = detect(&facts);
        assert!(lookup(d.target).is_some(), "{facts:#?}\n{d:#?}");
        // Only claim what the machine itself says: on Debian x86_64 with OpenSSL 3 only in the multiarch
        // directory, Prisma (lab-verified) and pdp both say debian-openssl-3.0.x.
        let debian = facts.os_release.as_deref().is_some_and(|text| os_release_value(text, "ID") == "debian");
        if facts.os == "linux" && debian && facts.arch == "x86_64" {
            let multiarch = facts.libssl_dirs.iter().find(|(dir, _)| dir == "/usr/lib/x86_64-linux-gnu");
            let names = multiarch.map(|(_, names)| names.as_slice()).unwrap_or_default();
            if names.iter().any(|n| n == "libssl.so.3") && !names.iter().any(|n| n.starts_with("libssl.so.1")) {
                assert_eq!(d.target, "debian-openssl-3.0.x", "{facts:#?}\n{d:#?}");
                assert_eq!(d.libssl_source.as_deref(), Some("/usr/lib/x86_64-linux-gnu/libssl.so.3"));
            } else {
                assert_eq!(d.target, format!("debian-openssl-{}", d.libssl.unwrap_or("1.1.x")), "{facts:#?}\n{d:#?}");
            }
        }
    }
}
