/**
 * The FTP server: the shared control-connection accept loop running one
 * FTP Session per connection, with the command table, users and limits.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/schema.ts";
import { throttleFromLimits } from "../auth/throttle.ts";
import { UserDb } from "../auth/users.ts";
import { type LanNetworks, parseLanNetworks } from "../nat/announce.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { buildCommandTable } from "./commands.ts";
import { ControlServer, type ServerStats } from "./control_server.ts";
import { Session, type SessionDeps } from "./session.ts";

/** A running FTP server. */
export class FtpServer {
  readonly #deps: SessionDeps;
  readonly #control: ControlServer<Session>;

  constructor(config: Config, options: { publicAddress: PublicAddress | null }) {
    const log = getLogger(["pitifulnat", "ftp"]);
    this.#control = new ControlServer<Session>({
      log,
      config: () => this.#deps.config,
      isBanned: (addr) => this.#deps.throttle.bannedFor(addr) > 0,
      createSession: (conn) => new Session(conn, this.#deps),
    });
    this.#deps = {
      config,
      users: new UserDb(config),
      publicAddress: options.publicAddress,
      lan: parseLanNetworks(config.lan_networks),
      commands: buildCommandTable(),
      log,
      stats: this.#control.stats,
      throttle: throttleFromLimits(config.limits),
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

  /** Open sessions. */
  get sessions(): ReadonlySet<Session> {
    return this.#control.sessions;
  }

  /** Process-wide counters. */
  get stats(): ServerStats {
    return this.#control.stats;
  }

  /** Binds the control port and starts accepting. */
  listen(): Deno.NetAddr {
    return this.#control.listen();
  }

  /** Replaces users, limits, the LAN list and the public address (SIGHUP). */
  reload(config: Config, options: { publicAddress: PublicAddress | null }): void {
    // Sessions share this object, so open sessions see the new settings too.
    // The throttle is kept, so a reload does not lift running bans.
    Object.assign(this.#deps, {
      config,
      publicAddress: options.publicAddress,
      users: new UserDb(config),
      lan: parseLanNetworks(config.lan_networks),
    });
  }

  /**
   * Stops accepting, lets running transfers finish for up to `graceMs`,
   * then closes every session with 421.
   */
  close(options: { graceMs?: number } = {}): Promise<void> {
    return this.#control.close(options);
  }
}
