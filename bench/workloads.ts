/**
 * The benchmark workloads. Each one drives a started server with a real
 * client (curl, or Python's ftplib through `ftp_client.py`) over 127.0.0.1
 * and returns its figures; the harness (run.ts) starts and stops servers,
 * interleaves them and reports medians.
 * @module
 */
import { Sampler, treePrivateDirtyKiB, treePssKiB, treeRssKiB, treeSize } from "./proc.ts";
import {
  type BenchUser,
  clients,
  runCommand,
  type RunningServer,
  sleep,
  within,
} from "./servers/common.ts";
import { pitifulnatProxy } from "./servers/pitifulnat_proxy.ts";
import { vsftpd } from "./servers/vsftpd.ts";

/** Workload sizes of one mode. */
export interface Sizes {
  /** Bytes of the big file downloaded and uploaded. */
  bigBytes: number;
  /** Downloads of the 16 KiB file over one control connection. */
  smallCount: number;
  /** Concurrent sessions, and LIST + 1 MiB RETR rounds in each. */
  concSessions: number;
  concIterations: number;
  /** Sequential logins. */
  logins: number;
  /** Idle logged-in sessions held open. */
  idleSessions: number;
  /** Server starts per round for the start-up time. */
  startups: number;
  /** Time limit of one client run, in milliseconds. */
  clientTimeoutMs: number;
  /**
   * Longest measured loop of the small-file and login workloads, in seconds:
   * a slow server does fewer, and its rate is still a rate.
   */
  loopSeconds: number;
}

/** The sizes the issue asks for. */
export const FULL: Sizes = {
  bigBytes: 1 << 30,
  smallCount: 2000,
  concSessions: 64,
  concIterations: 10,
  logins: 500,
  idleSessions: 1000,
  startups: 3,
  clientTimeoutMs: 600_000,
  loopSeconds: 60,
};

/** About 10x smaller: a run of a few minutes. */
export const QUICK: Sizes = {
  bigBytes: 256 << 20,
  smallCount: 500,
  concSessions: 64,
  concIterations: 3,
  logins: 50,
  idleSessions: 100,
  startups: 3,
  clientTimeoutMs: 120_000,
  loopSeconds: 8,
};

/** Names of the files every server serves (relative to the user's home). */
export const FILES = {
  big: "big.bin",
  small: "small.bin",
  smallBytes: 16 * 1024,
  mid: "mid.bin",
  midBytes: 1 << 20,
  uploadDir: "upload",
} as const;

/** One reported figure. */
export interface Metric {
  key: string;
  label: string;
  better: "higher" | "lower";
  digits: number;
}

/** What a workload gets from the harness. */
export interface WorkloadContext {
  /** The started server; null for workloads that start their own. */
  server: RunningServer | null;
  /** Starts another instance (for the start-up workload). */
  startServer(account: boolean): Promise<RunningServer>;
  user: BenchUser;
  /** Real path of the served home. */
  root: string;
  sizes: Sizes;
  /** Unique text for file names of this run. */
  tag: string;
}

/** One workload. */
export interface Workload {
  id: number;
  title: string;
  /** True when the workload starts servers itself (start-up time). */
  ownStart?: boolean;
  /** Names of the only servers it runs on; all when absent. */
  servers?: readonly string[];
  /**
   * Runs over FTPS: only servers that can (`BenchServer.tls`) take part, and
   * they are started with the run's certificate, requiring TLS.
   */
  tls?: boolean;
  metrics: (sizes: Sizes) => Metric[];
  run(ctx: WorkloadContext): Promise<Record<string, number>>;
  /**
   * Lines for the report below the table, from `med(server, key)` (the
   * median of one figure; NaN when it was not measured).
   */
  summary?: (med: (server: string, key: string) => number, sizes: Sizes) => string[];
}

const CLIENT = new URL("./ftp_client.py", import.meta.url).pathname;
const CURL_FORMAT = "%{size_download} %{size_upload} %{time_pretransfer} %{time_total}\\n";
/**
 * curl's options for FTPS: AUTH TLS, then PBSZ 0 and PROT P (every data
 * connection in TLS too), or fail; `--insecure` (`-k`) accepts the run's
 * self-signed certificate.
 */
const CURL_TLS = ["--ssl-reqd", "--insecure"];
/** Sampling period of server CPU and memory, in milliseconds. */
const SAMPLE_MS = 10;

function url(server: RunningServer, user: BenchUser, path: string): string {
  return `ftp://${encodeURIComponent(user.name)}:${encodeURIComponent(user.password)}` +
    `@127.0.0.1:${server.port}/${path}`;
}

function need(ctx: WorkloadContext): RunningServer {
  if (!ctx.server) throw new Error("no server started");
  return ctx.server;
}

function sampler(server: RunningServer, ms = SAMPLE_MS): Sampler {
  return new Sampler(server.pid, ms, { skipRoot: server.launcher });
}

/**
 * Waits (bounded) until the server's process tree is back to `size`
 * processes, so session processes of a forking server have ended.
 */
async function settle(server: RunningServer, size: number): Promise<void> {
  for (let i = 0; i < 200 && treeSize(server.pid) > size; i++) await sleep(10);
}

function mib(kib: number): number {
  return kib / 1024;
}

/**
 * Runs curl with two transfers on one control connection: a warm-up of
 * the 16 KiB file, then (at least 250 ms later, `--rate 4/s`) the measured
 * one. Returns the bytes and seconds of the measured transfer phase (after
 * EPSV and RETR/STOR are sent) and the harness time when curl exited, so the
 * server's CPU can be read over that phase alone: the pause keeps the
 * password check out of the window.
 */
async function curl(
  args: string[],
  sizes: Sizes,
): Promise<{ bytes: number; seconds: number; endedAt: number }> {
  const out = await runCommand([
    "curl",
    "--silent",
    "--show-error",
    "--rate",
    "4/s",
    "--max-time",
    String(Math.ceil(sizes.clientTimeoutMs / 1000)),
    "--write-out",
    CURL_FORMAT,
    ...args,
  ], { timeoutMs: sizes.clientTimeoutMs + 5000 });
  const endedAt = performance.now();
  if (out.code !== 0) throw new Error(`curl exited ${out.code}: ${out.stderr.trim()}`);
  const lines = out.stdout.trim().split("\n");
  if (lines.length !== 2) throw new Error(`curl printed: ${out.stdout.trim()}`);
  const [down, up, pre, total] = lines[1].split(" ").map(Number);
  return { bytes: Math.max(down, up), seconds: total - pre, endedAt };
}

/** Runs ftp_client.py in `mode` and returns its JSON result. */
async function client(
  mode: string,
  args: (string | number)[],
  sizes: Sizes,
): Promise<{ result: Record<string, number>; endedAt: number }> {
  const deadline = Math.ceil(sizes.clientTimeoutMs / 1000);
  const out = await runCommand(
    [
      "python3",
      CLIENT,
      "--deadline",
      String(deadline),
      "--max-seconds",
      String(sizes.loopSeconds),
      mode,
      ...args.map(String),
    ],
    { timeoutMs: sizes.clientTimeoutMs + 10_000 },
  );
  const endedAt = performance.now();
  if (out.code !== 0) {
    const last = out.stderr.trim().split("\n").pop() ?? "";
    throw new Error(`ftp_client.py ${mode} exited ${out.code}: ${last.slice(0, 300)}`);
  }
  return { result: JSON.parse(out.stdout.trim().split("\n").pop() ?? "{}"), endedAt };
}

/** Server CPU seconds over the `seconds` that ended at `endedAt`. */
function cpuOver(s: Sampler, endedAt: number, seconds: number): number {
  return s.cpuAt(endedAt) - s.cpuAt(endedAt - seconds * 1000);
}

/**
 * Downloads the big file with curl (EPSV), plus `extra` curl options
 * (CURL_TLS for FTPS): MB/s and server CPU s/GB.
 */
async function measureDownload(
  ctx: WorkloadContext,
  extra: string[] = [],
): Promise<{ mbps: number; cpu: number }> {
  const server = need(ctx);
  const s = sampler(server);
  try {
    const r = await curl([
      ...extra,
      "--output",
      "/dev/null",
      url(server, ctx.user, FILES.small),
      "--output",
      "/dev/null",
      url(server, ctx.user, FILES.big),
    ], ctx.sizes);
    s.stop();
    if (r.bytes !== ctx.sizes.bigBytes) throw new Error(`got ${r.bytes} bytes`);
    return {
      mbps: r.bytes / 1e6 / r.seconds,
      cpu: cpuOver(s, r.endedAt, r.seconds) / (r.bytes / 1e9),
    };
  } finally {
    s.stop();
  }
}

/**
 * Uploads the big file into `upload/` with curl (EPSV), plus `extra` curl
 * options (CURL_TLS for FTPS): MB/s and server CPU s/GB.
 */
async function measureUpload(
  ctx: WorkloadContext,
  extra: string[] = [],
): Promise<{ mbps: number; cpu: number }> {
  const server = need(ctx);
  const name = `${FILES.uploadDir}/${ctx.tag}.bin`;
  const warmup = `${FILES.uploadDir}/${ctx.tag}.warmup`;
  const s = sampler(server);
  try {
    const r = await curl([
      ...extra,
      "--upload-file",
      `${ctx.root}/${FILES.small}`,
      url(server, ctx.user, warmup),
      "--upload-file",
      `${ctx.root}/${FILES.big}`,
      url(server, ctx.user, name),
    ], ctx.sizes);
    s.stop();
    const stored = (await Deno.stat(`${ctx.root}/${name}`)).size;
    if (stored !== ctx.sizes.bigBytes) throw new Error(`stored ${stored} bytes`);
    return {
      mbps: r.bytes / 1e6 / r.seconds,
      cpu: cpuOver(s, r.endedAt, r.seconds) / (r.bytes / 1e9),
    };
  } finally {
    s.stop();
    await Deno.remove(`${ctx.root}/${name}`).catch(() => {});
    await Deno.remove(`${ctx.root}/${warmup}`).catch(() => {});
  }
}

const download: Workload = {
  id: 1,
  title: "download (curl, EPSV)",
  metrics: (z) => [
    { key: "mbps", label: `download ${gib(z.bigBytes)}, MB/s`, better: "higher", digits: 0 },
    { key: "cpu", label: "download, server CPU s/GB", better: "lower", digits: 3 },
  ],
  run: (ctx) => measureDownload(ctx),
};

const upload: Workload = {
  id: 2,
  title: "upload (curl, EPSV)",
  metrics: (z) => [
    { key: "mbps", label: `upload ${gib(z.bigBytes)}, MB/s`, better: "higher", digits: 0 },
    { key: "cpu", label: "upload, server CPU s/GB", better: "lower", digits: 3 },
  ],
  run: (ctx) => measureUpload(ctx),
};

const smallFiles: Workload = {
  id: 3,
  title: "small files, one control connection (ftplib, PASV)",
  metrics: (z) => [
    {
      key: "rate",
      label: `16 KiB downloads (${z.smallCount} or ${z.loopSeconds} s), files/s`,
      better: "higher",
      digits: 0,
    },
    { key: "cpu", label: "small files, server CPU ms/file", better: "lower", digits: 2 },
  ],
  async run(ctx) {
    const server = need(ctx);
    const s = sampler(server);
    try {
      const { result, endedAt } = await client("small", [
        "127.0.0.1",
        server.port,
        ctx.user.name,
        ctx.user.password,
        FILES.small,
        ctx.sizes.smallCount,
      ], ctx.sizes);
      s.stop();
      if (result.failures > 0 || result.files === 0) {
        throw new Error(`${result.files} files, ${result.failures} failures`);
      }
      return {
        rate: result.files / result.seconds,
        cpu: (cpuOver(s, endedAt, result.seconds) * 1000) / result.files,
      };
    } finally {
      s.stop();
    }
  },
};

const concurrent: Workload = {
  id: 4,
  title: "concurrent sessions (ftplib threads)",
  metrics: (z) => [
    {
      key: "seconds",
      label: `${z.concSessions} sessions × ${z.concIterations} (LIST + 1 MiB) after login, s`,
      better: "lower",
      digits: 2,
    },
    { key: "failures", label: "concurrent, failed rounds", better: "lower", digits: 0 },
    { key: "peak", label: "concurrent, peak server RSS MiB", better: "lower", digits: 1 },
  ],
  async run(ctx) {
    const server = need(ctx);
    const s = sampler(server, 20);
    try {
      const { result } = await client("concurrent", [
        "127.0.0.1",
        server.port,
        ctx.user.name,
        ctx.user.password,
        FILES.mid,
        ctx.sizes.concSessions,
        ctx.sizes.concIterations,
      ], ctx.sizes);
      s.stop();
      return { seconds: result.seconds, failures: result.failures, peak: mib(s.peakRssKiB()) };
    } finally {
      s.stop();
    }
  },
};

const logins: Workload = {
  id: 5,
  title: "sequential logins (ftplib)",
  metrics: (z) => [
    {
      key: "rate",
      label: `sequential logins (${z.logins} or ${z.loopSeconds} s), logins/s`,
      better: "higher",
      digits: 1,
    },
    { key: "cpu", label: "logins, server CPU ms/login", better: "lower", digits: 1 },
  ],
  run: (ctx) => measureLogins(ctx, "logins"),
};

/**
 * Sequential logins with ftp_client.py in `mode` (`logins`, or `tls-logins`
 * for FTPS): logins/s and server CPU ms per login over the whole loop.
 */
async function measureLogins(
  ctx: WorkloadContext,
  mode: "logins" | "tls-logins",
): Promise<{ rate: number; cpu: number }> {
  const server = need(ctx);
  const s = sampler(server, 20);
  try {
    const { result, endedAt } = await client(mode, [
      "127.0.0.1",
      server.port,
      ctx.user.name,
      ctx.user.password,
      ctx.sizes.logins,
    ], ctx.sizes);
    s.stop();
    if (result.failures > 0 || result.ok === 0) {
      throw new Error(`${result.ok} logins, ${result.failures} failures`);
    }
    return {
      rate: result.ok / result.seconds,
      cpu: (cpuOver(s, endedAt, result.seconds) * 1000) / result.ok,
    };
  } finally {
    s.stop();
  }
}

const idle: Workload = {
  id: 6,
  title: "idle logged-in sessions (ftplib)",
  metrics: (z) => [
    {
      key: "rss",
      label: `${z.idleSessions} idle sessions, server RSS MiB`,
      better: "lower",
      digits: 1,
    },
    { key: "pss", label: "idle sessions, server PSS MiB", better: "lower", digits: 1 },
    {
      key: "perSession",
      label: "idle sessions, private dirty KiB/session",
      better: "lower",
      digits: 0,
    },
  ],
  async run(ctx) {
    const server = need(ctx);
    const mem = { skipRoot: server.launcher };
    // The baseline is taken after one login has come and gone, so memory a
    // server sets up on first use is not charged to the idle sessions.
    await client(
      "logins",
      ["127.0.0.1", server.port, ctx.user.name, ctx.user.password, 1],
      ctx.sizes,
    );
    await settle(server, server.launcher ? 2 : 1);
    const before = treePrivateDirtyKiB(server.pid, mem);
    const child = new Deno.Command("python3", {
      args: [
        CLIENT,
        "--deadline",
        String(Math.ceil(ctx.sizes.clientTimeoutMs / 1000)),
        "idle",
        "127.0.0.1",
        String(server.port),
        ctx.user.name,
        ctx.user.password,
        String(ctx.sizes.idleSessions),
        "8",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    clients.add(child.pid);
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    }, ctx.sizes.clientTimeoutMs + 10_000);
    const stdin = child.stdin.getWriter();
    let errText = "";
    const errDone = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) errText = (errText + dec.decode(chunk)).slice(-2000);
    })().catch(() => {});
    try {
      const first = await firstLine(child.stdout, ctx.sizes.clientTimeoutMs).catch((e) => {
        throw new Error(`${(e as Error).message}; ${errText.trim()}`);
      });
      const opened = JSON.parse(first) as { opened: number; failures: number };
      if (opened.opened !== ctx.sizes.idleSessions) {
        throw new Error(`opened ${opened.opened} sessions, ${opened.failures} failures`);
      }
      await sleep(500);
      const rss = treeRssKiB(server.pid, mem);
      const pss = treePssKiB(server.pid, mem);
      const dirty = treePrivateDirtyKiB(server.pid, mem);
      return {
        rss: mib(rss),
        pss: mib(pss),
        perSession: (dirty - before) / opened.opened,
      };
    } finally {
      await stdin.write(new TextEncoder().encode("close\n")).catch(() => {});
      await stdin.close().catch(() => {});
      await child.stdout.cancel().catch(() => {});
      if (await within(child.status, 10_000) === "timeout") {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
        await child.status;
      }
      await errDone;
      clearTimeout(killer);
      clients.delete(child.pid);
    }
  },
};

/** Reads the first line of a stream within `timeoutMs`, then keeps draining it. */
async function firstLine(stream: ReadableStream<Uint8Array>, timeoutMs: number): Promise<string> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = performance.now() + timeoutMs;
  try {
    while (!text.includes("\n")) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error("no answer from the client in time");
      const r = await within(reader.read(), left);
      if (r === "timeout") throw new Error("no answer from the client in time");
      if (r.done) throw new Error(`client ended early: ${text}`);
      text += decoder.decode(r.value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
  return text.slice(0, text.indexOf("\n"));
}

const startup: Workload = {
  id: 7,
  title: "start-up: process start to first 220 greeting",
  ownStart: true,
  metrics: () => [
    { key: "ms", label: "start to 220 greeting, ms", better: "lower", digits: 0 },
  ],
  async run(ctx) {
    const times: number[] = [];
    for (let i = 0; i < ctx.sizes.startups; i++) {
      const s = await ctx.startServer(false);
      times.push(s.startupMs);
      await s.stop();
    }
    return { ms: median(times) };
  },
};

/** Workload 8's target: the proxy moves a download and an upload at least this fraction as fast. */
export const PROXY_TARGET = 0.9;

/**
 * Workload 8: the download and upload of workloads 1 and 2 through
 * `pitifulnat proxy` in front of vsftpd, and straight from vsftpd, in the
 * same round. The proxy's figures are its own process's CPU; the ratio to
 * vsftpd in the table is proxy / direct.
 */
const proxy: Workload = {
  id: 8,
  title: "through pitifulnat proxy vs vsftpd direct (curl, EPSV)",
  servers: [vsftpd.name, pitifulnatProxy.name],
  metrics: (z) => [
    {
      key: "down",
      label: `download ${gib(z.bigBytes)} via proxy (vsftpd: direct), MB/s`,
      better: "higher",
      digits: 0,
    },
    {
      key: "downCpu",
      label: "download via proxy, proxy process CPU s/GB (vsftpd: server CPU)",
      better: "lower",
      digits: 3,
    },
    {
      key: "up",
      label: `upload ${gib(z.bigBytes)} via proxy (vsftpd: direct), MB/s`,
      better: "higher",
      digits: 0,
    },
    {
      key: "upCpu",
      label: "upload via proxy, proxy process CPU s/GB (vsftpd: server CPU)",
      better: "lower",
      digits: 3,
    },
  ],
  async run(ctx) {
    const down = await measureDownload(ctx);
    const up = await measureUpload(ctx);
    return { down: down.mbps, downCpu: down.cpu, up: up.mbps, upCpu: up.cpu };
  },
  summary(med, z) {
    const lines: string[] = [];
    for (const [what, key] of [["download", "down"], ["upload", "up"]] as const) {
      const via = med(pitifulnatProxy.name, key);
      const direct = med(vsftpd.name, key);
      if (!Number.isFinite(via) || !Number.isFinite(direct) || direct === 0) continue;
      const ratio = via / direct;
      const verdict = ` (target ≥ ${PROXY_TARGET.toFixed(2)}×: ${
        ratio >= PROXY_TARGET ? "met" : "NOT met"
      })`;
      lines.push(
        `- ${what} of ${gib(z.bigBytes)}: via \`pitifulnat proxy\` ${via.toFixed(0)} MB/s, ` +
          `straight from vsftpd ${direct.toFixed(0)} MB/s: ${ratio.toFixed(2)}×${verdict}; ` +
          `proxy process CPU ${med(pitifulnatProxy.name, `${key}Cpu`).toFixed(3)} s/GB ` +
          `(vsftpd direct: ${med(vsftpd.name, `${key}Cpu`).toFixed(3)} s/GB)`,
      );
    }
    return lines.length ? ["Workload 8, proxy vs direct (medians):", ...lines] : [];
  },
};

/**
 * Workload 9: workloads 1 and 2 over FTPS (AUTH TLS, PBSZ 0, PROT P): the
 * big file down, then up, on one server process, with curl `--ssl-reqd`.
 */
const tlsTransfer: Workload = {
  id: 9,
  title: "FTPS download and upload (curl --ssl-reqd, PROT P, EPSV)",
  tls: true,
  metrics: (z) => [
    { key: "down", label: `FTPS download ${gib(z.bigBytes)}, MB/s`, better: "higher", digits: 0 },
    { key: "downCpu", label: "FTPS download, server CPU s/GB", better: "lower", digits: 3 },
    { key: "up", label: `FTPS upload ${gib(z.bigBytes)}, MB/s`, better: "higher", digits: 0 },
    { key: "upCpu", label: "FTPS upload, server CPU s/GB", better: "lower", digits: 3 },
  ],
  async run(ctx) {
    const down = await measureDownload(ctx, CURL_TLS);
    const up = await measureUpload(ctx, CURL_TLS);
    return { down: down.mbps, downCpu: down.cpu, up: up.mbps, upCpu: up.cpu };
  },
};

/**
 * Workload 10: workload 5 over FTPS: each new connection does AUTH TLS (a
 * full handshake: ftplib does not resume sessions across connections), USER,
 * PASS and QUIT.
 */
const tlsLogins: Workload = {
  id: 10,
  title: "FTPS sequential logins (ftplib FTP_TLS)",
  tls: true,
  metrics: (z) => [
    {
      key: "rate",
      label: `FTPS logins, AUTH TLS + USER + PASS (${z.logins} or ${z.loopSeconds} s), logins/s`,
      better: "higher",
      digits: 1,
    },
    { key: "cpu", label: "FTPS logins, server CPU ms/login", better: "lower", digits: 1 },
  ],
  run: (ctx) => measureLogins(ctx, "tls-logins"),
};

/** Every workload, in the order they run within a round. */
export const WORKLOADS: readonly Workload[] = [
  download,
  upload,
  smallFiles,
  concurrent,
  logins,
  idle,
  startup,
  proxy,
  tlsTransfer,
  tlsLogins,
];

/** Median of finite numbers; NaN when there is none. */
export function median(values: number[]): number {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

function gib(bytes: number): string {
  return bytes >= 1 << 30 ? `${bytes / (1 << 30)} GiB` : `${bytes / (1 << 20)} MiB`;
}
