/**
 * pitifulnat itself, built from this checkout and run as `deno task start`
 * runs it (one bundled file, `deno run ... pitifulnat.js serve`) in a
 * subprocess, so its CPU time and memory are measured like any other
 * server's.
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import { hashPassword, SCRYPT_PARAMS } from "../../src/auth/password.ts";
import { startBundleFlags } from "../../scripts/compile_all.ts";
import { type BenchServer, runCommand, spawnServer } from "./common.ts";

const REPO = new URL("../../", import.meta.url).pathname;
/** The permissions and V8 flags pitifulnat is run with (those of `deno task start`). */
export const PERMISSIONS = [
  "--v8-flags=--max-semi-space-size=1",
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];
/** How `deno task start` bundles main.ts into the one file it runs. */
export const BUNDLE_FLAGS: string[] = startBundleFlags();
/**
 * The other `deno run` flags of `deno task start`: the bundle needs no
 * deno.json, and without a code cache the server is 2 MiB smaller.
 */
export const RUN_FLAGS = ["--no-config", "--no-code-cache"];
/** The environment of `deno task start` (see README). */
export const RUN_ENV: Record<string, string> = {
  MALLOC_MMAP_THRESHOLD_: "131072",
  DENO_NO_UPDATE_CHECK: "1",
};
let passwordHash = "";

function bundlePath(dir: string): string {
  return `${dir}/pitifulnat.js`;
}

/** The server under test. */
export const pitifulnat: BenchServer = {
  name: "pitifulnat",
  tls: true,
  async prepare({ dir, user }) {
    // Build the bundle once, so start-up is neither a download nor a build.
    const built = await runCommand(
      [Deno.execPath(), "bundle", ...BUNDLE_FLAGS, "--output", bundlePath(dir), "main.ts"],
      { cwd: REPO, timeoutMs: 120_000 },
    );
    if (built.code !== 0) return `deno bundle main.ts failed: ${built.stderr.trim()}`;
    passwordHash = await hashPassword(user.password);
    const { N, r, p } = SCRYPT_PARAMS;
    return {
      version: `${denoJson.version} (deno ${Deno.version.deno}, bundled from source)`,
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
          // FTPS workloads only: explicit AUTH TLS, required for every login and transfer.
          ...(o.tls
            ? { tls: { certificate: o.tls.certificate, key: o.tls.key, required: "always" } }
            : {}),
        },
        null,
        2,
      ) + "\n", // JSON is YAML
    );
    return await spawnServer(
      [
        Deno.execPath(),
        "run",
        ...RUN_FLAGS,
        ...PERMISSIONS,
        bundlePath(o.dir),
        "serve",
        "--config",
        config,
      ],
      // As the start task runs it (see README).
      { port: o.port, cwd: REPO, env: RUN_ENV },
    );
  },
};
