/**
 * Reads the YAML config and validates it against {@linkcode configSchema},
 * turning every problem into one line that names the file, line, column and
 * key path, and says what was expected and what was found.
 *
 * @module
 */

import { dirname, isAbsolute, join, resolve } from "node:path";
import * as z from "zod/mini";
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Document, Node as YamlNode, ParsedNode } from "yaml";
import { canAppend, canCreateIn, exists } from "../fs/access.ts";
import { loadTlsIdentity, TlsFileError } from "../ftp/tls.ts";
import { editDistance } from "../text/closest.ts";
import { type Config, configSchema } from "./schema.ts";

export type { Config } from "./schema.ts";

/** Largest config file we read; anything bigger is surely a mistake. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/** Longest string value quoted back in a message. */
const MAX_QUOTED_CHARS = 60;

/** Keys whose values must never be echoed into messages or logs. */
const SECRET_KEYS = new Set(["password"]);

/**
 * A config that cannot be used. `problems` holds one line per problem, each
 * starting with `file:line:col:`; the message is those lines joined.
 */
export class ConfigError extends Error {
  /** One human-readable line per problem, in file order. */
  readonly problems: string[];

  /** Builds the error from its problem lines. */
  constructor(problems: string[]) {
    super(problems.join("\n"));
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** Options for {@linkcode parseConfig}. */
export interface ParseConfigOptions {
  /** Name of the file, used in messages. */
  file: string;
  /**
   * Directory that relative paths (`home`, `log.file`) are resolved against;
   * defaults to the directory of `file`.
   */
  baseDir?: string;
}

type PathSegment = string | number;

/**
 * Parses and validates config text. Pure: does no I/O. An empty text gives
 * all defaults; a key with an empty value is treated as absent.
 *
 * @throws {ConfigError} listing every problem found.
 */
export function parseConfig(text: string, options: ParseConfigOptions): Config {
  const { file } = options;
  if (text.length > MAX_CONFIG_BYTES) {
    throw new ConfigError([`${file}: config file is larger than 1 MiB`]);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true });

  // The first syntax error only: the ones after it are mostly its echoes.
  const yamlError = doc.errors[0] ?? doc.warnings[0];
  if (yamlError) {
    const pos = yamlError.linePos?.[0] ?? { line: 1, col: 1 };
    const message = yamlError.message.replace(/ at line \d+, column \d+:[\s\S]*$/, "");
    throw new ConfigError(
      render(file, [{ line: pos.line, col: pos.col, text: `YAML syntax: ${plainYaml(message)}` }]),
    );
  }

  let raw: unknown;
  try {
    raw = dropEmpty(doc.toJS({ maxAliasCount: 100 })) ?? {};
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw new ConfigError([`${file}:1:1: YAML error: ${message}`]);
  }

  const result = configSchema.safeParse(raw, { error: describeIssue });
  if (!result.success) {
    const source = { doc, lineCounter, raw };
    const { unknown, others } = withoutEchoes(result.error.issues);
    const problems = [
      ...render(file, unknown.flatMap((issue) => explainIssue(issue, source))),
      ...render(file, others.flatMap((issue) => explainIssue(issue, source))),
    ];
    throw new ConfigError(problems);
  }
  return resolvePaths(result.data, options.baseDir ?? dirname(file));
}

/**
 * Reads and validates a config file. Relative paths in it are resolved
 * against the file's own directory, so the server can start from anywhere.
 *
 * @throws {ConfigError} when the file cannot be read or is invalid.
 */
export async function loadConfig(file: string): Promise<Config> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    throw new ConfigError([`${file}: cannot read config file: ${describeReadError(error)}`]);
  }
  const config = parseConfig(text, { file, baseDir: resolve(dirname(file)) });
  const source = { file, text };
  if (config.tls) checkTlsFiles(config.tls, source);
  if (config.log.file) checkLogFile(config.log.file, source);
  return config;
}

/** A config error at the key `path`, naming the file, line and column. */
function errorAt(source: { file: string; text: string }, path: PathSegment[], message: string) {
  const lineCounter = new LineCounter();
  const doc = parseDocument(source.text, { lineCounter });
  const { line, col } = lineCounter.linePos(locate(doc, path));
  return new ConfigError([`${source.file}:${line}:${col}: ${formatPath(path)}: ${message}`]);
}

/**
 * Reads the certificate and key once, so a missing, unreadable or
 * mismatched pair is a config error at load (and at SIGHUP), naming the
 * config line and the file.
 */
function checkTlsFiles(
  tls: NonNullable<Config["tls"]>,
  source: { file: string; text: string },
): void {
  try {
    loadTlsIdentity(tls);
  } catch (e) {
    if (!(e instanceof TlsFileError)) throw e;
    throw errorAt(source, ["tls", e.key], e.message);
  }
}

/**
 * The log file's folder must exist and be writable: a log that cannot be
 * written goes to stderr, which under cron means nowhere.
 */
function checkLogFile(path: string, source: { file: string; text: string }): void {
  const folder = dirname(path);
  let why: string | null = null;
  try {
    if (!Deno.statSync(folder).isDirectory) why = `${folder} is not a folder`;
    else if (!(exists(path) ? canAppend(path) : canCreateIn(folder))) {
      why = `${path} cannot be written by this user`;
    }
  } catch (e) {
    why = e instanceof Deno.errors.NotFound
      ? `the folder ${folder} does not exist: create it, writable by the server's user`
      : `cannot use ${folder}: ${describeReadError(e)}`;
  }
  if (why) throw errorAt(source, ["log", "file"], why);
}

/** Library wording of common YAML mistakes, in the words of someone editing a config. */
const PLAIN_YAML: [RegExp, string][] = [
  [/^Missing closing "?quote/i, "a quoted value is not closed (a missing quote)"],
  [/^Tabs are not allowed/i, "indent with spaces, not tabs"],
  [/must start at the same column/i, "keys of one section must be indented alike"],
  [/Flow sequence .*end with a \]/i, "a [ list is not closed with ] on the same line"],
  [/Flow map .*end with a \}/i, "a { mapping is not closed with } on the same line"],
  [/^Map keys must be unique/i, "a key appears twice in one section"],
  [
    /^Nested mappings are not allowed in compact mappings/i,
    "a value holds a colon and a space: quote it",
  ],
  [
    /^Sequence item without - indicator/i,
    "a list item is indented differently from the ones before it",
  ],
];

function plainYaml(message: string): string {
  const found = PLAIN_YAML.find(([re]) => re.test(message));
  return found ? found[1] : message;
}

/**
 * Splits the issues into unknown keys (reported first: a misspelt key is
 * the cause) and the rest, leaving out checks of a mapping that holds an
 * unknown key: they judged the defaults that stood in for the misspelt key.
 */
function withoutEchoes(issues: z.core.$ZodIssue[]) {
  const unknown = issues.filter((i) => i.code === "unrecognized_keys");
  const holders = new Set(unknown.map((i) => JSON.stringify(i.path)));
  const others = issues.filter((i) =>
    i.code !== "unrecognized_keys" && !(i.code === "custom" && holders.has(JSON.stringify(i.path)))
  );
  return { unknown, others };
}

function describeReadError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied || error instanceof Deno.errors.NotCapable) {
    return "permission denied";
  }
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  return error instanceof Error ? error.message : String(error);
}

interface Problem {
  line: number;
  col: number;
  text: string;
}

function render(file: string, problems: Problem[]): string[] {
  return problems
    .toSorted((a, b) => a.line - b.line || a.col - b.col)
    .map((p) => `${file}:${p.line}:${p.col}: ${p.text}`);
}

/**
 * Removes mapping keys whose value is empty (`key:` with nothing after it),
 * so a section whose lines are all commented out means "defaults".
 */
function dropEmpty(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dropEmpty);
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value)) {
      if (item === null || item === undefined) continue;
      Object.defineProperty(out, key, {
        value: dropEmpty(item),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
}

/** Per-parse error map: phrases zod's built-in issues as "expected ...". */
function describeIssue(issue: z.core.$ZodRawIssue): string {
  switch (issue.code) {
    case "invalid_type":
      return `expected ${typeName(String(issue.expected))}`;
    case "invalid_value":
      return `expected one of ${issue.values.map(String).join(", ")}`;
    case "too_small":
      return `expected ${bound(issue.origin, "at least", issue.minimum, issue.inclusive)}`;
    case "too_big":
      return `expected ${bound(issue.origin, "at most", issue.maximum, issue.inclusive)}`;
    default:
      return "invalid value";
  }
}

function typeName(expected: string): string {
  const names: Record<string, string> = {
    object: "a mapping",
    array: "a list",
    string: "a string",
    number: "a number",
    int: "an integer",
    boolean: "true or false",
  };
  return names[expected] ?? expected;
}

function bound(
  origin: string,
  word: "at least" | "at most",
  limit: number | bigint,
  inclusive = true,
): string {
  if (origin === "array") return `${word} ${limit} item${Number(limit) === 1 ? "" : "s"}`;
  if (origin === "string") {
    if (word === "at least" && Number(limit) === 1) return "a non-empty string";
    return `${word} ${limit} characters`;
  }
  if (inclusive) return `a number ${word} ${limit}`;
  return `a number ${word === "at least" ? "above" : "below"} ${limit}`;
}

interface Source {
  doc: Document.Parsed;
  lineCounter: LineCounter;
  raw: unknown;
}

function explainIssue(issue: z.core.$ZodIssue, source: Source): Problem[] {
  const path = issue.path.filter((s): s is PathSegment => typeof s !== "symbol");
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(path);
    return issue.keys.map((key) => {
      const keyPath = [...path, key];
      const suggestion = closest(key, known);
      const hint = suggestion === undefined
        ? known.length > 0 ? ` (known keys: ${known.join(", ")})` : ""
        : ` (did you mean "${suggestion}"?)`;
      return {
        ...position(source, locate(source.doc, keyPath, { key: true })),
        text: `${formatPath(keyPath)}: unknown key${hint}`,
      };
    });
  }
  const value = valueAt(source.raw, path);
  let text: string;
  if (value === undefined) {
    text = `missing required key; ${issue.message}`;
  } else if (SECRET_KEYS.has(String(path.at(-1))) || !showsValue(value, issue)) {
    text = issue.message;
  } else {
    text = `${issue.message}; got ${describeValue(value)}`;
  }
  const where = path.length === 0 ? "" : `${formatPath(path)}: `;
  return [{ ...position(source, locate(source.doc, path)), text: `${where}${text}` }];
}

/** Scalars are quoted back; lists and mappings only when the type was wrong. */
function showsValue(value: unknown, issue: z.core.$ZodIssue): boolean {
  if (value === null || typeof value !== "object") return true;
  return issue.code === "invalid_type";
}

function describeValue(value: unknown): string {
  if (typeof value === "string") {
    const quoted = JSON.stringify(value);
    return quoted.length > MAX_QUOTED_CHARS ? `${quoted.slice(0, MAX_QUOTED_CHARS)}..."` : quoted;
  }
  if (value === null) return "an empty value";
  if (Array.isArray(value)) return "a list";
  if (value instanceof Uint8Array) return "binary data";
  if (typeof value === "object") return "a mapping";
  return String(value);
}

/** `users[0].permissions[1]`, with odd keys quoted. */
function formatPath(path: PathSegment[]): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(segment)) out += out ? `.${segment}` : segment;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

function valueAt(raw: unknown, path: PathSegment[]): unknown {
  let value = raw;
  for (const segment of path) {
    if (value === null || typeof value !== "object") return undefined;
    if (!Object.hasOwn(value, segment)) return undefined;
    value = (value as Record<PathSegment, unknown>)[segment];
  }
  return value;
}

function position(source: Source, offset: number): { line: number; col: number } {
  return source.lineCounter.linePos(offset);
}

/**
 * Source offset for a key path: the value node when it exists (the key node
 * when `key` is set or the value is empty), else the deepest existing
 * ancestor, which for a missing key is its parent mapping.
 */
function locate(
  doc: Document.Parsed,
  path: PathSegment[],
  options: { key?: boolean } = {},
): number {
  let node: YamlNode | null = doc.contents;
  let offset = node?.range?.[0] ?? 0;
  for (const [index, segment] of path.entries()) {
    if (isAlias(node)) node = node.resolve(doc) ?? null;
    const last = index === path.length - 1;
    if (isMap(node)) {
      const pair = node.items.find((p) =>
        isScalar(p.key) && String(p.key.value) === String(segment)
      );
      if (!pair) break;
      const keyOffset = (pair.key as ParsedNode).range[0];
      const value = pair.value as ParsedNode | null;
      const empty = value === null || (isScalar(value) && value.value === null && !value.source);
      if ((last && options.key) || empty) {
        offset = keyOffset;
        node = null;
        break;
      }
      node = value;
    } else if (isSeq(node) && typeof segment === "number") {
      const item = node.items[segment] as ParsedNode | null | undefined;
      if (!item) break;
      node = item;
    } else {
      break;
    }
    offset = node?.range?.[0] ?? offset;
  }
  return offset;
}

/** Keys the schema knows for the mapping at `path`, for "did you mean". */
function knownKeys(path: PathSegment[]): string[] {
  let schema: z.core.$ZodType | undefined = configSchema;
  for (const segment of path) {
    schema = unwrap(schema);
    if (typeof segment === "number" && schema instanceof z.ZodMiniArray) {
      schema = schema._zod.def.element;
    } else if (typeof segment === "string" && schema instanceof z.ZodMiniObject) {
      schema = (schema.shape as Record<string, z.core.$ZodType>)[segment];
    } else {
      return [];
    }
    if (schema === undefined) return [];
  }
  schema = unwrap(schema);
  return schema instanceof z.ZodMiniObject ? Object.keys(schema.shape) : [];
}

/** The schema inside defaults, optionals and pipes (the schema nests a few levels at most). */
function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema;
  for (let depth = 0; depth < 32; depth++) {
    if (
      current instanceof z.ZodMiniDefault || current instanceof z.ZodMiniPrefault ||
      current instanceof z.ZodMiniOptional || current instanceof z.ZodMiniNullable
    ) {
      current = current._zod.def.innerType;
    } else if (current instanceof z.ZodMiniPipe) {
      current = current._zod.def.in;
    } else {
      return current;
    }
  }
  return current;
}

/** The known key nearest to `key` within edit distance 2, if any. */
function closest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function resolvePaths(config: Config, baseDir: string): Config {
  const at = (path: string) => isAbsolute(path) ? path : join(baseDir, path);
  return {
    ...config,
    users: config.users.map((user) => ({ ...user, home: at(user.home) })),
    anonymous: config.anonymous.home === undefined
      ? config.anonymous
      : { ...config.anonymous, home: at(config.anonymous.home) },
    log: config.log.file === undefined ? config.log : { ...config.log, file: at(config.log.file) },
    ...(config.tls &&
      { tls: { ...config.tls, certificate: at(config.tls.certificate), key: at(config.tls.key) } }),
  };
}
