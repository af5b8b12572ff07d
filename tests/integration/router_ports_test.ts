/**
 * Passive mode with the router's port mappings (port_mapping): a remote
 * client gets only passive ports the router forwards, and is told each
 * one's external port; a LAN client, or a server whose router forwards
 * no passive port, gets any port of the range, told as it is. The
 * "router" here is a small TCP forwarder on loopback from each external
 * port to its internal one, so real clients (curl, ftplib) go through it.
 */
import assert from "node:assert/strict";
import type { RouterPorts } from "../../src/ftp/data_setup.ts";
import { PublicAddress } from "../../src/nat/public_address.ts";
import { freePort } from "../helpers/program.ts";
import { startProxy } from "../helpers/proxy.ts";
import { RawClient } from "../helpers/raw.ts";
import { PASSWORD, run, startServer, USER } from "../helpers/server.ts";

/** A fake router: `forwards` internal → external ports, with a forwarder listening on each external one. */
class LoopbackRouter implements RouterPorts {
  readonly forwards = new Map<number, number>();
  readonly #listeners: Deno.TcpListener[] = [];
  readonly #conns = new Set<Deno.Conn>();

  forward(internal: number, external: number): void {
    this.forwards.set(internal, external);
    const l = Deno.listen({ hostname: "127.0.0.1", port: external });
    this.#listeners.push(l);
    (async () => {
      for await (const outside of l) {
        const inside = await Deno.connect({ hostname: "127.0.0.1", port: internal })
          .catch(() => null);
        if (!inside) {
          outside.close();
          continue;
        }
        this.#conns.add(outside).add(inside);
        const pipe = (a: Deno.Conn, b: Deno.Conn) =>
          a.readable.pipeTo(b.writable).catch(() => {}).finally(() => {
            this.#conns.delete(a);
            try {
              a.close();
            } catch { /* closed by the other direction */ }
          });
        void pipe(outside, inside);
        void pipe(inside, outside);
      }
    })().catch(() => {});
  }

  externalPort(internalPort: number): number | null {
    return this.forwards.get(internalPort) ?? null;
  }

  mappedIn(min: number, max: number): number {
    return [...this.forwards.keys()].filter((p) => p >= min && p <= max).length;
  }

  close(): void {
    for (const l of this.#listeners) l.close();
    for (const c of this.#conns) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  }
}

/** The port of a 227 reply. */
function pasvPort(text: string): number {
  const m = text.match(/\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/);
  assert.ok(m, text);
  return Number(m[5]) * 256 + Number(m[6]);
}

/** Three passive ports of a 20-port range, forwarded on other external ports. */
function setup(router: LoopbackRouter, min: number): Map<number, number> {
  for (const internal of [min + 3, min + 11, min + 17]) router.forward(internal, freePort());
  return router.forwards;
}

/** A passive range of 20 ports that are free now. */
function freeRange(): number {
  for (let i = 0; i < 50; i++) {
    const min = 41000 + Math.floor(Math.random() * 20000);
    try {
      const held = Array.from({ length: 20 }, (_, k) => Deno.listen({ port: min + k }));
      for (const l of held) l.close();
      return min;
    } catch {
      // Part of it is taken: try elsewhere.
    }
  }
  throw new Error("no free range of 20 ports in 50 tries");
}

Deno.test("port mapping: a remote client gets only forwarded passive ports, told their external port", async () => {
  const router = new LoopbackRouter();
  const min = freeRange();
  const forwards = setup(router, min);
  const externals = new Set(forwards.values());
  const publicAddress = new PublicAddress({ address: "127.0.0.1" });
  const srv = await startServer({
    publicAddress,
    routerPorts: router,
    // No LAN networks: the loopback client is "remote", as one on the internet is.
    tweak: (c) => {
      c.lan_networks = [];
      c.passive = { min_port: min, max_port: min + 19 };
    },
  });
  try {
    await Deno.writeTextFile(`${srv.root}/f.txt`, "through the router\n");
    const [c] = await RawClient.connect("127.0.0.1", srv.port);
    await c.cmd(`USER ${USER}`);
    assert.equal((await c.cmd(`PASS ${PASSWORD}`)).code, 230);
    for (let i = 0; i < 12; i++) {
      const r = await c.cmd(i % 2 ? "EPSV" : "PASV");
      const told = i % 2 ? Number(r.text.match(/\|\|\|(\d+)\|/)?.[1]) : pasvPort(r.text);
      assert.ok(externals.has(told), `${r.text}: not one of the external ports ${[...externals]}`);
    }
    c.conn.close();
    // Real clients reach the file through the forwarder only.
    const curl = await run("curl", ["-sS", "--ftp-pasv", "--disable-epsv", `${srv.url}/f.txt`]);
    assert.equal(curl.code, 0, curl.stderr);
    assert.equal(curl.stdout, "through the router\n");
    const epsv = await run("curl", ["-sS", "--ftp-pasv", `${srv.url}/f.txt`]);
    assert.equal(epsv.code, 0, epsv.stderr);
    assert.equal(epsv.stdout, "through the router\n");
  } finally {
    await srv.close();
    router.close();
  }
});

Deno.test("port mapping: every forwarded passive port busy is a 425, though others of the range are free", async () => {
  const router = new LoopbackRouter();
  const min = freeRange();
  const forwards = setup(router, min);
  const srv = await startServer({
    publicAddress: new PublicAddress({ address: "127.0.0.1" }),
    routerPorts: router,
    tweak: (c) => {
      c.lan_networks = [];
      c.passive = { min_port: min, max_port: min + 19 };
    },
  });
  // Something else holds the three forwarded ports; 17 ports of the range stay free.
  const held = [...forwards.keys()].map((port) => Deno.listen({ hostname: "127.0.0.1", port }));
  try {
    const [c] = await RawClient.connect("127.0.0.1", srv.port);
    await c.cmd(`USER ${USER}`);
    await c.cmd(`PASS ${PASSWORD}`);
    assert.equal((await c.cmd("PASV")).code, 425);
    assert.equal((await c.cmd("EPSV")).code, 425);
    c.conn.close();
  } finally {
    for (const l of held) l.close();
    await srv.close();
    router.close();
  }
});

Deno.test("port mapping: LAN clients, and a router forwarding no passive port, get any port as it is", async () => {
  const min = freeRange();
  for (const forwarded of [true, false]) {
    const router = new LoopbackRouter();
    if (forwarded) setup(router, min);
    else router.forward(min + 100, freePort()); // e.g. only the control port: outside the range
    const srv = await startServer({
      publicAddress: new PublicAddress({ address: "127.0.0.1" }),
      routerPorts: router,
      tweak: (c) => {
        // With a router forwarding passive ports, the loopback client is on the LAN.
        if (!forwarded) c.lan_networks = [];
        c.passive = { min_port: min, max_port: min + 19 };
      },
    });
    try {
      const [c] = await RawClient.connect("127.0.0.1", srv.port);
      await c.cmd(`USER ${USER}`);
      await c.cmd(`PASS ${PASSWORD}`);
      const seen = new Set<number>();
      for (let i = 0; i < 12; i++) {
        const port = pasvPort((await c.cmd("PASV")).text);
        assert.ok(port >= min && port <= min + 19, `${port} is told as it is`);
        // It is the server's own listener.
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        await c.cmd("ABOR");
        seen.add(port);
      }
      assert.ok(seen.size > 3, `ports of the whole range, not only the forwarded: ${[...seen]}`);
      c.conn.close();
    } finally {
      await srv.close();
      router.close();
    }
  }
});

Deno.test("port mapping: the proxy, too, tells remote clients the router's external ports", async () => {
  const router = new LoopbackRouter();
  const min = freeRange();
  const forwards = setup(router, min);
  // The upstream is a pitifulnat serve on loopback; the proxy's own passive side faces the client.
  const upstream = await startServer();
  const proxy = startProxy(upstream.port, {
    passive: { min, max: min + 19 },
    connectTimeoutSeconds: 5,
    publicAddress: new PublicAddress({ address: "127.0.0.1" }),
    routerPorts: router,
    tweak: (c) => c.lan_networks = [],
  });
  try {
    await Deno.writeTextFile(`${upstream.root}/p.txt`, "via the proxy and the router\n");
    const [c] = await RawClient.connect("127.0.0.1", proxy.port);
    await c.cmd(`USER ${USER}`);
    assert.equal((await c.cmd(`PASS ${PASSWORD}`)).code, 230);
    const told = pasvPort((await c.cmd("PASV")).text);
    assert.ok(new Set(forwards.values()).has(told), `${told} is an external port`);
    c.conn.close();
    const url = `ftp://${USER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${proxy.port}/p.txt`;
    const curl = await run("curl", ["-sS", "--ftp-pasv", "--disable-epsv", url]);
    assert.equal(curl.code, 0, curl.stderr);
    assert.equal(curl.stdout, "via the proxy and the router\n");
  } finally {
    await proxy.close();
    await upstream.close();
    router.close();
  }
});
