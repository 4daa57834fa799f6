// Load generator for `cargo xtask bench serve`: one Deno process, CONCURRENCY workers, each awaiting
// `findUnique` by a random id in a loop, against the accelerateUrl given. Warms up, then measures.
// Prints one line `requests=N rps=X p50=ms p90=ms p99=ms warmup=N` (warmup: requests before measuring).
const { PrismaClient } = await import(new URL(Deno.env.get("PDP_CLIENT")!, `file://${Deno.cwd()}/`).href);
const prisma = new PrismaClient({ accelerateUrl: Deno.env.get("ACCEL_URL")! });
const concurrency = Number(Deno.env.get("CONCURRENCY") ?? "32");
const warmupMs = Number(Deno.env.get("WARMUP_MS") ?? "3000");
const measureMs = Number(Deno.env.get("MEASURE_MS") ?? "10000");
const maxId = Number(Deno.env.get("MAX_ID") ?? "1000");

let warmup = 0;
async function phase(ms: number, record: number[] | null) {
  const end = performance.now() + ms;
  const worker = async () => {
    while (performance.now() < end) {
      const id = 1 + Math.floor(Math.random() * maxId);
      const t0 = performance.now();
      const u = await prisma.user.findUnique({ where: { id } });
      if (record) record.push(performance.now() - t0);
      else warmup++;
      if (!u) throw new Error(`user ${id} missing`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

await phase(warmupMs, null);
const lat: number[] = [];
const t0 = performance.now();
await phase(measureMs, lat);
const secs = (performance.now() - t0) / 1000;
lat.sort((a, b) => a - b);
const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))];
console.log(`requests=${lat.length} rps=${lat.length / secs} p50=${pct(50)} p90=${pct(90)} p99=${pct(99)} warmup=${warmup}`);
await prisma.$disconnect();
