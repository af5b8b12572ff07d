/**
 * The data relay on real loopback connections: exact bytes, back-pressure,
 * abort, stall and failure carried across.
 */
import assert from "node:assert/strict";
import { DataRelay } from "../../src/proxy/relay.ts";

/** A connected pair of loopback TCP connections: [ours, theirs]. */
async function pair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([
    l.accept(),
    Deno.connect({ hostname: "127.0.0.1", port: (l.addr as Deno.NetAddr).port }),
  ]);
  l.close();
  return [a, b];
}

/** Writes `size` patterned bytes, then closes; write errors end it quietly. */
async function send(conn: Deno.Conn, size: number): Promise<number> {
  const chunk = new Uint8Array(1 << 16).map((_, i) => i * 7);
  let sent = 0;
  try {
    while (sent < size) {
      const n = Math.min(chunk.length, size - sent);
      sent += await conn.write(chunk.subarray(0, n));
    }
  } catch { /* the relay closed it */ }
  try {
    conn.close();
  } catch { /* closed */ }
  return sent;
}

/** Reads to EOF (bounded in time); returns the byte count and a checksum. */
async function receive(conn: Deno.Conn, timeoutMs = 10_000): Promise<{ n: number; sum: number }> {
  const buf = new Uint8Array(1 << 16);
  let n = 0;
  let sum = 0;
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      const got = await conn.read(buf);
      if (got === null) break;
      for (let i = 0; i < got; i++) sum = (sum + buf[i] * ((n + i) % 251 + 1)) % 1_000_003;
      n += got;
    }
  } catch { /* reset */ }
  try {
    conn.close();
  } catch { /* closed */ }
  return { n, sum };
}

function expectedSum(size: number): number {
  let sum = 0;
  for (let i = 0; i < size; i++) sum = (sum + ((i % 65536) * 7 & 255) * (i % 251 + 1)) % 1_000_003;
  return sum;
}

/** A relay between two fresh loopback pairs, with the far ends of both. */
async function relayBetween(
  direction: "download" | "upload",
  stallMs: number,
): Promise<{ relay: DataRelay; upstreamPeer: Deno.TcpConn; clientPeer: Deno.TcpConn }> {
  const [upstream, upstreamPeer] = await pair();
  const [client, clientPeer] = await pair();
  const relay = new DataRelay({ client, upstream }, {
    direction,
    buf: new Uint8Array(1 << 20),
    stallMs,
  });
  return { relay, upstreamPeer, clientPeer };
}

/**
 * Sends a large stream from `sender` through the relay; `quitter` reads the
 * first bytes and hangs up. Resolves with the relay's result and what was sent.
 */
async function hangUpMidway(
  relay: DataRelay,
  sender: Deno.Conn,
  quitter: Deno.Conn,
): Promise<[Awaited<DataRelay["done"]>, number]> {
  const sending = send(sender, 512 * 1024 * 1024);
  const first = new Uint8Array(1000);
  assert.notEqual(await quitter.read(first), null);
  quitter.close();
  return await Promise.all([relay.done, sending]);
}

Deno.test("relay: a download arrives byte for byte and the receiver sees EOF", async () => {
  const { relay, upstreamPeer, clientPeer } = await relayBetween("download", 5000);
  const size = 3_000_017;
  const [sent, got, result] = await Promise.all([
    send(upstreamPeer, size),
    receive(clientPeer),
    relay.done,
  ]);
  assert.equal(sent, size);
  assert.equal(got.n, size);
  assert.equal(got.sum, expectedSum(size));
  assert.deepEqual(result, { outcome: "ok", bytes: size });
});

Deno.test("relay: an upload goes the other way", async () => {
  const { relay, upstreamPeer, clientPeer } = await relayBetween("upload", 5000);
  const size = 1_234_567;
  const [, got, result] = await Promise.all([
    send(clientPeer, size),
    receive(upstreamPeer),
    relay.done,
  ]);
  assert.equal(got.n, size);
  assert.equal(got.sum, expectedSum(size));
  assert.equal(result.outcome, "ok");
});

Deno.test("relay: a receiver that does not read holds the sender back (back-pressure)", async () => {
  const { relay, upstreamPeer, clientPeer } = await relayBetween("download", 10_000);
  const size = 96 * 1024 * 1024;
  const sending = send(upstreamPeer, size);
  await new Promise((r) => setTimeout(r, 300));
  const moved = relay.progress.bytes;
  // Only what socket buffers and the one relay buffer hold; never the file.
  assert.ok(moved < 48 * 1024 * 1024, `moved ${moved} bytes while nobody read`);
  const [got, result] = await Promise.all([receive(clientPeer, 30_000), relay.done, sending]);
  assert.equal(got.n, size);
  assert.equal(result.outcome, "ok");
});

Deno.test("relay: abort closes both sides and says aborted", async () => {
  const { relay, upstreamPeer, clientPeer } = await relayBetween("download", 10_000);
  const sending = send(upstreamPeer, 512 * 1024 * 1024);
  const receiving = receive(clientPeer);
  await new Promise((r) => setTimeout(r, 50));
  relay.abort();
  const [result, sent, got] = await Promise.all([relay.done, sending, receiving]);
  assert.equal(result.outcome, "aborted");
  assert.ok(sent < 512 * 1024 * 1024, "the sender was stopped");
  assert.ok(got.n <= result.bytes + (1 << 20));
});

Deno.test("relay: the client going away mid-download is a client failure, upstream is closed", async () => {
  const { relay, upstreamPeer, clientPeer } = await relayBetween("download", 10_000);
  const [result, sent] = await hangUpMidway(relay, upstreamPeer, clientPeer);
  assert.equal(result.outcome, "client-failed");
  assert.ok(sent < 512 * 1024 * 1024, "the upstream learned of it: its writes failed");
});

Deno.test("relay: no byte for the stall time ends it as stalled", async () => {
  const { relay, upstreamPeer, clientPeer } = await relayBetween("upload", 200);
  const started = Date.now();
  const result = await relay.done;
  assert.equal(result.outcome, "stalled");
  assert.ok(Date.now() - started < 2000);
  // Both far ends see the connection end.
  assert.equal((await receive(upstreamPeer, 2000)).n, 0);
  assert.equal((await receive(clientPeer, 2000)).n, 0);
});

Deno.test("relay: the upstream going away mid-upload is an upstream failure, client is closed", async () => {
  const { relay, upstreamPeer, clientPeer } = await relayBetween("upload", 10_000);
  const [result, sent] = await hangUpMidway(relay, clientPeer, upstreamPeer);
  assert.equal(result.outcome, "upstream-failed");
  assert.ok(sent < 512 * 1024 * 1024, "the client learned of it: its writes failed");
});
