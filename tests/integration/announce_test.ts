/**
 * The announce decision as clients see it in 227 replies, and the
 * early re-resolution hint when a passive port announced with the public
 * address is never used.
 */
import assert from "node:assert/strict";
import { PublicAddress } from "../../src/nat/public_address.ts";
import { RawClient } from "../helpers/raw.ts";
import { PASSWORD, startServer, USER } from "../helpers/server.ts";

function pasvHost(text: string): string {
  const m = /\((\d+),(\d+),(\d+),(\d+),\d+,\d+\)/.exec(text);
  assert.ok(m, text);
  return m.slice(1, 5).join(".");
}

Deno.test("227: LAN clients get the local address, remote ones the public one; IPv6 gets 522", async () => {
  let lookups = 0;
  const answers = ["203.0.113.7"];
  const publicAddress = new PublicAddress({
    host: "ftp.example.test",
    resolver: () => {
      lookups++;
      return Promise.resolve([...answers]);
    },
  });
  await publicAddress.start();
  // Loopback counts as LAN by default; with only 10/8 as LAN, 127.0.0.1 is "remote".
  const remote = await startServer({
    publicAddress,
    tweak: (c) => (c.lan_networks = ["10.0.0.0/8"]),
  });
  const lan = await startServer();
  const clients: RawClient[] = [];
  try {
    const [r] = await RawClient.connect("127.0.0.1", remote.port);
    clients.push(r);
    await r.login(USER, PASSWORD);
    assert.equal(pasvHost((await r.cmd("PASV")).text), "203.0.113.7");
    assert.equal(lookups, 1);
    // The announced port is never used: a new PASV replaces it, which hints.
    answers[0] = "203.0.113.8";
    await r.cmd("PASV");
    for (let i = 0; i < 50 && publicAddress.current() !== "203.0.113.8"; i++) {
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.equal(lookups, 2, "an unused passive port triggered one early lookup");
    assert.equal(pasvHost((await r.cmd("PASV")).text), "203.0.113.8");
    await r.cmd("PASV");
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(lookups, 2, "hints are rate-limited");

    const [l] = await RawClient.connect("127.0.0.1", lan.port);
    clients.push(l);
    await l.login(USER, PASSWORD);
    assert.equal(pasvHost((await l.cmd("PASV")).text), "127.0.0.1");
  } finally {
    clients.forEach((c) => c.close());
    await remote.close();
    await lan.close();
    publicAddress.stop();
  }
});

Deno.test("PASV on an IPv6 control connection is refused with 522; EPSV works", async () => {
  let t;
  try {
    t = await startServer({ host: "::1" });
  } catch (e) {
    if (e instanceof Deno.errors.AddrNotAvailable) {
      console.log("skipped: ::1 cannot be bound here");
      return;
    }
    throw e;
  }
  const [c] = await RawClient.connect("::1", t.port);
  try {
    await c.login(USER, PASSWORD);
    const r = await c.cmd("PASV");
    assert.equal(r.code, 522);
    assert.match(r.text, /use EPSV/);
    assert.equal((await c.cmd("EPSV")).code, 229);
    assert.equal((await c.cmd("EPSV 1")).code, 522);
  } finally {
    c.close();
    await t.close();
  }
});
