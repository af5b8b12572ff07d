/**
 * The server's public address, kept fresh by re-resolving a (dynamic DNS)
 * host name while the server runs: home addresses change, and a PASV reply
 * with yesterday's address fails silently for every remote client.
 *
 * @module
 */

import { unreachableFromInternet } from "./address_kind.ts";
import { getLogger } from "@logtape/logtape";
import { normalizeAddress } from "./announce.ts";

const logger = getLogger(["pitifulnat", "nat"]);

/** A DNS server to ask instead of the system resolver. */
export interface DnsServer {
  /** IP address of the server. */
  ipAddr: string;
  /** UDP/TCP port, usually 53. */
  port: number;
}

/** Looks up a name; resolves to the answers' addresses (may be empty). */
export type Resolver = (
  name: string,
  type: "A" | "AAAA",
  opts: { nameServer?: DnsServer; signal?: AbortSignal },
) => Promise<string[]>;

/** Time source and timers, injectable so tests can drive time by hand. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Like `setTimeout`; returns an id for {@linkcode Clock.clearTimeout}. */
  setTimeout(fn: () => void, ms: number): number;
  /** Cancels a timer; unknown ids are ignored. */
  clearTimeout(id: number): void;
}

/** Options of {@linkcode PublicAddress}. Give `host` or `address`. */
export interface PublicAddressOptions {
  /** Name to resolve (a dynamic-DNS name). An IP literal acts as `address`. */
  host?: string;
  /** Fixed public address: no DNS, no timers. */
  address?: string;
  /** Ask this DNS server instead of the system resolver. */
  dnsServer?: DnsServer;
  /** Time between refreshes (±10 % jitter); default 60000, at least 1000. */
  refreshMs?: number;
  /** Give up on one lookup after this long; default 10000. */
  timeoutMs?: number;
  /** Look up AAAA instead of A records. Default false. */
  ipv6?: boolean;
  /** Default: `Deno.resolveDns`. */
  resolver?: Resolver;
  /** Where answers come from, for logs and status; default the DNS server's "ip:port" or "system". */
  label?: string;
  /** Default: real time, with unref'd timers (they never keep the process alive). */
  clock?: Clock;
  /** Source of jitter in [0, 1); default `Math.random`. */
  random?: () => number;
}

/** Outcome of one {@linkcode PublicAddress.resolveNow}. */
export interface ResolveResult {
  /** Whether the lookup produced a usable address. */
  ok: boolean;
  /** The address now in use (on success). */
  address?: string;
  /** Why the lookup failed (on failure). */
  error?: string;
  /** Duration of the lookup in milliseconds. */
  ms: number;
  /** "system", "ip:port" ("[v6]:port"), or "none" for a fixed address. */
  dnsServer: string;
}

/** State for a status endpoint and metrics. */
export interface PublicAddressSnapshot {
  /** Configured host name, if any. */
  host?: string;
  /** Address in use, null while none is known. */
  address: string | null;
  /** True for a configured fixed address. */
  fixed: boolean;
  /** ISO time of the last successful lookup. */
  resolvedAt: string | null;
  /** "system", "ip:port", or "none" for a fixed address. */
  dnsServer: string;
  /** Last failure's message; cleared on success. */
  lastError: string | null;
  /** ISO time of the last failure; cleared on success. */
  lastErrorAt: string | null;
  /** Failed lookups since the last success. */
  consecutiveFailures: number;
  /** ISO time of the first of those failures; null while lookups succeed. */
  failingSince: string | null;
  /** ISO time of the next scheduled lookup, null when none is scheduled. */
  nextRefreshAt: string | null;
  /** Lookup counts since construction. */
  resolutions: { ok: number; failed: number };
  /** Changes of the address (the first answer included), oldest first; the last 50. */
  history: { at: string; from: string | null; to: string }[];
}

/** Address changes kept for the status page. */
export const HISTORY_SIZE = 50;

const DEFAULT_REFRESH_MS = 60_000;
const DEFAULT_TIMEOUT_MS = 10_000;
/** Never query more often than this while failing. */
const MIN_RETRY_MS = 5_000;
/** Hints (a passive port nobody connected to) trigger at most one lookup per this. */
const HINT_INTERVAL_MS = 30_000;
/** While failing, log at least this often even between the 2,4,8... marks. */
const FAILURE_LOG_INTERVAL_MS = 3_600_000;
const JITTER = 0.1;
/** Abort reason of a lookup cut short by stop(): not a failure. */
const STOPPED = new Error("stopped");

function systemResolver(
  name: string,
  type: "A" | "AAAA",
  opts: { nameServer?: DnsServer; signal?: AbortSignal },
): Promise<string[]> {
  return Deno.resolveDns(name, type, opts);
}

/** The real clock; its timers never keep the process alive. */
export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms) {
    // Deno returns a number; the Node typings in scope say Timeout.
    const id = Number(setTimeout(fn, ms));
    // Timers alone must never keep the process alive (a shutdown path that
    // forgets stop() would hang).
    Deno.unrefTimer(id);
    return id;
  },
  clearTimeout: (id) => clearTimeout(id),
};

function errorText(err: unknown): string {
  if (err instanceof Error) {
    return err.name && err.name !== "Error" ? `${err.name}: ${err.message}` : err.message;
  }
  return String(err);
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * Parse a DNS server as an operator writes it: "1.2.3.4", "1.2.3.4:5353",
 * "::1", "[::1]" or "[::1]:5353". The port defaults to 53.
 *
 * @throws {TypeError} naming the text when it is not such an address.
 */
export function parseDnsServer(text: string): DnsServer {
  const t = String(text).trim();
  const fail = (why: string): never => {
    throw new TypeError(
      `invalid DNS server "${text}": ${why} (expected 1.2.3.4, 1.2.3.4:5353, ::1 or [::1]:5353)`,
    );
  };
  let host: string;
  let portText: string | null = null;
  if (t.startsWith("[")) {
    const close = t.indexOf("]");
    if (close === -1) fail("missing ]");
    host = t.slice(1, close);
    const rest = t.slice(close + 1);
    if (rest !== "") {
      if (!rest.startsWith(":")) fail("unexpected text after ]");
      portText = rest.slice(1);
    }
    if (!host.includes(":")) fail("brackets are for IPv6 addresses");
  } else if ((t.match(/:/g) ?? []).length === 1) {
    const colon = t.indexOf(":");
    host = t.slice(0, colon);
    portText = t.slice(colon + 1);
  } else {
    host = t;
  }
  let port = 53;
  if (portText !== null) {
    if (!/^\d{1,5}$/.test(portText)) fail("port must be a number");
    port = Number(portText);
    if (port < 1 || port > 65535) fail("port must be 1-65535");
  }
  let ipAddr: string;
  try {
    ipAddr = normalizeAddress(host);
  } catch {
    return fail("not an IP address");
  }
  if (ipAddr.includes("%")) fail("zone ids are not supported");
  return { ipAddr, port };
}

function dnsServerLabel(server: DnsServer | undefined): string {
  if (server === undefined) return "system";
  return server.ipAddr.includes(":")
    ? `[${server.ipAddr}]:${server.port}`
    : `${server.ipAddr}:${server.port}`;
}

/**
 * Keeps the current public address fresh.
 *
 * {@linkcode PublicAddress.current} never waits for DNS: PASV replies use
 * whatever is known now. {@linkcode PublicAddress.start} resolves once and
 * then refreshes every `refreshMs` (±10 % so that many instances do not query
 * in step); failures back off from 5 s, doubling up to `refreshMs`, and keep
 * the last good address. Call {@linkcode PublicAddress.stop} on shutdown.
 */
export class PublicAddress {
  readonly #host: string | undefined;
  readonly #fixed: boolean;
  readonly #dnsServer: DnsServer | undefined;
  readonly #dnsLabel: string;
  readonly #refreshMs: number;
  readonly #timeoutMs: number;
  readonly #type: "A" | "AAAA";
  readonly #resolver: Resolver;
  readonly #clock: Clock;
  readonly #random: () => number;

  #address: string | null = null;
  #resolvedAt: number | null = null;
  #lastError: string | null = null;
  #lastErrorAt: number | null = null;
  #consecutiveFailures = 0;
  #lastFailureLogAt: number | null = null;
  #ok = 0;
  #failed = 0;
  /** When the current run of failed lookups began; null while lookups succeed. */
  #failingSince: number | null = null;
  /** Changes of the address, oldest first, at most {@linkcode HISTORY_SIZE}. */
  readonly #history: { at: string; from: string | null; to: string }[] = [];
  #running = false;
  #timer: number | null = null;
  #nextRefreshAt: number | null = null;
  #lastHintAt: number | null = null;
  #inFlight: Promise<ResolveResult> | null = null;
  #abort: AbortController | null = null;
  #warnedUnreachable: string | null = null;
  #startPromise: Promise<void> | null = null;

  /**
   * @throws {TypeError} when neither or both of `host` and `address` are
   * given, or `address` is not an IP address of the configured family.
   * @throws {RangeError} when `refreshMs` or `timeoutMs` is out of range.
   */
  constructor(options: PublicAddressOptions) {
    const host = options.host?.trim() || undefined;
    let address = options.address?.trim() || undefined;
    if (host !== undefined && address !== undefined) {
      throw new TypeError("public address: give either a host name or a fixed address, not both");
    }
    if (host === undefined && address === undefined) {
      throw new TypeError("public address: give a host name or a fixed address");
    }
    this.#type = options.ipv6 ? "AAAA" : "A";
    let hostIsLiteral = false;
    if (host !== undefined) {
      try {
        address = normalizeAddress(host);
        hostIsLiteral = true;
      } catch {
        // A name, as expected.
      }
    }
    this.#host = hostIsLiteral ? undefined : host;
    this.#fixed = address !== undefined;
    if (address !== undefined) {
      let normalized: string;
      try {
        normalized = normalizeAddress(address);
      } catch {
        throw new TypeError(`public address: "${address}" is not an IP address`);
      }
      const isV6 = normalized.includes(":");
      if (isV6 !== (this.#type === "AAAA")) {
        throw new TypeError(
          `public address: "${address}" is ${isV6 ? "IPv6" : "IPv4"} but ` +
            `${this.#type === "AAAA" ? "IPv6" : "IPv4"} was configured`,
        );
      }
      this.#address = normalized;
    }
    const refreshMs = options.refreshMs ?? DEFAULT_REFRESH_MS;
    if (!Number.isFinite(refreshMs) || refreshMs < 1000) {
      throw new RangeError(`public address: refreshMs must be at least 1000 (got ${refreshMs})`);
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
      throw new RangeError(`public address: timeoutMs must be positive (got ${timeoutMs})`);
    }
    this.#refreshMs = refreshMs;
    this.#timeoutMs = timeoutMs;
    this.#dnsServer = this.#fixed ? undefined : options.dnsServer;
    this.#dnsLabel = this.#fixed ? "none" : options.label ?? dnsServerLabel(options.dnsServer);
    this.#resolver = options.resolver ?? systemResolver;
    this.#clock = options.clock ?? realClock;
    this.#random = options.random ?? Math.random;
  }

  /** The address to announce now, or null while none is known. Never waits. */
  current(): string | null {
    return this.#address;
  }

  /**
   * Resolve once (awaited; never throws: a failure leaves `current()` null and
   * is logged), then keep refreshing until {@linkcode PublicAddress.stop}.
   * A fixed address is ready at once and schedules nothing. Calling it again
   * while running returns the first call's promise.
   */
  start(): Promise<void> {
    if (this.#startPromise !== null) return this.#startPromise;
    this.#running = true;
    if (this.#fixed) {
      logger.info("public address is fixed: {address}", { address: this.#address });
      this.#startPromise = Promise.resolve();
      return this.#startPromise;
    }
    this.#startPromise = this.resolveNow().then(() => {});
    return this.#startPromise;
  }

  /** Cancel the refresh timer and any lookup in flight. Safe to call twice. */
  stop(): void {
    this.#running = false;
    this.#startPromise = null;
    this.#cancelTimer();
    this.#abort?.abort(STOPPED);
    this.#abort = null;
    this.#inFlight = null;
  }

  /**
   * Look up the name now and update the state. Concurrent calls share one
   * lookup. While running, the next refresh is scheduled from its outcome.
   */
  resolveNow(): Promise<ResolveResult> {
    if (this.#fixed) {
      return Promise.resolve({
        ok: true,
        address: this.#address ?? undefined,
        ms: 0,
        dnsServer: this.#dnsLabel,
      });
    }
    if (this.#inFlight !== null) return this.#inFlight;
    this.#cancelTimer();
    const lookup: Promise<ResolveResult> = this.#lookup().finally(() => {
      if (this.#inFlight === lookup) this.#inFlight = null;
    });
    this.#inFlight = lookup;
    return lookup;
  }

  /**
   * A passive connection was announced but never opened: perhaps the public
   * address changed. Triggers an early lookup, at most once per 30 s, and only
   * while running.
   */
  hint(reason: string): void {
    if (this.#fixed || !this.#running) return;
    const now = this.#clock.now();
    if (this.#lastHintAt !== null && now - this.#lastHintAt < HINT_INTERVAL_MS) {
      logger.debug("ignoring hint (rate limited): {reason}", { reason });
      return;
    }
    if (this.#inFlight !== null) return;
    this.#lastHintAt = now;
    logger.info("re-resolving {host} early: {reason}", { host: this.#host, reason });
    // resolveNow never rejects; the result is logged and kept in the state.
    void this.resolveNow();
  }

  /** The state for a status endpoint and metrics. */
  snapshot(): PublicAddressSnapshot {
    const snap: PublicAddressSnapshot = {
      address: this.#address,
      fixed: this.#fixed,
      resolvedAt: iso(this.#resolvedAt),
      dnsServer: this.#dnsLabel,
      lastError: this.#lastError,
      lastErrorAt: iso(this.#lastErrorAt),
      consecutiveFailures: this.#consecutiveFailures,
      failingSince: iso(this.#failingSince),
      nextRefreshAt: iso(this.#nextRefreshAt),
      resolutions: { ok: this.#ok, failed: this.#failed },
      history: [...this.#history],
    };
    if (this.#host !== undefined) snap.host = this.#host;
    return snap;
  }

  #cancelTimer(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#nextRefreshAt = null;
  }

  #schedule(): void {
    this.#cancelTimer();
    if (!this.#running) return;
    const jitter = 1 + (this.#random() * 2 - 1) * JITTER;
    let delay: number;
    if (this.#consecutiveFailures === 0) {
      delay = this.#refreshMs * jitter;
    } else {
      const exp = Math.min(this.#consecutiveFailures - 1, 30);
      const backoff = Math.min(this.#refreshMs, MIN_RETRY_MS * 2 ** exp);
      delay = Math.max(MIN_RETRY_MS, backoff * jitter);
    }
    delay = Math.round(delay);
    this.#nextRefreshAt = this.#clock.now() + delay;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      this.#nextRefreshAt = null;
      void this.resolveNow();
    }, delay);
  }

  async #lookup(): Promise<ResolveResult> {
    const host = this.#host as string;
    const started = this.#clock.now();
    const abort = new AbortController();
    this.#abort = abort;
    let timeoutId: number | null = null;
    const timeout = new Promise<never>((_, reject) => {
      timeoutId = this.#clock.setTimeout(() => {
        const err = new Error(`no answer within ${this.#timeoutMs} ms`);
        abort.abort(err);
        reject(err);
      }, this.#timeoutMs);
    });
    const aborted = new Promise<never>((_, reject) => {
      abort.signal.addEventListener("abort", () => reject(abort.signal.reason), { once: true });
    });
    let answers: string[] | null = null;
    let error: string | null = null;
    try {
      const opts: { nameServer?: DnsServer; signal?: AbortSignal } = { signal: abort.signal };
      if (this.#dnsServer !== undefined) opts.nameServer = this.#dnsServer;
      answers = await Promise.race([this.#resolver(host, this.#type, opts), timeout, aborted]);
    } catch (err) {
      error = errorText(err);
    } finally {
      if (timeoutId !== null) this.#clock.clearTimeout(timeoutId);
      if (this.#abort === abort) this.#abort = null;
      // Silence the losers of the race.
      timeout.catch(() => {});
      aborted.catch(() => {});
    }
    const ms = this.#clock.now() - started;
    if (abort.signal.aborted && abort.signal.reason === STOPPED) {
      // Stopped while the lookup was in flight: record nothing.
      return { ok: false, error: "stopped", ms, dnsServer: this.#dnsLabel };
    }
    let address: string | null = null;
    if (answers !== null) {
      const picked = this.#pick(answers);
      if (typeof picked === "string") address = picked;
      else error = picked.error;
    }
    const result = address !== null
      ? this.#succeeded(address, ms)
      : this.#failedWith(error ?? "unknown error", ms);
    this.#schedule();
    return result;
  }

  /**
   * Choose one answer: keep the current address if it is still among them
   * (round-robin answers must not flip the address back and forth), else the
   * first valid answer of the asked family.
   */
  #pick(answers: readonly string[]): string | { error: string } {
    const valid: string[] = [];
    for (const raw of answers) {
      try {
        const a = normalizeAddress(raw);
        if (a.includes(":") === (this.#type === "AAAA")) valid.push(a);
      } catch {
        // Skip garbage; an empty result is reported below.
      }
    }
    if (valid.length === 0) {
      return {
        error: answers.length === 0
          ? `no ${this.#type} records`
          : `no valid ${this.#type} record in answer ${answers.join(", ")}`,
      };
    }
    if (this.#address !== null && valid.includes(this.#address)) return this.#address;
    return valid[0];
  }

  #succeeded(address: string, ms: number): ResolveResult {
    const now = this.#clock.now();
    const previous = this.#address;
    const failures = this.#consecutiveFailures;
    const props = {
      host: this.#host,
      address,
      previous,
      dnsServer: this.#dnsLabel,
      ms,
      failures,
    };
    if (previous === null) {
      logger.info("resolved {host} -> {address} via {dnsServer} in {ms} ms", props);
    } else {
      if (failures > 0) {
        logger.info(
          "resolved {host} again after {failures} failed lookups: {address} via {dnsServer} in {ms} ms",
          props,
        );
      }
      if (previous !== address) {
        logger.warn(
          "public address changed: {previous} -> {address} ({host} via {dnsServer})",
          props,
        );
      } else if (failures === 0) {
        logger.debug("resolved {host} -> {address} via {dnsServer} in {ms} ms (unchanged)", props);
      }
    }
    if (address !== this.#warnedUnreachable) {
      const unreachable = unreachableFromInternet(address);
      if (unreachable) {
        this.#warnedUnreachable = address;
        logger.warn("{host} resolved to {address}, which cannot work: {why}", {
          ...props,
          why: unreachable.text,
        });
      } else {
        this.#warnedUnreachable = null;
      }
    }
    if (previous !== address) {
      this.#history.push({ at: new Date(now).toISOString(), from: previous, to: address });
      if (this.#history.length > HISTORY_SIZE) this.#history.shift();
    }
    this.#address = address;
    this.#resolvedAt = now;
    this.#consecutiveFailures = 0;
    this.#failingSince = null;
    this.#lastError = null;
    this.#lastErrorAt = null;
    this.#lastFailureLogAt = null;
    this.#ok++;
    return { ok: true, address, ms, dnsServer: this.#dnsLabel };
  }

  #failedWith(error: string, ms: number): ResolveResult {
    const now = this.#clock.now();
    if (this.#consecutiveFailures === 0) this.#failingSince = now;
    this.#consecutiveFailures++;
    this.#failed++;
    this.#lastError = error;
    this.#lastErrorAt = now;
    const n = this.#consecutiveFailures;
    const props = {
      host: this.#host,
      dnsServer: this.#dnsLabel,
      error,
      failures: n,
      address: this.#address,
      keeping: this.#address === null
        ? "no public address yet, remote passive clients are told the local address"
        : `keeping ${this.#address}`,
    };
    const hourPassed = this.#lastFailureLogAt !== null &&
      now - this.#lastFailureLogAt >= FAILURE_LOG_INTERVAL_MS;
    if (n === 1 || isPowerOfTwo(n) || hourPassed) {
      this.#lastFailureLogAt = now;
      if (n === 1) {
        logger.warn("cannot resolve {host} via {dnsServer}: {error}; {keeping}", props);
      } else {
        logger.warn(
          "still cannot resolve {host} via {dnsServer} after {failures} attempts: {error}; {keeping}",
          props,
        );
      }
    } else {
      logger.debug("cannot resolve {host} via {dnsServer}: {error} ({failures} in a row)", props);
    }
    return { ok: false, error, ms, dnsServer: this.#dnsLabel };
  }
}
