/**
 * serve's SITE command: SITE CHMOD (permission bits only, inside the home)
 * and SITE HELP. Other SITE commands are 502.
 * @module
 */
import { canonicalInside } from "./files.ts";
import type { Session } from "./session.ts";

/** The SITE subcommands, with their HELP lines. */
const SITE_HELP = [
  " CHMOD mode path: set permission bits (octal, 0-0777)",
  " HELP: this list",
];

/** A SITE CHMOD mode: one to four octal digits, permission bits only; null otherwise. */
export function parseMode(text: string): number | null {
  if (!/^[0-7]{1,4}$/.test(text)) return null;
  const mode = parseInt(text, 8);
  return mode <= 0o777 ? mode : null; // no setuid, setgid or sticky bit
}

/** SITE CHMOD mode path: needs `write`; acts on the real file inside the home. */
async function chmod(s: Session, rest: string) {
  if (!s.account!.permissions.has("write")) {
    return s.reply(550, "Permission denied (write is not allowed for this user)");
  }
  const m = /^(\S+) +(.+)$/.exec(rest.trim());
  const mode = m ? parseMode(m[1]) : null;
  if (!m || mode === null) return s.reply(501, "SITE CHMOD needs an octal mode 0-0777 and a path");
  const real = canonicalInside(s, await s.home.resolve(s.path(m[2]), { mustExist: true }));
  await Deno.chmod(real, mode);
  return s.reply(200, `SITE CHMOD ${m[1]} ${m[2]} done`);
}

/** SITE subcommand [arguments]. */
export function site(s: Session, arg: string) {
  const a = arg.trim();
  const space = a.indexOf(" ");
  const sub = (space === -1 ? a : a.slice(0, space)).toUpperCase();
  const rest = space === -1 ? "" : a.slice(space + 1);
  if (sub === "CHMOD") return chmod(s, rest);
  if (sub === "HELP" || sub === "") {
    return s.reply(214, ["The following SITE commands are recognized:", ...SITE_HELP, "Help OK"]);
  }
  return s.reply(502, `SITE ${sub.replace(/[^\x21-\x7e]/g, "?").slice(0, 16)} not implemented`);
}
