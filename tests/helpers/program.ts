/**
 * Test helpers for running the pitifulnat program as a separate process (a
 * bundle or a compiled executable) the way an operator would: a config file
 * in a temporary directory, `serve` in the background, a real client.
 */
import assert from "node:assert/strict";
import { run } from "./server.ts";

/** A free TCP port on 127.0.0.1 (free when asked; the caller binds it soon after). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** A temporary setup: a config, a home with one file, and a log file path. */
export interface ServeSetup {
  /** The temporary directory holding everything below; remove it when done. */
  dir: string;
  config: string;
  port: number;
  /** Name and content of the file in the anonymous home. */
  fileName: string;
  content: string;
  logFile: string;
}

/**
 * Writes a config serving `dir/home` read-only to anonymous users on
 * 127.0.0.1 (free control and passive ports), logging to `dir/log/`.
 */
export async function makeServeSetup(): Promise<ServeSetup> {
  const dir = await Deno.makeTempDir({ prefix: "pn-program-" });
  await Deno.mkdir(`${dir}/home`);
  await Deno.mkdir(`${dir}/log`);
  const fileName = "greeting.txt";
  const content = `served from ${dir} at ${new Date().toISOString()}\n`;
  await Deno.writeTextFile(`${dir}/home/${fileName}`, content);
  const port = freePort();
  const passive = freePort();
  const logFile = `${dir}/log/pitifulnat.log`;
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    config,
    [
      `listen: { address: 127.0.0.1, port: ${port} }`,
      `passive: { min_port: ${passive}, max_port: ${passive} }`,
      `anonymous: { enabled: true, home: ${JSON.stringify(`${dir}/home`)} }`,
      `log: { level: info, file: ${JSON.stringify(logFile)}, max_bytes: 65536, keep: 2 }`,
      "",
    ].join("\n"),
  );
  return { dir, config, port, fileName, content, logFile };
}

/** A program running in the background. */
export interface Background {
  pid: number;
  /** Sends SIGTERM (SIGKILL after 10 s); resolves with the exit code and output. */
  stop(): Promise<{ code: number; stdout: string; stderr: string }>;
}

/**
 * Starts `cmd args` and waits (at most `timeoutMs`, default 20 s) until
 * 127.0.0.1:`port` accepts a connection. Throws, after stopping the program,
 * if it exits or the port does not open in time.
 */
export async function startInBackground(
  cmd: string,
  args: string[],
  options: { cwd: string; port: number; timeoutMs?: number },
): Promise<Background> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  let exited = false;
  output.then(() => exited = true, () => exited = true);
  const decoder = new TextDecoder();
  const stop = async () => {
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
    }, 10_000);
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    const out = await output;
    clearTimeout(killer);
    return {
      code: out.code,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  };
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  // Bounded: one try every 50 ms until the deadline.
  while (Date.now() < deadline && !exited) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: options.port });
      conn.close();
      return { pid: child.pid, stop };
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  const out = await stop();
  throw new Error(
    `${cmd} ${args.join(" ")} did not listen on port ${options.port} ` +
      `(exit code ${out.code}):\n${out.stdout}${out.stderr}`,
  );
}

/** `deno run -A main.ts serve --config CONFIG` in the background, as {@linkcode startInBackground}. */
export function startServe(
  config: string,
  options: { cwd: string; port: number; timeoutMs?: number },
): Promise<Background> {
  const main = new URL("../../main.ts", import.meta.url).pathname;
  return startInBackground(
    Deno.execPath(),
    ["run", "-A", main, "serve", "--config", config],
    options,
  );
}

/**
 * Runs `serve` in the background in `cwd` (`cmd` with `serveArgs(config)`)
 * on a fresh setup, downloads the setup's file with curl and checks its
 * bytes, then stops it with SIGTERM and checks it exited 0. Returns the log
 * text; the setup's directory is removed.
 */
export async function serveOneDownload(
  cmd: string,
  serveArgs: (config: string) => string[],
  cwd: string,
): Promise<{ setup: ServeSetup; log: string }> {
  const setup = await makeServeSetup();
  try {
    const server = await startInBackground(cmd, serveArgs(setup.config), {
      cwd,
      port: setup.port,
    });
    let stopped;
    try {
      const got = await run("curl", [
        "-sS",
        "--max-time",
        "20",
        `ftp://127.0.0.1:${setup.port}/${setup.fileName}`,
      ]);
      assert.equal(got.code, 0, got.stderr);
      assert.equal(got.stdout, setup.content);
    } finally {
      stopped = await server.stop();
    }
    assert.equal(stopped.code, 0, `exit code after SIGTERM:\n${stopped.stderr}`);
    return { setup, log: await Deno.readTextFile(setup.logFile) };
  } finally {
    await Deno.remove(setup.dir, { recursive: true });
  }
}

/**
 * Polls a running server's `/status` (every 100 ms, at most `timeoutMs`)
 * until `ok` accepts the snapshot: the status port answers from the start,
 * before the public address is first resolved.
 */
export async function waitForStatus(
  statusPort: number,
  ok: (snapshot: { publicAddress: { address: string | null } }) => boolean,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${statusPort}/status`);
      last = await res.text();
      if (res.ok && ok(JSON.parse(last))) return;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`/status on port ${statusPort} never matched within ${timeoutMs} ms: ${last}`);
}
