/**
 * Transfer rate limits and per-user session counts. One token bucket per
 * direction for the whole server (`limits.max_download_rate`,
 * `limits.max_upload_rate`) and one per direction for each limited user,
 * shared by all of that user's sessions; a transfer takes its bytes from
 * both and waits for the stricter. Buckets run into debt: a chunk larger
 * than the bucket is taken at once and the sender sleeps until the debt is
 * paid, so any chunk size works with any rate.
 *
 * Rates are bytes per second; `K`, `M` and `G` are powers of 1000 (as in the
 * transfer log's MB/s), `Ki`, `Mi` and `Gi` powers of 1024.
 * @module
 */
import type { Config } from "../config/schema.ts";

/** A transfer's direction as seen from the server: "out" downloads, "in" uploads. */
export type Direction = "in" | "out";

/** Seconds of unused rate a bucket saves up while idle (its burst). */
const BURST_SECONDS = 0.1;
/** Smallest read while limited: small enough for slow rates, large enough for disks. */
const MIN_CHUNK = 1024;
/** Reads per second a limited transfer aims at, so each sleep stays short. */
const CHUNKS_PER_SECOND = 16;

const UNITS: Record<string, number> = {
  "": 1,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  KI: 1 << 10,
  MI: 1 << 20,
  GI: 1 << 30,
};

/**
 * Parses a rate in bytes per second: a number (`1000`), or one with a
 * suffix (`512K`, `10M`, `1.5G`, `64Ki`); undefined when it is not one.
 */
export function parseRate(value: unknown): number | undefined {
  if (typeof value === "number") {
    return Number.isFinite(value) && value >= 0 ? Math.floor(value) : undefined;
  }
  if (typeof value !== "string") return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMG]i?)?\s*$/i.exec(value);
  if (!m) return undefined;
  const bytes = Math.floor(Number(m[1]) * UNITS[(m[2] ?? "").toUpperCase()]);
  return Number.isFinite(bytes) ? bytes : undefined;
}

/** A token bucket in bytes, which may run into debt; `now` is in milliseconds. */
export class TokenBucket {
  #rate: number;
  #tokens = 0;
  #last: number;

  constructor(rate: number, readonly now: () => number = () => performance.now()) {
    this.#rate = rate;
    this.#last = now();
  }

  /** Bytes per second; Infinity for no limit. */
  get rate(): number {
    return this.#rate;
  }

  /** Changes the rate; the bytes already owed are kept. */
  set rate(rate: number) {
    const now = this.now();
    if (this.#rate === Infinity) {
      this.#tokens = 0;
      this.#last = now;
    } else {
      this.#refill(now);
    }
    this.#rate = rate;
    this.#tokens = rate === Infinity ? 0 : Math.min(this.#tokens, rate * BURST_SECONDS);
  }

  #refill(now: number): void {
    const tokens = this.#tokens + (now - this.#last) * this.#rate / 1000;
    this.#tokens = Math.min(this.#rate * BURST_SECONDS, tokens);
    this.#last = now;
  }

  /** Takes `n` bytes; returns the milliseconds to wait before sending them (0: at once). */
  take(n: number): number {
    if (this.#rate === Infinity) return 0;
    this.#refill(this.now());
    this.#tokens -= n;
    return this.#tokens >= 0 ? 0 : -this.#tokens * 1000 / this.#rate;
  }
}

/** The buckets one transfer waits on, and the read size that suits them. */
export class RateLimit {
  /** Bytes to read at a time: about 1/16 s at the strictest rate, a power of two. */
  readonly chunk: number;

  /**
   * `refresh` runs before each take: it lets a reload reach the buckets of
   * a running transfer (it only compares the config object, when unchanged).
   */
  constructor(
    readonly buckets: readonly TokenBucket[],
    maxChunk: number,
    readonly refresh: () => void = () => {},
  ) {
    let rate = Infinity;
    for (let i = 0; i < buckets.length; i++) rate = Math.min(rate, buckets[i].rate);
    const fit = 2 ** Math.floor(Math.log2(Math.max(1, rate / CHUNKS_PER_SECOND)));
    this.chunk = Math.max(Math.min(MIN_CHUNK, maxChunk), Math.min(maxChunk, fit));
  }

  /** Takes `n` bytes from every bucket; the milliseconds to wait (the stricter wins). */
  take(n: number): number {
    this.refresh();
    let ms = 0;
    for (let i = 0; i < this.buckets.length; i++) ms = Math.max(ms, this.buckets[i].take(n));
    return ms;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Accounts `n` bytes to `limit`: null when they may go at once (always so
 * without a limit), else a promise that resolves when they may. Call once
 * per chunk: `const wait = pace(limit, n); if (wait) await wait;`.
 */
export function pace(limit: RateLimit | null, n: number): Promise<void> | null {
  if (limit === null) return null;
  const ms = limit.take(n);
  return ms > 0 ? sleep(ms) : null;
}

/** A user's limits, from `users[]` or `anonymous`. */
interface UserLimits {
  max_download_rate?: number;
  max_upload_rate?: number;
  max_sessions?: number;
}

/** The configured rate of `direction` in `limits`; Infinity when none (or 0). */
function rateOf(limits: UserLimits | undefined, direction: Direction): number {
  const rate = direction === "out" ? limits?.max_download_rate : limits?.max_upload_rate;
  return rate || Infinity;
}

/**
 * What a server's sessions share per user, kept across reloads: the rate
 * buckets and the count of logged-in sessions. A reload (a new `Config`
 * object) changes the buckets' rates in place, so running transfers that
 * are limited follow the new rates at once (one that started unlimited
 * stays so until it ends).
 */
export class SharedLimits {
  #config: Config | null = null;
  #byName = new Map<string, UserLimits>();
  readonly #global: Record<Direction, TokenBucket>;
  readonly #users = new Map<string, Record<Direction, TokenBucket | null>>();
  readonly #sessions = new Map<string, number>();

  constructor(readonly now: () => number = () => performance.now()) {
    this.#global = { in: new TokenBucket(Infinity, now), out: new TokenBucket(Infinity, now) };
  }

  /** Applies `config` when it is not the one seen last (after a reload). */
  #sync(config: Config): void {
    if (config === this.#config) return;
    this.#config = config;
    this.#byName = new Map<string, UserLimits>(config.users.map((u) => [u.name, u]));
    if (config.anonymous.enabled && !this.#byName.has("anonymous")) {
      this.#byName.set("anonymous", config.anonymous);
    }
    this.#global.out.rate = config.limits.max_download_rate || Infinity;
    this.#global.in.rate = config.limits.max_upload_rate || Infinity;
    for (const [name, buckets] of this.#users) {
      const limits = this.#byName.get(name);
      for (const direction of ["in", "out"] as const) {
        const bucket = buckets[direction];
        if (bucket) bucket.rate = rateOf(limits, direction);
      }
      if (rateOf(limits, "in") === Infinity && rateOf(limits, "out") === Infinity) {
        this.#users.delete(name); // running transfers keep the bucket, now unlimited
      }
    }
  }

  /** The user's own bucket for `direction`, made on first use; null when unlimited. */
  #userBucket(name: string, direction: Direction): TokenBucket | null {
    const rate = rateOf(this.#byName.get(name), direction);
    if (rate === Infinity) return null;
    let buckets = this.#users.get(name);
    if (!buckets) this.#users.set(name, buckets = { in: null, out: null });
    return buckets[direction] ??= new TokenBucket(rate, this.now);
  }

  /**
   * The limit a transfer of `user` in `direction` waits on under the live
   * config `config()`; null when neither the server nor the user is limited.
   */
  limitFor(
    config: () => Config,
    user: string | null,
    direction: Direction,
    maxChunk: number,
  ): RateLimit | null {
    this.#sync(config());
    const global = this.#global[direction].rate === Infinity ? null : this.#global[direction];
    const own = user === null ? null : this.#userBucket(user, direction);
    if (!global && !own) return null; // the usual case: nothing allocated
    const buckets = global && own ? [global, own] : [(global ?? own)!];
    return new RateLimit(buckets, maxChunk, () => this.#sync(config()));
  }

  /** The user's `max_sessions` under `config`, if any. */
  maxSessions(config: Config, user: string): number | undefined {
    this.#sync(config);
    return this.#byName.get(user)?.max_sessions;
  }

  /**
   * Counts a login of `user`; false (and not counted) when the user has
   * `max_sessions` logged-in sessions already.
   */
  claimSession(config: Config, user: string): boolean {
    const count = this.#sessions.get(user) ?? 0;
    const max = this.maxSessions(config, user);
    if (max !== undefined && count >= max) return false;
    this.#sessions.set(user, count + 1);
    return true;
  }

  /** Uncounts a login counted by {@linkcode claimSession} (session end, REIN). */
  releaseSession(user: string): void {
    const left = (this.#sessions.get(user) ?? 1) - 1;
    if (left <= 0) this.#sessions.delete(user);
    else this.#sessions.set(user, left);
  }

  /** Logged-in sessions of `user` counted now. */
  sessionsOf(user: string): number {
    return this.#sessions.get(user) ?? 0;
  }
}
