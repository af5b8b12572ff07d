/**
 * `public_address: { from: http }` against a real HTTP server on loopback:
 * what bodies give an address, how each failure is worded, that a slow or
 * endless answer cannot hold a lookup, and that a PublicAddress built from
 * the config follows a changing answer, early on a hint, and shows its
 * source in the status snapshot.
 */
import assert from "node:assert/strict";
import { throttleFromLimits } from "../../src/auth/throttle.ts";
import { publicAddressFrom } from "../../src/cli/common.ts";
import { renderStatus } from "../../src/cli/status.ts";
import { parseConfig } from "../../src/config/load.ts";
import {
  addressFromBody,
  HTTP_SOURCE_LABEL,
  httpAddressResolver,
  isAddressUrl,
  MAX_BODY_BYTES,
} from "../../src/nat/http_address.ts";
import { type Clock, PublicAddress } from "../../src/nat/public_address.ts";
import { Activity } from "../../src/observe/activity.ts";
import { statusSnapshot } from "../../src/observe/status.ts";
import { verdict } from "../../src/observe/page.ts";
import { recordText, withLog } from "../helpers/log.ts";

/** What the test server answers on `/`: a body, a status, or a special behaviour. */
type Answer =
  | { body: string; status?: number; type?: string }
  | { endless: true }
  | { hang: true }
  | { headersOnly: true }
  | { redirect: string };

/** A real HTTP server on 127.0.0.1 whose answer the test sets. */
class AddressServer {
  answer: Answer = { body: "203.0.113.7\n" };
  requests = 0;
  /** Bytes the endless answer produced before the client went away. */
  endlessSent = 0;
  endlessCancelled = false;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #release: (() => void)[] = [];

  constructor() {
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      (req) => this.#handle(req),
    );
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}/`;
  }

  #handle(req: Request): Response | Promise<Response> {
    this.requests++;
    const path = new URL(req.url).pathname;
    if (path === "/moved") return new Response(null, { status: 302, headers: { location: "/" } });
    const a = this.answer;
    if ("redirect" in a) {
      return new Response(null, { status: 302, headers: { location: a.redirect } });
    }
    if ("hang" in a) {
      return new Promise((resolve) => this.#release.push(() => resolve(new Response("late"))));
    }
    if ("headersOnly" in a) {
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          this.#release.push(() => {
            try {
              c.close();
            } catch { /* cancelled */ }
          });
        },
      });
      return new Response(body);
    }
    if ("endless" in a) {
      const chunk = new TextEncoder().encode("9".repeat(1024));
      const body = new ReadableStream<Uint8Array>({
        pull: (c) => {
          this.endlessSent += chunk.length;
          c.enqueue(chunk);
        },
        cancel: () => {
          this.endlessCancelled = true;
        },
      });
      return new Response(body);
    }
    return new Response(a.body, {
      status: a.status ?? 200,
      headers: { "content-type": a.type ?? "text/plain" },
    });
  }

  async close(): Promise<void> {
    for (const release of this.#release.splice(0)) release();
    await this.#server.shutdown();
  }
}

/** Runs `fn` with a fresh server, always shut down afterwards. */
async function withServer(fn: (server: AddressServer) => Promise<void>): Promise<void> {
  const server = new AddressServer();
  try {
    await fn(server);
  } finally {
    await server.close();
  }
}

/** One lookup of `url` as PublicAddress makes it. */
function lookup(
  url: string,
  options: { type?: "A" | "AAAA"; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<string[]> {
  const resolve = httpAddressResolver(url, { timeoutMs: options.timeoutMs ?? 5_000 });
  return resolve(url, options.type ?? "A", { signal: options.signal });
}

/** The error message of a lookup that must fail. */
async function failure(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof Error, `not an Error: ${e}`);
    return e.message;
  }
  assert.fail("expected the lookup to fail");
}

/** `promise`, or a failure once `ms` have passed: a lookup that hangs fails the test. */
async function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Manual clock for PublicAddress: timers fire only when the test says. */
class FakeClock implements Clock {
  #now = Date.UTC(2025, 0, 1, 12, 0, 0);
  #nextId = 1;
  readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.#nextId++;
    this.timers.set(id, { at: this.#now + ms, fn });
    return id;
  }
  clearTimeout(id: number): void {
    this.timers.delete(id);
  }
}

/** Waits, bounded, until `done()` holds. */
async function until(done: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) assert.fail(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("addressFromBody: plain text, JSON strings and the common keys", () => {
  const cases: [string, string | null][] = [
    ["203.0.113.7", "203.0.113.7"],
    ["  203.0.113.7\r\n", "203.0.113.7"],
    ["2001:DB8::1\n", "2001:db8::1"],
    ['"203.0.113.7"', "203.0.113.7"],
    ['{"ip": "203.0.113.7"}', "203.0.113.7"],
    ['{"address": "203.0.113.7"}', "203.0.113.7"],
    ['{"ipAddress": "203.0.113.7", "country": "XX"}', "203.0.113.7"],
    ['{"ip_addr": "203.0.113.7"}', "203.0.113.7"],
    ['{"origin": "203.0.113.7, 10.0.0.1"}', "203.0.113.7"],
    ['{"status": "success", "query": "203.0.113.7"}', "203.0.113.7"],
    ['{"ip": "unknown", "address": "203.0.113.8"}', "203.0.113.8"],
    ["", null],
    ["<html>203.0.113.7</html>", null],
    ["203.0.113.7 203.0.113.8", null],
    ["10.1", null],
    ["fe80::1%eth0", null],
    ['{"ip": 3405803783}', null],
    ['{"other": "203.0.113.7"}', null],
    ['["203.0.113.7"]', null],
    ['{"ip": "203.0.113.7"', null],
  ];
  for (const [body, want] of cases) assert.equal(addressFromBody(body), want, body);
});

Deno.test("isAddressUrl: http and https with a host, no credentials", () => {
  for (const ok of ["http://198.51.100.1:8080/", "https://ip.example.net/", "HTTPS://a.b/x?y"]) {
    assert.ok(isAddressUrl(ok), ok);
  }
  for (const bad of ["ftp://a.b/", "file:///etc/hosts", "ip.example.net", "https://", ""]) {
    assert.ok(!isAddressUrl(bad), bad);
  }
  assert.ok(!isAddressUrl("https://user:pw@ip.example.net/"));
  assert.throws(() => httpAddressResolver("ftp://a.b/"), /not an http:\/\/ or https:\/\/ URL/);
});

Deno.test("http source: plain text, whitespace, JSON with ip, a JSON string, a redirect", async () => {
  await withServer(async (server) => {
    server.answer = { body: "203.0.113.7" };
    assert.deepEqual(await lookup(server.url), ["203.0.113.7"]);
    server.answer = { body: "\n  203.0.113.8 \t\n" };
    assert.deepEqual(await lookup(server.url), ["203.0.113.8"]);
    server.answer = { body: '{"ip":"203.0.113.9"}', type: "application/json" };
    assert.deepEqual(await lookup(server.url), ["203.0.113.9"]);
    server.answer = { body: '"203.0.113.10"', type: "application/json" };
    assert.deepEqual(await lookup(server.url), ["203.0.113.10"]);
    assert.deepEqual(await lookup(`${server.url}moved`), ["203.0.113.10"]);
  });
});

Deno.test("http source: a non-2xx status is an error naming the URL and the status", async () => {
  await withServer(async (server) => {
    for (const status of [404, 503]) {
      server.answer = { body: "203.0.113.7", status };
      const message = await failure(lookup(server.url));
      assert.match(message, new RegExp(`^${server.url} answered ${status}\\b`), message);
    }
  });
});

Deno.test("http source: a body that is not an address is quoted, cut at 60 characters", async () => {
  await withServer(async (server) => {
    server.answer = { body: "<html><body>Your IP is 203.0.113.7</body></html>".repeat(3) };
    const message = await failure(lookup(server.url));
    assert.ok(
      message.startsWith(`${server.url} body is not an IP address: "<html><body>Your IP is`),
      message,
    );
    const quoted = message.slice(message.indexOf('"') + 1, message.lastIndexOf('"'));
    assert.equal(quoted.length, 60);
    assert.ok(message.endsWith('"...'), message);
    server.answer = { body: " \n" };
    assert.match(await failure(lookup(server.url)), /body is empty, not an IP address/);
    server.answer = { body: '{"ip": "nope"}' };
    assert.match(await failure(lookup(server.url)), /body is not an IP address: "\{\\"ip\\"/);
  });
});

Deno.test("http source: an oversize body is refused without being read to the end", async () => {
  await withServer(async (server) => {
    // Declared too long: refused from the header.
    server.answer = { body: "1".repeat(MAX_BODY_BYTES + 1) };
    assert.match(
      await failure(lookup(server.url)),
      new RegExp(`body is ${MAX_BODY_BYTES + 1} bytes; an address needs at most ${MAX_BODY_BYTES}`),
    );
    // Endless, with no length: only a bounded read can end it.
    server.answer = { endless: true };
    const started = Date.now();
    const message = await within(8_000, failure(lookup(server.url, { timeoutMs: 10_000 })));
    assert.match(message, new RegExp(`body is longer than ${MAX_BODY_BYTES} bytes`), message);
    assert.ok(Date.now() - started < 5_000, "refused at once, not at the timeout");
    await until(() => server.endlessCancelled, "the server sees the body cancelled");
  });
});

Deno.test("http source: a slow server times out within the timeout", async () => {
  await withServer(async (server) => {
    for (const answer of [{ hang: true } as const, { headersOnly: true } as const]) {
      server.answer = answer;
      const started = Date.now();
      const message = await within(5_000, failure(lookup(server.url, { timeoutMs: 300 })));
      const took = Date.now() - started;
      assert.equal(message, `${server.url} gave no answer within 300 ms`);
      assert.ok(took >= 250 && took < 3_000, `took ${took} ms`);
    }
  });
});

Deno.test("http source: the caller's abort ends the lookup with its reason", async () => {
  await withServer(async (server) => {
    server.answer = { hang: true };
    const abort = new AbortController();
    const reason = new Error("stopped");
    const pending = lookup(server.url, { signal: abort.signal });
    await until(() => server.requests > 0, "the request arrives");
    abort.abort(reason);
    await assert.rejects(within(5_000, pending), (e) => e === reason);
  });
});

Deno.test("http source: unreachable, and redirects that are not http(s)", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = closed.addr.port;
  closed.close();
  assert.equal(
    await failure(lookup(`http://127.0.0.1:${port}/`)),
    `http://127.0.0.1:${port}/ cannot be reached: nothing accepts connections on 127.0.0.1:${port}`,
  );
  await withServer(async (server) => {
    server.answer = { redirect: "file:///etc/passwd" };
    assert.match(
      await failure(lookup(server.url)),
      /redirects to "file:\/\/\/etc\/passwd", which is not an http:\/\/ or https:\/\/ URL/,
    );
    server.answer = { redirect: server.url };
    assert.match(await failure(lookup(server.url)), /redirects more than 3 times/);
  });
});

Deno.test("http source: IPv6 answers with ipv6 true; the other family is refused end to end", async () => {
  await withServer(async (server) => {
    server.answer = { body: "2001:db8::7\n" };
    assert.deepEqual(await lookup(server.url, { type: "AAAA" }), ["2001:db8::7"]);
    assert.match(
      await failure(lookup(server.url, { type: "A" })),
      /answered 2001:db8::7, an IPv6 address, but IPv4 is wanted \(public_address.ipv6 is false\)/,
    );
    const make = (ipv6: boolean) =>
      new PublicAddress({
        host: server.url,
        label: HTTP_SOURCE_LABEL,
        resolver: httpAddressResolver(server.url),
        ipv6,
        clock: new FakeClock(),
      });
    const v6 = make(true);
    const ok = await v6.resolveNow();
    assert.equal(ok.ok, true, ok.error);
    assert.equal(v6.current(), "2001:db8::7");
    const v4 = make(false);
    const refused = await v4.resolveNow();
    assert.equal(refused.ok, false);
    assert.equal(v4.current(), null);
    assert.match(v4.snapshot().lastError ?? "", /an IPv6 address, but IPv4 is wanted/);
    server.answer = { body: "203.0.113.7" };
    assert.match((await v6.resolveNow()).error ?? "", /an IPv4 address, but IPv6 is wanted/);
    assert.equal(v6.current(), "2001:db8::7", "the last good address is kept");
  });
});

Deno.test("http source from the config: a changed answer is announced, logged and recorded", async () => {
  await withLog(["pitifulnat", "nat"], async (records) => {
    await withServer(async (server) => {
      const config = parseConfig(
        `public_address: { from: http, url: "${server.url}", refresh_seconds: 30 }\n`,
        { file: "c.yaml" },
      );
      const pa = publicAddressFrom(config);
      assert.ok(pa);
      try {
        server.answer = { body: "203.0.113.7\n" };
        await pa.start();
        assert.equal(pa.current(), "203.0.113.7");
        server.answer = { body: '{"ip": "203.0.113.8"}' };
        const r = await pa.resolveNow();
        assert.deepEqual([r.ok, r.address, r.dnsServer], [true, "203.0.113.8", "HTTP"]);
        assert.equal(pa.current(), "203.0.113.8");
        const snap = pa.snapshot();
        assert.equal(snap.host, server.url);
        assert.equal(snap.dnsServer, HTTP_SOURCE_LABEL);
        assert.deepEqual(snap.history.map((h) => [h.from, h.to]), [
          [null, "203.0.113.7"],
          ["203.0.113.7", "203.0.113.8"],
        ]);
        const text = records.map(recordText);
        assert.ok(
          text.some((l) => l.startsWith(`resolved ${server.url} -> 203.0.113.7 via HTTP in `)),
          text.join("\n"),
        );
        assert.ok(
          text.includes(
            `public address changed: 203.0.113.7 -> 203.0.113.8 (${server.url} via HTTP)`,
          ),
          text.join("\n"),
        );
        // A failure keeps the last good address and names the URL.
        server.answer = { body: "busy", status: 503 };
        const failed = await pa.resolveNow();
        assert.equal(failed.ok, false);
        assert.equal(pa.current(), "203.0.113.8");
        assert.match(pa.snapshot().lastError ?? "", new RegExp(`^${server.url} answered 503`));
        assert.ok(
          records.map(recordText).some((l) =>
            l.startsWith(`cannot resolve ${server.url} via HTTP: ${server.url} answered 503`) &&
            l.endsWith("keeping 203.0.113.8")
          ),
        );
      } finally {
        pa.stop();
      }
    });
  });
});

Deno.test("http source: a passive connection that never arrived fetches early", async () => {
  await withServer(async (server) => {
    const clock = new FakeClock();
    const pa = new PublicAddress({
      host: server.url,
      label: HTTP_SOURCE_LABEL,
      resolver: httpAddressResolver(server.url),
      refreshMs: 3_600_000,
      clock,
    });
    try {
      await pa.start();
      assert.equal(pa.current(), "203.0.113.7");
      server.answer = { body: "203.0.113.9" };
      const before = server.requests;
      pa.hint("passive port 50001 was never connected");
      await until(() => pa.current() === "203.0.113.9", "the hint's lookup");
      assert.equal(server.requests, before + 1);
    } finally {
      pa.stop();
    }
    assert.equal(clock.timers.size, 0);
  });
});

Deno.test("http source: the status snapshot and `pitifulnat status` name the URL", async () => {
  await withServer(async (server) => {
    server.answer = { body: "5.6.7.8" };
    const config = parseConfig(
      `public_address: { from: http, url: "${server.url}" }\n`,
      { file: "c.yaml" },
    );
    const pa = publicAddressFrom(config)!;
    /** A server's status snapshot with no sessions, as the status page would get it now. */
    const snapshotNow = () =>
      statusSnapshot({
        config,
        sessions: new Set(),
        stats: { loginsOk: 0, loginsFailed: 0, bytesIn: 0, bytesOut: 0, transfers: 0 },
        activity: new Activity(),
        throttle: throttleFromLimits(config.limits),
        bytesMoved: () => ({ in: 0, out: 0 }),
      }, { publicAddress: pa, version: "t", startedAt: new Date(), mode: "serve" });
    try {
      await pa.start();
      const snap = snapshotNow();
      assert.equal(snap.publicAddress.address, "5.6.7.8");
      assert.equal(snap.publicAddress.host, server.url);
      assert.equal(snap.publicAddress.dnsServer, HTTP_SOURCE_LABEL);
      assert.equal(snap.publicAddress.source, "http");
      assert.equal(snap.told.remote.address, "5.6.7.8");
      assert.match(
        renderStatus(snap),
        new RegExp(`public address: 5\\.6\\.7\\.8 answered by ${server.url} \\(HTTP\\)`),
      );
      assert.match(renderStatus(snap), /lookups: 1 ok, 0 failed/);
      // Failing: the page's headline names the address service, not DNS.
      server.answer = { status: 503, body: "" };
      await pa.resolveNow();
      const failing = snapshotNow();
      assert.equal(
        verdict(failing).title,
        "The address service fails; still telling the last good address 5.6.7.8",
      );
      assert.match(failing.publicAddress.lastError ?? "", /answered 503/);
    } finally {
      pa.stop();
    }
  });
});
