/**
 * `pitifulnat proxy`: run the NAT-fixing proxy in front of an existing FTP
 * server until SIGTERM/SIGINT; SIGHUP reloads limits, the LAN list, the
 * public-address settings and the upstream (for new sessions).
 * @module
 */
import { getLogger } from "@logtape/logtape";
import denoJson from "../../deno.json" with { type: "json" };
import { ConfigError, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { setupLogging } from "../observe/log.ts";
import { serveStatus, type StatusSnapshot } from "../observe/status.ts";
import { ProxyServer } from "../proxy/server.ts";
import { loadFromCli, publicAddressFrom } from "./common.ts";
import type { PublicAddress } from "../nat/public_address.ts";

const NO_PROXY = "no proxy section: set proxy.upstream.host (see config.example.yaml)";

function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** The status snapshot of a running proxy, in the shape `pitifulnat status` prints. */
export function proxySnapshot(
  proxy: ProxyServer,
  options: { publicAddress: PublicAddress | null; startedAt: Date },
): StatusSnapshot {
  const { address, port } = proxy.config.listen;
  return {
    version: denoJson.version,
    startedAt: options.startedAt.toISOString(),
    listen: hostPort(address, port),
    publicAddress: options.publicAddress?.snapshot() ?? {
      address: null,
      fixed: false,
      resolvedAt: null,
      dnsServer: "(no public address configured)",
      lastError: null,
      lastErrorAt: null,
      consecutiveFailures: 0,
      nextRefreshAt: null,
      resolutions: { ok: 0, failed: 0 },
    },
    sessions: [...proxy.sessions].map((s) => ({
      id: s.id,
      peer: `${s.peer}:${s.peerPort}`,
      user: s.user,
      since: new Date(s.openedAt).toISOString(),
      transfer: s.transfer?.describe() ?? null,
    })),
    stats: { ...proxy.stats },
  };
}

/** Runs the proxy; resolves with the exit code once it has stopped. */
export async function runProxy(options: { config?: string }): Promise<number> {
  const loaded = await loadFromCli(options.config, { allowDefault: false });
  if (!loaded) return 2;
  const { config } = loaded;
  const file = loaded.file!;
  if (!config.proxy) {
    console.error(`pitifulnat proxy: ${file}: ${NO_PROXY}`);
    return 2;
  }
  await setupLogging(config.log);
  const log = getLogger(["pitifulnat", "proxy"]);
  let publicAddress = publicAddressFrom(config);
  const proxy = new ProxyServer(config, { publicAddress });
  let addr: Deno.NetAddr;
  try {
    addr = proxy.listen();
  } catch (e) {
    console.error(
      `pitifulnat: cannot listen on ${hostPort(config.listen.address, config.listen.port)}: ` +
        (e as Error).message,
    );
    return 1;
  }
  const upstream = config.proxy.upstream;
  log.info("proxy listening on ftp://{listen}/ for ftp://{upstream}/ (config: {file})", {
    listen: hostPort(addr.hostname, addr.port),
    upstream: hostPort(upstream.host, upstream.port),
    file,
  });
  const startedAt = new Date();
  await publicAddress?.start();
  const status = config.status.port
    ? serveStatus(
      { address: config.status.address, port: config.status.port },
      () => proxySnapshot(proxy, { publicAddress, startedAt }),
    )
    : null;

  const { promise: stopped, resolve: stop } = Promise.withResolvers<string>();
  const onStop = (sig: string) => () => stop(sig);
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", onStop("SIGTERM")],
    ["SIGINT", onStop("SIGINT")],
    ["SIGHUP", () => {
      loadConfig(file).then(async (next: Config) => {
        if (!next.proxy) throw new ConfigError([`${file}: ${NO_PROXY}`]);
        await setupLogging(next.log);
        const nextPa = publicAddressFrom(next);
        await nextPa?.start();
        proxy.reload(next, { publicAddress: nextPa });
        publicAddress?.stop();
        publicAddress = nextPa;
        log.info("reloaded {file}", { file });
      }).catch((e) => {
        log.error("reload of {file} failed; keeping the running config:\n{msg}", {
          file,
          msg: (e as Error).message,
        });
      });
    }],
  ];
  for (const [sig, fn] of handlers) Deno.addSignalListener(sig, fn);
  const sig = await stopped;
  log.info("{sig}: stopping", { sig });
  for (const [s, fn] of handlers) Deno.removeSignalListener(s, fn);
  await proxy.close({ graceMs: proxy.config.limits.shutdown_grace_seconds * 1000 });
  publicAddress?.stop();
  await status?.shutdown();
  return 0;
}
