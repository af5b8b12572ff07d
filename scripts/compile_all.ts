/**
 * Builds one pitifulnat executable per Linux target with `deno compile`:
 * dist/pitifulnat-x86_64-linux and dist/pitifulnat-aarch64-linux.
 *
 * `deno compile` needs a runtime ("denort") for each target. It takes
 * `$DENORT_BIN` when set (passed through unchanged), else the one cached in
 * Deno's cache directory, else it downloads one. Where none can be had the
 * output says so and how to provide one. A runtime that is really the `deno`
 * CLI builds a file that runs as the plain CLI: such a file is detected for
 * the host's target and removed.
 *
 * Usage: deno task compile:all
 * @module
 */
import { fileURLToPath } from "node:url";
import denoJson from "../deno.json" with { type: "json" };

/** A target to build. */
export interface Target {
  /** Rust target triple, as `deno compile --target` takes it. */
  triple: string;
  /** Output path relative to the repository root. */
  output: string;
  /** ELF `e_machine` of executables for this target. */
  elfMachine: number;
}

/** The Linux targets a NAS or router is likely to have. */
export const TARGETS: readonly Target[] = [
  { triple: "x86_64-unknown-linux-gnu", output: "dist/pitifulnat-x86_64-linux", elfMachine: 62 },
  { triple: "aarch64-unknown-linux-gnu", output: "dist/pitifulnat-aarch64-linux", elfMachine: 183 },
];

/** The repository root (where deno.json and main.ts are). */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/**
 * The runtime flags of the `compile` task in deno.json (permissions and V8
 * flags): the one place that says what the executable may do and how it
 * runs, shared by every build and test.
 */
export function runtimeFlags(): string[] {
  const task = denoJson.tasks.compile;
  const flags = task.split(/\s+/).filter((word) =>
    word.startsWith("--allow-") || word.startsWith("--v8-flags=")
  );
  if (flags.length === 0) throw new Error(`no --allow-* flags in the compile task: ${task}`);
  return flags;
}

/**
 * The `deno bundle` flags of the `start` task in deno.json (the words
 * between `bundle` and `--output`), so the bench and the tests build the
 * very file `deno task start` runs.
 */
export function startBundleFlags(): string[] {
  const words = denoJson.tasks.start.split(/\s+/);
  const from = words.indexOf("bundle");
  const to = words.indexOf("--output", from);
  if (from < 0 || to < 0) {
    throw new Error(`no "deno bundle ... --output" in the start task: ${denoJson.tasks.start}`);
  }
  return words.slice(from + 1, to);
}

/** Arguments of `deno` that compile main.ts into `output`, optionally for `triple`. */
export function compileArgs(output: string, triple?: string): string[] {
  const target = triple ? ["--target", triple] : [];
  return ["compile", ...runtimeFlags(), ...target, "--output", output, `${ROOT}main.ts`];
}

/** The ELF machine number of an executable, or null when it is not an ELF file. */
export function elfMachineOf(path: string): number | null {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true });
  } catch {
    return null;
  }
  try {
    const head = new Uint8Array(20);
    let got = 0;
    // At most 20 reads: each one returns at least one byte or ends the loop.
    while (got < head.length) {
      const n = file.readSync(head.subarray(got));
      if (n === null) return null;
      got += n;
    }
    if (head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) return null;
    const view = new DataView(head.buffer);
    return view.getUint16(18, head[5] === 1); // EI_DATA 1: little-endian
  } finally {
    file.close();
  }
}

/** Deno's cache directory, as `deno info` reports it. */
export async function denoDir(): Promise<string | null> {
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return null;
    const info: { denoDir?: unknown } = JSON.parse(new TextDecoder().decode(out.stdout));
    return typeof info.denoDir === "string" ? info.denoDir : null;
  } catch {
    return null;
  }
}

/** Where `deno compile` looks for a downloaded runtime of `triple`. */
export function cachedRuntimePath(dir: string, triple: string): string {
  return `${dir}/dl/release/v${Deno.version.deno}/denort-${triple}.zip`;
}

/** A runtime found on this machine. */
export interface Runtime {
  /** "DENORT_BIN" when taken from that variable, "cache" when downloaded before. */
  source: "DENORT_BIN" | "cache";
  path: string;
}

/** What was looked at, and the runtime found for a target (or null). */
export interface RuntimeLookup {
  runtime: Runtime | null;
  /** One line per place looked at, for the output. */
  notes: string[];
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Finds a runtime for `target` without downloading: `$DENORT_BIN` when it
 * is an executable for that target, else the one in Deno's cache.
 */
export async function findRuntime(target: Target): Promise<RuntimeLookup> {
  const notes: string[] = [];
  const bin = Deno.env.get("DENORT_BIN");
  if (bin) {
    const machine = elfMachineOf(bin);
    if (machine === target.elfMachine) {
      return { runtime: { source: "DENORT_BIN", path: bin }, notes };
    }
    notes.push(
      machine === null
        ? `DENORT_BIN=${bin} is not an executable (ELF) file`
        : `DENORT_BIN=${bin} is for another machine (ELF machine ${machine}), not ${target.triple}`,
    );
  } else {
    notes.push("DENORT_BIN is not set");
  }
  const dir = await denoDir();
  if (dir) {
    const cached = cachedRuntimePath(dir, target.triple);
    if (isFile(cached)) return { runtime: { source: "cache", path: cached }, notes };
    notes.push(`no ${cached}`);
  } else {
    notes.push("Deno's cache directory is unknown (deno info failed)");
  }
  return { runtime: null, notes };
}

/** The host's target triple, e.g. x86_64-unknown-linux-gnu. */
export function hostTriple(): string {
  return Deno.build.target;
}

/** Runs deno with `args` in the repository root; its output goes to ours. */
async function runDeno(args: string[], options: { withoutDenort: boolean }) {
  const env = Deno.env.toObject();
  if (options.withoutDenort) delete env.DENORT_BIN;
  return await new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
}

/** Runs `path --version`; returns its first output line, or null when it could not run. */
async function versionLine(path: string): Promise<string | null> {
  try {
    const out = await new Deno.Command(path, {
      args: ["--version"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return text.split("\n")[0] ?? "";
  } catch {
    return null;
  }
}

/** Builds one target; prints what happened; true when a working file was built. */
async function build(target: Target): Promise<boolean> {
  console.log(`\n== ${target.triple} -> ${target.output}`);
  const { runtime, notes } = await findRuntime(target);
  if (runtime) {
    console.log(`runtime: ${runtime.path} (${runtime.source})`);
  } else {
    console.log(`no runtime on this machine for ${target.triple}:`);
    for (const note of notes) console.log(`  - ${note}`);
    console.log("trying deno compile, which downloads the runtime where the network allows");
  }
  // DENORT_BIN for another machine would be copied into this target's file.
  const withoutDenort = runtime?.source !== "DENORT_BIN";
  const out = await runDeno(compileArgs(target.output, target.triple), { withoutDenort });
  if (!out.success) {
    console.log(
      `FAILED: ${target.output} not built: deno compile could not get a runtime (denort) for ` +
        `${target.triple}.\n` +
        `  Set DENORT_BIN to a denort executable for ${target.triple} (from the Deno release\n` +
        `  archive denort-${target.triple}.zip, same version as this deno: ${Deno.version.deno}),\n` +
        `  or run this on a machine that can download it. Pointing DENORT_BIN at the deno CLI\n` +
        `  does not work: the file it builds runs the plain deno CLI, not pitifulnat.`,
    );
    return false;
  }
  if (target.triple === hostTriple()) {
    const line = await versionLine(`${ROOT}${target.output}`);
    if (line === null || !line.startsWith("pitifulnat ")) {
      await Deno.remove(`${ROOT}${target.output}`).catch(() => {});
      console.log(
        `FAILED: ${target.output} runs as "${line ?? "(did not run)"}", not as pitifulnat; ` +
          `removed it. The runtime used is not a denort (the deno CLI?).`,
      );
      return false;
    }
    console.log(`checked: ${target.output} --version: ${line}`);
  } else {
    console.log(`not run: ${target.triple} is not this machine (${hostTriple()})`);
  }
  const size = Deno.statSync(`${ROOT}${target.output}`).size;
  console.log(`built ${target.output}: ${(size / 1e6).toFixed(1)} MB`);
  return true;
}

/** Builds every target; returns the exit code (0 only when all were built). */
export async function compileAll(): Promise<number> {
  await Deno.mkdir(`${ROOT}dist`, { recursive: true });
  console.log(`runtime flags: ${runtimeFlags().join(" ")}`);
  let failed = 0;
  for (const target of TARGETS) {
    if (!await build(target)) failed++;
  }
  console.log(`\n${TARGETS.length - failed} of ${TARGETS.length} targets built`);
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) {
  Deno.exit(await compileAll());
}
