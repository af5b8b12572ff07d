/**
 * Soak: many concurrent sessions doing random real operations (downloads,
 * uploads, listings, REST, ABOR, active and passive mode, directories)
 * against an in-process server, counting every reply that is not the one
 * expected, then checking that every session ended and no file descriptor
 * leaked. `deno task soak` runs the long form (200 sessions) and prints fd
 * and RSS before and after; tests/integration/soak_test.ts runs a short one.
 *
 *     deno task soak [--sessions 200] [--ops 50] [--rounds 2] [--seed 1]
 *
 * Rounds run one after another in the same process, so RSS and the JS heap
 * after each round (after a forced GC) show whether memory keeps growing.
 * @module
 */
import { parseArgs } from "node:util";
import { parsePasvReply } from "../src/ftp/codec.ts";
import { RawClient, type Reply } from "../tests/helpers/raw.ts";
import { PASSWORD, startServer, USER } from "../tests/helpers/server.ts";

/** What a soak run is asked to do. */
export interface SoakOptions {
  /** Concurrent sessions. */
  sessions: number;
  /** Random operations per session. */
  ops: number;
  /** Seed of the operation choice; same seed, same operations. */
  seed?: number;
  /** Hard limit for the whole run; sessions stop starting operations after it. */
  deadlineMs?: number;
}

/** What a soak run observed. */
export interface SoakResult {
  /** Operations that completed with the expected replies and bytes. */
  ops: number;
  /** One message per unexpected reply, wrong byte or error (a session stops at its first). */
  unexpected: string[];
  bytesDown: number;
  bytesUp: number;
  seconds: number;
  /** Open file descriptors of this process before the run and after it (sessions ended). */
  fdsBefore: number;
  fdsAfter: number;
  /** Resident memory in bytes, before and after. */
  rssBefore: number;
  rssAfter: number;
  /** Server sessions still open after the run (after a bounded wait). */
  sessionsLeft: number;
  /** Operations done, by kind. */
  byKind: Record<string, number>;
}

/** Open file descriptors of this process. */
export function openFds(): number {
  let n = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
  return n;
}

/** Resident set size of this process, in bytes. */
export function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A small deterministic PRNG (xorshift32). */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

function bytesOf(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  const r = prng(seed);
  for (let i = 0; i < size; i++) out[i] = (r() * 256) | 0;
  return out;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

class Unexpected extends Error {}

function expect(r: Reply, ...codes: number[]): Reply {
  if (!codes.includes(r.code)) throw new Unexpected(`expected ${codes.join("/")}, got ${r.text}`);
  return r;
}

/** Reads a connection to its end (bounded by `limit` bytes and 20 s). */
async function readAll(conn: Deno.Conn, limit: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  const buf = new Uint8Array(256 * 1024);
  const deadline = Date.now() + 20_000;
  try {
    while (total <= limit && Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
      total += n;
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await conn.write(bytes.subarray(off));
}

/** The seed files every session reads: name -> content. */
const SEED_FILES: [string, number][] = [
  ["empty.bin", 0],
  ["one.bin", 1],
  ["small.bin", 4096],
  ["medium.bin", 300 * 1024],
  ["large.bin", 2 * 1024 * 1024],
];

/**
 * One session's data connection: passive (PASV or EPSV) or active (EPRT).
 * `done()` closes whatever is still open.
 */
async function dataConn(
  c: RawClient,
  how: "pasv" | "epsv" | "active",
): Promise<{ conn: () => Promise<Deno.TcpConn>; done: () => void }> {
  if (how === "active") {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    try {
      expect(await c.cmd(`EPRT |1|127.0.0.1|${port}|`), 200);
    } catch (e) {
      listener.close();
      throw e;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let accepted: Deno.TcpConn | null = null;
    return {
      conn: async () => {
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Unexpected("no active connection in 10 s")), 10_000);
        });
        try {
          accepted = await Promise.race([listener.accept(), timeout]);
          return accepted;
        } finally {
          clearTimeout(timer);
        }
      },
      done: () => {
        closeQuietly(listener);
        if (accepted) closeQuietly(accepted);
      },
    };
  }
  let port: number;
  if (how === "pasv") {
    const hp = parsePasvReply(expect(await c.cmd("PASV"), 227).text);
    if (!hp) throw new Unexpected("unparsable 227");
    port = hp.port;
  } else {
    const m = /\(\|\|\|(\d+)\|\)/.exec(expect(await c.cmd("EPSV"), 229).text);
    if (!m) throw new Unexpected("unparsable 229");
    port = Number(m[1]);
  }
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  return { conn: () => Promise.resolve(conn), done: () => closeQuietly(conn) };
}

function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch { /* already closed */ }
}

interface SessionCtx {
  c: RawClient;
  id: number;
  rand: () => number;
  files: Map<string, Uint8Array>;
  mine: Map<string, Uint8Array>;
  stats: { bytesDown: number; bytesUp: number; byKind: Record<string, number> };
}

function pick<T>(rand: () => number, items: readonly T[]): T {
  return items[Math.floor(rand() * items.length)];
}

function mode(rand: () => number): "pasv" | "epsv" | "active" {
  return pick(rand, ["pasv", "epsv", "epsv", "active"] as const);
}

/** Downloads `name` (from `offset`) and compares it with `want`. */
async function download(s: SessionCtx, name: string, want: Uint8Array, offset = 0) {
  const how = mode(s.rand);
  const d = await dataConn(s.c, how);
  let step = "150";
  try {
    if (offset > 0) expect(await s.c.cmd(`REST ${offset}`), 350);
    const first = s.c.cmd(`RETR ${name}`);
    const conn = await d.conn();
    expect(await first, 150);
    step = "data";
    const got = await readAll(conn, want.length + 1);
    step = "226";
    expect(await s.c.read(), 226);
    if (!equal(got, want.subarray(offset))) {
      throw new Unexpected(`RETR ${name} from ${offset}: ${got.length} bytes, not the file`);
    }
    s.stats.bytesDown += got.length;
  } catch (e) {
    throw new Unexpected(`RETR (${how}, waiting for ${step}): ${(e as Error).message}`);
  } finally {
    d.done();
  }
}

async function upload(s: SessionCtx, name: string, data: Uint8Array) {
  const how = mode(s.rand);
  const d = await dataConn(s.c, how);
  let step = "150";
  try {
    const first = s.c.cmd(`STOR ${name}`);
    const conn = await d.conn();
    expect(await first, 150);
    step = "data";
    try {
      await writeAll(conn, data);
    } finally {
      conn.close();
    }
    step = "226";
    expect(await s.c.read(), 226);
    s.stats.bytesUp += data.length;
  } catch (e) {
    throw new Unexpected(`STOR (${how}, waiting for ${step}): ${(e as Error).message}`);
  } finally {
    d.done();
  }
}

async function listing(s: SessionCtx, verb: "LIST" | "NLST" | "MLSD") {
  const how = mode(s.rand);
  const d = await dataConn(s.c, how);
  let step = "150";
  try {
    const first = s.c.cmd(verb);
    const conn = await d.conn();
    expect(await first, 150);
    step = "data";
    const text = new TextDecoder().decode(await readAll(conn, 1 << 20));
    step = "226";
    expect(await s.c.read(), 226);
    if (!text.includes("small.bin")) throw new Unexpected(`${verb} lacks small.bin`);
  } catch (e) {
    throw new Unexpected(`${verb} (${how}, waiting for ${step}): ${(e as Error).message}`);
  } finally {
    d.done();
  }
}

/** The random operations; each checks its replies and bytes. */
const OPS: Record<string, (s: SessionCtx) => Promise<void>> = {
  async noop(s) {
    expect(await s.c.cmd("NOOP"), 200);
    expect(await s.c.cmd("PWD"), 257);
  },
  async retr(s) {
    const [name, data] = pick(s.rand, [...s.files]);
    await download(s, name, data);
  },
  async rest(s) {
    const [name, data] = pick(s.rand, [...s.files].filter(([, d]) => d.length > 1));
    await download(s, name, data, Math.floor(s.rand() * data.length));
  },
  async stor(s) {
    const name = `up-${s.id}-${s.mine.size}.bin`;
    const data = bytesOf(Math.floor(s.rand() * 200_000), s.id * 1000 + s.mine.size);
    await upload(s, name, data);
    s.mine.set(name, data);
    const size = expect(await s.c.cmd(`SIZE ${name}`), 213);
    if (size.text !== `213 ${data.length}`) throw new Unexpected(`SIZE ${name}: ${size.text}`);
    await download(s, name, data);
  },
  async list(s) {
    await listing(s, pick(s.rand, ["LIST", "NLST", "MLSD"] as const));
  },
  async dirs(s) {
    const dir = `dir-${s.id}-${Math.floor(s.rand() * 1e9)}`;
    expect(await s.c.cmd(`MKD ${dir}`), 257);
    expect(await s.c.cmd(`CWD ${dir}`), 250);
    expect(await s.c.cmd("CDUP"), 250);
    expect(await s.c.cmd(`RMD ${dir}`), 250);
  },
  async dele(s) {
    const own = [...s.mine.keys()];
    if (own.length === 0) return OPS.noop(s);
    const name = pick(s.rand, own);
    expect(await s.c.cmd(`DELE ${name}`), 250);
    expect(await s.c.cmd(`SIZE ${name}`), 550);
    s.mine.delete(name);
  },
  async abor(s) {
    const d = await dataConn(s.c, pick(s.rand, ["pasv", "epsv"] as const));
    const conn = await d.conn();
    try {
      expect(await s.c.cmd("RETR large.bin"), 150);
      await conn.read(new Uint8Array(4096));
      const r1 = await s.c.cmd("ABOR");
      // Aborted mid-way: 426 for RETR, 226 for ABOR. Or RETR had already
      // finished (226): then ABOR's own reply, 225 or 226, follows.
      if (r1.code === 426) expect(await s.c.read(), 226);
      else if (r1.code === 226) expect(await s.c.read(), 225, 226);
      else throw new Unexpected(`ABOR: ${r1.text}`);
    } finally {
      conn.close();
      d.done();
    }
  },
};
const KINDS = Object.keys(OPS);

async function session(
  port: number,
  id: number,
  options: { ops: number; seed: number; deadline: number },
  files: Map<string, Uint8Array>,
  result: SoakResult,
): Promise<void> {
  let c: RawClient | null = null;
  const ctx: Omit<SessionCtx, "c"> = {
    id,
    rand: prng(options.seed * 7919 + id),
    files,
    mine: new Map(),
    stats: result,
  };
  let step = "connect";
  try {
    const [client, hello] = await RawClient.connect("127.0.0.1", port);
    c = client;
    expect(hello, 220);
    step = "login";
    expect(await c.cmd(`USER ${USER}`), 331);
    // Password checks take turns (4 at a time): many sessions logging in at once wait.
    expect(await c.cmd(`PASS ${PASSWORD}`, 60_000), 230);
    for (let i = 0; i < options.ops && Date.now() < options.deadline; i++) {
      const kind = pick(ctx.rand, KINDS);
      step = kind;
      await OPS[kind]({ ...ctx, c });
      result.ops++;
      result.byKind[kind] = (result.byKind[kind] ?? 0) + 1;
    }
    step = "QUIT";
    expect(await c.cmd("QUIT"), 221);
  } catch (e) {
    result.unexpected.push(`session ${id}, ${step}: ${(e as Error).message}`);
  } finally {
    c?.close();
  }
}

/** Runs a soak against a fresh in-process server; never throws for a failed operation. */
export async function soak(options: SoakOptions): Promise<SoakResult> {
  const t = await startServer({
    tweak: (c) => {
      c.limits.max_sessions = options.sessions + 10;
      c.limits.max_sessions_per_address = options.sessions + 10;
    },
  });
  try {
    const files = new Map<string, Uint8Array>();
    for (const [name, size] of SEED_FILES) {
      const data = bytesOf(size, size + 11);
      await Deno.writeFile(`${t.root}/${name}`, data);
      files.set(name, data);
    }
    const result: SoakResult = {
      ops: 0,
      unexpected: [],
      bytesDown: 0,
      bytesUp: 0,
      seconds: 0,
      fdsBefore: 0,
      fdsAfter: 0,
      rssBefore: 0,
      rssAfter: 0,
      sessionsLeft: 0,
      byKind: {},
    };
    // Warm up every code path once, so lazily opened descriptors are counted before.
    const warm = { ...result, unexpected: [] as string[], byKind: {} };
    await session(t.port, 0, { ops: 12, seed: 99, deadline: Date.now() + 10_000 }, files, warm);
    if (warm.unexpected.length) result.unexpected.push(...warm.unexpected);
    await waitForNoSessions(t.server.sessions, 5000);
    result.fdsBefore = openFds();
    result.rssBefore = rssBytes();
    const started = performance.now();
    const deadline = Date.now() + (options.deadlineMs ?? 600_000);
    const seed = options.seed ?? 1;
    await Promise.all(
      Array.from(
        { length: options.sessions },
        (_, i) => session(t.port, i + 1, { ops: options.ops, seed, deadline }, files, result),
      ),
    );
    result.seconds = (performance.now() - started) / 1000;
    result.sessionsLeft = await waitForNoSessions(t.server.sessions, 5000);
    // Closed sockets are released asynchronously; give them a moment (bounded).
    for (let i = 0; i < 50 && openFds() > result.fdsBefore; i++) await sleep(20);
    result.fdsAfter = openFds();
    result.rssAfter = rssBytes();
    return result;
  } finally {
    await t.close();
  }
}

/** Waits up to `ms` for the set to empty; returns how many are left. */
async function waitForNoSessions(sessions: { size: number }, ms: number): Promise<number> {
  const deadline = Date.now() + ms;
  while (sessions.size > 0 && Date.now() < deadline) await sleep(20);
  return sessions.size;
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** Collects garbage when the runtime allows it (`--v8-flags=--expose-gc`). */
async function collectGarbage(): Promise<boolean> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return false;
  gc();
  await sleep(200);
  gc();
  return true;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      sessions: { type: "string", default: "200" },
      ops: { type: "string", default: "50" },
      rounds: { type: "string", default: "2" },
      seed: { type: "string", default: "1" },
    },
  });
  const sessions = Number(values.sessions);
  const ops = Number(values.ops);
  const rounds = Number(values.rounds);
  console.log(`soak: ${rounds} rounds of ${sessions} sessions x ${ops} random operations`);
  let ok = true;
  for (let round = 1; round <= rounds; round++) {
    const seed = Number(values.seed) + round - 1;
    const r = await soak({ sessions, ops, seed, deadlineMs: 600_000 });
    const collected = await collectGarbage();
    const mem = Deno.memoryUsage();
    console.log(`round ${round}:`);
    console.log(
      `  ${r.ops} operations in ${r.seconds.toFixed(1)} s (${(r.ops / r.seconds).toFixed(0)}/s); ` +
        `down ${mb(r.bytesDown)}, up ${mb(r.bytesUp)}`,
    );
    console.log(`  by kind: ${JSON.stringify(r.byKind)}`);
    console.log(`  open fds: ${r.fdsBefore} before, ${r.fdsAfter} after`);
    console.log(
      `  RSS: ${mb(r.rssBefore)} before, ${mb(r.rssAfter)} after` +
        (collected
          ? `, ${mb(mem.rss)} after GC (JS heap ${mb(mem.heapUsed)}, buffers ${mb(mem.external)})`
          : ""),
    );
    console.log(`  sessions left: ${r.sessionsLeft}; unexpected: ${r.unexpected.length}`);
    for (const u of r.unexpected.slice(0, 20)) console.log(`    ${u}`);
    ok &&= r.unexpected.length === 0 && r.sessionsLeft === 0 && r.fdsAfter <= r.fdsBefore + 5 &&
      r.ops === sessions * ops;
  }
  console.log(ok ? "soak: ok" : "soak: FAILED");
  Deno.exit(ok ? 0 : 1);
}
