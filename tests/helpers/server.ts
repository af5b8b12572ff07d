/**
 * Test helpers: an in-process pitifulnat server on loopback with a
 * temporary root, and a runner for real client programs with a time limit.
 */
import { hashPassword } from "../../src/auth/password.ts";
import { configSchema } from "../../src/config/schema.ts";
import type { Config } from "../../src/config/schema.ts";
import { FtpServer } from "../../src/serve/server.ts";
import { PublicAddress } from "../../src/nat/public_address.ts";
import type { RouterPorts } from "../../src/ftp/data_setup.ts";

/** The test user's credentials. */
export const USER = "alice";
export const PASSWORD = "wonder land";

let cachedHash: Promise<string> | null = null;

/** A started test server. */
export interface TestServer {
  server: FtpServer;
  port: number;
  host: string;
  /** The user's home (real path). */
  root: string;
  url: string;
  close(): Promise<void>;
}

/** Starts a server on loopback (port 0) with alice (all permissions) and anonymous (read). */
export async function startServer(
  options: {
    host?: string;
    publicAddress?: PublicAddress;
    /** The router's port mappings, as port_mapping would give them. */
    routerPorts?: RouterPorts;
    tweak?: (c: Config) => void;
  } = {},
): Promise<TestServer> {
  cachedHash ??= hashPassword(PASSWORD);
  const root = await Deno.makeTempDir({ prefix: "pn-test-" });
  const pub = await Deno.makeTempDir({ prefix: "pn-pub-" });
  await Deno.writeTextFile(`${pub}/welcome.txt`, "hello anonymous\n");
  const host = options.host ?? "127.0.0.1";
  const config = configSchema.parse({
    listen: { address: host, port: 2121 },
    passive: { min_port: 40000, max_port: 40999 },
    users: [{
      name: USER,
      password: await cachedHash,
      home: root,
      permissions: ["read", "write", "delete", "mkdir", "rename"],
    }],
    anonymous: { enabled: true, home: pub, permissions: ["read"] },
    limits: { login_failure_delay_ms: 0 },
    log: { level: "error" },
  });
  config.listen.port = 0;
  options.tweak?.(config);
  const publicAddress = options.publicAddress ?? null;
  const server = new FtpServer(config, { publicAddress, routerPorts: options.routerPorts });
  const addr = await server.start();
  const urlHost = host.includes(":") ? `[${host}]` : host;
  return {
    server,
    port: addr.port,
    host,
    root,
    url: `ftp://${USER}:${encodeURIComponent(PASSWORD)}@${urlHost}:${addr.port}`,
    async close() {
      await server.close();
      publicAddress?.stop();
      await Deno.remove(root, { recursive: true }).catch(() => {});
      await Deno.remove(pub, { recursive: true }).catch(() => {});
    },
  };
}

/** Output of a client program. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program with a hard time limit (default 60 s); never hangs a test. */
export async function run(
  cmd: string,
  args: string[],
  options: { stdin?: string; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, options.timeoutMs ?? 60_000);
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** SHA-256 of a file, hex, streamed. */
export async function sha256File(path: string): Promise<string> {
  const { createHash } = await import("node:crypto");
  const h = createHash("sha256");
  using f = await Deno.open(path);
  const buf = new Uint8Array(1 << 20);
  while (true) {
    const n = await f.read(buf);
    if (n === null) break;
    h.update(buf.subarray(0, n));
  }
  return h.digest("hex");
}

/** Writes a file of `size` pseudo-random bytes (deterministic per seed). */
export async function writeRandomFile(path: string, size: number, seed = 1): Promise<void> {
  using f = await Deno.open(path, { write: true, create: true, truncate: true });
  const chunk = new Uint8Array(1 << 20);
  let x = seed >>> 0 || 1;
  let left = size;
  while (left > 0) {
    const n = Math.min(left, chunk.length);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      chunk[i] = x & 255;
    }
    let off = 0;
    while (off < n) off += await f.write(chunk.subarray(off, n));
    left -= n;
  }
}
