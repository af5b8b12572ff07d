/**
 * `pitifulnat serve`: run the FTP server until SIGTERM/SIGINT; SIGHUP
 * reloads users, limits and the public-address settings.
 * @module
 */
import { getLogger } from "@logtape/logtape";
import denoJson from "../../deno.json" with { type: "json" };
import { ConfigError, loadConfig } from "../config/load.ts";
import { FtpServer } from "../ftp/server.ts";
import { setupLogging } from "../observe/log.ts";
import { serveStatus, statusSnapshot } from "../observe/status.ts";
import { loadFromCli, publicAddressFrom } from "./common.ts";

/** Runs the server; resolves with the exit code once it has stopped. */
export async function runServe(options: { config?: string }): Promise<number> {
  const loaded = await loadFromCli(options.config, { allowDefault: true });
  if (!loaded) return 2;
  const { config } = loaded;
  await setupLogging(config.log);
  const log = getLogger(["pitifulnat", "serve"]);
  let publicAddress = publicAddressFrom(config);
  const server = new FtpServer(config, { publicAddress });
  let addr: Deno.NetAddr;
  try {
    addr = server.listen();
  } catch (e) {
    console.error(
      `pitifulnat: cannot listen on ${config.listen.address}:${config.listen.port}: ` +
        (e as Error).message,
    );
    return 1;
  }
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const startedAt = new Date();
  if (loaded.demoDir) {
    console.log(
      `pitifulnat ${denoJson.version}: serving the demo directory ${loaded.demoDir}\n` +
        `  read-only to anonymous users at ftp://${host}:${addr.port}/ (try: curl ftp://${host}:${addr.port}/)\n` +
        `  This is the embedded default config. For a real setup copy config.example.yaml,\n` +
        `  edit it, and run: pitifulnat check --config FILE && pitifulnat serve --config FILE`,
    );
  }
  log.info("listening on ftp://{host}:{port}/ (config: {file})", {
    host,
    port: addr.port,
    file: loaded.file ?? "embedded default",
  });
  await publicAddress?.start();
  const status = config.status.port
    ? serveStatus(
      { address: config.status.address, port: config.status.port },
      () => statusSnapshot(server, { publicAddress, version: denoJson.version, startedAt }),
    )
    : null;

  const { promise: stopped, resolve: stop } = Promise.withResolvers<string>();
  const onStop = (sig: string) => () => stop(sig);
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", onStop("SIGTERM")],
    ["SIGINT", onStop("SIGINT")],
  ];
  if (loaded.file) {
    const file = loaded.file;
    handlers.push(["SIGHUP", () => {
      loadConfig(file).then(async (next) => {
        await setupLogging(next.log);
        const nextPa = publicAddressFrom(next);
        await nextPa?.start();
        server.reload(next, { publicAddress: nextPa });
        publicAddress?.stop();
        publicAddress = nextPa;
        log.info("reloaded {file}", { file });
      }).catch((e) => {
        const msg = e instanceof ConfigError ? e.message : (e as Error).message;
        log.error("reload of {file} failed; keeping the running config:\n{msg}", { file, msg });
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
  if (loaded.demoDir) await Deno.remove(loaded.demoDir, { recursive: true }).catch(() => {});
  return 0;
}
