/**
 * The proxy server: the shared control-connection accept loop running one
 * {@linkcode ProxySession} (with its own upstream connection) per client.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/schema.ts";
import type { Connection } from "../ftp/connection.ts";
import { ControlServer } from "../ftp/control_server.ts";
import type { ServerOptions } from "../ftp/data_setup.ts";
import { identityFrom } from "../ftp/tls.ts";
import { parseLanNetworks } from "../nat/announce.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { type ProxyDeps, ProxySession } from "./session.ts";

/** The `proxy` section of a config that has one. */
export type ProxyConfig = NonNullable<Config["proxy"]>;

function depsFrom(
  config: Config,
  publicAddress: PublicAddress | null,
): Omit<ProxyDeps, "log" | "stats" | "throttle" | "tls" | "activity" | "routerPorts"> {
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
export class ProxyServer extends ControlServer<ProxySession> {
  protected readonly deps: ProxyDeps;

  /** @throws {TypeError} when the config has no `proxy` section. */
  constructor(config: Config, options: ServerOptions) {
    const log = getLogger(["pitifulnat", "proxy"]);
    super(log, config.limits);
    this.deps = {
      ...depsFrom(config, options.publicAddress),
      log,
      stats: this.stats,
      throttle: this.throttle,
      activity: this.activity,
      tls: identityFrom(config),
      routerPorts: options.routerPorts ?? null,
    };
  }

  protected override createSession(conn: Connection): ProxySession {
    return new ProxySession(conn, this.deps);
  }

  /** New limits, LAN list, public address and upstream, for new sessions and open ones. */
  reload(config: Config, options: { publicAddress: PublicAddress | null }): void {
    Object.assign(this.deps, depsFrom(config, options.publicAddress), {
      tls: identityFrom(config),
    });
  }

  /**
   * Stops accepting, lets running transfers finish for up to `graceMs`,
   * then tells every client 421 and waits for the sessions to end.
   */
  override close(options: { graceMs?: number } = {}): Promise<void> {
    return super.close({ ...options, text: "Proxy shutting down" });
  }
}
