/**
 * Directory listings: reading entries and formatting LIST (`ls -l`), MLSD and
 * MLST (RFC 3659) lines. Formatting is pure; callers add CRLF.
 *
 * @module
 */

/** One directory entry with the file information of what it names. */
export interface ListEntry {
  /** The entry's name (or, for MLST, the path the client asked about). */
  name: string;
  /** Information about the entry; symlinks are already followed by {@link readEntries}. */
  info: Deno.FileInfo;
}

/** How many entries {@link readEntries} reads before letting other sessions run. */
const YIELD_EVERY = 512;

/**
 * Whether a name can be sent on the control/data connection. CR and LF would
 * split a listing line, NUL is never valid; such names are also unreachable
 * through resolveVirtual, so hiding them loses nothing.
 */
function isSendableName(name: string): boolean {
  return !/[\0\r\n]/.test(name);
}

/**
 * Reads a real directory. Symlinks are followed (the entry shows the
 * target's type and size) and dangling ones are skipped, as are entries whose
 * stat fails and names containing NUL, CR or LF. Sorted by name in code-unit
 * order, which is stable and independent of locale.
 */
export async function readEntries(realDir: string): Promise<ListEntry[]> {
  // Synchronous metadata calls: the kernel answers them from its caches,
  // faster than a thread-pool hop each. A huge directory yields to other
  // sessions every YIELD_EVERY entries.
  const names: string[] = [];
  for (const entry of Deno.readDirSync(realDir)) {
    if (isSendableName(entry.name)) names.push(entry.name);
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const base = realDir.endsWith("/") ? realDir : realDir + "/";
  const result: ListEntry[] = [];
  for (let i = 0; i < names.length; i++) {
    if (i > 0 && i % YIELD_EVERY === 0) await new Promise((r) => setTimeout(r, 0));
    try {
      result.push({ name: names[i], info: Deno.statSync(base + names[i]) });
    } catch {
      // Vanished or unreadable meanwhile (or a dangling symlink): left out.
    }
  }
  return result;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Six months as `ls` counts them: half a Gregorian year, in milliseconds. */
const SIX_MONTHS_MS = 15_778_476_000;

/** How far in the future a time may be and still show as "HH:MM". */
const FUTURE_SLACK_MS = 3_600_000;

/** Pads a number with zeros to `width` digits. */
function pad(n: number, width = 2): string {
  return String(n).padStart(width, "0");
}

/** The `ls -l` type character of an entry. */
function typeChar(info: Deno.FileInfo): string {
  if (info.isDirectory) return "d";
  if (info.isSymlink) return "l";
  if (info.isFile) return "-";
  if (info.isCharDevice) return "c";
  if (info.isBlockDevice) return "b";
  if (info.isFifo) return "p";
  if (info.isSocket) return "s";
  return "-";
}

/** The ten-character `ls -l` mode string, e.g. `drwxr-xr-x`. */
function modeString(info: Deno.FileInfo): string {
  // Platforms without a mode (Windows) get conventional defaults.
  const mode = info.mode ?? (info.isDirectory ? 0o755 : 0o644);
  const rwx = (bits: number, special: boolean, letter: string): string =>
    (bits & 4 ? "r" : "-") + (bits & 2 ? "w" : "-") +
    (special ? (bits & 1 ? letter : letter.toUpperCase()) : bits & 1 ? "x" : "-");
  return typeChar(info) +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, "s") +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, "s") +
    rwx(mode & 7, (mode & 0o1000) !== 0, "t");
}

/** The `ls -l` date column: "Mmm dd HH:MM" if recent, else "Mmm dd  yyyy" (UTC). */
function lsDate(mtime: Date, now: Date): string {
  const t = mtime.getTime();
  const head = `${MONTHS[mtime.getUTCMonth()]} ${String(mtime.getUTCDate()).padStart(2, " ")}`;
  const recent = t > now.getTime() - SIX_MONTHS_MS && t <= now.getTime() + FUTURE_SLACK_MS;
  if (recent) return `${head} ${pad(mtime.getUTCHours())}:${pad(mtime.getUTCMinutes())}`;
  return `${head}  ${mtime.getUTCFullYear()}`;
}

/** A valid date for an entry: its mtime, or the epoch when unknown. */
function mtimeOf(info: Deno.FileInfo): Date {
  const m = info.mtime;
  return m && !Number.isNaN(m.getTime()) ? m : new Date(0);
}

/**
 * One LIST line in the `ls -l` form that FileZilla, lftp, curl and browsers
 * parse: `drwxr-xr-x 1 ftp ftp         4096 Nov 26 09:59 name`. Owner and
 * group are always "ftp" and the link count 1, so local account names and
 * ids never leak. Times are UTC. No CRLF.
 */
export function formatListLine(entry: ListEntry, options: { now: Date }): string {
  const { info } = entry;
  const size = String(info.size).padStart(12, " ");
  return `${modeString(info)} 1 ftp ftp ${size} ${
    lsDate(mtimeOf(info), options.now)
  } ${entry.name}`;
}

/** RFC 3659 time-val: YYYYMMDDHHMMSS in UTC. */
function factTime(d: Date): string {
  return `${pad(d.getUTCFullYear(), 4)}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}` +
    `${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`;
}

/** The RFC 3659 type fact value for an entry. */
function factType(info: Deno.FileInfo, given?: "cdir" | "pdir"): string {
  if (info.isDirectory) return given ?? "dir";
  if (info.isFile) return "file";
  if (info.isSymlink) return "OS.unix=slink";
  if (info.isCharDevice) return "OS.unix=chr";
  if (info.isBlockDevice) return "OS.unix=blk";
  if (info.isFifo) return "OS.unix=fifo";
  if (info.isSocket) return "OS.unix=socket";
  return "file";
}

/** Every MLST fact serve knows, in FEAT's order; all are on until OPTS MLST picks some. */
export const MLST_FACTS = [
  "type",
  "size",
  "modify",
  "perm",
  "unique",
  "unix.mode",
  "unix.owner",
  "unix.group",
] as const;

/**
 * The `unix.mode` (four octal digits, permission and setuid/setgid/sticky
 * bits), `unix.owner` and `unix.group` (numeric uid and gid) facts, each
 * left out where the platform does not give it (Windows).
 */
function unixFacts(info: Deno.FileInfo): string[] {
  const facts: string[] = [];
  if (info.mode !== null) {
    facts.push(`unix.mode=${(info.mode & 0o7777).toString(8).padStart(4, "0")}`);
  }
  if (info.uid !== null) facts.push(`unix.owner=${info.uid}`);
  if (info.gid !== null) facts.push(`unix.group=${info.gid}`);
  return facts;
}

/**
 * One MLSD/MLST line (RFC 3659): facts, one space, name. Example:
 * `type=file;size=123;modify=20261126095900;perm=rl;unique=803U1a2b; name`.
 * `size` is given for non-directories only; `unique` is device and inode in
 * hex and omitted where the platform has no inode. With `unix`, the
 * `unix.mode`, `unix.owner` and `unix.group` facts follow where known. No
 * CRLF, no leading space (MLST's reply line wants one; the caller adds it).
 */
export function formatFacts(
  entry: ListEntry,
  options: { type?: "cdir" | "pdir"; perm: string; unix?: boolean },
): string {
  const { info } = entry;
  const facts = [`type=${factType(info, options.type)}`];
  if (!info.isDirectory) facts.push(`size=${info.size}`);
  if (info.mtime && !Number.isNaN(info.mtime.getTime())) {
    facts.push(`modify=${factTime(info.mtime)}`);
  }
  facts.push(`perm=${options.perm.replace(/[^a-z]/g, "")}`);
  if (info.ino !== null) facts.push(`unique=${info.dev.toString(16)}U${info.ino.toString(16)}`);
  if (options.unix) facts.push(...unixFacts(info));
  return `${facts.join(";")}; ${entry.name}`;
}

/** What the logged-in user may do, as seen by {@link permFacts}. */
export interface Permissions {
  /** May download files and list directories. */
  read: boolean;
  /** May upload: create, overwrite and append to files. */
  write: boolean;
  /** May delete files and remove directories. */
  delete: boolean;
  /** May create directories. */
  mkdir: boolean;
  /** May rename files and directories. */
  rename: boolean;
}

/**
 * RFC 3659 `perm` fact letters for an entry. Files: r (read), a w (write),
 * d (delete), f (rename). Directories: e l (read), c (write: create files),
 * m (mkdir), d p (delete), f (rename). Letters come in alphabetical order.
 */
export function permFacts(isDir: boolean, perms: Permissions): string {
  const letters: string[] = [];
  if (isDir) {
    if (perms.write) letters.push("c");
    if (perms.delete) letters.push("d");
    if (perms.read) letters.push("e");
    if (perms.rename) letters.push("f");
    if (perms.read) letters.push("l");
    if (perms.mkdir) letters.push("m");
    if (perms.delete) letters.push("p");
  } else {
    if (perms.write) letters.push("a");
    if (perms.delete) letters.push("d");
    if (perms.rename) letters.push("f");
    if (perms.read) letters.push("r");
    if (perms.write) letters.push("w");
  }
  return letters.join("");
}

/** A word that looks like `ls` options: "-" and letters only (-a, -la, -R). */
const OPTION_WORD = /^-[A-Za-z]+$/;

/**
 * Splits a LIST/NLST argument into `ls` options and a path. Clients send
 * `LIST -la`, `LIST -a /dir`, `LIST -l`: leading space-separated words of
 * "-" plus letters are options; the rest, spaces included, is the path. A
 * lone "-" or "--" is a path. `options` holds the option letters without
 * dashes, in order ("-la -R" gives "laR"); callers mostly check for "a".
 * A file whose name looks like an option cannot be listed this way, as in
 * vsftpd; clients can list its directory instead.
 */
export function parseListArgs(arg: string): { options: string; path: string } {
  let options = "";
  let rest = arg;
  while (rest.startsWith("-")) {
    const space = rest.indexOf(" ");
    const word = space === -1 ? rest : rest.slice(0, space);
    if (!OPTION_WORD.test(word)) break;
    options += word.slice(1);
    rest = space === -1 ? "" : rest.slice(space + 1).replace(/^ +/, "");
  }
  return { options, path: rest };
}
