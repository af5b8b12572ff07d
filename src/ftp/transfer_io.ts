/**
 * What moves bytes once a data connection is open: the pooled transfer
 * buffers, the pump with one reused buffer and natural back-pressure, the
 * stall watchdog, the upload file that syncs as it goes, and the errors a
 * transfer ends with.
 * @module
 */
import { writeAll } from "./connection.ts";
import { pace, type RateLimit } from "./rate.ts";

/** Size of a transfer buffer: large reads and writes keep the data path fast. */
export const BUFFER_SIZE = 1 << 20;
const POOL_MAX = 32;
/** Pooled buffers unused for this long are let go. */
const POOL_IDLE_MS = 30_000;
const pool: Uint8Array[] = [];
let lastTake = 0;
let trimTimer: ReturnType<typeof setTimeout> | undefined;

/**
 * Takes a transfer buffer from a process-wide pool. Buffers are held only
 * while a transfer runs, so memory follows concurrent transfers, not open
 * sessions; a burst of transfers reuses the buffers of the ones before
 * instead of allocating (and zeroing) new ones, and 30 s after the last
 * transfer the pool is emptied.
 */
export function takeBuffer(): Uint8Array {
  lastTake = Date.now();
  return pool.pop() ?? new Uint8Array(BUFFER_SIZE);
}

/** Returns a buffer taken with {@linkcode takeBuffer}. */
export function giveBuffer(buf: Uint8Array): void {
  if (pool.length >= POOL_MAX || buf.length !== BUFFER_SIZE) return;
  pool.push(buf);
  trimTimer ??= scheduleTrim(POOL_IDLE_MS);
}

function scheduleTrim(ms: number): ReturnType<typeof setTimeout> {
  const id = setTimeout(() => {
    trimTimer = undefined;
    const left = trimPool(Date.now());
    if (left > 0) trimTimer = scheduleTrim(left);
  }, ms);
  Deno.unrefTimer(Number(id)); // the pool never keeps the process alive
  return id;
}

/**
 * Empties the pool when no buffer was taken for 30 s before `now`; else
 * returns the milliseconds until that would be so (0 once emptied).
 */
export function trimPool(now: number): number {
  const idle = now - lastTake;
  if (idle < POOL_IDLE_MS) return POOL_IDLE_MS - idle;
  pool.length = 0;
  return 0;
}

/** Buffers now in the pool. */
export function pooledBuffers(): number {
  return pool.length;
}

/** Why a data connection could not be used. */
export class DataError extends Error {
  constructor(readonly code: 425 | 426 | 451 | 452 | 521 | 522 | 552 | 553, message: string) {
    super(message);
  }
}

/**
 * A file being uploaded: writes go straight through, and every `every`
 * bytes a background fdatasync starts, so the disk keeps pace with the
 * network and the sync that must finish before 226 has little left to do.
 */
export class SyncingFile {
  #pending: Promise<void> | null = null;
  #since = 0;

  constructor(readonly file: Deno.FsFile, readonly every: number = 64 << 20) {}

  /** Writes like `Deno.FsFile.write`. */
  write(p: Uint8Array): Promise<number> {
    // Synchronous, like reads in pump(): writes land in the page cache, and
    // the thread-pool hop per chunk costs more than the write itself.
    const n = this.file.writeSync(p);
    this.#since += n;
    if (this.#since >= this.every && !this.#pending) {
      this.#since = 0;
      // A failure here shows again in the final sync, which is awaited.
      this.#pending = this.file.syncData().catch(() => {}).finally(() => this.#pending = null);
    }
    return Promise.resolve(n);
  }

  /** Waits until every byte written is on disk. */
  async sync(): Promise<void> {
    await this.#pending;
    await this.file.syncData();
  }
}

/** Maps a file-system write error to the FTP reply a client should see. */
export function diskError(e: unknown): DataError {
  const msg = e instanceof Error ? e.message : String(e);
  if (/No space left|ENOSPC|os error 28/i.test(msg)) {
    return new DataError(452, "Insufficient storage space; transfer aborted");
  }
  if (/quota|EDQUOT|os error 122|File too large|EFBIG|os error 27/i.test(msg)) {
    return new DataError(552, "Storage allocation exceeded; transfer aborted");
  }
  return new DataError(451, "Local error in processing; transfer aborted");
}

/** Progress of one transfer, watched by the stall timer. */
export interface Progress {
  bytes: number;
}

/**
 * Copies `from` to `to` using `buf`. Errors reading `from` or writing `to`
 * are tagged so the caller can tell the network from the disk. With a
 * `limit`, reads are of `limit.chunk` bytes and each chunk waits for its
 * tokens before it is written; without one the loop is unchanged.
 */
export async function pump(
  from: { read(p: Uint8Array): Promise<number | null> },
  to: { write(p: Uint8Array): Promise<number> },
  options: { buf: Uint8Array; progress: Progress; fromIsDisk: boolean; limit?: RateLimit | null },
): Promise<void> {
  const { progress } = options;
  const limit = options.limit ?? null;
  // One view for the whole transfer: no allocation per chunk.
  const buf = limit && limit.chunk < options.buf.length
    ? options.buf.subarray(0, limit.chunk)
    : options.buf;
  while (true) {
    let n: number | null;
    try {
      // Files are read synchronously: a page-cache read of 1 MiB takes well
      // under a millisecond, and skipping the thread-pool hop per chunk
      // speeds downloads up by about half on loopback.
      n = from instanceof Deno.FsFile ? from.readSync(buf) : await from.read(buf);
    } catch (e) {
      throw options.fromIsDisk ? diskError(e) : new DataError(426, connMessage(e));
    }
    if (n === null) return;
    if (limit !== null) {
      const wait = pace(limit, n);
      if (wait) await wait;
    }
    try {
      await writeAll(to, buf.subarray(0, n));
    } catch (e) {
      throw options.fromIsDisk ? new DataError(426, connMessage(e)) : diskError(e);
    }
    progress.bytes += n;
  }
}

function connMessage(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return `Connection closed; transfer aborted (${msg})`;
}

interface StallWatch {
  progress: Progress;
  seen: number;
  onStall: () => void;
}

/** One ticker per period, shared by every transfer watched with that period. */
const tickers = new Map<
  number,
  { timer: ReturnType<typeof setInterval>; watches: Set<StallWatch> }
>();

function ticker(ms: number): Set<StallWatch> {
  let t = tickers.get(ms);
  if (!t) {
    const watches = new Set<StallWatch>();
    const timer = setInterval(() => {
      // Idle for a whole period: the ticker goes until the next transfer.
      if (watches.size === 0) {
        clearInterval(timer);
        tickers.delete(ms);
        return;
      }
      for (const w of watches) {
        if (w.progress.bytes === w.seen) {
          watches.delete(w);
          w.onStall();
        } else w.seen = w.progress.bytes;
      }
    }, ms);
    Deno.unrefTimer(Number(timer)); // a watched transfer keeps the process alive itself
    t = { timer, watches };
    tickers.set(ms, t);
  }
  return t.watches;
}

/**
 * Calls `onStall` when `progress` has not moved for a whole `ms` (checked
 * every `ms`, by one ticker shared with the other transfers: no timer is
 * made per transfer); returns the function that stops watching.
 */
export function watchStall(progress: Progress, ms: number, onStall: () => void): () => void {
  const w: StallWatch = { progress, seen: -1, onStall };
  const watches = ticker(ms);
  watches.add(w);
  return () => void watches.delete(w);
}
