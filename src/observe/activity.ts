/**
 * What the server remembers for its status page, all bounded: the last
 * transfers and failed logins, and bytes moved per 10 s over the last
 * hour. Fed once per transfer and per login, and by one timer every 10 s;
 * nothing per chunk.
 * @module
 */
import type { LoginFailure, Throughput, TransferDone } from "./snapshot.ts";

/** Entries kept in each ring. */
export const RING_SIZE = 50;
/** Seconds per throughput point, and points kept (one hour). */
export const THROUGHPUT_INTERVAL_S = 10;
export const THROUGHPUT_POINTS = 360;

/** A fixed-size list that drops its oldest entry when full. */
class Ring<T> {
  #items: T[] = [];
  constructor(readonly size: number) {}

  /** Adds `item`, dropping the oldest when full. */
  push(item: T): void {
    this.#items.push(item);
    if (this.#items.length > this.size) this.#items.shift();
  }

  /** The entries, oldest first. */
  list(): T[] {
    return [...this.#items];
  }
}

/** The status page's memory of recent activity. */
export class Activity {
  readonly transfers: Ring<TransferDone> = new Ring(RING_SIZE);
  readonly loginFailures: Ring<LoginFailure> = new Ring(RING_SIZE);
  readonly #points: Ring<{ at: string; in: number; out: number }> = new Ring(THROUGHPUT_POINTS);
  #last: { in: number; out: number } | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;

  /**
   * Samples `total()` (bytes moved since start, transfers in progress
   * included) every 10 s until {@linkcode stop}; the timer does not keep
   * the process alive.
   */
  start(total: () => { in: number; out: number }): void {
    this.stop();
    this.#last = total();
    const timer = setInterval(() => this.sample(total()), THROUGHPUT_INTERVAL_S * 1000);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Records one interval's end: the bytes moved since the previous sample. */
  sample(now: { in: number; out: number }, at: Date = new Date()): void {
    const last = this.#last ?? now;
    this.#points.push({
      at: at.toISOString(),
      in: Math.max(0, now.in - last.in),
      out: Math.max(0, now.out - last.out),
    });
    this.#last = now;
  }

  /** The throughput plot's points, oldest first. */
  throughput(): Throughput {
    return { intervalSeconds: THROUGHPUT_INTERVAL_S, points: this.#points.list() };
  }

  /** Stops the sampling timer. */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
