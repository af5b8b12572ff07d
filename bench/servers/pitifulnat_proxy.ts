/**
 * `pitifulnat proxy` in front of vsftpd: vsftpd (configured as in
 * `vsftpd.ts`, same system user) listens on its own loopback port and
 * `deno run main.ts proxy --config <tmp>` listens on the control port in
 * front of it. The handle's PID is the proxy's, so CPU and memory figures
 * are the proxy process's alone; stopping it stops both, each by its PID.
 * It takes part only in workload 8, which compares it with vsftpd direct.
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import {
  type BenchServer,
  freePort,
  runCommand,
  type RunningServer,
  spawnServer,
} from "./common.ts";
import { PERMISSIONS } from "./pitifulnat.ts";
import { vsftpd } from "./vsftpd.ts";

const REPO = new URL("../../", import.meta.url).pathname;
/** Upstream control ports are looked for from the proxy's port plus this. */
const UPSTREAM_PORT_OFFSET = 100;

/** The proxy with vsftpd as its upstream. */
export const pitifulnatProxy: BenchServer = {
  name: "pitifulnat-proxy",
  workloads: [8],
  // Half for the proxy, half for vsftpd; the workload opens a few at a time.
  passivePorts: 100,
  async prepare(ctx) {
    const upstream = await vsftpd.prepare(ctx);
    if (typeof upstream === "string") return `upstream vsftpd: ${upstream}`;
    const cached = await runCommand([Deno.execPath(), "cache", "main.ts"], {
      cwd: REPO,
      timeoutMs: 120_000,
    });
    if (cached.code !== 0) return `deno cache main.ts failed: ${cached.stderr.trim()}`;
    return {
      version: `${denoJson.version} (deno ${Deno.version.deno}, from source) ` +
        `in front of vsftpd ${upstream.version}`,
      passwordHash: `checked by the upstream (${upstream.passwordHash})`,
    };
  },
  async start(o) {
    const half = Math.floor((o.pasvMax - o.pasvMin + 1) / 2);
    const upstreamDir = `${o.dir}/upstream`;
    await Deno.mkdir(upstreamDir, { recursive: true });
    const upstream = await vsftpd.start({
      ...o,
      dir: upstreamDir,
      port: freePort(o.port + UPSTREAM_PORT_OFFSET),
      pasvMin: o.pasvMin + half,
      pasvMax: o.pasvMax,
    });
    let proxy: RunningServer;
    try {
      const config = `${o.dir}/pitifulnat-proxy.yaml`;
      await Deno.writeTextFile(
        config,
        JSON.stringify(
          {
            listen: { address: "127.0.0.1", port: o.port },
            passive: { min_port: o.pasvMin, max_port: o.pasvMin + half - 1 },
            limits: { max_sessions: 4000, max_sessions_per_address: 4000 },
            log: { level: "info" },
            proxy: { upstream: { host: "127.0.0.1", port: upstream.port } },
          },
          null,
          2,
        ) + "\n", // JSON is YAML
      );
      proxy = await spawnServer(
        [Deno.execPath(), "run", ...PERMISSIONS, "main.ts", "proxy", "--config", config],
        { port: o.port, cwd: REPO, env: { MALLOC_MMAP_THRESHOLD_: "131072" } },
      );
    } catch (e) {
      await upstream.stop();
      throw e;
    }
    let stopped: Promise<void> | null = null;
    return {
      pid: proxy.pid,
      launcher: false,
      port: o.port,
      startupMs: proxy.startupMs,
      tail: () => `${proxy.tail()}\n[upstream vsftpd]\n${upstream.tail()}`,
      stop: () =>
        stopped ??= (async () => {
          await proxy.stop();
          await upstream.stop();
        })(),
    };
  },
};
