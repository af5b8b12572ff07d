/**
 * `pitifulnat proxy` in front of a real vsftpd on loopback, driven by real
 * clients (curl, Python's ftplib) and by exact protocol exchanges.
 *
 * vsftpd runs in the foreground with a config the test writes
 * (run_as_launching_user, so it needs no system users or chroot) and is
 * stopped by its PID.
 */
import { startProxy as startTestProxy, type TestProxy } from "../helpers/proxy.ts";
import assert from "node:assert/strict";
import type { Config } from "../../src/config/schema.ts";
import { parsePasvReply } from "../../src/ftp/codec.ts";
import { PublicAddress } from "../../src/nat/public_address.ts";
import type { ProxyServer } from "../../src/proxy/server.ts";
import { ABORT_BIG_RETR, ftplibJson, rawGreeting } from "../helpers/ftplib.ts";
import { freePort, startInBackground } from "../helpers/program.ts";
import { RawClient, type Reply } from "../helpers/raw.ts";
import { run, sha256File, writeRandomFile } from "../helpers/server.ts";

const VSFTPD = "/usr/sbin/vsftpd";
const PASSIVE_MIN = 42000;
const PASSIVE_MAX = 42199;
/**
 * A port nothing listens on: below 1024, where no other test binds, so a
 * connection is refused (a "free" high port may be taken meanwhile).
 */
const DOWN_PORT = 1;
/** A banner whose middle line looks like a reply end: it must pass unchanged. */
const BANNER_LINES = ["Welcome to the upstream", "220 this line starts with digits", "last"];

interface Vsftpd {
  port: number;
  /** The anonymous root (readable and writable). */
  root: string;
  /** The greeting exactly as vsftpd sends it. */
  greeting: string;
  close(): Promise<void>;
}

/**
 * Starts vsftpd on a free loopback port with anonymous read/write in a temp
 * dir. Another process on this machine may take the "free" port first, so a
 * start whose greeting is not our banner is retried (at most 3 times).
 */
async function startVsftpd(): Promise<Vsftpd> {
  const dir = await Deno.makeTempDir({ prefix: "pn-vsftpd-" });
  const root = `${dir}/root`;
  await Deno.mkdir(root);
  await Deno.mkdir(`${dir}/empty`);
  await Deno.writeTextFile(`${dir}/banner`, BANNER_LINES.join("\n") + "\n");
  for (let attempt = 1;; attempt++) {
    try {
      return await startVsftpdOnce(dir, root);
    } catch (e) {
      if (attempt >= 3) {
        await Deno.remove(dir, { recursive: true });
        throw e;
      }
    }
  }
}

async function startVsftpdOnce(dir: string, root: string): Promise<Vsftpd> {
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/vsftpd.conf`,
    [
      "listen=YES",
      "listen_ipv6=NO",
      "background=NO",
      "listen_address=127.0.0.1",
      `listen_port=${port}`,
      "anonymous_enable=YES",
      "no_anon_password=YES",
      `anon_root=${root}`,
      "anon_upload_enable=YES",
      "write_enable=YES",
      "anon_mkdir_write_enable=YES",
      "anon_other_write_enable=YES",
      "anon_world_readable_only=NO",
      "anon_umask=022",
      "seccomp_sandbox=NO",
      // Runs as whoever starts it, with no chroot: the test needs no system
      // users and works without root. Clients see the real path in PWD.
      "run_as_launching_user=YES",
      "local_enable=NO",
      "check_shell=NO",
      `secure_chroot_dir=${dir}/empty`,
      `banner_file=${dir}/banner`,
      "",
    ].join("\n"),
  );
  const bg = await startInBackground(VSFTPD, [`${dir}/vsftpd.conf`], { cwd: dir, port });
  const greeting = await rawGreeting(port).catch((e) => (e as Error).message);
  if (!greeting.startsWith(`220-${BANNER_LINES[0]}\r\n`)) {
    await bg.stop();
    throw new Error(`not our vsftpd on port ${port}: ${greeting}`);
  }
  return {
    port,
    root,
    greeting,
    async close() {
      await bg.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** This file's proxy: its own passive range, a 1 s connect timeout. */
function startProxy(
  upstreamPort: number,
  options: { tweak?: (c: Config) => void; publicAddress?: PublicAddress } = {},
): TestProxy {
  return startTestProxy(upstreamPort, {
    ...options,
    passive: { min: PASSIVE_MIN, max: PASSIVE_MAX },
    connectTimeoutSeconds: 1,
  });
}

/** Waits (bounded) until the proxy has no session left. */
async function sessionsDrained(proxy: ProxyServer, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proxy.sessions.size === 0) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return proxy.sessions.size === 0;
}

async function curl(args: string[]): Promise<string> {
  const r = await run("curl", ["-sS", "--max-time", "30", ...args], { timeoutMs: 40_000 });
  assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Opens a passive data connection through the proxy with EPSV. */
async function epsvData(c: RawClient): Promise<Deno.TcpConn> {
  const r = await c.cmd("EPSV");
  assert.equal(r.code, 229, r.text);
  const dataPort = Number(/\(\|\|\|(\d+)\|\)/.exec(r.text)![1]);
  assert.ok(dataPort >= PASSIVE_MIN && dataPort <= PASSIVE_MAX, `port ${dataPort} in range`);
  return await Deno.connect({ hostname: "127.0.0.1", port: dataPort });
}

Deno.test("proxy in front of vsftpd: real clients, both modes, both directions", async (t) => {
  const up = await startVsftpd();
  const px = startProxy(up.port);
  const work = await Deno.makeTempDir({ prefix: "pn-proxy-work-" });
  try {
    await Deno.writeTextFile(`${up.root}/hello.txt`, "hello through the proxy\n");

    await t.step("the upstream's multi-line banner passes byte for byte", async () => {
      assert.match(up.greeting, /^220-Welcome to the upstream\r\n220-220 this line/);
      assert.equal(await rawGreeting(px.port), up.greeting);
    });

    await t.step("curl: PASV, EPSV, EPRT and PORT downloads", async () => {
      const url = `${px.url}/hello.txt`;
      assert.equal(await curl(["--disable-epsv", url]), "hello through the proxy\n");
      assert.equal(await curl([url]), "hello through the proxy\n");
      assert.equal(await curl(["-P", "127.0.0.1", url]), "hello through the proxy\n");
      assert.equal(
        await curl(["-P", "127.0.0.1", "--disable-eprt", url]),
        "hello through the proxy\n",
      );
    });

    await t.step("curl: listing and uploads in each mode land on the upstream", async () => {
      await Deno.writeTextFile(`${work}/up.txt`, "uploaded\n");
      await curl(["--disable-epsv", "-T", `${work}/up.txt`, `${px.url}/up-pasv.txt`]);
      await curl(["-T", `${work}/up.txt`, `${px.url}/up-epsv.txt`]);
      await curl(["-P", "127.0.0.1", "-T", `${work}/up.txt`, `${px.url}/up-active.txt`]);
      for (const name of ["up-pasv.txt", "up-epsv.txt", "up-active.txt"]) {
        assert.equal(await Deno.readTextFile(`${up.root}/${name}`), "uploaded\n", name);
      }
      const listing = await curl(["--list-only", `${px.url}/`]);
      assert.deepEqual(
        listing.trim().split(/\r?\n/).sort(),
        ["hello.txt", "up-active.txt", "up-epsv.txt", "up-pasv.txt"],
      );
      const long = await curl([`${px.url}/`]);
      assert.match(long, /^-rw-r--r-- .* hello\.txt\r?$/m);
    });

    await t.step("a 50 MB file each way arrives intact (sha256)", async () => {
      const size = 50 * 1024 * 1024;
      await writeRandomFile(`${up.root}/big.bin`, size, 7);
      await writeRandomFile(`${work}/big-up.bin`, size, 8);
      await curl(["-o", `${work}/big-down.bin`, `${px.url}/big.bin`]);
      await curl(["-T", `${work}/big-up.bin`, `${px.url}/big-up.bin`]);
      assert.equal(
        await sha256File(`${work}/big-down.bin`),
        await sha256File(`${up.root}/big.bin`),
      );
      assert.equal(
        await sha256File(`${up.root}/big-up.bin`),
        await sha256File(`${work}/big-up.bin`),
      );
      assert.equal(px.proxy.stats.bytesOut >= size, true);
      assert.equal(px.proxy.stats.bytesIn >= size, true);
    });

    await t.step("ftplib: listing, REST resume, ABOR mid-transfer then NOOP", async () => {
      const out = await ftplibJson(
        px.port,
        `
out["nlst"] = sorted(ftp.nlst())
lines = []
ftp.retrlines("LIST", lines.append)
out["list"] = len(lines)
buf = io.BytesIO()
ftp.retrbinary("RETR hello.txt", buf.write, rest=6)
out["rest"] = buf.getvalue().decode()
${ABORT_BIG_RETR}
ftp.set_pasv(False)
buf = io.BytesIO()
ftp.retrbinary("RETR hello.txt", buf.write)
out["active"] = buf.getvalue().decode()
ftp.quit()
`,
      );
      assert.ok((out.nlst as string[]).includes("hello.txt"), String(out.nlst));
      assert.equal(out.list, (out.nlst as string[]).length);
      assert.equal(out.rest, "through the proxy\n");
      assert.ok((out.got as number) >= 1_000_000);
      const codes = (out.abort as string[]).map((r) => r.slice(0, 3));
      // vsftpd (no async ABOR) ends the transfer with 426, then answers the ABOR.
      assert.deepEqual(codes, ["426", "225"], String(out.abort));
      assert.equal(out.noop, "200 NOOP ok.");
      assert.equal(out.active, "hello through the proxy\n");
    });

    await t.step("AUTH TLS is refused with a clear 502; the session goes on", async () => {
      const [c] = await RawClient.connect("127.0.0.1", px.port);
      try {
        const r = await c.cmd("AUTH TLS");
        assert.equal(r.code, 502);
        assert.match(r.text, /cannot read an encrypted/);
        assert.equal((await c.cmd("USER anonymous")).code, 230);
        assert.equal((await c.cmd("NOOP")).code, 200);
      } finally {
        c.close();
      }
    });

    await t.step("sessions are isolated: parallel transfers each get their own bytes", async () => {
      await writeRandomFile(`${up.root}/a.bin`, 3_000_000, 11);
      await writeRandomFile(`${up.root}/b.bin`, 3_000_000, 12);
      await writeRandomFile(`${work}/c.bin`, 3_000_000, 13);
      await Promise.all([
        curl(["-o", `${work}/a.bin`, `${px.url}/a.bin`]),
        curl(["--disable-epsv", "-o", `${work}/b.bin`, `${px.url}/b.bin`]),
        curl(["-P", "127.0.0.1", "-T", `${work}/c.bin`, `${px.url}/c.bin`]),
      ]);
      assert.equal(await sha256File(`${work}/a.bin`), await sha256File(`${up.root}/a.bin`));
      assert.equal(await sha256File(`${work}/b.bin`), await sha256File(`${up.root}/b.bin`));
      assert.equal(await sha256File(`${up.root}/c.bin`), await sha256File(`${work}/c.bin`));
    });

    await t.step(
      "a client that vanishes mid-download: cleaned up, next session works",
      async () => {
        const [c] = await RawClient.connect("127.0.0.1", px.port);
        await c.login("anonymous", "x");
        assert.equal((await c.cmd("TYPE I")).code, 200);
        const data = await epsvData(c);
        const r = await c.cmd("RETR big.bin");
        assert.equal(r.code, 150, r.text);
        const buf = new Uint8Array(65536);
        assert.ok((await data.read(buf)) !== null);
        assert.equal(px.proxy.sessions.size, 1);
        data.close();
        c.close();
        assert.ok(await sessionsDrained(px.proxy), "the session ended");
        assert.equal(await curl([`${px.url}/hello.txt`]), "hello through the proxy\n");
      },
    );

    await t.step("a client that vanishes mid-upload: cleaned up, next session works", async () => {
      const [c] = await RawClient.connect("127.0.0.1", px.port);
      await c.login("anonymous", "x");
      const data = await epsvData(c);
      const r = await c.cmd("STOR partial.bin");
      assert.equal(r.code, 150, r.text);
      await data.write(new Uint8Array(200_000));
      data.close();
      c.close();
      assert.ok(await sessionsDrained(px.proxy), "the session ended");
      assert.equal(await curl([`${px.url}/hello.txt`]), "hello through the proxy\n");
    });

    await t.step(
      "the client's data connection closing early: 426, the session goes on",
      async () => {
        const [c] = await RawClient.connect("127.0.0.1", px.port);
        try {
          await c.login("anonymous", "x");
          assert.equal((await c.cmd("TYPE I")).code, 200);
          const data = await epsvData(c);
          assert.equal((await c.cmd("RETR big.bin")).code, 150);
          data.close();
          const end: Reply = await c.read(15_000);
          assert.equal(end.code, 426, end.text);
          assert.equal((await c.cmd("NOOP")).code, 200);
        } finally {
          c.close();
        }
        assert.ok(await sessionsDrained(px.proxy));
      },
    );
  } finally {
    await px.close();
    await up.close();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("proxy: PASV announces the configured address and a port of the range", async () => {
  const up = await startVsftpd();
  const publicAddress = new PublicAddress({ address: "203.0.113.7" });
  await publicAddress.start();
  // No LAN networks: the loopback client counts as remote.
  const px = startProxy(up.port, { publicAddress, tweak: (c) => c.lan_networks = [] });
  try {
    const [direct] = await RawClient.connect("127.0.0.1", up.port);
    const [c] = await RawClient.connect("127.0.0.1", px.port);
    try {
      await direct.login("anonymous", "x");
      await c.login("anonymous", "x");
      const own = parsePasvReply((await direct.cmd("PASV")).text);
      assert.equal(own?.host, "127.0.0.1", "vsftpd itself announces its local address");
      const r = await c.cmd("PASV");
      assert.equal(r.code, 227, r.text);
      const told = parsePasvReply(r.text)!;
      assert.equal(told.host, "203.0.113.7");
      assert.ok(told.port >= PASSIVE_MIN && told.port <= PASSIVE_MAX, `port ${told.port}`);
      // PORT with a LAN address: the proxy takes only the port and answers itself.
      const p = await c.cmd("PORT 192,168,1,50,200,10");
      assert.equal(p.code, 200, p.text);
      assert.match(p.text, /PORT command successful/);
      assert.equal((await c.cmd("PORT 192,168,1,50,0,21")).code, 504, "privileged port refused");
      assert.equal((await c.cmd("LPSV")).code, 502);
    } finally {
      direct.close();
      c.close();
    }
  } finally {
    await px.close();
    publicAddress.stop();
    await up.close();
  }
});

Deno.test("proxy: an upstream that is down gets the client a 421, not a hang", async () => {
  const px = startProxy(DOWN_PORT);
  try {
    const started = Date.now();
    const [c, greeting] = await RawClient.connect("127.0.0.1", px.port);
    try {
      assert.equal(greeting.code, 421, greeting.text);
      assert.match(greeting.text, /cannot be reached/);
      assert.ok(await c.closedWithin(2000), "the proxy closes the connection");
      assert.ok(Date.now() - started < 2000);
    } finally {
      c.close();
    }
    assert.ok(await sessionsDrained(px.proxy));
  } finally {
    await px.close();
  }
});

Deno.test("proxy: an upstream that accepts and stays silent -> 421 within the connect timeout", async () => {
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for (let i = 0; i < 10; i++) {
      try {
        held.push(await silent.accept());
      } catch {
        return;
      }
    }
  })();
  const px = startProxy((silent.addr as Deno.NetAddr).port); // connect timeout: 1 s
  try {
    const started = Date.now();
    const [c, greeting] = await RawClient.connect("127.0.0.1", px.port);
    const elapsed = Date.now() - started;
    c.close();
    assert.equal(greeting.code, 421, greeting.text);
    assert.ok(elapsed >= 900 && elapsed < 3000, `421 after ${elapsed} ms`);
    assert.ok(await sessionsDrained(px.proxy));
  } finally {
    await px.close();
    silent.close();
    await accepting;
    for (const conn of held) conn.close();
  }
});

Deno.test("proxy: max_sessions refuses the next client with 421", async () => {
  const up = await startVsftpd();
  const px = startProxy(up.port, { tweak: (c) => c.limits.max_sessions = 1 });
  try {
    const [first, hello] = await RawClient.connect("127.0.0.1", px.port);
    try {
      assert.equal(hello.code, 220);
      const [second, refused] = await RawClient.connect("127.0.0.1", px.port);
      second.close();
      assert.equal(refused.code, 421);
      assert.match(refused.text, /Too many sessions/);
    } finally {
      first.close();
    }
    assert.ok(await sessionsDrained(px.proxy));
  } finally {
    await px.close();
    await up.close();
  }
});

Deno.test("pitifulnat proxy and check, as programs, with the config a user writes", async () => {
  const up = await startVsftpd();
  const dir = await Deno.makeTempDir({ prefix: "pn-proxy-cli-" });
  const main = new URL("../../main.ts", import.meta.url).pathname;
  const writeConfig = async (
    name: string,
    listen: number,
    upstreamPort: number,
    statusPort?: number,
    // check judges a loopback listener or an example address unreachable.
    forCheck = false,
  ) => {
    const passive = freePort();
    await Deno.writeTextFile(
      `${dir}/${name}`,
      [
        `listen: { address: ${forCheck ? "0.0.0.0" : "127.0.0.1"}, port: ${listen} }`,
        `passive: { min_port: ${passive}, max_port: ${passive} }`,
        `public_address: { address: ${forCheck ? "5.6.7.8" : "203.0.113.7"} }`,
        statusPort ? `status: { port: ${statusPort} }` : "",
        "proxy:",
        `  upstream: { host: 127.0.0.1, port: ${upstreamPort} }`,
        "  connect_timeout_seconds: 1",
        "",
      ].join("\n"),
    );
    return `${dir}/${name}`;
  };
  try {
    const good = await writeConfig("good.yaml", freePort(), up.port, undefined, true);
    const checked = await run("deno", ["run", "-A", main, "check", "--config", good]);
    assert.equal(checked.code, 0, checked.stdout + checked.stderr);
    assert.match(checked.stdout, /proxy upstream 127\.0\.0\.1:\d+ .*220-Welcome to the upstream/);

    const bad = await writeConfig("bad.yaml", freePort(), DOWN_PORT, undefined, true);
    const failed = await run("deno", ["run", "-A", main, "check", "--config", bad]);
    assert.equal(failed.code, 12, failed.stdout);
    assert.match(failed.stdout, /proxy upstream 127\.0\.0\.1:\d+ unreachable/);

    /**
     * Starts the proxy program on a free port and checks that the greeting
     * on that port comes from it; another process on this machine may take
     * a "free" port first, so a start that fails that check is retried.
     */
    const startProgram = async (name: string, upstreamPort: number, expected: RegExp) => {
      for (let attempt = 1;; attempt++) {
        const listen = freePort();
        const cfg = await writeConfig(name, listen, upstreamPort, freePort());
        const args = ["run", "-A", main, "proxy", "--config", cfg];
        let bg: Awaited<ReturnType<typeof startInBackground>> | null = null;
        try {
          bg = await startInBackground("deno", args, { cwd: dir, port: listen });
          const [c, greeting] = await RawClient.connect("127.0.0.1", listen);
          c.close();
          if (expected.test(greeting.text)) return { bg, listen, cfg };
          throw new Error(`unexpected greeting on port ${listen}: ${greeting.text}`);
        } catch (e) {
          const out = await bg?.stop();
          if (attempt >= 3) throw new Error(`${(e as Error).message}\n${out?.stderr ?? ""}`);
        }
      }
    };

    // The proxy program: a real session through it, then one to a dead upstream.
    await Deno.writeTextFile(`${up.root}/cli.txt`, "via the program\n");
    const live = await startProgram("run.yaml", up.port, /^220-Welcome to the upstream/);
    let output;
    try {
      assert.equal(await curl([`ftp://127.0.0.1:${live.listen}/cli.txt`]), "via the program\n");
      const status = await run("deno", ["run", "-A", main, "status", "--config", live.cfg]);
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /transfers: 1; in 0 B, out 16 B; logins 1 ok, 0 failed/);
    } finally {
      output = await live.bg.stop();
    }
    assert.equal(output.code, 0, output.stderr);
    assert.match(output.stderr, /USER anonymous/);
    assert.match(output.stderr, /transfer user=anonymous dir=out cmd=RETR path=cli\.txt bytes=16 /);

    const dead = await startProgram("dead.yaml", DOWN_PORT, /^421 .*cannot be reached/);
    const output2 = await dead.bg.stop();
    assert.match(output2.stderr, /\[ERR\].*FTP server 127\.0\.0\.1:1 unreachable/);
  } finally {
    await up.close();
    await Deno.remove(dir, { recursive: true });
  }
});
