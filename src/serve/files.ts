/**
 * serve's directory and file commands: CWD, PWD, MKD, RMD, DELE, RNFR,
 * RNTO, SIZE, MDTM, REST and ALLO.
 * @module
 */
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

export function rest(s: Session, arg: string) {
  const a = arg.trim();
  if (!/^\d{1,15}$/.test(a)) return s.reply(501, "REST needs a non-negative byte offset");
  s.restOffset = Number(a);
  return s.reply(350, `Restarting at ${a}. Send STOR or RETR to continue`);
}

export function allo(s: Session) {
  return s.reply(202, "ALLO not needed");
}
