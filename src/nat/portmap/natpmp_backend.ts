/**
 * NAT-PMP as a {@linkcode Backend}: the epoch of every reply tells whether
 * the gateway restarted (RFC 6886 section 3.6).
 * @module
 */
import type { Backend, GatewayState, Granted } from "./backend.ts";
import { NatPmpClient, type NatPmpClientOptions } from "./natpmp_client.ts";
import { epochWentBack, resultText } from "./natpmp_wire.ts";

/** A NAT-PMP gateway. */
export class NatPmpBackend implements Backend {
  readonly protocol = "natpmp";
  readonly gateway: string;
  readonly #client: NatPmpClient;
  /** Fewer tries for deletions: a shutdown must not wait long. */
  readonly #deleter: NatPmpClient;
  readonly #now: () => number;
  #lastEpoch: { epoch: number; atMs: number } | null = null;
  /** Set when a mapping reply (not only an address reply) showed a restart. */
  #restartSeen = false;

  constructor(options: NatPmpClientOptions, now: () => number = Date.now) {
    this.gateway = options.gateway;
    this.#client = new NatPmpClient(options);
    this.#deleter = new NatPmpClient({ ...options, attempts: Math.min(options.attempts ?? 3, 3) });
    this.#now = now;
  }

  /** The external address; a restart is an epoch that went back since the last reply. */
  async state(): Promise<GatewayState> {
    const ext = await this.#client.externalAddress();
    const restarted = this.#noteEpoch(ext.epoch) || this.#restartSeen;
    this.#restartSeen = false;
    if (ext.result !== 0) {
      return { address: null, error: `no external address: ${resultText(ext.result)}`, restarted };
    }
    return { address: ext.address, restarted };
  }

  /** One mapping request. */
  async map(internalPort: number, externalPort: number, lease: number): Promise<Granted | string> {
    const r = await this.#client.map("tcp", internalPort, externalPort, lease);
    if (this.#noteEpoch(r.epoch)) this.#restartSeen = true;
    if (r.result !== 0 || r.lifetime === 0) return resultText(r.result);
    return { externalPort: r.externalPort, lifetime: r.lifetime };
  }

  /** A deletion: lifetime 0, external port 0. */
  async unmap(internalPort: number): Promise<string | null> {
    const r = await this.#deleter.map("tcp", internalPort, 0, 0);
    return r.result === 0 ? null : resultText(r.result);
  }

  /** Records a reply's epoch; true when it shows a restart since the last one. */
  #noteEpoch(epoch: number): boolean {
    const now = this.#now();
    const back = this.#lastEpoch !== null && epochWentBack(this.#lastEpoch, epoch, now);
    this.#lastEpoch = { epoch, atMs: now };
    return back;
  }
}
