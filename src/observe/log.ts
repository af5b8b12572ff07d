/**
 * Logging setup: LogTape with one text line per record on stderr, or in a
 * file that is rotated by size (`file` -> `file.1` -> ... -> `file.N`), so a
 * device that runs for months never fills its disk with log. Categories
 * start with "pitifulnat".
 *
 * A log that cannot be written never stops the server: a failing file sink
 * writes the record to stderr instead and tries the file again next time.
 * @module
 */
import { configure, getTextFormatter, type LogRecord, reset, type Sink } from "@logtape/logtape";
import { closeQuietly } from "../ftp/connection.ts";

/** Log levels accepted in the config. */
export type Level = "debug" | "info" | "warning" | "error";

/** Default size at which the log file is rotated: 10 MiB. */
export const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;
/** Default number of rotated files kept (`file.1` ... `file.5`). */
export const DEFAULT_KEEP = 5;

function pad2(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

let stampSecond = NaN;
let stampPrefix = "";

/**
 * LogTape's `date-time-tz` timestamp in UTC (`2026-12-01 14:30:00.123 +00`),
 * with the date and time up to the second worked out once per second, not
 * once per line.
 */
export function formatTimestamp(timestamp: number): string {
  const ts = Math.floor(timestamp);
  const second = Math.floor(ts / 1000);
  if (second !== stampSecond) {
    const d = new Date(second * 1000);
    stampSecond = second;
    stampPrefix = `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ` +
      `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}.`;
  }
  const ms = ts - second * 1000;
  return `${stampPrefix}${ms < 10 ? "00" : ms < 100 ? "0" : ""}${ms} +00`;
}

/** Plain values keep lines greppable: user=alice, not user="alice". */
function renderValue(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v) ?? String(v);
}

const textFormatter = getTextFormatter({ timestamp: formatTimestamp, value: renderValue });

const LEVELS: Record<string, string> = {
  trace: "TRC",
  debug: "DBG",
  info: "INF",
  warning: "WRN",
  error: "ERR",
  fatal: "FTL",
};

/** A message template split once: literal texts around property names. */
interface Compiled {
  texts: string[];
  keys: string[];
}

/** Printable ASCII (and tab), which LogTape's sanitizer leaves alone. */
const PLAIN = /^[\t\x20-\x7e]*$/;
const SIMPLE_TEMPLATE = /^(?:[^{}]|\{[A-Za-z_][A-Za-z0-9_]*\})*$/;
const compiled = new Map<string, Compiled | null>();
const MAX_COMPILED = 512;

/**
 * The template split into texts and keys, when it is one LogTape would
 * render the same way without escaping (printable ASCII, `{name}`
 * placeholders only, no `{{`); null otherwise.
 */
function compile(template: string): Compiled | null {
  let c = compiled.get(template);
  if (c !== undefined) return c;
  c = null;
  if (PLAIN.test(template) && SIMPLE_TEMPLATE.test(template)) {
    const texts: string[] = [];
    const keys: string[] = [];
    let at = 0;
    for (let open = template.indexOf("{"); open >= 0; open = template.indexOf("{", at)) {
      const close = template.indexOf("}", open);
      texts.push(template.slice(at, open));
      keys.push(template.slice(open + 1, close));
      at = close + 1;
    }
    texts.push(template.slice(at));
    c = { texts, keys };
  }
  if (compiled.size < MAX_COMPILED) compiled.set(template, c);
  return c;
}

const categories = new WeakMap<readonly string[], string | null>();

/** The category as LogTape writes it (`pitifulnat·ftp`); null when it would escape a part. */
function categoryText(parts: readonly string[]): string | null {
  let text = categories.get(parts);
  if (text === undefined) {
    text = parts.every((p) => PLAIN.test(p)) ? parts.join("\u00b7") : null;
    categories.set(parts, text);
  }
  return text;
}

/**
 * LogTape's text line for `record` (as `textFormatter` writes it), built
 * from a template compiled once instead of parsed per record; records it
 * cannot render that way go to `textFormatter`.
 */
function formatText(record: LogRecord): string {
  const raw = record.rawMessage;
  const c = typeof raw === "string" ? compile(raw) : null;
  const level = LEVELS[record.level];
  const category = categoryText(record.category);
  if (c === null || level === undefined || category === null) return textFormatter(record);
  const props = record.properties;
  let message = c.texts[0];
  for (let i = 0; i < c.keys.length; i++) {
    message += renderValue(props[c.keys[i]]) + c.texts[i + 1];
  }
  return `${formatTimestamp(record.timestamp)} [${level}] ${category}: ${message}\n`;
}

/**
 * The text line, ending in ` peer=ADDR:PORT` when the record is about a
 * client whose address its message does not already name: every session,
 * login and transfer line says who it was, for grep and fail2ban.
 */
export function formatLine(record: LogRecord): string {
  const line = formatText(record);
  const peer = record.properties.peer;
  if (typeof peer !== "string" || String(record.rawMessage).includes("{peer}")) return line;
  return line.endsWith("\n") ? `${line.slice(0, -1)} peer=${peer}\n` : `${line} peer=${peer}`;
}
const formatter = formatLine;
const encoder = new TextEncoder();

function stderrSink(record: LogRecord): void {
  try {
    Deno.stderr.writeSync(encoder.encode(formatter(record)));
  } catch {
    // A broken log destination must never stop the server.
  }
}

/** Writes all of `bytes`; `writeSync` may write fewer bytes than asked. */
function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let done = 0;
  // Each round writes at least one byte or throws, so this ends.
  while (done < bytes.length) done += file.writeSync(bytes.subarray(done));
}

/** Renames `from` to `to`; a missing `from` is not an error. */
function renameIfPresent(from: string, to: string): void {
  try {
    Deno.renameSync(from, to);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/**
 * Shifts `path.1` ... `path.(keep-1)` up by one (the oldest, `path.keep`,
 * is overwritten) and moves `path` to `path.1`. With `keep` 0 the current
 * file is removed instead. Exported for tests.
 */
export function rotateFiles(path: string, keep: number): void {
  if (keep <= 0) {
    try {
      Deno.removeSync(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return;
  }
  for (let i = keep - 1; i >= 1; i--) renameIfPresent(`${path}.${i}`, `${path}.${i + 1}`);
  renameIfPresent(path, `${path}.1`);
}

/** Options of {@linkcode rotatingFileSink}. */
export interface RotationOptions {
  /** Rotate before a record would make the file larger than this. */
  maxBytes: number;
  /** Rotated files kept besides the current one. */
  keep: number;
  /** Formats a record into one line; defaults to the text formatter used on stderr. */
  format?: (record: LogRecord) => string;
  /** Where a record goes when the file cannot be written; defaults to stderr. */
  fallback?: (record: LogRecord) => void;
}

/**
 * A sink appending to `path`, rotated by size. A record is never split
 * across files; a single record larger than `maxBytes` gets a file of its
 * own. On any error (disk full, directory gone, permissions) the record goes
 * to the fallback and the file is reopened on the next record. Disposing the
 * sink (LogTape does on reset/reconfigure) closes the file.
 */
export function rotatingFileSink(path: string, options: RotationOptions): Sink & Disposable {
  const format = options.format ?? formatter;
  const fallback = options.fallback ?? stderrSink;
  let file: Deno.FsFile | null = null;
  let size = 0;
  const close = () => {
    closeQuietly(file);
    file = null;
  };
  const open = () => {
    const opened = Deno.openSync(path, { append: true, create: true });
    try {
      size = opened.statSync().size;
    } catch (e) {
      opened.close();
      throw e;
    }
    return opened;
  };
  const sink = (record: LogRecord) => {
    try {
      const bytes = encoder.encode(format(record));
      file ??= open();
      if (size > 0 && size + bytes.length > options.maxBytes) {
        close();
        rotateFiles(path, options.keep);
        file = open();
      }
      writeAll(file, bytes);
      size += bytes.length;
    } catch {
      close();
      fallback(record);
    }
  };
  return Object.assign(sink, { [Symbol.dispose]: close });
}

/**
 * LogTape's mark for a sink that is done with a record when it returns:
 * it then skips copying every record's properties for the sink (about a
 * tenth of a small file's CPU). Both sinks here format and write at once.
 * A LogTape without the mark just copies again.
 */
const IMMEDIATE_SINK = Symbol.for("LogTape.sinkSnapshotPolicy.immediate");

/** `sink`, marked as done with each record when it returns. */
function immediate<S extends Sink>(sink: S): S {
  if (!Object.hasOwn(sink, IMMEDIATE_SINK)) {
    Object.defineProperty(sink, IMMEDIATE_SINK, { value: true });
  }
  return sink;
}

/**
 * Configures logging for the process; safe to call again (reconfigures,
 * closing the previous log file). Takes the config's `log` section.
 */
export async function setupLogging(
  options: { level: Level; file?: string; max_bytes?: number; keep?: number },
): Promise<void> {
  await reset();
  const main = options.file
    ? rotatingFileSink(options.file, {
      maxBytes: options.max_bytes ?? DEFAULT_MAX_BYTES,
      keep: options.keep ?? DEFAULT_KEEP,
    })
    : stderrSink;
  await configure({
    reset: true,
    sinks: { main: immediate(main) },
    loggers: [
      { category: ["pitifulnat"], sinks: ["main"], lowestLevel: options.level },
      { category: ["logtape", "meta"], sinks: ["main"], lowestLevel: "warning" },
    ],
  });
}
