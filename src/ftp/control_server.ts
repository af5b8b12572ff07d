/**
 * The accept loop both `serve` and `proxy` run: binds the control port,
 * admits connections within the session limits (in total, per address,
 * banned addresses), runs one session per connection, and stops
 * gracefully. A session's failure never reaches the accept loop.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import * as net from "node:net";
import { type LoginThrottle, throttleFromLimits } from "../auth/throttle.ts";
import type { Config } from "../config/schema.ts";
import { normalizeAddress } from "../nat/announce.ts";
import { formatReply } from "./codec.ts";
import {
  closeQuietly,
  type Connection,
  TcpConnection,
  withTimeout,
  writeAll,
} from "./connection.ts";
import { NodeConnection, tlsHandshake, type TlsIdentity } from "./tls.ts";
import { Activity } from "../observe/activity.ts";
import { SharedLimits } from "./rate.ts";

/** What the status snapshot reads of a transfer in progress. */
export interface RunningTransfer {
  readonly ended: Promise<void>;
  /** One line for the terminal: the command, what it names, the bytes so far. */
  describe(): string;
  /** The command, its path, its direction, bytes so far, the size when known, and its start. */
  live(): {
    verb: string;
    path: string;
    direction: "in" | "out";
    bytes: number;
    size: number | null;
    startedAt: number;
  };
}

/** What the accept loop and the status snapshot need of a session. */
export interface ControlSession {
  readonly id: string;
  readonly peer: string;
  readonly peerPort: number;
  readonly openedAt: number;
  /** Logger properties naming the session. */
  readonly ctx: Record<string, unknown>;
  /** The user name seen, once known. */
  readonly userName: string | null;
  /** True when the control connection is TLS. */
  readonly secure: boolean;
  /** True when data connections are TLS (PROT P). */
  readonly protectData: boolean;
  /** The running transfer, if any. */
  readonly transfer: RunningTransfer | null;
  /** `Date.now()` of the last command. */
  readonly lastActivity: number;
  /** Passive ports the session holds a listener on. */
  readonly listeningPorts: number[];
  /** Serves the connection until it ends. */
  run(): Promise<void>;
  /** Tells the client 421 with `text` and ends the session. */
  shutdown(text: string): Promise<void>;
  /** The server's per-user rate buckets and session counts; set on admission. */
  shared?: SharedLimits | null;
}

/** Process-wide counters, read by the status and metrics endpoints. */
export interface ServerStats {
  loginsOk: number;
  loginsFailed: number;
  bytesIn: number;
  bytesOut: number;
  transfers: number;
}

/**
 * A control-connection server running sessions of type `S`: `serve` and
 * `proxy` extend it with their sessions and settings.
 */
export abstract class ControlServer<S extends ControlSession> {
  readonly sessions: Set<S> = new Set<S>();
  readonly stats: ServerStats = {
    loginsOk: 0,
    loginsFailed: 0,
    bytesIn: 0,
    bytesOut: 0,
    transfers: 0,
  };
  /** Recent transfers, failed logins and throughput, for the status page. */
  readonly activity: Activity = new Activity();
  /** Failed logins per client address; kept across reloads, so a reload lifts no ban. */
  readonly throttle: LoginThrottle;
  /** Rate buckets and logged-in sessions per user; kept across reloads (rates follow them). */
  readonly shared: SharedLimits = new SharedLimits();
  #listener: Deno.TcpListener | null = null;
  readonly #nodeServers: net.Server[] = [];
  #handshaking = 0;
  #accepting = false;
  #loop: Promise<void> = Promise.resolve();
  readonly #perAddress = new Map<string, number>();
  readonly #running = new Set<Promise<void>>();

  constructor(protected readonly log: Logger, limits: Config["limits"]) {
    this.throttle = throttleFromLimits(limits);
  }

  /** What the server shares with its sessions; a reload replaces its settings in place. */
  protected abstract readonly deps: { config: Config; tls: TlsIdentity | null };

  /** The live config: limits are read at each admission. */
  get config(): Config {
    return this.deps.config;
  }

  /** Makes the session for an admitted connection. */
  protected abstract createSession(conn: Connection): S;

  /**
   * Binds the control port from the live config and starts accepting, on
   * Deno's native sockets. A server with `tls` must use {@linkcode start}.
   */
  listen(): Deno.NetAddr {
    if (this.config.tls) throw new TypeError("a server with tls starts with start()");
    const { address, port } = this.config.listen;
    this.#listener = Deno.listen({ hostname: address, port, transport: "tcp" });
    this.#loop = this.#acceptLoop(this.#listener);
    this.activity.start(() => this.bytesMoved());
    return this.#listener.addr as Deno.NetAddr;
  }

  /**
   * Binds and starts accepting. With `tls`, control connections are
   * `node:net` sockets (only those can turn TLS after AUTH), and
   * `tls.implicit_port` gets a listener of its own that handshakes first.
   */
  async start(): Promise<Deno.NetAddr> {
    const tls = this.config.tls;
    if (!tls) return this.listen();
    const { address, port } = this.config.listen;
    const addr = await this.#listenNode(
      address,
      port,
      (socket) => this.#admit(new NodeConnection(socket)),
    );
    if (tls.implicit_port !== undefined) {
      await this.#listenNode(address, tls.implicit_port, (socket) => this.#admitImplicit(socket));
    }
    this.activity.start(() => this.bytesMoved());
    return addr;
  }

  /** Bytes moved since start in each direction, transfers in progress included. */
  bytesMoved(): { in: number; out: number } {
    const moved = { in: this.stats.bytesIn, out: this.stats.bytesOut };
    for (const s of this.sessions) {
      const t = s.transfer?.live();
      if (t) moved[t.direction] += t.bytes;
    }
    return moved;
  }

  /** The implicit-FTPS listener's port, once started (0 when there is none). */
  get implicitPort(): number {
    const server = this.#nodeServers[1];
    return server ? (server.address() as net.AddressInfo).port : 0;
  }

  async #listenNode(
    hostname: string,
    port: number,
    onConnection: (socket: net.Socket) => void,
  ): Promise<Deno.NetAddr> {
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      onConnection(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: hostname, port }, () => resolve());
    });
    this.#nodeServers.push(server);
    const info = server.address() as net.AddressInfo;
    return { transport: "tcp", hostname: info.address, port: info.port };
  }

  /** Implicit FTPS: TLS from the first byte, within the login deadline. */
  #admitImplicit(socket: net.Socket): void {
    const identity = this.deps.tls;
    // Handshakes in flight count against max_sessions: a flood of stalled
    // handshakes cannot hold more sockets than sessions could.
    if (!identity || this.#handshaking + this.sessions.size >= this.config.limits.max_sessions) {
      return void socket.destroy();
    }
    this.#handshaking++;
    tlsHandshake(socket, {
      context: identity.context,
      timeoutMs: this.config.limits.login_timeout_seconds * 1000,
    }).then((conn) => this.#admit(conn), (e) => {
      this.log.debug("implicit TLS handshake failed: {error}", { error: (e as Error).message });
    }).finally(() => this.#handshaking--);
  }

  /**
   * Why a new client would not get a session now (not listening, or full),
   * or null when one would: for `/health`, without opening a session.
   */
  get notAccepting(): string | null {
    const listening = this.#accepting || this.#nodeServers.some((s) => s.listening);
    if (!listening) return "the control port is not listening";
    if (this.sessions.size >= this.config.limits.max_sessions) {
      return `full: ${this.sessions.size} sessions (limits.max_sessions)`;
    }
    return null;
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    this.#accepting = true;
    try {
      await this.#acceptUntilClosed(listener);
    } finally {
      this.#accepting = false;
    }
  }

  async #acceptUntilClosed(listener: Deno.TcpListener): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
        this.log.error("accept failed: {error}", { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      try {
        conn.setNoDelay(true);
      } catch { /* not fatal */ }
      this.#admit(new TcpConnection(conn));
    }
  }

  #refusal(addr: string): string | null {
    const limits = this.config.limits;
    if (this.throttle.bannedFor(normalizeAddress(addr)) > 0) {
      return "Too many failed logins from your address; try again later";
    }
    if (this.sessions.size >= limits.max_sessions) return "Too many sessions; try again later";
    if ((this.#perAddress.get(addr) ?? 0) >= limits.max_sessions_per_address) {
      return "Too many sessions from your address; try again later";
    }
    return null;
  }

  #admit(conn: Connection): void {
    const log = this.log;
    const addr = conn.peer.host;
    const refusal = this.#refusal(addr);
    if (refusal) {
      // Logged at debug: a flood must not become a flood of log lines.
      log.debug("refused connection from {addr}: {reason}", { addr, reason: refusal });
      writeAll(conn, new TextEncoder().encode(formatReply(421, refusal)))
        .catch(() => {})
        .finally(() => closeQuietly(conn));
      return;
    }
    const session = this.createSession(conn);
    session.shared = this.shared;
    this.sessions.add(session);
    this.#perAddress.set(addr, (this.#perAddress.get(addr) ?? 0) + 1);
    const running = session.run().catch((e) => {
      log.error("session {session} failed: {error}", { ...session.ctx, error: e });
    }).finally(() => {
      this.sessions.delete(session);
      this.#running.delete(running);
      const left = (this.#perAddress.get(addr) ?? 1) - 1;
      if (left <= 0) this.#perAddress.delete(addr);
      else this.#perAddress.set(addr, left);
    });
    this.#running.add(running);
  }

  /**
   * Stops accepting, lets running transfers finish for up to `graceMs`,
   * then tells every client 421 and waits for the sessions to end.
   */
  async close(options: { graceMs?: number; text?: string } = {}): Promise<void> {
    closeQuietly(this.#listener);
    for (const server of this.#nodeServers.splice(0)) server.close();
    this.activity.stop();
    await this.#loop;
    const running = [...this.sessions].flatMap((s) => s.transfer ? [s.transfer.ended] : []);
    if (running.length && options.graceMs) {
      await withTimeout(Promise.allSettled(running), options.graceMs);
    }
    const text = options.text ?? "Server shutting down";
    await Promise.all([...this.sessions].map((s) => s.shutdown(text)));
    await Promise.all([...this.#running]);
  }
}
