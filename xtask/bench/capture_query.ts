// For `cargo xtask bench serve`: records the `/query` request the generated Prisma 7 client sends for
// `findUnique({ where: { id: 7 } })` (through the accelerateUrl given), so that wrk can replay it with
// other ids without a client process eating the cores. Writes `query.json` (the body) in the cwd.
const send = globalThis.fetch;
globalThis.fetch = async (input: Request | URL | string, init?: RequestInit) => {
  const req = new Request(input, init);
  if (new URL(req.url).pathname === "/query") Deno.writeTextFileSync("query.json", await req.clone().text());
  return send(req);
};
const { PrismaClient } = await import(new URL(Deno.env.get("PDP_CLIENT")!, `file://${Deno.cwd()}/`).href);
const prisma = new PrismaClient({ accelerateUrl: Deno.env.get("ACCEL_URL")! });
const u = await prisma.user.findUnique({ where: { id: 7 } });
if (!u) throw new Error("user 7 missing");
