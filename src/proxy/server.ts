/**
 * The proxy server: accepts client control connections, enforces the
 * session limits, and runs one {@linkcode ProxySession} (with its own
 * upstream connection) per client. A session's failure never reaches the
 * accept loop.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/schema.ts";
import { formatReply } from "../ftp/codec.ts";
import { writeAll } from "../ftp/data_channel.ts";
import type { ServerStats } from "../ftp/session.ts";
import { parseLanNetworks } from "../nat/announce.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { type ProxyDeps, ProxySession } from "./session.ts";

/** The `proxy` section of a config that has one. */
export type ProxyConfig = NonNullable<Config["proxy"]>;

function depsFrom(
  config: Config,
  publicAddress: PublicAddress | null,
): Omit<ProxyDeps, "log" | "stats"> {
  const proxy = config.proxy;
  if (!proxy) throw new TypeError("the config has no proxy section (proxy.upstream.host)");
  return {
    config,
    upstream: {
      host: proxy.upstream.host,
      port: proxy.upstream.port,
      connectTimeoutMs: proxy.connect_timeout_seconds * 1000,
    },
    publicAddress,
    lan: parseLanNetworks(config.lan_networks),
  };
}

/** A running proxy in front of one upstream FTP server. */
export class ProxyServer {
  readonly sessions: Set<ProxySession> = new Set<ProxySession>();
  readonly stats: ServerStats = {
    loginsOk: 0,
    loginsFailed: 0,
    bytesIn: 0,
    bytesOut: 0,
    transfers: 0,
  };
  #listener: Deno.TcpListener | null = null;
  readonly #deps: ProxyDeps;
  #loop: Promise<void> = Promise.resolve();
  readonly #perAddress = new Map<string, number>();
  readonly #running = new Set<Promise<void>>();

  /** @throws {TypeError} when the config has no `proxy` section. */
  constructor(config: Config, options: { publicAddress: PublicAddress | null }) {
    this.#deps = {
      ...depsFrom(config, options.publicAddress),
      log: getLogger(["pitifulnat", "proxy"]),
      stats: this.stats,
    };
  }

  /** The live config. */
  get config(): Config {
    return this.#deps.config;
  }

  /** Binds the control port (config.listen) and starts accepting. */
  listen(): Deno.NetAddr {
    const { address, port } = this.#deps.config.listen;
    this.#listener = Deno.listen({ hostname: address, port, transport: "tcp" });
    this.#loop = this.#acceptLoop(this.#listener);
    return this.#listener.addr as Deno.NetAddr;
  }

  /** New limits, LAN list, public address and upstream, for new sessions and open ones. */
  reload(config: Config, options: { publicAddress: PublicAddress | null }): void {
    Object.assign(this.#deps, depsFrom(config, options.publicAddress));
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
    if (this.sessions.size >= limits.max_sessions) refusal = "Too many sessions; try again later";
    else if (fromHere >= limits.max_sessions_per_address) {
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
    const session = new ProxySession(conn, deps);
    this.sessions.add(session);
    this.#perAddress.set(addr, fromHere + 1);
    const running = session.run().catch((e) => {
      deps.log.error("session {session} failed: {error}", { ...session.ctx, error: e });
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
  async close(options: { graceMs?: number } = {}): Promise<void> {
    try {
      this.#listener?.close();
    } catch { /* closed */ }
    await this.#loop;
    const running = [...this.sessions].flatMap((s) => s.transfer ? [s.transfer.ended] : []);
    if (running.length && options.graceMs) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled(running),
        new Promise((r) => timer = setTimeout(r, options.graceMs)),
      ]);
      clearTimeout(timer);
    }
    await Promise.all([...this.sessions].map((s) => s.shutdown("Proxy shutting down")));
    await Promise.all([...this.#running]);
  }
}
