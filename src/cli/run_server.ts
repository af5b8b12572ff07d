/**
 * What `serve` and `proxy` share once their server exists: start the
 * public-address refresher and the status endpoint, then run until
 * SIGTERM/SIGINT; SIGHUP reloads the config (a broken one is reported and
 * the running one kept).
 * @module
 */
import { getLogger } from "@logtape/logtape";
import denoJson from "../../deno.json" with { type: "json" };
import { ConfigError, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import type { ControlSession, ServerStats } from "../ftp/control_server.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { setupLogging } from "../observe/log.ts";
import { serveStatus, statusSnapshot } from "../observe/status.ts";
import { publicAddressFrom } from "./common.ts";

/** What both FtpServer and ProxyServer offer. */
export interface RunnableServer {
  readonly config: Config;
  readonly sessions: ReadonlySet<ControlSession>;
  readonly stats: ServerStats;
  listen(): Deno.NetAddr;
  reload(config: Config, options: { publicAddress: PublicAddress | null }): void;
  close(options: { graceMs?: number }): Promise<void>;
}

/** `host:port`, with brackets for IPv6. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * Binds, runs and stops a server; resolves with the exit code. `file` is
 * the config file (null for the embedded default: no SIGHUP reload);
 * `validate` may refuse a reloaded config with a message.
 */
export async function runServer(
  make: (config: Config, publicAddress: PublicAddress | null) => RunnableServer,
  options: {
    config: Config;
    file: string | null;
    kind: "serve" | "proxy";
    /** Printed on stdout once listening, given the listening URL. */
    banner?: (url: string) => string;
    validate?: (config: Config) => string | null;
  },
): Promise<number> {
  const { config, file } = options;
  await setupLogging(config.log);
  const log = getLogger(["pitifulnat", options.kind]);
  // The last line of defence: a promise rejection nobody handled is a bug
  // to log, never a reason to drop every other session.
  const onUnhandled = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    log.error("unhandled error (please report): {error}", { error: String(e.reason) });
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  let publicAddress = publicAddressFrom(config);
  const server = make(config, publicAddress);
  let addr: Deno.NetAddr;
  try {
    addr = server.listen();
  } catch (e) {
    console.error(
      `pitifulnat: cannot listen on ${hostPort(config.listen.address, config.listen.port)}: ` +
        (e as Error).message,
    );
    return 1;
  }
  const url = `ftp://${hostPort(addr.hostname, addr.port)}/`;
  if (options.banner) console.log(options.banner(url));
  log.info("{kind} listening on {url} (config: {file})", {
    kind: options.kind,
    url,
    file: file ?? "embedded default",
  });
  const startedAt = new Date();
  await publicAddress?.start();
  const status = config.status.port
    ? serveStatus(
      { address: config.status.address, port: config.status.port },
      () => statusSnapshot(server, { publicAddress, version: denoJson.version, startedAt }),
    )
    : null;

  const { promise: stopped, resolve: stop } = Promise.withResolvers<string>();
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", () => stop("SIGTERM")],
    ["SIGINT", () => stop("SIGINT")],
  ];
  if (file) {
    handlers.push(["SIGHUP", () => {
      loadConfig(file).then(async (next) => {
        const refused = options.validate?.(next);
        if (refused) throw new ConfigError([`${file}: ${refused}`]);
        await setupLogging(next.log);
        const nextPa = publicAddressFrom(next);
        await nextPa?.start();
        server.reload(next, { publicAddress: nextPa });
        publicAddress?.stop();
        publicAddress = nextPa;
        log.info("reloaded {file}", { file });
      }).catch((e) => {
        log.error("reload of {file} failed; keeping the running config:\n{msg}", {
          file,
          msg: (e as Error).message,
        });
      });
    }]);
  }
  for (const [sig, fn] of handlers) Deno.addSignalListener(sig, fn);
  const sig = await stopped;
  log.info("{sig}: stopping", { sig });
  for (const [s, fn] of handlers) Deno.removeSignalListener(s, fn);
  await server.close({ graceMs: server.config.limits.shutdown_grace_seconds * 1000 });
  publicAddress?.stop();
  await status?.shutdown();
  globalThis.removeEventListener("unhandledrejection", onUnhandled);
  return 0;
}
