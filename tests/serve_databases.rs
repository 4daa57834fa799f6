//! `pdp serve` on the databases beside PostgreSQL, with real parts end to end: the machine's MariaDB for
//! Prisma 7.10.0 (the real query-plan executor, its MariaDB adapter) and for Prisma 6.19.3 (the real WASM
//! engine and its MariaDB adapter), and a SQLite file for 6.19.3 (libSQL adapter) reached through a
//! relative `file:` URL; each project made by `pdp init`, migrated by `pdp migrate deploy`, its Deno client
//! built by `pdp build-client` and run by real Deno. Prisma 7 on SQLite cannot work (the executor has no
//! SQLite driver): serve refuses at start and says why. No doubles.

use std::process::Command;

use crate::support::serve::{Serving, api_key, cached, db_name};
use crate::support::{Project, mysql_url};

/// A MariaDB database URL of its own for one test (migrate creates the database).
fn mariadb_url(name: &str) -> String {
    let url = mysql_url();
    format!("{}/{name}", url.rsplit_once('/').expect("a URL with a database").0)
}

/// One value from MariaDB.
fn mariadb(sql: &str) -> String {
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-N", "-B", "-e", sql])
        .output()
        .expect("the mariadb client runs");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// One value from a SQLite file, read by Python's sqlite3 (no pdp code involved).
fn sqlite(file: &std::path::Path, sql: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])"])
        .arg(file)
        .arg(sql)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `pdp init` for `version` on `url`, migrated, its client built.
fn project(version: &str, url: &str, serve_extra: &str) -> Project {
    let p = Project::new();
    p.init(&["--prisma", version, "--database-url", url]);
    if !serve_extra.is_empty() {
        let toml = p.read("pdp.toml").replacen("[serve]\n", &format!("[serve]\n{serve_extra}"), 1);
        p.write("pdp.toml", &toml);
    }
    cached(&p, &["migrate", "deploy"]).expect_code(0);
    cached(&p, &["build-client"]).expect_code(0);
    p
}

/// The README's demo (Prisma 7): nested create, findMany with include, interactive transaction committed
/// and rolled back, batch transaction.
fn run_demo(p: &Project, s: &Serving) {
    let demo =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/deno/demo.ts"))
            .expect("examples/deno/demo.ts");
    p.write("demo.ts", &demo);
    let (ok, out) = s.deno("demo.ts", &api_key(p), &[]);
    assert!(ok && out.contains(r#"{"demo":"ok"}"#), "{out}\n--- pdp serve ---\n{}", s.log());
    assert!(out.contains(r#""rolledBack":true"#) && out.contains(r#""published":3"#), "{out}");
}

/// A Prisma 6 Deno client (`datasourceUrl`) through `s`: a nested create, a unique violation as P2002, an
/// interactive transaction committed and one rolled back, a batch, a raw count. Prints one JSON line.
const PRISMA_6_SCRIPT: &str = r#"
const { PrismaClient } = await import(new URL(Deno.env.get("PDP_CLIENT")!, `file://${Deno.cwd()}/`).href);
const prisma = new PrismaClient({ datasourceUrl: `prisma://${new URL(Deno.env.get("PDP_URL")!).host}/?api_key=${Deno.env.get("PDP_API_KEY")}` });
const email = `d-${crypto.randomUUID()}@x.io`;
const u = await prisma.user.create({ data: { email, posts: { create: [{ title: "a" }, { title: "b" }] } }, include: { posts: true } });
let dup = "none";
try { await prisma.user.create({ data: { email } }); } catch (e) { dup = e.code; }
await prisma.$transaction(async (tx) => { await tx.post.create({ data: { title: "c", authorId: u.id } }); });
let undone = false;
try {
  await prisma.$transaction(async (tx) => { await tx.post.create({ data: { title: "d", authorId: u.id } }); throw new Error("undo"); });
} catch (e) { undone = e.message === "undo"; }
const [published] = await prisma.$transaction([prisma.post.updateMany({ where: { authorId: u.id }, data: { published: true } })]);
const posts = await prisma.post.count({ where: { authorId: u.id } });
console.log(JSON.stringify({ posts, dup, undone, published: published.count, created: u.posts.length }));
"#;

fn run_prisma_6(p: &Project, s: &Serving) {
    p.write("six.ts", PRISMA_6_SCRIPT);
    let (ok, out) = s.deno("six.ts", &api_key(p), &[]);
    assert!(
        ok && out.contains(r#"{"posts":3,"dup":"P2002","undone":true,"published":3,"created":2}"#),
        "{out}\n--- pdp serve ---\n{}",
        s.log()
    );
}

#[test]
fn prisma_7_on_mariadb_through_the_executor() {
    let name = db_name("maria7");
    let p = project("7.10.0", &mariadb_url(&name), "");
    let s = Serving::start(&p, &[]);
    assert!(s.log().contains("mysql://root@127.0.0.1:3306/"), "{}", s.log());
    run_demo(&p, &s);
    assert_eq!(mariadb(&format!("SELECT count(*) FROM `{name}`.`Post` WHERE published")), "3");
    let (code, ready) = s.curl("GET", "/ready", &[], None);
    assert!(code == 200 && ready.contains("MariaDB"), "{ready}");
    drop(s);
    mariadb(&format!("DROP DATABASE `{name}`"));
}

#[test]
fn prisma_6_on_mariadb_through_the_wasm_engine() {
    let name = db_name("maria6");
    let p = project("6.19.3", &mariadb_url(&name), "engine = \"wasm\"\n");
    let s = Serving::start(&p, &[]);
    run_prisma_6(&p, &s);
    assert_eq!(mariadb(&format!("SELECT count(*) FROM `{name}`.`Post` WHERE published")), "3");
    drop(s);
    mariadb(&format!("DROP DATABASE `{name}`"));
}

#[test]
fn prisma_6_on_sqlite_reaches_the_file_migrate_wrote() {
    // Relative to the schema's directory, as Prisma resolves it: prisma/dev.db. pdp serve runs from the
    // project root and the engine in a directory of its own; both must open this file.
    let p = project("6.19.3", "file:./dev.db", "engine = \"wasm\"\n");
    let file = p.path("prisma/dev.db");
    assert!(file.is_file(), "migrate deploy created the SQLite file beside the schema");
    let s = Serving::start(&p, &[]);
    run_prisma_6(&p, &s);
    assert_eq!(sqlite(&file, "SELECT count(*) FROM Post WHERE published"), "3");
    assert_eq!(sqlite(&file, "SELECT count(*) FROM _prisma_migrations"), "1");
}

#[test]
fn prisma_7_on_sqlite_is_refused_at_start_with_the_reason() {
    let p = Project::new();
    p.init(&["--prisma", "7.10.0", "--database-url", "file:./dev.db"]);
    let out = cached(&p, &["serve", "--listen", "127.0.0.1:0"]).expect_code(2);
    assert!(
        out.stderr.contains(
            "cannot serve the project's Prisma 7.10.0: Prisma 7's query-plan executor has no driver for sqlite"
        ) && out.stderr.contains("hint: use PostgreSQL or MySQL/MariaDB for a Prisma 7 project"),
        "{}",
        out.all()
    );
    assert!(!out.stderr.contains("Starting the query-plan executor"), "nothing was started:\n{}", out.all());
}
