import assert from "node:assert/strict";
import { listenInRange, probeRange } from "../../src/nat/port_range.ts";

const HOST = "127.0.0.1";

/** Hold `count` consecutive free loopback ports; bounded number of attempts. */
function holdConsecutive(count: number): { min: number; max: number; held: Deno.TcpListener[] } {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below the usual ephemeral range (32768+), so outgoing connections do not take them.
    const min = 20_000 + Math.floor(Math.random() * 12_000);
    const held: Deno.TcpListener[] = [];
    try {
      for (let p = min; p < min + count; p++) {
        held.push(Deno.listen({ hostname: HOST, port: p, transport: "tcp" }));
      }
      return { min, max: min + count - 1, held };
    } catch (err) {
      for (const l of held) l.close();
      if (!(err instanceof Deno.errors.AddrInUse)) throw err;
    }
  }
  throw new Error(`no ${count} consecutive free ports found`);
}

function closeAll(listeners: Deno.TcpListener[]): void {
  for (const l of listeners) l.close();
}

Deno.test("listenInRange binds a port inside the range", async () => {
  const { min, max, held } = holdConsecutive(5);
  closeAll(held);
  const listener = await listenInRange({ hostname: HOST, min, max });
  assert.ok(listener !== null);
  try {
    const addr = listener.addr;
    assert.equal(addr.hostname, HOST);
    assert.ok(addr.port >= min && addr.port <= max, String(addr.port));
  } finally {
    listener.close();
  }
});

Deno.test("listenInRange starts at the random offset and skips busy ports", async () => {
  const { min, max, held } = holdConsecutive(3);
  // Free the first and last port; keep the middle one busy.
  held[0].close();
  held[2].close();
  const opened: Deno.TcpListener[] = [];
  try {
    // random 0.5 -> offset 1 (the busy middle port) -> wraps on to max.
    const a = await listenInRange({ hostname: HOST, min, max, random: () => 0.5 });
    assert.ok(a !== null);
    opened.push(a);
    assert.equal(a.addr.port, max);
    const b = await listenInRange({ hostname: HOST, min, max, random: () => 0.99 });
    assert.ok(b !== null);
    opened.push(b);
    assert.equal(b.addr.port, min);
  } finally {
    closeAll(opened);
    held[1].close();
  }
});

Deno.test("listenInRange returns null when every port is taken", async () => {
  const { min, max, held } = holdConsecutive(3);
  try {
    for (const r of [0, 0.4, 0.99]) {
      assert.equal(await listenInRange({ hostname: HOST, min, max, random: () => r }), null);
    }
  } finally {
    closeAll(held);
  }
});

Deno.test("listenInRange: a port is reusable right after its listener closed", async () => {
  const { min, held } = holdConsecutive(1);
  closeAll(held);
  for (let i = 0; i < 3; i++) {
    const l = await listenInRange({ hostname: HOST, min, max: min });
    assert.ok(l !== null);
    // Accept one connection so the port has seen traffic before it is reused.
    const client = Deno.connect({ hostname: HOST, port: min });
    const server = await l.accept();
    (await client).close();
    server.close();
    l.close();
  }
});

Deno.test("listenInRange rejects bad ranges and propagates other errors", async () => {
  await assert.rejects(listenInRange({ hostname: HOST, min: 0, max: 10 }), RangeError);
  await assert.rejects(listenInRange({ hostname: HOST, min: 10, max: 70_000 }), RangeError);
  await assert.rejects(listenInRange({ hostname: HOST, min: 200, max: 100 }), RangeError);
  await assert.rejects(listenInRange({ hostname: HOST, min: 1.5, max: 10 }), RangeError);
  // 192.0.2.1 (TEST-NET-1) is not a local address: binding fails, not AddrInUse.
  await assert.rejects(
    listenInRange({ hostname: "192.0.2.1", min: 40_000, max: 40_002 }),
    (err: Error) => !(err instanceof Deno.errors.AddrInUse),
  );
});

Deno.test("probeRange counts bindable and busy ports", async () => {
  const { min, max, held } = holdConsecutive(4);
  // Keep the 2nd and 4th busy.
  held[0].close();
  held[2].close();
  try {
    const all = await probeRange({ hostname: HOST, min, max });
    assert.deepEqual(all, { tried: 4, bindable: 2, failed: [min + 1, min + 3] });
    // Probing closed every port it bound: they can be bound again.
    Deno.listen({ hostname: HOST, port: min, transport: "tcp" }).close();
    Deno.listen({ hostname: HOST, port: min + 2, transport: "tcp" }).close();
  } finally {
    held[1].close();
    held[3].close();
  }
});

Deno.test("probeRange samples evenly, ends included", async () => {
  const { min, max, held } = holdConsecutive(10);
  held[0].close();
  held[9].close();
  held[4].close();
  try {
    // 10 ports, sample 3: min, min+5 (rounded from 4.5), max.
    const r = await probeRange({ hostname: HOST, min, max, sample: 3 });
    assert.equal(r.tried, 3);
    assert.deepEqual(r.failed, [min + 5]);
    assert.equal(r.bindable, 2);
    const one = await probeRange({ hostname: HOST, min, max, sample: 1 });
    assert.deepEqual(one, { tried: 1, bindable: 1, failed: [] });
    const more = await probeRange({ hostname: HOST, min, max, sample: 99 });
    assert.equal(more.tried, 10);
    assert.equal(more.bindable, 3);
  } finally {
    for (const i of [1, 2, 3, 5, 6, 7, 8]) held[i].close();
  }
  await assert.rejects(probeRange({ hostname: HOST, min, max, sample: 0 }), RangeError);
});
