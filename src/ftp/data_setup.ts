/**
 * Data-connection setup, the one place for serve and proxy alike: PASV,
 * EPSV, PORT and EPRT parsed and checked, what PASV announces (and why),
 * the passive listener that accepts only the control connection's peer
 * (kept a moment for the session's next transfer), and the active
 * connect-back to the peer. It works against a small {@linkcode DataContext},
 * not against a session of either product.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Config } from "../config/schema.ts";
import {
  activeTarget,
  announceAddress,
  announceInputs,
  type Announcement,
  type LanNetworks,
} from "../nat/announce.ts";
import { listenInRange } from "../nat/port_range.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { epsvReplyText, parseEprt, parseEpsvArg, parsePort, pasvReplyText } from "./codec.ts";
import { addressFamily, closeQuietly, type Connection, TcpConnection } from "./connection.ts";
import {
  acceptFromPeer,
  acceptNodeFromPeer,
  connectActive,
  connectNode,
  type MadeConnection,
} from "./data_connect.ts";
import { listenNodeInRange, NodeConnection, NodeListener, type TlsIdentity } from "./tls.ts";
import { DataError } from "./transfer_io.ts";

/** What data-connection setup reads of the server: the live settings. */
export interface DataDeps {
  config: Config;
  /** Null when no public address is configured. */
  publicAddress: PublicAddress | null;
  lan: LanNetworks;
  log: Logger;
  /** The certificate for PROT P data connections; null without `tls`. */
  tls: TlsIdentity | null;
  /** The router's port mappings (`port_mapping`); null or absent without them. */
  routerPorts?: RouterPorts | null;
}

/** What a server of either product is built with besides its config. */
export interface ServerOptions {
  /** Null when no public address is configured. */
  publicAddress: PublicAddress | null;
  /** The router's port mappings (`port_mapping`); default none. */
  routerPorts?: RouterPorts | null;
}

/**
 * The ports the router forwards to this machine (`port_mapping`), as
 * passive mode needs them: while it forwards any passive port, remote
 * clients get only forwarded ones, and are told each one's external port.
 */
export interface RouterPorts {
  /** The external port the router forwards to `internalPort`, or null when it forwards none. */
  externalPort(internalPort: number): number | null;
  /** How many of the ports `min`..`max` the router forwards now. */
  mappedIn(min: number, max: number): number;
}

/** What data-connection setup needs of a session. */
export interface DataContext {
  readonly id: string;
  /** The control connection's peer address (normalized). */
  readonly peer: string;
  /** The local address the control connection arrived at (normalized). */
  readonly local: string;
  /** Logger properties naming the session. */
  readonly ctx: Record<string, unknown>;
  readonly closed: boolean;
  readonly deps: DataDeps;
  /** The control connection is TLS: data connections go through `node:net`. */
  readonly secure: boolean;
  /** PROT P: data connections are TLS. */
  readonly protectData: boolean;
  /** This client must use TLS for data (`tls.required`). */
  readonly tlsRequired: boolean;
  reply(code: number, text: string): Promise<void>;
}

/**
 * How the next data connection is made: a passive listener (accepting
 * since PASV/EPSV; `viaPublic` when PASV told the public address) or an
 * active connect-back. One slot, so the two can never coexist.
 */
export type DataPlan =
  | {
    kind: "passive";
    listener: { close(): void };
    port: number;
    accepted: Promise<MadeConnection | null>;
    viaPublic: boolean;
    /** The native listener, kept for the next PASV once used; null for `node:net` ones. */
    native: Deno.TcpListener | null;
    /** The data connection is TLS (PROT P when PASV came). */
    protect: boolean;
  }
  | { kind: "active"; host: string; port: number; protect: boolean };

/** How long a passive listener is kept for the session's next transfer. */
export const SPARE_LISTENER_MS = 2000;
/** The reply to a transfer command that came before PASV/EPSV/PORT/EPRT. */
export const NO_DATA_PLAN = "Use PORT, EPRT, PASV or EPSV first";
const EPSV_ALL_REFUSAL = "EPSV ALL is in effect: only EPSV may set up data connections";

/** Setups holding a kept passive listener, oldest first. */
const withSpare = new Set<DataSetup>();
/** When a remote client was last warned about being told a LAN address. */
let lastFallbackWarning = 0;

/**
 * Closes the oldest kept passive listener of any session, so its port can
 * serve a PASV that found the range full. False when none is kept.
 */
export function reclaimSpareListener(): boolean {
  const oldest = withSpare.values().next();
  if (oldest.done) return false;
  oldest.value.dropSpare();
  return true;
}

/** One session's data-connection setup. */
export class DataSetup {
  /** Set by EPSV ALL: only EPSV may set up data connections from now on. */
  epsvAll = false;
  #plan: DataPlan | null = null;
  #announced: { publicAddress: string | null; lan: LanNetworks; decision: Announcement } | null =
    null;
  #spare:
    | { listener: Deno.TcpListener; port: number; timer: ReturnType<typeof setTimeout> }
    | null = null;

  constructor(readonly s: DataContext) {}

  /** Passive ports with a listener open: waiting for a transfer, or kept for the next. */
  get listeningPorts(): number[] {
    const ports = this.#plan?.kind === "passive" ? [this.#plan.port] : [];
    if (this.#spare) ports.push(this.#spare.port);
    return ports;
  }

  /** True while a passive listener waits for its transfer. */
  get hasPassive(): boolean {
    return this.#plan?.kind === "passive";
  }

  /** PASV: opens a passive port and tells the address {@linkcode announcement} chose. */
  async pasv(): Promise<void> {
    const { s } = this;
    if (this.epsvAll) return s.reply(503, EPSV_ALL_REFUSAL);
    const decision = this.announcement();
    if (decision.address === null) {
      return s.reply(522, "PASV needs IPv4 on the control connection; use EPSV (2)");
    }
    if (decision.source === "fallback-local" && Date.now() - lastFallbackWarning > 3_600_000) {
      lastFallbackWarning = Date.now();
      s.deps.log.warn(
        "remote client {peer} told the local address {address} in PASV: {reason} " +
          "(logged at most once an hour)",
        { ...s.ctx, address: decision.address, reason: decision.reason },
      );
    }
    const forwarded = this.#forwardedFor(decision);
    const port = await this.#openPassive(decision.source === "public", forwarded);
    if (port === null) return;
    const told = forwarded?.externalPort(port) ?? port;
    s.deps.log.debug("session {session}: PASV {address}:{told} ({reason})", {
      ...s.ctx,
      address: decision.address,
      told: told === port ? `${port}` : `${told} (router's external port for ${port})`,
      reason: decision.reason,
    });
    await s.reply(227, pasvReplyText({ host: decision.address, port: told }));
  }

  /** EPSV [ALL | family]: opens a passive port and tells only the port. */
  async epsv(arg: string): Promise<void> {
    const { s } = this;
    const a = parseEpsvArg(arg);
    if (a === null) return s.reply(501, "EPSV takes ALL or a network protocol number");
    if (a === "all") {
      this.epsvAll = true;
      return s.reply(200, "EPSV ALL ok");
    }
    const family = addressFamily(s.local);
    if (a === "family" || (typeof a === "number" && a !== family)) {
      return s.reply(522, `Network protocol not supported, use (${family})`);
    }
    const forwarded = this.#forwardedFor(this.announcement());
    const port = await this.#openPassive(false, forwarded);
    if (port === null) return;
    await s.reply(229, epsvReplyText(forwarded?.externalPort(port) ?? port));
  }

  /**
   * PORT or EPRT: only the port is taken from the command; the address is
   * the control connection's peer (see `activeTarget`).
   */
  async port(verb: "PORT" | "EPRT", arg: string): Promise<void> {
    const { s } = this;
    if (this.epsvAll) return s.reply(503, EPSV_ALL_REFUSAL);
    const family = addressFamily(s.local);
    let written: { host: string; port: number };
    if (verb === "PORT") {
      if (family === 2) return s.reply(522, "Network protocol not supported, use (2)");
      const hp = parsePort(arg);
      if (!hp) return s.reply(501, "Illegal PORT command");
      written = hp;
    } else {
      const e = parseEprt(arg);
      if (e === null) return s.reply(501, "Illegal EPRT command");
      if (e === "family" || e.family !== family) {
        return s.reply(522, `Network protocol not supported, use (${family})`);
      }
      written = e;
    }
    // SECURITY: never connect to a privileged port (bounce attacks on services).
    if (written.port < 1024) {
      return s.reply(504, "Refusing data connection to a privileged port");
    }
    const target = activeTarget({ peer: s.peer, written: written.host }, {
      allowFxp: s.deps.config.allow_fxp,
    });
    this.closePassive();
    this.#plan = {
      kind: "active",
      host: target.address,
      port: written.port,
      protect: s.protectData,
    };
    s.deps.log.debug("session {session}: {verb} -> {address}:{port} ({reason})", {
      ...s.ctx,
      verb,
      address: target.address,
      port: written.port,
      reason: target.reason,
    });
    await s.reply(200, `${verb} command successful; consider using PASV or EPSV`);
  }

  /**
   * What PASV tells this session's client. The peer and local addresses are
   * fixed for a session, so the decision is made again only when the public
   * address (or, after a reload, the LAN networks) changes.
   */
  announcement(): Announcement {
    const { deps, peer, local } = this.s;
    const publicAddress = deps.publicAddress?.current() ?? null;
    const cached = this.#announced;
    if (cached && cached.publicAddress === publicAddress && cached.lan === deps.lan) {
      return cached.decision;
    }
    const decision = announceAddress(
      announceInputs({ client: peer, local }, {
        publicAddress,
        configured: deps.config.public_address,
      }),
      deps.lan,
    );
    this.#announced = { publicAddress, lan: deps.lan, decision };
    return decision;
  }

  /**
   * The router's mappings to keep to for this client: for a remote client
   * over IPv4 while the router forwards any passive port; else null (any
   * port of the range, told as it is).
   */
  #forwardedFor(decision: Announcement): RouterPorts | null {
    const router = this.s.deps.routerPorts;
    if (!router || (decision.source !== "public" && decision.source !== "fallback-local")) {
      return null;
    }
    const { min_port: min, max_port: max } = this.s.deps.config.passive;
    return router.mappedIn(min, max) > 0 ? router : null;
  }

  /** Takes the plan for the transfer starting now; null when none was set up. */
  take(): DataPlan | null {
    const plan = this.#plan;
    this.#plan = null;
    return plan;
  }

  /**
   * Makes the data connection `plan` describes: the peer's connection on
   * the passive listener (which is then kept for the next PASV/EPSV), or
   * the connect-back. Throws a {@linkcode DataError} (425) when it fails.
   */
  async open(
    plan: DataPlan | null,
    options: { onConnected?: () => void } = {},
  ): Promise<Connection> {
    if (!plan) throw new DataError(425, NO_DATA_PLAN);
    this.check(plan);
    const made = await this.#connect(plan);
    // The 150 may go out now; under PROT P the handshake is still to come.
    options.onConnected?.();
    let conn: Connection;
    try {
      conn = await made.ready;
    } catch (e) {
      throw new DataError(425, `Can't open data connection: TLS: ${(e as Error).message}`);
    }
    if (conn instanceof NodeConnection && conn.encrypted) {
      this.s.deps.log.debug("session {session}: TLS data connection, session {how}", {
        ...this.s.ctx,
        how: conn.resumed ? "resumed" : "new (not resumed)",
      });
    }
    return conn;
  }

  async #connect(plan: DataPlan): Promise<MadeConnection> {
    const timeoutMs = this.s.deps.config.limits.data_timeout_seconds * 1000;
    if (plan.kind === "active") {
      if (this.s.secure) {
        return await connectNode(plan, { timeoutMs, tls: this.#dataTls(plan.protect) });
      }
      return {
        ready: Promise.resolve(new TcpConnection(await connectActive(plan, { timeoutMs }))),
      };
    }
    const made = await plan.accepted;
    if (!made) {
      this.s.deps.publicAddress?.hint(
        `session ${this.s.id}: passive port ${plan.port} was never connected`,
      );
      throw new DataError(425, "Can't open data connection: the client did not connect");
    }
    if (plan.native) this.#keepSpare(plan.native, plan.port);
    return made;
  }

  /**
   * SECURITY: a client that must use TLS (`tls.required`) gets no plain
   * data connection; the plan is let go.
   */
  check(plan: DataPlan): void {
    if (this.s.tlsRequired && !this.s.protectData) {
      this.discard(plan);
      throw new DataError(521, "Data connections must be encrypted: send PBSZ 0 and PROT P");
    }
    if (plan.protect !== this.s.protectData) {
      this.discard(plan);
      throw new DataError(
        425,
        "PROT changed after PASV/EPSV/PORT/EPRT; set up the data connection again",
      );
    }
  }

  /** The TLS context for a data connection, or null for a plain one. */
  #dataTls(protect: boolean): TlsIdentity["context"] | null {
    return protect ? this.s.deps.tls?.context ?? null : null;
  }

  /** Lets go of a plan no transfer will use. */
  discard(plan: DataPlan | null): void {
    if (plan?.kind !== "passive") return;
    closeQuietly(plan.listener);
    plan.accepted.then((made) => {
      if (made) made.ready.then(closeQuietly, () => {}); // connected, but no transfer came
      else if (plan.viaPublic) {
        // Announced with the public address and never connected: the
        // client could not reach it, so the address may be stale.
        this.s.deps.publicAddress?.hint(`passive port ${plan.port} was never connected`);
      }
    });
  }

  /** Closes the passive listener, if one waits (ABOR, PORT, a new PASV). */
  closePassive(): void {
    if (this.#plan?.kind === "passive") this.discard(this.take());
  }

  /** REIN: forgets the plan and EPSV ALL. */
  reset(): void {
    this.discard(this.take());
    this.epsvAll = false;
  }

  /** Session end: closes every listener. */
  close(): void {
    this.reset();
    this.dropSpare();
  }

  /** Closes the kept passive listener, if any. */
  dropSpare(): void {
    const spare = this.#takeSpare();
    if (spare) closeQuietly(spare.listener);
  }

  /** Opens a passive listener (one the router forwards, given `forwarded`); null after a 425. */
  async #openPassive(viaPublic: boolean, forwarded: RouterPorts | null): Promise<number | null> {
    const { s } = this;
    this.discard(this.take());
    const listener = await this.#passiveListener(forwarded);
    if (!listener) {
      const { min_port: min, max_port: max } = s.deps.config.passive;
      s.deps.log.warn("session {session}: every passive port {which} is busy", {
        ...s.ctx,
        which: forwarded
          ? `the router forwards (${forwarded.mappedIn(min, max)} of ${min}-${max})`
          : `${min}-${max}`,
      });
      await s.reply(425, "No passive port available; try again later");
      return null;
    }
    const port = listener instanceof NodeListener
      ? listener.port
      : (listener.addr as Deno.NetAddr).port;
    const options = {
      peer: s.peer,
      timeoutMs: s.deps.config.limits.data_timeout_seconds * 1000,
      onStranger: (from: string) =>
        s.deps.log.warn(
          "session {session}: refused data connection from {from} on passive port {port}",
          { ...s.ctx, from, port },
        ),
    };
    const protect = s.protectData;
    // Accept at once, not when the transfer command comes: clients connect
    // right after the 227/229, so the connection is ready when RETR arrives.
    const accepted = listener instanceof NodeListener
      ? acceptNodeFromPeer(listener, { ...options, tls: this.#dataTls(protect) })
      : acceptFromPeer(listener, { ...options, keepOpen: true }).then((c) =>
        c && { ready: Promise.resolve(new TcpConnection(c)) }
      );
    const native = listener instanceof NodeListener ? null : listener;
    this.#plan = { kind: "passive", listener, port, accepted, viaPublic, native, protect };
    return port;
  }

  /**
   * The kept listener when it is still in the range (and forwarded, given
   * `forwarded`), else a new one.
   */
  async #passiveListener(
    forwarded: RouterPorts | null,
  ): Promise<Deno.TcpListener | NodeListener | null> {
    const { min_port: min, max_port: max } = this.s.deps.config.passive;
    const accept = forwarded ? (port: number) => forwarded.externalPort(port) !== null : undefined;
    if (this.s.secure) {
      return await listenNodeInRange({ hostname: this.s.local, min, max, accept });
    }
    const spare = this.#takeSpare();
    if (spare && spare.port >= min && spare.port <= max && (accept?.(spare.port) ?? true)) {
      return spare.listener;
    }
    closeQuietly(spare?.listener);
    const bind = () => listenInRange({ hostname: this.s.local, min, max, accept });
    let listener = await bind();
    // A full range may be held by other sessions' kept listeners: take those
    // back, oldest first (at most one per kept listener).
    while (!listener && reclaimSpareListener()) listener = await bind();
    return listener;
  }

  /**
   * Keeps a passive listener whose data connection was accepted, for the
   * next PASV/EPSV of this session: back-to-back transfers (a mirror of many
   * small files) then skip a bind and a close each. It is closed after
   * {@linkcode SPARE_LISTENER_MS} unused, so idle sessions hold no port.
   * Connections that arrive meanwhile wait in the backlog and go through the
   * same peer check as on a new listener.
   */
  #keepSpare(listener: Deno.TcpListener, port: number): void {
    this.dropSpare();
    if (this.s.closed) return closeQuietly(listener);
    const timer = setTimeout(() => this.dropSpare(), SPARE_LISTENER_MS);
    this.#spare = { listener, port, timer };
    withSpare.add(this);
  }

  #takeSpare(): { listener: Deno.TcpListener; port: number } | null {
    const spare = this.#spare;
    if (!spare) return null;
    this.#spare = null;
    withSpare.delete(this);
    clearTimeout(spare.timer);
    return spare;
  }
}
