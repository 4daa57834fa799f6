//! The output patcher: turns what `prisma generate` wrote into a folder a Deno script can import from a
//! URL with no import map.
//!
//! - `prisma-client-js` + `deno` preview (4.x–6.7): the entry `deno/edge.ts` and the files it reaches
//!   through relative imports (`deno/edge.js`, `deno/index.d.ts`, `runtime/edge-esm.js`, …) are kept, the
//!   `deno/` folder is flattened so the entry is `edge.ts` at the top, and every relative import is
//!   rewritten to the new locations. The Node-only files Prisma also writes are left out.
//! - `prisma-client` with `runtime = "deno"` (6.8+): every file is kept; bare `@prisma/client/…` imports
//!   (the runtime, the query-compiler modules) become `npm:@prisma/client@<exact version>/…`, and the
//!   `__dirname` shim, which only works for `file:` URLs, is guarded so that an `https:` import works.
//!
//! Every relative import must resolve to a kept file and every bare import must be one pdp can pin;
//! anything else is an error rather than a client that fails at import time. Deliberately not a
//! JavaScript parser: imports are found by pattern on lines that are not comments (`*`, `//` lines are
//! skipped, except `@deno-types` / `@ts-types` pragmas), which is what Prisma's generated code looks like.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use pdp_config::prisma::ClientGenerator;
use regex::Regex;

use crate::ClientError;

/// The generated files: path relative to the generator output (`/`-separated) → content.
pub type Files = BTreeMap<String, Vec<u8>>;

/// What the output patcher needs to know.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The generator that wrote the files.
    pub generator: ClientGenerator,
    /// The Prisma CLI version (for messages).
    pub prisma_version: &'a str,
    /// The exact `@prisma/client` version the `npm:` specifiers pin (6.8+).
    pub runtime_version: &'a str,
}

/// The laid-out client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Files, relative to `<out>/<version>/`.
    pub files: Files,
    /// The file users import (`edge.ts` or `client.ts`).
    pub entry: String,
}

/// The entry Prisma writes for a generator, relative to its output.
pub fn generated_entry(generator: ClientGenerator) -> &'static str {
    match generator {
        ClientGenerator::JsDenoPreview => "deno/edge.ts",
        ClientGenerator::PrismaClientDeno => "client.ts",
    }
}

/// The entry in the laid-out folder (what the import URL ends with).
pub fn published_entry(generator: ClientGenerator) -> &'static str {
    match generator {
        ClientGenerator::JsDenoPreview => "edge.ts",
        ClientGenerator::PrismaClientDeno => "client.ts",
    }
}

/// The npm package the 6.8+ client's bare imports come from.
pub const RUNTIME_PACKAGE: &str = "@prisma/client";

static IMPORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+|@deno-types=|@ts-types=)(["'])([^"'\r\n]+)["']"#)
        .expect("valid regex")
});

/// The `__dirname` shim of 6.8+ `client.ts`; `fileURLToPath` throws for `https:` URLs.
const DIRNAME_SHIM: &str = "fileURLToPath(import.meta.url)";
const DIRNAME_GUARDED: &str = "(import.meta.url.startsWith(\"file:\") ? fileURLToPath(import.meta.url) : \"/\")";

fn is_source(path: &str) -> bool {
    [".ts", ".js", ".mjs", ".cjs", ".mts", ".cts"].iter().any(|e| path.ends_with(e))
}

/// One import found in a file: byte range of the specifier and its text.
struct Import {
    start: usize,
    end: usize,
    specifier: String,
}

fn imports(text: &str) -> Vec<Import> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let pragma = trimmed.starts_with("//") && (trimmed.contains("@deno-types=") || trimmed.contains("@ts-types="));
        let comment = trimmed.starts_with('*') || trimmed.starts_with("/*") || trimmed.starts_with("//");
        if !comment || pragma {
            for c in IMPORT.captures_iter(line) {
                let Some(m) = c.get(3) else { continue };
                out.push(Import { start: offset + m.start(), end: offset + m.end(), specifier: m.as_str().to_owned() });
            }
        }
        offset += line.len();
    }
    out
}

/// Joins a relative specifier onto the importing file's folder; `None` if it climbs above the root.
fn resolve(from_file: &str, specifier: &str) -> Option<String> {
    let mut parts: Vec<&str> = from_file.split('/').collect();
    parts.pop();
    for seg in specifier.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// The relative specifier from `from_file` to `to_file` (both root-relative), starting with `./` or `../`.
pub fn relative(from_file: &str, to_file: &str) -> String {
    let from: Vec<&str> = from_file.split('/').collect();
    let from_dir = &from[..from.len() - 1];
    let to: Vec<&str> = to_file.split('/').collect();
    let common = from_dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let ups = from_dir.len() - common;
    let rest = to[common..].join("/");
    if ups == 0 { format!("./{rest}") } else { format!("{}{rest}", "../".repeat(ups)) }
}

fn is_relative(s: &str) -> bool {
    s.starts_with("./") || s.starts_with("../")
}

fn is_url_like(s: &str) -> bool {
    ["node:", "npm:", "jsr:", "http:", "https:", "data:", "file:"].iter().any(|p| s.starts_with(p))
}

fn text_of<'f>(files: &'f Files, path: &str) -> Result<&'f str, ClientError> {
    let bytes = files
        .get(path)
        .ok_or_else(|| ClientError::UnresolvedImport { file: path.to_owned(), specifier: path.to_owned() })?;
    std::str::from_utf8(bytes).map_err(|_| ClientError::NotUtf8 { file: path.to_owned() })
}

/// Lays out and patches `files` as described in the module docs.
pub fn lay_out(files: &Files, ctx: &Context<'_>) -> Result<Layout, ClientError> {
    let entry = generated_entry(ctx.generator);
    if !files.contains_key(entry) {
        let found: Vec<&str> = files.keys().map(String::as_str).take(8).collect();
        return Err(ClientError::MissingEntry {
            version: ctx.prisma_version.to_owned(),
            entry: entry.to_owned(),
            found: if found.is_empty() { "none".to_owned() } else { found.join(", ") },
        });
    }
    // Which files to keep, and where they go.
    let kept: BTreeSet<String> = match ctx.generator {
        ClientGenerator::JsDenoPreview => closure(files, entry)?,
        ClientGenerator::PrismaClientDeno => files.keys().cloned().collect(),
    };
    let place = |path: &str| -> String {
        match ctx.generator {
            ClientGenerator::JsDenoPreview => path.strip_prefix("deno/").unwrap_or(path).to_owned(),
            ClientGenerator::PrismaClientDeno => path.to_owned(),
        }
    };
    let mut out = Files::new();
    for path in &kept {
        let new_path = place(path);
        let bytes = &files[path];
        let content = if is_source(path) {
            let text = std::str::from_utf8(bytes).map_err(|_| ClientError::NotUtf8 { file: path.clone() })?;
            rewrite(text, path, &new_path, files, &place, ctx)?.into_bytes()
        } else {
            bytes.clone()
        };
        if out.insert(new_path.clone(), content).is_some() {
            return Err(ClientError::UnresolvedImport { file: new_path, specifier: "(two files at one place)".into() });
        }
    }
    // pdp's own helper for the Accelerate extension's invalidations (a name Prisma's output never uses).
    if out.insert(ACCELERATE_HELPER.to_owned(), ACCELERATE_HELPER_TS.as_bytes().to_vec()).is_some() {
        return Err(ClientError::UnresolvedImport {
            file: ACCELERATE_HELPER.to_owned(),
            specifier: "(two files at one place)".into(),
        });
    }
    Ok(Layout { files: out, entry: published_entry(ctx.generator).to_owned() })
}

/// The helper `pdp build-client` writes beside the client: a `fetch` for `withAccelerate({ fetch })` that
/// sends the extension's invalidations to pdp instead of Prisma's host.
pub const ACCELERATE_HELPER: &str = "pdp-accelerate.ts";
const ACCELERATE_HELPER_TS: &str = include_str!("../assets/pdp-accelerate.ts");

/// `entry` and every file it reaches through relative imports.
fn closure(files: &Files, entry: &str) -> Result<BTreeSet<String>, ClientError> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![entry.to_owned()];
    while let Some(path) = todo.pop() {
        if !seen.insert(path.clone()) || !is_source(&path) {
            continue;
        }
        let text = text_of(files, &path)?;
        for import in imports(text) {
            if is_relative(&import.specifier) {
                let target = resolve(&path, &import.specifier)
                    .filter(|t| files.contains_key(t))
                    .ok_or_else(|| ClientError::UnresolvedImport { file: path.clone(), specifier: import.specifier })?;
                todo.push(target);
            }
        }
    }
    Ok(seen)
}

fn rewrite(
    text: &str,
    path: &str,
    new_path: &str,
    files: &Files,
    place: &dyn Fn(&str) -> String,
    ctx: &Context<'_>,
) -> Result<String, ClientError> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut last = 0;
    for import in imports(text) {
        let spec = &import.specifier;
        let replacement = if is_relative(spec) {
            let target = resolve(path, spec)
                .filter(|t| files.contains_key(t))
                .ok_or_else(|| ClientError::UnresolvedImport { file: path.to_owned(), specifier: spec.clone() })?;
            relative(new_path, &place(&target))
        } else if is_url_like(spec) {
            spec.clone()
        } else if let Some(rest) = spec.strip_prefix(RUNTIME_PACKAGE).filter(|r| r.is_empty() || r.starts_with('/')) {
            format!("npm:{RUNTIME_PACKAGE}@{}{rest}", ctx.runtime_version)
        } else {
            return Err(ClientError::UnknownBareImport { file: path.to_owned(), specifier: spec.clone() });
        };
        out.push_str(&text[last..import.start]);
        out.push_str(&replacement);
        last = import.end;
    }
    out.push_str(&text[last..]);
    if ctx.generator == ClientGenerator::PrismaClientDeno
        && out.contains(DIRNAME_SHIM)
        && !out.contains(DIRNAME_GUARDED)
    {
        out = out.replace(DIRNAME_SHIM, DIRNAME_GUARDED);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Files {
        list.iter().map(|(p, t)| ((*p).to_owned(), t.as_bytes().to_vec())).collect()
    }

    /// Lays out `input` and renders the result as `== path\ncontent` sections (or the error).
    fn check(generator: ClientGenerator, input: &[(&str, &str)], expect: &str) {
        let ctx = Context { generator, prisma_version: "7.10.1", runtime_version: "7.10.0" };
        let got = match lay_out(&files(input), &ctx) {
            Ok(l) => {
                let mut s = format!("entry {}\n", l.entry);
                let helper = l.files.get(ACCELERATE_HELPER).map(|c| String::from_utf8_lossy(c).into_owned());
                assert!(
                    helper.is_some_and(|h| h.contains("export function pdpFetch")),
                    "the Accelerate helper is laid out"
                );
                for (p, c) in l.files.iter().filter(|(p, _)| *p != ACCELERATE_HELPER) {
                    s.push_str(&format!("== {p}\n{}\n", String::from_utf8_lossy(c).trim_end()));
                }
                s
            }
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got.trim_end(), expect.trim_end(), "\n--- got ---\n{got}");
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative("edge.js", "runtime/edge-esm.js"), "./runtime/edge-esm.js");
        assert_eq!(relative("models/User.ts", "internal/class.ts"), "../internal/class.ts");
        assert_eq!(relative("a/b/c.ts", "a/d.ts"), "../d.ts");
        assert_eq!(resolve("deno/edge.js", ".././runtime/edge-esm.js").as_deref(), Some("runtime/edge-esm.js"));
        assert_eq!(resolve("edge.js", "../x.js"), None);
    }

    #[test]
    fn js_deno_output_is_flattened_and_node_files_left_out() {
        check(
            ClientGenerator::JsDenoPreview,
            &[
                ("deno/edge.ts", "import './polyfill.js'\n// @deno-types=\"./index.d.ts\"\nexport * from './edge.js'"),
                ("deno/polyfill.js", "globalThis.process = { env: Deno.env.toObject() }"),
                (
                    "deno/edge.js",
                    "import {\n  getPrismaClient,\n} from '.././runtime/edge-esm.js'\n/** import x from './nowhere' */",
                ),
                ("deno/index.d.ts", "import * as runtime from '.././runtime/index.d.ts';"),
                ("runtime/edge-esm.js", "var x = 1"),
                ("runtime/index.d.ts", "export {}"),
                ("runtime/library.js", "require('fs')"),
                ("index.js", "module.exports = require('./runtime/library.js')"),
                ("schema.prisma", "model A {}"),
            ],
            r#"entry edge.ts
== edge.js
import {
  getPrismaClient,
} from './runtime/edge-esm.js'
/** import x from './nowhere' */
== edge.ts
import './polyfill.js'
// @deno-types="./index.d.ts"
export * from './edge.js'
== index.d.ts
import * as runtime from './runtime/index.d.ts';
== polyfill.js
globalThis.process = { env: Deno.env.toObject() }
== runtime/edge-esm.js
var x = 1
== runtime/index.d.ts
export {}"#,
        );
    }

    #[test]
    fn prisma_client_bare_imports_are_pinned_and_dirname_guarded() {
        check(
            ClientGenerator::PrismaClientDeno,
            &[
                (
                    "client.ts",
                    "import * as path from 'node:path'\nimport { fileURLToPath } from 'node:url'\nglobalThis['__dirname'] = path.dirname(fileURLToPath(import.meta.url))\nimport * as runtime from \"@prisma/client/runtime/client\"\nimport * as $Class from \"./internal/class.ts\"\n * import { PrismaPg } from '@prisma/adapter-pg'",
                ),
                (
                    "internal/class.ts",
                    "getRuntime: async () => await import(\"@prisma/client/runtime/query_compiler_fast_bg.postgresql.mjs\"),\nconst { Buffer } = await import('node:buffer')\nimport type * as Prisma from \"../models.ts\"",
                ),
                ("models.ts", "export type * from './models/User.ts'"),
                ("models/User.ts", "import type * as runtime from \"@prisma/client/runtime/client\""),
            ],
            r#"entry client.ts
== client.ts
import * as path from 'node:path'
import { fileURLToPath } from 'node:url'
globalThis['__dirname'] = path.dirname((import.meta.url.startsWith("file:") ? fileURLToPath(import.meta.url) : "/"))
import * as runtime from "npm:@prisma/client@7.10.0/runtime/client"
import * as $Class from "./internal/class.ts"
 * import { PrismaPg } from '@prisma/adapter-pg'
== internal/class.ts
getRuntime: async () => await import("npm:@prisma/client@7.10.0/runtime/query_compiler_fast_bg.postgresql.mjs"),
const { Buffer } = await import('node:buffer')
import type * as Prisma from "../models.ts"
== models.ts
export type * from './models/User.ts'
== models/User.ts
import type * as runtime from "npm:@prisma/client@7.10.0/runtime/client""#,
        );
    }

    #[test]
    fn unresolvable_and_unknown_imports_are_errors() {
        check(
            ClientGenerator::PrismaClientDeno,
            &[("client.ts", "import * as x from './missing.ts'")],
            "error: `client.ts` imports `./missing.ts`, which is not among the generated files",
        );
        check(
            ClientGenerator::PrismaClientDeno,
            &[("client.ts", "import Decimal from 'decimal.js'")],
            "error: `client.ts` imports the bare specifier `decimal.js`, which pdp cannot pin to a version",
        );
        check(
            ClientGenerator::JsDenoPreview,
            &[("index.js", "")],
            "error: Prisma 7.10.1 did not write `deno/edge.ts` (generated files: index.js)",
        );
    }
}
