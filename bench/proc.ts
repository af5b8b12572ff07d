/**
 * Process accounting from /proc for the benchmarks: CPU time and memory of
 * a server's whole process tree (vsftpd forks per session, so one PID is
 * not the server).
 *
 * CPU: a process's utime+stime plus cutime+cstime (the time of children it
 * has reaped). Summing those four over every live or zombie member of the
 * tree gives the tree's total CPU so far, provided no descendant escapes to
 * another parent; servers that fork are started as child subreapers (see
 * `servers/common.ts`) so orphans come back to the root, not to PID 1.
 * @module
 */

/** Clock ticks per second of /proc/<pid>/stat times (sysconf(_SC_CLK_TCK)). */
const CLK_TCK = 100;

/** The fields of /proc/<pid>/stat the benchmarks use. */
export interface StatLine {
  pid: number;
  ppid: number;
  state: string;
  /** utime + stime + cutime + cstime, in ticks. */
  ticks: number;
}

function parseStat(text: string): StatLine | null {
  // The command name (field 2) is in parentheses and may contain spaces.
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  const pid = Number(text.slice(0, text.indexOf(" ")));
  const rest = text.slice(close + 2).split(" ");
  // rest[0] is field 3 (state); utime..cstime are fields 14..17.
  const f = (n: number) => Number(rest[n - 3]);
  return { pid, ppid: f(4), state: rest[0], ticks: f(14) + f(15) + f(16) + f(17) };
}

function readStat(pid: number): StatLine | null {
  try {
    return parseStat(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return null; // exited and reaped meanwhile
  }
}

/** Every process of the tree rooted at `root` (root first), zombies included. */
export function processTree(root: number): StatLine[] {
  const all = new Map<number, StatLine[]>();
  let rootLine: StatLine | null = null;
  for (const e of Deno.readDirSync("/proc")) {
    const c = e.name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const line = readStat(Number(e.name));
    if (!line) continue;
    if (line.pid === root) rootLine = line;
    const siblings = all.get(line.ppid);
    if (siblings) siblings.push(line);
    else all.set(line.ppid, [line]);
  }
  if (!rootLine) return [];
  const out: StatLine[] = [rootLine];
  // Bounded: each process is visited once, and /proc lists finitely many.
  for (let i = 0; i < out.length; i++) {
    for (const child of all.get(out[i].pid) ?? []) out.push(child);
  }
  return out;
}

function statusKiB(pid: number, key: string): number {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) : 0; // zombies have no memory lines
  } catch {
    return 0;
  }
}

/** Which processes of a tree count for memory. */
export interface MemoryOptions {
  /** Leave out the root itself (a launcher that is not the server). */
  skipRoot?: boolean;
}

function memberPids(root: number, options: MemoryOptions): number[] {
  const tree = processTree(root).filter((p) => p.state !== "Z");
  return (options.skipRoot ? tree.filter((p) => p.pid !== root) : tree).map((p) => p.pid);
}

/** Sum of VmRSS over the tree, in KiB (shared pages count once per process). */
export function treeRssKiB(root: number, options: MemoryOptions = {}): number {
  let kib = 0;
  for (const pid of memberPids(root, options)) kib += statusKiB(pid, "VmRSS");
  return kib;
}

function smapsKiB(root: number, keys: string[], options: MemoryOptions): number {
  let kib = 0;
  for (const pid of memberPids(root, options)) {
    try {
      const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
      for (const key of keys) {
        const m = text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, "m"));
        if (m) kib += Number(m[1]);
      }
    } catch { /* exited */ }
  }
  return kib;
}

/** Sum of PSS over the tree, in KiB: shared pages split among their users. */
export function treePssKiB(root: number, options: MemoryOptions = {}): number {
  return smapsKiB(root, ["Pss"], options);
}

/**
 * Sum of private dirty memory over the tree, in KiB: heap, stacks and
 * copy-on-write pages a process has written. Unlike PSS or private clean
 * pages it does not change when another process maps the same libraries,
 * so its growth is what new sessions cost.
 */
export function treePrivateDirtyKiB(root: number, options: MemoryOptions = {}): number {
  return smapsKiB(root, ["Private_Dirty"], options);
}

/** Number of processes in the tree. */
export function treeSize(root: number): number {
  return processTree(root).length;
}

/** One sample of a tree. */
export interface Sample {
  /** performance.now() when taken. */
  t: number;
  cpuSeconds: number;
  rssKiB: number;
}

/**
 * Samples a tree's CPU and RSS every `intervalMs` until stopped, so a
 * workload can read peak memory, or CPU over part of its run.
 */
export class Sampler {
  readonly samples: Sample[] = [];
  #timer: ReturnType<typeof setInterval>;

  constructor(readonly root: number, intervalMs: number, readonly options: MemoryOptions = {}) {
    this.#take();
    this.#timer = setInterval(() => this.#take(), intervalMs);
  }

  #take(): void {
    let ticks = 0;
    let rss = 0;
    for (const p of processTree(this.root)) {
      ticks += p.ticks;
      if (p.state === "Z" || (this.options.skipRoot && p.pid === this.root)) continue;
      rss += statusKiB(p.pid, "VmRSS");
    }
    this.samples.push({ t: performance.now(), cpuSeconds: ticks / CLK_TCK, rssKiB: rss });
  }

  /** Takes a last sample and stops. */
  stop(): Sample[] {
    clearInterval(this.#timer);
    this.#take();
    return this.samples;
  }

  /** Highest RSS seen. */
  peakRssKiB(): number {
    return Math.max(0, ...this.samples.map((s) => s.rssKiB));
  }

  /** CPU seconds at time `t`, linearly interpolated between samples. */
  cpuAt(t: number): number {
    const s = this.samples;
    if (s.length === 0) return NaN;
    if (t <= s[0].t) return s[0].cpuSeconds;
    for (let i = 1; i < s.length; i++) {
      if (s[i].t >= t) {
        const a = s[i - 1];
        const b = s[i];
        const f = b.t === a.t ? 1 : (t - a.t) / (b.t - a.t);
        return a.cpuSeconds + f * (b.cpuSeconds - a.cpuSeconds);
      }
    }
    return s[s.length - 1].cpuSeconds;
  }
}
