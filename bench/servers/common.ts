/**
 * What every benchmarked server shares: the adapter interface, starting a
 * server in the foreground as a subprocess, waiting for its greeting, and
 * stopping it (and everything it forked) by PID.
 * @module
 */
import { processTree } from "../proc.ts";

/** The account every server is given. */
export interface BenchUser {
  name: string;
  password: string;
}

/** The run's self-signed FTPS certificate and its key (PEM files). */
export interface TlsFiles {
  certificate: string;
  key: string;
}

/** Where and how to start one server instance. */
export interface StartOptions {
  /** This server's own temporary directory (config, logs). */
  dir: string;
  /** The directory served as the user's home; `upload/` in it is writable. */
  root: string;
  /** Control port on 127.0.0.1. */
  port: number;
  /** Passive port range. */
  pasvMin: number;
  pasvMax: number;
  user: BenchUser;
  /**
   * Start forking servers under the subreaper launcher, so CPU time of every
   * session process is counted. Off when measuring start-up time.
   */
  account: boolean;
  /**
   * FTPS, for the workloads over TLS (9, 10): serve with this certificate
   * and require TLS for logins and data. Absent for every other workload,
   * which runs plain.
   */
  tls?: TlsFiles;
}

/** What preparing a server found. */
export interface Prepared {
  /** Version text for the report. */
  version: string;
  /** How the server checks passwords, for the report. */
  passwordHash: string;
}

/** One server under test. */
export interface BenchServer {
  name: string;
  /**
   * Checks that the server can run here and does one-time setup (install
   * into `dir`, users). Returns the reason to skip it, or what it found.
   */
  prepare(ctx: { dir: string; root: string; user: BenchUser }): Promise<Prepared | string>;
  start(options: StartOptions): Promise<RunningServer>;
  /** Ids of the only workloads this server takes part in; all when absent. */
  workloads?: readonly number[];
  /** Passive ports it needs (default 2,100: the idle workload holds 1,000 sessions). */
  passivePorts?: number;
  /** True when `start` takes `tls`: only such servers run the FTPS workloads. */
  tls?: boolean;
}

/** A started server. */
export interface RunningServer {
  /** Root of the accounted process tree (the launcher, when there is one). */
  readonly pid: number;
  /** True when `pid` is the subreaper launcher, whose own memory is not counted. */
  readonly launcher: boolean;
  readonly port: number;
  /** Milliseconds from spawn to the first complete 220 greeting. */
  startupMs: number;
  /** Last lines the server printed, for error reports. */
  tail(): string;
  /** Stops the server and everything it forked; bounded in time. */
  stop(): Promise<void>;
}

const SUBREAPER = new URL("./subreaper.py", import.meta.url).pathname;

/** Every server started and not yet stopped, for cleanup on failure. */
export const running = new Set<RunningServer>();

/** PIDs of client processes still running, for cleanup on failure. */
export const clients = new Set<number>();

/** Kills every client process still running (on interruption). */
export function killClients(): void {
  for (const pid of clients) kill(pid, "SIGKILL");
  clients.clear();
}

/** Keeps the last `max` characters of a stream. */
class Tail {
  #text = "";
  constructor(readonly max: number) {}
  push(chunk: string): void {
    this.#text = (this.#text + chunk).slice(-this.max);
  }
  toString(): string {
    return this.#text;
  }
}

async function drain(stream: ReadableStream<Uint8Array>, tail: Tail): Promise<void> {
  const decoder = new TextDecoder();
  try {
    for await (const chunk of stream) tail.push(decoder.decode(chunk, { stream: true }));
  } catch { /* closed */ }
}

/** Sleeps for `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits for `p` at most `ms` milliseconds; the timer never outlives the wait. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | "timeout"> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const timer = new Promise<"timeout">((r) => id = setTimeout(() => r("timeout"), ms));
  try {
    return await Promise.race([p, timer]);
  } finally {
    clearTimeout(id);
  }
}

/** Reads from `conn` until a final "220 " line arrives; false on anything else. */
async function readGreeting(conn: Deno.TcpConn, deadline: number): Promise<boolean> {
  const buf = new Uint8Array(4096);
  let text = "";
  while (performance.now() < deadline && text.length < 65536) {
    const n = await within(conn.read(buf), Math.max(1, deadline - performance.now()));
    if (n === "timeout" || n === null) return false;
    text += new TextDecoder().decode(buf.subarray(0, n));
    if (/(^|\n)220 [^\n]*\n/.test(text)) return true;
    if (/(^|\n)[1-5]\d\d [^\n]*\n/.test(text)) return false; // 421 and the like
  }
  return false;
}

/**
 * Waits until the port answers with a 220 greeting, polling every 5 ms, or
 * fails when the process exits or `timeoutMs` passes.
 */
async function waitForGreeting(
  port: number,
  exited: Promise<Deno.CommandStatus>,
  timeoutMs: number,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let done: Deno.CommandStatus | null = null;
  exited.then((s) => done = s, () => {});
  while (performance.now() < deadline) {
    if (done) throw new Error(`exited with code ${(done as Deno.CommandStatus).code}`);
    let conn: Deno.TcpConn | null = null;
    try {
      conn = await Deno.connect({ hostname: "127.0.0.1", port });
    } catch {
      await sleep(5);
      continue;
    }
    try {
      if (await readGreeting(conn, deadline)) return;
    } finally {
      try {
        conn.close();
      } catch { /* closed */ }
    }
    await sleep(5);
  }
  throw new Error(`no 220 greeting on port ${port} within ${timeoutMs} ms`);
}

function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/^\d+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

function kill(pid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(pid, signal);
  } catch { /* already gone */ }
}

/**
 * A server binary that Debian packages in conflict with vsftpd: the path
 * from `envVar` (an unpacked package) or the installed one. Returns the
 * path, or why it cannot be used.
 */
export async function conflictingBinary(
  envVar: string,
  options: { installed: string; pkg: string },
): Promise<{ bin: string } | { missing: string }> {
  const bin = Deno.env.get(envVar) ?? options.installed;
  if (await which(bin)) return { bin };
  return {
    missing: `${bin} is not installed (Debian's ${options.pkg} conflicts with vsftpd; ` +
      `set ${envVar} to an unpacked binary, see bench/README.md)`,
  };
}

/**
 * Spawns `argv` in the foreground (under the subreaper launcher when
 * `subreaper`), waits for its greeting on `port`, and returns a handle that
 * stops it. On failure the process is killed and the error carries its
 * output.
 */
export async function spawnServer(
  argv: string[],
  options: {
    port: number;
    subreaper?: boolean;
    cwd?: string;
    env?: Record<string, string>;
    readyTimeoutMs?: number;
  },
): Promise<RunningServer> {
  const full = options.subreaper ? ["python3", SUBREAPER, ...argv] : argv;
  const tail = new Tail(8192);
  const t0 = performance.now();
  const child = new Deno.Command(full[0], {
    args: full.slice(1),
    cwd: options.cwd,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  drain(child.stdout, tail);
  drain(child.stderr, tail);
  const status = child.status;
  let stopped: Promise<void> | null = null;
  const handle: RunningServer = {
    pid: child.pid,
    launcher: options.subreaper === true,
    port: options.port,
    startupMs: NaN,
    tail: () => tail.toString(),
    stop() {
      stopped ??= (async () => {
        // The whole tree, taken before the root can go away. Descendants
        // go first, newest first, and their parents get a moment to reap
        // them: a process orphaned to PID 1 may stay a zombie for good.
        const tree = processTree(child.pid).map((p) => p.pid);
        for (const pid of tree.slice(1).reverse()) kill(pid, "SIGTERM");
        for (let i = 0; i < 50 && processTree(child.pid).length > 1; i++) await sleep(10);
        kill(child.pid, "SIGTERM");
        if (await within(status, 3000) === "timeout") kill(child.pid, "SIGKILL");
        for (const pid of [...tree, ...processTree(child.pid).map((p) => p.pid)]) {
          if (pid !== child.pid && alive(pid)) kill(pid, "SIGKILL");
        }
        await within(status, 3000);
        running.delete(handle);
      })();
      return stopped;
    },
  };
  running.add(handle);
  try {
    await waitForGreeting(options.port, status, options.readyTimeoutMs ?? 20_000);
  } catch (e) {
    await handle.stop();
    throw new Error(`${(e as Error).message}; output:\n${tail.toString().trim()}`);
  }
  handle.startupMs = performance.now() - t0;
  return handle;
}

/** A free control port on 127.0.0.1, preferring `wanted`. */
export function freePort(wanted: number): number {
  for (const port of [wanted, 0]) {
    try {
      const l = Deno.listen({ hostname: "127.0.0.1", port });
      const got = (l.addr as Deno.NetAddr).port;
      l.close();
      return got;
    } catch { /* taken */ }
  }
  throw new Error("no free port");
}

/** Runs a command to completion with a time limit; returns its exit code and output. */
export async function runCommand(
  argv: string[],
  options: { timeoutMs: number; stdin?: string; cwd?: string; env?: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: options.cwd,
    env: options.env,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin)).catch(() => {});
    await w.close().catch(() => {});
  }
  const timer = setTimeout(() => kill(child.pid, "SIGKILL"), options.timeoutMs);
  clients.add(child.pid);
  try {
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
    clients.delete(child.pid);
  }
}

/** True when `cmd` is found on PATH (or is an existing path). */
export async function which(cmd: string): Promise<string | null> {
  if (cmd.includes("/")) {
    return await Deno.stat(cmd).then(() => cmd, () => null);
  }
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const path = `${dir}/${cmd}`;
    const info = await Deno.stat(path).catch(() => null);
    if (info?.isFile) return path;
  }
  return null;
}

/**
 * Creates the benchmark's system account if missing, points its home at
 * `home` and sets its password, for servers that log in system users.
 * Returns why that failed, or null.
 */
export async function ensureSystemUser(user: BenchUser, home: string): Promise<string | null> {
  if (Deno.uid() !== 0) return "needs root (it logs in a system user)";
  const name = user.name;
  const exists = await runCommand(["getent", "passwd", name], { timeoutMs: 10_000 });
  if (exists.code !== 0) {
    const add = await runCommand(
      ["useradd", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh", name],
      { timeoutMs: 30_000 },
    );
    if (add.code !== 0) return `useradd ${name} failed: ${add.stderr.trim()}`;
  }
  const mod = await runCommand(["usermod", "--home", home, name], { timeoutMs: 30_000 });
  if (mod.code !== 0) return `usermod ${name} failed: ${mod.stderr.trim()}`;
  const set = await runCommand(["chpasswd"], {
    timeoutMs: 30_000,
    stdin: `${name}:${user.password}\n`,
  });
  if (set.code !== 0) return `chpasswd failed: ${set.stderr.trim()}`;
  return null;
}

const ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Describes a yescrypt setting such as `j9T`: flags, then N and r (libxcrypt encoding). */
function yescryptParams(setting: string): string {
  if (setting.length < 3 || setting[0] !== "j") return setting;
  const nLog2 = ITOA64.indexOf(setting[1]) + 1;
  const r = ITOA64.indexOf(setting[2]) + 1;
  if (nLog2 < 2 || r < 1) return setting;
  const mib = (128 * 2 ** nLog2 * r) / 2 ** 20;
  return `N=${2 ** nLog2}, r=${r}, ${mib} MiB`;
}

/** Describes how the system stores `name`'s password, for the report. */
export async function systemPasswordHash(name: string): Promise<string> {
  const shadow = await runCommand(["getent", "shadow", name], { timeoutMs: 10_000 });
  const parts = (shadow.stdout.split(":")[1] ?? "").split("$");
  const id = parts[1] ?? "";
  const kind: Record<string, string> = {
    "y": `yescrypt ${yescryptParams(parts[2] ?? "")}`,
    "6": "SHA-512 crypt",
    "5": "SHA-256 crypt",
    "2b": "bcrypt",
    "1": "MD5 crypt",
  };
  return `system crypt: ${kind[id] ?? `$${id}$`}`;
}
