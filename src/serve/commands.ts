/**
 * serve's command table: every FTP command declared once with its login
 * rule, argument rule, permission, HELP text, FEAT line and handler. The
 * session's gate (session.ts) applies the rules; the handlers live by
 * family in login.ts, files.ts, transfers.ts and listings.ts.
 * @module
 */
import { allo, cwd, dele, mdtmCmd, mkd, pwd, rest, rmd, rnfr, rnto, size } from "./files.ts";
import { list, mlsd, mlst, nlst, stat } from "./listings.ts";
import { feat, help, mode, opts, pass, quit, rein, stru, type, user } from "./login.ts";
import { auth, ccc, pbsz, prot } from "../ftp/security.ts";
import type { CommandSpec } from "./session.ts";
import { abor, retr, store } from "./transfers.ts";

type Add = (names: string | string[], spec: Omit<CommandSpec, "name">) => void;

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
  add("OPTS", { ...open, arg: "required", help: "OPTS UTF8 ON | OPTS MLST facts", handler: opts });
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
  add(["ACCT", "SMNT", "SITE"], {
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
    feat: "MLST type*;size*;modify*;perm*;unique*;",
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
