/**
 * One proxied session: the client's control connection relayed line by line
 * to its own upstream connection, with the address-carrying commands
 * (PASV, EPSV, PORT, EPRT) answered by the proxy and each transfer's two
 * data connections joined by a {@linkcode DataRelay}.
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Config } from "../config/schema.ts";
import {
  epsvReplyText,
  formatReply,
  parseCommand,
  parseEprt,
  parseEpsvArg,
  parseEpsvReply,
  parsePasvReply,
  parsePort,
  pasvReplyText,
} from "../ftp/codec.ts";
import {
  acceptFromPeer,
  connectActive,
  DataError,
  giveBuffer,
  OrderedWriter,
  takeBuffer,
} from "../ftp/data_channel.ts";
import type { ControlSession, ServerStats } from "../ftp/control_server.ts";
import type { LoginThrottle } from "../auth/throttle.ts";
import { readCommands } from "../ftp/line_reader.ts";
import {
  activeTarget,
  announceAddress,
  type LanNetworks,
  normalizeAddress,
} from "../nat/announce.ts";
import { listenInRange } from "../nat/port_range.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import {
  classifyCommand,
  filterFeatReply,
  finalReplyFor,
  REFUSED_COMMANDS,
  type Reply,
  replyText,
  replyWire,
  TRANSFER_COMMANDS,
  type TransferDirection,
} from "./protocol.ts";
import { DataRelay, type RelayResult } from "./relay.ts";
import {
  connectUpstream,
  type UpstreamControl,
  type UpstreamEnd,
  UpstreamError,
} from "./upstream.ts";

/** What every proxied session shares with the proxy server. */
export interface ProxyDeps {
  config: Config;
  /** The upstream server and how long to wait for it. */
  upstream: { host: string; port: number; connectTimeoutMs: number };
  /** Null when no public address is configured. */
  publicAddress: PublicAddress | null;
  lan: LanNetworks;
  log: Logger;
  /** Counters the status endpoint reads. */
  stats: ServerStats;
  /** Failed logins per client address (the upstream's 530 replies). */
  throttle: LoginThrottle;
}

/** How long a closing session waits for its upstream reply loop to end. */
const FINISH_WAIT_MS = 5_000;
let nextId = 1;
const encoder = new TextEncoder();

/** Where the client's side of the next data connection comes from. */
type ClientSide =
  | { kind: "passive"; listener: Deno.TcpListener; port: number }
  | { kind: "active"; host: string; port: number };

/** One transfer: set up, relaying, or failed to reach the client. */
export class ProxyTransfer {
  state: "setup" | "relaying" | "failed-open" = "setup";
  aborted = false;
  upstream: Deno.TcpConn | null = null;
  relay: DataRelay | null = null;
  openError = "";
  readonly started = performance.now();
  readonly #ended = Promise.withResolvers<void>();

  constructor(
    readonly verb: string,
    readonly arg: string,
    readonly direction: TransferDirection,
    readonly client: ClientSide,
  ) {}

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
    if (this.client.kind === "passive") {
      try {
        this.client.listener.close();
      } catch { /* already closed */ }
    }
    try {
      this.upstream?.close();
    } catch { /* already closed */ }
  }

  describe(): string {
    const what = this.arg ? `${this.verb} ${this.arg}` : this.verb;
    return `${what}, ${this.relay?.progress.bytes ?? 0} bytes`;
  }
}

/** One client's session through the proxy. */
export class ProxySession implements ControlSession {
  readonly id: string;
  readonly peer: string;
  readonly peerPort: number;
  readonly local: string;
  readonly openedAt = Date.now();
  /** The last user name the client sent with USER. */
  user: string | null = null;
  /** True after the upstream accepted a login. */
  loggedIn = false;
  transfer: ProxyTransfer | null = null;
  closed = false;
  #up: UpstreamControl | null = null;
  #passive: { listener: Deno.TcpListener; port: number } | null = null;
  #active: { host: string; port: number } | null = null;
  #epsvAll = false;
  #rest: string | null = null;
  #upstreamEpsv = true;
  #quitSent = false;
  #told421 = false;
  #finished = false;
  #buf: Uint8Array | null = null;
  readonly #out: OrderedWriter;
  #idle: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly conn: Deno.TcpConn, readonly deps: ProxyDeps) {
    this.id = `p${nextId++}`;
    this.#out = new OrderedWriter(conn, () => this.closed, () => this.close());
    this.peer = normalizeAddress(conn.remoteAddr.hostname);
    this.peerPort = conn.remoteAddr.port;
    this.local = normalizeAddress(conn.localAddr.hostname);
  }

  /** The user name seen in USER, for status. */
  get userName(): string | null {
    return this.user;
  }

  /** The logger context of every line this session logs. */
  get ctx(): Record<string, unknown> {
    return {
      session: this.id,
      peer: `${this.peer}:${this.peerPort}`,
      user: this.user ?? "-",
    };
  }

  get #upstreamLabel(): string {
    const { host, port } = this.deps.upstream;
    return `${host.includes(":") ? `[${host}]` : host}:${port}`;
  }

  /** Relays the session until either side ends it. */
  async run(): Promise<void> {
    const { config, log, upstream } = this.deps;
    log.info("session {session} opened from {peer}", this.ctx);
    let upstreamDone: Promise<void> = Promise.resolve();
    try {
      let greeting: Reply[];
      try {
        const connected = await connectUpstream(upstream, { timeoutMs: upstream.connectTimeoutMs });
        this.#up = connected.control;
        greeting = connected.greeting;
      } catch (e) {
        log.error("session {session}: FTP server {upstream} unreachable: {error}", {
          ...this.ctx,
          upstream: this.#upstreamLabel,
          error: (e as Error).message,
        });
        await this.#reply(
          421,
          "Service not available: the FTP server behind this proxy cannot be reached",
        );
        return;
      }
      for (const reply of greeting) this.#forward(reply);
      const last = greeting[greeting.length - 1];
      if (last.code !== 220) {
        log.warn("session {session}: FTP server {upstream} refused the session: {reply}", {
          ...this.ctx,
          upstream: this.#upstreamLabel,
          reply: last.lines[0],
        });
        return;
      }
      const up = this.#up;
      upstreamDone = up.run((reply) => this.#unsolicited(reply)).then((end) =>
        this.#upstreamEnded(end)
      );
      this.#armIdle();
      const maxLength = config.limits.max_line_length;
      for await (const item of readCommands(this.conn, { maxLength })) {
        if (this.closed) break;
        this.#armIdle();
        if (item.kind === "too-long") {
          await up.idle();
          await this.#reply(500, "Command line too long");
        } else if (item.kind === "bad-utf8") {
          await up.idle();
          await this.#reply(501, "Command is not valid UTF-8");
        } else {
          await this.#dispatch(item.text);
        }
        if (this.closed) break;
      }
    } catch (e) {
      if (!this.closed) {
        log.debug("session {session}: read error: {error}", { ...this.ctx, error: e });
      }
    } finally {
      await this.#finish();
      await boundedWait(upstreamDone, FINISH_WAIT_MS);
    }
  }

  async #dispatch(line: string): Promise<void> {
    const up = this.#up!;
    const { verb, arg } = parseCommand(line);
    if (/[\r\0]/.test(line)) {
      // A bare CR could end the line early at the upstream and smuggle a
      // second command past the proxy.
      await up.idle();
      return this.#reply(501, "Command contains a CR or NUL character");
    }
    const action = classifyCommand(verb);
    this.deps.log.debug("session {session}: {verb}", { ...this.ctx, verb });
    switch (action) {
      case "refuse":
        await up.idle();
        return this.#reply(502, REFUSED_COMMANDS.get(verb)!);
      case "pasv":
        await up.idle();
        return this.#pasv();
      case "epsv":
        await up.idle();
        return this.#epsv(arg);
      case "port":
      case "eprt":
        await up.idle();
        return this.#port(verb, arg);
      case "transfer":
        return this.#startTransfer(verb, arg, line);
      case "abort":
        this.#rest = null;
        this.#send(up, line, verb);
        this.transfer?.abort();
        return;
      case "rest":
        this.#rest = arg;
        this.#send(up, line, verb);
        return;
      default:
        this.#rest = null;
        if (verb === "USER") {
          // Shown in the log and status: no control characters, bounded.
          this.user = arg.trim().replace(/\p{Cc}/gu, "?").slice(0, 64) || null;
          this.loggedIn = false;
          this.deps.log.info("session {session}: USER {user}", this.ctx);
        }
        if (verb === "QUIT") this.#quitSent = true;
        this.#send(up, line, verb);
    }
  }

  /** Forwards a client command; its replies go back to the client as they come. */
  #send(up: UpstreamControl, line: string, verb: string): void {
    up.send(line, { onReply: (reply, final) => this.#relayReply(verb, reply, final) })
      .catch(() => {/* the reply loop reports the lost connection */});
  }

  #relayReply(verb: string, reply: Reply, final: boolean): void {
    if (!final) return void this.#forward(reply);
    const { stats, log } = this.deps;
    if (verb === "USER" || verb === "PASS" || verb === "ACCT") {
      if (reply.code === 230 && !this.loggedIn) {
        this.loggedIn = true;
        this.#armIdle(); // the longer idle timeout from now on
        stats.loginsOk++;
        this.deps.throttle.succeed(this.peer);
        log.info("session {session}: login ok user={user}", this.ctx);
      } else if (reply.code === 530) {
        stats.loginsFailed++;
        log.info("session {session}: login failed user={user}", this.ctx);
        if (this.deps.throttle.fail(this.peer)) {
          log.warn("address {addr} banned for {seconds} s after repeated failed logins", {
            addr: this.peer,
            seconds: this.deps.config.limits.ban_seconds,
          });
        }
      }
    } else if (verb === "REST" && reply.code !== 350) {
      this.#rest = null;
    } else if (verb === "REIN" && reply.code < 300) {
      this.loggedIn = false;
    }
    this.#forward(verb === "FEAT" ? filterFeatReply(reply) : reply);
  }

  #unsolicited(reply: Reply): void {
    if (reply.code === 421) this.#told421 = true;
    this.deps.log.info("session {session}: FTP server says {reply}", {
      ...this.ctx,
      reply: reply.lines[0],
    });
    this.#forward(reply);
  }

  async #upstreamEnded(end: UpstreamEnd): Promise<void> {
    if (this.closed) return;
    const { log } = this.deps;
    if (end.kind === "error") {
      log.error("session {session}: bad reply from FTP server {upstream}: {error}", {
        ...this.ctx,
        upstream: this.#upstreamLabel,
        error: end.message,
      });
    }
    if (!this.#quitSent && !this.#told421) {
      if (end.kind === "eof") {
        log.warn("session {session}: FTP server {upstream} closed the connection", {
          ...this.ctx,
          upstream: this.#upstreamLabel,
        });
      }
      await this.#reply(421, "Connection to the FTP server lost; closing");
    }
    await this.#out.flushed();
    this.close();
  }

  // ---- replies to the client ----------------------------------------------

  #write(text: string): Promise<void> {
    return this.#out.write(encoder.encode(text));
  }

  /** A reply of the proxy's own. */
  #reply(code: number, text: string): Promise<void> {
    return this.#write(formatReply(code, text));
  }

  /** An upstream reply, unchanged. */
  #forward(reply: Reply): Promise<void> {
    return this.#write(replyWire(reply));
  }

  // ---- the address-carrying commands ----------------------------------------

  #closePassive(): void {
    try {
      this.#passive?.listener.close();
    } catch { /* already closed */ }
    this.#passive = null;
  }

  async #openPassive(): Promise<number | null> {
    this.#closePassive();
    this.#active = null;
    const { min_port, max_port } = this.deps.config.passive;
    const listener = await listenInRange({ hostname: this.local, min: min_port, max: max_port });
    if (!listener) {
      this.deps.log.warn("session {session}: every passive port {min}-{max} is busy", {
        ...this.ctx,
        min: min_port,
        max: max_port,
      });
      await this.#reply(425, "No passive port available; try again later");
      return null;
    }
    const port = (listener.addr as Deno.NetAddr).port;
    this.#passive = { listener, port };
    return port;
  }

  async #pasv(): Promise<void> {
    if (this.#epsvAll) {
      return this.#reply(503, "EPSV ALL is in effect: only EPSV may set up data connections");
    }
    const { config, publicAddress, lan } = this.deps;
    const decision = announceAddress({
      client: this.peer,
      local: this.local,
      publicAddress: publicAddress?.current() ?? null,
      publicSource: config.public_address?.host,
      publicConfigured: config.public_address !== undefined,
    }, lan);
    if (decision.address === null) {
      return this.#reply(522, "PASV needs IPv4 on the control connection; use EPSV (2)");
    }
    const port = await this.#openPassive();
    if (port === null) return;
    this.deps.log.debug("session {session}: PASV {address}:{port} ({reason})", {
      ...this.ctx,
      address: decision.address,
      port,
      reason: decision.reason,
    });
    await this.#reply(227, pasvReplyText({ host: decision.address, port }));
  }

  async #epsv(arg: string): Promise<void> {
    const a = parseEpsvArg(arg);
    if (a === null) return this.#reply(501, "EPSV takes ALL or a network protocol number");
    if (a === "all") {
      this.#epsvAll = true;
      return this.#reply(200, "EPSV ALL ok");
    }
    const family = this.local.includes(":") ? 2 : 1;
    if (a === "family" || (typeof a === "number" && a !== family)) {
      return this.#reply(522, `Network protocol not supported, use (${family})`);
    }
    const port = await this.#openPassive();
    if (port === null) return;
    await this.#reply(229, epsvReplyText(port));
  }

  #port(verb: string, arg: string): Promise<void> {
    if (this.#epsvAll) {
      return this.#reply(503, "EPSV ALL is in effect: only EPSV may set up data connections");
    }
    const family = this.local.includes(":") ? 2 : 1;
    let written: { host: string; port: number };
    if (verb === "PORT") {
      if (family === 2) return this.#reply(522, "Network protocol not supported, use (2)");
      const hp = parsePort(arg);
      if (!hp) return this.#reply(501, "Illegal PORT command");
      written = hp;
    } else {
      const e = parseEprt(arg);
      if (e === null) return this.#reply(501, "Illegal EPRT command");
      if (e === "family" || e.family !== family) {
        return this.#reply(522, `Network protocol not supported, use (${family})`);
      }
      written = e;
    }
    if (written.port < 1024) {
      return this.#reply(504, "Refusing data connection to a privileged port");
    }
    const target = activeTarget({ peer: this.peer, written: written.host }, {
      allowFxp: this.deps.config.allow_fxp,
    });
    this.#closePassive();
    this.#active = { host: target.address, port: written.port };
    this.deps.log.debug("session {session}: {verb} -> {address}:{port} ({reason})", {
      ...this.ctx,
      verb,
      address: target.address,
      port: written.port,
      reason: target.reason,
    });
    return this.#reply(200, `${verb} command successful; consider using PASV or EPSV`);
  }

  // ---- transfers -------------------------------------------------------------

  /** The transfer buffer: allocated on first use, reused afterwards. */
  get #buffer(): Uint8Array {
    return this.#buf ??= takeBuffer();
  }

  get #dataTimeoutMs(): number {
    return this.deps.config.limits.data_timeout_seconds * 1000;
  }

  /**
   * Puts the upstream in passive mode (EPSV, else PASV) and connects to it:
   * always to the control connection's address, whatever a 227 says.
   */
  async #openUpstreamData(up: UpstreamControl): Promise<Deno.TcpConn> {
    const timeoutMs = this.#dataTimeoutMs;
    const connectMs = this.deps.upstream.connectTimeoutMs;
    if (this.#upstreamEpsv) {
      const r = await up.request("EPSV", { timeoutMs });
      const port = r.code === 229 ? parseEpsvReply(replyText(r)) : null;
      if (port !== null) {
        return await connectActive({ host: up.host, port }, { timeoutMs: connectMs });
      }
      if (r.code >= 500) this.#upstreamEpsv = false;
    }
    const r = await up.request("PASV", { timeoutMs });
    const hp = r.code === 227 ? parsePasvReply(replyText(r)) : null;
    if (hp === null) {
      throw new DataError(425, `Can't open data connection: the FTP server said ${r.lines[0]}`);
    }
    return await connectActive({ host: up.host, port: hp.port }, { timeoutMs: connectMs });
  }

  async #startTransfer(verb: string, arg: string, line: string): Promise<void> {
    const up = this.#up!;
    await up.idle();
    const rest = this.#rest;
    this.#rest = null;
    const client: ClientSide | null = this.#passive
      ? { kind: "passive", ...this.#passive }
      : this.#active
      ? { kind: "active", ...this.#active }
      : null;
    this.#passive = null;
    this.#active = null;
    if (!client) return this.#reply(425, "Use PORT, EPRT, PASV or EPSV first");
    const t = new ProxyTransfer(verb, arg, TRANSFER_COMMANDS.get(verb)!, client);
    this.transfer = t;
    try {
      t.upstream = await this.#openUpstreamData(up);
      if (!t.aborted && rest !== null) {
        const r = await up.request(`REST ${rest}`, { timeoutMs: this.#dataTimeoutMs });
        if (r.code !== 350) {
          this.#endTransfer(t);
          return void this.#forward(r);
        }
      }
    } catch (e) {
      this.#endTransfer(t);
      if (e instanceof UpstreamError) {
        this.deps.log.error("session {session}: FTP server {upstream}: {error}", {
          ...this.ctx,
          upstream: this.#upstreamLabel,
          error: e.message,
        });
        await this.#reply(421, "The FTP server does not answer; closing");
        return this.close();
      }
      if (t.aborted) return;
      const msg = e instanceof DataError ? e.message : `Can't open data connection`;
      this.deps.log.warn("session {session}: no data connection to FTP server: {error}", {
        ...this.ctx,
        error: (e as Error).message,
      });
      return this.#reply(425, msg.replace("data connection", "data connection to the FTP server"));
    }
    if (t.aborted) {
      // ABOR came while the data connection was being set up: its reply is
      // on the way; the command itself is never sent.
      return this.#endTransfer(t);
    }
    up.send(line, { onReply: (reply, final) => this.#transferReply(t, reply, final) })
      .catch(() => {/* the reply loop reports the lost connection */});
  }

  #endTransfer(t: ProxyTransfer): void {
    t.release();
    t.end();
    if (this.transfer === t) this.transfer = null;
    if (this.#buf && !this.transfer) {
      giveBuffer(this.#buf);
      this.#buf = null;
    }
  }

  /** Opens the client's side, the way the client asked for with PASV/EPSV or PORT/EPRT. */
  async #openClientData(side: ClientSide): Promise<Deno.TcpConn> {
    const timeoutMs = this.#dataTimeoutMs;
    if (side.kind === "active") return await connectActive(side, { timeoutMs });
    const conn = await acceptFromPeer(side.listener, {
      peer: this.peer,
      timeoutMs,
      onStranger: (from) =>
        this.deps.log.warn(
          "session {session}: refused data connection from {from} on passive port {port}",
          { ...this.ctx, from, port: side.port },
        ),
    });
    if (!conn) {
      this.deps.publicAddress?.hint(
        `session ${this.id}: passive port ${side.port} was never connected`,
      );
      throw new DataError(425, "Can't open data connection: the client did not connect");
    }
    return conn;
  }

  async #transferReply(t: ProxyTransfer, reply: Reply, final: boolean): Promise<void> {
    if (!final) {
      if (t.state === "relaying") return void this.#forward(reply);
      if (t.state !== "setup") return;
      // The upstream accepted the command: now reach the client.
      try {
        const conn = await this.#openClientData(t.client);
        if (t.aborted) {
          conn.close();
          throw new DataError(426, "Transfer aborted");
        }
        t.relay = new DataRelay({ client: conn, upstream: t.upstream! }, {
          direction: t.direction,
          buf: this.#buffer,
          stallMs: this.#dataTimeoutMs,
        });
        t.state = "relaying";
        this.#forward(reply);
      } catch (e) {
        t.state = "failed-open";
        t.openError = (e as Error).message;
        t.release();
      }
      return;
    }
    let result: RelayResult | null = null;
    if (t.state === "relaying") {
      result = await t.relay!.done;
      const shown = finalReplyFor(reply, result.outcome);
      if ("lines" in shown) this.#forward(shown);
      else this.#reply(shown.code, shown.text);
    } else if (t.state === "failed-open" && !t.aborted) {
      this.#reply(425, t.openError);
    } else {
      t.release();
      this.#forward(reply);
    }
    if (this.transfer === t) this.transfer = null;
    t.end();
    if (t.state !== "setup") this.#logTransfer(t, reply, result);
  }

  #logTransfer(t: ProxyTransfer, reply: Reply, result: RelayResult | null): void {
    const { stats, log } = this.deps;
    const bytes = result?.bytes ?? 0;
    const seconds = (performance.now() - t.started) / 1000;
    if (t.direction === "upload") stats.bytesIn += bytes;
    else stats.bytesOut += bytes;
    stats.transfers++;
    log.info(
      "transfer user={user} dir={direction} cmd={verb} path={path} bytes={bytes} " +
        "seconds={seconds} rate={rate} result={result} upstream={code}",
      {
        ...this.ctx,
        direction: t.direction === "upload" ? "in" : "out",
        verb: t.verb,
        path: t.arg,
        bytes,
        seconds: seconds.toFixed(3),
        rate: `${(bytes / 1e6 / Math.max(seconds, 1e-6)).toFixed(1)}MB/s`,
        result: result?.outcome ?? (t.aborted ? "aborted" : "no-client-connection"),
        code: reply.code,
      },
    );
    if (result?.error) {
      log.debug("session {session}: relay error: {error}", { ...this.ctx, error: result.error });
    }
  }

  // ---- lifetime ----------------------------------------------------------------

  #armIdle(): void {
    clearTimeout(this.#idle);
    if (this.closed) return;
    const limits = this.deps.config.limits;
    const seconds = this.loggedIn ? limits.idle_timeout_seconds : limits.login_timeout_seconds;
    this.#idle = setTimeout(() => {
      if (this.transfer) return this.#armIdle();
      this.deps.log.info("session {session} idle for {seconds} s: closing", {
        ...this.ctx,
        seconds,
      });
      this.#reply(421, "Idle timeout; closing control connection").finally(() => this.close());
    }, seconds * 1000);
  }

  /** Ends the session at once: data relay, listeners, both control connections. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#idle);
    this.transfer?.abort();
    this.transfer?.end();
    this.#closePassive();
    this.#up?.close();
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  /** Sends a last reply (proxy shutdown) and closes. */
  async shutdown(text: string): Promise<void> {
    await this.#reply(421, text);
    this.close();
  }

  async #finish(): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#idle);
    this.transfer?.abort();
    await this.#out.flushed();
    this.close();
    this.deps.log.info("session {session} closed {peer} user={user} after {seconds} s", {
      ...this.ctx,
      seconds: Math.round((Date.now() - this.openedAt) / 1000),
    });
  }
}

/** Waits for `p`, but at most `ms`. */
async function boundedWait(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    p.catch(() => {}),
    new Promise((r) => timer = setTimeout(r, ms)),
  ]);
  clearTimeout(timer);
}
