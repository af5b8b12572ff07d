/**
 * Login throttling per client address: too many failed logins from one
 * address within a window ban that address for a while. Pure state with an
 * injected clock; the server asks it before admitting a connection.
 * @module
 */

/** The throttle config.limits describes. */
export function throttleFromLimits(limits: {
  max_login_failures_per_address: number;
  login_failure_window_seconds: number;
  ban_seconds: number;
}): LoginThrottle {
  return new LoginThrottle({
    maxFailures: limits.max_login_failures_per_address,
    windowMs: limits.login_failure_window_seconds * 1000,
    banMs: limits.ban_seconds * 1000,
  });
}

/** Settings, from config.limits. */
export interface ThrottleOptions {
  maxFailures: number;
  windowMs: number;
  banMs: number;
  now?: () => number;
  /** Most addresses tracked at once; the oldest entries are dropped first. */
  maxTracked?: number;
}

interface Entry {
  failures: number[];
  bannedUntil: number;
}

/** Tracks failed logins by address. */
export class LoginThrottle {
  #entries = new Map<string, Entry>();
  #opts: Required<ThrottleOptions>;

  constructor(options: ThrottleOptions) {
    this.#opts = { now: Date.now, maxTracked: 10_000, ...options };
  }

  /** Milliseconds the address is still banned for; 0 when it is not. */
  bannedFor(addr: string): number {
    const e = this.#entries.get(addr);
    if (!e) return 0;
    const left = e.bannedUntil - this.#opts.now();
    return left > 0 ? left : 0;
  }

  /** The addresses banned now, with the milliseconds each has left. */
  bans(): { addr: string; msLeft: number }[] {
    const now = this.#opts.now();
    const out: { addr: string; msLeft: number }[] = [];
    for (const [addr, e] of this.#entries) {
      if (e.bannedUntil > now) out.push({ addr, msLeft: e.bannedUntil - now });
    }
    return out;
  }

  /** Records a failed login; returns true when this failure starts a ban. */
  fail(addr: string): boolean {
    const now = this.#opts.now();
    let e = this.#entries.get(addr);
    if (!e) {
      if (this.#entries.size >= this.#opts.maxTracked) {
        const oldest = this.#entries.keys().next().value;
        if (oldest !== undefined) this.#entries.delete(oldest);
      }
      e = { failures: [], bannedUntil: 0 };
      this.#entries.set(addr, e);
    }
    e.failures = e.failures.filter((t) => now - t < this.#opts.windowMs);
    e.failures.push(now);
    if (e.failures.length >= this.#opts.maxFailures && e.bannedUntil <= now) {
      e.bannedUntil = now + this.#opts.banMs;
      e.failures = [];
      return true;
    }
    return false;
  }

  /** Forgets an address's failures after a successful login. */
  succeed(addr: string): void {
    const e = this.#entries.get(addr);
    if (e && e.bannedUntil <= this.#opts.now()) this.#entries.delete(addr);
  }
}
