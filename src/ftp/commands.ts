/**
 * The command table: every FTP command declared once with its login rule,
 * argument rule, permission, HELP text, FEAT line and handler.
 * @module
 */
import { Jail, PathError, resolveVirtual } from "../fs/jail.ts";
import {
  formatFacts,
  formatListLine,
  type ListEntry,
  parseListArgs,
  permFacts,
  readEntries,
} from "../fs/listing.ts";
import { activeTarget, announceAddress, type Announcement } from "../nat/announce.ts";
import { listenInRange } from "../nat/port_range.ts";
import { epsvReplyText, parseEprt, parseEpsvArg, parsePort, pasvReplyText } from "./codec.ts";
import {
  acceptFromPeer,
  connectActive,
  DataError,
  diskError,
  type Progress,
  pump,
  SyncingFile,
  writeAll,
} from "./data_channel.ts";
import { type CommandSpec, reclaimSpareListener, type Session, type Transfer } from "./session.ts";

const encoder = new TextEncoder();

function resolvePath(s: Session, arg: string): string {
  return resolveVirtual(s.cwd, arg);
}

function jail(s: Session): Jail {
  // The table only lets logged-in sessions reach the handlers that call this.
  return s.jail!;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function quote(path: string): string {
  return `"${path.replaceAll('"', '""')}"`;
}

function mdtm(date: Date | null): string {
  const d = date ?? new Date(0);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}` +
    `${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

function perms(s: Session) {
  const p = s.account!.permissions;
  return {
    read: p.has("read"),
    write: p.has("write"),
    delete: p.has("delete"),
    mkdir: p.has("mkdir"),
    rename: p.has("rename"),
  };
}

// ---- login ---------------------------------------------------------------

async function user(s: Session, arg: string) {
  if (s.account) return s.reply(503, "Already logged in; use REIN to change user");
  s.pendingUser = arg.trim();
  if (s.deps.users.isAnonymous(s.pendingUser)) {
    return s.reply(331, "Anonymous login ok; send any password");
  }
  await s.reply(331, "Please specify the password");
}

async function pass(s: Session, arg: string) {
  if (s.account) return s.reply(503, "Already logged in");
  if (s.pendingUser === null) return s.reply(503, "Login with USER first");
  const name = s.pendingUser;
  s.pendingUser = null;
  const { deps } = s;
  // A client that left while waiting for its turn costs no check.
  const account = await deps.users.authenticate(name, arg, { cancelled: () => s.closed });
  if (s.closed) return;
  if (account) {
    const j = new Jail(account.home);
    try {
      await j.init();
    } catch (e) {
      deps.log.error("session {session}: home of {name} is not usable: {error}", {
        ...s.ctx,
        name,
        error: (e as Error).message,
      });
      return s.reply(530, "Login incorrect");
    }
    s.account = account;
    s.jail = j;
    s.cwd = "/";
    deps.stats.loginsOk++;
    deps.throttle.succeed(s.peer);
    deps.log.info("session {session} logged in as {user}", s.ctx);
    return s.reply(230, account.anonymous ? "Anonymous access granted" : "Login successful");
  }
  deps.stats.loginsFailed++;
  s.loginFailures++;
  if (deps.throttle.fail(s.peer)) {
    deps.log.warn("address {addr} banned for {seconds} s after repeated failed logins", {
      addr: s.peer,
      seconds: deps.config.limits.ban_seconds,
    });
  }
  deps.log.warn("session {session}: login failed for {name}", {
    ...s.ctx,
    name: name.slice(0, 64),
  });
  await sleep(deps.config.limits.login_failure_delay_ms);
  if (
    s.loginFailures >= deps.config.limits.max_login_failures || deps.throttle.bannedFor(s.peer) > 0
  ) {
    await s.reply(530, "Login incorrect");
    await s.reply(421, "Too many failed logins; closing connection");
    s.close();
    return;
  }
  await s.reply(530, "Login incorrect");
}

async function rein(s: Session) {
  s.transfer?.abort();
  s.closePassive();
  s.account = null;
  s.jail = null;
  s.pendingUser = null;
  s.cwd = "/";
  s.active = null;
  s.epsvAll = false;
  await s.reply(220, "Ready for a new user");
}

async function quit(s: Session) {
  if (s.transfer) await s.transfer.ended;
  await s.reply(221, "Goodbye");
  s.close();
}

// ---- information ---------------------------------------------------------

function feat(s: Session) {
  const lines = ["Features:"];
  for (const spec of s.deps.commands.values()) if (spec.feat) lines.push(" " + spec.feat);
  lines.push(" TVFS", " UTF8", "End");
  return s.reply(211, lines);
}

function help(s: Session, arg: string) {
  const table = s.deps.commands;
  if (arg.trim()) {
    const spec = table.get(arg.trim().toUpperCase());
    if (!spec) return s.reply(502, `Unknown command ${arg.trim().slice(0, 16)}`);
    return s.reply(214, `${spec.name}: ${spec.help}`);
  }
  const names = [...table.keys()].sort();
  const rows: string[] = [];
  for (let i = 0; i < names.length; i += 8) {
    rows.push(" " + names.slice(i, i + 8).map((n) => n.padEnd(5)).join(" "));
  }
  return s.reply(214, ["The following commands are recognized:", ...rows, "Help OK"]);
}

async function stat(s: Session, arg: string) {
  if (!arg.trim() || s.transfer) {
    const lines = [
      "pitifulnat status:",
      ` Connected from ${s.peer}`,
      ` Logged in as ${s.account?.name ?? "(nobody)"}`,
      ` TYPE: ${s.binary ? "BINARY" : "ASCII"}, STRUcture: File, MODE: Stream`,
      s.transfer ? ` Transfer in progress: ${s.transfer.describe()}` : " No data connection",
      "End of status",
    ];
    return s.reply(211, lines);
  }
  if (!s.account) return s.reply(530, "Please log in with USER and PASS first");
  if (!s.account.permissions.has("read")) return s.reply(550, "Permission denied");
  const { path } = parseListArgs(arg);
  const vpath = resolvePath(s, path);
  const real = await jail(s).resolve(vpath, { mustExist: true });
  const info = Deno.statSync(real);
  const now = new Date();
  const entries = info.isDirectory
    ? await readEntries(real)
    : [{ name: vpath.split("/").pop() || "/", info }];
  const lines = entries.map((e) => " " + formatListLine(e, { now }));
  return s.reply(info.isDirectory ? 212 : 213, [`Status of ${vpath}:`, ...lines, "End of status"]);
}

function opts(s: Session, arg: string) {
  const [name, ...rest] = arg.trim().split(/\s+/);
  const value = rest.join(" ");
  switch (name.toUpperCase()) {
    case "UTF8":
    case "UTF-8":
      if (value.toUpperCase() === "OFF") return s.reply(504, "UTF-8 is always on");
      return s.reply(200, "UTF-8 is always on");
    case "MLST": {
      const known = ["type", "size", "modify", "perm", "unique"];
      const wanted = value.split(";").map((f) => f.trim().toLowerCase()).filter((f) =>
        known.includes(f)
      );
      s.mlstFacts = new Set(wanted);
      return s.reply(200, `MLST OPTS ${wanted.map((f) => f + ";").join("")}`);
    }
    default:
      return s.reply(501, `Option ${name.slice(0, 16)} not understood`);
  }
}

function type(s: Session, arg: string) {
  const a = arg.trim().toUpperCase().split(/\s+/);
  if (a[0] === "I" || (a[0] === "L" && a[1] === "8")) {
    s.binary = true;
    return s.reply(200, "Switching to Binary mode");
  }
  if (a[0] === "A" && (a.length === 1 || a[1] === "N")) {
    s.binary = false;
    return s.reply(200, "Switching to ASCII mode");
  }
  if (["A", "E", "L"].includes(a[0])) return s.reply(504, `TYPE ${arg.trim()} not implemented`);
  return s.reply(501, "Unrecognised TYPE");
}

function mode(s: Session, arg: string) {
  const m = arg.trim().toUpperCase();
  if (m === "S") return s.reply(200, "Mode set to S");
  if (m === "B" || m === "C" || m === "Z") return s.reply(504, `MODE ${m} not implemented`);
  return s.reply(501, "Unrecognised MODE");
}

function stru(s: Session, arg: string) {
  const m = arg.trim().toUpperCase();
  if (m === "F") return s.reply(200, "Structure set to F");
  if (m === "R" || m === "P") return s.reply(504, `STRU ${m} not implemented`);
  return s.reply(501, "Unrecognised STRU");
}

// ---- directories ---------------------------------------------------------

async function cwd(s: Session, arg: string) {
  const vpath = resolvePath(s, arg);
  const real = await jail(s).resolve(vpath, { mustExist: true });
  const info = Deno.statSync(real);
  if (!info.isDirectory) return s.reply(550, "Not a directory");
  s.cwd = vpath;
  return s.reply(250, `Directory changed to ${vpath}`);
}

function pwd(s: Session) {
  return s.reply(257, `${quote(s.cwd)} is the current directory`);
}

async function mkd(s: Session, arg: string) {
  const vpath = resolvePath(s, arg);
  const real = await jail(s).resolve(vpath, { forCreate: true });
  await Deno.mkdir(real);
  return s.reply(257, `${quote(vpath)} created`);
}

async function rmd(s: Session, arg: string) {
  const vpath = resolvePath(s, arg);
  if (vpath === "/") return s.reply(550, "Cannot remove the home directory");
  const real = await jail(s).resolve(vpath, { mustExist: true });
  const info = Deno.lstatSync(real);
  if (!info.isDirectory) return s.reply(550, "Not a directory");
  await Deno.remove(real);
  return s.reply(250, "Directory removed");
}

// ---- files -----------------------------------------------------------------

async function dele(s: Session, arg: string) {
  const vpath = resolvePath(s, arg);
  const real = await jail(s).resolve(vpath, { mustExist: true });
  const info = Deno.lstatSync(real);
  if (info.isDirectory) return s.reply(550, "Is a directory; use RMD");
  await Deno.remove(real);
  return s.reply(250, "File deleted");
}

async function rnfr(s: Session, arg: string) {
  const vpath = resolvePath(s, arg);
  if (vpath === "/") return s.reply(550, "Cannot rename the home directory");
  await jail(s).resolve(vpath, { mustExist: true });
  s.renameFrom = vpath;
  return s.reply(350, "Ready for RNTO");
}

async function rnto(s: Session, arg: string) {
  const from = s.renameFrom;
  s.renameFrom = null;
  if (from === null) return s.reply(503, "RNFR required first");
  const j = jail(s);
  const realFrom = await j.resolve(from, { mustExist: true });
  const realTo = await j.resolve(resolvePath(s, arg), { forCreate: true });
  await Deno.rename(realFrom, realTo);
  return s.reply(250, "Rename successful");
}

async function size(s: Session, arg: string) {
  const real = await jail(s).resolve(resolvePath(s, arg), { mustExist: true });
  const info = Deno.statSync(real);
  if (!info.isFile) return s.reply(550, "Not a plain file");
  return s.reply(213, String(info.size));
}

async function mdtmCmd(s: Session, arg: string) {
  const real = await jail(s).resolve(resolvePath(s, arg), { mustExist: true });
  const info = Deno.statSync(real);
  if (!info.isFile) return s.reply(550, "Not a plain file");
  return s.reply(213, mdtm(info.mtime));
}

function rest(s: Session, arg: string) {
  const a = arg.trim();
  if (!/^\d{1,15}$/.test(a)) return s.reply(501, "REST needs a non-negative byte offset");
  s.restOffset = Number(a);
  return s.reply(350, `Restarting at ${a}. Send STOR or RETR to continue`);
}

function allo(s: Session) {
  return s.reply(202, "ALLO not needed");
}

// ---- data connections ----------------------------------------------------

function refuseAfterEpsvAll(s: Session): boolean {
  if (!s.epsvAll) return false;
  s.reply(503, "EPSV ALL is in effect: only EPSV may set up data connections");
  return true;
}

async function openPassive(s: Session): Promise<number | null> {
  s.closePassive();
  s.active = null;
  const { min_port, max_port } = s.deps.config.passive;
  const spare = s.takeSpareListener();
  const bind = () => listenInRange({ hostname: s.local, min: min_port, max: max_port });
  let listener = spare && spare.port >= min_port && spare.port <= max_port
    ? spare.listener
    : await bind();
  if (spare && spare.listener !== listener) spare.listener.close();
  // A full range may be held by other sessions' kept listeners: take those
  // back, oldest first (at most one per kept listener).
  while (!listener && reclaimSpareListener()) listener = await bind();
  if (!listener) {
    s.deps.log.warn("session {session}: every passive port {min}-{max} is busy", {
      ...s.ctx,
      min: min_port,
      max: max_port,
    });
    await s.reply(425, "No passive port available; try again later");
    return null;
  }
  const port = (listener.addr as Deno.NetAddr).port;
  // Accept at once, not when the transfer command comes: clients connect
  // right after the 227/229, so the connection is ready when RETR arrives.
  const accepted = acceptFromPeer(listener, {
    peer: s.peer,
    timeoutMs: s.deps.config.limits.data_timeout_seconds * 1000,
    keepOpen: true,
    onStranger: (from) =>
      s.deps.log.warn(
        "session {session}: refused data connection from {from} on passive port {port}",
        { ...s.ctx, from, port },
      ),
  });
  s.passive = { listener, port, accepted };
  return port;
}

/**
 * What PASV tells this session's client. The peer and local addresses are
 * fixed for a session, so the decision is made again only when the public
 * address (or, after a reload, the LAN networks) changes.
 */
function announcement(s: Session): Announcement {
  const publicAddress = s.deps.publicAddress?.current() ?? null;
  const cached = s.announced;
  if (cached && cached.publicAddress === publicAddress && cached.lan === s.deps.lan) {
    return cached.decision;
  }
  const decision = announceAddress({
    client: s.peer,
    local: s.local,
    publicAddress,
    publicConfigured: s.deps.publicAddress !== null,
  }, s.deps.lan);
  s.announced = { publicAddress, lan: s.deps.lan, decision };
  return decision;
}

/** When a remote client was last warned about being told a LAN address. */
let lastFallbackWarning = 0;

async function pasv(s: Session) {
  if (refuseAfterEpsvAll(s)) return;
  const decision = announcement(s);
  if (decision.address === null) {
    return s.reply(522, "PASV needs IPv4 on the control connection; use EPSV (2)");
  }
  if (decision.source === "fallback-local" && Date.now() - lastFallbackWarning > 3_600_000) {
    lastFallbackWarning = Date.now();
    s.deps.log.warn(
      "remote client {peer} told the local address {address} in PASV: {reason} " +
        "(logged at most once an hour)",
      { ...s.ctx, address: decision.address, reason: decision.reason },
    );
  }
  const port = await openPassive(s);
  if (port === null) return;
  s.passive!.viaPublic = decision.source === "public";
  s.deps.log.debug("session {session}: PASV {address}:{port} ({reason})", {
    ...s.ctx,
    address: decision.address,
    port,
    reason: decision.reason,
  });
  await s.reply(227, pasvReplyText({ host: decision.address, port }));
}

async function epsv(s: Session, arg: string) {
  const a = parseEpsvArg(arg);
  if (a === null) return s.reply(501, "EPSV takes ALL or a network protocol number");
  if (a === "all") {
    s.epsvAll = true;
    return s.reply(200, "EPSV ALL ok");
  }
  const family = s.local.includes(":") ? 2 : 1;
  if (a === "family" || (typeof a === "number" && a !== family)) {
    return s.reply(522, `Network protocol not supported, use (${family})`);
  }
  const port = await openPassive(s);
  if (port === null) return;
  await s.reply(229, epsvReplyText(port));
}

function setActive(s: Session, written: { host: string; port: number }) {
  if (written.port < 1024) {
    return s.reply(504, "Refusing data connection to a privileged port");
  }
  const target = activeTarget({ peer: s.peer, written: written.host }, {
    allowFxp: s.deps.config.allow_fxp,
  });
  s.closePassive();
  s.active = { host: target.address, port: written.port };
  return s.reply(200, "PORT command successful; consider using PASV or EPSV");
}

function port(s: Session, arg: string) {
  if (refuseAfterEpsvAll(s)) return;
  if (s.local.includes(":")) return s.reply(522, "Network protocol not supported, use (2)");
  const hp = parsePort(arg);
  if (!hp) return s.reply(501, "Illegal PORT command");
  return setActive(s, hp);
}

function eprt(s: Session, arg: string) {
  if (refuseAfterEpsvAll(s)) return;
  const family = s.local.includes(":") ? 2 : 1;
  const e = parseEprt(arg);
  if (e === null) return s.reply(501, "Illegal EPRT command");
  if (e === "family" || e.family !== family) {
    return s.reply(522, `Network protocol not supported, use (${family})`);
  }
  return setActive(s, e);
}

/** Opens the data connection the client set up with PASV/EPSV or PORT/EPRT. */
async function openData(s: Session): Promise<Deno.TcpConn> {
  const timeoutMs = s.deps.config.limits.data_timeout_seconds * 1000;
  if (s.passive) {
    const { accepted, port, listener } = s.passive;
    s.passive = null;
    const conn = await accepted;
    if (!conn) {
      s.deps.publicAddress?.hint(`session ${s.id}: passive port ${port} was never connected`);
      throw new DataError(425, "Can't open data connection: the client did not connect");
    }
    s.keepSpareListener(listener, port);
    return conn;
  }
  if (s.active) {
    const target = s.active;
    s.active = null;
    return await connectActive(target, { timeoutMs });
  }
  throw new DataError(425, "Use PORT, EPRT, PASV or EPSV first");
}

/**
 * Runs a transfer in the background: opens the data connection, says 150,
 * runs `body`, and answers 226, or 426/451/452 on failure. The session goes
 * on reading commands, so ABOR and STAT work meanwhile.
 */
async function startTransfer(
  s: Session,
  options: {
    what: string;
    direction: "in" | "out";
    opening: string;
    body: (conn: Deno.TcpConn, progress: Progress) => Promise<void>;
    cleanup?: (ok: boolean) => Promise<void> | void;
    log?: boolean;
  },
): Promise<void> {
  let conn: Deno.TcpConn;
  try {
    conn = await openData(s);
  } catch (e) {
    await options.cleanup?.(false);
    throw e;
  }
  // Not awaited: replies are written in order (the 226 cannot overtake it),
  // and the data need not wait an event-loop turn for the 150 to be sent.
  void s.reply(150, options.opening);
  const progress: Progress = { bytes: 0 };
  let stalled = false;
  const started = performance.now();
  const t: Transfer = {
    aborted: false,
    ended: Promise.resolve(),
    abort() {
      t.aborted = true;
      try {
        conn.close();
      } catch { /* already closed */ }
    },
    describe: () =>
      `${options.direction === "in" ? "STOR" : "RETR"} ${options.what}, ` +
      `${progress.bytes} bytes`,
  };
  const timeoutMs = s.deps.config.limits.data_timeout_seconds * 1000;
  let seen = -1;
  const watchdog = setInterval(() => {
    if (progress.bytes === seen) {
      stalled = true;
      t.abort();
    }
    seen = progress.bytes;
  }, timeoutMs);
  t.ended = (async () => {
    let ok = false;
    try {
      await options.body(conn, progress);
      // The data was handed to the kernel; the close below sends it, then FIN.
      ok = true;
    } catch (e) {
      if (stalled) await s.reply(426, "Data connection timed out; transfer aborted");
      else if (t.aborted) await s.reply(426, "Transfer aborted");
      else if (e instanceof DataError) await s.reply(e.code, e.message);
      else await s.reply(451, "Local error in processing; transfer aborted");
      if (!(e instanceof DataError) && !t.aborted) {
        s.deps.log.error("session {session}: transfer of {what} failed: {error}", {
          ...s.ctx,
          what: options.what,
          error: (e as Error).message,
        });
      }
    } finally {
      clearInterval(watchdog);
      try {
        conn.close();
      } catch { /* already closed */ }
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
    const seconds = (performance.now() - started) / 1000;
    const { stats } = s.deps;
    if (options.direction === "in") stats.bytesIn += progress.bytes;
    else stats.bytesOut += progress.bytes;
    if (options.log !== false) {
      stats.transfers++;
      s.deps.log.info(
        "transfer user={user} dir={direction} path={what} bytes={bytes} seconds={seconds} " +
          "rate={rate} result={result}",
        {
          ...s.ctx,
          direction: options.direction,
          what: options.what,
          bytes: progress.bytes,
          seconds: seconds.toFixed(3),
          rate: `${(progress.bytes / 1e6 / Math.max(seconds, 1e-6)).toFixed(1)}MB/s`,
          result: ok ? "ok" : t.aborted ? "aborted" : "failed",
        },
      );
    }
  })();
  s.transfer = t;
}

async function retr(s: Session, arg: string) {
  const vpath = resolvePath(s, arg);
  const real = await jail(s).resolve(vpath, { mustExist: true });
  const file = Deno.openSync(real, { read: true });
  try {
    const info = file.statSync();
    if (!info.isFile) throw new PathError(550, "Not a plain file");
    const offset = s.restOffset;
    s.restOffset = 0;
    if (offset > info.size) throw new DataError(451, "REST offset is beyond the end of the file");
    if (offset > 0) await file.seek(offset, Deno.SeekMode.Start);
    await startTransfer(s, {
      what: vpath,
      direction: "out",
      opening: `Opening ${s.binary ? "BINARY" : "ASCII"} mode data connection for ${vpath} ` +
        `(${info.size - offset} bytes)`,
      body: (conn, progress) => pump(file, conn, { buf: s.buffer, progress, fromIsDisk: true }),
      cleanup: () => file.close(),
    });
  } catch (e) {
    try {
      file.close();
    } catch { /* closed by cleanup */ }
    throw e;
  }
}

/** Syncs a directory, so a rename in it survives a crash; best effort. */
async function syncDirectory(dir: string): Promise<void> {
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
async function storeAtomic(s: Session, vpath: string) {
  const real = await jail(s).resolve(vpath, { forCreate: true });
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
    what: vpath,
    direction: "in",
    opening: `Ok to send data for ${vpath}`,
    body: (conn, progress) => pump(conn, out, { buf: s.buffer, progress, fromIsDisk: false }),
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
          await Deno.rename(temp, target);
          renamed = true;
          await syncDirectory(dir);
        }
      } finally {
        if (!renamed) await Deno.remove(temp).catch(() => {});
      }
    },
  });
}

async function store(s: Session, arg: string, how: "stor" | "appe" | "stou") {
  const j = jail(s);
  let vpath = resolvePath(s, arg || "upload");
  if (how === "stor" && s.restOffset === 0 && s.deps.config.atomic_uploads) {
    return storeAtomic(s, vpath);
  }
  let file: Deno.FsFile;
  let created = false;
  if (how === "stou") {
    const base = vpath;
    for (let i = 0;; i++) {
      vpath = i === 0 ? base : `${base}.${i}`;
      try {
        file = await Deno.open(await j.resolve(vpath, { forCreate: true }), {
          write: true,
          createNew: true,
        });
        created = true;
        break;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists) || i >= 999) throw e;
      }
    }
  } else {
    const real = await j.resolve(vpath, { forCreate: true });
    try {
      file = await Deno.open(real, { write: true, createNew: true });
      created = true;
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      const info = Deno.statSync(real);
      if (!info.isFile) throw new PathError(553, "Not a plain file");
      file = await Deno.open(real, { write: true });
    }
  }
  const offset = how === "stor" ? s.restOffset : 0;
  s.restOffset = 0;
  const realPath = await j.resolve(vpath, { mustExist: true });
  const out = new SyncingFile(file!);
  await startTransfer(s, {
    what: vpath,
    direction: "in",
    opening: how === "stou" ? `FILE: ${vpath.split("/").pop()}` : `Ok to send data for ${vpath}`,
    body: async (conn, progress) => {
      if (how === "appe") await file.seek(0, Deno.SeekMode.End);
      else {
        await file.truncate(offset);
        await file.seek(offset, Deno.SeekMode.Start);
      }
      await pump(conn, out, { buf: s.buffer, progress, fromIsDisk: false });
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

// ---- listings ------------------------------------------------------------

async function listTarget(s: Session, arg: string) {
  const { path } = parseListArgs(arg);
  const vpath = resolvePath(s, path);
  const real = await jail(s).resolve(vpath, { mustExist: true });
  const info = Deno.statSync(real);
  return { vpath, real, info };
}

async function sendText(s: Session, what: string, text: string) {
  const bytes = encoder.encode(text);
  await startTransfer(s, {
    what,
    direction: "out",
    opening: "Here comes the directory listing",
    body: async (conn, progress) => {
      try {
        await writeAll(conn, bytes);
      } catch (e) {
        throw new DataError(426, `Connection closed; transfer aborted (${(e as Error).message})`);
      }
      progress.bytes = bytes.length;
    },
    log: false,
  });
}

async function list(s: Session, arg: string) {
  const { vpath, real, info } = await listTarget(s, arg);
  const now = new Date();
  const entries: ListEntry[] = info.isDirectory
    ? await readEntries(real)
    : [{ name: vpath.split("/").pop()!, info }];
  let text = "";
  for (const e of entries) text += formatListLine(e, { now }) + "\r\n";
  await sendText(s, vpath, text);
}

async function nlst(s: Session, arg: string) {
  const { vpath, real, info } = await listTarget(s, arg);
  const names = info.isDirectory
    ? (await readEntries(real)).map((e) => e.name)
    : [parseListArgs(arg).path];
  await sendText(s, vpath, names.map((n) => n + "\r\n").join(""));
}

function factsFor(s: Session, entry: ListEntry, kind?: "cdir" | "pdir"): string {
  const line = formatFacts(entry, {
    type: kind,
    perm: permFacts(entry.info.isDirectory, perms(s)),
  });
  if (s.mlstFacts.size === 5) return line;
  const space = line.indexOf(" ");
  const facts = line.slice(0, space).split(";").filter((f) =>
    f && s.mlstFacts.has(f.split("=")[0].toLowerCase())
  );
  return facts.map((f) => f + ";").join("") + line.slice(space);
}

async function mlsd(s: Session, arg: string) {
  const { vpath, real, info } = await listTarget(s, arg);
  if (!info.isDirectory) return s.reply(501, "MLSD needs a directory");
  let text = factsFor(s, { name: ".", info }, "cdir") + "\r\n";
  for (const e of await readEntries(real)) text += factsFor(s, e) + "\r\n";
  await sendText(s, vpath, text);
}

async function mlst(s: Session, arg: string) {
  const vpath = resolvePath(s, arg);
  const real = await jail(s).resolve(vpath, { mustExist: true });
  const info = Deno.statSync(real);
  const line = factsFor(s, { name: vpath, info });
  return s.reply(250, [`Listing ${vpath}`, " " + line, "End"]);
}

// ---- transfers control ---------------------------------------------------

async function abor(s: Session) {
  if (s.transfer) {
    const t = s.transfer;
    t.abort();
    await t.ended;
    return s.reply(226, "ABOR successful");
  }
  if (s.passive) {
    s.closePassive();
    return s.reply(225, "ABOR successful; passive listener closed");
  }
  return s.reply(225, "No transfer to abort");
}

function auth(s: Session) {
  return s.reply(502, "AUTH not available: this server does not offer TLS yet");
}

/** Builds the command table. */
export function buildCommandTable(): ReadonlyMap<string, CommandSpec> {
  const specs: CommandSpec[] = [];
  function add(
    names: string | string[],
    spec: Omit<CommandSpec, "name">,
  ) {
    for (const name of Array.isArray(names) ? names : [names]) specs.push({ name, ...spec });
  }
  const open = { login: false };
  const auth_ = { login: true };
  add("USER", { ...open, arg: "required", help: "USER name: start login", handler: user });
  add("PASS", { ...open, arg: "optional", help: "PASS password: finish login", handler: pass });
  add("QUIT", {
    ...open,
    arg: "optional",
    help: "end the session",
    handler: quit,
    duringTransfer: true,
  });
  add("NOOP", {
    ...open,
    arg: "optional",
    help: "do nothing",
    handler: (s) => s.reply(200, "NOOP ok"),
    duringTransfer: true,
  });
  add("SYST", {
    ...open,
    arg: "none",
    help: "system type",
    handler: (s) => s.reply(215, "UNIX Type: L8"),
  });
  add("FEAT", { ...open, arg: "none", help: "list extensions", handler: feat });
  add("HELP", { ...open, arg: "optional", help: "HELP [command]", handler: help });
  add("OPTS", { ...open, arg: "required", help: "OPTS UTF8 ON | OPTS MLST facts", handler: opts });
  add("AUTH", { ...open, arg: "optional", help: "TLS is not offered yet", handler: auth });
  add(["PBSZ", "PROT", "ACCT", "SMNT", "SITE"], {
    ...auth_,
    arg: "optional",
    help: "not implemented",
    handler: (s) => s.reply(502, "Command not implemented"),
  });
  add("REIN", { ...open, arg: "none", help: "log out, keep the connection", handler: rein });
  add("STAT", {
    ...auth_,
    arg: "optional",
    help: "STAT [path]: status or listing over the control connection",
    handler: stat,
    duringTransfer: true,
    login: false,
  });
  add(["PWD", "XPWD"], { ...auth_, arg: "none", help: "print working directory", handler: pwd });
  add(["CWD", "XCWD"], { ...auth_, arg: "required", help: "CWD path", handler: cwd });
  add(["CDUP", "XCUP"], {
    ...auth_,
    arg: "none",
    help: "go to the parent directory",
    handler: (s) => cwd(s, ".."),
  });
  add(["MKD", "XMKD"], {
    ...auth_,
    arg: "required",
    perm: "mkdir",
    help: "MKD path",
    handler: mkd,
  });
  add(["RMD", "XRMD"], {
    ...auth_,
    arg: "required",
    perm: "delete",
    help: "RMD path",
    handler: rmd,
  });
  add("DELE", { ...auth_, arg: "required", perm: "delete", help: "DELE file", handler: dele });
  add("RNFR", { ...auth_, arg: "required", perm: "rename", help: "RNFR from", handler: rnfr });
  add("RNTO", { ...auth_, arg: "required", perm: "rename", help: "RNTO to", handler: rnto });
  add("SIZE", {
    ...auth_,
    arg: "required",
    perm: "read",
    help: "SIZE file",
    feat: "SIZE",
    handler: size,
  });
  add("MDTM", {
    ...auth_,
    arg: "required",
    perm: "read",
    help: "MDTM file",
    feat: "MDTM",
    handler: mdtmCmd,
  });
  add("TYPE", { ...auth_, arg: "required", help: "TYPE A | I", handler: type });
  add("MODE", { ...auth_, arg: "required", help: "MODE S", handler: mode });
  add("STRU", { ...auth_, arg: "required", help: "STRU F", handler: stru });
  add("ALLO", { ...auth_, arg: "optional", help: "ALLO is not needed", handler: allo });
  add("REST", {
    ...auth_,
    arg: "required",
    help: "REST offset",
    feat: "REST STREAM",
    handler: rest,
  });
  add("PASV", { ...auth_, arg: "none", help: "passive mode (IPv4)", feat: "PASV", handler: pasv });
  add("EPSV", {
    ...auth_,
    arg: "optional",
    help: "extended passive mode",
    feat: "EPSV",
    handler: epsv,
  });
  add("PORT", { ...auth_, arg: "required", help: "PORT h1,h2,h3,h4,p1,p2", handler: port });
  add("EPRT", {
    ...auth_,
    arg: "required",
    help: "EPRT |af|addr|port|",
    feat: "EPRT",
    handler: eprt,
  });
  add("LIST", { ...auth_, arg: "optional", perm: "read", help: "LIST [path]", handler: list });
  add("NLST", { ...auth_, arg: "optional", perm: "read", help: "NLST [path]", handler: nlst });
  add("MLSD", {
    ...auth_,
    arg: "optional",
    perm: "read",
    help: "MLSD [dir]",
    feat: "MLST type*;size*;modify*;perm*;unique*;",
    handler: mlsd,
  });
  add("MLST", { ...auth_, arg: "optional", perm: "read", help: "MLST [path]", handler: mlst });
  add("RETR", { ...auth_, arg: "required", perm: "read", help: "RETR file", handler: retr });
  add("STOR", {
    ...auth_,
    arg: "required",
    perm: "write",
    help: "STOR file",
    handler: (s, a) => store(s, a, "stor"),
  });
  add("APPE", {
    ...auth_,
    arg: "required",
    perm: "write",
    help: "APPE file",
    handler: (s, a) => store(s, a, "appe"),
  });
  add("STOU", {
    ...auth_,
    arg: "optional",
    perm: "write",
    help: "STOU [name]: store under a unique name",
    handler: (s, a) => store(s, a, "stou"),
  });
  add("ABOR", {
    ...auth_,
    arg: "none",
    help: "abort the transfer",
    handler: abor,
    duringTransfer: true,
  });
  return new Map(specs.map((s) => [s.name, s]));
}
