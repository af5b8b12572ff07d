/**
 * A control connection's replies, written in order.
 * @module
 */
import { formatReply } from "./codec.ts";
import { type Connection, writeAll } from "./connection.ts";

const encoder = new TextEncoder();

/**
 * Writes a control connection's replies in the order they were asked for
 * (each waits for the one before), so a reply never overtakes another. A
 * failed write calls `onError` (which ends the session); nothing more is
 * written once `isClosed` says so.
 */
export class OrderedWriter {
  #last: Promise<void> = Promise.resolve();

  constructor(
    /** Where replies go; replaced when the control connection turns TLS. */
    public conn: Pick<Connection, "write">,
    readonly isClosed: () => boolean,
    readonly onError: () => void,
  ) {}

  /** Queues `bytes`; resolves once they are written (or dropped). */
  write(bytes: Uint8Array): Promise<void> {
    this.#last = this.#last.then(async () => {
      if (this.isClosed()) return;
      try {
        await writeAll(this.conn, bytes);
      } catch {
        this.onError();
      }
    });
    return this.#last;
  }

  /** Queues a reply of `code` with `text` (one line or several). */
  reply(code: number, text: string | readonly string[]): Promise<void> {
    return this.write(encoder.encode(formatReply(code, text)));
  }

  /** Resolves when every write queued so far is done. */
  flushed(): Promise<void> {
    return this.#last;
  }
}
