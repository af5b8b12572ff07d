/**
 * What `serve` and `proxy` share once their server exists: start the
 * public-address refresher and the status endpoint, then run until
 * SIGTERM/SIGINT; SIGHUP reloads the config (a broken one is reported and
 * the running one kept).
 * @module
 */
import { getLogger, type Logger } from "@logtape/logtape";
import denoJson from "../../deno.json" with { type: "json" };
import { ConfigError, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { hostPort } from "../ftp/connection.ts";
import type { ControlSession, ServerStats } from "../ftp/control_server.ts";
import type { ServerOptions } from "../ftp/data_setup.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { setupLogging } from "../observe/log.ts";
import { type Health, serveStatus } from "../observe/http.ts";
import { type SnapshotSource, statusSnapshot } from "../observe/status.ts";
import type { PortMapper } from "../nat/portmap/mod.ts";
import { portMapperFrom, publicAddressFrom } from "./common.ts";

/** What both FtpServer and ProxyServer offer. */
export interface RunnableServer extends SnapshotSource {
  readonly config: Config;
  readonly sessions: ReadonlySet<ControlSession>;
  readonly stats: ServerStats;
  start(): Promise<Deno.NetAddr>;
  reload(config: Config, options: { publicAddress: PublicAddress | null }): void;
  close(options: { graceMs?: number }): Promise<void>;
  /** Why a new client would get no session now, or null. */
  readonly notAccepting: string | null;
}

/** What a SIGHUP reload replaces while the server runs. */
interface Current {
  publicAddress: PublicAddress | null;
}

/**
 * Binds, runs and stops a server; resolves with the exit code. `file` is
 * the config file (null for the embedded default: no SIGHUP reload);
 * `validate` may refuse a reloaded config with a message.
 */
export async function runServer(
  make: (config: Config, options: ServerOptions) => RunnableServer,
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
  const unguard = guardUnhandledRejections(log);
  const mapper = portMapperFrom(config);
  const current: Current = { publicAddress: publicAddressFrom(config, mapper) };
  const server = make(config, { publicAddress: current.publicAddress, routerPorts: mapper });
  // Listening for signals before binding: a SIGTERM right after start stops cleanly.
  const signals = stopSignals({
    onHangup: file
      ? () => void reloadConfig(server, { file, validate: options.validate, current, log, mapper })
      : null,
  });
  if (!await startListening(server, { ...options, log })) {
    signals.remove();
    return 1;
  }
  const startedAt = new Date();
  // Status first: it shows the router and the public address while they are still asked.
  const status = startStatus(server, {
    config,
    current,
    startedAt,
    log,
    kind: options.kind,
    mapper,
  });
  // Never throws: a router that does not answer is logged, and the server serves on.
  await mapper?.start();
  await current.publicAddress?.start();
  const sig = await signals.stopped;
  signals.remove();
  log.info("{sig}: stopping", { sig });
  const unmapped = mapper?.stop(); // the router's mappings go while transfers finish
  await server.close({ graceMs: server.config.limits.shutdown_grace_seconds * 1000 });
  current.publicAddress?.stop();
  await unmapped;
  await status?.shutdown();
  unguard();
  return 0;
}

/**
 * The last line of defence: a promise rejection nobody handled is a bug to
 * log, never a reason to drop every other session. Returns the undo.
 */
function guardUnhandledRejections(log: Logger): () => void {
  const onUnhandled = (e: PromiseRejectionEvent) => {
    e.preventDefault();
    log.error("unhandled error (please report): {error}", { error: String(e.reason) });
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  return () => globalThis.removeEventListener("unhandledrejection", onUnhandled);
}

/**
 * Binds the control port and announces the URL (banner and log); false,
 * after printing why, when the port cannot be bound.
 */
async function startListening(
  server: RunnableServer,
  options: {
    config: Config;
    file: string | null;
    kind: "serve" | "proxy";
    banner?: (url: string) => string;
    log: Logger;
  },
): Promise<boolean> {
  const { config, file } = options;
  let addr: Deno.NetAddr;
  try {
    addr = await server.start();
  } catch (e) {
    console.error(
      `pitifulnat: cannot listen on ${hostPort(config.listen.address, config.listen.port)}: ` +
        (e as Error).message,
    );
    return false;
  }
  const url = `ftp://${hostPort(addr.hostname, addr.port)}/`;
  if (options.banner) console.log(options.banner(url));
  options.log.info("{kind} listening on {url} (config: {file})", {
    kind: options.kind,
    url,
    file: file ?? "embedded default",
  });
  return true;
}

/**
 * Serves the status endpoint when the config asks for one; its snapshot
 * reads `current` so it shows the public address of the latest reload.
 */
function startStatus(
  server: RunnableServer,
  options: {
    config: Config;
    current: Current;
    startedAt: Date;
    log: Logger;
    kind: "serve" | "proxy";
    mapper: PortMapper | null;
  },
): Deno.HttpServer | null {
  const { config, current, startedAt, log } = options;
  const { address, port } = config.status;
  if (!port) return null;
  const url = `http://${hostPort(address, port)}/`;
  try {
    const http = serveStatus({ address, port }, {
      users: () => server.config.status.users ?? [],
      handlers: {
        snapshot: () =>
          statusSnapshot(server, {
            publicAddress: current.publicAddress,
            version: denoJson.version,
            startedAt,
            mode: options.kind,
            portMapping: options.mapper?.snapshot() ?? null,
          }),
        health: () => Promise.resolve(health(server, current.publicAddress)),
      },
    });
    log.info("status page on {url} (JSON /status, metrics /metrics, health /health)", { url });
    return http;
  } catch (e) {
    const why = e instanceof Deno.errors.AddrInUse ? "address in use" : (e as Error).message;
    log.error("status.port: cannot listen on {url}: {why}; running without status", {
      url,
      why,
    });
    return null;
  }
}

/**
 * `/health`: ok when the control port accepts sessions now and the
 * public address is known (or none is configured: LAN only).
 */
function health(server: RunnableServer, pa: PublicAddress | null): Health {
  const refused = server.notAccepting;
  if (refused) return { ok: false, text: refused };
  if (!pa) return { ok: true, text: "ok: accepting connections (LAN only: no public address)" };
  const known = pa.current();
  if (!known) return { ok: false, text: "the public address is not known yet" };
  return { ok: true, text: `ok: accepting connections, telling remote clients ${known}` };
}

/**
 * SIGHUP: reloads `file` and hands it to the server with a fresh
 * public-address refresher (started before the old one stops, so PASV
 * always has one). A broken or refused config is logged; the running one
 * is kept. Never rejects.
 */
async function reloadConfig(
  server: RunnableServer,
  options: {
    file: string;
    validate?: (config: Config) => string | null;
    current: Current;
    log: Logger;
    /** The running port mapper (port_mapping needs a restart to change). */
    mapper: PortMapper | null;
  },
): Promise<void> {
  const { file, current, log } = options;
  try {
    const next = await loadConfig(file);
    const refused = options.validate?.(next);
    if (refused) throw new ConfigError([`${file}: ${refused}`]);
    const { config: applied, restartNeeded } = keepRestartOnly(server.config, next);
    await setupLogging(applied.log);
    const nextPa = publicAddressFrom(applied, options.mapper);
    await nextPa?.start();
    server.reload(applied, { publicAddress: nextPa });
    current.publicAddress?.stop();
    current.publicAddress = nextPa;
    if (restartNeeded.length === 0) log.info("reloaded {file}", { file });
    else {
      log.warn(
        "reloaded {file}; restart needed for {keys}: they keep their running values until then",
        { file, keys: restartNeeded.join(", ") },
      );
    }
  } catch (e) {
    log.error("reload of {file} failed; keeping the running config:\n{msg}", {
      file,
      msg: (e as Error).message,
    });
  }
}

/**
 * The settings a reload cannot change (bound sockets: listen, status, the
 * implicit-FTPS port, and whether control connections can turn TLS) keep
 * their running values; returns the config to apply and the keys that
 * changed but need a restart.
 */
export function keepRestartOnly(
  running: Config,
  next: Config,
): { config: Config; restartNeeded: string[] } {
  const restartNeeded: string[] = [];
  const keep = <T>(key: string, was: T, now: T): T => {
    if (was === now) return now;
    restartNeeded.push(key);
    return was;
  };
  const listen = {
    address: keep("listen.address", running.listen.address, next.listen.address),
    port: keep("listen.port", running.listen.port, next.listen.port),
  };
  const status = {
    address: keep("status.address", running.status.address, next.status.address),
    port: keep("status.port", running.status.port, next.status.port),
  };
  let tls = next.tls;
  if (!running.tls !== !next.tls) tls = keep("tls", running.tls, next.tls);
  else if (tls && running.tls) {
    const implicit_port = keep(
      "tls.implicit_port",
      running.tls.implicit_port,
      tls.implicit_port,
    );
    tls = { ...tls, implicit_port };
  }
  const samePortMapping =
    JSON.stringify(running.port_mapping) === JSON.stringify(next.port_mapping);
  const port_mapping = samePortMapping
    ? next.port_mapping
    : keep("port_mapping", running.port_mapping, next.port_mapping);
  return { config: { ...next, listen, status, tls, port_mapping }, restartNeeded };
}

/**
 * `stopped` resolves with the signal once SIGTERM or SIGINT arrives; until
 * then SIGHUP calls `onHangup` (when given). `remove` takes the listeners
 * away.
 */
function stopSignals(
  options: { onHangup: (() => void) | null },
): { stopped: Promise<string>; remove(): void } {
  const { promise: stopped, resolve: stop } = Promise.withResolvers<string>();
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", () => stop("SIGTERM")],
    ["SIGINT", () => stop("SIGINT")],
  ];
  if (options.onHangup) handlers.push(["SIGHUP", options.onHangup]);
  for (const [sig, fn] of handlers) Deno.addSignalListener(sig, fn);
  return {
    stopped,
    remove: () => {
      for (const [s, fn] of handlers) Deno.removeSignalListener(s, fn);
    },
  };
}
