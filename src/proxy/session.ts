/**
 * One proxied session: the client's control connection relayed line by line
 * to its own upstream connection, with the address-carrying commands
 * (PASV, EPSV, PORT, EPRT) answered by the kit's data setup and each
 * transfer's two data connections joined by a {@linkcode DataRelay}. The
 * lifecycle (timeouts, login accounting, transfer records) is the kit's
 * {@linkcode SessionBase}.
 * @module
 */
import { parseCommand, parseEpsvReply, parsePasvReply } from "../ftp/codec.ts";
import { closeQuietly, type Connection, hostPort, withTimeout } from "../ftp/connection.ts";
import { connectActive } from "../ftp/data_connect.ts";
import { NO_DATA_PLAN } from "../ftp/data_setup.ts";
import { auth, ccc, pbsz, prot, refuseIfPlain, TLS_FEATURES } from "../ftp/security.ts";
import type { CommandLine } from "../ftp/line_reader.ts";
import { type KitDeps, SessionBase } from "../ftp/session_base.ts";
import { DataError } from "../ftp/transfer_io.ts";
import {
  classifyCommand,
  filterFeatReply,
  finalReplyFor,
  REFUSED_COMMANDS,
  type Reply,
  replyText,
  replyWire,
  TRANSFER_COMMANDS,
} from "./protocol.ts";
import { DataRelay, type RelayResult } from "./relay.ts";
import { ProxyTransfer } from "./transfer.ts";
import {
  connectUpstream,
  type UpstreamControl,
  type UpstreamEnd,
  UpstreamError,
} from "./upstream.ts";

export { ProxyTransfer };

/** What every proxied session shares with the proxy server. */
export interface ProxyDeps extends KitDeps {
  /** The upstream server and how long to wait for it. */
  upstream: { host: string; port: number; connectTimeoutMs: number };
}

/** The FTPS commands the proxy answers itself when it has `tls`. */
const TLS_VERBS = new Set(["AUTH", "PBSZ", "PROT", "CCC"]);

/** How long a closing session waits for its upstream reply loop to end. */
const FINISH_WAIT_MS = 5_000;
const encoder = new TextEncoder();

/** One client's session through the proxy. */
export class ProxySession extends SessionBase<ProxyDeps> {
  /** The last user name the client sent with USER. */
  user: string | null = null;
  transfer: ProxyTransfer | null = null;
  #loggedIn = false;
  #up: UpstreamControl | null = null;
  #upstreamDone: Promise<void> = Promise.resolve();
  #rest: string | null = null;
  #upstreamEpsv = true;
  #quitSent = false;
  #told421 = false;

  constructor(conn: Connection, deps: ProxyDeps) {
    super(conn, deps, "p");
  }

  /** The user name seen in USER. */
  get userName(): string | null {
    return this.user;
  }

  /** True after the upstream accepted a login. */
  protected get loggedIn(): boolean {
    return this.#loggedIn;
  }

  get #upstreamLabel(): string {
    return hostPort(this.deps.upstream.host, this.deps.upstream.port);
  }

  /** Connects to the upstream and relays its greeting; false when there is no session. */
  protected async open(): Promise<boolean> {
    const { log, upstream } = this.deps;
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
      await this.reply(
        421,
        "Service not available: the FTP server behind this proxy cannot be reached",
      );
      return false;
    }
    for (const reply of greeting) this.#forward(reply);
    const last = greeting[greeting.length - 1];
    if (last.code !== 220) {
      log.warn("session {session}: FTP server {upstream} refused the session: {reply}", {
        ...this.ctx,
        upstream: this.#upstreamLabel,
        reply: last.lines[0],
      });
      return false;
    }
    this.#upstreamDone = this.#up.run((reply) => this.#unsolicited(reply)).then((end) =>
      this.#upstreamEnded(end)
    );
    return true;
  }

  protected async handle(item: CommandLine): Promise<void> {
    if (item.kind === "line") return this.#dispatch(item.text);
    await this.#up!.idle();
    if (item.kind === "too-long") await this.reply(500, "Command line too long");
    else await this.reply(501, "Command is not valid UTF-8");
  }

  async #dispatch(line: string): Promise<void> {
    const up = this.#up!;
    const { verb, arg } = parseCommand(line);
    if (/[\r\0]/.test(line)) {
      // A bare CR could end the line early at the upstream and smuggle a
      // second command past the proxy.
      await up.idle();
      return this.reply(501, "Command contains a CR or NUL character");
    }
    const action = classifyCommand(verb);
    this.deps.log.debug("session {session}: {verb}", { ...this.ctx, verb });
    // FTPS ends here: the client's TLS is the proxy's, the upstream's is not.
    if (this.deps.tls && TLS_VERBS.has(verb)) {
      await up.idle();
      return this.#security(verb, arg);
    }
    if (verb === "USER" || verb === "PASS") {
      const refused = refuseIfPlain(this);
      if (refused) {
        await up.idle();
        return refused;
      }
    }
    switch (action) {
      case "refuse":
        await up.idle();
        return this.reply(502, REFUSED_COMMANDS.get(verb)!);
      case "pasv":
        await up.idle();
        return this.data.pasv();
      case "epsv":
        await up.idle();
        return this.data.epsv(arg);
      case "port":
      case "eprt":
        await up.idle();
        return this.data.port(action === "port" ? "PORT" : "EPRT", arg);
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
          this.#loggedIn = false;
          this.deps.log.info("session {session}: USER {user}", this.ctx);
        }
        if (verb === "QUIT") this.#quitSent = true;
        this.#send(up, line, verb);
    }
  }

  /** AUTH, PBSZ, PROT and CCC, answered by the proxy itself. */
  #security(verb: string, arg: string): Promise<void> | void {
    if (verb === "AUTH") return auth(this, arg);
    if (verb === "PBSZ") return pbsz(this, arg);
    if (verb === "PROT") return prot(this, arg);
    return ccc(this);
  }

  /** Forwards a client command; its replies go back to the client as they come. */
  #send(up: UpstreamControl, line: string, verb: string): void {
    up.send(line, { onReply: (reply, final) => this.#relayReply(verb, reply, final) })
      .catch(() => {/* the reply loop reports the lost connection */});
  }

  #relayReply(verb: string, reply: Reply, final: boolean): void {
    if (!final) return void this.#forward(reply);
    if (verb === "USER" || verb === "PASS" || verb === "ACCT") {
      if (reply.code === 230 && !this.#loggedIn) {
        this.#loggedIn = true;
        this.touch(); // the longer idle timeout from now on
        this.loginSucceeded();
      } else if (reply.code === 530) {
        // Counted toward the address's ban; the session itself stays open:
        // how many tries a session gets is the upstream server's rule.
        this.loginFailed(this.user ?? "");
      }
    } else if (verb === "REST" && reply.code !== 350) {
      this.#rest = null;
    } else if (verb === "REIN" && reply.code < 300) {
      this.#loggedIn = false;
    }
    this.#forward(verb === "FEAT" ? this.#feat(reply) : reply);
  }

  /** The upstream's FEAT without what the proxy cannot relay, plus FTPS when it offers it. */
  #feat(reply: Reply): Reply {
    const shown = filterFeatReply(reply);
    if (!this.deps.tls || shown.code !== 211 || shown.lines.length < 2) return shown;
    const lines = [...shown.lines];
    lines.splice(-1, 0, ...TLS_FEATURES.map((f) => ` ${f}`));
    return { code: shown.code, lines };
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
      await this.reply(421, "Connection to the FTP server lost; closing");
    }
    await this.out.flushed();
    this.close();
  }

  /** An upstream reply, unchanged. */
  #forward(reply: Reply): Promise<void> {
    return this.out.write(encoder.encode(replyWire(reply)));
  }

  // ---- transfers -------------------------------------------------------------

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
    const plan = this.data.take();
    if (!plan) return this.reply(425, NO_DATA_PLAN);
    try {
      this.data.check(plan); // before the upstream hears of it
    } catch (e) {
      const err = e as DataError;
      return this.reply(err.code, err.message);
    }
    const t = new ProxyTransfer(verb, arg, TRANSFER_COMMANDS.get(verb)!, {
      plan,
      setup: this.data,
    });
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
      return this.#upstreamDataFailed(t, e);
    }
    if (t.aborted) {
      // ABOR came while the data connection was being set up: its reply is
      // on the way; the command itself is never sent.
      return this.#endTransfer(t);
    }
    up.send(line, { onReply: (reply, final) => this.#transferReply(t, reply, final) })
      .catch(() => {/* the reply loop reports the lost connection */});
  }

  /** The upstream's data connection could not be made: 425, or 421 when it stopped answering. */
  async #upstreamDataFailed(t: ProxyTransfer, e: unknown): Promise<void> {
    if (e instanceof UpstreamError) {
      this.deps.log.error("session {session}: FTP server {upstream}: {error}", {
        ...this.ctx,
        upstream: this.#upstreamLabel,
        error: e.message,
      });
      await this.reply(421, "The FTP server does not answer; closing");
      return this.close();
    }
    if (t.aborted) return;
    const msg = e instanceof DataError ? e.message : `Can't open data connection`;
    this.deps.log.warn("session {session}: no data connection to FTP server: {error}", {
      ...this.ctx,
      error: (e as Error).message,
    });
    await this.reply(425, msg.replace("data connection", "data connection to the FTP server"));
  }

  #endTransfer(t: ProxyTransfer): void {
    t.release();
    t.end();
    if (this.transfer === t) this.transfer = null;
    if (!this.transfer) this.releaseBuffer();
  }

  /** The upstream accepted the command: now reach the client and start relaying. */
  async #openClient(t: ProxyTransfer, reply: Reply): Promise<void> {
    try {
      // The upstream's 150 goes on once the client is connected: under
      // PROT P some clients start TLS only after it.
      let forwarded = false;
      const conn = await this.data.open(t.takeClient(), {
        onConnected: () => {
          forwarded = true;
          this.#forward(reply);
        },
      });
      if (t.aborted) {
        closeQuietly(conn);
        throw new DataError(426, "Transfer aborted");
      }
      t.relay = new DataRelay({ client: conn, upstream: t.upstream! }, {
        direction: t.direction,
        buf: this.buffer,
        stallMs: this.#dataTimeoutMs,
        limit: this.rateLimit(t.direction === "download" ? "out" : "in"),
      });
      t.state = "relaying";
      if (!forwarded) this.#forward(reply);
    } catch (e) {
      t.state = "failed-open";
      t.openError = (e as Error).message;
      t.release();
    }
  }

  async #transferReply(t: ProxyTransfer, reply: Reply, final: boolean): Promise<void> {
    if (!final) {
      if (t.state === "relaying") return void this.#forward(reply);
      if (t.state === "setup") await this.#openClient(t, reply);
      return;
    }
    let result: RelayResult | null = null;
    if (t.state === "relaying") {
      result = await t.relay!.done;
      const shown = finalReplyFor(reply, result.outcome);
      if ("lines" in shown) this.#forward(shown);
      else this.reply(shown.code, shown.text);
    } else if (t.state === "failed-open" && !t.aborted) {
      this.reply(425, t.openError);
    } else {
      t.release();
      this.#forward(reply);
    }
    const state = t.state;
    this.#endTransfer(t);
    if (state === "setup") return;
    this.recordTransfer({
      direction: t.direction === "upload" ? "in" : "out",
      verb: t.verb,
      what: t.arg,
      bytes: result?.bytes ?? 0,
      started: t.started,
      result: result?.outcome ?? (t.aborted ? "aborted" : "no-client-connection"),
      upstreamCode: reply.code,
    });
    if (result?.error) {
      this.deps.log.debug("session {session}: relay error: {error}", {
        ...this.ctx,
        error: result.error,
      });
    }
  }

  // ---- lifetime ----------------------------------------------------------------

  protected onClose(): void {
    this.transfer?.abort();
    this.transfer?.end();
    this.#up?.close();
  }

  protected override async finish(): Promise<void> {
    this.transfer?.abort();
    await super.finish();
    await withTimeout(this.#upstreamDone, FINISH_WAIT_MS);
  }
}
