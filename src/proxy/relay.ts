/**
 * The data relay: joins the client's data connection and the upstream's,
 * moves the bytes of one transfer with a reused buffer, and carries an end,
 * an abort or a failure on one side to the other.
 * @module
 */
import { closeQuietly, type Connection } from "../ftp/connection.ts";
import { type Progress, pump, watchStall } from "../ftp/transfer_io.ts";
import type { RateLimit } from "../ftp/rate.ts";

/** What the relay needs of each side's data connection. */
type Stream = Pick<Connection, "read" | "write" | "close">;

/** How a relay ended. */
export type RelayOutcome =
  /** The sending side ended normally and every byte was written on. */
  | "ok"
  /** The client's connection failed (reset, closed early). */
  | "client-failed"
  /** The upstream's connection failed. */
  | "upstream-failed"
  /** Stopped by {@linkcode DataRelay.abort} (ABOR, session end). */
  | "aborted"
  /** No byte moved for the data timeout. */
  | "stalled";

/** The result of one relay. */
export interface RelayResult {
  outcome: RelayOutcome;
  /** Bytes written on to the receiving side. */
  bytes: number;
  /** The error's message when a side failed. */
  error?: string;
}

type Side = "client" | "upstream";

/**
 * One transfer's relay. Bytes flow from the sending side to the receiving
 * side through `buf` (the session's, reused for every transfer); each read
 * waits for the previous write, so a slow receiver slows the sender down
 * (back-pressure) and memory stays at one buffer whichever way data flows.
 *
 * When the sender ends, the receiver's connection is closed once the last
 * byte is written (its EOF marks the end of the file in stream mode); when
 * either side fails, both are closed, so the other end learns of it.
 */
export class DataRelay {
  /** Bytes moved so far; read by the status snapshot. */
  readonly progress: Progress = { bytes: 0 };
  /** Settles when both connections are closed; never rejects. */
  readonly done: Promise<RelayResult>;
  #aborted = false;
  #stalled = false;
  readonly #client: Stream;
  readonly #upstream: Stream;

  /**
   * Starts relaying at once. `direction` says which side sends:
   * "download" moves upstream to client, "upload" client to upstream.
   * `limit` paces the bytes (the session's `rateLimit`); none by default.
   */
  constructor(
    conns: { client: Stream; upstream: Stream },
    options: {
      direction: "download" | "upload";
      buf: Uint8Array;
      stallMs: number;
      limit?: RateLimit | null;
    },
  ) {
    this.#client = conns.client;
    this.#upstream = conns.upstream;
    const fromSide: Side = options.direction === "download" ? "upstream" : "client";
    const toSide: Side = fromSide === "client" ? "upstream" : "client";
    this.done = this.#run(fromSide, toSide, options);
  }

  /** Stops the relay: both connections are closed at once. */
  abort(): void {
    this.#aborted = true;
    this.#closeBoth();
  }

  #closeBoth(): void {
    closeQuietly(this.#client);
    closeQuietly(this.#upstream);
  }

  async #run(
    fromSide: Side,
    toSide: Side,
    options: { buf: Uint8Array; stallMs: number; limit?: RateLimit | null },
  ): Promise<RelayResult> {
    const conn = (side: Side) => side === "client" ? this.#client : this.#upstream;
    const from = conn(fromSide);
    const to = conn(toSide);
    let failed: Side | null = null;
    // Wrappers note which side threw, so the result can say whose fault it was.
    const source = {
      read: (p: Uint8Array) =>
        from.read(p).catch((e) => {
          failed ??= fromSide;
          throw e;
        }),
    };
    const sink = {
      write: (p: Uint8Array) =>
        to.write(p).catch((e) => {
          failed ??= toSide;
          throw e;
        }),
    };
    const stopWatching = watchStall(this.progress, options.stallMs, () => {
      this.#stalled = true;
      this.#closeBoth();
    });
    try {
      const { buf, limit } = options;
      await pump(source, sink, { buf, progress: this.progress, fromIsDisk: false, limit });
      if (this.#aborted) return { outcome: "aborted", bytes: this.progress.bytes };
      return { outcome: "ok", bytes: this.progress.bytes };
    } catch (e) {
      const bytes = this.progress.bytes;
      if (this.#aborted) return { outcome: "aborted", bytes };
      if (this.#stalled) return { outcome: "stalled", bytes };
      const error = e instanceof Error ? e.message : String(e);
      return { outcome: failed === "upstream" ? "upstream-failed" : "client-failed", bytes, error };
    } finally {
      stopWatching();
      this.#closeBoth();
    }
  }
}
