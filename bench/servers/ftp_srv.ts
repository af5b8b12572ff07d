/**
 * ftp-srv from npm, run under Node.js by `ftp_srv_runner.mjs`. It is
 * installed with npm into the benchmark's temporary directory each run, so
 * no node_modules ends up in the repository.
 * @module
 */
import { type BenchServer, runCommand, spawnServer, which } from "./common.ts";

const VERSION = "4.6.3";
const RUNNER = new URL("./ftp_srv_runner.mjs", import.meta.url).pathname;
let installDir = "";

/** ftp-srv under node. */
export const ftpSrv: BenchServer = {
  name: "ftp-srv",
  async prepare({ dir }) {
    if (!await which("node") || !await which("npm")) return "node/npm is not installed";
    installDir = `${dir}/ftp-srv`;
    await Deno.mkdir(installDir, { recursive: true });
    const npm = await runCommand([
      "npm",
      "install",
      "--prefix",
      installDir,
      "--no-audit",
      "--no-fund",
      "--no-save",
      "--loglevel=error",
      `ftp-srv@${VERSION}`,
    ], { timeoutMs: 180_000 });
    if (npm.code !== 0) return `npm install ftp-srv@${VERSION} failed: ${npm.stderr.trim()}`;
    const node = await runCommand(["node", "--version"], { timeoutMs: 10_000 });
    return {
      version: `${VERSION} (node ${node.stdout.trim()})`,
      passwordHash: "none (plain-text compare in the login handler)",
    };
  },
  async start(o) {
    return await spawnServer([
      "node",
      RUNNER,
      installDir,
      String(o.port),
      String(o.pasvMin),
      String(o.pasvMax),
      o.root,
      o.user.name,
      o.user.password,
    ], { port: o.port });
  },
};
