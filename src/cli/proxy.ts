/**
 * `pitifulnat proxy`: run the NAT-fixing proxy in front of an existing FTP
 * server until SIGTERM/SIGINT; SIGHUP reloads limits, the LAN list, the
 * public-address settings and the upstream (for new sessions).
 * @module
 */
import { ProxyServer } from "../proxy/server.ts";
import { loadFromCli } from "./common.ts";
import { runServer } from "./run_server.ts";

const NO_PROXY = "no proxy section, which proxy needs: set proxy.upstream.host (see " +
  "config.example.yaml), or run `pitifulnat serve` with this config to serve files";

/** Runs the proxy; resolves with the exit code once it has stopped. */
export async function runProxy(options: { config?: string }): Promise<number> {
  const loaded = await loadFromCli(options.config, { allowDefault: false });
  if (!loaded) return 2;
  if (!loaded.config.proxy) {
    console.error(`pitifulnat proxy: ${loaded.file}: ${NO_PROXY}`);
    return 2;
  }
  return await runServer((config, options) => new ProxyServer(config, options), {
    config: loaded.config,
    file: loaded.file,
    kind: "proxy",
    validate: (next) => next.proxy ? null : NO_PROXY,
  });
}
