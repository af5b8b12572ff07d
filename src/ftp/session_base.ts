/**
 * The session lifecycle serve and proxy share: the command loop over the
 * control connection, the login deadline (counted from connect) and the
 * idle timeout, failed-login accounting and bans, transfer records and
 * statistics, the transfer buffer, and closing. Each product extends
 * {@linkcode SessionBase} with what it does with a command.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { LoginThrottle } from "../auth/throttle.ts";
import type { Config } from "../config/schema.ts";
import type { LanNetworks } from "../nat/announce.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { closeQuietly, type Connection, hostPort } from "./connection.ts";
import type { Activity } from "../observe/activity.ts";
import type { ControlSession, RunningTransfer, ServerStats } from "./control_server.ts";
import { type DataContext, DataSetup, type RouterPorts } from "./data_setup.ts";
import { formatReply } from "./codec.ts";
import { type CommandLine, readCommands } from "./line_reader.ts";
import { OrderedWriter } from "./reply_writer.ts";
import { NodeConnection, type TlsIdentity, tlsRequiredFor, upgradeControl } from "./tls.ts";
import { BUFFER_SIZE, giveBuffer, takeBuffer } from "./transfer_io.ts";
import type { Direction, RateLimit, SharedLimits } from "./rate.ts";

/** What every session, of either product, shares with its server. */
export interface KitDeps {
  config: Config;
  /** Null when no public address is configured. */
  publicAddress: PublicAddress | null;
  lan: LanNetworks;
  log: Logger;
  /** Counters the status and metrics endpoints read. */
  stats: ServerStats;
  /** Failed logins per client address. */
  throttle: LoginThrottle;
  /** Recent transfers and failed logins, for the status page. */
  activity: Activity;
  /** The certificate for FTPS; null when `tls` is not configured. */
  tls: TlsIdentity | null;
  /** The router's port mappings (`port_mapping`); null without them. */
  routerPorts: RouterPorts | null;
}

/** One finished (or failed) data transfer, for the log and the counters. */
export interface TransferRecord {
  direction: "in" | "out";
  /** The path (serve) or the command's argument (proxy). */
  what: string;
  bytes: number;
  /** `performance.now()` when the transfer began. */
  started: number;
  result: string;
  /** The command, where the log should name it (proxy). */
  verb?: string;
  /** The command, for the status page only (serve's log line names the direction). */
  command?: string;
  /** The upstream's final reply code (proxy). */
  upstreamCode?: number;
}

let nextId = 1;

/** The transfer log line's templates: plain, with cmd=, with upstream=, with both. */
const TRANSFER_LINES: readonly string[] = [false, true].flatMap((upstream) =>
  [false, true].map((verb) =>
    "transfer user={user} dir={direction}" + (verb ? " cmd={verb}" : "") +
    " path={what} bytes={bytes} seconds={seconds} rate={rate} result={result}" +
    (upstream ? " upstream={code}" : "")
  )
);

/** A control connection's session: the lifecycle both products share. */
export abstract class SessionBase<D extends KitDeps = KitDeps>
  implements ControlSession, DataContext {
  readonly id: string;
  readonly peer: string;
  readonly peerPort: number;
  readonly local: string;
  readonly openedAt = Date.now();
  /** PASV/EPSV/PORT/EPRT and the data connections they describe. */
  readonly data: DataSetup;
  closed = false;
  /** PBSZ was sent (under TLS): PROT may follow. */
  pbsz = false;
  /** PROT P: data connections are TLS. */
  protectData = false;
  /** Failed logins in this session. */
  loginFailures = 0;
  /** The running transfer, if any; the idle timer waits while one runs. */
  abstract readonly transfer: RunningTransfer | null;
  /** `Date.now()` of the last command (or of the connect). */
  lastActivity: number = Date.now();
  /** The server's per-user rate buckets and session counts (null: none, as in unit tests). */
  shared: SharedLimits | null = null;
  /** The user whose login this session holds in `shared`'s count. */
  #counted: string | null = null;
  /** The live config (a reload replaces it), for the rate limits; made at the first transfer. */
  #liveConfig: (() => Config) | null = null;
  protected readonly out: OrderedWriter;
  #buf: Uint8Array | null = null;
  #idle: ReturnType<typeof setTimeout> | undefined;
  #deadline = 0;
  #timerAt = 0;
  /** When the login deadline started counting: the connect, then each REIN. */
  #loginClock: number | null = this.openedAt;
  readonly #finished = Promise.withResolvers<void>();
  #finishing = false;

  #conn: Connection;
  #peerText: string | undefined;

  constructor(conn: Connection, readonly deps: D, idPrefix: string) {
    this.#conn = conn;
    this.id = `${idPrefix}${nextId++}`;
    this.peer = conn.peer.host;
    this.peerPort = conn.peer.port;
    this.local = conn.local.host;
    this.out = new OrderedWriter(conn, () => this.closed, () => this.close());
    this.data = new DataSetup(this);
    // Implicit FTPS: TLS from the first byte, data always protected.
    if (this.secure) this.pbsz = this.protectData = true;
  }

  /** The control connection (replaced once, by AUTH TLS). */
  get conn(): Connection {
    return this.#conn;
  }

  /** True when the control connection is TLS. */
  get secure(): boolean {
    return this.#conn instanceof NodeConnection && this.#conn.encrypted;
  }

  /** True when this client must use TLS for login and data (`tls.required`). */
  get tlsRequired(): boolean {
    const tls = this.deps.config.tls;
    if (!tls || !this.deps.tls) return false;
    return tlsRequiredFor(this.peer, { policy: tls.required, lan: this.deps.lan });
  }

  /**
   * AUTH TLS: replies 234 once every earlier reply is out, then makes the
   * control connection TLS. Bytes the client sent after AUTH are dropped,
   * never read as commands. False (and the session closed) when the
   * handshake fails.
   */
  async startTls(): Promise<boolean> {
    const conn = this.#conn;
    const identity = this.deps.tls;
    if (!(conn instanceof NodeConnection) || !identity) return false;
    await this.out.flushed();
    try {
      const secure = await upgradeControl(conn, {
        reply: new TextEncoder().encode(formatReply(234, "AUTH TLS ok; start the handshake")),
        context: identity.context,
        timeoutMs: this.deps.config.limits.login_timeout_seconds * 1000,
      });
      this.#conn = secure;
      this.out.conn = secure;
      this.deps.log.debug("session {session}: control connection is TLS", this.ctx);
      return true;
    } catch (e) {
      this.deps.log.info("session {session}: TLS handshake failed: {error}", {
        ...this.ctx,
        error: (e as Error).message,
      });
      this.close();
      return false;
    }
  }

  /** The user name to show in the log and status, once known. */
  abstract get userName(): string | null;

  /** Whether a login succeeded: picks the idle timeout over the login deadline. */
  protected abstract get loggedIn(): boolean;

  /** Greets the client; false ends the session at once. */
  protected abstract open(): Promise<boolean>;

  /** Handles one item read from the control connection. */
  protected abstract handle(item: CommandLine): Promise<void>;

  /** Stops what the product runs besides the control connection (transfers, upstream). */
  protected abstract onClose(): void;

  /** `host:port` of the client, as the log and the status page show it. */
  get peerText(): string {
    return this.#peerText ??= hostPort(this.peer, this.peerPort);
  }

  /** The session's logger context, for every line it logs. */
  get ctx(): Record<string, unknown> {
    return { session: this.id, peer: this.peerText, user: this.userName ?? "-" };
  }

  /** Sends a reply; replies are written in order, errors end the session. */
  reply(code: number, text: string | readonly string[]): Promise<void> {
    return this.out.reply(code, text);
  }

  /** Serves the connection until QUIT, timeout or disconnect. */
  async run(): Promise<void> {
    const { config, log } = this.deps;
    log.info("session {session} opened from {peer}", this.ctx);
    try {
      if (!await this.open()) return;
      this.touch();
      const maxLength = config.limits.max_line_length;
      // A new reader after AUTH TLS: nothing read before the handshake counts.
      for (let reader = this.conn; !this.closed; reader = this.conn) {
        for await (const item of readCommands(reader, { maxLength })) {
          if (this.closed) break;
          this.touch();
          await this.handle(item);
          if (this.closed || this.conn !== reader) break;
          this.touch(); // again: logging in switches to the longer timeout
        }
        if (this.conn === reader) break;
      }
    } catch (e) {
      if (!this.closed) {
        log.debug("session {session} read error: {error}", { ...this.ctx, error: e });
      }
    } finally {
      await this.finish();
    }
  }

  /** Resolves when the session has finished cleaning up. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }

  /** Tells the client 421 and ends the session; resolves once it has ended. */
  async shutdown(text: string): Promise<void> {
    await this.reply(421, text);
    this.close();
    await this.finished;
  }

  /**
   * Moves the timeout after a command. Before login the clock runs from the
   * connect (or REIN), not from the last command: NOOPs must not hold an
   * unauthenticated session open. One timer serves many commands: it fires
   * at the old deadline, sees the new one, and sleeps again, so a busy
   * session does not create and cancel a timer per command.
   */
  protected touch(): void {
    this.lastActivity = Date.now();
    const limits = this.deps.config.limits;
    const loggedIn = this.loggedIn;
    const seconds = loggedIn ? limits.idle_timeout_seconds : limits.login_timeout_seconds;
    if (this.#counted !== null && !loggedIn) this.#releaseLogin(); // after REIN
    if (loggedIn) this.#loginClock = null;
    else this.#loginClock ??= Date.now();
    this.#deadline = (this.#loginClock ?? Date.now()) + seconds * 1000;
    if (this.#idle === undefined || this.#deadline < this.#timerAt) this.#startIdleTimer();
  }

  #startIdleTimer(): void {
    clearTimeout(this.#idle);
    this.#timerAt = this.#deadline;
    this.#idle = setTimeout(() => {
      this.#idle = undefined;
      if (this.closed) return;
      if (this.transfer) return this.touch();
      if (Date.now() < this.#deadline) return this.#startIdleTimer();
      const state = this.loggedIn ? "idle" : "not logged in";
      this.deps.log.info(`session {session} ${state} too long: closing`, this.ctx);
      this.reply(421, "Idle timeout; closing control connection").finally(() => this.close());
    }, Math.max(0, this.#deadline - Date.now()));
  }

  /** Passive ports this session holds a listener on. */
  get listeningPorts(): number[] {
    return this.data.listeningPorts;
  }

  /**
   * Counts a successful login and forgets the address's failures. False
   * when the user has `max_sessions` sessions already: the client is told
   * 421 and the session ends (a reply queued after this one is dropped).
   */
  loginSucceeded(): boolean {
    const { stats, throttle, log, config } = this.deps;
    throttle.succeed(this.peer);
    const name = this.userName;
    if (name !== null && this.shared && this.#counted === null) {
      if (!this.shared.claimSession(config, name)) {
        log.info("session {session}: {user} has max_sessions ({max}) sessions: refused", {
          ...this.ctx,
          max: this.shared.maxSessions(config, name),
        });
        // close() runs before a reply queued after this one, which is thus dropped.
        this.reply(421, "Too many sessions for this user").then(() => this.close());
        return false;
      }
      this.#counted = name;
    }
    stats.loginsOk++;
    log.info("session {session} logged in as {user}", this.ctx);
    return true;
  }

  #releaseLogin(): void {
    if (this.#counted !== null) this.shared?.releaseSession(this.#counted);
    this.#counted = null;
  }

  /**
   * The rate limit a transfer in `direction` ("out": download) waits on,
   * shared with the user's other sessions and the whole server; null when
   * none applies. Whatever moves a file's bytes takes them chunk by chunk
   * with `pace` (rate.ts), or passes the limit to `pump`.
   */
  rateLimit(direction: Direction): RateLimit | null {
    if (!this.shared) return null;
    this.#liveConfig ??= () => this.deps.config;
    return this.shared.limitFor(this.#liveConfig, this.userName, direction, BUFFER_SIZE);
  }

  /**
   * Counts a failed login for the session and the address (which may start
   * a ban). True when the session must end: too many failures in it, or
   * its address is banned now.
   */
  loginFailed(name: string): boolean {
    const { stats, throttle, log, config } = this.deps;
    stats.loginsFailed++;
    this.loginFailures++;
    if (throttle.fail(this.peer)) {
      log.warn("address {addr} banned for {seconds} s after repeated failed logins", {
        addr: this.peer,
        seconds: config.limits.ban_seconds,
      });
    }
    const user = name.replace(/\p{Cc}/gu, "?").slice(0, 64);
    // addr before the client-chosen name, so a fail2ban filter can anchor on it.
    log.warn("session {session}: login failed addr={addr} user={name}", {
      ...this.ctx,
      addr: this.peer,
      name: user,
    });
    this.deps.activity.loginFailures.push({ at: new Date().toISOString(), addr: this.peer, user });
    return this.loginFailures >= config.limits.max_login_failures ||
      throttle.bannedFor(this.peer) > 0;
  }

  /** Logs a transfer's one line and adds it to the counters. */
  recordTransfer(r: TransferRecord): void {
    const { stats, log } = this.deps;
    const seconds = (performance.now() - r.started) / 1000;
    if (r.direction === "in") stats.bytesIn += r.bytes;
    else stats.bytesOut += r.bytes;
    stats.transfers++;
    this.deps.activity.transfers.push({
      at: new Date().toISOString(),
      peer: this.peerText,
      user: this.userName,
      verb: r.verb ?? r.command ?? (r.direction === "in" ? "STOR" : "RETR"),
      path: r.what,
      direction: r.direction,
      bytes: r.bytes,
      seconds: Math.round(seconds * 1000) / 1000,
      result: r.result,
    });
    log.info(
      TRANSFER_LINES[(r.verb ? 1 : 0) + (r.upstreamCode ? 2 : 0)],
      {
        ...this.ctx,
        direction: r.direction,
        verb: r.verb,
        what: r.what,
        bytes: r.bytes,
        seconds: seconds.toFixed(3),
        rate: `${(r.bytes / 1e6 / Math.max(seconds, 1e-6)).toFixed(1)}MB/s`,
        result: r.result,
        code: r.upstreamCode,
      },
    );
  }

  /** The transfer buffer, taken from the pool while a transfer runs. */
  get buffer(): Uint8Array {
    return this.#buf ??= takeBuffer();
  }

  /** Gives the transfer buffer back to the pool once the transfer is over. */
  releaseBuffer(): void {
    if (this.#buf) giveBuffer(this.#buf);
    this.#buf = null;
  }

  /** Ends the session at once: transfers, listeners, the control connection. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#idle);
    this.#releaseLogin();
    this.onClose();
    this.data.close();
    closeQuietly(this.conn);
  }

  /** The end of {@linkcode run}: flushes the replies, closes, logs. */
  protected async finish(): Promise<void> {
    if (this.#finishing) return;
    this.#finishing = true;
    clearTimeout(this.#idle);
    await this.out.flushed();
    this.close();
    this.deps.log.info("session {session} closed {peer} user={user} after {seconds} s", {
      ...this.ctx,
      seconds: Math.round((Date.now() - this.openedAt) / 1000),
    });
    this.#finished.resolve();
  }
}
