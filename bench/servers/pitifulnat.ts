/**
 * pitifulnat itself, run from this checkout as `deno run main.ts serve` in a
 * subprocess, so its CPU time and memory are measured like any other
 * server's.
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import { hashPassword, SCRYPT_PARAMS } from "../../src/auth/password.ts";
import { type BenchServer, runCommand, spawnServer } from "./common.ts";

const REPO = new URL("../../", import.meta.url).pathname;
/** The flags pitifulnat is run with (those of `deno task start`). */
export const PERMISSIONS = [
  "--v8-flags=--max-semi-space-size=1",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];
let passwordHash = "";

/** The server under test. */
export const pitifulnat: BenchServer = {
  name: "pitifulnat",
  async prepare({ user }) {
    // Fill the module cache, so start-up is not a download.
    const cached = await runCommand([Deno.execPath(), "cache", "main.ts"], {
      cwd: REPO,
      timeoutMs: 120_000,
    });
    if (cached.code !== 0) return `deno cache main.ts failed: ${cached.stderr.trim()}`;
    passwordHash = await hashPassword(user.password);
    const { N, r, p } = SCRYPT_PARAMS;
    return {
      version: `${denoJson.version} (deno ${Deno.version.deno}, from source)`,
      passwordHash: `scrypt N=${N}, r=${r}, p=${p}, ${(128 * N * r) / 2 ** 20} MiB`,
    };
  },
  async start(o) {
    const config = `${o.dir}/pitifulnat.yaml`;
    await Deno.writeTextFile(
      config,
      JSON.stringify(
        {
          listen: { address: "127.0.0.1", port: o.port },
          passive: { min_port: o.pasvMin, max_port: o.pasvMax },
          users: [{
            name: o.user.name,
            password: passwordHash,
            home: o.root,
            permissions: ["read", "write", "delete", "mkdir", "rename"],
          }],
          limits: { max_sessions: 4000, max_sessions_per_address: 4000 },
          // Its session and transfer lines in a file, as the others keep their logs.
          log: { level: "info", file: `${o.dir}/pitifulnat.log` },
        },
        null,
        2,
      ) + "\n", // JSON is YAML
    );
    return await spawnServer(
      [Deno.execPath(), "run", ...PERMISSIONS, "main.ts", "serve", "--config", config],
      // As the start task and the systemd unit run it (see README).
      { port: o.port, cwd: REPO, env: { MALLOC_MMAP_THRESHOLD_: "131072" } },
    );
  },
};
