/**
 * pyftpdlib (Debian's python3-pyftpdlib): one process, an asynchronous
 * event loop, sendfile() for downloads.
 * @module
 */
import { type BenchServer, runCommand, spawnServer, which } from "./common.ts";

const PYTHON = "/usr/bin/python3";
const RUNNER = new URL("./pyftpdlib_runner.py", import.meta.url).pathname;

/** pyftpdlib under the system Python. */
export const pyftpdlib: BenchServer = {
  name: "pyftpdlib",
  async prepare() {
    if (!await which(PYTHON)) return `${PYTHON} is not installed`;
    const probe = await runCommand([PYTHON, "-c", "import pyftpdlib"], { timeoutMs: 20_000 });
    if (probe.code !== 0) {
      return "python3-pyftpdlib is not installed (apt-get install python3-pyftpdlib)";
    }
    const pkg = await runCommand(
      ["dpkg-query", "-W", "-f", "${Version}", "python3-pyftpdlib"],
      { timeoutMs: 10_000 },
    );
    return {
      version: pkg.code === 0 ? pkg.stdout.trim() : "unknown",
      passwordHash: "none (plain-text compare, DummyAuthorizer)",
    };
  },
  async start(o) {
    return await spawnServer([
      PYTHON,
      RUNNER,
      String(o.port),
      String(o.pasvMin),
      String(o.pasvMax),
      o.root,
      o.user.name,
      o.user.password,
    ], { port: o.port });
  },
};
