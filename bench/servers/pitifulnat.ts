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
  "--v8-flags=--max-semi-space-size=2",
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
function bundlePath(dir: string): string {
  return `${dir}/pitifulnat.js`;
}

/**
 * The `--v8-flags=...` of the start task in `repo`'s deno.json, for
 * another checkout run side by side (see {@linkcode pitifulnatFrom}).
 */
function v8FlagsOf(repo: string): string[] {
  try {
    const json = JSON.parse(Deno.readTextFileSync(`${repo}/deno.json`));
    const start = String(json?.tasks?.start ?? "");
    return start.split(/\s+/).filter((w) => w.startsWith("--v8-flags="));
  } catch {
    return [];
  }
}

/**
 * pitifulnat bundled from the checkout at `repo` and run as its start task
 * runs it, under the column `name`. `PN_BENCH_BASE=/path/to/checkout` adds
 * one more (`pitifulnat-base`, with that checkout's V8 flags), so a change
 * is measured against the code before it in the same rounds.
 */
export function pitifulnatFrom(name: string, repo: string): BenchServer {
  let passwordHash = "";
  const v8 = repo === REPO
    ? PERMISSIONS.filter((p) => p.startsWith("--v8-flags="))
    : v8FlagsOf(repo);
  const permissions = [...v8, ...PERMISSIONS.filter((p) => !p.startsWith("--v8-flags="))];
  return {
    name,
    tls: true,
    async prepare({ dir, user }) {
      // Build the bundle once, so start-up is neither a download nor a build.
      const built = await runCommand(
        [Deno.execPath(), "bundle", ...BUNDLE_FLAGS, "--output", bundlePath(dir), "main.ts"],
        { cwd: repo, timeoutMs: 120_000 },
      );
      if (built.code !== 0) return `deno bundle main.ts failed: ${built.stderr.trim()}`;
      passwordHash = await hashPassword(user.password);
      const { N, r, p } = SCRYPT_PARAMS;
      return {
        version: `${denoJson.version} (deno ${Deno.version.deno}, bundled from ` +
          (repo === REPO ? "source)" : `${repo}, ${v8.join(" ") || "no V8 flags"})`),
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
          ...permissions,
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
}

/** The server under test. */
export const pitifulnat: BenchServer = pitifulnatFrom("pitifulnat", REPO);
