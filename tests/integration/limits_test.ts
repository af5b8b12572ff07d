/**
 * Limits a public server needs: sessions per address, failed-login bans,
 * idle timeouts, and a graceful stop that lets a transfer finish.
 */
import assert from "node:assert/strict";
import { RawClient } from "../helpers/raw.ts";
import { PASSWORD, startServer, USER } from "../helpers/server.ts";

Deno.test("sessions per address: the one over the limit gets 421, the others go on", async () => {
  const t = await startServer({ tweak: (c) => (c.limits.max_sessions_per_address = 2) });
  const clients: RawClient[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const [c, hello] = await RawClient.connect("127.0.0.1", t.port);
      assert.equal(hello.code, 220);
      clients.push(c);
    }
    const [extra, refused] = await RawClient.connect("127.0.0.1", t.port);
    clients.push(extra);
    assert.equal(refused.code, 421);
    assert.equal(await extra.closedWithin(2000), true);
    assert.equal((await clients[0].cmd("NOOP")).code, 200);
    clients[1].close();
    // A slot frees when a session ends.
    let code = 0;
    for (let i = 0; i < 40 && code !== 220; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const [c, r] = await RawClient.connect("127.0.0.1", t.port);
      clients.push(c);
      code = r.code;
    }
    assert.equal(code, 220);
  } finally {
    clients.forEach((c) => c.close());
    await t.close();
  }
});

Deno.test("failed logins: session closed after max_login_failures; address banned after the per-address limit", async () => {
  const t = await startServer({
    tweak: (c) => {
      c.limits.max_login_failures = 2;
      c.limits.max_login_failures_per_address = 4;
    },
  });
  const clients: RawClient[] = [];
  try {
    for (let round = 0; round < 2; round++) {
      const [c] = await RawClient.connect("127.0.0.1", t.port);
      clients.push(c);
      assert.equal((await c.cmd(`USER ${USER}`)).code, 331);
      assert.equal((await c.cmd("PASS wrong")).code, 530);
      assert.equal((await c.cmd(`USER nosuchuser`)).code, 331, "no hint whether a user exists");
      const last = await c.cmd("PASS wrong");
      assert.equal(last.code, 530);
      assert.equal((await c.read()).code, 421);
      assert.equal(await c.closedWithin(2000), true);
    }
    const [banned, r] = await RawClient.connect("127.0.0.1", t.port);
    clients.push(banned);
    assert.equal(r.code, 421);
    assert.match(r.text, /failed logins/);
  } finally {
    clients.forEach((c) => c.close());
    await t.close();
  }
});

Deno.test("idle timeouts: before login and after login", async () => {
  const t = await startServer({
    tweak: (c) => {
      c.limits.login_timeout_seconds = 0.3;
      c.limits.idle_timeout_seconds = 0.6;
    },
  });
  const clients: RawClient[] = [];
  try {
    const [anon] = await RawClient.connect("127.0.0.1", t.port);
    clients.push(anon);
    const r = await anon.read(3000);
    assert.equal(r.code, 421);
    assert.equal(await anon.closedWithin(2000), true);
    const [user] = await RawClient.connect("127.0.0.1", t.port);
    clients.push(user);
    await user.login(USER, PASSWORD);
    await new Promise((r) => setTimeout(r, 350));
    assert.equal((await user.cmd("NOOP")).code, 200, "activity resets the timer");
    const r2 = await user.read(3000);
    assert.equal(r2.code, 421);
  } finally {
    clients.forEach((c) => c.close());
    await t.close();
  }
});

Deno.test("graceful stop: a running transfer finishes, then sessions get 421", async () => {
  const t = await startServer();
  const data = new Uint8Array(8 << 20).fill(7);
  await Deno.writeFile(`${t.root}/big.bin`, data);
  const [c] = await RawClient.connect("127.0.0.1", t.port);
  try {
    await c.login(USER, PASSWORD);
    const epsv = await c.cmd("EPSV");
    const port = Number(/\|\|\|(\d+)\|/.exec(epsv.text)![1]);
    const dataConn = await Deno.connect({ hostname: "127.0.0.1", port });
    assert.equal((await c.cmd("RETR big.bin")).code, 150);
    // Stop while the client has not read anything yet.
    const closing = t.server.close({ graceMs: 5000 });
    let got = 0;
    const buf = new Uint8Array(1 << 16);
    while (true) {
      const n = await dataConn.read(buf);
      if (n === null) break;
      got += n;
    }
    dataConn.close();
    assert.equal(got, data.length, "the whole file arrived");
    assert.equal((await c.read()).code, 226);
    assert.equal((await c.read()).code, 421);
    await closing;
  } finally {
    c.close();
    await t.close();
  }
});

Deno.test("REST survives PASV/TYPE between it and RETR, and is used once", async () => {
  const t = await startServer();
  await Deno.writeTextFile(`${t.root}/r.txt`, "0123456789");
  const [c] = await RawClient.connect("127.0.0.1", t.port);
  try {
    await c.login(USER, PASSWORD);
    const fetchWith = async (before: string[]) => {
      for (const line of before) await c.cmd(line);
      const epsv = await c.cmd("EPSV");
      const port = Number(/\|\|\|(\d+)\|/.exec(epsv.text)![1]);
      const d = await Deno.connect({ hostname: "127.0.0.1", port });
      assert.equal((await c.cmd("RETR r.txt")).code, 150);
      let text = "";
      const buf = new Uint8Array(64);
      for (let n = await d.read(buf); n !== null; n = await d.read(buf)) {
        text += new TextDecoder().decode(buf.subarray(0, n));
      }
      d.close();
      assert.equal((await c.read()).code, 226);
      return text;
    };
    assert.equal(await fetchWith(["REST 4", "TYPE I"]), "456789");
    assert.equal(await fetchWith([]), "0123456789", "the offset was used once");
    assert.equal(await fetchWith(["REST 4", "PWD"]), "0123456789", "other commands clear it");
  } finally {
    c.close();
    await t.close();
  }
});
