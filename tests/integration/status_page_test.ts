/**
 * The status page in a real browser (Debian's headless Chromium driven by
 * playwright-core): it shows the snapshot, follows it by polling
 * `fragment`, says so when the server stops answering, fits a phone's
 * width, and works with JavaScript off.
 *
 * The page is served here by a tiny Deno.serve from a snapshot that grows
 * between requests. {@link checkStatusPage} only needs a base URL and what
 * to expect, so the real server's status listener can replace it.
 */
import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { renderFragment, renderPage } from "../../src/observe/page.ts";
import type { StatusSnapshot } from "../../src/observe/snapshot.ts";
import { snapshots } from "../helpers/snapshot.ts";
import { findProgram, freeLoopbackPort, isCi, startDnsmasq } from "../e2e/lab.ts";
import { freePort, startServe, waitForStatus } from "../helpers/program.ts";
import { writeRandomFile } from "../helpers/server.ts";

const CHROMIUM = "/usr/bin/chromium";
/** The longest any one wait for the page may take, in milliseconds. */
const WAIT_MS = 10_000;

const haveChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const ignore = !haveChromium && !isCi();
if (ignore) {
  console.warn(
    `SKIPPED status page browser test: ${CHROMIUM} is missing (Debian: apt-get install chromium)`,
  );
}

/** What the page at a base URL must show, and where to put its screenshots. */
export interface PageExpectations {
  /** Shown on the first load, with or without JavaScript. */
  initially: RegExp[];
  /** Shown within WAIT_MS once polling has picked up the server's changes. */
  later: RegExp[];
  /** Makes `fragment` fail and recover, to see the "not answering" notice; optional. */
  outage?: { start(): void; end(): void };
  /** The directory the screenshots are written to. */
  dir: string;
}

/** Waits (at most WAIT_MS) until the text of `main` matches every pattern. */
async function waitForText(page: Page, patterns: RegExp[], what: string): Promise<string> {
  const deadline = Date.now() + WAIT_MS;
  let text = "";
  while (Date.now() < deadline) {
    text = await page.innerText("main");
    if (patterns.every((p) => p.test(text))) return text;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const missing = patterns.filter((p) => !p.test(text)).join(", ");
  throw new Error(`${what}: after ${WAIT_MS} ms the page still lacks ${missing}:\n${text}`);
}

/** Waits (at most WAIT_MS) until the "not answering" notice is shown or hidden. */
async function waitForNotice(page: Page, visible: boolean): Promise<void> {
  await page.waitForSelector("#n", { state: visible ? "visible" : "hidden", timeout: WAIT_MS });
}

/** Opens the page with JavaScript, follows its updates, and checks it on a phone. */
async function checkLivePage(browser: Browser, base: string, e: PageExpectations): Promise<void> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  const foreign: string[] = [];
  page.on("pageerror", (err) => errors.push(String(err)));
  page.on("request", (req) => {
    if (!req.url().startsWith(base)) foreign.push(req.url());
  });
  await page.goto(`${base}/`, { timeout: WAIT_MS });
  await waitForText(page, e.initially, "first load");
  await waitForText(page, e.later, "polled update");
  if (e.outage) {
    e.outage.start();
    await waitForNotice(page, true);
    assert.match(await page.innerText("#n"), /^Server not answering since \d\d:\d\d:\d\d UTC$/);
    await page.screenshot({ path: `${e.dir}/status-outage.png` });
    e.outage.end();
    await waitForNotice(page, false);
  }
  const shot = `${e.dir}/status-page.png`;
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`status page screenshot: ${shot}`);
  assert.deepEqual(errors, [], "the page's script threw");
  assert.deepEqual(foreign, [], "the page loaded something from elsewhere");
  await context.close();
}

/** Opens the page on a phone-sized screen in dark mode: nothing wider than the screen. */
async function checkPhone(browser: Browser, base: string, e: PageExpectations): Promise<void> {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 },
    colorScheme: "dark",
  });
  const page = await context.newPage();
  await page.goto(`${base}/`, { timeout: WAIT_MS });
  await waitForText(page, e.initially, "phone");
  const fits = await page.evaluate(
    "document.documentElement.scrollWidth <= document.documentElement.clientWidth",
  );
  assert.equal(fits, true, "the page is wider than a phone's screen");
  const shot = `${e.dir}/status-phone-dark.png`;
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`phone (dark) screenshot: ${shot}`);
  await context.close();
}

/** Opens the page with JavaScript off: the server-side render alone shows the snapshot. */
async function checkWithoutJs(browser: Browser, base: string, e: PageExpectations): Promise<void> {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(`${base}/`, { timeout: WAIT_MS });
  await waitForText(page, e.initially, "without JavaScript");
  assert.equal(await page.isVisible("#n"), false);
  await page.screenshot({ path: `${e.dir}/status-nojs.png`, fullPage: true });
  await context.close();
}

/** The browser steps: everything a person would see at `base` (the status listener's URL). */
export async function checkStatusPage(base: string, e: PageExpectations): Promise<void> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox"],
    timeout: 30_000,
  });
  try {
    await checkLivePage(browser, base, e);
    await checkPhone(browser, base, e);
    await checkWithoutJs(browser, base, e);
  } finally {
    await browser.close();
  }
}

/** A server with a public address from DNS and one session downloading a 1 GB file. */
function sampleSnapshot(): StatusSnapshot {
  return snapshots(new Date().toISOString()).busySnapshot();
}

/** Moves the sample on: the download grows by 100 MB, and the address changes once. */
function tick(s: StatusSnapshot): void {
  s.now = new Date().toISOString();
  s.uptimeSeconds += 2;
  const t = s.sessions[0].transfer!;
  t.bytes = Math.min(t.bytes + 100_000_000, 950_000_000);
  s.stats.bytesOut += 100_000_000;
  const pa = s.publicAddress;
  if (pa.address === "5.6.7.8") {
    pa.history.push({ at: s.now, from: "5.6.7.8", to: "5.6.7.9" });
    pa.address = "5.6.7.9";
    s.told.remote.address = "5.6.7.9";
  }
}

Deno.test({
  name: "status page: a browser shows the snapshot, follows its updates, and works without JS",
  ignore,
  // playwright-core keeps a few of Node's handles open between its own calls.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!haveChromium) {
      throw new Error(`${CHROMIUM} is missing, and CI=true makes a missing prerequisite fail`);
    }
    const dir = await Deno.makeTempDir({ prefix: "pn-page-" });
    const snap = sampleSnapshot();
    let down = false;
    const html = (body: string) =>
      new Response(body, { headers: { "content-type": "text/html; charset=utf-8" } });
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/") return html(renderPage(snap));
      if (path !== "/fragment") return new Response("not found\n", { status: 404 });
      if (down) return new Response("down\n", { status: 503 });
      tick(snap);
      return html(renderFragment(snap));
    });
    try {
      await checkStatusPage(`http://127.0.0.1:${server.addr.port}`, {
        initially: [/Remote clients are told 5\.6\.7\.[89]/, /203\.0\.113\.5:40001/, /alice/],
        later: [
          /([3-9]\d\d\.\d) MB of 1\.0 GB/,
          /5\.6\.7\.8 → 5\.6\.7\.9/,
          /Remote clients are told 5\.6\.7\.9/,
        ],
        outage: { start: () => down = true, end: () => down = false },
        dir,
      });
    } finally {
      await server.shutdown();
    }
  },
});

/** The bytes the page shows for the running transfer ("12.3 MB of 200.0 MB"), in MB. */
async function shownMegabytes(page: Page): Promise<number> {
  const m = /([\d.]+) MB of 200\.0 MB/.exec(await page.innerText("main"));
  return m ? Number(m[1]) : -1;
}

Deno.test({
  name: "status page on the real server: a live download, a DNS change, and the endpoints agree",
  ignore: ignore || findProgram("dnsmasq") === null && !isCi(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    if (!haveChromium) throw new Error(`${CHROMIUM} is missing (CI=true)`);
    const dir = await Deno.makeTempDir({ prefix: "pn-page-live-" });
    await Deno.mkdir(`${dir}/pub`);
    await writeRandomFile(`${dir}/pub/big.bin`, 200_000_000);
    await Deno.writeTextFile(`${dir}/hosts`, "5.6.7.8 home.example.test\n");
    const dnsPort = await freeLoopbackPort();
    const dns = await startDnsmasq({
      listen: "127.0.0.1",
      port: dnsPort,
      hostsFile: `${dir}/hosts`,
    });
    const [port, statusPort, passive] = [freePort(), freePort(), freePort()];
    await Deno.writeTextFile(
      `${dir}/c.yaml`,
      [
        `listen: { address: 127.0.0.1, port: ${port} }`,
        `passive: { min_port: ${passive}, max_port: ${passive} }`,
        `public_address: { host: home.example.test, dns_server: "127.0.0.1:${dnsPort}", ` +
        "refresh_seconds: 5 }",
        `status: { port: ${statusPort} }`,
        'anonymous: { enabled: true, home: "pub" }',
        "",
      ].join("\n"),
    );
    const server = await startServe("c.yaml", { cwd: dir, port });
    // 200 MB at 8 MB/s: about 25 s, a transfer in progress for the whole test.
    const curl = new Deno.Command("curl", {
      args: ["-s", "--limit-rate", "8M", "-o", "/dev/null", `ftp://127.0.0.1:${port}/big.bin`],
      stdout: "null",
      stderr: "null",
    }).spawn();
    const base = `http://127.0.0.1:${statusPort}`;
    try {
      await waitForStatus(statusPort, (s) => s.publicAddress.address === "5.6.7.8");
      await dns.setHosts("5.6.7.9 home.example.test\n");
      await checkStatusPage(base, {
        initially: [/Remote clients are told 5\.6\.7\.[89]/, /anonymous/, /RETR \/big\.bin/],
        later: [/5\.6\.7\.8 → 5\.6\.7\.9/, /Remote clients are told 5\.6\.7\.9/],
        dir,
      });
      // The page's byte count grows as the download runs; JSON, metrics and page agree.
      const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
      try {
        const page = await browser.newPage();
        await page.goto(`${base}/`);
        const first = await shownMegabytes(page);
        await new Promise((r) => setTimeout(r, 2500));
        const later = await shownMegabytes(page);
        assert.ok(first >= 0 && later > first, `bytes shown: ${first} MB, then ${later} MB`);
        const snap = await (await fetch(`${base}/status`)).json() as StatusSnapshot;
        const metrics = await (await fetch(`${base}/metrics`)).text();
        assert.equal(snap.sessions.length, 1);
        const s = snap.sessions[0];
        assert.equal(s.transfer?.path, "/big.bin");
        assert.equal(s.transfer?.size, 200_000_000);
        assert.match(metrics, /^pitifulnat_sessions 1$/m);
        assert.match(metrics, /^pitifulnat_transfers_running 1$/m);
        const text = await page.innerText("main");
        assert.ok(text.includes(s.peer), `the page shows the session's peer ${s.peer}`);
        assert.ok(snap.stats.bytesOut > 0, "bytes in progress count");
      } finally {
        await browser.close();
      }
      const post = await fetch(`${base}/status`, { method: "POST" });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get("allow"), "GET, HEAD");
      await post.body?.cancel();
      const health = await fetch(`${base}/health`);
      assert.equal(health.status, 200);
      assert.match(
        await health.text(),
        /^ok: accepting connections, telling remote clients 5\.6\.7\.9/,
      );
    } finally {
      try {
        curl.kill("SIGKILL");
      } catch { /* ended */ }
      await curl.status;
      await server.stop();
      await dns.stop();
      // The screenshots stay, at the paths printed; the big file goes.
      await Deno.remove(`${dir}/pub`, { recursive: true }).catch(() => {});
    }
  },
});
