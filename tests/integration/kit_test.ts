/**
 * serve, proxy and check stand on one FTP kit: the same PASV/EPSV/PORT/EPRT
 * inputs get the same replies and the same reason text from all three, and
 * the session rules (the login deadline counted from connect) hold in both
 * products.
 */
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import { runCheck } from "../../src/cli/check.ts";
import { publicAddressFrom } from "../../src/cli/common.ts";
import type { Config } from "../../src/config/schema.ts";
import { readLines } from "../../src/ftp/line_reader.ts";
import { startProxy } from "../helpers/proxy.ts";
import { RawClient } from "../helpers/raw.ts";
import { PASSWORD, startServer, USER } from "../helpers/server.ts";

const encoder = new TextEncoder();

/** The commands fed to every product, in order, after login. */
const COMMANDS = [
  "PASV",
  "EPSV",
  "EPSV 1",
  "EPSV 2",
  "EPSV x",
  "PORT 127,0,0,1,195,80",
  "PORT 10,1,2,3,195,81",
  "PORT 127,0,0,1,0,21",
  "PORT 1,2,3",
  "EPRT |1|127.0.0.1|50002|",
  "EPRT |2|::1|50003|",
  "EPRT |1|127.0.0.1|80|",
  "EPRT garbage",
  "PASV",
  "EPSV ALL",
  "PASV",
  "PORT 127,0,0,1,195,80",
  "EPSV",
];

/** The codes every product must give (so the test fails if all three break alike). */
const EXPECTED_CODES = [
  227,
  229,
  229,
  522,
  501,
  200,
  200,
  504,
  501,
  200,
  522,
  504,
  501,
  227,
  200,
  503,
  503,
  229,
];

/** Config variants: how the public address is set, and whether loopback is LAN. */
const VARIANTS: { name: string; tweak: (c: Config) => void }[] = [
  { name: "loopback is LAN", tweak: () => {} },
  { name: "no public address", tweak: (c) => (c.lan_networks = ["10.0.0.0/8"]) },
  {
    name: "fixed public address",
    tweak: (c) => {
      c.lan_networks = ["10.0.0.0/8"];
      c.public_address = { address: "203.0.113.7", refresh_seconds: 60, ipv6: false };
    },
  },
  {
    name: "DNS name not resolved",
    tweak: (c) => {
      c.lan_networks = ["10.0.0.0/8"];
      // Nothing listens there: the name never resolves.
      c.public_address = {
        host: "ftp.example.test",
        dns_server: "127.0.0.1:9",
        refresh_seconds: 60,
        ipv6: false,
      };
    },
  },
];

/** Replies with the passive port numbers blanked out (they differ by product). */
function shown(reply: { code: number; text: string }): string {
  return `${reply.code} ${
    reply.text.replace(/\d+,\d+\)/, "P,P)").replace(/\(\|\|\|\d+\|\)/, "(|||P|)")
  }`;
}

/** A minimal upstream for the proxy: any login works, other commands get 200. */
function tinyUpstream(): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  (async () => {
    for (let i = 0; i < 10; i++) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      conns.add(conn);
      (async () => {
        const say = (t: string) => conn.write(encoder.encode(t + "\r\n"));
        try {
          await say("220 tiny upstream");
          for await (const item of readLines(conn, { maxLength: 4096 })) {
            if (item.kind !== "line") continue;
            const verb = item.text.split(" ")[0].toUpperCase();
            await say(verb === "USER" ? "331 go on" : verb === "PASS" ? "230 in" : "200 ok");
          }
        } catch { /* closed */ }
      })();
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/** Logs in, sends COMMANDS, returns the replies. */
async function feed(port: number): Promise<string[]> {
  const [c] = await RawClient.connect("127.0.0.1", port);
  try {
    await c.login(USER, PASSWORD);
    const replies: string[] = [];
    for (const line of COMMANDS) replies.push(shown(await c.cmd(line)));
    return replies;
  } finally {
    c.close();
  }
}

/** The reason of the last PASV decision logged. */
function pasvReason(records: LogRecord[]): string {
  const pasv = records.filter((r) => String(r.rawMessage).includes("PASV {address}"));
  assert.ok(pasv.length > 0, "a PASV decision was logged");
  return String(pasv[pasv.length - 1].properties.reason);
}

/** What `check --client 127.0.0.1` says that client is told, with the config written to a file. */
async function checkReason(config: Config): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "pn-kit-" });
  const lines: string[] = [];
  const log = console.log;
  try {
    const pa = config.public_address;
    const yaml = [
      `listen: { address: 127.0.0.1, port: 2121 }`,
      `passive: { min_port: ${config.passive.min_port}, max_port: ${config.passive.max_port} }`,
      `lan_networks: ${JSON.stringify(config.lan_networks)}`,
      pa?.address ? `public_address: { address: ${pa.address} }` : "",
      pa?.host ? `public_address: { host: ${pa.host}, dns_server: "${pa.dns_server}" }` : "",
    ].join("\n");
    await Deno.writeTextFile(`${dir}/config.yaml`, yaml + "\n");
    console.log = (...a: unknown[]) => lines.push(a.join(" "));
    await runCheck({ config: `${dir}/config.yaml`, client: "127.0.0.1" });
  } finally {
    console.log = log;
    await Deno.remove(dir, { recursive: true });
  }
  const told = lines.join("\n").match(/^client 127\.0\.0\.1 is told: \S+ \((.*)\)$/m);
  assert.ok(told, lines.join("\n"));
  return told[1];
}

Deno.test("serve, proxy and check: the same data-connection replies and the same reason", async (t) => {
  const records: LogRecord[] = [];
  await configure({
    sinks: { mem: (r) => void records.push(r) },
    loggers: [
      { category: ["pitifulnat"], lowestLevel: "debug", sinks: ["mem"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
    reset: true,
  });
  const up = tinyUpstream();
  try {
    for (const variant of VARIANTS) {
      await t.step(variant.name, async () => {
        let config: Config | null = null;
        const tweak = (c: Config) => {
          c.public_address = undefined;
          c.passive = { min_port: 45000, max_port: 45099 };
          variant.tweak(c);
          config = c;
        };
        const serve = await startServer({ tweak });
        const publicAddress = publicAddressFrom(config!) ?? undefined;
        if (config!.public_address?.address) await publicAddress?.start();
        serve.server.reload(config!, { publicAddress: publicAddress ?? null });
        records.length = 0;
        let serveReplies: string[], serveReason: string;
        try {
          serveReplies = await feed(serve.port);
          serveReason = pasvReason(records);
        } finally {
          await serve.close();
        }
        const px = startProxy(up.port, {
          passive: { min: 45100, max: 45199 },
          connectTimeoutSeconds: 5,
          publicAddress,
          tweak: (c) => {
            tweak(c);
            c.passive = { min_port: 45100, max_port: 45199 };
          },
        });
        records.length = 0;
        let proxyReplies: string[], proxyReason: string;
        try {
          proxyReplies = await feed(px.port);
          proxyReason = pasvReason(records);
        } finally {
          await px.close();
          publicAddress?.stop();
        }
        assert.deepEqual(serveReplies.map((r) => Number(r.slice(0, 3))), EXPECTED_CODES);
        assert.deepEqual(proxyReplies, serveReplies);
        assert.equal(proxyReason, serveReason);
        assert.equal(await checkReason(config!), serveReason);
      });
    }
  } finally {
    up.close();
    await reset();
  }
});

/** Sends NOOP every 400 ms without logging in; returns the 421 and when it came. */
async function noopUntilClosed(
  port: number,
): Promise<{ code: number; ms: number; closed: boolean }> {
  const started = Date.now();
  const [c] = await RawClient.connect("127.0.0.1", port);
  try {
    for (let i = 0; i < 10; i++) {
      const r = await c.cmd("NOOP", 3000).catch(() => ({ code: 0, text: "" }));
      if (r.code !== 200) {
        return { code: r.code, ms: Date.now() - started, closed: await c.closedWithin(1000) };
      }
      await new Promise((res) => setTimeout(res, 400));
    }
    return { code: 200, ms: Date.now() - started, closed: false };
  } finally {
    c.close();
  }
}

Deno.test("login deadline counts from connect in serve and proxy: NOOPs do not extend it", async () => {
  const tweak = (c: Config) => (c.limits.login_timeout_seconds = 1);
  const up = tinyUpstream();
  const serve = await startServer({ tweak });
  const px = startProxy(up.port, {
    passive: { min: 45200, max: 45299 },
    connectTimeoutSeconds: 5,
    tweak,
  });
  try {
    for (const [name, port] of [["serve", serve.port], ["proxy", px.port]] as const) {
      const r = await noopUntilClosed(port);
      assert.equal(r.code, 421, `${name}: 421 before login`);
      assert.ok(r.ms < 1600, `${name}: closed ${r.ms} ms after connect (deadline 1 s)`);
      assert.ok(r.closed, `${name}: the connection is closed`);
    }
  } finally {
    await px.close();
    await serve.close();
    up.close();
  }
});

Deno.test("serve counts a directory listing as a transfer, as the proxy does", async () => {
  const srv = await startServer();
  try {
    await Deno.writeTextFile(`${srv.root}/a.txt`, "A\n");
    const [c] = await RawClient.connect("127.0.0.1", srv.port);
    try {
      await c.login(USER, PASSWORD);
      const pasv = await c.cmd("EPSV");
      const port = Number(/\(\|\|\|(\d+)\|\)/.exec(pasv.text)![1]);
      const data = await Deno.connect({ hostname: "127.0.0.1", port });
      const list = c.cmd("LIST");
      let text = "";
      const buf = new Uint8Array(4096);
      for (let i = 0; i < 100; i++) {
        const n = await data.read(buf);
        if (n === null) break;
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      data.close();
      assert.equal((await list).code, 150);
      assert.equal((await c.read()).code, 226);
      assert.match(text, /a\.txt/);
    } finally {
      c.close();
    }
    assert.equal(srv.server.stats.transfers, 1);
    assert.ok(srv.server.stats.bytesOut > 0, "the listing's bytes are counted out");
  } finally {
    await srv.close();
  }
});
