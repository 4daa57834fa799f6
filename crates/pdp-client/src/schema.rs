//! The schema patcher: turns the project's schema into the copy `prisma generate` reads for the Deno
//! client. It keeps one client generator (the first `prisma-client-js` / `prisma-client` block, or a new
//! one), sets its provider, `output` and (6.8+) `runtime = "deno"`, adds the `deno` preview feature where the
//! generation needs it, and removes exactly the preview features an edge client rejects, keeping every other
//! one. Other generator blocks are dropped from the copy (their preview features are merged into the kept
//! block, because Prisma validates the schema with the union of all generators' features).
//!
//! Deliberately not a Prisma schema parser: models, datasources and comments outside generator blocks are
//! copied byte for byte; inside the kept block, comments inside a rewritten `previewFeatures` array are
//! dropped (the rest of the block is kept line by line). Multi-file schemas are not handled.

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
    /// The `output` value, relative to the schema copy (e.g. `./generated`).
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
    let lines: Vec<&str> = source.lines().collect();
    let blocks = generator_blocks(&lines, schema)?;
    let wanted = provider_of(patch.generator);
    let chosen = blocks.iter().position(|b| b.provider().as_deref() == Some(wanted)).or_else(|| {
        blocks.iter().position(|b| matches!(b.provider().as_deref(), Some("prisma-client-js" | "prisma-client")))
    });

    // Features of every block, the chosen one first, deduplicated case-insensitively.
    let mut features: Vec<String> = Vec::new();
    let order = chosen.into_iter().chain((0..blocks.len()).filter(|i| Some(*i) != chosen));
    for i in order {
        for f in blocks[i].features() {
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

    let mut settings: Vec<(&str, Option<String>)> = vec![
        ("provider", Some(quote(wanted))),
        ("previewFeatures", (!kept.is_empty()).then(|| array(&kept))),
        ("output", Some(quote(patch.output))),
    ];
    if patch.generator == ClientGenerator::PrismaClientDeno {
        settings.push(("runtime", Some(quote("deno"))));
    }

    // Every line of the user's schema keeps its number, so Prisma's errors point at the user's lines: the
    // generator blocks are blanked where they stand and the patched generator is appended at the end.
    let mut out = String::with_capacity(source.len() + 256);
    let mut dropped = Vec::new();
    let in_generator = |n: usize| blocks.iter().any(|b| b.start <= n && n <= b.end);
    for (n, l) in lines.iter().enumerate() {
        if !in_generator(n) {
            out.push_str(l);
        }
        out.push('\n');
    }
    for (i, block) in blocks.iter().enumerate() {
        if Some(i) != chosen {
            dropped.push(block.name.clone());
        }
    }
    out.push_str(APPENDED);
    match chosen {
        Some(i) => out.push_str(&blocks[i].rewrite(&settings)),
        None => {
            out.push_str("generator client {\n");
            for (key, value) in &settings {
                if let Some(value) = value {
                    out.push_str(&format!("  {key} = {value}\n"));
                }
            }
            out.push_str("}\n");
        }
    }
    Ok(Patched { text: out, preview_features: kept, removed, dropped_generators: dropped })
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

/// Splits a line into code and `// comment` (a `//` inside a string is code).
fn split_comment(line: &str) -> (&str, &str) {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            return (&line[..i], &line[i..]);
        }
    }
    (line, "")
}

/// The string literals in `code` (no comments in it).
fn strings_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    let mut escaped = false;
    for c in code.chars() {
        match &mut current {
            Some(s) => match (escaped, c) {
                (true, c) => {
                    s.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => out.push(current.take().unwrap_or_default()),
                (false, c) => s.push(c),
            },
            None if c == '"' => current = Some(String::new()),
            None => {}
        }
    }
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `generator NAME {` → NAME.
fn generator_header(code: &str) -> Option<String> {
    let rest = code.trim().strip_prefix("generator")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let name = rest.trim().strip_suffix('{')?.trim();
    is_ident(name).then(|| name.to_owned())
}

fn generator_blocks(lines: &[&str], schema: &Path) -> Result<Vec<Block>, ClientError> {
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let (code, _) = split_comment(lines[i]);
        let Some(name) = generator_header(code) else {
            i += 1;
            continue;
        };
        let start = i;
        let unclosed = || ClientError::Unclosed {
            schema: schema.to_path_buf(),
            line: start + 1,
            what: format!("generator block `{name}`"),
        };
        let mut items = Vec::new();
        let mut j = i + 1;
        let end = loop {
            let Some(line) = lines.get(j) else { return Err(unclosed()) };
            let (code, comment) = split_comment(line);
            let trimmed = code.trim();
            if trimmed == "}" {
                break j;
            }
            if trimmed.is_empty() {
                items.push(Item::Verbatim((*line).to_owned()));
                j += 1;
                continue;
            }
            let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
            let Some((key, rest)) = code.split_once('=') else {
                // Not `key = value`: keep it; Prisma will report it.
                items.push(Item::Verbatim((*line).to_owned()));
                j += 1;
                continue;
            };
            let lead = key.to_owned();
            let key = key.trim().to_owned();
            let rest = rest.trim_start();
            if rest.starts_with('[') {
                let (value, trailing, last) =
                    array_value(lines, j, code.len() - rest.len()).ok_or_else(|| ClientError::Unclosed {
                        schema: schema.to_path_buf(),
                        line: j + 1,
                        what: format!("the `{key}` array"),
                    })?;
                let strings = strings_in(&strip_comments(&value));
                items.push(Item::Entry { indent, lead, key, value, strings, trailing });
                j = last + 1;
            } else {
                let value = rest.trim_end().to_owned();
                let strings = strings_in(&value);
                items.push(Item::Entry { indent, lead, key, value, strings, trailing: comment.trim().to_owned() });
                j += 1;
            }
        };
        blocks.push(Block {
            name,
            start,
            end,
            header: lines[start].trim_end().to_owned(),
            closing: lines[end].trim_end().to_owned(),
            items,
        });
        i = end + 1;
    }
    Ok(blocks)
}

/// The raw text of an array value starting at byte `col` of line `first` up to its `]`, the comment after
/// it, and the index of the line where it ends. `None` if it never closes.
fn array_value(lines: &[&str], first: usize, col: usize) -> Option<(String, String, usize)> {
    let mut value = String::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (k, line) in lines.iter().enumerate().skip(first) {
        let text = if k == first { &line[col..] } else { line };
        if k != first {
            value.push('\n');
        }
        let mut chars = text.char_indices().peekable();
        while let Some((pos, c)) = chars.next() {
            if in_string {
                value.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => {
                    in_string = true;
                    value.push(c);
                }
                '/' if chars.peek().is_some_and(|(_, n)| *n == '/') => {
                    value.push_str(&text[pos..]);
                    break;
                }
                '[' => {
                    depth += 1;
                    value.push(c);
                }
                ']' => {
                    value.push(c);
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        let after = text[pos + 1..].trim();
                        return Some((value, after.to_owned(), k));
                    }
                }
                _ => value.push(c),
            }
        }
        if split_comment(line).0.trim() == "}" && k != first {
            return None;
        }
    }
    None
}

fn strip_comments(value: &str) -> String {
    value.lines().map(|l| split_comment(l).0).collect::<Vec<_>>().join("\n")
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
