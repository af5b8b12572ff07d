/**
 * The rate limiter: token buckets on a fake clock (debt, burst, rate
 * changes), the stricter of two buckets, the shared per-user registry
 * across reloads, session counts, pump and the proxy's relay under a
 * limit, and the config's
 * rates (10M, 512K, 1G, 1000, and "10X" refused).
 */
import assert from "node:assert/strict";
import { ConfigError, parseConfig } from "../../src/config/load.ts";
import { type Config, configSchema } from "../../src/config/schema.ts";
import { pace, parseRate, RateLimit, SharedLimits, TokenBucket } from "../../src/ftp/rate.ts";
import { pump } from "../../src/ftp/transfer_io.ts";
import { DataRelay } from "../../src/proxy/relay.ts";

/** A clock the test moves by hand, in milliseconds. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

/** Sends `total` bytes in `chunk`s through `limit`, sleeping on the fake clock; the ms taken. */
function sendAll(
  limit: { take(n: number): number },
  clock: ReturnType<typeof fakeClock>,
  total: number,
  chunk: number,
): number {
  const start = clock.now();
  for (let left = total; left > 0; left -= chunk) {
    clock.advance(limit.take(Math.min(chunk, left)));
  }
  return clock.now() - start;
}

Deno.test("a bucket paces 30 MB in 1 MiB chunks at 10 MB/s to 3.0 s", () => {
  const clock = fakeClock();
  const bucket = new TokenBucket(10_000_000, clock.now);
  const ms = sendAll(bucket, clock, 30_000_000, 1 << 20);
  assert.ok(Math.abs(ms - 3000) < 3000 * 0.05, `took ${ms} ms`);
});

Deno.test("a 1 MiB chunk at 512 KB/s is taken as debt: wait 2.048 s, then the next pays on", () => {
  const clock = fakeClock();
  const bucket = new TokenBucket(512_000, clock.now);
  assert.equal(bucket.take(1 << 20), (1 << 20) / 512);
  // Without sleeping, the next chunk waits for both.
  assert.equal(bucket.take(1 << 20), 2 * (1 << 20) / 512);
  clock.advance(2 * (1 << 20) / 512);
  assert.equal(bucket.take(0), 0);
});

Deno.test("an idle bucket saves up 0.1 s of its rate, no more", () => {
  const clock = fakeClock();
  const bucket = new TokenBucket(1_000_000, clock.now);
  clock.advance(60_000);
  assert.equal(bucket.take(100_000), 0);
  assert.equal(bucket.take(1000), 1);
});

Deno.test("a bucket's rate changes in place; Infinity means no wait", () => {
  const clock = fakeClock();
  const bucket = new TokenBucket(Infinity, clock.now);
  assert.equal(bucket.take(1e12), 0);
  bucket.rate = 1000;
  assert.equal(bucket.take(1000), 1000);
  bucket.rate = 2000; // the debt stays, paid at the new rate
  assert.equal(bucket.take(0), 500);
  bucket.rate = Infinity;
  assert.equal(bucket.take(1e9), 0);
});

Deno.test("a limit over two buckets waits for the stricter, and both are charged", () => {
  const clock = fakeClock();
  const fast = new TokenBucket(20_000_000, clock.now);
  const slow = new TokenBucket(5_000_000, clock.now);
  const limit = new RateLimit([fast, slow], 1 << 20);
  const ms = sendAll(limit, clock, 10_000_000, limit.chunk);
  assert.ok(Math.abs(ms - 2000) < 2000 * 0.05, `took ${ms} ms`);
  // Both buckets are charged for every chunk, whichever is stricter.
  const fresh = [new TokenBucket(20_000_000, clock.now), new TokenBucket(5_000_000, clock.now)];
  assert.equal(new RateLimit(fresh, 1 << 20).take(10_000_000), 2000);
  assert.equal(fresh[0].take(0), 500);
  assert.equal(fresh[1].take(0), 2000);
});

Deno.test("the read size is a power of two near 1/16 s of the rate, within bounds", () => {
  const bucket = (rate: number) => new TokenBucket(rate, () => 0);
  assert.equal(new RateLimit([bucket(10_000_000)], 1 << 20).chunk, 1 << 19);
  assert.equal(new RateLimit([bucket(512_000)], 1 << 20).chunk, 1 << 14);
  assert.equal(new RateLimit([bucket(1e9)], 1 << 20).chunk, 1 << 20);
  assert.equal(new RateLimit([bucket(1000)], 1 << 20).chunk, 1024);
});

Deno.test("pace: null without a limit or when the bytes may go, a promise when they must wait", async () => {
  assert.equal(pace(null, 1 << 20), null);
  const clock = fakeClock();
  const limit = new RateLimit([new TokenBucket(1_000_000, clock.now)], 1 << 20);
  clock.advance(1000);
  assert.equal(pace(limit, 50_000), null);
  const wait = pace(limit, 51_000);
  assert.ok(wait instanceof Promise);
  await wait;
});

/** A config with alice (limited as given) and anonymous. */
function config(alice: Record<string, unknown>, limits: Record<string, unknown> = {}): Config {
  const hash =
    "scrypt$16384$8$1$bPP5DJKF24MKB4GzmP0SoA$NDzATpW33mJYCz4W0mB9VlRMFXbH53PPu+Y/bDgFJNc";
  return configSchema.parse({
    users: [{ name: "alice", password: hash, home: "/tmp", ...alice }],
    anonymous: { enabled: true, home: "/tmp", max_download_rate: "1M" },
    limits,
  });
}

Deno.test("shared limits: one bucket per user and direction, a reload changes it in place", () => {
  const clock = fakeClock();
  const shared = new SharedLimits(clock.now);
  let live = config({ max_download_rate: "1M" });
  const cfg = () => live; // what a session reads: the server's live config
  assert.equal(shared.limitFor(cfg, "alice", "in", 1 << 20), null);
  assert.equal(shared.limitFor(cfg, "bob", "out", 1 << 20), null);
  const a = shared.limitFor(cfg, "alice", "out", 1 << 20)!;
  const b = shared.limitFor(cfg, "alice", "out", 1 << 20)!;
  assert.equal(a.buckets.length, 1);
  assert.equal(a.buckets[0], b.buckets[0], "the user's sessions share one bucket");
  const anon = shared.limitFor(cfg, "anonymous", "out", 1 << 20)!;
  assert.notEqual(anon.buckets[0], a.buckets[0], "anonymous has a bucket of its own");
  assert.equal(a.take(1_000_000), 1000);
  // Reload: the running transfer's next take sees alice's new rate.
  live = config({ max_download_rate: "2M" }, { max_download_rate: "10M" });
  assert.equal(a.take(0), 500, "the 1 MB owed, now paid at 2 MB/s");
  assert.equal(a.buckets[0].rate, 2_000_000);
  const c = shared.limitFor(cfg, "alice", "out", 1 << 20)!;
  assert.equal(c.buckets.length, 2);
  assert.equal(c.buckets[0].rate, 10_000_000);
  assert.equal(c.buckets[1], a.buckets[0], "the user's bucket survives the reload");
  // Reload without limits: running transfers go free, new ones get none.
  live = config({});
  assert.equal(a.take(1e9), 0);
  assert.equal(c.take(1e9), 0);
  assert.equal(shared.limitFor(cfg, "alice", "out", 1 << 20), null);
});

Deno.test("shared limits: max_sessions counts logins per user and frees them", () => {
  const shared = new SharedLimits();
  const c = config({ max_sessions: 2 });
  assert.equal(shared.claimSession(c, "alice"), true);
  assert.equal(shared.claimSession(c, "alice"), true);
  assert.equal(shared.claimSession(c, "alice"), false);
  assert.equal(shared.sessionsOf("alice"), 2);
  assert.equal(shared.claimSession(c, "anonymous"), true, "no max_sessions: not limited");
  shared.releaseSession("alice");
  assert.equal(shared.claimSession(c, "alice"), true);
  // A reload that lowers the limit keeps the sessions, refuses new ones.
  assert.equal(shared.claimSession(config({ max_sessions: 1 }), "alice"), false);
  for (let i = 0; i < 3; i++) shared.releaseSession("alice");
  assert.equal(shared.sessionsOf("alice"), 0);
});

Deno.test("pump under a limit: 200 KB at 1 MB/s take about 0.2 s, in small reads", async () => {
  const data = new Uint8Array(200_000);
  let offset = 0;
  const reads: number[] = [];
  const from = {
    read(p: Uint8Array): Promise<number | null> {
      if (offset >= data.length) return Promise.resolve(null);
      const n = Math.min(p.length, data.length - offset);
      offset += n;
      reads.push(p.length);
      return Promise.resolve(n);
    },
  };
  let written = 0;
  const to = { write: (p: Uint8Array) => Promise.resolve((written += p.length, p.length)) };
  const limit = new RateLimit([new TokenBucket(1_000_000)], 1 << 20);
  const progress = { bytes: 0 };
  const started = performance.now();
  await pump(from, to, { buf: new Uint8Array(1 << 20), progress, fromIsDisk: true, limit });
  const ms = performance.now() - started;
  assert.equal(written, 200_000);
  assert.ok(ms > 180 && ms < 260, `took ${ms} ms`);
  assert.ok(reads.every((n) => n === 1 << 15), `reads of ${reads[0]}`);
});

Deno.test("the proxy's relay under a limit: 300 KB at 1 MB/s take about 0.3 s", async () => {
  let left = 300_000;
  const upstream = {
    read: (p: Uint8Array) => {
      const n = Math.min(p.length, left);
      left -= n;
      return Promise.resolve(n === 0 ? null : n);
    },
    write: (p: Uint8Array) => Promise.resolve(p.length),
    close: () => {},
  };
  let got = 0;
  const client = { ...upstream, write: (p: Uint8Array) => Promise.resolve(got += p.length) };
  const limit = new RateLimit([new TokenBucket(1_000_000)], 1 << 20);
  const started = performance.now();
  const relay = new DataRelay({ client, upstream }, {
    direction: "download",
    buf: new Uint8Array(1 << 20),
    stallMs: 10_000,
    limit,
  });
  const result = await relay.done;
  const ms = performance.now() - started;
  assert.deepEqual(result, { outcome: "ok", bytes: 300_000 });
  assert.equal(got, 300_000);
  assert.ok(ms > 270 && ms < 380, `took ${ms} ms`);
});

Deno.test("parseRate: plain numbers, decimal and binary suffixes", () => {
  assert.equal(parseRate(1000), 1000);
  assert.equal(parseRate("1000"), 1000);
  assert.equal(parseRate("512K"), 512_000);
  assert.equal(parseRate("10M"), 10_000_000);
  assert.equal(parseRate("10m"), 10_000_000);
  assert.equal(parseRate("1G"), 1_000_000_000);
  assert.equal(parseRate("1.5M"), 1_500_000);
  assert.equal(parseRate("64Ki"), 65_536);
  assert.equal(parseRate("1Mi"), 1_048_576);
  for (const bad of ["10X", "", "M", "-1", "1e6", "10 MB", true, -5, NaN, Infinity]) {
    assert.equal(parseRate(bad), undefined, String(bad));
  }
});

Deno.test("config: rates in limits, users and anonymous; a bad one is a config error", () => {
  const hash =
    "scrypt$16384$8$1$bPP5DJKF24MKB4GzmP0SoA$NDzATpW33mJYCz4W0mB9VlRMFXbH53PPu+Y/bDgFJNc";
  const c = parseConfig(
    [
      "limits:",
      "  max_download_rate: 10M",
      "  max_upload_rate: 512K",
      "users:",
      "  - name: alice",
      `    password: "${hash}"`,
      "    home: /srv/alice",
      "    max_download_rate: 1G",
      "    max_upload_rate: 1000",
      "    max_sessions: 2",
      "anonymous:",
      "  max_download_rate: 0",
      "",
    ].join("\n"),
    { file: "config.yaml" },
  );
  assert.equal(c.limits.max_download_rate, 10_000_000);
  assert.equal(c.limits.max_upload_rate, 512_000);
  assert.equal(c.users[0].max_download_rate, 1_000_000_000);
  assert.equal(c.users[0].max_upload_rate, 1000);
  assert.equal(c.users[0].max_sessions, 2);
  assert.equal(c.anonymous.max_download_rate, 0);
  const problems = (text: string) => {
    try {
      parseConfig(text, { file: "config.yaml" });
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.problems;
    }
    assert.fail("expected a ConfigError");
  };
  assert.deepEqual(problems("limits:\n  max_download_rate: 10X\n"), [
    "config.yaml:2:22: limits.max_download_rate: expected a rate in bytes per second, at " +
    "least 1000, such as 1000, 512K or 10M (K, M, G: powers of 1000; Ki, Mi, Gi: of 1024; " +
    '0: no limit); got "10X"',
  ]);
  assert.match(problems("limits:\n  max_upload_rate: 999\n")[0], /^config\.yaml:2:20: .*got 999$/);
  assert.match(
    problems(`users:\n  - { name: a, password: "${hash}", home: /a, max_sessions: 0 }\n`)[0],
    /users\[0\]\.max_sessions: expected an integer of at least 1; got 0/,
  );
});
