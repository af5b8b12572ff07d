import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import {
  type Clock,
  type DnsServer,
  parseDnsServer,
  PublicAddress,
  type PublicAddressOptions,
} from "../../src/nat/public_address.ts";
import { recordText, withLog } from "../helpers/log.ts";

const HOST = "myhome.example.net";
const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);

/** Manual clock: timers fire only when the test advances time. */
class FakeClock implements Clock {
  #now = T0;
  #nextId = 1;
  #timers = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): number {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + ms, fn });
    return id;
  }

  clearTimeout(id: number): void {
    this.#timers.delete(id);
  }

  get pending(): number {
    return this.#timers.size;
  }

  /** Delays of the pending timers from now, ascending. */
  delays(): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.#now).sort((a, b) => a - b);
  }

  /** Move time forward, firing due timers in order and letting promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (let guard = 0; guard < 1000; guard++) {
      let due: [number, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (due === undefined || entry[1].at < due[1].at)) due = entry;
      }
      if (due === undefined) break;
      this.#timers.delete(due[0]);
      this.#now = due[1].at;
      due[1].fn();
      await settle();
    }
    this.#now = end;
    await settle();
  }
}

/** Let pending promise chains run to completion. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

type Answer = string[] | Error | "hang";

/** Resolver that answers from a script; the last answer repeats. */
class FakeResolver {
  answers: Answer[];
  calls: { name: string; type: string; nameServer?: DnsServer; signal?: AbortSignal }[] = [];

  constructor(...answers: Answer[]) {
    this.answers = answers;
  }

  resolve = (
    name: string,
    type: "A" | "AAAA",
    opts: { nameServer?: DnsServer; signal?: AbortSignal },
  ): Promise<string[]> => {
    this.calls.push({ name, type, ...opts });
    const answer = this.answers.length > 1 ? this.answers.shift()! : this.answers[0];
    if (answer === "hang") return new Promise(() => {});
    if (answer instanceof Error) return Promise.reject(answer);
    return Promise.resolve([...answer]);
  };
}

function make(
  resolver: FakeResolver,
  clock: FakeClock,
  options: Partial<PublicAddressOptions> = {},
): PublicAddress {
  return new PublicAddress({
    host: HOST,
    resolver: resolver.resolve,
    clock,
    random: () => 0.5, // no jitter
    ...options,
  });
}

function lines(records: LogRecord[], level?: string): string[] {
  return records.filter((r) => level === undefined || r.level === level).map(recordText);
}

Deno.test("first resolution: address, log line, schedule, snapshot", async () => {
  await withLog(["pitifulnat", "nat"], async (records) => {
    const clock = new FakeClock();
    const resolver = new FakeResolver(["203.0.113.7"]);
    const pa = make(resolver, clock);
    assert.equal(pa.current(), null);
    await pa.start();
    assert.equal(pa.current(), "203.0.113.7");
    assert.equal(resolver.calls.length, 1);
    assert.equal(resolver.calls[0].name, HOST);
    assert.equal(resolver.calls[0].type, "A");
    assert.equal(resolver.calls[0].nameServer, undefined);
    assert.deepEqual(lines(records, "info"), [
      `resolved ${HOST} -> 203.0.113.7 via system in 0 ms`,
    ]);
    assert.deepEqual(clock.delays(), [60_000]);
    assert.deepEqual(pa.snapshot(), {
      host: HOST,
      address: "203.0.113.7",
      fixed: false,
      resolvedAt: new Date(T0).toISOString(),
      dnsServer: "system",
      lastError: null,
      lastErrorAt: null,
      consecutiveFailures: 0,
      failingSince: null,
      nextRefreshAt: new Date(T0 + 60_000).toISOString(),
      resolutions: { ok: 1, failed: 0 },
      history: [{ at: new Date(T0).toISOString(), from: null, to: "203.0.113.7" }],
    });
    pa.stop();
    assert.equal(clock.pending, 0);
    assert.equal(pa.snapshot().nextRefreshAt, null);
  });
});

Deno.test("refresh sees a changed address and logs the change once", async () => {
  await withLog(["pitifulnat", "nat"], async (records) => {
    const clock = new FakeClock();
    const resolver = new FakeResolver(["203.0.113.7"], ["203.0.113.7"], ["203.0.113.8"]);
    const pa = make(resolver, clock, { refreshMs: 30_000 });
    await pa.start();
    await clock.advance(30_000);
    assert.equal(resolver.calls.length, 2);
    assert.equal(pa.current(), "203.0.113.7");
    await clock.advance(30_000);
    assert.equal(pa.current(), "203.0.113.8");
    await clock.advance(30_000);
    await clock.advance(30_000);
    assert.equal(resolver.calls.length, 5);
    assert.equal(pa.current(), "203.0.113.8");
    const changes = lines(records).filter((l) => l.startsWith("public address changed"));
    assert.deepEqual(changes, [
      `public address changed: 203.0.113.7 -> 203.0.113.8 (${HOST} via system)`,
    ]);
    assert.equal(records.find((r) => recordText(r) === changes[0])?.level, "warning");
    assert.equal(pa.snapshot().resolvedAt, new Date(T0 + 120_000).toISOString());
    assert.deepEqual(pa.snapshot().resolutions, { ok: 5, failed: 0 });
    // The status page's history: the first answer, then the one change.
    assert.deepEqual(pa.snapshot().history.map((h) => [h.from, h.to]), [
      [null, "203.0.113.7"],
      ["203.0.113.7", "203.0.113.8"],
    ]);
    pa.stop();
    assert.equal(clock.pending, 0);
  });
});

Deno.test("failures keep the last good address, back off, log sparsely, recovery logged", async () => {
  await withLog(["pitifulnat", "nat"], async (records) => {
    const clock = new FakeClock();
    const fail = new Error("server failure");
    const resolver = new FakeResolver(
      ["203.0.113.7"],
      ...Array<Answer>(9).fill(fail),
      ["203.0.113.7"],
    );
    const pa = make(resolver, clock, { refreshMs: 60_000 });
    await pa.start();
    await clock.advance(60_000); // failure 1
    assert.equal(pa.current(), "203.0.113.7");
    const snap = pa.snapshot();
    assert.equal(snap.consecutiveFailures, 1);
    assert.equal(snap.lastError, "server failure");
    assert.equal(snap.lastErrorAt, new Date(T0 + 60_000).toISOString());
    assert.equal(snap.failingSince, new Date(T0 + 60_000).toISOString());
    // Back-off: 5 s, 10 s, 20 s, 40 s, then capped at refreshMs.
    const delays: number[] = [];
    for (let i = 2; i <= 9; i++) {
      const [delay] = clock.delays();
      delays.push(delay);
      await clock.advance(delay);
      assert.equal(pa.snapshot().consecutiveFailures, i);
      assert.equal(pa.current(), "203.0.113.7");
    }
    assert.deepEqual(delays, [5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000, 60_000]);
    // (The first answer is an example address, which is warned about too.)
    const warnings = lines(records, "warning").filter((l) => !l.includes("cannot work"));
    assert.equal(warnings.length, 4, warnings.join("\n")); // failures 1, 2, 4, 8
    assert.match(warnings[0], /^cannot resolve myhome\.example\.net via system: server failure/);
    assert.match(warnings[0], /keeping 203\.0\.113\.7$/);
    assert.match(warnings[1], /after 2 attempts/);
    assert.match(warnings[2], /after 4 attempts/);
    assert.match(warnings[3], /after 8 attempts/);

    // The run of failures began at the first one, however many followed.
    assert.equal(pa.snapshot().failingSince, new Date(T0 + 60_000).toISOString());
    // Recovery: logged once, state reset, normal schedule again.
    await clock.advance(clock.delays()[0]);
    assert.equal(pa.snapshot().failingSince, null);
    assert.equal(pa.snapshot().consecutiveFailures, 0);
    assert.equal(pa.snapshot().lastError, null);
    const recovered = lines(records, "info").filter((l) => l.includes("again after"));
    assert.equal(recovered.length, 1);
    assert.match(recovered[0], /resolved myhome\.example\.net again after 9 failed lookups/);
    assert.deepEqual(clock.delays(), [60_000]);
    assert.deepEqual(pa.snapshot().resolutions, { ok: 2, failed: 9 });
    pa.stop();
    assert.equal(clock.pending, 0);
  });
});

Deno.test("a long failure streak is logged at least hourly", async () => {
  await withLog(["pitifulnat", "nat"], async (records) => {
    const clock = new FakeClock();
    const resolver = new FakeResolver(new Error("refused"));
    const pa = make(resolver, clock, { refreshMs: 600_000 });
    await pa.start();
    // 10 min cap: failures 1..16 take 5+10+...+320 s then 600 s each.
    await clock.advance(4 * 3_600_000);
    const warnings = lines(records, "warning");
    const n = pa.snapshot().consecutiveFailures;
    assert.ok(n > 16 && n < 32, String(n));
    // 1, 2, 4, 8, 16 and hourly ones in between.
    assert.ok(warnings.length >= 8, warnings.join("\n"));
    assert.ok(warnings.length < n);
    pa.stop();
  });
});

Deno.test("first resolution fails: current() stays null, start() does not throw", async () => {
  await withLog(["pitifulnat", "nat"], async (records) => {
    const clock = new FakeClock();
    const resolver = new FakeResolver(new Error("NXDOMAIN"), [], ["203.0.113.9"]);
    const pa = make(resolver, clock);
    await pa.start();
    assert.equal(pa.current(), null);
    assert.match(lines(records, "warning")[0], /no public address yet/);
    assert.deepEqual(clock.delays(), [5_000]);
    await clock.advance(5_000); // empty answer is a failure too
    assert.equal(pa.current(), null);
    assert.equal(pa.snapshot().lastError, "no A records");
    await clock.advance(10_000);
    assert.equal(pa.current(), "203.0.113.9");
    assert.ok(
      lines(records, "info").includes(`resolved ${HOST} -> 203.0.113.9 via system in 0 ms`),
    );
    pa.stop();
  });
});

Deno.test("hint triggers an early lookup at most once per 30 s", async () => {
  await withLog(["pitifulnat", "nat"], async () => {
    const clock = new FakeClock();
    const resolver = new FakeResolver(["203.0.113.7"], ["203.0.113.8"]);
    const pa = make(resolver, clock, { refreshMs: 300_000 });
    pa.hint("not running yet"); // ignored
    assert.equal(resolver.calls.length, 0);
    await pa.start();
    await clock.advance(1_000);
    pa.hint("passive port 10001 was never opened");
    await settle();
    assert.equal(resolver.calls.length, 2);
    assert.equal(pa.current(), "203.0.113.8");
    // The refresh is rescheduled from the hinted lookup.
    assert.deepEqual(clock.delays(), [300_000]);
    await clock.advance(29_000);
    pa.hint("again");
    await settle();
    assert.equal(resolver.calls.length, 2);
    await clock.advance(1_000);
    pa.hint("again, 30 s later");
    await settle();
    assert.equal(resolver.calls.length, 3);
    pa.stop();
    pa.hint("stopped");
    await settle();
    assert.equal(resolver.calls.length, 3);
    assert.equal(clock.pending, 0);
  });
});

Deno.test("custom DNS server, AAAA, jitter bounds", async () => {
  const clock = new FakeClock();
  const resolver = new FakeResolver(["2001:DB8::7"]);
  let r = 0;
  const pa = make(resolver, clock, {
    dnsServer: parseDnsServer("[::1]:5353"),
    ipv6: true,
    random: () => r,
  });
  await pa.start();
  assert.deepEqual(resolver.calls[0].nameServer, { ipAddr: "::1", port: 5353 });
  assert.equal(resolver.calls[0].type, "AAAA");
  assert.equal(pa.current(), "2001:db8::7");
  assert.equal(pa.snapshot().dnsServer, "[::1]:5353");
  assert.deepEqual(clock.delays(), [54_000]); // -10 %
  r = 0.99999;
  await pa.resolveNow();
  assert.deepEqual(clock.delays(), [66_000]); // +10 %
  pa.stop();
  assert.equal(clock.pending, 0);
});

Deno.test("answers: wrong family skipped, current kept among round-robin answers", async () => {
  const clock = new FakeClock();
  const resolver = new FakeResolver(
    ["2001:db8::1", "203.0.113.7", "203.0.113.8"],
    ["203.0.113.8", "203.0.113.7"],
    ["203.0.113.9", "203.0.113.10"],
    ["garbage"],
  );
  const pa = make(resolver, clock);
  assert.equal((await pa.resolveNow()).address, "203.0.113.7");
  assert.equal((await pa.resolveNow()).address, "203.0.113.7");
  assert.equal((await pa.resolveNow()).address, "203.0.113.9");
  const bad = await pa.resolveNow();
  assert.equal(bad.ok, false);
  assert.match(bad.error ?? "", /no valid A record/);
  assert.equal(pa.current(), "203.0.113.9");
  // Not started: resolveNow schedules nothing.
  assert.equal(clock.pending, 0);
});

Deno.test("a private answer is warned about once", async () => {
  await withLog(["pitifulnat", "nat"], async (records) => {
    const clock = new FakeClock();
    const resolver = new FakeResolver(["192.168.1.1"], ["192.168.1.1"], ["100.64.0.9"]);
    const pa = make(resolver, clock);
    await pa.resolveNow();
    await pa.resolveNow();
    await pa.resolveNow();
    const warnings = lines(records, "warning").filter((l) => l.includes("cannot work"));
    assert.equal(warnings.length, 2, warnings.join("\n"));
    assert.match(warnings[0], /192\.168\.1\.1, which cannot work: .* private \(LAN\) address/);
    assert.match(warnings[1], /100\.64\.0\.9, which cannot work: .* carrier-grade NAT/);
    assert.equal(pa.current(), "100.64.0.9");
  });
});

Deno.test("a lookup that hangs times out and is aborted", async () => {
  const clock = new FakeClock();
  const resolver = new FakeResolver("hang");
  const pa = make(resolver, clock, { timeoutMs: 2_000 });
  const result = pa.resolveNow();
  await settle();
  assert.equal(clock.pending, 1);
  await clock.advance(2_000);
  const r = await result;
  assert.equal(r.ok, false);
  assert.equal(r.error, "no answer within 2000 ms");
  assert.equal(r.ms, 2_000);
  assert.equal(resolver.calls[0].signal?.aborted, true);
  assert.equal(clock.pending, 0);
});

Deno.test("stop() during a lookup records nothing and leaves no timer", async () => {
  const clock = new FakeClock();
  const resolver = new FakeResolver("hang");
  const pa = make(resolver, clock);
  const started = pa.start();
  await settle();
  pa.stop();
  await started;
  assert.equal(clock.pending, 0);
  assert.equal(resolver.calls[0].signal?.aborted, true);
  assert.deepEqual(pa.snapshot().resolutions, { ok: 0, failed: 0 });
});

Deno.test("concurrent resolveNow calls share one lookup", async () => {
  const clock = new FakeClock();
  const resolver = new FakeResolver(["203.0.113.7"]);
  const pa = make(resolver, clock);
  const [a, b] = await Promise.all([pa.resolveNow(), pa.resolveNow()]);
  assert.equal(resolver.calls.length, 1);
  assert.deepEqual(a, b);
});

Deno.test("fixed address: immediate, no DNS, no timers", async () => {
  const clock = new FakeClock();
  const resolver = new FakeResolver(["198.51.100.1"]);
  const pa = new PublicAddress({ address: "203.0.113.50", resolver: resolver.resolve, clock });
  assert.equal(pa.current(), "203.0.113.50");
  await pa.start();
  pa.hint("ignored");
  assert.deepEqual(await pa.resolveNow(), {
    ok: true,
    address: "203.0.113.50",
    ms: 0,
    dnsServer: "none",
  });
  assert.equal(resolver.calls.length, 0);
  assert.equal(clock.pending, 0);
  const snap = pa.snapshot();
  assert.equal(snap.fixed, true);
  assert.equal(snap.address, "203.0.113.50");
  assert.equal(snap.host, undefined);
  assert.equal(snap.nextRefreshAt, null);
  pa.stop();

  // An IP literal as host acts as a fixed address.
  const literal = new PublicAddress({ host: "::ffff:203.0.113.51", clock });
  assert.equal(literal.current(), "203.0.113.51");
  assert.equal(literal.snapshot().fixed, true);
});

Deno.test("constructor rejects bad options", () => {
  assert.throws(() => new PublicAddress({}), TypeError);
  assert.throws(() => new PublicAddress({ host: HOST, address: "1.2.3.4" }), TypeError);
  assert.throws(() => new PublicAddress({ address: "not-an-ip" }), TypeError);
  assert.throws(() => new PublicAddress({ address: "2001:db8::1" }), TypeError);
  assert.throws(() => new PublicAddress({ address: "1.2.3.4", ipv6: true }), TypeError);
  assert.throws(() => new PublicAddress({ host: HOST, refreshMs: 10 }), RangeError);
  assert.throws(() => new PublicAddress({ host: HOST, timeoutMs: 0 }), RangeError);
});

Deno.test("real timers: stop() clears every timer it started", async () => {
  // Deno 2.9's test sanitizers do not report leaked timers, so count them.
  const live = new Set<number>();
  const spy: Clock = {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      const id = Number(setTimeout(() => {
        live.delete(id);
        fn();
      }, ms));
      live.add(id);
      return id;
    },
    clearTimeout(id) {
      live.delete(id);
      clearTimeout(id);
    },
  };
  const resolver = new FakeResolver(["203.0.113.7"]);
  const pa = new PublicAddress({ host: HOST, resolver: resolver.resolve, clock: spy });
  await pa.start();
  assert.equal(pa.current(), "203.0.113.7");
  assert.equal(live.size, 1);
  pa.hint("early");
  await pa.resolveNow();
  assert.equal(live.size, 1);
  pa.stop();
  assert.equal(live.size, 0);
  assert.equal(pa.snapshot().nextRefreshAt, null);

  // The default clock works too.
  const real = new PublicAddress({ host: HOST, resolver: resolver.resolve, refreshMs: 1_000 });
  await real.start();
  assert.equal(real.current(), "203.0.113.7");
  assert.ok(real.snapshot().nextRefreshAt !== null);
  real.stop();
  assert.equal(real.snapshot().nextRefreshAt, null);
});

Deno.test("parseDnsServer", () => {
  const good: [string, { ipAddr: string; port: number }][] = [
    ["1.2.3.4", { ipAddr: "1.2.3.4", port: 53 }],
    ["1.2.3.4:5353", { ipAddr: "1.2.3.4", port: 5353 }],
    ["[::1]:5353", { ipAddr: "::1", port: 5353 }],
    ["::1", { ipAddr: "::1", port: 53 }],
    ["[::1]", { ipAddr: "::1", port: 53 }],
    ["2001:DB8::53", { ipAddr: "2001:db8::53", port: 53 }],
    [" 127.0.0.1:53 ", { ipAddr: "127.0.0.1", port: 53 }],
  ];
  for (const [text, want] of good) {
    assert.deepEqual(parseDnsServer(text), want, text);
  }
  for (
    const bad of [
      "",
      "dns.example",
      "1.2.3.4:0",
      "1.2.3.4:65536",
      "1.2.3.4:x",
      "[::1",
      "[1.2.3.4]:53",
      "[::1]x",
    ]
  ) {
    assert.throws(() => parseDnsServer(bad), TypeError, bad);
  }
});
