/**
 * Reads control-connection lines from a connection with a hard length
 * limit, Telnet commands removed and strict UTF-8 decoding.
 * @module
 */
import { stripTelnet } from "./codec.ts";

/** One item read from the control connection. */
export type ControlLine =
  | { kind: "line"; text: string }
  | { kind: "too-long" }
  | { kind: "bad-utf8" }
  /**
   * A Telnet IP (interrupt) arrived and its line is not complete yet: an
   * urgent ABOR has begun, whose rest may sit behind the TCP urgent mark
   * until the client sends more (see Session.run).
   */
  | { kind: "urgent" };

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Bytes read at a time. Command lines are short; a longer one is gathered
 * over several reads. Every idle session holds one such buffer in its
 * pending read, so it is kept small.
 */
const CHUNK_SIZE = 1024;

/**
 * Decodes a line strictly as UTF-8; plain ASCII (nearly every command) is
 * turned into a string without a call into the runtime.
 */
function decodeLine(bytes: Uint8Array): string {
  if (bytes.length > 256) return decoder.decode(bytes);
  let text = "";
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (b >= 0x80) return decoder.decode(bytes);
    text += String.fromCharCode(b);
  }
  return text;
}

/**
 * Yields lines until the peer closes the connection. A line longer than
 * `maxLength` bytes is reported once as `too-long` and its bytes are
 * discarded up to the next CR or LF, so memory per session stays bounded.
 */
export function readLines(
  reader: { read(p: Uint8Array): Promise<number | null> },
  options: { maxLength: number },
): AsyncGenerator<ControlLine> {
  return scan(reader, options, false);
}

const ABOR_LINE: CommandLine = { kind: "line", text: "ABOR" };

/**
 * The line scanner behind {@linkcode readLines} and {@linkcode readCommands}:
 * with `commands`, an urgent ABOR is yielded as an ABOR line at once and the
 * ABOR line itself, when it follows, is dropped (one generator, not one
 * wrapping the other: each yield of a generator costs a promise).
 */
async function* scan(
  reader: { read(p: Uint8Array): Promise<number | null> },
  options: { maxLength: number },
  commands: boolean,
): AsyncGenerator<ControlLine> {
  // Commands: an urgent ABOR was answered, and its line is still to come.
  let answered = false;
  const chunk = new Uint8Array(CHUNK_SIZE);
  let pending: Uint8Array = new Uint8Array(0);
  let discarding = false;
  // A bare CR also ends a line: a client that sends "ABOR\r\n" as urgent
  // data (Python's ftplib) has its LF taken out of band, and Deno cannot set
  // SO_OOBINLINE. An LF (or Telnet's NUL) right after a CR is then skipped.
  let afterCr = false;
  // Whether "urgent" was reported for the line in `pending`.
  let interrupted = false;
  while (true) {
    const n = await reader.read(chunk);
    if (n === null) return;
    let data = chunk.subarray(0, n);
    while (data.length > 0) {
      if (afterCr) {
        afterCr = false;
        if (data[0] === 10 || data[0] === 0) {
          data = data.subarray(1);
          continue;
        }
      }
      const lf = lineEnd(data);
      if (discarding) {
        if (lf < 0) break;
        discarding = false;
        afterCr = data[lf] === 13;
        data = data.subarray(lf + 1);
        continue;
      }
      if (lf < 0) {
        if (pending.length + data.length > options.maxLength) {
          pending = new Uint8Array(0);
          interrupted = false;
          discarding = true;
          answered = false;
          yield { kind: "too-long" };
        } else {
          pending = concat(pending, data);
          if (!interrupted && hasInterrupt(pending)) {
            interrupted = true;
            if (commands) {
              answered = true;
              yield ABOR_LINE;
            } else yield { kind: "urgent" };
          }
        }
        break;
      }
      // Decoded before the next read, so a line within one read needs no copy.
      const lineBytes = pending.length === 0
        ? data.subarray(0, lf)
        : concat(pending, data.subarray(0, lf));
      interrupted = false;
      afterCr = data[lf] === 13;
      pending = new Uint8Array(0);
      data = data.subarray(lf + 1);
      if (lineBytes.length > options.maxLength) {
        answered = false;
        yield { kind: "too-long" };
        continue;
      }
      let bytes = stripTelnet(lineBytes);
      if (bytes.length > 0 && bytes[bytes.length - 1] === 13) bytes = bytes.subarray(0, -1);
      let text: string;
      try {
        text = decodeLine(bytes);
      } catch {
        answered = false;
        yield { kind: "bad-utf8" };
        continue;
      }
      const skip = answered && /^\s*ABOR\s*$/i.test(text);
      answered = false;
      if (!skip) yield { kind: "line", text };
    }
  }
}

/** Whether the bytes hold Telnet IAC IP (an escaped IAC IAC does not count). */
function hasInterrupt(bytes: Uint8Array): boolean {
  for (let i = 0; i + 1 < bytes.length; i++) {
    if (bytes[i] !== 255) continue;
    if (bytes[i + 1] === 244) return true;
    i++; // skip the command byte (or the second IAC of IAC IAC)
  }
  return false;
}

/** Index of the first CR or LF, or -1. */
function lineEnd(data: Uint8Array): number {
  const lf = data.indexOf(10);
  const cr = data.indexOf(13);
  if (cr < 0) return lf;
  return lf < 0 ? cr : Math.min(cr, lf);
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** What {@linkcode readCommands} yields: lines and the two kinds of bad line. */
export type CommandLine = Exclude<ControlLine, { kind: "urgent" }>;

/**
 * {@linkcode readLines} for a command loop: an urgent ABOR is yielded as an
 * ABOR line at once (Deno cannot read past the TCP urgent mark until the
 * client sends more, and the client waits for the reply), and the ABOR
 * line itself, when it arrives, is dropped as already answered.
 */
export function readCommands(
  reader: { read(p: Uint8Array): Promise<number | null> },
  options: { maxLength: number },
): AsyncGenerator<CommandLine> {
  // In command mode the scanner yields no "urgent" item.
  return scan(reader, options, true) as AsyncGenerator<CommandLine>;
}
