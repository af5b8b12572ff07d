/**
 * serve's listings: LIST, NLST and MLSD over a data connection, MLST and
 * STAT over the control connection.
 * @module
 */
import { writeAll } from "../ftp/connection.ts";
import { DataError } from "../ftp/transfer_io.ts";
import {
  formatFacts,
  formatListLine,
  type ListEntry,
  MLST_FACTS,
  parseListArgs,
  permFacts,
  readEntries,
} from "../fs/listing.ts";
import type { Session } from "./session.ts";
import { startTransfer } from "./transfers.ts";

const encoder = new TextEncoder();

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

export async function stat(s: Session, arg: string) {
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
  const vpath = s.path(path);
  const real = await s.home.resolve(vpath, { mustExist: true });
  const info = Deno.statSync(real);
  const now = new Date();
  const entries = info.isDirectory
    ? await readEntries(real)
    : [{ name: vpath.split("/").pop() || "/", info }];
  const lines = entries.map((e) => " " + formatListLine(e, { now }));
  return s.reply(info.isDirectory ? 212 : 213, [`Status of ${vpath}:`, ...lines, "End of status"]);
}

async function listTarget(s: Session, arg: string) {
  const { path } = parseListArgs(arg);
  const vpath = s.path(path);
  const real = await s.home.resolve(vpath, { mustExist: true });
  const info = Deno.statSync(real);
  return { vpath, real, info };
}

async function sendText(s: Session, verb: string, what: string, text: string) {
  const bytes = encoder.encode(text);
  await startTransfer(s, {
    verb,
    what,
    direction: "out",
    size: bytes.length,
    opening: "Here comes the directory listing",
    body: async (conn, progress) => {
      try {
        await writeAll(conn, bytes);
      } catch (e) {
        throw new DataError(426, `Connection closed; transfer aborted (${(e as Error).message})`);
      }
      progress.bytes = bytes.length;
    },
  });
}

export async function list(s: Session, arg: string) {
  const { vpath, real, info } = await listTarget(s, arg);
  const now = new Date();
  const entries: ListEntry[] = info.isDirectory
    ? await readEntries(real)
    : [{ name: vpath.split("/").pop()!, info }];
  let text = "";
  for (const e of entries) text += formatListLine(e, { now }) + "\r\n";
  await sendText(s, "LIST", vpath, text);
}

export async function nlst(s: Session, arg: string) {
  const { vpath, real, info } = await listTarget(s, arg);
  const names = info.isDirectory
    ? (await readEntries(real)).map((e) => e.name)
    : [parseListArgs(arg).path];
  await sendText(s, "NLST", vpath, names.map((n) => n + "\r\n").join(""));
}

/** The facts each session picked with OPTS MLST; a session not in it gets them all. */
const chosenFacts = new WeakMap<Session, ReadonlySet<string>>();

/** OPTS MLST facts: keeps the known facts named (case-insensitive) and lists them. */
export function optsMlst(s: Session, value: string) {
  const known: readonly string[] = MLST_FACTS;
  const wanted = known.filter((f) => value.split(";").some((w) => w.trim().toLowerCase() === f));
  chosenFacts.set(s, new Set(wanted));
  s.mlstFacts = new Set(wanted);
  return s.reply(200, `MLST OPTS ${wanted.map((f) => f + ";").join("")}`);
}

function factsFor(s: Session, entry: ListEntry, kind?: "cdir" | "pdir"): string {
  const line = formatFacts(entry, {
    type: kind,
    perm: permFacts(entry.info.isDirectory, perms(s)),
    unix: true,
  });
  const chosen = chosenFacts.get(s);
  if (!chosen || chosen.size === MLST_FACTS.length) return line;
  const space = line.indexOf(" ");
  const facts = line.slice(0, space).split(";").filter((f) =>
    f && chosen.has(f.split("=")[0].toLowerCase())
  );
  return facts.map((f) => f + ";").join("") + line.slice(space);
}

export async function mlsd(s: Session, arg: string) {
  const { vpath, real, info } = await listTarget(s, arg);
  if (!info.isDirectory) return s.reply(501, "MLSD needs a directory");
  let text = factsFor(s, { name: ".", info }, "cdir") + "\r\n";
  for (const e of await readEntries(real)) text += factsFor(s, e) + "\r\n";
  await sendText(s, "MLSD", vpath, text);
}

export async function mlst(s: Session, arg: string) {
  const vpath = s.path(arg);
  const real = await s.home.resolve(vpath, { mustExist: true });
  const info = Deno.statSync(real);
  const line = factsFor(s, { name: vpath, info });
  return s.reply(250, [`Listing ${vpath}`, " " + line, "End"]);
}
