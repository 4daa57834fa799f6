// Loads pdp's status page in Debian's Chromium (headless, driven by playwright-core) and prints, as one JSON
// line, what the page shows once it has polled a fresh snapshot: the counts the serve_status test compares
// with /metrics. Usage: node status-page.mjs URL [USER PASSWORD] [SCREENSHOT.png]
import { chromium } from "playwright-core";

const [url, user, password, shot] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({
    // The project's own CA is not in Chromium's store; the certificate itself is checked by curl and Deno elsewhere.
    ignoreHTTPSErrors: true,
    httpCredentials: password ? { username: user, password } : undefined,
    viewport: { width: 1440, height: 1100 },
  });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  const external = [];
  page.on("request", (r) => !r.url().startsWith(new URL(url).origin) && external.push(r.url()));
  const resp = await page.goto(url);
  await page.waitForSelector("body[data-loaded='1']", { timeout: 20000 });
  // The snapshot shown must be one taken after this script started: wait for the next poll.
  const first = await page.getAttribute("#updated", "data-taken-at-ms");
  await page.waitForFunction((f) => document.getElementById("updated").dataset.takenAtMs !== f, first, { timeout: 15000 });
  const text = async (id) => (await page.textContent(`#${id}`)).trim();
  const out = {
    status: resp.status(),
    ready: await text("ready-status"),
    requests_total: Number(await text("requests-total")),
    children: Number(await text("children-count")),
    open_transactions: Number(await text("open-transactions")),
    cache_entries: Number(await text("cache-entries")),
    db_connections: await text("db-connections"),
    window: await text("window"),
    routes: await page.locator("#routes tr").count(),
    child_rows: await page.locator("#children tr").count(),
    errors,
    external,
    html: await page.content(),
  };
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
