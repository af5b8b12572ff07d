/**
 * serve's transfers: the data-connection commands (PASV, EPSV, PORT, EPRT,
 * ABOR), the background transfer that RETR, STOR, APPE, STOU and the
 * listings run, and the upload paths (in place and atomic).
 * @module
 */
import { closeQuietly, type Connection } from "../ftp/connection.ts";
import {
  DataError,
  diskError,
  type Progress,
  pump,
  SyncingFile,
  watchStall,
} from "../ftp/transfer_io.ts";
import { PathError } from "../fs/jail.ts";
import { mayReplace } from "./files.ts";
import type { Session, Transfer } from "./session.ts";

const encoder = new TextEncoder();

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** How a transfer command wants its data moved. */
export interface TransferOptions {
  /** The command, for the status page (RETR, STOR, APPE, STOU, LIST, NLST, MLSD). */
  verb: string;
  what: string;
  direction: "in" | "out";
  /** Bytes to send, when known (downloads), for the status page's progress. */
  size?: number;
  /** The text of the 150 reply. */
  opening: string;
  body: (conn: Connection, progress: Progress) => Promise<void>;
  /** Runs after the data connection closed; a throw turns the 226 into an error reply. */
  cleanup?: (ok: boolean) => Promise<void> | void;
}

/**
 * Runs a transfer in the background: opens the data connection, says 150,
 * runs `body`, and answers 226, or 426/451/452 on failure. The session goes
 * on reading commands, so ABOR and STAT work meanwhile.
 */
export async function startTransfer(s: Session, options: TransferOptions): Promise<void> {
  let conn: Connection;
  try {
    // The 150 is not awaited: replies are written in order (the 226 cannot
    // overtake it), and the data need not wait an event-loop turn for it.
    conn = await s.data.open(s.data.take(), {
      onConnected: () => void s.reply(150, options.opening),
    });
  } catch (e) {
    await options.cleanup?.(false);
    throw e;
  }
  const progress: Progress = { bytes: 0 };
  const startedAt = Date.now();
  const t: Transfer & { stalled: boolean } = {
    aborted: false,
    stalled: false,
    ended: Promise.resolve(),
    abort() {
      t.aborted = true;
      closeQuietly(conn);
    },
    describe: () => `${options.verb} ${options.what}, ${progress.bytes} bytes`,
    live: () => ({
      verb: options.verb,
      path: options.what,
      direction: options.direction,
      bytes: progress.bytes,
      size: options.size ?? null,
      startedAt,
    }),
  };
  t.ended = runTransfer(s, { conn, progress, t, options });
  s.transfer = t;
}

/** The background half of {@linkcode startTransfer}: body, cleanup, final reply, record. */
async function runTransfer(
  s: Session,
  run: {
    conn: Connection;
    progress: Progress;
    t: Transfer & { stalled: boolean };
    options: TransferOptions;
  },
): Promise<void> {
  const { conn, progress, t, options } = run;
  const started = performance.now();
  const stopWatching = watchStall(
    progress,
    s.deps.config.limits.data_timeout_seconds * 1000,
    () => {
      t.stalled = true;
      t.abort();
    },
  );
  let ok = false;
  try {
    await options.body(conn, progress);
    // The data was handed to the kernel; the close below sends it, then FIN.
    ok = true;
  } catch (e) {
    await replyFailure(s, t, e, options.what);
  } finally {
    stopWatching();
    closeQuietly(conn);
  }
  try {
    await options.cleanup?.(ok);
  } catch (e) {
    ok = false;
    const err = e instanceof DataError ? e : diskError(e);
    await s.reply(err.code, err.message);
  }
  if (ok) await s.reply(226, "Transfer complete");
  s.releaseBuffer();
  s.transfer = null;
  s.recordTransfer({
    direction: options.direction,
    what: options.what,
    command: options.verb,
    bytes: progress.bytes,
    started,
    result: ok ? "ok" : t.aborted ? "aborted" : "failed",
  });
}

/** The reply to a transfer whose body failed: stalled, aborted, or why. */
async function replyFailure(
  s: Session,
  t: Transfer & { stalled: boolean },
  e: unknown,
  what: string,
): Promise<void> {
  if (t.stalled) await s.reply(426, "Data connection timed out; transfer aborted");
  else if (t.aborted) await s.reply(426, "Transfer aborted");
  else if (e instanceof DataError) await s.reply(e.code, e.message);
  else await s.reply(451, "Local error in processing; transfer aborted");
  if (!(e instanceof DataError) && !t.aborted) {
    s.deps.log.error("session {session}: transfer of {what} failed: {error}", {
      ...s.ctx,
      what,
      error: (e as Error).message,
    });
  }
}

/** ABOR: stops the running transfer, or closes a waiting passive listener. */
export async function abor(s: Session) {
  if (s.transfer) {
    const t = s.transfer;
    t.abort();
    await t.ended;
    return s.reply(226, "ABOR successful");
  }
  if (s.data.hasPassive) {
    s.data.closePassive();
    return s.reply(225, "ABOR successful; passive listener closed");
  }
  return s.reply(225, "No transfer to abort");
}

export async function retr(s: Session, arg: string) {
  const vpath = s.path(arg);
  const real = await s.home.resolve(vpath, { mustExist: true });
  const file = Deno.openSync(real, { read: true });
  try {
    const info = file.statSync();
    if (!info.isFile) throw new PathError(550, "Not a plain file");
    const offset = s.restOffset;
    s.restOffset = 0;
    if (offset > info.size) throw new DataError(451, "REST offset is beyond the end of the file");
    if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
    await startTransfer(s, {
      verb: "RETR",
      what: vpath,
      direction: "out",
      size: info.size - offset,
      opening: `Opening ${s.binary ? "BINARY" : "ASCII"} mode data connection for ${vpath} ` +
        `(${info.size - offset} bytes)`,
      body: (conn, progress) =>
        pump(file, conn, { buf: s.buffer, progress, fromIsDisk: true, limit: s.rateLimit("out") }),
      cleanup: () => file.close(),
    });
  } catch (e) {
    closeQuietly(file); // closed by cleanup when the transfer began
    throw e;
  }
}

/** Syncs a directory, so a rename in it survives a crash; best effort. */
export async function syncDirectory(dir: string): Promise<void> {
  try {
    using d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch { /* not every file system can sync a directory */ }
}

/**
 * STOR with `atomic_uploads`: the bytes go to a hidden temporary file in the
 * target's directory, which is synced and renamed over the target only when
 * the upload is complete, and removed otherwise. So the target name never
 * holds a partial upload, not even after a crash.
 */
export async function storeAtomic(s: Session, vpath: string) {
  const real = await s.home.resolve(vpath, { forCreate: true });
  // An existing symlink (inside the home: resolve checked) is written through, as in place.
  const link = await Deno.lstat(real).catch(() => null);
  const target = link?.isSymlink ? await Deno.realPath(real) : real;
  const info = link?.isSymlink ? await Deno.stat(target) : link;
  if (info && !info.isFile) throw new PathError(553, "Not a plain file");
  const slash = target.lastIndexOf("/");
  const dir = target.slice(0, slash) || "/";
  const name = target.slice(slash + 1);
  const random = [...crypto.getRandomValues(new Uint8Array(6))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  // Keep the temporary name within NAME_MAX (255 bytes).
  const shown = encoder.encode(name).length > 200 ? "" : name;
  const temp = `${dir}/.${shown}.pn-upload-${random}`;
  const file = await Deno.open(temp, { write: true, createNew: true });
  const out = new SyncingFile(file);
  s.restOffset = 0;
  await startTransfer(s, {
    verb: "STOR",
    what: vpath,
    direction: "in",
    opening: `Ok to send data for ${vpath}`,
    body: (conn, progress) =>
      pump(conn, out, { buf: s.buffer, progress, fromIsDisk: false, limit: s.rateLimit("in") }),
    cleanup: async (ok) => {
      let renamed = false;
      try {
        try {
          // The 226 promises the bytes are on disk, under their final name.
          if (ok) await out.sync();
        } finally {
          file.close();
        }
        if (ok) {
          // In stream mode a client that dies mid-upload ends the data
          // connection just as a finished one does; its control connection
          // goes with it. So commit only while the session stands.
          await sleep(0);
          if (s.closed || s.transfer?.aborted) {
            throw new DataError(426, "Connection closed; transfer aborted");
          }
          if (mayReplace(s)) await Deno.rename(temp, target);
          else await linkNew(temp, target); // a drop box: never over another sender's file
          renamed = true;
          await syncDirectory(dir);
        }
      } finally {
        if (!renamed) await Deno.remove(temp).catch(() => {});
      }
    },
  });
}

/** Gives `temp` the name `target` only if nothing has it yet (553 otherwise), then drops `temp`. */
async function linkNew(temp: string, target: string): Promise<void> {
  try {
    await Deno.link(temp, target);
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) {
      throw new DataError(553, "File exists; this user may not replace files");
    }
    throw e;
  }
  await Deno.remove(temp);
}

/** STOU: a new file named `vpath`, else `vpath.1`, `vpath.2` ... (at most 1,000 tries). */
async function openUnique(
  s: Session,
  base: string,
): Promise<{ file: Deno.FsFile; vpath: string; created: boolean }> {
  for (let i = 0;; i++) {
    const vpath = i === 0 ? base : `${base}.${i}`;
    try {
      const real = await s.home.resolve(vpath, { forCreate: true });
      const file = await Deno.open(real, { write: true, createNew: true });
      return { file, vpath, created: true };
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists) || i >= 999) throw e;
    }
  }
}

/** STOR/APPE in place: creates the file, or opens the plain file that is there. */
async function openForWrite(
  s: Session,
  vpath: string,
): Promise<{ file: Deno.FsFile; vpath: string; created: boolean }> {
  const real = await s.home.resolve(vpath, { forCreate: true });
  try {
    return { file: await Deno.open(real, { write: true, createNew: true }), vpath, created: true };
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    // Another sender's file, created since the check: a drop box never replaces it.
    if (!mayReplace(s)) throw new PathError(553, "File exists; this user may not replace files");
    const info = Deno.statSync(real);
    if (!info.isFile) throw new PathError(553, "Not a plain file");
    return { file: await Deno.open(real, { write: true }), vpath, created: false };
  }
}

export async function store(s: Session, arg: string, how: "stor" | "appe" | "stou") {
  let vpath = s.path(arg || "upload");
  if (how === "stor" && s.restOffset === 0 && s.deps.config.atomic_uploads) {
    return storeAtomic(s, vpath);
  }
  const opened = how === "stou" ? await openUnique(s, vpath) : await openForWrite(s, vpath);
  const { file, created } = opened;
  vpath = opened.vpath;
  const offset = how === "stor" ? s.restOffset : 0;
  s.restOffset = 0;
  const realPath = await s.home.resolve(vpath, { mustExist: true });
  const out = new SyncingFile(file);
  await startTransfer(s, {
    verb: how.toUpperCase(),
    what: vpath,
    direction: "in",
    opening: how === "stou" ? `FILE: ${vpath.split("/").pop()}` : `Ok to send data for ${vpath}`,
    body: async (conn, progress) => {
      if (how === "appe") await file.seek(0, Deno.SeekMode.End);
      else {
        await file.truncate(offset);
        await file.seek(offset, Deno.SeekMode.Start);
      }
      const limit = s.rateLimit("in");
      await pump(conn, out, { buf: s.buffer, progress, fromIsDisk: false, limit });
    },
    cleanup: async (ok) => {
      try {
        // The 226 promises the bytes are on disk.
        if (ok) await out.sync();
      } finally {
        file.close();
        if (!ok && created) {
          const info = await Deno.stat(realPath).catch(() => null);
          if (info && info.size === 0) await Deno.remove(realPath).catch(() => {});
        }
      }
    },
  });
}
