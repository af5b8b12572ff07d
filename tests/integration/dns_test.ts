/**
 * The public address comes from a real DNS server (dnsmasq on loopback)
 * whose record changes while the server runs: an open session's next PASV
 * carries the new address, a DNS outage keeps the last good one, and
 * `pitifulnat check` reports what it resolved and from where.
 */
import assert from "node:assert/strict";
import { parsePasvReply } from "../../src/ftp/codec.ts";
import { PublicAddress } from "../../src/nat/public_address.ts";
import { startServe, waitForStatus } from "../helpers/program.ts";
import { RawClient } from "../helpers/raw.ts";
import { PASSWORD, run, startServer, USER } from "../helpers/server.ts";
import { type Dnsmasq, findProgram, freeLoopbackPort, isCi, startDnsmasq } from "../e2e/lab.ts";

const NAME = "myhome.example.test";
const FIRST = "203.0.113.7";
const SECOND = "203.0.113.99";
const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const REPO = new URL("../../", import.meta.url).pathname;

const haveDnsmasq = findProgram("dnsmasq") !== null;
const ignore = !haveDnsmasq && !isCi();
if (ignore) {
  console.warn(
    "SKIPPED real-DNS tests: dnsmasq is not installed (Debian: apt-get install dnsmasq-base)",
  );
}

function requireDnsmasq(): void {
  if (!haveDnsmasq) {
    throw new Error("dnsmasq is not installed, and CI=true makes a missing prerequisite fail");
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A dnsmasq on a free loopback port serving `hosts`, stopped after `fn`. */
async function withDnsmasq(
  hosts: string,
  fn: (dns: Dnsmasq, port: number, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pn-dns-" });
  let dns: Dnsmasq | null = null;
  try {
    const hostsFile = `${dir}/hosts`;
    await Deno.writeTextFile(hostsFile, hosts);
    const port = await freeLoopbackPort();
    dns = await startDnsmasq({ listen: "127.0.0.1", port, hostsFile });
    await fn(dns, port, dir);
  } finally {
    await dns?.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function pasvHost(c: RawClient): Promise<string> {
  const r = await c.cmd("PASV");
  assert.equal(r.code, 227, r.text);
  const hp = parsePasvReply(r.text);
  assert.ok(hp, `no address in ${r.text}`);
  return hp.host;
}

Deno.test({
  name: "dns: an open session's PASV follows the DNS record, and keeps it when DNS goes away",
  ignore,
  async fn() {
    requireDnsmasq();
    await withDnsmasq(`${FIRST} ${NAME}\n`, async (dns, port) => {
      const publicAddress = new PublicAddress({
        host: NAME,
        dnsServer: { ipAddr: "127.0.0.1", port },
        refreshMs: 1000,
        // A stopped DNS server is only noticed by a timeout; keep it short.
        timeoutMs: 1500,
      });
      await publicAddress.start();
      assert.equal(publicAddress.current(), FIRST);
      assert.equal(publicAddress.snapshot().dnsServer, `127.0.0.1:${port}`);
      // On loopback every client is in the default LAN networks; narrow them so
      // that this client is "remote" and is told the public address.
      const srv = await startServer({
        publicAddress,
        tweak: (c) => {
          c.lan_networks = ["10.0.0.0/8"];
        },
      });
      const [c, greeting] = await RawClient.connect("127.0.0.1", srv.port);
      try {
        assert.equal(greeting.code, 220);
        await c.login(USER, PASSWORD);
        assert.equal(await pasvHost(c), FIRST);

        await dns.setHosts(`${SECOND} ${NAME}\n`);
        const changedAt = Date.now();
        let seen = FIRST;
        for (let i = 0; i < 100 && Date.now() - changedAt < 10_000; i++) {
          seen = await pasvHost(c);
          if (seen === SECOND) break;
          await sleep(100);
        }
        assert.equal(seen, SECOND, "the open session never saw the new address within 10 s");
        assert.ok(publicAddress.snapshot().resolutions.ok >= 2);

        await dns.stop();
        const stoppedAt = Date.now();
        while (publicAddress.snapshot().consecutiveFailures === 0) {
          assert.ok(Date.now() - stoppedAt < 10_000, "no failed lookup within 10 s of the stop");
          await sleep(100);
        }
        const snap = publicAddress.snapshot();
        assert.ok(snap.lastError, "a failed lookup records its error");
        assert.equal(snap.address, SECOND);
        assert.equal(await pasvHost(c), SECOND, "the last good address stays in use");
        const [c2] = await RawClient.connect("127.0.0.1", srv.port);
        try {
          await c2.login(USER, PASSWORD);
          assert.equal(await pasvHost(c2), SECOND, "a new session is told it too");
        } finally {
          c2.close();
        }
      } finally {
        c.close();
        await srv.close();
      }
    });
  },
});

async function check(dir: string, config: string) {
  const file = `${dir}/check.yaml`;
  await Deno.writeTextFile(file, config);
  const r = await run(Deno.execPath(), ["run", "-A", MAIN, "check", "--config", file], {
    cwd: REPO,
    timeoutMs: 60_000,
  });
  return { ...r, out: r.stdout + r.stderr };
}

/** An address no test contacts, outside every special range, so check can call it public. */
const PUBLIC = "5.6.7.8";

/** A config check judges meant for the internet: listening beyond loopback, with a public name. */
async function checkConfig(
  host: string,
  dnsPort: number,
  options: { controlPort?: number; extra?: string[] } = {},
): Promise<string> {
  const controlPort = options.controlPort ?? await freeLoopbackPort();
  return [
    `listen: { address: 0.0.0.0, port: ${controlPort} }`,
    "passive: { min_port: 41000, max_port: 41009 }",
    `public_address: { host: ${host}, dns_server: "127.0.0.1:${dnsPort}", refresh_seconds: 5 }`,
    'anonymous: { enabled: true, home: "." }',
    ...options.extra ?? [],
    "",
  ].join("\n");
}

Deno.test({
  name: "dns: check resolves through the configured DNS server and fails on an unknown name",
  ignore,
  async fn() {
    requireDnsmasq();
    const docName = "example-range.example.test";
    await withDnsmasq(`${PUBLIC} ${NAME}\n${FIRST} ${docName}\n`, async (_dns, port, dir) => {
      const ok = await check(dir, await checkConfig(NAME, port));
      assert.equal(ok.code, 0, ok.out);
      assert.match(ok.out, new RegExp(`${NAME} -> ${PUBLIC.replaceAll(".", "\\.")}`));
      assert.match(ok.out, new RegExp(`DNS server 127\\.0\\.0\\.1:${port}`));
      assert.match(
        ok.out,
        new RegExp(`remote client .* is told: ${PUBLIC.replaceAll(".", "\\.")}`),
      );

      // A name that resolves to an example address (RFC 5737) cannot be reached.
      const doc = await check(dir, await checkConfig(docName, port));
      assert.equal(doc.code, 5, doc.out);
      assert.match(doc.out, /203\.0\.113\.7 is in a documentation range/);

      const bad = await check(dir, await checkConfig("nowhere.example.test", port));
      assert.equal(bad.code, 6, bad.out);
      assert.match(bad.out, /cannot resolve nowhere\.example\.test/);
      assert.match(bad.out, /nowhere\.example\.test -> not resolved .*: the name has no A record/);
      assert.match(bad.out, new RegExp(`DNS server 127\\.0\\.0\\.1:${port}`));
      assert.match(bad.out, /NOT OK/);
    });
  },
});

Deno.test({
  name: "dns: check beside a running server whose lookups fail says what it still announces",
  ignore,
  async fn() {
    requireDnsmasq();
    await withDnsmasq(`${PUBLIC} ${NAME}\n`, async (dns, port, dir) => {
      const control = await freeLoopbackPort();
      const status = await freeLoopbackPort();
      const config = `${dir}/running.yaml`;
      await Deno.writeTextFile(
        config,
        await checkConfig(NAME, port, {
          controlPort: control,
          extra: [`status: { port: ${status} }`],
        }),
      );
      const server = await startServe(config, {
        cwd: dir,
        port: control,
      });
      try {
        await waitForStatus(status, (s) => s.publicAddress.address === PUBLIC);
        await dns.setHosts("");
        // Bounded: the server retries within refresh_seconds (5 s) of its last lookup.
        const until = Date.now() + 15_000;
        let lastError = null;
        while (!lastError && Date.now() < until) {
          await sleep(200);
          const snap = await (await fetch(`http://127.0.0.1:${status}/status`)).json();
          lastError = snap.publicAddress.lastError;
        }
        assert.ok(lastError, "the running server saw its lookup fail within 15 s");
        const r = await run(Deno.execPath(), ["run", "-A", MAIN, "check", "--config", config], {
          cwd: REPO,
          timeoutMs: 60_000,
        });
        const out = r.stdout + r.stderr;
        assert.equal(r.code, 6, out);
        assert.match(out, /running server: pitifulnat .* it tells remote clients 5\.6\.7\.8/);
        assert.match(
          out,
          /warning: the running server's lookups fail since .*it keeps announcing the last good address 5\.6\.7\.8/,
        );
        assert.match(out, /control port 0\.0\.0\.0:\d+: in use by the running server/);
        assert.match(
          out,
          /cannot resolve myhome\.example\.test .*a fresh start tells remote clients the LAN address/,
        );
      } finally {
        await server.stop();
      }
    });
  },
});
