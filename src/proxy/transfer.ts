/**
 * One proxied transfer: the client's side (a data plan from the kit's
 * setup), the upstream's data connection, and the relay that joins them.
 * @module
 */
import { closeQuietly } from "../ftp/connection.ts";
import type { RunningTransfer } from "../ftp/control_server.ts";
import type { DataPlan, DataSetup } from "../ftp/data_setup.ts";
import type { TransferDirection } from "./protocol.ts";
import type { DataRelay } from "./relay.ts";

/** One transfer: set up, relaying, or failed to reach the client. */
export class ProxyTransfer {
  state: "setup" | "relaying" | "failed-open" = "setup";
  aborted = false;
  upstream: Deno.TcpConn | null = null;
  relay: DataRelay | null = null;
  openError = "";
  readonly started = performance.now();
  readonly startedAt = Date.now();
  readonly #ended = Promise.withResolvers<void>();
  readonly #setup: DataSetup;
  #client: DataPlan | null;

  constructor(
    readonly verb: string,
    readonly arg: string,
    readonly direction: TransferDirection,
    client: { plan: DataPlan; setup: DataSetup },
  ) {
    this.#client = client.plan;
    this.#setup = client.setup;
  }

  /** The client's side, handed over to be opened (once). */
  takeClient(): DataPlan | null {
    const plan = this.#client;
    this.#client = null;
    return plan;
  }

  /** Settles when the transfer's final reply has been handled. */
  get ended(): Promise<void> {
    return this.#ended.promise;
  }

  /** Marks the transfer as over (idempotent). */
  end(): void {
    this.#ended.resolve();
  }

  /** ABOR or session end: stop whatever stage the transfer is in. */
  abort(): void {
    this.aborted = true;
    if (this.relay) this.relay.abort();
    else this.release();
  }

  /** Closes what is open and not yet handed to the relay. */
  release(): void {
    this.#setup.discard(this.takeClient());
    closeQuietly(this.upstream);
  }

  describe(): string {
    const what = this.arg ? `${this.verb} ${this.arg}` : this.verb;
    return `${what}, ${this.relay?.progress.bytes ?? 0} bytes`;
  }

  /** For the status page: the upstream's size is not known to the proxy. */
  live(): ReturnType<RunningTransfer["live"]> {
    return {
      verb: this.verb,
      path: this.arg,
      direction: this.direction === "upload" ? "in" : "out",
      bytes: this.relay?.progress.bytes ?? 0,
      size: null,
      startedAt: this.startedAt,
    };
  }
}
