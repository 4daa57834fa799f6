//! The schema patcher: turns the project's schema into the copy `prisma generate` reads for the Deno
//! client. It keeps one client generator (the first `prisma-client-js` / `prisma-client` block, or a new
//! one), sets its provider, `output` and (6.8+) `runtime = "deno"`, adds the `deno` preview feature where the
//! generation needs it, and removes exactly the preview features an edge client rejects, keeping every other
//! one. Other generator blocks are dropped from the copy (their preview features are merged into the kept
//! block, because Prisma validates the schema with the union of all generators' features).
//!
//! Deliberately not a Prisma schema parser: the blocks are found by the one scanner (`pdp_schema`);
//! models, datasources and comments outside generator blocks are copied byte for byte; inside the kept
//! block, comments inside a rewritten `previewFeatures` array are dropped (the rest of the block is kept
//! line by line). A multi-file schema is patched as one ([`patch_files`]): each file keeps its lines.

use std::path::Path;

use pdp_config::prisma::ClientGenerator;

use crate::ClientError;

/// Preview features an edge (Data Proxy / Accelerate) client rejects, matched case-insensitively as a
/// substring, the broader of Prisma's two checks:
/// - 4.16.2 and 5.0–5.1 `generate --data-proxy` throw on a feature equal to `metrics`
///   (`checkFeatureFlags.ts`, "forbiddenPreviewFeatureWithDataProxyFlagMessage");
/// - 5.2+ and 6.x clients throw at construction over Accelerate when any feature *contains* `metrics`
///   ("The `metrics` preview feature is not yet available with Accelerate", read in the 5.22.0 and 6.7.0
///   `@prisma/client` runtimes).
///
/// Every other preview feature (`jsonProtocol`, `tracing`, `fullTextSearch`, …) is kept.
pub const EDGE_REJECTED: &[&str] = &["metrics"];

/// What to do to the schema.
#[derive(Clone, Copy, Debug)]
pub struct Patch<'a> {
    /// Which generator the generation uses.
    pub generator: ClientGenerator,
    /// The `output` value, relative to the schema copy's root (e.g. `./generated`; a folder's root).
    pub output: &'a str,
}

/// The patched schema and what changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patched {
    /// The schema text to generate from.
    pub text: String,
    /// The kept generator's preview features after patching.
    pub preview_features: Vec<String>,
    /// Preview features removed because an edge client rejects them.
    pub removed: Vec<String>,
    /// Generator blocks dropped from the copy.
    pub dropped_generators: Vec<String>,
}

/// The provider name of a generator kind.
pub fn provider_of(generator: ClientGenerator) -> &'static str {
    match generator {
        ClientGenerator::JsDenoPreview => "prisma-client-js",
        ClientGenerator::PrismaClientDeno => "prisma-client",
    }
}

/// The line before the generator block the patcher appends (tests and tools split the output on it).
pub const APPENDED: &str =
    "\n// Generator for pdp's Deno client build (the original generator blocks are blanked above).\n";

/// Patches `source` (the text of `schema`, named in errors).
pub fn patch(source: &str, schema: &Path, patch: &Patch<'_>) -> Result<Patched, ClientError> {
    let file = SourceFile { rel: "schema.prisma", path: schema, text: source };
    let mut out = patch_files(&[file], patch)?;
    let text = out.files.pop().map(|(_, t)| t).unwrap_or_default();
    Ok(Patched {
        text,
        preview_features: out.preview_features,
        removed: out.removed,
        dropped_generators: out.dropped_generators,
    })
}

/// One file of a schema to patch.
#[derive(Clone, Copy, Debug)]
pub struct SourceFile<'a> {
    /// Its path relative to the schema folder, `/`-separated (where its patched copy goes).
    pub rel: &'a str,
    /// Where it is, named in errors.
    pub path: &'a Path,
    /// Its text.
    pub text: &'a str,
}

/// A patched multi-file schema: every file, in the order given, as `(rel, text)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchedFiles {
    /// The files to generate from.
    pub files: Vec<(String, String)>,
    /// The kept generator's preview features after patching.
    pub preview_features: Vec<String>,
    /// Preview features removed because an edge client rejects them.
    pub removed: Vec<String>,
    /// Generator blocks dropped from the copy.
    pub dropped_generators: Vec<String>,
}

/// Patches a schema of one or more files as one schema: the generator blocks of every file are
/// considered together; the kept one is appended to the file that held it (with none, to the first file
/// with a `datasource` block, else the first file), with `output` made relative to that file's folder
/// (Prisma resolves it there) so that it reaches `patch.output` from the copy's root.
pub fn patch_files(files: &[SourceFile<'_>], patch: &Patch<'_>) -> Result<PatchedFiles, ClientError> {
    let lines: Vec<Vec<&str>> = files.iter().map(|f| f.text.lines().collect()).collect();
    let mut blocks: Vec<(usize, Block)> = Vec::new();
    let mut with_datasource = None;
    for (i, f) in files.iter().enumerate() {
        let (found, datasource) = generator_blocks(f.text, &lines[i], f.path)?;
        if datasource && with_datasource.is_none() {
            with_datasource = Some(i);
        }
        blocks.extend(found.into_iter().map(|b| (i, b)));
    }
    let wanted = provider_of(patch.generator);
    let chosen = blocks.iter().position(|(_, b)| b.provider().as_deref() == Some(wanted)).or_else(|| {
        blocks.iter().position(|(_, b)| matches!(b.provider().as_deref(), Some("prisma-client-js" | "prisma-client")))
    });

    // Features of every block, the chosen one first, deduplicated case-insensitively.
    let mut features: Vec<String> = Vec::new();
    let order = chosen.into_iter().chain((0..blocks.len()).filter(|i| Some(*i) != chosen));
    for i in order {
        for f in blocks[i].1.features() {
            if !features.iter().any(|g| g.eq_ignore_ascii_case(&f)) {
                features.push(f);
            }
        }
    }
    let (removed, mut kept): (Vec<String>, Vec<String>) =
        features.into_iter().partition(|f| EDGE_REJECTED.iter().any(|r| f.to_ascii_lowercase().contains(r)));
    match patch.generator {
        ClientGenerator::JsDenoPreview => {
            if !kept.iter().any(|f| f == "deno") {
                kept.push("deno".to_owned());
            }
        }
        // The `deno` preview was removed in 6.8.0; `runtime = "deno"` replaces it.
        ClientGenerator::PrismaClientDeno => kept.retain(|f| !f.eq_ignore_ascii_case("deno")),
    }

    let target = chosen.map(|c| blocks[c].0).or(with_datasource).unwrap_or(0);
    let depth = files.get(target).map_or(0, |f| f.rel.matches('/').count());
    let output = match patch.output.strip_prefix("./") {
        Some(rest) if depth > 0 => format!("{}{rest}", "../".repeat(depth)),
        _ if depth > 0 => format!("{}{}", "../".repeat(depth), patch.output),
        _ => patch.output.to_owned(),
    };
    let mut settings: Vec<(&str, Option<String>)> = vec![
        ("provider", Some(quote(wanted))),
        ("previewFeatures", (!kept.is_empty()).then(|| array(&kept))),
        ("output", Some(quote(&output))),
    ];
    if patch.generator == ClientGenerator::PrismaClientDeno {
        settings.push(("runtime", Some(quote("deno"))));
    }

    // Every line of the user's schema keeps its number, so Prisma's errors point at the user's lines: the
    // generator blocks are blanked where they stand and the patched generator is appended at the end.
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.iter().enumerate() {
        let mut text = String::with_capacity(f.text.len() + 256);
        let in_generator = |n: usize| blocks.iter().any(|(j, b)| *j == i && b.start <= n && n <= b.end);
        for (n, l) in lines[i].iter().enumerate() {
            if !in_generator(n) {
                text.push_str(l);
            }
            text.push('\n');
        }
        if i == target {
            text.push_str(APPENDED);
            match chosen {
                Some(c) => text.push_str(&blocks[c].1.rewrite(&settings)),
                None => {
                    text.push_str("generator client {\n");
                    for (key, value) in &settings {
                        if let Some(value) = value {
                            text.push_str(&format!("  {key} = {value}\n"));
                        }
                    }
                    text.push_str("}\n");
                }
            }
        }
        out.push((f.rel.to_owned(), text));
    }
    let dropped =
        blocks.iter().enumerate().filter(|(i, _)| Some(*i) != chosen).map(|(_, (_, b))| b.name.clone()).collect();
    Ok(PatchedFiles { files: out, preview_features: kept, removed, dropped_generators: dropped })
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn array(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "))
}

/// A `generator NAME { … }` block.
#[derive(Debug)]
struct Block {
    name: String,
    /// Line index of `generator NAME {`.
    start: usize,
    /// Line index of the closing `}`.
    end: usize,
    header: String,
    closing: String,
    items: Vec<Item>,
}

#[derive(Debug)]
enum Item {
    /// A blank or comment line, kept as written.
    Verbatim(String),
    /// `key = value  // comment`; `value` may span lines (an array).
    /// `lead` is everything before the `=` as written (indent, key, alignment).
    Entry { indent: String, lead: String, key: String, value: String, strings: Vec<String>, trailing: String },
}

impl Block {
    fn entry(&self, key: &str) -> Option<&[String]> {
        self.items.iter().find_map(|i| match i {
            Item::Entry { key: k, strings, .. } if k == key => Some(strings.as_slice()),
            _ => None,
        })
    }

    fn provider(&self) -> Option<String> {
        self.entry("provider").and_then(|s| s.first().cloned())
    }

    fn features(&self) -> Vec<String> {
        self.entry("previewFeatures").map(<[String]>::to_vec).unwrap_or_default()
    }

    /// The block with `settings` applied: existing keys replaced in place (or removed when `None`),
    /// missing ones appended before the closing brace.
    fn rewrite(&self, settings: &[(&str, Option<String>)]) -> String {
        let mut out = format!("{}\n", self.header);
        let mut done: Vec<&str> = Vec::new();
        let mut indent_seen = "  ".to_owned();
        for item in &self.items {
            match item {
                Item::Verbatim(l) => {
                    out.push_str(l);
                    out.push('\n');
                }
                Item::Entry { indent, lead, key, value, trailing, .. } => {
                    indent_seen.clone_from(indent);
                    let line = match settings.iter().find(|(k, _)| k == key) {
                        Some((k, new)) => {
                            done.push(k);
                            new.as_ref().map(|v| (v.as_str(), trailing.as_str()))
                        }
                        None => Some((value.as_str(), trailing.as_str())),
                    };
                    if let Some((v, trailing)) = line {
                        out.push_str(&format!("{lead}= {v}"));
                        if !trailing.is_empty() {
                            out.push(' ');
                            out.push_str(trailing);
                        }
                        out.push('\n');
                    }
                }
            }
        }
        for (key, value) in settings {
            if let (false, Some(value)) = (done.contains(key), value) {
                out.push_str(&format!("{indent_seen}{key} = {value}\n"));
            }
        }
        out.push_str(&self.closing);
        out.push('\n');
        out
    }
}

/// The generator blocks of `source` (split into `lines`), read with the schema scanner, and whether it has a
/// `datasource` block.
fn generator_blocks(source: &str, lines: &[&str], schema: &Path) -> Result<(Vec<Block>, bool), ClientError> {
    let scanned = pdp_schema::scan(source).map_err(|e| match e {
        pdp_schema::ScanError::Unclosed { line, what } => {
            ClientError::Unclosed { schema: schema.to_path_buf(), line, what }
        }
    })?;
    let line = |n: usize| lines.get(n).copied().unwrap_or("");
    let blocks = scanned
        .blocks_of("generator")
        .map(|b| {
            let mut items = Vec::new();
            // A setting on the header's line (`generator client { provider = …`) or on the closing
            // brace's (`… = "x" }`) becomes an item of its own; the header and the brace are rebuilt alone.
            let on_header = b.entries.first().is_some_and(|e| e.first_line == b.first_line);
            let on_closing = b.entries.last().is_some_and(|e| e.last_line == b.last_line);
            let mut n = if on_header { b.first_line } else { b.first_line + 1 };
            let end = if on_closing { b.last_line + 1 } else { b.last_line };
            while n < end {
                match b.entries.iter().find(|e| e.first_line == n) {
                    Some(e) => {
                        let lead = if n == b.first_line {
                            let after = e.lead.split_once('{').map_or(e.lead, |(_, rest)| rest).trim_start();
                            format!("  {after}")
                        } else {
                            e.lead.to_owned()
                        };
                        let indent: String = lead.chars().take_while(|c| c.is_whitespace()).collect();
                        items.push(Item::Entry {
                            indent,
                            lead,
                            key: e.key.to_owned(),
                            value: e.raw.to_owned(),
                            strings: e.value.strings().into_iter().map(str::to_owned).collect(),
                            trailing: e.comment.to_owned(),
                        });
                        n = e.last_line + 1;
                    }
                    None => {
                        items.push(Item::Verbatim(line(n).to_owned()));
                        n += 1;
                    }
                }
            }
            let header =
                if on_header { format!("generator {} {{", b.name) } else { line(b.first_line).trim_end().to_owned() };
            let closing = if on_closing { "}".to_owned() } else { line(b.last_line).trim_end().to_owned() };
            Block { name: b.name.to_owned(), start: b.first_line, end: b.last_line, header, closing, items }
        })
        .collect();
    Ok((blocks, scanned.datasource().is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JS: ClientGenerator = ClientGenerator::JsDenoPreview;
    const NEW: ClientGenerator = ClientGenerator::PrismaClientDeno;

    /// Patches `input` for `generator` and compares the text plus a summary line.
    /// Patches `input` and compares the appended generator block (and the feature lists) with `expect`;
    /// also asserts the property that keeps Prisma's error lines right: every line of `input` stands at its
    /// own line number, unchanged or (generator lines) blanked, and no generator block is left above.
    fn check(generator: ClientGenerator, input: &str, expect: &str) {
        let got = match patch(input, Path::new("schema.prisma"), &Patch { generator, output: "./generated" }) {
            Ok(p) => {
                let (body, block) = p.text.split_once(APPENDED).expect("the appended generator follows the marker");
                let body: Vec<&str> = body.lines().collect();
                assert!(body.len() >= input.lines().count(), "lines were removed:\n{}", p.text);
                for (n, (before, after)) in input.lines().zip(&body).enumerate() {
                    assert!(
                        after == &before || after.is_empty(),
                        "line {} moved or changed: {before:?} -> {after:?}",
                        n + 1
                    );
                }
                assert!(
                    !body.iter().any(|l| l.trim_start().starts_with("generator ")),
                    "a generator block was left:\n{}",
                    p.text
                );
                format!(
                    "{block}-- features {:?} removed {:?} dropped {:?}",
                    p.preview_features, p.removed, p.dropped_generators
                )
            }
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got.trim_end(), expect.trim_end(), "\n--- got ---\n{got}");
    }

    #[test]
    fn js_generator_gets_deno_and_output() {
        check(
            JS,
            r#"
generator client {
  provider = "prisma-client-js"
}

datasource db {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}
"#,
            r#"generator client {
  provider = "prisma-client-js"
  previewFeatures = ["deno"]
  output = "./generated"
}
-- features ["deno"] removed [] dropped []"#,
        );
    }

    #[test]
    fn metrics_is_removed_and_everything_else_kept_over_several_lines_with_comments() {
        check(
            JS,
            r#"
generator client {
  provider        = "prisma-client-js" // the Node client
  // server-side features
  previewFeatures = [
    "metrics", // not on the edge
    "jsonProtocol",
    "tracing" // "not a feature"
  ]
  output          = "../node_modules/.prisma/client"
  binaryTargets   = ["native", "linux-musl"]
}
"#,
            r#"generator client {
  provider        = "prisma-client-js" // the Node client
  // server-side features
  previewFeatures = ["jsonProtocol", "tracing", "deno"]
  output          = "./generated"
  binaryTargets   = ["native", "linux-musl"]
}
-- features ["jsonProtocol", "tracing", "deno"] removed ["metrics"] dropped []"#,
        );
    }

    #[test]
    fn single_line_array_keeps_order_and_existing_deno() {
        check(
            JS,
            "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"deno\", \"Metrics\", \"fullTextSearch\"]\n}\n",
            "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"deno\", \"fullTextSearch\"]\n  output = \"./generated\"\n}\n-- features [\"deno\", \"fullTextSearch\"] removed [\"Metrics\"] dropped []",
        );
    }

    #[test]
    fn other_generators_are_dropped_and_their_features_merged() {
        check(
            JS,
            r#"generator erd {
  provider = "prisma-erd-generator"
  previewFeatures = ["multiSchema"]
}

generator client {
  provider = "prisma-client-js"
  previewFeatures = ["metrics"]
}
model A {
  id Int @id
}
"#,
            r#"generator client {
  provider = "prisma-client-js"
  previewFeatures = ["multiSchema", "deno"]
  output = "./generated"
}
-- features ["multiSchema", "deno"] removed ["metrics"] dropped ["erd"]"#,
        );
    }

    #[test]
    fn prisma_client_generator_gets_runtime_deno() {
        check(
            NEW,
            r#"generator client {
  provider = "prisma-client"
  output   = "../generated/prisma"
  runtime  = "nodejs"
}
"#,
            r#"generator client {
  provider = "prisma-client"
  output   = "./generated"
  runtime  = "deno"
}
-- features [] removed [] dropped []"#,
        );
        // A 6.x schema still on prisma-client-js is switched; the removed `deno` preview goes away.
        check(
            NEW,
            "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"deno\", \"relationJoins\"]\n}\n",
            "generator client {\n  provider = \"prisma-client\"\n  previewFeatures = [\"relationJoins\"]\n  output = \"./generated\"\n  runtime = \"deno\"\n}\n-- features [\"relationJoins\"] removed [] dropped []",
        );
    }

    /// A folder's files patched as one schema: `(rel, text)` pairs in, the patched files out as
    /// `== rel` headers and text, then the features line.
    fn check_files(generator: ClientGenerator, input: &[(&str, &str)], expect: &str) {
        let files: Vec<SourceFile<'_>> =
            input.iter().map(|(rel, text)| SourceFile { rel, path: Path::new(rel), text }).collect();
        let got = match patch_files(&files, &Patch { generator, output: "./generated" }) {
            Ok(p) => {
                let mut out = String::new();
                for (rel, text) in &p.files {
                    out.push_str(&format!("== {rel}\n{text}"));
                }
                format!(
                    "{out}-- features {:?} removed {:?} dropped {:?}",
                    p.preview_features, p.removed, p.dropped_generators
                )
            }
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got.trim_end(), expect.trim_end(), "\n--- got ---\n{got}");
    }

    #[test]
    fn a_folders_generator_stays_in_its_file_with_output_from_that_files_folder() {
        check_files(
            JS,
            &[
                (
                    "models/gen.prisma",
                    "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"prismaSchemaFolder\", \"metrics\"]\n}\n",
                ),
                ("models/user.prisma", "model User {\n  id Int @id\n}\n"),
                (
                    "schema.prisma",
                    "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n}\ngenerator docs {\n  provider = \"prisma-docs\"\n  previewFeatures = [\"views\"]\n}\n",
                ),
            ],
            "== models/gen.prisma\n\n\n\n\n\n// Generator for pdp's Deno client build (the original generator blocks are blanked above).\n\
             generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"prismaSchemaFolder\", \"views\", \"deno\"]\n  output = \"../generated\"\n}\n\
             == models/user.prisma\nmodel User {\n  id Int @id\n}\n\
             == schema.prisma\ndatasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n}\n\n\n\n\n\
             -- features [\"prismaSchemaFolder\", \"views\", \"deno\"] removed [\"metrics\"] dropped [\"docs\"]",
        );
    }

    #[test]
    fn a_folder_without_a_generator_gets_one_in_the_datasource_file() {
        check_files(
            NEW,
            &[
                ("a/models.prisma", "model A {\n  id Int @id\n}\n"),
                ("b/db/source.prisma", "datasource db {\n  provider = \"sqlite\"\n}\n"),
            ],
            "== a/models.prisma\nmodel A {\n  id Int @id\n}\n\
             == b/db/source.prisma\ndatasource db {\n  provider = \"sqlite\"\n}\n\n// Generator for pdp's Deno client build (the original generator blocks are blanked above).\n\
             generator client {\n  provider = \"prisma-client\"\n  output = \"../../generated\"\n  runtime = \"deno\"\n}\n\
             -- features [] removed [] dropped []",
        );
    }

    #[test]
    fn a_schema_without_generator_gets_one() {
        check(
            JS,
            "model A {\n  id Int @id\n}\n",
            "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"deno\"]\n  output = \"./generated\"\n}\n-- features [\"deno\"] removed [] dropped []",
        );
    }

    #[test]
    fn comments_that_look_like_generators_and_strings_with_slashes() {
        check(
            JS,
            "// generator old {\ngenerator client {\n  provider = \"prisma-client-js\"\n  output = \"a//b\" // note\n}\n",
            "generator client {\n  provider = \"prisma-client-js\"\n  output = \"./generated\" // note\n  previewFeatures = [\"deno\"]\n}\n-- features [\"deno\"] removed [] dropped []",
        );
    }

    #[test]
    fn settings_on_the_header_or_the_closing_line() {
        check(
            JS,
            "generator client { provider = \"prisma-client-js\"\n  previewFeatures = [\"tracing\"] }\n",
            "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"tracing\", \"deno\"]\n  output = \"./generated\"\n}\n-- features [\"tracing\", \"deno\"] removed [] dropped []",
        );
    }

    #[test]
    fn unclosed_blocks_and_arrays_name_the_line() {
        check(
            JS,
            "generator client {\n  provider = \"prisma-client-js\"\n",
            "error: schema.prisma:1: generator block `client` is never closed",
        );
        check(
            JS,
            "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"a\",\n}\n",
            "error: schema.prisma:3: the `previewFeatures` array is never closed",
        );
    }
}
