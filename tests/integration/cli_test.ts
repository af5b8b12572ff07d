/**
 * The command line as a user meets it: subprocesses of main.ts.
 */
import assert from "node:assert/strict";
import { verifyPassword } from "../../src/auth/password.ts";
import { run } from "../helpers/server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const deno = Deno.execPath();

function pn(args: string[], options: { stdin?: string; timeoutMs?: number } = {}) {
  return run(deno, ["run", "-A", MAIN, ...args], options);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`port ${port} not accepting after ${timeoutMs} ms`);
}

Deno.test("--version and --help", async () => {
  const v = await pn(["--version"]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^pitifulnat \d+\.\d+\.\d+ \(deno 2\.\d+\.\d+/);
  for (const cmd of ["serve", "check", "status", "hash-password"]) {
    const h = await pn([cmd, "--help"]);
    assert.equal(h.code, 0, cmd);
    assert.match(h.stdout, new RegExp(`Usage: pitifulnat ${cmd}`));
  }
  const bad = await pn(["frobnicate"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /unknown command frobnicate/);
});

Deno.test("check: a config error names file, line, column and key", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/bad.yaml`;
    await Deno.writeTextFile(file, "listen:\n  address: 127.0.0.1\n  prot: 21\n");
    const r = await pn(["check", "--config", file]);
    assert.equal(r.code, 3, "check's exit code for a config error");
    assert.match(
      r.stderr,
      new RegExp(`${file}:3:3: listen\\.prot: unknown key \\(did you mean "port"\\?\\)`),
    );
    const missing = await pn(["check", "--config", `${dir}/nope.yaml`]);
    assert.equal(missing.code, 3);
    assert.match(missing.stderr, /no config file found; tried: --config .*nope\.yaml/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hash-password reads stdin and prints a hash that verifies", async () => {
  const r = await pn(["hash-password"], { stdin: "correct horse\n" });
  assert.equal(r.code, 0, r.stderr);
  const hash = r.stdout.trim();
  assert.match(hash, /^scrypt\$/);
  assert.equal(await verifyPassword("correct horse", hash), true);
  assert.equal(await verifyPassword("correct horse\n", hash), false);
});

Deno.test("serve: status endpoint, status command, metrics, SIGHUP reload, SIGTERM exit 0", async () => {
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const statusPort = freePort();
  const file = `${dir}/config.yaml`;
  await Deno.mkdir(`${dir}/pub`);
  await Deno.writeTextFile(`${dir}/pub/a.txt`, "A\n");
  const write = (banner: string) =>
    Deno.writeTextFile(
      file,
      `listen: { address: 127.0.0.1, port: ${port} }\nbanner: ${banner}\n` +
        `public_address: { address: 203.0.113.7 }\n` +
        `anonymous: { enabled: true, home: pub }\nstatus: { port: ${statusPort} }\n` +
        `passive: { min_port: 41000, max_port: 41099 }\n`,
    );
  await write("first banner");
  const child = new Deno.Command(deno, {
    args: ["run", "-A", MAIN, "serve", "--config", file],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    await waitForPort(port);
    const got = await run("curl", ["-sS", `ftp://127.0.0.1:${port}/a.txt`], { timeoutMs: 10_000 });
    assert.equal(got.stdout, "A\n");
    const st = await pn(["status", "--config", file]);
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /public address: 203\.0\.113\.7 \(fixed in config\)/);
    assert.match(st.stdout, /transfers: 1; in 0 B, out 2 B/);
    const json = await pn(["status", "--config", file, "--json"]);
    assert.equal(json.code, 0, json.stderr);
    const snap = JSON.parse(json.stdout);
    assert.equal(snap.schema, 1);
    assert.equal(snap.recentTransfers[0].path, "/a.txt");
    assert.equal(snap.stats.bytesOut, 2);
    const metrics = await (await fetch(`http://127.0.0.1:${statusPort}/metrics`)).text();
    assert.match(metrics, /pitifulnat_transfers_total 1/);
    assert.match(metrics, /pitifulnat_public_address_info\{address="203\.0\.113\.7"\} 1/);
    // SIGHUP: a new banner for new sessions, no restart.
    await write("second banner");
    child.kill("SIGHUP");
    let banner = "";
    for (let i = 0; i < 50 && !banner.includes("second"); i++) {
      await new Promise((r) => setTimeout(r, 100));
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      const buf = new Uint8Array(256);
      const n = await c.read(buf);
      banner = new TextDecoder().decode(buf.subarray(0, n ?? 0));
      c.close();
    }
    assert.match(banner, /^220 second banner/);
    // A broken config on SIGHUP keeps the old one.
    await Deno.writeTextFile(file, "listen: [\n");
    child.kill("SIGHUP");
    await new Promise((r) => setTimeout(r, 300));
    const again = await run("curl", ["-sS", `ftp://127.0.0.1:${port}/a.txt`], {
      timeoutMs: 10_000,
    });
    assert.equal(again.stdout, "A\n");
    child.kill("SIGTERM");
    const status = await child.output();
    assert.equal(status.code, 0);
    const log = new TextDecoder().decode(status.stderr);
    assert.match(log, /reload of .* failed; keeping the running config/);
    assert.match(log, /transfer user=anonymous dir=out path=\/a\.txt bytes=2 /);
  } finally {
    clearTimeout(killer);
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve with no config: the demo directory, read-only, on 127.0.0.1:2121", async () => {
  const child = new Deno.Command(deno, {
    args: ["run", "-A", MAIN, "serve"],
    env: { PITIFULNAT_CONFIG: "" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    await waitForPort(2121);
    const hello = await run("curl", ["-sS", "ftp://127.0.0.1:2121/hello.txt"], {
      timeoutMs: 10_000,
    });
    assert.equal(hello.stdout, "Hello from pitifulnat!\n");
    const up = await run("curl", ["-sS", "-T", MAIN, "ftp://127.0.0.1:2121/x.ts"], {
      timeoutMs: 10_000,
    });
    assert.equal(up.code, 25, "upload refused: the demo is read-only");
    child.kill("SIGTERM");
    const out = await child.output();
    assert.equal(out.code, 0);
    const text = new TextDecoder().decode(out.stdout);
    assert.match(
      text,
      /serving the demo directory .*\n.*read-only to anonymous users at ftp:\/\/127\.0\.0\.1:2121\//,
    );
    assert.match(text, /config\.example\.yaml/);
  } finally {
    clearTimeout(killer);
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }
});
