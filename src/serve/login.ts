/**
 * serve's login and information commands: USER, PASS, REIN, QUIT, FEAT,
 * HELP, OPTS, TYPE, MODE, STRU and AUTH.
 * @module
 */
import { Jail } from "../fs/jail.ts";
import { refuseIfPlain } from "../ftp/security.ts";
import type { Session } from "./session.ts";

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export async function user(s: Session, arg: string) {
  if (s.account) return s.reply(503, "Already logged in; use REIN to change user");
  const refused = refuseIfPlain(s);
  if (refused) return refused;
  s.pendingUser = arg.trim();
  if (s.deps.users.isAnonymous(s.pendingUser)) {
    return s.reply(331, "Anonymous login ok; send any password");
  }
  await s.reply(331, "Please specify the password");
}

export async function pass(s: Session, arg: string) {
  if (s.account) return s.reply(503, "Already logged in");
  const refused = refuseIfPlain(s);
  if (refused) return refused;
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
      // The password was right: say so, and what is wrong, not "incorrect".
      deps.log.error(
        "session {session}: {name} gave the right password, but the home {home} is not usable: " +
          "{error}; closing (run pitifulnat check)",
        { ...s.ctx, name, home: account.home, error: (e as Error).message },
      );
      await s.reply(421, "Home directory not available; closing connection");
      return s.close();
    }
    s.account = account;
    s.jail = j;
    s.cwd = "/";
    s.loginSucceeded();
    return s.reply(230, account.anonymous ? "Anonymous access granted" : "Login successful");
  }
  const mustEnd = s.loginFailed(name);
  await sleep(deps.config.limits.login_failure_delay_ms);
  await s.reply(530, "Login incorrect");
  if (mustEnd) {
    await s.reply(421, "Too many failed logins; closing connection");
    s.close();
  }
}

export async function rein(s: Session) {
  if (s.secure) {
    // RFC 4217 would end TLS here and go on in clear; node:tls cannot hand
    // the socket back, and a clear session is what TLS was sent to avoid.
    return s.reply(502, "REIN is not available under TLS; reconnect to log in as another user");
  }
  s.transfer?.abort();
  s.data.reset();
  s.account = null;
  s.jail = null;
  s.pendingUser = null;
  s.cwd = "/";
  await s.reply(220, "Ready for a new user");
}

export async function quit(s: Session) {
  if (s.transfer) await s.transfer.ended;
  await s.reply(221, "Goodbye");
  s.close();
}

export function feat(s: Session) {
  const lines = ["Features:"];
  for (const spec of s.deps.commands.values()) {
    if (spec.feat && (!spec.tls || s.deps.tls)) lines.push(" " + spec.feat);
  }
  lines.push(" TVFS", " UTF8", "End");
  return s.reply(211, lines);
}

export function help(s: Session, arg: string) {
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

export function opts(s: Session, arg: string) {
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

export function type(s: Session, arg: string) {
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

export function mode(s: Session, arg: string) {
  const m = arg.trim().toUpperCase();
  if (m === "S") return s.reply(200, "Mode set to S");
  if (m === "B" || m === "C" || m === "Z") return s.reply(504, `MODE ${m} not implemented`);
  return s.reply(501, "Unrecognised MODE");
}

export function stru(s: Session, arg: string) {
  const m = arg.trim().toUpperCase();
  if (m === "F") return s.reply(200, "Structure set to F");
  if (m === "R" || m === "P") return s.reply(504, `STRU ${m} not implemented`);
  return s.reply(501, "Unrecognised STRU");
}
