/**
 * Port mapping on the router: asks the gateway (NAT-PMP, RFC 6886, or
 * UPnP-IGD) to forward the control port and the passive range to this
 * machine, renews the mappings at half their lease, maps everything again
 * when the gateway lost them (a reboot: NAT-PMP's epoch went back, or a
 * UPnP entry is gone) and deletes the mappings on stop.
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";
import { type Clock, realClock } from "../public_address.ts";
import { type Backend, type Granted, type Protocol, PROTOCOL_NAME } from "./backend.ts";
import { NatPmpBackend } from "./natpmp_backend.ts";
import { defaultGateway, localAddressToward } from "./natpmp_client.ts";
import { PcpBackend } from "./pcp.ts";
import { discoverIgd, UpnpBackend } from "./upnp.ts";

/** Which protocol to speak; "auto" tries NAT-PMP, then UPnP-IGD, then PCP. */
export type PortMapProtocol = Protocol | "auto";

/** Default number of ports mapped at most (control port first, then the passive range). */
export const DEFAULT_MAX_MAPPINGS = 100;
/** Default lease asked for, in seconds (RFC 6886 recommends 7200). */
export const DEFAULT_LEASE_SECONDS = 3600;
/** Default wait before asking again after the gateway failed. */
export const DEFAULT_RETRY_MS = 60_000;
/**
 * Requests in flight at once. Small: a gateway such as miniupnpd answers a
 * request only after scanning its rule table, and a resend is one more request.
 */
const PARALLEL = 4;
/** Default limit on the deletions at stop, in ms: a shutdown must not hang on the router. */
export const DEFAULT_STOP_TIMEOUT_MS = 8_000;
/** The lease of `check`'s trial mapping (removed at once; this only bounds a leftover). */
const TRIAL_LEASE_SECONDS = 120;
/** The shortest wait between two rounds, whatever lease the gateway grants. */
const MIN_RENEW_MS = 1000;

/** Options of {@linkcode PortMapper}. */
export interface PortMapperOptions {
  /** The protocol; see {@linkcode PortMapProtocol}. */
  protocol: PortMapProtocol;
  /** The gateway's address; default: the default route's gateway (NAT-PMP), any (SSDP). */
  gateway?: string;
  /** This machine's LAN address (the one the gateway forwards to); default: the one toward it. */
  internalAddress?: string;
  /** TCP ports to map, in order of importance (the control port first). */
  ports: number[];
  /** Lease asked for, in seconds; default {@linkcode DEFAULT_LEASE_SECONDS}. */
  leaseSeconds?: number;
  /** Ports mapped at most; default {@linkcode DEFAULT_MAX_MAPPINGS}. */
  maxMappings?: number;
  /** Wait before trying again after a failed round; default {@linkcode DEFAULT_RETRY_MS}. */
  retryMs?: number;
  /** The gateway's NAT-PMP port (tests); default 5351. */
  gatewayPort?: number;
  /** The IGD's description URL, skipping SSDP (tests, or a router that does not answer it). */
  upnpLocation?: string;
  /** How long SSDP discovery listens; default 2000 ms. */
  discoveryMs?: number;
  /** First reply wait of one NAT-PMP request (tests); default 250 ms. */
  firstWaitMs?: number;
  /** Sends of one NAT-PMP request, the first included; default 4. */
  attempts?: number;
  /** How long stop() may spend deleting; default {@linkcode DEFAULT_STOP_TIMEOUT_MS}. */
  stopTimeoutMs?: number;
  /** Default: the `pitifulnat.portmap` logger. */
  log?: Logger;
  /** Default: real time, unref'd timers. */
  clock?: Clock;
  /** Called after every round (start, renewals), e.g. to update status. */
  onRound?: (report: MappingReport) => void;
}

/** One mapping the gateway granted. */
export interface PortMapping {
  /** The port on this machine. */
  internalPort: number;
  /** The port on the gateway's external address (asked equal to internalPort). */
  externalPort: number;
  /** Seconds granted; 0 is a permanent lease (UPnP), renewed anyway. */
  lifetimeSeconds: number;
  /** When it was granted or last renewed (ISO 8601). */
  renewedAt: string;
  /** When it expires unless renewed (ISO 8601); null for a permanent lease. */
  expiresAt: string | null;
}

/** What one round of mapping did, for `check`, the log and status. */
export interface MappingReport {
  /** The protocol that answered (or the one tried; for "auto" with no answer, null). */
  protocol: Protocol | null;
  /** The gateway asked, null when none was found. */
  gateway: string | null;
  /** The WAN address the gateway reported, null when unknown. */
  externalAddress: string | null;
  /** Ports asked for in this round (at most maxMappings). */
  requested: number;
  /** Ports not asked for because of the cap. */
  skipped: number;
  /** Mappings granted, in the order of `ports`. */
  mapped: PortMapping[];
  /** Ports the gateway refused or did not answer for. */
  failed: { port: number; error: string }[];
  /** Mappings whose external port is not the internal one. */
  different: { internalPort: number; externalPort: number }[];
  /** Why the round failed as a whole (no gateway, no reply, no external address), else null. */
  error: string | null;
  /** A probe's trial mapping (one port, removed again), not the server's mappings. */
  trial?: boolean;
  /** Whether this round found the gateway restarted (its mappings lost) and mapped again. */
  gatewayRestarted: boolean;
  /** Duration of the round in milliseconds. */
  ms: number;
}

/** The mapper's state for a status endpoint and metrics. */
export interface PortMapperSnapshot {
  /** Whether start() was called and stop() not yet. */
  running: boolean;
  /** The protocol in use, null while no gateway answered. */
  protocol: Protocol | null;
  /** The gateway, null when none was found. */
  gateway: string | null;
  /** The WAN address the gateway reported last, null when unknown. */
  externalAddress: string | null;
  /** Mappings held now. */
  mappings: PortMapping[];
  /** The last round's failures. */
  failed: { port: number; error: string }[];
  /** The last round's error as a whole, null when it worked. */
  lastError: string | null;
  /** When the last round ended (ISO 8601), null before the first. */
  lastRoundAt: string | null;
  /** When the next round is due (ISO 8601), null when none is scheduled. */
  nextRoundAt: string | null;
  /** Rounds done (the first mapping included). */
  rounds: number;
  /** Times the gateway was found restarted. */
  gatewayRestarts: number;
}

/** An error as text. */
function why(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Runs `fn` over `items`, at most `limit` at once, results in order. */
async function mapLimited<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Unique valid ports in the given order. */
function uniquePorts(ports: number[]): number[] {
  const seen = new Set<number>();
  for (const p of ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) {
      throw new RangeError(`port mapping: bad port ${p}`);
    }
    seen.add(p);
  }
  return [...seen];
}

/** Keeps the router's port mappings for this server. */
export class PortMapper {
  readonly #options: PortMapperOptions;
  readonly #ports: number[];
  readonly #skipped: number;
  readonly #lease: number;
  readonly #retryMs: number;
  readonly #stopTimeoutMs: number;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #onRound: ((report: MappingReport) => void) | undefined;
  /** The NAT-PMP gateway: configured, else the default route's. */
  readonly #natpmpGateway: string | null;
  /** The backend that answered; null until one does (and again after "auto" lost it). */
  #backend: Backend | null = null;
  /** A NAT-PMP backend, kept across rounds (it remembers the epoch). */
  #natpmp: NatPmpBackend | null = null;
  /** A PCP backend, kept across rounds (its epoch, and the mappings' nonces). */
  #pcp: PcpBackend | null = null;
  /** Mappings held, by internal port. */
  readonly #mappings = new Map<number, PortMapping>();
  #externalAddress: string | null = null;
  #last: MappingReport | null = null;
  #lastRoundAt: number | null = null;
  #nextRoundAt: number | null = null;
  #timer: number | null = null;
  #running = false;
  #round: Promise<MappingReport> | null = null;
  #rounds = 0;
  #restarts = 0;
  /** The last error logged, so a lasting failure is logged once. */
  #loggedError: string | null = null;

  /** @throws {RangeError} on a bad port, lease or cap. */
  constructor(options: PortMapperOptions) {
    this.#options = options;
    const ports = uniquePorts(options.ports);
    const max = options.maxMappings ?? DEFAULT_MAX_MAPPINGS;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`port mapping: bad cap ${max}`);
    this.#ports = ports.slice(0, max);
    this.#skipped = ports.length - this.#ports.length;
    this.#lease = options.leaseSeconds ?? DEFAULT_LEASE_SECONDS;
    if (!Number.isInteger(this.#lease) || this.#lease < 2) {
      throw new RangeError(`port mapping: bad lease ${this.#lease} s (2 or more)`);
    }
    this.#retryMs = Math.max(MIN_RENEW_MS, options.retryMs ?? DEFAULT_RETRY_MS);
    this.#stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    this.#log = options.log ?? getLogger(["pitifulnat", "portmap"]);
    this.#clock = options.clock ?? realClock;
    this.#onRound = options.onRound;
    this.#natpmpGateway = options.gateway ?? defaultGateway();
  }

  /**
   * Maps the ports (awaited; never throws: failures are in the report and
   * logged once), then renews on schedule until {@linkcode PortMapper.stop}.
   */
  start(): Promise<MappingReport> {
    this.#running = true;
    return this.renewNow("start");
  }

  /** Runs a round now (concurrent calls share it) and schedules the next while running. */
  renewNow(reason = "renewal"): Promise<MappingReport> {
    if (this.#round !== null) return this.#round;
    this.#cancelTimer();
    const round = this.#doRound(reason).finally(() => {
      if (this.#round === round) this.#round = null;
    });
    this.#round = round;
    return round;
  }

  /**
   * Stops renewing and deletes every mapping held: each deletion is sent at
   * most 3 times (NAT-PMP) or waits 3 s (UPnP), none starts after `stopTimeoutMs`.
   */
  async stop(): Promise<void> {
    this.#running = false;
    this.#cancelTimer();
    await this.#round?.catch(() => {});
    const held = [...this.#mappings.values()];
    this.#mappings.clear();
    const backend = this.#backend;
    if (backend === null || held.length === 0) return;
    const deadline = Date.now() + this.#stopTimeoutMs;
    const results = await mapLimited(held, PARALLEL, async (m) => {
      if (Date.now() > deadline) return `${m.internalPort}: not tried (stop took too long)`;
      try {
        const error = await backend.unmap(m.internalPort, m.externalPort);
        return error === null ? null : `${m.internalPort}: ${error}`;
      } catch (e) {
        return `${m.internalPort}: ${why(e)}`;
      }
    });
    const failed = results.filter((r) => r !== null);
    if (failed.length === 0) {
      this.#log.info("port mapping: removed {n} mappings on {gateway}", {
        n: held.length,
        gateway: backend.gateway,
      });
    } else {
      this.#log.warn("port mapping: {n} of {all} mappings not removed ({first})", {
        n: failed.length,
        all: held.length,
        first: failed[0],
      });
    }
  }

  /**
   * Asks the gateway about itself (which protocol answers, its WAN address)
   * for `check`. With `tryPort`, also maps that one port for a moment and
   * removes it again, to learn whether the gateway grants mappings at all:
   * only when no server holds that port's mapping (it would be removed).
   * Never throws.
   */
  async probe(options: { tryPort?: number } = {}): Promise<MappingReport> {
    const started = this.#clock.now();
    const report = this.#emptyReport(0);
    report.gateway = null;
    report.skipped = 0;
    try {
      const { backend, state } = await this.#connect([]);
      report.protocol = backend.protocol;
      report.gateway = backend.gateway;
      report.externalAddress = state.address;
      if (state.address === null && !state.deferred) {
        report.error = `the gateway reports no external address${
          state.error ? ` (${state.error})` : ""
        }`;
      }
      if (options.tryPort !== undefined && report.error === null) {
        await this.#tryMapping(backend, options.tryPort, report);
      }
    } catch (e) {
      report.error = why(e);
      report.gateway = this.#options.protocol === "upnp" ? null : this.#natpmpGateway;
    }
    report.ms = this.#clock.now() - started;
    return report;
  }

  /** One trial mapping of `port` (short lease), removed again at once; the outcome goes in `report`. */
  async #tryMapping(backend: Backend, port: number, report: MappingReport): Promise<void> {
    report.trial = true;
    report.requested = 1;
    let granted: Granted | string;
    try {
      granted = await backend.map(port, port, TRIAL_LEASE_SECONDS);
    } catch (e) {
      granted = why(e);
    }
    if (typeof granted === "string") {
      report.failed.push({ port, error: granted });
      report.error = `the gateway refused a trial mapping of port ${port} (${granted})`;
      return;
    }
    const now = this.#clock.now();
    report.mapped.push({
      internalPort: port,
      externalPort: granted.externalPort,
      lifetimeSeconds: granted.lifetime,
      renewedAt: new Date(now).toISOString(),
      expiresAt: null,
    });
    if (granted.externalPort !== port) {
      report.different.push({ internalPort: port, externalPort: granted.externalPort });
    }
    report.externalAddress ??= granted.externalAddress ?? null;
    await backend.unmap(port, granted.externalPort).catch(() => null);
  }

  /** The external port the gateway forwards to `internalPort` now, or null when it forwards none. */
  externalPort(internalPort: number): number | null {
    return this.#mappings.get(internalPort)?.externalPort ?? null;
  }

  /** How many of the ports `min`..`max` the gateway forwards now. */
  mappedIn(min: number, max: number): number {
    let n = 0;
    for (const port of this.#mappings.keys()) if (port >= min && port <= max) n++;
    return n;
  }

  /** The WAN address the gateway reported last, or null. */
  externalAddress(): string | null {
    return this.#externalAddress;
  }

  /** The last round's report, or null before the first. */
  lastReport(): MappingReport | null {
    return this.#last;
  }

  /** The state for a status endpoint and metrics. */
  snapshot(): PortMapperSnapshot {
    const iso = (ms: number | null) => ms === null ? null : new Date(ms).toISOString();
    return {
      running: this.#running,
      protocol: this.#backend?.protocol ?? null,
      gateway: this.#backend?.gateway ?? this.#last?.gateway ?? null,
      externalAddress: this.#externalAddress,
      mappings: [...this.#mappings.values()],
      failed: this.#last?.failed ?? [],
      lastError: this.#last?.error ?? null,
      lastRoundAt: iso(this.#lastRoundAt),
      nextRoundAt: iso(this.#nextRoundAt),
      rounds: this.#rounds,
      gatewayRestarts: this.#restarts,
    };
  }

  /** A report of nothing done yet, asking for `requested` ports, with the gateway known so far. */
  #emptyReport(requested: number): MappingReport {
    return {
      protocol: this.#backend?.protocol ??
        (this.#options.protocol === "auto" ? null : this.#options.protocol),
      gateway: this.#backend?.gateway ?? null,
      externalAddress: null,
      requested,
      skipped: this.#skipped,
      mapped: [],
      failed: [],
      different: [],
      error: null,
      gatewayRestarted: false,
      ms: 0,
    };
  }

  async #doRound(reason: string): Promise<MappingReport> {
    const started = this.#clock.now();
    const report = this.#emptyReport(this.#ports.length);
    await this.#askGateway(report, reason);
    report.ms = this.#clock.now() - started;
    this.#finishRound(report);
    return report;
  }

  /** The NAT-PMP backend (kept for its epoch), or null without a gateway. */
  #natpmpBackend(): NatPmpBackend | null {
    if (this.#natpmp === null && this.#natpmpGateway !== null) {
      this.#natpmp = new NatPmpBackend({
        gateway: this.#natpmpGateway,
        port: this.#options.gatewayPort,
        firstWaitMs: this.#options.firstWaitMs,
        attempts: this.#options.attempts,
      }, () => this.#clock.now());
    }
    return this.#natpmp;
  }

  /** The address the gateway forwards to: configured, else this machine's toward `gateway`. */
  async #internalAddress(gateway: string): Promise<string> {
    return await Promise.resolve(this.#options.internalAddress ?? localAddressToward(gateway));
  }

  /** The PCP backend (kept for its epoch and nonces), or null without a gateway. */
  async #pcpBackend(): Promise<PcpBackend | null> {
    if (this.#pcp === null && this.#natpmpGateway !== null) {
      this.#pcp = new PcpBackend({
        gateway: this.#natpmpGateway,
        internalAddress: await this.#internalAddress(this.#natpmpGateway),
        port: this.#options.gatewayPort,
        firstWaitMs: this.#options.firstWaitMs,
        attempts: this.#options.attempts,
      }, () => this.#clock.now());
    }
    return this.#pcp;
  }

  /** The UPnP-IGD backend found by SSDP (or at `upnpLocation`); throws when none answered. */
  async #upnpBackend(): Promise<UpnpBackend> {
    const service = await discoverIgd({
      location: this.#options.upnpLocation,
      gateway: this.#options.gateway,
      timeoutMs: this.#options.discoveryMs,
    });
    if (service === null) throw new Error("no UPnP-IGD gateway answered SSDP discovery");
    const internal = await this.#internalAddress(new URL(service.controlUrl).hostname);
    return new UpnpBackend(service, internal);
  }

  /**
   * The backend to use and the gateway's state from it: the one that
   * answered before, else (per protocol) NAT-PMP, UPnP-IGD and PCP, in that order.
   */
  async #connect(held: number[]): Promise<{ backend: Backend; state: GatewayStateLike }> {
    if (this.#backend !== null) {
      return { backend: this.#backend, state: await this.#backend.state(held) };
    }
    const errors: string[] = [];
    const protocol = this.#options.protocol;
    if (protocol === "natpmp" || protocol === "auto") {
      const natpmp = this.#natpmpBackend();
      if (natpmp === null) errors.push("NAT-PMP: no gateway (no default route)");
      else {
        try {
          return { backend: natpmp, state: await natpmp.state() };
        } catch (e) {
          errors.push(`NAT-PMP: ${why(e)}`);
        }
      }
    }
    if (protocol === "upnp" || protocol === "auto") {
      try {
        const upnp = await this.#upnpBackend();
        return { backend: upnp, state: await upnp.state(held) };
      } catch (e) {
        errors.push(`UPnP-IGD: ${why(e)}`);
      }
    }
    if (protocol === "pcp" || protocol === "auto") {
      const pcp = await this.#pcpBackend().catch(() => null);
      if (pcp === null) {
        errors.push("PCP: no gateway (no default route), or no local address toward it");
      } else {
        try {
          return { backend: pcp, state: await pcp.state() };
        } catch (e) {
          errors.push(`PCP: ${why(e)}`);
        }
      }
    }
    // With one protocol asked for, its error needs no "NAT-PMP:" in front.
    throw new Error(protocol === "auto" ? errors.join("; ") : errors[0].replace(/^[^:]+: /, ""));
  }

  /** The external address (and the restart check), then every mapping. */
  async #askGateway(report: MappingReport, reason: string): Promise<void> {
    const held = [...this.#mappings.values()].map((m) => m.externalPort);
    let backend: Backend;
    try {
      const found = await this.#connect(held);
      backend = found.backend;
      this.#backend = backend;
      report.protocol = backend.protocol;
      report.gateway = backend.gateway;
      report.gatewayRestarted = found.state.restarted;
      report.externalAddress = found.state.address;
      if (found.state.address === null && !found.state.deferred) {
        report.error = `the gateway reports no external address${
          found.state.error ? ` (${found.state.error})` : ""
        }`;
      }
    } catch (e) {
      report.error = why(e);
      report.gateway ??= this.#options.protocol === "upnp" ? null : this.#natpmpGateway;
      // "auto" may find another protocol next time; UPnP must rediscover a moved gateway.
      if (this.#options.protocol === "auto" || this.#options.protocol === "upnp") {
        this.#backend = null;
      }
      return;
    }
    if (report.gatewayRestarted) {
      this.#restarts++;
      this.#log.warn(
        "port mapping: the gateway {gateway} lost its mappings (restarted): mapping again",
        { gateway: backend.gateway },
      );
      this.#mappings.clear();
    }
    const replies = await mapLimited(this.#ports, PARALLEL, async (port) => {
      try {
        return await backend.map(port, this.#mappings.get(port)?.externalPort ?? port, this.#lease);
      } catch (e) {
        return why(e);
      }
    });
    this.#recordMappings(report, replies);
    if (report.externalAddress === null) {
      // PCP names the external address in its MAP replies only.
      const named = replies.find((r): r is Granted => typeof r !== "string" && !!r.externalAddress);
      report.externalAddress = named?.externalAddress ?? null;
      if (report.externalAddress === null && report.error === null) {
        report.error = "the gateway reports no external address";
      }
    }
    this.#log.debug("port mapping round ({reason}): {n} mapped", {
      reason,
      n: report.mapped.length,
    });
  }

  /** Stores the replies of one round in the report and the held mappings. */
  #recordMappings(report: MappingReport, replies: (Granted | string)[]): void {
    const now = this.#clock.now();
    this.#ports.forEach((port, i) => {
      const r = replies[i];
      if (typeof r === "string") {
        report.failed.push({ port, error: r });
        this.#mappings.delete(port);
        return;
      }
      const m: PortMapping = {
        internalPort: port,
        externalPort: r.externalPort,
        lifetimeSeconds: r.lifetime,
        renewedAt: new Date(now).toISOString(),
        expiresAt: r.lifetime > 0 ? new Date(now + r.lifetime * 1000).toISOString() : null,
      };
      this.#mappings.set(port, m);
      report.mapped.push(m);
      if (r.externalPort !== port) {
        report.different.push({ internalPort: port, externalPort: r.externalPort });
      }
    });
    if (report.mapped.length === 0 && report.error === null && report.requested > 0) {
      report.error = `the gateway mapped none of ${report.requested} ports` +
        (report.failed[0] ? ` (${report.failed[0].error})` : "");
    }
  }

  /** Keeps the report, logs what changed, and schedules the next round. */
  #finishRound(report: MappingReport): void {
    this.#rounds++;
    this.#lastRoundAt = this.#clock.now();
    const previous = this.#last;
    this.#last = report;
    if (report.externalAddress !== null) {
      if (this.#externalAddress !== null && this.#externalAddress !== report.externalAddress) {
        this.#log.warn("port mapping: the gateway's external address changed: {from} -> {to}", {
          from: this.#externalAddress,
          to: report.externalAddress,
        });
      }
      this.#externalAddress = report.externalAddress;
    }
    this.#logRound(report, previous);
    this.#schedule(report);
    try {
      this.#onRound?.(report);
    } catch (e) {
      this.#log.error("port mapping: onRound failed: {error}", { error: why(e) });
    }
  }

  /** Logs a round: its outcome when it differs from the last one, an error once. */
  #logRound(report: MappingReport, previous: MappingReport | null): void {
    const via = report.protocol === null ? "no protocol answered" : PROTOCOL_NAME[report.protocol];
    if (report.error !== null) {
      if (this.#loggedError !== report.error) {
        this.#log.warn("port mapping: {error} (gateway {gateway}, {via})", {
          error: report.error,
          gateway: report.gateway ?? "none",
          via,
        });
      }
      this.#loggedError = report.error;
      return;
    }
    this.#loggedError = null;
    const changed = previous === null || previous.error !== null || report.gatewayRestarted ||
      previous.mapped.length !== report.mapped.length;
    if (changed) {
      this.#log.info(
        "port mapping: {gateway} ({via}, external address {ext}) mapped {n} of {asked} ports" +
          " ({skipped} over the cap, {failed} failed)",
        {
          gateway: report.gateway,
          via,
          ext: report.externalAddress,
          n: report.mapped.length,
          asked: report.requested,
          skipped: report.skipped,
          failed: report.failed.length,
        },
      );
    }
    // Other external ports than asked: logged when they change, not at every renewal.
    const before = new Map(previous?.different.map((d) => [d.internalPort, d.externalPort]));
    const news = report.different.filter((d) => before.get(d.internalPort) !== d.externalPort);
    const control = news.find((d) => d.internalPort === this.#ports[0]);
    if (control) {
      this.#log.warn(
        "port mapping: the gateway forwards external port {ext} to the control port {port}:" +
          " clients on the internet must connect to {address}:{ext}",
        {
          ext: control.externalPort,
          port: control.internalPort,
          address: report.externalAddress ?? "the router's WAN address",
        },
      );
    }
    const others = news.filter((d) => d !== control);
    if (others.length > 0) {
      const shown = others.slice(0, 5).map((d) => `${d.internalPort}->${d.externalPort}`);
      this.#log.info(
        "port mapping: the gateway forwards {n} ports on other external ports ({list}); remote" +
          " clients are told those",
        {
          n: others.length,
          list: shown.join(", ") + (others.length > shown.length ? ", ..." : ""),
        },
      );
    }
  }

  #cancelTimer(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#nextRoundAt = null;
  }

  /**
   * The next round: at half the shortest lease granted (a permanent lease
   * counts as the lease asked for), or after retryMs when the round failed,
   * sooner when the mappings still held (a failed round keeps them) would
   * run out first.
   */
  #schedule(report: MappingReport): void {
    this.#cancelTimer();
    if (!this.#running) return;
    const held = report.error === null ? report.mapped : [...this.#mappings.values()];
    const leases = held.map((m) => m.lifetimeSeconds || this.#lease);
    const half = leases.length > 0 ? (Math.min(...leases) * 1000) / 2 : Infinity;
    const ok = report.error === null && report.failed.length === 0 && leases.length > 0;
    const delay = Math.max(MIN_RENEW_MS, ok ? half : Math.min(half, this.#retryMs));
    this.#nextRoundAt = this.#clock.now() + delay;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      void this.renewNow();
    }, delay);
  }
}

/** The gateway's state as {@linkcode Backend.state} gives it. */
type GatewayStateLike = Awaited<ReturnType<Backend["state"]>>;
