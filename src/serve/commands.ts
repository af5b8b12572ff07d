/**
 * serve's command table: every FTP command declared once with its login
 * rule, argument rule, permission, HELP text, FEAT line and handler. The
 * session's gate (session.ts) applies the rules; the handlers live by
 * family in login.ts, files.ts, transfers.ts, listings.ts, site.ts and
 * hash.ts.
 *
 * Permissions are decided here and in the gate: each command's `perm` is
 * checked before its handler runs. A drop box (a user with `write` but not
 * `read`) follows from that: every command that shows names or contents
 * (LIST, NLST, MLSD, MLST, STAT path, RETR, SIZE, MDTM, HASH) needs `read`,
 * so is 550; and STOR, APPE and RNTO onto an existing name also need
 * `delete` ({@linkcode refuseOverwrite}, 553), so one sender cannot replace
 * another's file.
 * @module
 */
import {
  allo,
  cwd,
  dele,
  mdtmCmd,
  mfmt,
  mkd,
  pwd,
  refuseOverwrite,
  rest,
  rmd,
  rnfr,
  rnto,
  size,
} from "./files.ts";
import { hash, HASH_FEAT, optsHash } from "./hash.ts";
import { list, mlsd, mlst, nlst, optsMlst, stat } from "./listings.ts";
import { feat, help, mode, opts, pass, quit, rein, stru, type, user } from "./login.ts";
import { auth, ccc, pbsz, prot } from "../ftp/security.ts";
import type { CommandSpec, Session } from "./session.ts";
import { site } from "./site.ts";
import { abor, retr, store } from "./transfers.ts";
import { MLST_FACTS } from "../fs/listing.ts";

type Add = (names: string | string[], spec: Omit<CommandSpec, "name">) => void;

/** OPTS: HASH (hash.ts) and MLST (listings.ts) here, the rest in login.ts. */
function optsCommand(s: Session, arg: string) {
  const a = arg.trim();
  const space = a.indexOf(" ");
  const name = (space === -1 ? a : a.slice(0, space)).toUpperCase();
  const value = space === -1 ? "" : a.slice(space + 1);
  if (name === "HASH") return optsHash(s, value);
  if (name === "MLST") return optsMlst(s, value);
  return opts(s, arg);
}

/** STOR or APPE, after the drop-box rule ({@linkcode refuseOverwrite}) allowed it. */
async function storeChecked(s: Session, arg: string, how: "stor" | "appe") {
  if (await refuseOverwrite(s, arg)) return;
  return store(s, arg, how);
}

/** RNTO, after the drop-box rule allowed it: a rename must not replace a file either. */
async function rntoChecked(s: Session, arg: string) {
  if (s.renameFrom !== null && await refuseOverwrite(s, arg)) {
    s.renameFrom = null;
    return;
  }
  return rnto(s, arg);
}

/** Login, session and information commands. */
function sessionCommands(add: Add): void {
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
  add("OPTS", {
    ...open,
    arg: "required",
    help: "OPTS UTF8 ON | OPTS MLST facts | OPTS HASH [algorithm]",
    handler: optsCommand,
  });
  add("AUTH", {
    ...open,
    arg: "required",
    help: "AUTH TLS: encrypt the control connection (SSL is an alias)",
    feat: "AUTH TLS",
    tls: true,
    handler: (s, a) => {
      s.pendingUser = null; // a login in progress starts again under TLS
      return auth(s, a);
    },
  });
  add("PBSZ", {
    ...auth_,
    arg: "required",
    help: "PBSZ 0",
    feat: "PBSZ",
    tls: true,
    handler: pbsz,
  });
  add("PROT", {
    ...auth_,
    arg: "required",
    help: "PROT P | C: encrypted or clear data connections",
    feat: "PROT",
    tls: true,
    handler: prot,
  });
  add("CCC", {
    ...auth_,
    arg: "none",
    help: "refused: the control connection stays encrypted",
    handler: ccc,
  });
  add("SITE", {
    ...auth_,
    arg: "required",
    help: "SITE CHMOD mode path | SITE HELP",
    handler: site,
  });
  add(["ACCT", "SMNT"], {
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
}

/** Directory, file and representation commands. */
function fileCommands(add: Add): void {
  const auth_ = { login: true };
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
  add("RNTO", { ...auth_, arg: "required", perm: "rename", help: "RNTO to", handler: rntoChecked });
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
  add("MFMT", {
    ...auth_,
    arg: "required",
    perm: "write",
    help: "MFMT YYYYMMDDHHMMSS[.sss] path: set the modification time (UTC)",
    feat: "MFMT",
    handler: mfmt,
  });
  add("HASH", {
    ...auth_,
    arg: "required",
    perm: "read",
    help: "HASH file: the file's hash (OPTS HASH selects the algorithm)",
    feat: HASH_FEAT,
    handler: hash,
  });
  add("TYPE", { ...auth_, arg: "required", help: "TYPE A | I", handler: type });
  add("MODE", { ...auth_, arg: "required", help: "MODE S", handler: mode });
  add("STRU", { ...auth_, arg: "required", help: "STRU F", handler: stru });
  add("ALLO", { ...auth_, arg: "optional", help: "ALLO is not needed", handler: allo });
}

/** Data-connection, transfer and listing commands. */
function transferCommands(add: Add): void {
  const auth_ = { login: true };
  add("REST", {
    ...auth_,
    arg: "required",
    help: "REST offset",
    feat: "REST STREAM",
    handler: rest,
  });
  add("PASV", {
    ...auth_,
    arg: "none",
    help: "passive mode (IPv4)",
    feat: "PASV",
    handler: (s) => s.data.pasv(),
  });
  add("EPSV", {
    ...auth_,
    arg: "optional",
    help: "extended passive mode",
    feat: "EPSV",
    handler: (s, a) => s.data.epsv(a),
  });
  add("PORT", {
    ...auth_,
    arg: "required",
    help: "PORT h1,h2,h3,h4,p1,p2",
    handler: (s, a) => s.data.port("PORT", a),
  });
  add("EPRT", {
    ...auth_,
    arg: "required",
    help: "EPRT |af|addr|port|",
    feat: "EPRT",
    handler: (s, a) => s.data.port("EPRT", a),
  });
  listingCommands(add);
}

/** Listing commands (kept in the table's order, between the data and transfer commands). */
function listingCommands(add: Add): void {
  const auth_ = { login: true };
  add("LIST", { ...auth_, arg: "optional", perm: "read", help: "LIST [path]", handler: list });
  add("NLST", { ...auth_, arg: "optional", perm: "read", help: "NLST [path]", handler: nlst });
  add("MLSD", {
    ...auth_,
    arg: "optional",
    perm: "read",
    help: "MLSD [dir]",
    feat: `MLST ${MLST_FACTS.map((f) => f + "*;").join("")}`,
    handler: mlsd,
  });
  add("MLST", { ...auth_, arg: "optional", perm: "read", help: "MLST [path]", handler: mlst });
}

/** File transfer commands and ABOR. */
function fileTransferCommands(add: Add): void {
  const auth_ = { login: true };
  add("RETR", { ...auth_, arg: "required", perm: "read", help: "RETR file", handler: retr });
  add("STOR", {
    ...auth_,
    arg: "required",
    perm: "write",
    help: "STOR file",
    handler: (s, a) => storeChecked(s, a, "stor"),
  });
  add("APPE", {
    ...auth_,
    arg: "required",
    perm: "write",
    help: "APPE file",
    handler: (s, a) => storeChecked(s, a, "appe"),
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
}

/** Builds the command table. */
export function buildCommandTable(): ReadonlyMap<string, CommandSpec> {
  const specs: CommandSpec[] = [];
  const add: Add = (names, spec) => {
    for (const name of Array.isArray(names) ? names : [names]) specs.push({ name, ...spec });
  };
  sessionCommands(add);
  fileCommands(add);
  transferCommands(add);
  fileTransferCommands(add);
  return new Map(specs.map((s) => [s.name, s]));
}
