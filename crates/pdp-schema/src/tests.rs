//! The scanner's cases, each a schema and the blocks and settings it must yield (one `check` helper).

use super::*;

/// Renders what the scanner found: one line per block (`kind name first-last`, one-based lines), then one
/// per setting (`key = value | raw | comment | lines`).
fn render(schema: &Schema<'_>) -> String {
    let mut out = String::new();
    for b in &schema.blocks {
        out.push_str(&format!("{} {} {}-{}\n", b.kind, b.name, b.first_line + 1, b.last_line + 1));
        for e in &b.entries {
            out.push_str(&format!(
                "  {} = {} | {:?} | {:?} | {}-{}\n",
                e.key,
                show(&e.value),
                e.raw,
                e.comment,
                e.first_line + 1,
                e.last_line + 1
            ));
        }
    }
    out
}

fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => format!("{s:?}"),
        Value::Word(w) => w.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(show).collect::<Vec<_>>().join(", ")),
        Value::Call { name, args } => format!("{name}({})", args.iter().map(show).collect::<Vec<_>>().join(", ")),
    }
}

fn check(input: &str, expect: &str) {
    let got = match scan(input) {
        Ok(s) => render(&s),
        Err(e) => format!("error: {e}\n"),
    };
    assert_eq!(got.trim_end(), expect.trim_end(), "\n--- input ---\n{input}\n--- got ---\n{got}");
}

#[test]
fn blocks_and_settings() {
    check(
        r#"generator client {
  provider = "prisma-client-js"
}

datasource db {
  provider = "postgresql"
  url      = env("DATABASE_URL")
}

model User {
  id    Int    @id @default(autoincrement())
  email String @unique
}
"#,
        r#"generator client 1-3
  provider = "prisma-client-js" | "\"prisma-client-js\"" | "" | 2-2
datasource db 5-8
  provider = "postgresql" | "\"postgresql\"" | "" | 6-6
  url = env("DATABASE_URL") | "env(\"DATABASE_URL\")" | "" | 7-7
model User 10-13"#,
    );
}

#[test]
fn slashes_and_braces_inside_strings_are_text() {
    check(
        r#"datasource db {
  provider = "sqlite"
  url      = "file://./dev.db" // the // in the string is not a comment
}
model A {
  id  String @id @default("}")
  doc String @default("{ // not a comment }")
}
enum E {
  A
}
"#,
        r#"datasource db 1-4
  provider = "sqlite" | "\"sqlite\"" | "" | 2-2
  url = "file://./dev.db" | "\"file://./dev.db\"" | "// the // in the string is not a comment" | 3-3
model A 5-8
enum E 9-11"#,
    );
}

#[test]
fn comments_that_look_like_blocks_and_doc_comments() {
    check(
        "// datasource old {\n//   provider = \"mysql\"\n// }\n/// The client.\ngenerator client { // it\n  /// doc\n  provider = \"prisma-client\" /// trailing doc\n}\n",
        r#"generator client 5-8
  provider = "prisma-client" | "\"prisma-client\"" | "/// trailing doc" | 7-7"#,
    );
}

#[test]
fn arrays_over_several_lines_with_comments_and_escapes() {
    check(
        r#"generator client {
  provider        = "prisma-client-js"
  previewFeatures = [
    "metrics", // not on the edge
    "jsonProtocol",
    "tracing" // "not a feature"
  ] // after
  binaryTargets   = ["native", "a\"b", "c\\"]
}
"#,
        r#"generator client 1-9
  provider = "prisma-client-js" | "\"prisma-client-js\"" | "" | 2-2
  previewFeatures = ["metrics", "jsonProtocol", "tracing"] | "[\n    \"metrics\", // not on the edge\n    \"jsonProtocol\",\n    \"tracing\" // \"not a feature\"\n  ]" | "// after" | 3-7
  binaryTargets = ["native", "a\"b", "c\\"] | "[\"native\", \"a\\\"b\", \"c\\\\\"]" | "" | 8-8"#,
    );
}

#[test]
fn crlf_bom_and_odd_spacing() {
    check(
        "\u{feff}datasource  db{\r\n\tprovider=\"mysql\"\r\n  url = env( \"X\" )\r\n}\r\n",
        r#"datasource db 1-4
  provider = "mysql" | "\"mysql\"" | "" | 2-2
  url = env("X") | "env( \"X\" )" | "" | 3-3"#,
    );
}

#[test]
fn words_empty_values_and_lines_that_are_not_settings() {
    check(
        "generator client {\n  provider = prisma-client-js\n  output =\n  this is junk\n  engineType = \"library\" extra\n}\n",
        r#"generator client 1-6
  provider = prisma-client-js | "prisma-client-js" | "" | 2-2
  output =  | "" | "" | 3-3
  engineType = "library" | "\"library\" extra" | "" | 5-5"#,
    );
}

#[test]
fn nested_braces_in_models_and_views() {
    check(
        "view V {\n  id Int @unique\n  @@map(\"v\")\n}\ntype Address {\n  street String\n}\nmodel M {\n  data Json @default(\"{}\")\n}\n",
        "view V 1-4\ntype Address 5-7\nmodel M 8-10",
    );
}

#[test]
fn unclosed_blocks_arrays_and_calls_name_the_line() {
    check(
        "generator client {\n  provider = \"prisma-client-js\"\n",
        "error: line 1: generator block `client` is never closed",
    );
    check(
        "generator client {\n  provider = \"prisma-client-js\"\n  previewFeatures = [\"a\",\n}\n",
        "error: line 3: the `previewFeatures` array is never closed",
    );
    check("datasource db {\n  url = env(\"X\"\n}\n", "error: line 2: the `url` value is never closed");
    check("model A {\n  id Int @id\n", "error: line 1: model block `A` is never closed");
    // A settings block that runs into the next block's header.
    check(
        "generator client {\n  provider = \"x\"\n\nmodel A {\n  id Int @id\n}\n",
        "error: line 1: generator block `client` is never closed",
    );
    // An unterminated string ends at its line; the block still closes.
    check(
        "datasource db {\n  provider = \"postgresql\n}\n",
        "datasource db 1-3\n  provider = \"postgresql\" | \"\\\"postgresql\" | \"\" | 2-2",
    );
}

#[test]
fn attributes_with_arrays_and_an_unterminated_string_in_crlf() {
    check(
        "model Post {\r\n  id Int @id\r\n  a  Int\r\n  b  Int\r\n  @@index([a, b], map: \"{ab}\")\r\n}\r\ndatasource db {\r\n  provider = \"postgresql\r\n}\r\n",
        "model Post 1-6\ndatasource db 7-9\n  provider = \"postgresql\" | \"\\\"postgresql\" | \"\" | 8-8",
    );
}

#[test]
fn lookups() {
    let text = "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n}\ngenerator a {\n  provider = \"x\"\n}\ngenerator b {\n  provider = \"y\"\n  previewFeatures = [\"deno\", \"jsonProtocol\"]\n}\n";
    let schema = scan(text).expect("scans");
    let ds = schema.datasource().expect("datasource");
    assert_eq!(ds.string("provider"), Some("postgresql"));
    assert_eq!(ds.string("url"), Some("DATABASE_URL"));
    assert!(ds.get("directUrl").is_none());
    let names: Vec<&str> = schema.blocks_of("generator").map(|b| b.name).collect();
    assert_eq!(names, ["a", "b"]);
    let features = schema.blocks_of("generator").nth(1).and_then(|b| b.get("previewFeatures")).expect("features");
    assert_eq!(features.value.strings(), ["deno", "jsonProtocol"]);
    assert_eq!(features.lead, "  previewFeatures ");
    assert_eq!(Value::Str("a".into()).as_str(), Some("a"));
    assert_eq!(Value::Word("a".into()).as_str(), None);
}
