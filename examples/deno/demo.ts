// The README's demo: a Prisma 7 Deno client (built by `pdp build-client`) querying through `pdp serve`
// over https with an API key. `cargo xtask demo` and the end-to-end tests run it.
//
//   PDP_CLIENT   path or URL of the generated client.ts   (e.g. dist/client/0.1.0/client.ts)
//   PDP_URL      the proxy, e.g. https://localhost:4466   (trust pdp's CA with DENO_CERT=.pdp/tls/ca.pem)
//   PDP_API_KEY  a key `[serve] api-keys` accepts
//
// Prints one JSON line per step, then `{"demo":"ok"}`.
const need = (name: string): string => {
  const v = Deno.env.get(name);
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const client = need("PDP_CLIENT");
const { PrismaClient } = await import(client.includes("://") ? client : new URL(client, `file://${Deno.cwd()}/`).href);
const host = new URL(need("PDP_URL")).host;
const prisma = new PrismaClient({ accelerateUrl: `prisma://${host}/?api_key=${encodeURIComponent(need("PDP_API_KEY"))}` });
const show = (step: string, value: unknown) => console.log(JSON.stringify({ step, value }));

try {
  const email = `ada-${crypto.randomUUID()}@example.com`;
  // A create with a nested relation.
  const ada = await prisma.user.create({
    data: { email, name: "Ada", posts: { create: [{ title: "Notes on the Analytical Engine" }, { title: "Sketch" }] } },
    include: { posts: true },
  });
  show("create", { id: ada.id, email: ada.email, posts: ada.posts.map((p: { title: string }) => p.title) });

  // A findMany with a filter and an include.
  const found = await prisma.user.findMany({ where: { email }, include: { posts: { orderBy: { id: "asc" } } } });
  show("findMany", found.map((u: { email: string; posts: unknown[] }) => ({ email: u.email, posts: u.posts.length })));

  // An interactive transaction: its writes and reads share one database transaction.
  const inTx = await prisma.$transaction(async (tx: typeof prisma) => {
    await tx.post.create({ data: { title: "Written in a transaction", authorId: ada.id } });
    return await tx.post.count({ where: { authorId: ada.id } });
  });
  show("interactive transaction", { postsInside: inTx });

  // One that throws: nothing it wrote stays.
  const rolledBack = await prisma
    .$transaction(async (tx: typeof prisma) => {
      await tx.post.create({ data: { title: "Never committed", authorId: ada.id } });
      throw new Error("changed my mind");
    })
    .then(() => false, (e: Error) => e.message === "changed my mind");
  show("rolled back", { rolledBack, posts: await prisma.post.count({ where: { authorId: ada.id } }) });

  // A batch: several operations in one transaction.
  const [published, total] = await prisma.$transaction([
    prisma.post.updateMany({ where: { authorId: ada.id }, data: { published: true } }),
    prisma.post.count({ where: { authorId: ada.id, published: true } }),
  ]);
  show("batch transaction", { updated: published.count, published: total });
  console.log(JSON.stringify({ demo: "ok" }));
} finally {
  await prisma.$disconnect();
}
