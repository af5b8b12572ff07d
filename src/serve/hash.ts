/**
 * serve's HASH command (draft-bryan-ftp-hash) and OPTS HASH. A HASH runs in
 * the background of its session the way a transfer does, so the session
 * goes on reading commands: ABOR stops it, STAT shows it, and a client that
 * disconnects ends it. Like a transfer it is one at a time per session: a
 * second HASH (or any command that waits for transfers) waits for the
 * first to finish. The file is read in chunks through the session's pooled
 * transfer buffer, never whole, with a turn of the event loop between
 * chunks so other sessions are not held up.
 * @module
 */
import { pace } from "../ftp/rate.ts";
import { createHash } from "node:crypto";
import { PathError } from "../fs/jail.ts";
import type { Session, Transfer } from "./session.ts";

/** The algorithms HASH offers, by their draft names, with their node:crypto names. */
const ALGORITHMS = { "SHA-256": "sha256", "SHA-1": "sha1" } as const;

/** One of {@linkcode ALGORITHMS}' names. */
type Algorithm = keyof typeof ALGORITHMS;

/** The algorithm a session uses when it has not chosen one. */
const DEFAULT: Algorithm = "SHA-256";

/** The FEAT line: the algorithms, the default starred. */
export const HASH_FEAT = "HASH SHA-256*;SHA-1";

/** Bytes read and hashed per step: small enough to keep each step well under a millisecond. */
const CHUNK = 256 * 1024;

/** Steps between explicit yields to timers (each read already waits for the event loop). */
const YIELD_EVERY = 16;

/** The algorithm each session chose with OPTS HASH. */
const chosen = new WeakMap<Session, Algorithm>();

/** Whether a name is one of the algorithms offered. */
function isAlgorithm(name: string): name is Algorithm {
  return Object.hasOwn(ALGORITHMS, name);
}

/** The session's current algorithm. */
function algorithmOf(s: Session): Algorithm {
  return chosen.get(s) ?? DEFAULT;
}

/** OPTS HASH [algorithm]: shows the current algorithm, or selects one (504 if not offered). */
export function optsHash(s: Session, value: string) {
  const name = value.trim().toUpperCase();
  if (name === "") return s.reply(200, algorithmOf(s));
  if (!isAlgorithm(name)) return s.reply(504, "Unknown algorithm; use SHA-256 or SHA-1");
  chosen.set(s, name);
  return s.reply(200, name);
}

/** HASH path: 213 algorithm range hex path, for a plain file; needs `read`. */
export async function hash(s: Session, arg: string) {
  const vpath = s.path(arg);
  const real = await s.home.resolve(vpath, { mustExist: true });
  // Checked before the open: opening a FIFO for reading would wait for a writer.
  if (!Deno.statSync(real).isFile) throw new PathError(550, "Not a plain file");
  const file = await Deno.open(real, { read: true });
  const size = (await file.stat().catch((e) => {
    file.close();
    throw e;
  })).size;
  startHash(s, { file, vpath, shown: arg, size, algorithm: algorithmOf(s) });
}

/** What one HASH works on. */
interface HashJob {
  file: Deno.FsFile;
  vpath: string;
  /** The path as the client gave it, for the reply. */
  shown: string;
  size: number;
  algorithm: Algorithm;
}

/** Registers the HASH as the session's running transfer and starts it. */
function startHash(s: Session, job: HashJob): void {
  const progress = { bytes: 0 };
  const startedAt = Date.now();
  const t: Transfer = {
    aborted: false,
    ended: Promise.resolve(),
    abort() {
      t.aborted = true;
    },
    describe: () => `HASH ${job.vpath}, ${progress.bytes} bytes`,
    // No bytes cross the network: the status page's throughput counts the
    // live bytes of running transfers (and those of finished ones, which a
    // HASH never becomes), so it is shown as running, at 0 bytes.
    live: () => ({
      verb: "HASH",
      path: job.vpath,
      direction: "out",
      bytes: 0,
      size: null,
      startedAt,
    }),
  };
  t.ended = runHash(s, t, job, progress).finally(() => {
    job.file.close();
    s.releaseBuffer();
    if (s.transfer === t) s.transfer = null;
  });
  s.transfer = t;
}

/** Reads and hashes the file, then replies; never rejects. */
async function runHash(
  s: Session,
  t: Transfer,
  job: HashJob,
  progress: { bytes: number },
): Promise<void> {
  const h = createHash(ALGORITHMS[job.algorithm]);
  const buf = s.buffer.subarray(0, CHUNK);
  // Paced as a download of this user: HASH reads no faster than the user may download.
  const limit = s.rateLimit("out");
  try {
    for (let step = 1; !t.aborted && !s.closed; step++) {
      const n = await job.file.read(buf);
      if (n === null) break;
      const wait = pace(limit, n);
      if (wait) await wait;
      h.update(buf.subarray(0, n));
      progress.bytes += n;
      if (step % YIELD_EVERY === 0) await new Promise((r) => setTimeout(r, 0));
    }
    if (s.closed) return;
    if (t.aborted) return await s.reply(426, "HASH aborted");
    const range = `0-${Math.max(0, progress.bytes - 1)}`;
    await s.reply(213, `${job.algorithm} ${range} ${h.digest("hex")} ${job.shown}`);
  } catch (e) {
    if (s.closed) return;
    s.deps.log.error("session {session}: HASH of {what} failed: {error}", {
      ...s.ctx,
      what: job.vpath,
      error: (e as Error).message,
    });
    await s.reply(451, "Local error in processing; HASH aborted").catch(() => {});
  }
}
