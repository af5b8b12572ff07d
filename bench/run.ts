/**
 * The benchmark harness: pitifulnat side by side with other FTP servers on
 * this machine, over 127.0.0.1, servers interleaved per round, medians
 * reported as a Markdown table with ratios to vsftpd.
 *
 *     deno task bench [--quick] [--rounds N] [--servers a,b] [--workloads 1,3]
 *                     [--json FILE] [--dir DIR]
 *
 * See bench/README.md for what is measured and how.
 * @module
 */
import { parseArgs } from "node:util";
import { freePort, killClients, runCommand, running, which, within } from "./servers/common.ts";
import type {
  BenchServer,
  BenchUser,
  Prepared,
  RunningServer,
  TlsFiles,
} from "./servers/common.ts";
import { floor } from "./servers/floor.ts";
import { ftpSrv } from "./servers/ftp_srv.ts";
import { pitifulnat, pitifulnatFrom } from "./servers/pitifulnat.ts";
import { pitifulnatProxy } from "./servers/pitifulnat_proxy.ts";
import { proftpd } from "./servers/proftpd.ts";
import { pureFtpd } from "./servers/pure_ftpd.ts";
import { pyftpdlib } from "./servers/pyftpdlib.ts";
import { vsftpd } from "./servers/vsftpd.ts";
import { FILES, FULL, median, QUICK, type Sizes, type Workload, WORKLOADS } from "./workloads.ts";

/** Another checkout to measure beside this one, in the same rounds (see bench/README.md). */
const BASE_CHECKOUT = Deno.env.get("PN_BENCH_BASE");

const ALL_SERVERS: readonly BenchServer[] = [
  pitifulnat,
  ...(BASE_CHECKOUT ? [pitifulnatFrom("pitifulnat-base", BASE_CHECKOUT)] : []),
  vsftpd,
  pureFtpd,
  proftpd,
  pyftpdlib,
  ftpSrv,
  // The Deno floor (bench/floor.ts): transfer workloads only.
  floor,
  // Last: it takes only 100 passive ports, so every range stays below 32768.
  pitifulnatProxy,
];
const BASELINE = "vsftpd";
/** Control ports 19000, 19001, ... (another free port if one is taken). */
const CONTROL_PORT_BASE = 19000;
/**
 * Passive ranges of 2,100 ports (`passivePorts` when a server says fewer)
 * from 20000 up, all below the kernel's ephemeral ports (32768): Pure-FTPd
 * caps its sessions at half its range, and the idle workload holds 1,000
 * sessions.
 */
const PASSIVE_BASE = 20000;
const PASSIVE_SIZE = 2100;
const USER_NAME = "pnbench";

interface Entry {
  server: BenchServer;
  prepared: Prepared;
  dir: string;
  port: number;
  pasvMin: number;
  pasvMax: number;
}

/** Values per server name, then per "workload.metric" key, one per round. */
type Results = Map<string, Map<string, number[]>>;

function log(line: string): void {
  console.error(line);
}

function randomPassword(): string {
  const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(20));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

/** Writes `bytes` of incompressible data (a random 1 MiB block, repeated). */
async function writeDataFile(path: string, bytes: number): Promise<void> {
  const block = new Uint8Array(1 << 20);
  for (let off = 0; off < block.length; off += 65536) {
    crypto.getRandomValues(block.subarray(off, off + 65536));
  }
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  try {
    let left = bytes;
    while (left > 0) {
      const chunk = block.subarray(0, Math.min(left, block.length));
      let done = 0;
      while (done < chunk.length) done += await file.write(chunk.subarray(done));
      left -= chunk.length;
    }
  } finally {
    file.close();
  }
}

/**
 * True when workload `w` runs on `server` (both may name the only ones they
 * take; FTPS workloads run only on servers that can serve TLS).
 */
function applies(w: Workload, server: BenchServer): boolean {
  return (!w.servers || w.servers.includes(server.name)) &&
    (!server.workloads || server.workloads.includes(w.id)) &&
    (!w.tls || server.tls === true);
}

/**
 * Makes the FTPS workloads' self-signed certificate (P-256, 30 days, for
 * CN=localhost) and its key in `dir`. Returns the files, or why it failed.
 */
async function makeCertificate(dir: string): Promise<TlsFiles | string> {
  if (!await which("openssl")) return "openssl is not installed (apt-get install openssl)";
  await Deno.mkdir(dir, { recursive: true });
  const files = { certificate: `${dir}/cert.pem`, key: `${dir}/key.pem` };
  const out = await runCommand([
    "openssl",
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "30",
    "-subj",
    "/CN=localhost",
    "-keyout",
    files.key,
    "-out",
    files.certificate,
  ], { timeoutMs: 30_000 }).catch((e) => ({ code: -1, stderr: String(e) }));
  if (out.code !== 0) return `openssl req failed: ${out.stderr.trim().slice(0, 300)}`;
  return files;
}

// ---- machine limits ------------------------------------------------------

async function pageCacheRead(path: string): Promise<number> {
  const buf = new Uint8Array(1 << 20);
  const rates: number[] = [];
  for (let i = 0; i < 3; i++) {
    const file = await Deno.open(path, { read: true });
    const t0 = performance.now();
    let total = 0;
    // Bounded by the file's size: each read returns data or null at the end.
    for (let n = await file.read(buf); n !== null; n = await file.read(buf)) total += n;
    const s = (performance.now() - t0) / 1000;
    file.close();
    rates.push(total / 1e6 / s);
  }
  return median(rates);
}

/**
 * Mounts a tmpfs of `bytes` on `dir` (needs root), so uploads land in memory
 * for every server and the disk does not decide the upload figures. (Not
 * /dev/shm: Deno grants paths under /dev only with --allow-all.) False when
 * it cannot be mounted; the run then uses `dir` as it is.
 */
async function mountTmpfs(dir: string, bytes: number): Promise<boolean> {
  const out = await runCommand(
    ["mount", "-t", "tmpfs", "-o", `size=${bytes},mode=0777`, "pn-bench-uploads", dir],
    { timeoutMs: 10_000 },
  ).catch((e) => ({ code: -1, stderr: String(e) }));
  if (out.code !== 0) log(`no tmpfs for the uploads (${out.stderr.trim()}): using ${dir}`);
  return out.code === 0;
}

/** The type of the file system holding `path` (`tmpfs`, `ext4`, ...). */
async function fileSystemOf(path: string): Promise<string> {
  const out = await runCommand(["stat", "-f", "-c", "%T", path], { timeoutMs: 10_000 });
  return out.code === 0 ? out.stdout.trim() : "unknown";
}

async function diskWrite(dir: string, bytes: number): Promise<number> {
  const path = `${dir}/disk-write.bin`;
  const t0 = performance.now();
  await writeDataFile(path, bytes);
  const file = await Deno.open(path, { write: true });
  await file.syncData();
  file.close();
  const s = (performance.now() - t0) / 1000;
  await Deno.remove(path);
  return bytes / 1e6 / s;
}

async function iperf3(seconds: number): Promise<number | string> {
  if (!await which("iperf3")) return "skipped: iperf3 is not installed (apt-get install iperf3)";
  const port = freePort(CONTROL_PORT_BASE - 1);
  const server = new Deno.Command("iperf3", {
    args: ["-s", "-1", "-B", "127.0.0.1", "-p", String(port)],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    // Wait for "Server listening" (a probe connection would use up -1).
    const reader = server.stdout.getReader();
    let text = "";
    const deadline = performance.now() + 10_000;
    while (!text.includes("Server listening") && performance.now() < deadline) {
      const r = await within(reader.read(), deadline - performance.now());
      if (r === "timeout" || r.done) break;
      text += new TextDecoder().decode(r.value);
    }
    reader.releaseLock();
    server.stdout.cancel().catch(() => {});
    const out = await runCommand(
      ["iperf3", "-c", "127.0.0.1", "-p", String(port), "-t", String(seconds), "-J"],
      { timeoutMs: (seconds + 15) * 1000 },
    );
    if (out.code !== 0) return `failed: ${out.stderr.trim() || out.stdout.slice(0, 300)}`;
    const bps = JSON.parse(out.stdout).end.sum_received.bits_per_second as number;
    return bps / 8 / 1e6;
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* exited */ }
    await within(server.status, 3000);
    server.stderr.cancel().catch(() => {});
  }
}

/** The 1-minute load average: other work on the machine skews every figure. */
async function loadAverage(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ")[0];
}

// ---- report --------------------------------------------------------------

function fmt(v: number, digits: number): string {
  if (!Number.isFinite(v)) return "n/a";
  return v.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function table(entries: Entry[], results: Results, workloads: Workload[], sizes: Sizes): string {
  // Only servers that take part in a shown workload get a column.
  const shown = entries.filter((e) => workloads.some((w) => applies(w, e.server)));
  const names = shown.map((e) => e.server.name);
  const base = names.includes(BASELINE) ? BASELINE : null;
  const rows: string[] = [];
  rows.push(`| # | figure | better | ${names.join(" | ")} |`);
  rows.push(`|---|---|---|${names.map(() => "---:").join("|")}|`);
  for (const w of workloads) {
    for (const m of w.metrics(sizes)) {
      const key = `${w.id}.${m.key}`;
      const med = (name: string) => median(results.get(name)?.get(key) ?? []);
      const b = base ? med(base) : NaN;
      const cells = shown.map(({ server }) => {
        const name = server.name;
        if (!applies(w, server)) return "–";
        const v = med(name);
        const text = fmt(v, m.digits);
        if (!base || !Number.isFinite(v) || !Number.isFinite(b) || b === 0) return text;
        return `${text} (${(v / b).toFixed(2)}×)`;
      });
      rows.push(`| ${w.id} | ${m.label} | ${m.better} | ${cells.join(" | ")} |`);
    }
  }
  const notes = workloads.flatMap((w) =>
    w.summary?.((name, key) => median(results.get(name)?.get(`${w.id}.${key}`) ?? []), sizes) ??
      []
  );
  return [...rows, ...(notes.length ? ["", ...notes] : [])].join("\n");
}

// ---- main ----------------------------------------------------------------

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      rounds: { type: "string", default: "3" },
      servers: { type: "string" },
      workloads: { type: "string" },
      json: { type: "string" },
      dir: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "usage: deno task bench [--quick] [--rounds N] [--servers a,b] [--workloads 1,3] " +
        "[--json FILE] [--dir DIR]\n" +
        `servers: ${ALL_SERVERS.map((s) => s.name).join(", ")}\n` +
        WORKLOADS.map((w) => `workload ${w.id}: ${w.title}`).join("\n"),
    );
    return 0;
  }
  const sizes = values.quick ? QUICK : FULL;
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 50) {
    console.error("--rounds must be an integer 1-50");
    return 2;
  }
  const wanted = values.servers?.split(",").map((s) => s.trim());
  const unknown = wanted?.filter((n) => !ALL_SERVERS.some((s) => s.name === n)) ?? [];
  const wantedW = values.workloads?.split(",").map(Number);
  const unknownW = wantedW?.filter((id) => !WORKLOADS.some((w) => w.id === id)) ?? [];
  if (unknown.length || unknownW.length) {
    console.error(`unknown server or workload: ${[...unknown, ...unknownW].join(", ")}`);
    return 2;
  }
  let workloads = WORKLOADS.filter((w) => !wantedW || wantedW.includes(w.id));

  const loadBefore = await loadAverage();
  const startedAt = performance.now();
  const tmp = await Deno.makeTempDir({ prefix: "pn-bench-", dir: values.dir });
  const root = `${tmp}/root`;
  const uploads = `${root}/${FILES.uploadDir}`;
  await Deno.mkdir(uploads, { recursive: true });
  // Without --dir uploads go to a tmpfs of the run's own, if one can be mounted.
  const mounted = values.dir === undefined &&
    await mountTmpfs(uploads, 2 * sizes.bigBytes + (256 << 20));
  const fsType = await fileSystemOf(uploads);
  // Servers that drop to the benchmark user must reach the served files.
  await Deno.chmod(tmp, 0o755);
  const user: BenchUser = { name: USER_NAME, password: randomPassword() };
  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    log("interrupted: stopping servers and removing temporary files");
    cleanup().finally(() => Deno.exit(130));
  };
  let cleaned: Promise<void> | null = null;
  const cleanup = () =>
    cleaned ??= (async () => {
      killClients();
      await Promise.all([...running].map((s) => s.stop()));
      if (mounted) await runCommand(["umount", uploads], { timeoutMs: 30_000 });
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      // The system account was only needed while vsftpd ran: lock it again.
      const known = await runCommand(["getent", "passwd", USER_NAME], { timeoutMs: 10_000 });
      if (known.code === 0 && Deno.uid() === 0) {
        await runCommand(["usermod", "--lock", "--home", "/", USER_NAME], { timeoutMs: 10_000 });
      }
    })();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const skipped: string[] = [];
  try {
    await Deno.chmod(root, 0o755);
    await Deno.chmod(uploads, 0o777);
    // The FTPS workloads' certificate; without one they are left out.
    let tls: TlsFiles | null = null;
    const tlsWorkloads = workloads.filter((w) => w.tls);
    if (tlsWorkloads.length) {
      const made = await makeCertificate(`${tmp}/tls`);
      if (typeof made === "string") {
        const ids = tlsWorkloads.map((w) => w.id).join(", ");
        skipped.push(`- workloads ${ids} (FTPS): skipped: ${made}`);
        log(`workloads ${ids}: skipped: ${made}`);
        workloads = workloads.filter((w) => !w.tls);
        if (!workloads.length) throw new Error(`no workload left to run: ${made}`);
      } else {
        tls = made;
      }
    }
    // A server none of the chosen workloads runs on is not even prepared.
    const servers = ALL_SERVERS.filter((s) =>
      (!wanted || wanted.includes(s.name)) && workloads.some((w) => applies(w, s))
    );

    log(`writing test files in ${root} ...`);
    await writeDataFile(`${root}/${FILES.big}`, sizes.bigBytes);
    await writeDataFile(`${root}/${FILES.small}`, FILES.smallBytes);
    await writeDataFile(`${root}/${FILES.mid}`, FILES.midBytes);

    // Machine limits, measured in the same run.
    log("measuring machine limits ...");
    const cacheRead = await pageCacheRead(`${root}/${FILES.big}`);
    const diskRate = await diskWrite(tmp, sizes.bigBytes);
    const loop = await iperf3(values.quick ? 2 : 5);

    const entries: Entry[] = [];
    let index = 0;
    let pasvNext = PASSIVE_BASE;
    for (const server of servers) {
      const dir = `${tmp}/${server.name}`;
      await Deno.mkdir(dir);
      log(`preparing ${server.name} ...`);
      let prepared: Prepared | string;
      try {
        prepared = await server.prepare({ dir, root, user });
      } catch (e) {
        prepared = `prepare failed: ${(e as Error).message}`;
      }
      if (typeof prepared === "string") {
        skipped.push(`- ${server.name}: skipped: ${prepared}`);
        log(`${server.name}: skipped: ${prepared}`);
        continue;
      }
      entries.push({
        server,
        prepared,
        dir,
        port: freePort(CONTROL_PORT_BASE + index),
        pasvMin: pasvNext,
        pasvMax: pasvNext + (server.passivePorts ?? PASSIVE_SIZE) - 1,
      });
      pasvNext += server.passivePorts ?? PASSIVE_SIZE;
      if (pasvNext > 32768) {
        log(`${server.name}: passive ports reach ${pasvNext - 1}, into the ephemeral range`);
      }
      index++;
    }
    if (entries.length === 0) throw new Error("no server could be prepared");

    const results: Results = new Map(entries.map((e) => [e.server.name, new Map()]));
    const errors: string[] = [];
    const record = (name: string, key: string, v: number) => {
      const m = results.get(name)!;
      m.set(key, [...(m.get(key) ?? []), v]);
    };
    // FTPS workloads get the certificate; every other workload runs plain.
    const startOf = (e: Entry, w: Workload) => (account: boolean): Promise<RunningServer> =>
      e.server.start({
        dir: e.dir,
        root,
        port: e.port,
        pasvMin: e.pasvMin,
        pasvMax: e.pasvMax,
        user,
        account,
        ...(w.tls && tls ? { tls } : {}),
      });

    for (let r = 0; r < rounds && !interrupted; r++) {
      // Rotate the order each round: A B C, B C A, C A B, ... among the
      // servers each workload runs on.
      const rotate = (list: Entry[]) => list.map((_, i) => list[(i + r) % list.length]);
      log(`round ${r + 1}/${rounds}: ${rotate(entries).map((e) => e.server.name).join(" ")}`);
      for (const w of workloads) {
        for (const e of rotate(entries.filter((e) => applies(w, e.server)))) {
          if (interrupted) break;
          const name = e.server.name;
          let server: RunningServer | null = null;
          try {
            if (!w.ownStart) server = await startOf(e, w)(true);
            const t0 = performance.now();
            const figures = await w.run({
              server,
              startServer: startOf(e, w),
              user,
              root,
              sizes,
              tag: `${name}-${r}-${crypto.randomUUID().slice(0, 8)}`,
            });
            for (const [k, v] of Object.entries(figures)) record(name, `${w.id}.${k}`, v);
            const shown = w.metrics(sizes).map((m) => `${m.key}=${fmt(figures[m.key], m.digits)}`);
            const secs = ((performance.now() - t0) / 1000).toFixed(1);
            log(`  ${w.id} ${w.title}: ${name}: ${shown.join(" ")} (${secs} s)`);
          } catch (err) {
            const tail = server?.tail().trim().split("\n").slice(-3)
              .map((l) => l.slice(0, 200)).join("\n    ") ?? "";
            const msg = `round ${r + 1}, workload ${w.id}, ${name}: ${(err as Error).message}` +
              (tail ? `\n    server output: ${tail}` : "");
            errors.push(msg);
            log(`  ERROR ${msg}`);
          } finally {
            await server?.stop();
          }
        }
      }
    }

    const cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1];
    const kernel = (await Deno.readTextFile("/proc/sys/kernel/osrelease")).trim();
    const report = [
      `## pitifulnat benchmark (${values.quick ? "quick" : "full"}, ${rounds} rounds, medians)`,
      "",
      `Machine: ${navigator.hardwareConcurrency} cores (${cpu ?? "unknown CPU"}), ` +
      `Linux ${kernel}. Client and server share these ${navigator.hardwareConcurrency} cores; ` +
      "all traffic is on 127.0.0.1. " +
      `Load average (1 min) before the run: ${loadBefore}, after: ${await loadAverage()}; ` +
      `run time ${((performance.now() - startedAt) / 60_000).toFixed(1)} min.`,
      "",
      "Machine limits, same run:",
      `- loopback TCP, iperf3 single stream: ${
        typeof loop === "number" ? `${fmt(loop, 0)} MB/s` : loop
      }`,
      `- page-cache read of the ${sizes.bigBytes >> 20} MiB test file (Deno, 1 MiB reads): ${
        fmt(cacheRead, 0)
      } MB/s`,
      `- disk write of ${sizes.bigBytes >> 20} MiB + fdatasync: ${fmt(diskRate, 0)} MB/s`,
      "",
      `Served files: ${root} (${await fileSystemOf(root)}, read from the page cache); ` +
      `uploads: ${uploads} (${fsType}). ` +
      (fsType === "tmpfs"
        ? "Uploads land in memory for every server, so the uploads (workloads 2, 8, 9) measure " +
          "the servers' data paths, not the disk; pitifulnat's fdatasync before 226 costs " +
          "nothing there, while on a disk its uploads are bound by the disk figure above (the " +
          "others do not sync)."
        : "Uploads go to this file system: pitifulnat syncs each upload before 226 and is bound " +
          "by the disk figure above; the other servers do not sync."),
      "",
      table(entries, results, workloads, sizes),
      "",
      `Ratios are to ${BASELINE}${
        entries.some((e) => e.server.name === BASELINE) ? "" : " (not run: no ratios)"
      }. MB = 10^6 bytes.`,
      "",
      "Servers:",
      ...entries.map((e) =>
        `- ${e.server.name} ${e.prepared.version}; passwords: ${e.prepared.passwordHash}`
      ),
      ...skipped,
      ...(errors.length ? ["", "Errors:", ...errors.map((e) => `- ${e}`)] : []),
    ].join("\n");
    console.log(report);
    if (values.json) {
      const raw: Record<string, Record<string, number[]>> = {};
      for (const [name, m] of results) raw[name] = Object.fromEntries(m);
      await Deno.writeTextFile(
        values.json,
        JSON.stringify({ sizes, rounds, results: raw, errors }, null, 2) + "\n",
      );
    }
    return errors.length ? 1 : 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await cleanup();
  }
}

if (import.meta.main) {
  Deno.exit(await main());
}
