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
  | { kind: "bad-utf8" };

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Yields lines until the peer closes the connection. A line longer than
 * `maxLength` bytes is reported once as `too-long` and its bytes are
 * discarded up to the next LF, so memory per session stays bounded.
 */
export async function* readLines(
  reader: { read(p: Uint8Array): Promise<number | null> },
  options: { maxLength: number },
): AsyncGenerator<ControlLine> {
  const chunk = new Uint8Array(4096);
  let pending: Uint8Array = new Uint8Array(0);
  let discarding = false;
  while (true) {
    const n = await reader.read(chunk);
    if (n === null) return;
    let data = chunk.subarray(0, n);
    while (data.length > 0) {
      const lf = data.indexOf(10);
      if (discarding) {
        if (lf < 0) break;
        discarding = false;
        data = data.subarray(lf + 1);
        continue;
      }
      if (lf < 0) {
        if (pending.length + data.length > options.maxLength) {
          pending = new Uint8Array(0);
          discarding = true;
          yield { kind: "too-long" };
        } else {
          pending = concat(pending, data);
        }
        break;
      }
      const lineBytes = concat(pending, data.subarray(0, lf));
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

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length === 0) return b.slice();
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
