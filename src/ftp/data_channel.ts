/**
 * Data connections: the passive listener that accepts only the control
 * connection's peer, the active connect-back, and the byte pumps that move
 * files with one reused buffer and natural back-pressure.
 * @module
 */
import { normalizeAddress } from "../nat/announce.ts";

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

/** Closes a connection, listener or file that may be closed already. */
export function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch { /* already closed */ }
}

/** Why a data connection could not be used. */
export class DataError extends Error {
  constructor(readonly code: 425 | 426 | 451 | 452 | 552, message: string) {
    super(message);
  }
}

/** Sleeps that can be cancelled, for timeouts raced against I/O. */
function timeout(ms: number): { promise: Promise<"timeout">; cancel(): void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<"timeout">((resolve) => {
    id = setTimeout(() => resolve("timeout"), ms);
  });
  return { promise, cancel: () => clearTimeout(id) };
}

/**
 * Accepts the data connection on a passive listener, but only from the
 * control connection's peer address; a connection from anywhere else is
 * closed and reported through `onStranger`, and the wait goes on, so a
 * stranger cannot take or abort a user's transfer. Closes the listener when
 * done, unless `keepOpen` and the peer connected (the caller then owns it).
 * Returns null on timeout or when the listener is closed meanwhile.
 */
export async function acceptFromPeer(
  listener: Deno.TcpListener,
  options: {
    peer: string;
    timeoutMs: number;
    onStranger?: (addr: string) => void;
    keepOpen?: boolean;
  },
): Promise<Deno.TcpConn | null> {
  const timer = timeout(options.timeoutMs);
  let keep = false;
  try {
    while (true) {
      let result: Deno.TcpConn | "timeout";
      try {
        result = await Promise.race([listener.accept(), timer.promise]);
      } catch {
        return null; // listener closed (PASV replaced, ABOR, session end)
      }
      if (result === "timeout") return null;
      const host = result.remoteAddr.hostname;
      // The listener reports the peer's address in the form the control
      // connection did, so the exact text usually matches without parsing.
      if (host === options.peer || normalizeAddress(host) === normalizeAddress(options.peer)) {
        keep = options.keepOpen === true;
        return result;
      }
      options.onStranger?.(`${result.remoteAddr.hostname}:${result.remoteAddr.port}`);
      try {
        result.close();
      } catch { /* already closed */ }
    }
  } finally {
    timer.cancel();
    if (!keep) {
      try {
        listener.close();
      } catch { /* already closed */ }
    }
  }
}

/** Connects back to a client for active mode, within a timeout. */
export async function connectActive(
  target: { host: string; port: number },
  options: { timeoutMs: number },
): Promise<Deno.TcpConn> {
  const timer = timeout(options.timeoutMs);
  const attempt = Deno.connect({ hostname: target.host, port: target.port });
  try {
    const result = await Promise.race([attempt, timer.promise]);
    if (result === "timeout") {
      attempt.then((c) => {
        try {
          c.close();
        } catch { /* closed */ }
      }, () => {});
      throw new DataError(425, "Can't open data connection: timed out");
    }
    return result;
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(425, `Can't open data connection: ${(e as Error).message}`);
  } finally {
    timer.cancel();
  }
}

/** Writes all of `bytes` (Deno's write may write less). */
export async function writeAll(w: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}

/**
 * A control connection's replies, written in the order they were asked for
 * (each waits for the one before), so a reply never overtakes another. A
 * failed write calls `onError` (which ends the session); nothing more is
 * written once `isClosed` says so.
 */
export class OrderedWriter {
  #last: Promise<void> = Promise.resolve();

  constructor(
    readonly conn: Deno.Conn,
    readonly isClosed: () => boolean,
    readonly onError: () => void,
  ) {}

  /** Queues `bytes`; resolves once they are written (or dropped). */
  write(bytes: Uint8Array): Promise<void> {
    this.#last = this.#last.then(async () => {
      if (this.isClosed()) return;
      try {
        await writeAll(this.conn, bytes);
      } catch {
        this.onError();
      }
    });
    return this.#last;
  }

  /** Resolves when every write queued so far is done. */
  flushed(): Promise<void> {
    return this.#last;
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
 * are tagged so the caller can tell the network from the disk.
 */
export async function pump(
  from: { read(p: Uint8Array): Promise<number | null> },
  to: { write(p: Uint8Array): Promise<number> },
  options: { buf: Uint8Array; progress: Progress; fromIsDisk: boolean },
): Promise<void> {
  const { buf, progress } = options;
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
