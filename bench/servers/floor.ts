/**
 * The Deno floor (bench/floor.ts): a minimal Deno FTP loop on the native
 * file and socket APIs, run with pitifulnat's V8 flags and environment, on
 * the transfer workloads only (1, 2, 3), so pitifulnat/floor can be read
 * per workload in the same run. Not a server under test: its column says
 * what Deno itself costs on this machine.
 * @module
 */
import { type BenchServer, spawnServer } from "./common.ts";
import { PERMISSIONS, RUN_ENV } from "./pitifulnat.ts";

const FLOOR = new URL("../floor.ts", import.meta.url).pathname;

/** The floor, under `deno run` with pitifulnat's V8 flags. */
export const floor: BenchServer = {
  name: "floor",
  workloads: [1, 2, 3],
  // One transfer at a time: a few ports keep every range below 32768.
  passivePorts: 50,
  prepare() {
    return Promise.resolve({
      version: `bench/floor.ts (deno ${Deno.version.deno})`,
      passwordHash: "none (plain-text compare)",
    });
  },
  async start(o) {
    return await spawnServer([
      Deno.execPath(),
      "run",
      "--no-config",
      ...PERMISSIONS.filter((p) => p.startsWith("--v8-flags")),
      "--allow-net",
      "--allow-read",
      "--allow-write",
      FLOOR,
      String(o.port),
      String(o.pasvMin),
      String(o.pasvMax),
      o.root,
      o.user.name,
      o.user.password,
    ], { port: o.port, env: RUN_ENV });
  },
};
