/**
 * `pitifulnat proxy` in front of a real Pure-FTPd on loopback: the same core
 * checks as in front of vsftpd (proxy_test.ts), against a server with other
 * habits (a six-line banner, multi-line 226 and 221 replies, MLSD, its own
 * FEAT list), so nothing in the proxy depends on vsftpd's.
 *
 * Debian's pure-ftpd conflicts with vsftpd, so it is not installed:
 * `tests/tools/fetch_ftpd.sh` (run by tests/run.sh) unpacks the package
 * into `.tmp/ftpd`. `PUREFTPD_BIN` names another binary. Pure-FTPd runs in
 * the foreground as root (it chroots and drops privileges for each
 * session) with one virtual user in a PureDB file the test writes, mapped
 * to the `nobody` account: no system account is created or changed.
 * Without the binary or root the test is skipped with a message; under
 * CI=true that is a failure.
 */
import { startProxy as startTestProxy, type TestProxy } from "../helpers/proxy.ts";
import assert from "node:assert/strict";
import type { Config } from "../../src/config/schema.ts";
import { parsePasvReply } from "../../src/ftp/codec.ts";
import { PublicAddress } from "../../src/nat/public_address.ts";
import { ftplibJson, rawGreeting } from "../helpers/ftplib.ts";
import { type Background, freePort, startInBackground } from "../helpers/program.ts";
import { RawClient } from "../helpers/raw.ts";
import { run, sha256File, writeRandomFile } from "../helpers/server.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const PROXY_MIN = 43000;
const PROXY_MAX = 43099;
/** Pure-FTPd's own passive range: apart from the proxy's, so a port says who bound it. */
const UPSTREAM_MIN = 43100;
const UPSTREAM_MAX = 43199;
const USER = "pnproxy";
const PASSWORD = "proxy-test-pw";
/**
 * SHA-512 crypt of PASSWORD, checked by the system's crypt(3) at login.
 * Made with `python3 -c "import crypt; print(crypt.crypt(PW, '$6$pitifulnat$'))"`:
 * `pure-pw useradd` would store an Argon2 hash that takes seconds per login.
 */
const PASSWORD_HASH = "$6$pitifulnat$GH4xRYWlE.KAZQmPYUQGHU5GMKH01viJH9Vh5KTUlqBRBQnUkJKLpWVTYWH" +
  "zleTbPWh6vPhvwowIn186PELWY/";

function executable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Pure-FTPd and its pure-pw (`<prefix>/usr/sbin/pure-ftpd` -> `<prefix>/usr/bin/pure-pw`). */
function findPureFtpd(): { ftpd: string; pw: string } | null {
  const candidates = [
    Deno.env.get("PUREFTPD_BIN"),
    `${REPO}.tmp/ftpd/usr/sbin/pure-ftpd`,
    "/usr/sbin/pure-ftpd",
  ];
  for (const ftpd of candidates) {
    if (!ftpd || !executable(ftpd)) continue;
    const pw = ftpd.replace(/sbin\/pure-ftpd$/, "bin/pure-pw");
    if (pw !== ftpd && executable(pw)) return { ftpd, pw };
  }
  return null;
}

const found = findPureFtpd();
const missing = [
  ...(found ? [] : ["Pure-FTPd (run tests/tools/fetch_ftpd.sh, or set PUREFTPD_BIN)"]),
  ...(Deno.build.os === "linux" && Deno.uid() === 0 ? [] : ["root (Pure-FTPd chroots)"]),
];
const isCi = Deno.env.get("CI") === "true";
const ignore = missing.length > 0 && !isCi;
if (ignore) console.warn(`SKIPPED proxy in front of Pure-FTPd: missing ${missing.join(", ")}`);

/** uid and gid of the `nobody` account (65534 where it is missing). */
async function nobody(): Promise<{ uid: number; gid: number }> {
  const passwd = await Deno.readTextFile("/etc/passwd").catch(() => "");
  const fields = passwd.split("\n").find((l) => l.startsWith("nobody:"))?.split(":");
  return fields ? { uid: Number(fields[2]), gid: Number(fields[3]) } : { uid: 65534, gid: 65534 };
}

/** PIDs of the processes whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      // "pid (comm) state ppid ...": comm may hold spaces, so split after ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(entry.name));
    } catch {
      // Exited meanwhile.
    }
  }
  return out;
}

/** The process tree below `pid`, at most 4 levels deep (Pure-FTPd forks twice per session). */
function descendants(pid: number): number[] {
  const all: number[] = [];
  let level = [pid];
  for (let depth = 0; depth < 4 && level.length > 0; depth++) {
    level = level.flatMap(childrenOf);
    all.push(...level);
  }
  return all;
}

interface PureFtpd {
  port: number;
  /** The virtual user's home (its FTP root). */
  root: string;
  /** The greeting exactly as Pure-FTPd sends it. */
  greeting: string;
  close(): Promise<void>;
}

/**
 * Starts Pure-FTPd on a free loopback port with one PureDB virtual user
 * whose home is a temp dir. Another process may take the "free" port
 * first, so a start whose greeting is not Pure-FTPd's is retried (3 times).
 */
async function startPureFtpd(bins: { ftpd: string; pw: string }): Promise<PureFtpd> {
  const dir = await Deno.makeTempDir({ prefix: "pn-pureftpd-" });
  // Pure-FTPd enters the home as `nobody`: the path must be traversable.
  await Deno.chmod(dir, 0o755);
  const root = `${dir}/root`;
  await Deno.mkdir(root);
  const { uid, gid } = await nobody();
  await Deno.chown(root, uid, gid);
  // PureDB line: user:hash:uid:gid:gecos:home/./ (the "/./" chroots there), then limits (empty).
  await Deno.writeTextFile(
    `${dir}/passwd`,
    `${USER}:${PASSWORD_HASH}:${uid}:${gid}::${root}/./::::::::::::\n`,
  );
  const mkdb = await run(bins.pw, ["mkdb", `${dir}/users.pdb`, "-f", `${dir}/passwd`], {
    timeoutMs: 10_000,
  });
  if (mkdb.code !== 0) {
    await Deno.remove(dir, { recursive: true });
    throw new Error(`pure-pw mkdb failed: ${mkdb.stdout}${mkdb.stderr}`);
  }
  for (let attempt = 1;; attempt++) {
    const port = freePort();
    let bg: Background | null = null;
    try {
      bg = await startInBackground(bins.ftpd, [
        "--bind",
        `127.0.0.1,${port}`,
        "--login",
        `puredb:${dir}/users.pdb`,
        "--noanonymous",
        "--dontresolve",
        "--passiveportrange",
        `${UPSTREAM_MIN}:${UPSTREAM_MAX}`,
        "--maxclientsnumber",
        "50",
        "--maxclientsperip",
        "50",
      ], { cwd: dir, port, timeoutMs: 10_000 });
      const greeting = await rawGreeting(port);
      if (!greeting.startsWith("220---------- Welcome to Pure-FTPd")) {
        throw new Error(`not our Pure-FTPd on port ${port}: ${greeting}`);
      }
      const master = bg;
      return {
        port,
        root,
        greeting,
        async close() {
          const tree = descendants(master.pid);
          await master.stop();
          // Session processes outlive the master for as long as their client stays.
          for (const pid of tree) {
            try {
              if (Deno.readTextFileSync(`/proc/${pid}/comm`).startsWith("pure-ftpd")) {
                Deno.kill(pid, "SIGKILL");
              }
            } catch {
              // Exited already.
            }
          }
          await Deno.remove(dir, { recursive: true });
        },
      };
    } catch (e) {
      await bg?.stop();
      if (attempt >= 3) {
        await Deno.remove(dir, { recursive: true });
        throw e;
      }
    }
  }
}

/** This file's proxy: its own passive range, a 2 s connect timeout. */
function startProxy(
  upstreamPort: number,
  options: { tweak?: (c: Config) => void; publicAddress?: PublicAddress } = {},
): TestProxy {
  return startTestProxy(upstreamPort, {
    ...options,
    passive: { min: PROXY_MIN, max: PROXY_MAX },
    connectTimeoutSeconds: 2,
  });
}

/** Runs curl with the user's credentials; returns stdout (-v output in stderr on failure). */
async function curl(args: string[]): Promise<{ stdout: string; stderr: string }> {
  const r = await run("curl", [
    "-sS",
    "-v",
    "--max-time",
    "30",
    "-u",
    `${USER}:${PASSWORD}`,
    ...args,
  ], {
    timeoutMs: 40_000,
  });
  assert.equal(r.code, 0, `curl ${args.join(" ")}:\n${r.stderr}`);
  return r;
}

/** The port of a 229 reply, checked to be in the proxy's range. */
function proxyPort(text: string): number {
  const m = /\(\|\|\|(\d+)\|\)/.exec(text);
  assert.ok(m, text);
  const port = Number(m[1]);
  assert.ok(port >= PROXY_MIN && port <= PROXY_MAX, `port ${port} is the proxy's: ${text}`);
  return port;
}

Deno.test({
  name: "proxy in front of Pure-FTPd: real clients, both modes, both directions",
  ignore,
  async fn(t) {
    if (!found || missing.length > 0) {
      throw new Error(`Pure-FTPd proxy test prerequisites missing under CI=true: ${missing}`);
    }
    const up = await startPureFtpd(found);
    const px = startProxy(up.port);
    const work = await Deno.makeTempDir({ prefix: "pn-pureftpd-work-" });
    const url = `ftp://127.0.0.1:${px.port}`;
    try {
      const hello = "hello through the proxy to Pure-FTPd\n";
      await Deno.writeTextFile(`${up.root}/hello.txt`, hello);

      await t.step("the six-line banner passes unchanged", async () => {
        const lines = up.greeting.split("\r\n");
        assert.equal(lines.length, 7, up.greeting); // six lines, then "" after the last CRLF
        const through = await rawGreeting(px.port);
        // The banner carries the clock (minutes) and a session count: compare without digits.
        const shape = (s: string) => s.replace(/\d+/g, "#");
        assert.equal(shape(through), shape(up.greeting));
        assert.match(through, /^220---------- Welcome to Pure-FTPd/);
      });

      await t.step("login relayed to Pure-FTPd's user database; FEAT hides AUTH TLS", async () => {
        // (A wrong password is not tried: Pure-FTPd delays a 530 by seconds.)
        const [c] = await RawClient.connect("127.0.0.1", px.port);
        try {
          assert.equal((await c.cmd(`USER ${USER}`)).code, 331);
          const ok = await c.cmd(`PASS ${PASSWORD}`);
          assert.equal(ok.code, 230, ok.text);
          assert.match(ok.text, /^230 OK\. Current directory is \/$/);
          const feat = await c.cmd("FEAT");
          assert.equal(feat.code, 211, feat.text);
          assert.match(feat.text, /^ MLSD$/m);
          assert.match(feat.text, /^ EPSV$/m);
          assert.doesNotMatch(feat.text, /AUTH|PBSZ|PROT/);
          assert.equal((await c.cmd("AUTH TLS")).code, 502);
        } finally {
          c.close();
        }
        assert.equal(px.proxy.stats.loginsOk, 1);
      });

      await t.step("curl: PASV, EPSV, EPRT and PORT downloads", async () => {
        const file = `${url}/hello.txt`;
        const pasv = await curl(["--disable-epsv", "--no-ftp-skip-pasv-ip", file]);
        assert.equal(pasv.stdout, hello);
        assert.match(pasv.stderr, /227 Entering Passive Mode \(127,0,0,1,\d+,\d+\)/);
        const pasvPort = /227 Entering Passive Mode \(127,0,0,1,(\d+),(\d+)\)/.exec(pasv.stderr)!;
        const told = Number(pasvPort[1]) * 256 + Number(pasvPort[2]);
        assert.ok(told >= PROXY_MIN && told <= PROXY_MAX, `227 port ${told} is the proxy's`);
        const epsv = await curl([file]);
        assert.equal(epsv.stdout, hello);
        proxyPort(epsv.stderr);
        assert.equal((await curl(["-P", "127.0.0.1", file])).stdout, hello);
        assert.equal((await curl(["-P", "127.0.0.1", "--disable-eprt", file])).stdout, hello);
      });

      await t.step("curl: uploads in each mode land on Pure-FTPd; listings", async () => {
        await Deno.writeTextFile(`${work}/up.txt`, "uploaded via the proxy\n");
        await curl(["--disable-epsv", "-T", `${work}/up.txt`, `${url}/up-pasv.txt`]);
        await curl(["-T", `${work}/up.txt`, `${url}/up-epsv.txt`]);
        await curl(["-P", "127.0.0.1", "-T", `${work}/up.txt`, `${url}/up-active.txt`]);
        await curl([
          "-P",
          "127.0.0.1",
          "--disable-eprt",
          "-T",
          `${work}/up.txt`,
          `${url}/up-port.txt`,
        ]);
        for (const name of ["up-pasv.txt", "up-epsv.txt", "up-active.txt", "up-port.txt"]) {
          assert.equal(
            await Deno.readTextFile(`${up.root}/${name}`),
            "uploaded via the proxy\n",
            name,
          );
          // Written by Pure-FTPd's session process as the virtual user's account.
          assert.equal((await Deno.stat(`${up.root}/${name}`)).uid, (await nobody()).uid, name);
        }
        const names = (await curl(["--list-only", `${url}/`])).stdout;
        // Pure-FTPd's NLST names "." and ".." too.
        assert.deepEqual(
          names.trim().split(/\r?\n/).filter((n) => n !== "." && n !== "..").sort(),
          ["hello.txt", "up-active.txt", "up-epsv.txt", "up-pasv.txt", "up-port.txt"],
        );
        const long = (await curl(["--disable-epsv", `${url}/`])).stdout;
        assert.match(long, /^-rw-r--r-- .* hello\.txt\r?$/m);
      });

      await t.step("a 20 MB file each way arrives intact (sha256)", async () => {
        const size = 20 * 1024 * 1024;
        await writeRandomFile(`${up.root}/big.bin`, size, 21);
        await writeRandomFile(`${work}/big-up.bin`, size, 22);
        const before = { ...px.proxy.stats };
        await curl(["-o", `${work}/big-down.bin`, `${url}/big.bin`]);
        await curl(["--disable-epsv", "-T", `${work}/big-up.bin`, `${url}/big-up.bin`]);
        assert.equal(
          await sha256File(`${work}/big-down.bin`),
          await sha256File(`${up.root}/big.bin`),
        );
        assert.equal(
          await sha256File(`${up.root}/big-up.bin`),
          await sha256File(`${work}/big-up.bin`),
        );
        assert.equal(px.proxy.stats.bytesOut - before.bytesOut, size);
        assert.equal(px.proxy.stats.bytesIn - before.bytesIn, size);
      });

      await t.step("ftplib: NLST, LIST, MLSD, REST resume, upload, active mode", async () => {
        const out = await ftplibJson(
          px.port,
          `
out["nlst"] = sorted(n for n in ftp.nlst() if n not in (".", ".."))
lines = []
ftp.retrlines("LIST", lines.append)
out["list"] = len(lines)
out["mlsd"] = {name: facts.get("type") for name, facts in ftp.mlsd()}
buf = io.BytesIO()
out["rest_reply"] = ftp.retrbinary("RETR hello.txt", buf.write, rest=6)
out["rest"] = buf.getvalue().decode()
buf = io.BytesIO()
ftp.retrbinary("RETR big.bin", buf.write, rest=20 * 1024 * 1024 - 1000)
out["rest_big"] = len(buf.getvalue())
out["stor"] = ftp.storbinary("STOR ftplib.txt", io.BytesIO(b"from ftplib\\n"))
out["size"] = ftp.size("ftplib.txt")
out["pasv"] = ftp.sendcmd("PASV")
ftp.set_pasv(False)
buf = io.BytesIO()
ftp.retrbinary("RETR hello.txt", buf.write)
out["active"] = buf.getvalue().decode()
out["quit"] = ftp.quit()
`,
          { login: { user: USER, password: PASSWORD }, trustPasvAddress: true },
        );
        const nlst = out.nlst as string[];
        assert.ok(nlst.includes("hello.txt") && nlst.includes("big.bin"), String(nlst));
        assert.equal(out.list, nlst.length);
        const mlsd = out.mlsd as Record<string, string>;
        assert.equal(mlsd["hello.txt"], "file");
        assert.equal(mlsd["big.bin"], "file");
        // Pure-FTPd ends a transfer with a two-line 226; ftplib returns it whole.
        assert.match(out.rest_reply as string, /^226-File successfully transferred\n226 /);
        assert.equal(out.rest, hello.slice(6));
        assert.equal(out.rest_big, 1000);
        assert.match(out.stor as string, /^226/);
        assert.equal(out.size, 12);
        assert.equal(await Deno.readTextFile(`${up.root}/ftplib.txt`), "from ftplib\n");
        assert.match(out.pasv as string, /^227 Entering Passive Mode \(127,0,0,1,\d+,\d+\)/);
        const port = parsePasvReply(out.pasv as string)!.port;
        assert.ok(port >= PROXY_MIN && port <= PROXY_MAX, `227 port ${port} is the proxy's`);
        assert.equal(out.active, hello);
        assert.match(out.quit as string, /^221-Goodbye/);
      });

      await t.step("EPSV through the proxy: the data port is the proxy's", async () => {
        const [c] = await RawClient.connect("127.0.0.1", px.port);
        try {
          await c.login(USER, PASSWORD);
          assert.equal((await c.cmd("TYPE I")).code, 200);
          const r = await c.cmd("EPSV");
          assert.equal(r.code, 229, r.text);
          const data = await Deno.connect({ hostname: "127.0.0.1", port: proxyPort(r.text) });
          const retr = await c.cmd("RETR hello.txt");
          assert.equal(retr.code, 150, retr.text);
          const got = await new Response(data.readable).text();
          assert.equal(got, hello);
          const end = await c.read(10_000);
          assert.equal(end.code, 226, end.text);
          assert.equal(end.lines.length, 2, end.text);
          assert.equal((await c.cmd("NOOP")).code, 200);
        } finally {
          c.close();
        }
      });
    } finally {
      await px.close();
      await up.close();
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: "proxy in front of Pure-FTPd: PASV announces the public address, not Pure-FTPd's",
  ignore,
  async fn() {
    if (!found || missing.length > 0) {
      throw new Error(`Pure-FTPd proxy test prerequisites missing under CI=true: ${missing}`);
    }
    const up = await startPureFtpd(found);
    const publicAddress = new PublicAddress({ address: "203.0.113.9" });
    await publicAddress.start();
    // No LAN networks: the loopback client counts as remote.
    const px = startProxy(up.port, { publicAddress, tweak: (c) => c.lan_networks = [] });
    try {
      const [direct] = await RawClient.connect("127.0.0.1", up.port);
      const [c] = await RawClient.connect("127.0.0.1", px.port);
      try {
        await direct.login(USER, PASSWORD);
        await c.login(USER, PASSWORD);
        const own = parsePasvReply((await direct.cmd("PASV")).text)!;
        assert.equal(own.host, "127.0.0.1", "Pure-FTPd itself announces its local address");
        assert.ok(own.port >= UPSTREAM_MIN && own.port <= UPSTREAM_MAX, `port ${own.port}`);
        const r = await c.cmd("PASV");
        assert.equal(r.code, 227, r.text);
        const told = parsePasvReply(r.text)!;
        assert.equal(told.host, "203.0.113.9");
        assert.ok(told.port >= PROXY_MIN && told.port <= PROXY_MAX, `port ${told.port}`);
      } finally {
        direct.close();
        c.close();
      }
    } finally {
      await px.close();
      publicAddress.stop();
      await up.close();
    }
  },
});
