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
 * Yields lines until the peer closes the connection. A line longer than
 * `maxLength` bytes is reported once as `too-long` and its bytes are
 * discarded up to the next CR or LF, so memory per session stays bounded.
 */
export async function* readLines(
  reader: { read(p: Uint8Array): Promise<number | null> },
  options: { maxLength: number },
): AsyncGenerator<ControlLine> {
  const chunk = new Uint8Array(4096);
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
          yield { kind: "too-long" };
        } else {
          pending = concat(pending, data);
          if (!interrupted && hasInterrupt(pending)) {
            interrupted = true;
            yield { kind: "urgent" };
          }
        }
        break;
      }
      const lineBytes = concat(pending, data.subarray(0, lf));
      interrupted = false;
      afterCr = data[lf] === 13;
      pending = new Uint8Array(0);
      data = data.subarray(lf + 1);
      if (lineBytes.length > options.maxLength) {
        yield { kind: "too-long" };
        continue;
      }
      let bytes = stripTelnet(lineBytes);
      if (bytes.length > 0 && bytes[bytes.length - 1] === 13) bytes = bytes.subarray(0, -1);
      let text: string;
      try {
        text = decoder.decode(bytes);
      } catch {
        yield { kind: "bad-utf8" };
        continue;
      }
      yield { kind: "line", text };
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
export async function* readCommands(
  reader: { read(p: Uint8Array): Promise<number | null> },
  options: { maxLength: number },
): AsyncGenerator<CommandLine> {
  let answered = false;
  for await (const item of readLines(reader, options)) {
    if (item.kind === "urgent") {
      answered = true;
      yield { kind: "line", text: "ABOR" };
      continue;
    }
    const skip = answered && item.kind === "line" && /^\s*ABOR\s*$/i.test(item.text);
    answered = false;
    if (!skip) yield item;
  }
}
