/**
 * `pitifulnat user add|passwd|del|list`: manage the users in the config
 * file without editing YAML by hand. The edit is made with the `yaml`
 * package's Document API and spliced into the original text, so only the
 * user's own lines change and every comment stays; the result is validated
 * as the server would, then written atomically with the file's mode, owner
 * and group.
 * @module
 */
import { exists } from "../fs/access.ts";
import { basename, dirname, join, resolve } from "node:path";
import { Document, isMap, isScalar, isSeq, parseDocument, Scalar, YAMLSeq } from "yaml";
import type { Node as YamlNode } from "yaml";
import { hashPassword } from "../auth/password.ts";
import { type Config, ConfigError, parseConfig } from "../config/load.ts";
import { CONFIG_ENV, DEFAULT_CONFIG_PATH, locateConfig, missingMessage } from "../config/locate.ts";
import { readNewPassword } from "./hash_password.ts";

/** What `pitifulnat user` was asked to do, from the command line. */
export interface UserOptions {
  subcommand?: string;
  name?: string;
  config?: string;
  home?: string;
  permissions?: string;
  reload?: string;
}

/** A user as `user add` writes it. */
export interface NewUser {
  name: string;
  password: string;
  home: string;
  permissions: string[];
}

/** A failure of the command, said in one line after `pitifulnat user SUB: `. */
export class UserError extends Error {}

/** The printed hint when no --reload was given. */
const RELOAD_HINT =
  "reload a running server: systemctl reload pitifulnat, or kill -HUP <pid> (or pass --reload PID)";

/** A well-formed hash no password matches, standing in while the rest of an edit is checked. */
const PLACEHOLDER_HASH = `scrypt$4096$8$1$${"A".repeat(22)}$${"A".repeat(43)}`;

/** Options for rendering new YAML: no folding of long lines, `[read, write]` without padding. */
const RENDER = { lineWidth: 0, flowCollectionPadding: false } as const;

/** Runs the command; returns the exit code (1 for any failure). */
export async function runUser(options: UserOptions): Promise<number> {
  const where = `pitifulnat user ${options.subcommand ?? ""}`.trimEnd();
  try {
    return await runSubcommand(options);
  } catch (e) {
    if (e instanceof ConfigError) console.error(e.message);
    else if (e instanceof UserError) console.error(`${where}: ${e.message}`);
    else throw e;
    return 1;
  }
}

/** Finds the config and runs the subcommand on it. */
async function runSubcommand(options: UserOptions): Promise<number> {
  const located = locateConfig(options.config);
  if (!located.path) throw new ConfigError([missingMessage(located)]);
  const file = located.path;
  const text = await readConfigText(file);
  const name = options.name ?? "";
  switch (options.subcommand) {
    case "list":
      printUsers(parseConfig(text, parseOptions(file)), file);
      return 0;
    case "add":
      return await add(file, text, name, options);
    case "passwd":
      return await passwd(file, text, name, options.reload);
    case "del":
      return await del(file, text, name, options.reload);
    default:
      throw new UserError(`unknown subcommand ${options.subcommand}`);
  }
}

/** `user add`: checks the new entry, asks for the password, adds the entry, writes, reloads. */
async function add(file: string, text: string, name: string, options: UserOptions) {
  checkSyntax(text, file);
  const home = resolve(options.home ?? "");
  const permissions = (options.permissions ?? "read").split(",").map((p) => p.trim());
  // All but the password is checked before asking for it.
  validate(file, addUser(text, { name, password: PLACEHOLDER_HASH, home, permissions }));
  const password = await hashPassword(await promptPassword(`Password for ${name}: `));
  // Read again: the file may have changed while the prompt waited.
  await commit(file, addUser(await readConfigText(file), { name, password, home, permissions }));
  console.log(`added user ${name} (home ${home}, permissions ${permissions.join(",")}) to ${file}`);
  if (!exists(home)) {
    console.error(`note: ${home} does not exist yet: create it, usable by the server's user`);
  }
  return await reloadOrHint(file, options.reload);
}

/** `user passwd`: asks for the new password, replaces the old hash, writes, reloads. */
async function passwd(file: string, text: string, name: string, reload: string | undefined) {
  checkSyntax(text, file);
  validate(file, setPassword(text, name, PLACEHOLDER_HASH));
  const password = await hashPassword(await promptPassword(`New password for ${name}: `));
  await commit(file, setPassword(await readConfigText(file), name, password));
  console.log(`changed the password of ${name} in ${file}`);
  return await reloadOrHint(file, reload);
}

/** `user del`: removes the entry, writes, reloads. */
async function del(file: string, text: string, name: string, reload: string | undefined) {
  checkSyntax(text, file);
  await commit(file, deleteUser(text, name));
  console.log(`removed user ${name} from ${file}`);
  return await reloadOrHint(file, reload);
}

/** Reads a password (see {@linkcode readNewPassword}); input problems are a {@linkcode UserError}. */
async function promptPassword(prompt: string): Promise<string> {
  try {
    return await readNewPassword(prompt);
  } catch (e) {
    throw new UserError(e instanceof Error ? e.message : String(e));
  }
}

/** The options parseConfig is given, as loadConfig gives them, so messages look the same. */
function parseOptions(file: string) {
  return { file, baseDir: resolve(dirname(file)) };
}

/** Reads the config text. */
async function readConfigText(file: string): Promise<string> {
  try {
    return await Deno.readTextFile(file);
  } catch (e) {
    throw new ConfigError([`${file}: cannot read config file: ${errorText(e)}`]);
  }
}

/** A YAML syntax error in the original is reported as the server reports it. */
function checkSyntax(text: string, file: string): void {
  if (parseDocument(text).errors.length > 0) parseConfig(text, parseOptions(file));
}

/**
 * Checks the edited text as the server would check the file.
 *
 * @throws {ConfigError} its problems, and that the file was not changed.
 */
function validate(file: string, text: string): void {
  try {
    parseConfig(text, parseOptions(file));
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const note = `${file}: not changed (the lines above are of the file as it would have become)`;
    throw new ConfigError([...e.problems, note]);
  }
}

/** Validates the edited text, then writes it in place of `file`. */
async function commit(file: string, text: string): Promise<void> {
  validate(file, text);
  await writeAtomically(file, text);
}

/** Prints each user's name, home and permissions, aligned; never a hash. */
function printUsers(config: Config, file: string): void {
  if (config.users.length === 0) {
    console.log(`no users in ${file}`);
  } else {
    const rows = [["NAME", "HOME", "PERMISSIONS"]].concat(
      config.users.map((u) => [u.name, u.home, u.permissions.join(",")]),
    );
    const widths = [0, 1].map((c) => Math.max(...rows.map((r) => r[c].length)));
    for (const r of rows) {
      console.log(`${r[0].padEnd(widths[0])}  ${r[1].padEnd(widths[1])}  ${r[2]}`);
    }
  }
  const anon = config.anonymous;
  if (anon.enabled) console.log(`(anonymous: home ${anon.home}, ${anon.permissions.join(",")})`);
}

/** Sends SIGHUP to `pid` when given and it is the server reading `file`; else prints the hint. */
async function reloadOrHint(file: string, pid: string | undefined): Promise<number> {
  if (pid === undefined) {
    console.log(RELOAD_HINT);
    return 0;
  }
  try {
    const what = await identifyServer(Number(pid), file);
    signal(Number(pid));
    console.log(`sent SIGHUP to ${pid} (${what}): it reloads the config now`);
    return 0;
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    console.error(`pitifulnat user: ${file} was changed, but no signal was sent: ${e.message}`);
    return 1;
  }
}

/** Sends SIGHUP; a missing permission to signal is a {@linkcode UserError}. */
function signal(pid: number): void {
  try {
    Deno.kill(pid, "SIGHUP");
  } catch (e) {
    const why = e instanceof Deno.errors.NotCapable ? notCapable("sending signals") : errorText(e);
    throw new UserError(`${why}; run: kill -HUP ${pid}`);
  }
}

// ---------------------------------------------------------------------------
// Identifying the running server

/**
 * Checks in /proc that `pid` runs `pitifulnat serve` or `proxy` (see
 * {@linkcode isProgram}) and reads the same config file
 * (its --config, else its $PITIFULNAT_CONFIG, else the default path, taken
 * from its working directory). Returns a description of it.
 *
 * @throws {UserError} saying why the process is not positively that server.
 */
export async function identifyServer(pid: number, file: string): Promise<string> {
  const args = await procArgs(pid);
  const at = args.findIndex((a, i) => i > 0 && (a === "serve" || a === "proxy"));
  if (at < 0 || !isProgram(args.slice(0, at))) {
    throw new UserError(`process ${pid} is not pitifulnat serve or proxy (${args.join(" ")})`);
  }
  const named = configArgument(args.slice(at + 1)) ?? (await procEnv(pid, CONFIG_ENV)) ??
    DEFAULT_CONFIG_PATH;
  const theirs = await realPathOrNull(resolve(await procCwd(pid), named));
  if (theirs === null || theirs !== await realPathOrNull(file)) {
    throw new UserError(`process ${pid} (pitifulnat ${args[at]}) reads ${named}, not ${file}`);
  }
  return `pitifulnat ${args[at]} reading ${named}`;
}

/**
 * Whether the words before the command are pitifulnat: the compiled program
 * (`pitifulnat serve`), or deno running a script (`deno run -A main.ts serve`).
 */
function isProgram(words: string[]): boolean {
  const program = basename(words[0] ?? "");
  if (words.length === 1) return program.includes("pitifulnat");
  return program.startsWith("deno") && /\.(ts|js)$/.test(words.at(-1) ?? "");
}

/** The command line of `pid`, from /proc. */
async function procArgs(pid: number): Promise<string[]> {
  const raw = await procRead(pid, "cmdline");
  const args = raw.split("\0");
  if (args.at(-1) === "") args.pop();
  return args;
}

/** One variable of `pid`'s environment ("" counts as unset, as for the server), from /proc. */
async function procEnv(pid: number, name: string): Promise<string | undefined> {
  const entry = (await procRead(pid, "environ")).split("\0").find((e) => e.startsWith(`${name}=`));
  return entry?.slice(name.length + 1) || undefined;
}

/** The working directory of `pid`, from /proc. */
async function procCwd(pid: number): Promise<string> {
  try {
    return await Deno.readLink(`/proc/${pid}/cwd`);
  } catch (e) {
    const why = e instanceof Deno.errors.NotCapable ? notCapable("reading /proc") : errorText(e);
    throw new UserError(`cannot read the working directory of process ${pid}: ${why}`);
  }
}

/** The text of /proc/PID/WHAT. */
async function procRead(pid: number, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(`/proc/${pid}/${what}`);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such process"
      : e instanceof Deno.errors.NotCapable
      ? `${notCapable("reading /proc")}; check it yourself and run: kill -HUP ${pid}`
      : errorText(e);
    throw new UserError(`cannot read /proc/${pid}/${what}: ${why}`);
  }
}

/** Why Deno refused `what`: the program runs without all permissions (a compiled build). */
function notCapable(what: string): string {
  return `${what} needs the permissions of deno run -A, which this program runs without`;
}

/** The value of the last --config/-c in `args` (parseArgs keeps the last), if any. */
function configArgument(args: string[]): string | undefined {
  let value: string | undefined;
  args.forEach((arg, i) => {
    if (arg === "--config" || arg === "-c") value = args[i + 1];
    else if (arg.startsWith("--config=")) value = arg.slice("--config=".length);
    else if (/^-c./.test(arg)) value = arg.slice(2);
  });
  return value;
}

/** The real path of `path`, or null when it cannot be resolved. */
async function realPathOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.realPath(path);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Writing

/**
 * Replaces the file (the target, when `file` is a symlink) with `text`: a
 * temporary file in the same folder (mode 600 while written), synced, given
 * the original's mode, owner and group, then renamed over it.
 *
 * @throws {UserError} when any step fails; the original is then untouched.
 */
export async function writeAtomically(file: string, text: string): Promise<void> {
  let target: string;
  let info: Deno.FileInfo;
  try {
    target = await Deno.realPath(file);
    info = await Deno.stat(target);
  } catch (e) {
    throw new UserError(`cannot write ${file}: ${errorText(e)}`);
  }
  const random = crypto.randomUUID().slice(0, 8);
  const temp = join(dirname(target), `.${basename(target)}.pn-${random}`);
  try {
    const handle = await Deno.open(temp, { write: true, createNew: true, mode: 0o600 });
    try {
      await writeAll(handle, new TextEncoder().encode(text));
      await handle.sync();
    } finally {
      handle.close();
    }
    await keepOwner(temp, info);
    await Deno.chmod(temp, (info.mode ?? 0o600) & 0o7777);
    await Deno.rename(temp, target);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    if (e instanceof UserError) throw e;
    throw new UserError(`cannot write ${target}: ${errorText(e)}; it was not changed`);
  }
}

/** Gives `temp` the owner and group in `info` when they differ from its own. */
async function keepOwner(temp: string, info: Deno.FileInfo): Promise<void> {
  const mine = await Deno.stat(temp);
  if (info.uid === null || (mine.uid === info.uid && mine.gid === info.gid)) return;
  try {
    await Deno.chown(temp, info.uid, info.gid);
  } catch (e) {
    throw new UserError(
      `cannot give the new file the owner ${info.uid} and group ${info.gid} of the old one ` +
        `(${errorText(e)}); it was not changed: run this as its owner or as root`,
    );
  }
}

/** Writes every byte of `bytes`. */
async function writeAll(handle: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await handle.write(bytes.subarray(done));
}

// ---------------------------------------------------------------------------
// Editing the text

/**
 * `text` with `user` appended to `users` (created when absent), all else
 * byte for byte as it was.
 *
 * @throws {UserError} when the name exists or the file cannot be edited in place.
 */
export function addUser(text: string, user: NewUser): string {
  const doc = parseEdit(text);
  if (findUser(doc, user.name) >= 0) {
    throw new UserError(
      `user ${user.name} already exists; to change the password: pitifulnat user passwd ${user.name}`,
    );
  }
  const entry = doc.createNode(user);
  const permissions = entry.get("permissions", true);
  if (isSeq(permissions)) permissions.flow = true;
  const users = doc.get("users", true);
  if (isSeq(users) && !users.flow && users.items.length > 0) {
    // A block list: the new item goes on the lines after the last one, indented alike.
    const at = lineAfter(text, rangeOf(users.items[users.items.length - 1])[1]);
    doc.addIn(["users"], entry);
    const lines = indent(render(seqOf([entry])), columnOf(text, rangeOf(users)[0]));
    return checked(splice(text, at, at, lines), doc);
  }
  const span = usersSpan(text, doc);
  if (isSeq(users)) doc.addIn(["users"], entry);
  else doc.setIn(["users"], seqOf([entry]));
  return checked(replaceSpan(text, span, doc), doc);
}

/**
 * `text` with the password of user `name` replaced by `hash` (quoted as the
 * old one was), all else byte for byte as it was.
 *
 * @throws {UserError} when there is no such user or no password to replace.
 */
export function setPassword(text: string, name: string, hash: string): string {
  const doc = parseEdit(text);
  const index = existingUser(doc, name);
  const old = doc.getIn(["users", index, "password"], true);
  if (!isScalar(old) || !old.range) {
    throw new UserError(`user ${name} has no password line to replace; edit it by hand`);
  }
  const scalar = new Scalar(hash);
  scalar.type = old.type === "QUOTE_DOUBLE" || old.type === "QUOTE_SINGLE" ? old.type : "PLAIN";
  const [start, end] = old.range;
  doc.setIn(["users", index, "password"], hash);
  return checked(splice(text, start, end, render(scalar).trimEnd()), doc);
}

/**
 * `text` without user `name`'s entry (and the comment lines between it and
 * the entry before), all else byte for byte as it was.
 *
 * @throws {UserError} when there is no such user.
 */
export function deleteUser(text: string, name: string): string {
  const doc = parseEdit(text);
  const index = existingUser(doc, name);
  const users = doc.get("users", true) as YAMLSeq;
  const start = index === 0
    ? lineStart(text, rangeOf(users)[0])
    : lineAfter(text, rangeOf(users.items[index - 1])[1]);
  const end = lineAfter(text, rangeOf(users.items[index])[1]);
  const span = users.flow ? usersSpan(text, doc) : undefined;
  doc.deleteIn(["users", index]);
  if (span) return checked(replaceSpan(text, span, doc), doc);
  return checked(splice(text, start, end, ""), doc);
}

/** The parsed document of `text`, for an edit. */
function parseEdit(text: string): Document.Parsed {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new UserError(`not valid YAML: ${doc.errors[0].message}`);
  return doc;
}

/** The index in `users` of the entry named `name`, or -1. */
function findUser(doc: Document.Parsed, name: string): number {
  const users = doc.get("users", true);
  if (!isSeq(users)) return -1;
  return users.items.findIndex((item) => isMap(item) && item.get("name") === name);
}

/**
 * The index of the entry named `name`.
 *
 * @throws {UserError} when there is none.
 */
function existingUser(doc: Document.Parsed, name: string): number {
  const index = findUser(doc, name);
  if (index < 0) throw new UserError(`no user ${name} (pitifulnat user list shows the users)`);
  return index;
}

/** Where the `users:` pair is written in block form: the span it replaces, its column. */
interface Span {
  start: number;
  end: number;
  column: number;
  /** Put before the pair: the line break and blank line a pair at the end of the file needs. */
  prefix: string;
}

/**
 * The lines of the `users:` pair (with a flow list or an empty value) in
 * the unedited `doc`; at the end of the file when there is none.
 *
 * @throws {UserError} when the top level is not a block mapping.
 */
function usersSpan(text: string, doc: Document.Parsed): Span {
  const root = doc.contents;
  const pair = isMap(root)
    ? root.items.find((p) => isScalar(p.key) && p.key.value === "users")
    : undefined;
  if (pair === undefined) {
    if (root !== null && !(isMap(root) && !root.flow)) {
      throw new UserError("its top level is not a block mapping: edit it by hand");
    }
    const prefix = text === "" || text.endsWith("\n\n") ? "" : text.endsWith("\n") ? "\n" : "\n\n";
    return { start: text.length, end: text.length, column: 0, prefix };
  }
  const key = rangeOf(pair.key);
  const value = pair.value as YamlNode | null;
  const empty = !value?.range || (isScalar(value) && value.value === null);
  const end = lineAfter(text, empty ? key[1] : rangeOf(value)[1]);
  return { start: lineStart(text, key[0]), end, column: columnOf(text, key[0]), prefix: "" };
}

/** `text` with `span` replaced by the edited `users` of `doc`, in block form. */
function replaceSpan(text: string, span: Span, doc: Document.Parsed): string {
  const block = new Document({});
  block.set("users", seqOf((doc.get("users", true) as YAMLSeq).items as YamlNode[]));
  const lines = span.prefix + indent(render(block), span.column);
  return splice(text, span.start, span.end, lines);
}

/**
 * `edited`, after checking that it parses to what the Document API made of
 * the edit (an empty `users:` and `users: []` alike).
 *
 * @throws {UserError} when it does not: the file is then left alone.
 */
function checked(edited: string, doc: Document.Parsed): string {
  const normal = (value: unknown) => {
    const object = (value ?? {}) as Record<string, unknown>;
    return JSON.stringify({ ...object, users: object.users ?? [] });
  };
  const reparsed = parseDocument(edited);
  if (reparsed.errors.length > 0 || normal(reparsed.toJS()) !== normal(doc.toJS())) {
    throw new UserError("cannot make this change without rewriting other lines: edit it by hand");
  }
  return edited;
}

/** A block list of `items`. */
function seqOf(items: YamlNode[]): YAMLSeq {
  const seq = new YAMLSeq();
  seq.items = items;
  return seq;
}

/** YAML text of a node or document, as {@linkcode RENDER} says. */
function render(value: YamlNode | Document): string {
  return (value instanceof Document ? value : new Document(value)).toString(RENDER);
}

/** `lines` with each non-empty line indented by `column` spaces. */
function indent(lines: string, column: number): string {
  return lines.replace(/^(?=.)/gm, " ".repeat(column));
}

/** `text` with `start`..`end` replaced by `insert` (its line endings made the file's: CRLF or LF). */
function splice(text: string, start: number, end: number, insert: string): string {
  const lines = text.includes("\r\n") ? insert.replace(/\n/g, "\r\n") : insert;
  return text.slice(0, start) + lines + text.slice(end);
}

/** The source range of a parsed node. */
function rangeOf(node: unknown): [number, number, number] {
  const range = (node as { range?: [number, number, number] } | null)?.range;
  if (!range) throw new UserError("cannot find the users in the file: edit it by hand");
  return range;
}

/** The offset where the line holding `offset` starts. */
function lineStart(text: string, offset: number): number {
  return text.lastIndexOf("\n", offset - 1) + 1;
}

/** The offset of the line after the one holding `offset - 1` (`offset` when that is a line end). */
function lineAfter(text: string, offset: number): number {
  if (offset > 0 && text[offset - 1] === "\n") return offset;
  const newline = text.indexOf("\n", offset);
  return newline < 0 ? text.length : newline + 1;
}

/** The column (from 0) of `offset`. */
function columnOf(text: string, offset: number): number {
  return offset - lineStart(text, offset);
}

/** An error's message, in a few words for the common file-system errors. */
function errorText(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  return e instanceof Error ? e.message : String(e);
}
