/**
 * serve's directory and file commands: CWD, PWD, MKD, RMD, DELE, RNFR,
 * RNTO, SIZE, MDTM, MFMT, REST and ALLO, and the drop-box rule for uploads.
 * @module
 */
import { PathError } from "../fs/jail.ts";
import type { Session } from "./session.ts";

function quote(path: string): string {
  return `"${path.replaceAll('"', '""')}"`;
}

function mdtm(date: Date | null): string {
  const d = date ?? new Date(0);
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}` +
    `${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

export async function cwd(s: Session, arg: string) {
  const vpath = s.path(arg);
  const real = await s.home.resolve(vpath, { mustExist: true });
  const info = Deno.statSync(real);
  if (!info.isDirectory) return s.reply(550, "Not a directory");
  s.cwd = vpath;
  return s.reply(250, `Directory changed to ${vpath}`);
}

export function pwd(s: Session) {
  return s.reply(257, `${quote(s.cwd)} is the current directory`);
}

export async function mkd(s: Session, arg: string) {
  const vpath = s.path(arg);
  const real = await s.home.resolve(vpath, { forCreate: true });
  await Deno.mkdir(real);
  return s.reply(257, `${quote(vpath)} created`);
}

export async function rmd(s: Session, arg: string) {
  const vpath = s.path(arg);
  if (vpath === "/") return s.reply(550, "Cannot remove the home directory");
  const real = await s.home.resolve(vpath, { mustExist: true });
  const info = Deno.lstatSync(real);
  if (!info.isDirectory) return s.reply(550, "Not a directory");
  await Deno.remove(real);
  return s.reply(250, "Directory removed");
}

// ---- files -----------------------------------------------------------------

export async function dele(s: Session, arg: string) {
  const vpath = s.path(arg);
  const real = await s.home.resolve(vpath, { mustExist: true });
  const info = Deno.lstatSync(real);
  if (info.isDirectory) return s.reply(550, "Is a directory; use RMD");
  await Deno.remove(real);
  return s.reply(250, "File deleted");
}

export async function rnfr(s: Session, arg: string) {
  const vpath = s.path(arg);
  if (vpath === "/") return s.reply(550, "Cannot rename the home directory");
  await s.home.resolve(vpath, { mustExist: true });
  s.renameFrom = vpath;
  return s.reply(350, "Ready for RNTO");
}

export async function rnto(s: Session, arg: string) {
  const from = s.renameFrom;
  s.renameFrom = null;
  if (from === null) return s.reply(503, "RNFR required first");
  const j = s.home;
  const realFrom = await j.resolve(from, { mustExist: true });
  const realTo = await j.resolve(s.path(arg), { forCreate: true });
  await Deno.rename(realFrom, realTo);
  return s.reply(250, "Rename successful");
}

export async function size(s: Session, arg: string) {
  const real = await s.home.resolve(s.path(arg), { mustExist: true });
  const info = Deno.statSync(real);
  if (!info.isFile) return s.reply(550, "Not a plain file");
  return s.reply(213, String(info.size));
}

export async function mdtmCmd(s: Session, arg: string) {
  const real = await s.home.resolve(s.path(arg), { mustExist: true });
  const info = Deno.statSync(real);
  if (!info.isFile) return s.reply(550, "Not a plain file");
  return s.reply(213, mdtm(info.mtime));
}

/** An MFMT time-val, YYYYMMDDHHMMSS with up to three decimals, as a UTC date; null if invalid. */
export function parseTimeVal(text: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,3}))?$/.exec(text);
  if (!m) return null;
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number);
  const ms = m[7] ? Number(m[7].padEnd(3, "0")) : 0;
  const t = new Date(Date.UTC(y, mo - 1, d, h, mi, sec, ms));
  // Date.UTC rolls over (month 13, 31 February, 24:00); a valid time round-trips.
  const same = t.getUTCFullYear() === y && t.getUTCMonth() === mo - 1 && t.getUTCDate() === d &&
    t.getUTCHours() === h && t.getUTCMinutes() === mi && t.getUTCSeconds() === sec;
  return same ? t : null;
}

/**
 * The canonical path of an existing entry `real` (from the jail's resolve),
 * symlinks followed, checked to lie inside the home (553 otherwise). Calls
 * that follow symlinks (utime, chmod) are given this path, so they act on
 * the file inside the jail that the link names, never on one outside.
 */
export function canonicalInside(s: Session, real: string): string {
  const canonical = Deno.realPathSync(real);
  const root = s.home.realRoot;
  const inside = canonical === root || canonical.startsWith(root === "/" ? "/" : root + "/");
  if (!inside) throw new PathError(553, "Path outside home");
  return canonical;
}

/** MFMT time path (draft-somers-ftp-mfxx): sets the modification time, in UTC. */
export async function mfmt(s: Session, arg: string) {
  const m = /^(\S+) +(.+)$/.exec(arg.trim());
  const time = m ? parseTimeVal(m[1]) : null;
  if (!m || !time) return s.reply(501, "MFMT needs a time YYYYMMDDHHMMSS[.sss] and a path");
  const real = canonicalInside(s, await s.home.resolve(s.path(m[2]), { mustExist: true }));
  const info = Deno.statSync(real);
  Deno.utimeSync(real, info.atime ?? time, time);
  return s.reply(213, `Modify=${m[1]}; ${m[2]}`);
}

/**
 * The drop-box rule: a user who may write but not read may not replace or
 * extend what is there (another sender's upload) unless they may also
 * delete. Returns true, having replied 553, when `arg` names an existing
 * entry such a user may not overwrite (STOR), append to (APPE) or rename
 * onto (RNTO).
 */
export async function refuseOverwrite(s: Session, arg: string): Promise<boolean> {
  if (mayReplace(s)) return false;
  const real = await s.home.resolve(s.path(arg || "upload"), { forCreate: true });
  try {
    Deno.lstatSync(real);
  } catch {
    return false; // nothing there (or not visible): the upload creates it
  }
  await s.reply(553, "File exists; this user may not replace files");
  return true;
}

/** Whether the user may replace an existing file: all but drop-box users without `delete`. */
export function mayReplace(s: Session): boolean {
  const p = s.account!.permissions;
  return p.has("read") || p.has("delete");
}

export function rest(s: Session, arg: string) {
  const a = arg.trim();
  if (!/^\d{1,15}$/.test(a)) return s.reply(501, "REST needs a non-negative byte offset");
  s.restOffset = Number(a);
  return s.reply(350, `Restarting at ${a}. Send STOR or RETR to continue`);
}

export function allo(s: Session) {
  return s.reply(202, "ALLO not needed");
}
