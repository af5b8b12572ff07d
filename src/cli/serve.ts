/**
 * `pitifulnat serve`: run the FTP server until SIGTERM/SIGINT; SIGHUP
 * reloads users, limits and the public-address settings.
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import { FtpServer } from "../serve/server.ts";
import { loadFromCli } from "./common.ts";
import { runServer } from "./run_server.ts";

const HAS_PROXY = "this config has a proxy section, which serve does not use: run " +
  "`pitifulnat proxy` with it, or remove the section to serve files";

/** Runs the server; resolves with the exit code once it has stopped. */
export async function runServe(options: { config?: string }): Promise<number> {
  const loaded = await loadFromCli(options.config, { allowDefault: true });
  if (!loaded) return 2;
  if (loaded.config.proxy) {
    console.error(`pitifulnat serve: ${loaded.file}: ${HAS_PROXY}`);
    return 2;
  }
  const demo = loaded.demoDir;
  try {
    return await runServer((config, options) => new FtpServer(config, options), {
      config: loaded.config,
      file: loaded.file,
      kind: "serve",
      validate: (next) => next.proxy ? HAS_PROXY : null,
      banner: demo
        ? (url) =>
          `pitifulnat ${denoJson.version}: serving the demo directory ${demo}\n` +
          `  read-only to anonymous users at ${url} (try: curl ${url})\n` +
          `  This is the embedded default config. For a real setup copy config.example.yaml,\n` +
          `  edit it, and run: pitifulnat check --config FILE && pitifulnat serve --config FILE`
        : undefined,
    });
  } finally {
    if (demo) await Deno.remove(demo, { recursive: true }).catch(() => {});
  }
}
