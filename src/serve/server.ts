/**
 * The FTP server (`serve`): the kit's accept loop running one serve
 * {@linkcode Session} per connection, with the command table, users and
 * limits.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { Config } from "../config/schema.ts";
import { UserDb } from "../auth/users.ts";
import type { Connection } from "../ftp/connection.ts";
import { ControlServer } from "../ftp/control_server.ts";
import type { ServerOptions } from "../ftp/data_setup.ts";
import { identityFrom } from "../ftp/tls.ts";
import { type LanNetworks, parseLanNetworks } from "../nat/announce.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { buildCommandTable } from "./commands.ts";
import { Session, type SessionDeps } from "./session.ts";

/** A running FTP server. */
export class FtpServer extends ControlServer<Session> {
  protected readonly deps: SessionDeps;

  constructor(config: Config, options: ServerOptions) {
    const log = getLogger(["pitifulnat", "ftp"]);
    super(log, config.limits);
    this.deps = {
      config,
      users: new UserDb(config),
      publicAddress: options.publicAddress,
      lan: parseLanNetworks(config.lan_networks),
      commands: buildCommandTable(),
      log,
      stats: this.stats,
      throttle: this.throttle,
      activity: this.activity,
      tls: identityFrom(config),
      routerPorts: options.routerPorts ?? null,
    };
  }

  /** The LAN networks in use. */
  get lan(): LanNetworks {
    return this.deps.lan;
  }

  protected override createSession(conn: Connection): Session {
    return new Session(conn, this.deps);
  }

  /** Replaces users, limits, the LAN list and the public address (SIGHUP). */
  reload(config: Config, options: { publicAddress: PublicAddress | null }): void {
    // Sessions share this object, so open sessions see the new settings too.
    Object.assign(this.deps, {
      config,
      publicAddress: options.publicAddress,
      users: new UserDb(config),
      lan: parseLanNetworks(config.lan_networks),
      tls: identityFrom(config),
    });
  }
}
