//! Multi-file schemas (a folder of `.prisma` files) through every command, with real parts: Prisma 5.22.0
//! (the `prismaSchemaFolder` preview, `prisma/schema/`), 6.19.3 (`package.json` points at `prisma/`) and
//! 7.10.0 (`prisma.config.ts` points at `prisma/`), each adopted by `pdp init`, migrated on the machine's
//! PostgreSQL, its Deno client built by the real Prisma CLI; 6.19.3 and 7.10.0 then served by `pdp serve`
//! (the real WASM engine and the real query-plan executor) to their real Deno clients and to the Windmill
//! script `pdp init` wrote. No doubles.

use crate::support::serve::{Serving, api_key, cached, db_name, drop_db, psql};
use crate::support::{Project, postgres_url};

/// A database URL on the machine's PostgreSQL for `name` (migrate creates the database).
fn db_url(name: &str) -> String {
    let url = postgres_url();
    format!("{}/{name}", url.rsplit_once('/').expect("a URL with a database").0)
}

/// `pdp init` for `version`, then its sample schema split into a folder the way each Prisma era lays one
/// out: `root` holds `schema.prisma` (generator and datasource) and `models/user.prisma` and
/// `models/post.prisma`. The init-written migration stays where it was; pdp.toml is removed so that the
/// next `pdp init` has to find the folder itself.
fn split_project(version: &str, db: &str, root: &str, preview: Option<&str>) -> Project {
    let p = Project::new();
    p.init(&["--prisma", version, "--database-url", &db_url(db)]);
    let sample = p.read("prisma/schema.prisma");
    let at = sample.find("model User").expect("the sample has a User model");
    let (head, models) = sample.split_at(at);
    let post = models.find("model Post").expect("and a Post model");
    let (user, post) = models.split_at(post);
    let head = match preview {
        Some(feature) => head.replacen(
            "provider = \"prisma-client-js\"",
            &format!("provider = \"prisma-client-js\"\n  previewFeatures = [\"{feature}\"]"),
            1,
        ),
        None => head.to_owned(),
    };
    std::fs::remove_file(p.path("prisma/schema.prisma")).expect("rm");
    std::fs::remove_file(p.path("pdp.toml")).expect("rm");
    p.write(&format!("{root}/schema.prisma"), &head);
    p.write(&format!("{root}/models/user.prisma"), user);
    p.write(&format!("{root}/models/post.prisma"), post);
    p
}

/// Runs `pdp init` again (the folder is there now) and checks it adopted the folder.
fn adopt(p: &Project, version: &str, db: &str, shown: &str) {
    let out = p.init(&["--prisma", version, "--database-url", &db_url(db)]);
    assert!(out.stderr.contains(&format!("adopted {shown} (a folder of 3 files, postgresql)")), "{}", out.all());
    assert!(p.read("pdp.toml").contains(&format!("schema = \"{shown}\"")), "{}", p.read("pdp.toml"));
}

/// Migrates, checks that both tables of the two model files exist, and checks `pdp doctor`'s schema line.
fn migrate_and_doctor(p: &Project, db: &str, shown: &str) {
    let out = cached(p, &["migrate", "deploy"]).expect_code(0);
    assert!(out.all().contains("1 migration found in prisma/migrations"), "{}", out.all());
    assert_eq!(
        psql(
            db,
            "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ('User', 'Post')"
        ),
        "Post,User"
    );
    let out = cached(p, &["doctor"]);
    assert!(out.stdout.contains(&format!("{shown} (a folder of 3 files) (postgresql)")), "{}", out.all());
}

/// Builds the client and checks that it holds the models of both files.
fn build(p: &Project, entry: &str) {
    let out = cached(p, &["build-client"]).expect_code(0);
    let manifest: serde_json::Value =
        serde_json::from_str(&p.read("dist/client/0.1.0/manifest.json")).expect("manifest is JSON");
    assert_eq!(manifest["entry"], entry, "{manifest}\n{}", out.all());
    fn text_below(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).expect("readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                text_below(&path, out);
            } else {
                out.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut client = String::new();
    text_below(&p.path("dist/client/0.1.0"), &mut client);
    assert!(client.contains("authorId") && client.contains("email"), "both model files reach the client");
    // Nothing changed: the next build is a no-op.
    let out = cached(p, &["build-client"]).expect_code(0);
    assert!(out.all().contains("is up to date"), "{}", out.all());
}

/// A Deno script writing and reading through `s` with the project's client (`option` is the client's
/// constructor option for the proxy URL), then the Windmill script `pdp init` wrote, unmodified.
fn query_through(p: &Project, s: &Serving, option: &str) {
    let key = api_key(p);
    p.write(
        "folder.ts",
        &format!(
            "const {{ PrismaClient }} = await import(new URL(Deno.env.get('PDP_CLIENT')!, `file://${{Deno.cwd()}}/`).href);\n\
             const prisma = new PrismaClient({{ {option}: `prisma://${{new URL(Deno.env.get('PDP_URL')!).host}}/?api_key=${{Deno.env.get('PDP_API_KEY')}}` }});\n\
             const u = await prisma.user.create({{ data: {{ email: `f-${{crypto.randomUUID()}}@x.io`, posts: {{ create: [{{ title: 'a' }}, {{ title: 'b' }}] }} }} }});\n\
             console.log(JSON.stringify({{ posts: await prisma.post.count({{ where: {{ authorId: u.id }} }}) }}));\n"
        ),
    );
    let (ok, out) = s.deno("folder.ts", &key, &[]);
    assert!(ok && out.contains(r#"{"posts":2}"#), "{out}\n--- pdp serve ---\n{}", s.log());
    // The Windmill script `pdp init` wrote, unmodified, called as Windmill calls it.
    let (ok, out) = s.run_windmill_example(p, &key);
    assert!(ok && out.contains(r#"{"users":1,"posts":2}"#), "{out}\n{}", s.log());
}

#[test]
fn prisma_5_preview_schema_folder_is_adopted_migrated_and_built() {
    let db = db_name("folder5");
    let p = split_project("5.22.0", &db, "prisma/schema", Some("prismaSchemaFolder"));
    // Prisma 5's default place for a folder: nothing points at it.
    adopt(&p, "5.22.0", &db, "prisma/schema");
    // Before 6.6, Prisma Migrate looks beside the folder: prisma/migrations, where init wrote it.
    migrate_and_doctor(&p, &db, "prisma/schema");
    build(&p, "edge.ts");

    // Without the preview feature Prisma 5 cannot read a folder: said before anything runs.
    let main = p.read("prisma/schema/schema.prisma");
    p.write("prisma/schema/schema.prisma", &main.replace("  previewFeatures = [\"prismaSchemaFolder\"]\n", ""));
    let out = cached(&p, &["build-client", "--force"]).expect_code(2);
    assert!(
        out.stderr.contains("which Prisma 5.22.0 reads only with the `prismaSchemaFolder` preview feature")
            && out.stderr.contains("hint: add `previewFeatures = [\"prismaSchemaFolder\"]`"),
        "{}",
        out.all()
    );
    // And Prisma 4.16 not at all.
    let toml = p.read("pdp.toml").replace("version = \"5.22.0\"", "version = \"4.16.2\"");
    p.write("pdp.toml", &toml);
    let out = cached(&p, &["build-client"]).expect_code(2);
    assert!(out.stderr.contains("but Prisma 4.16.2 reads a schema from one file"), "{}", out.all());
    assert!(p.path("dist/client/0.1.0/manifest.json").is_file(), "the previous build is untouched");
    drop_db(&db);
}

#[test]
fn prisma_6_schema_folder_from_package_json_is_served_to_its_deno_client() {
    let db = db_name("folder6");
    let p = split_project("6.19.3", &db, "prisma", None);
    p.write("package.json", r#"{ "name": "app", "prisma": { "schema": "./prisma" } }"#);
    adopt(&p, "6.19.3", &db, "prisma");
    // From 6.6 Prisma Migrate looks beside the datasource file: prisma/schema.prisma → prisma/migrations.
    migrate_and_doctor(&p, &db, "prisma");
    build(&p, "client.ts");
    // The WASM engine: no native engine can be downloaded here. The client uploads the merged schema its
    // generator made (pdp cannot reproduce Prisma's merge, so it does not pre-register a folder).
    let toml = p.read("pdp.toml").replacen("[serve]\n", "[serve]\nengine = \"wasm\"\n", 1);
    p.write("pdp.toml", &toml);
    let s = Serving::start(&p, &[]);
    query_through(&p, &s, "datasourceUrl");
    drop_db(&db);
}

#[test]
fn prisma_7_schema_folder_from_prisma_config_is_served_to_its_deno_client() {
    let db = db_name("folder7");
    let p = split_project("7.10.0", &db, "prisma", None);
    p.write(
        "prisma.config.ts",
        "import path from 'node:path';\nimport { defineConfig, env } from 'prisma/config';\n\
         export default defineConfig({\n  schema: path.join('prisma'),\n  migrations: { path: 'prisma/migrations' },\n\
         datasource: { url: env('DATABASE_URL') },\n});\n",
    );
    adopt(&p, "7.10.0", &db, "prisma");
    assert!(p.read("pdp.toml").contains("migrations = \"prisma/migrations\""), "{}", p.read("pdp.toml"));
    migrate_and_doctor(&p, &db, "prisma");
    build(&p, "client.ts");
    // Any file of the folder edited: the client is rebuilt.
    let post = p.read("prisma/models/post.prisma");
    p.write(
        "prisma/models/post.prisma",
        &post.replace("  title     String", "  title     String\n  subtitle  String?"),
    );
    let out = cached(&p, &["build-client"]).expect_code(0);
    assert!(!out.all().contains("is up to date"), "{}", out.all());
    p.write("prisma/models/post.prisma", &post);
    cached(&p, &["build-client"]).expect_code(0);
    let s = Serving::start(&p, &[]);
    query_through(&p, &s, "accelerateUrl");
    drop_db(&db);
}
