/**
 * The FTP server: accepts control connections, enforces the session
 * limits, and runs one Session per connection. A session's failure never
 * reaches the accept loop.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/schema.ts";
import { LoginThrottle } from "../auth/throttle.ts";
import { UserDb } from "../auth/users.ts";
import { type LanNetworks, normalizeAddress, parseLanNetworks } from "../nat/announce.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { formatReply } from "./codec.ts";
import { buildCommandTable } from "./commands.ts";
import { writeAll } from "./data_channel.ts";
import { type ServerStats, Session, type SessionDeps } from "./session.ts";

function throttleFor(config: Config): LoginThrottle {
  const l = config.limits;
  return new LoginThrottle({
    maxFailures: l.max_login_failures_per_address,
    windowMs: l.login_failure_window_seconds * 1000,
    banMs: l.ban_seconds * 1000,
  });
}

/** A running FTP server. */
export class FtpServer {
  readonly sessions = new Set<Session>();
  readonly stats: ServerStats = {
    loginsOk: 0,
    loginsFailed: 0,
    bytesIn: 0,
    bytesOut: 0,
    transfers: 0,
  };
  #listener: Deno.TcpListener | null = null;
  readonly #deps: SessionDeps;
  #loop: Promise<void> = Promise.resolve();
  #perAddress = new Map<string, number>();

  constructor(config: Config, options: { publicAddress: PublicAddress | null }) {
    this.#deps = {
      config,
      users: new UserDb(config),
      publicAddress: options.publicAddress,
      lan: parseLanNetworks(config.lan_networks),
      commands: buildCommandTable(),
      log: getLogger(["pitifulnat", "ftp"]),
      stats: this.stats,
      throttle: throttleFor(config),
    };
  }

  /** The live config. */
  get config(): Config {
    return this.#deps.config;
  }

  /** The LAN networks in use. */
  get lan(): LanNetworks {
    return this.#deps.lan;
  }

  /** Binds the control port and starts accepting. */
  listen(): Deno.NetAddr {
    const { address, port } = this.#deps.config.listen;
    this.#listener = Deno.listen({ hostname: address, port, transport: "tcp" });
    this.#loop = this.#acceptLoop(this.#listener);
    return this.#listener.addr as Deno.NetAddr;
  }

  /** Replaces users, limits and the LAN list for new sessions (SIGHUP). */
  reload(config: Config, options: { publicAddress: PublicAddress | null }): void {
    // Sessions share this object, so open sessions see the new settings too.
    Object.assign(this.#deps, {
      config,
      publicAddress: options.publicAddress,
      users: new UserDb(config),
      lan: parseLanNetworks(config.lan_networks),
      // The throttle is kept, so a reload does not lift running bans.
    });
  }

  async #acceptLoop(listener: Deno.TcpListener): Promise<void> {
    const log = this.#deps.log;
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (e) {
        if (e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted) return;
        log.error("accept failed: {error}", { error: (e as Error).message });
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      this.#admit(conn);
    }
  }

  #admit(conn: Deno.TcpConn): void {
    const deps = this.#deps;
    const limits = deps.config.limits;
    const addr = conn.remoteAddr.hostname;
    const fromHere = this.#perAddress.get(addr) ?? 0;
    let refusal: string | null = null;
    if (deps.throttle.bannedFor(normalizeAddress(addr)) > 0) {
      refusal = "Too many failed logins from your address; try again later";
    } else if (this.sessions.size >= limits.max_sessions) {
      refusal = "Too many sessions; try again later";
    } else if (fromHere >= limits.max_sessions_per_address) {
      refusal = "Too many sessions from your address; try again later";
    }
    if (refusal) {
      // Logged at debug: a flood must not become a flood of log lines.
      deps.log.debug("refused connection from {addr}: {reason}", { addr, reason: refusal });
      writeAll(conn, new TextEncoder().encode(formatReply(421, refusal)))
        .catch(() => {})
        .finally(() => {
          try {
            conn.close();
          } catch { /* closed */ }
        });
      return;
    }
    try {
      conn.setNoDelay(true);
    } catch { /* not fatal */ }
    const session = new Session(conn, deps);
    this.sessions.add(session);
    this.#perAddress.set(addr, fromHere + 1);
    session.run().catch((e) => {
      deps.log.error("session {session} failed: {error}", { ...session.ctx, error: e });
    }).finally(() => {
      this.sessions.delete(session);
      const left = (this.#perAddress.get(addr) ?? 1) - 1;
      if (left <= 0) this.#perAddress.delete(addr);
      else this.#perAddress.set(addr, left);
    });
  }

  /**
   * Stops accepting, lets running transfers finish for up to `graceMs`,
   * then closes every session with 421.
   */
  async close(options: { graceMs?: number } = {}): Promise<void> {
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    await this.#loop;
    const running = [...this.sessions].flatMap((s) => s.transfer ? [s.transfer.done] : []);
    if (running.length && options.graceMs) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled(running),
        new Promise((r) => timer = setTimeout(r, options.graceMs)),
      ]);
      clearTimeout(timer);
    }
    const closing = [...this.sessions].map(async (s) => {
      await s.reply(421, "Server shutting down");
      s.close();
      await s.finished;
    });
    await Promise.all(closing);
  }
}
