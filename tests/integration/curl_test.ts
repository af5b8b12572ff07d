/**
 * curl against the in-process server: listings, downloads in every data
 * mode (PASV, EPSV, active PORT/EPRT), uploads, resumed transfers, DELE
 * through a quote command, a 50 MB file each way, IPv6 and UTF-8 names.
 * curl's verbose trace (`-v`) is checked so each test proves the mode it
 * claims to use.
 */
import assert from "node:assert/strict";
import {
  run,
  type RunResult,
  sha256File,
  startServer,
  writeRandomFile,
} from "../helpers/server.ts";

/** Runs curl with a hard limit; fails the test with curl's stderr when it fails. */
async function curl(args: string[], expectCode = 0): Promise<RunResult> {
  const r = await run("curl", ["-sS", "-v", "--max-time", "20", ...args], { timeoutMs: 25_000 });
  assert.equal(r.code, expectCode, `curl ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  return r;
}

/** The FTP commands curl sent, from its verbose trace ("> CMD arg"). */
function sent(r: RunResult): string[] {
  return r.stderr.split("\n").filter((l) => l.startsWith("> ")).map((l) => l.slice(2).trim());
}

/** The FTP replies curl received, from its verbose trace ("< 227 ..."). */
function received(r: RunResult): string[] {
  return r.stderr.split("\n").filter((l) => l.startsWith("< ")).map((l) => l.slice(2).trim());
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "pn-curl-" });
}

/** Whether this machine can bind a socket on ::1. */
function canBindIpv6(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

const IPV6 = canBindIpv6();
if (!IPV6) console.warn("curl IPv6 tests skipped: cannot bind a socket on ::1 on this machine");

Deno.test("curl lists a directory with LIST and with NLST", async () => {
  const srv = await startServer();
  try {
    await Deno.writeTextFile(`${srv.root}/one.txt`, "1");
    await Deno.mkdir(`${srv.root}/sub`);
    const long = await curl([`${srv.url}/`]);
    // curl fetches listings in ASCII mode and turns CRLF into LF.
    const lines = long.stdout.trim().split(/\r?\n/);
    assert.equal(lines.length, 2, long.stdout);
    assert.match(lines.find((l) => l.endsWith(" one.txt")) ?? "", /^-rw/);
    assert.match(lines.find((l) => l.endsWith(" sub")) ?? "", /^drwx/);
    assert.ok(sent(long).includes("LIST"));
    const short = await curl(["--list-only", `${srv.url}/`]);
    assert.deepEqual(short.stdout.trim().split(/\r?\n/).sort(), ["one.txt", "sub"]);
    assert.ok(sent(short).includes("NLST"));
  } finally {
    await srv.close();
  }
});

Deno.test("curl downloads with PASV, EPSV and active PORT/EPRT", async () => {
  const srv = await startServer();
  const dir = await tempDir();
  try {
    await writeRandomFile(`${srv.root}/data.bin`, 300_000, 7);
    const want = await sha256File(`${srv.root}/data.bin`);

    const pasv = await curl(["--disable-epsv", "-o", `${dir}/pasv.bin`, `${srv.url}/data.bin`]);
    assert.ok(sent(pasv).includes("PASV"), pasv.stderr);
    assert.ok(!sent(pasv).includes("EPSV"));
    assert.ok(received(pasv).some((l) => /^227 Entering Passive Mode \(127,0,0,1,/.test(l)));
    assert.equal(await sha256File(`${dir}/pasv.bin`), want);

    const epsv = await curl(["-o", `${dir}/epsv.bin`, `${srv.url}/data.bin`]);
    assert.ok(sent(epsv).includes("EPSV"), epsv.stderr);
    assert.ok(received(epsv).some((l) => /^229 .*\(\|\|\|\d+\|\)/.test(l)));
    assert.equal(await sha256File(`${dir}/epsv.bin`), want);

    const eprt = await curl(["-P", "127.0.0.1", "-o", `${dir}/eprt.bin`, `${srv.url}/data.bin`]);
    assert.ok(sent(eprt).some((c) => c.startsWith("EPRT |1|127.0.0.1|")), eprt.stderr);
    assert.equal(await sha256File(`${dir}/eprt.bin`), want);

    const port = await curl([
      "-P",
      "127.0.0.1",
      "--disable-eprt",
      "-o",
      `${dir}/port.bin`,
      `${srv.url}/data.bin`,
    ]);
    assert.ok(sent(port).some((c) => c.startsWith("PORT 127,0,0,1,")), port.stderr);
    assert.equal(await sha256File(`${dir}/port.bin`), want);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("curl uploads with -T, passive and active", async () => {
  const srv = await startServer();
  const dir = await tempDir();
  try {
    await writeRandomFile(`${dir}/up.bin`, 200_000, 3);
    const want = await sha256File(`${dir}/up.bin`);
    const r = await curl(["-T", `${dir}/up.bin`, `${srv.url}/up.bin`]);
    assert.ok(sent(r).includes("STOR up.bin"), r.stderr);
    assert.ok(received(r).some((l) => l.startsWith("226 ")));
    assert.equal(await sha256File(`${srv.root}/up.bin`), want);

    const a = await curl(["-P", "127.0.0.1", "-T", `${dir}/up.bin`, `${srv.url}/active.bin`]);
    assert.ok(sent(a).some((c) => c.startsWith("EPRT ")), a.stderr);
    assert.equal(await sha256File(`${srv.root}/active.bin`), want);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("curl resumes a download (REST) and an upload (APPE)", async () => {
  const srv = await startServer();
  const dir = await tempDir();
  try {
    await writeRandomFile(`${srv.root}/full.bin`, 500_000, 11);
    const full = await Deno.readFile(`${srv.root}/full.bin`);
    await Deno.writeFile(`${dir}/full.bin`, full.subarray(0, 123_456));
    const down = await curl(["-C", "-", "-o", `${dir}/full.bin`, `${srv.url}/full.bin`]);
    assert.ok(sent(down).includes("REST 123456"), down.stderr);
    assert.ok(received(down).some((l) => l.startsWith("350 ")));
    assert.deepEqual(await Deno.readFile(`${dir}/full.bin`), full);

    await Deno.writeFile(`${dir}/local.bin`, full);
    await Deno.writeFile(`${srv.root}/part.bin`, full.subarray(0, 200_001));
    const up = await curl(["-C", "-", "-T", `${dir}/local.bin`, `${srv.url}/part.bin`]);
    assert.ok(sent(up).includes("SIZE part.bin"), up.stderr);
    assert.ok(sent(up).includes("APPE part.bin"), up.stderr);
    assert.deepEqual(await Deno.readFile(`${srv.root}/part.bin`), full);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("curl deletes a file with -Q -DELE, and DELE of a missing file fails", async () => {
  const srv = await startServer();
  try {
    await Deno.writeTextFile(`${srv.root}/gone.txt`, "bye");
    const r = await curl(["-Q", "-DELE gone.txt", `${srv.url}/`]);
    assert.ok(r.stdout.includes(" gone.txt"), "the listing ran before the DELE");
    assert.ok(received(r).some((l) => l.startsWith("250 ")), r.stderr);
    await assert.rejects(Deno.stat(`${srv.root}/gone.txt`), Deno.errors.NotFound);
    // curl exit 21: a quote command returned an error.
    const again = await curl(["-Q", "-DELE gone.txt", `${srv.url}/`], 21);
    assert.ok(received(again).some((l) => l.startsWith("550 ")), again.stderr);
  } finally {
    await srv.close();
  }
});

Deno.test("curl creates directories on upload and walks them with each CWD method", async () => {
  const srv = await startServer();
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir}/n.txt`, "nested\n");
    const up = await curl(["--ftp-create-dirs", "-T", `${dir}/n.txt`, `${srv.url}/a/b%20c/n.txt`]);
    assert.ok(sent(up).includes("MKD a"), up.stderr);
    assert.ok(sent(up).includes("MKD b c"), up.stderr);
    assert.equal(await Deno.readTextFile(`${srv.root}/a/b c/n.txt`), "nested\n");
    for (const method of ["multicwd", "singlecwd", "nocwd"]) {
      const r = await curl(["--ftp-method", method, `${srv.url}/a/b%20c/n.txt`]);
      assert.equal(r.stdout, "nested\n", `${method}: ${r.stderr}`);
    }
    // -I asks SIZE and MDTM only, and prints them as headers.
    const when = new Date(Date.UTC(2020, 0, 2, 3, 4, 5));
    await Deno.utime(`${srv.root}/a/b c/n.txt`, when, when);
    const head = await curl(["-I", `${srv.url}/a/b%20c/n.txt`]);
    assert.match(head.stdout, /Content-Length: 7\r?\n/);
    assert.match(head.stdout, /Last-Modified: Thu, 02 Jan 2020 03:04:05 GMT/);
    assert.ok(!sent(head).some((c) => c.startsWith("RETR")));
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("curl moves a 50 MB file each way intact", async () => {
  const srv = await startServer();
  const dir = await tempDir();
  try {
    const size = 50 * 1024 * 1024;
    await writeRandomFile(`${dir}/big.bin`, size, 42);
    const want = await sha256File(`${dir}/big.bin`);
    await curl(["-T", `${dir}/big.bin`, `${srv.url}/big.bin`]);
    assert.equal((await Deno.stat(`${srv.root}/big.bin`)).size, size);
    assert.equal(await sha256File(`${srv.root}/big.bin`), want);
    await curl(["-o", `${dir}/back.bin`, `${srv.url}/big.bin`]);
    assert.equal(await sha256File(`${dir}/back.bin`), want);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("curl uploads and downloads a file with a Unicode name", async () => {
  const srv = await startServer();
  const dir = await tempDir();
  const name = "日本語 ファイル.txt";
  try {
    const text = "こんにちは, FTP\n";
    await Deno.writeTextFile(`${dir}/src.txt`, text);
    const url = `${srv.url}/${encodeURIComponent(name)}`;
    const up = await curl(["-T", `${dir}/src.txt`, url]);
    assert.ok(sent(up).includes(`STOR ${name}`), up.stderr);
    assert.equal(await Deno.readTextFile(`${srv.root}/${name}`), text);
    const list = await curl(["--list-only", `${srv.url}/`]);
    assert.deepEqual(list.stdout.trim().split(/\r?\n/), [name]);
    await curl(["-o", `${dir}/back.txt`, url]);
    assert.equal(await Deno.readTextFile(`${dir}/back.txt`), text);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "curl over IPv6 (::1): EPSV and active EPRT",
  ignore: !IPV6,
  fn: async () => {
    const srv = await startServer({ host: "::1" });
    const dir = await tempDir();
    try {
      await writeRandomFile(`${srv.root}/six.bin`, 400_000, 6);
      const want = await sha256File(`${srv.root}/six.bin`);
      const epsv = await curl(["-o", `${dir}/epsv.bin`, `${srv.url}/six.bin`]);
      assert.ok(sent(epsv).includes("EPSV"), epsv.stderr);
      assert.equal(await sha256File(`${dir}/epsv.bin`), want);

      const eprt = await curl(["-P", "::1", "-o", `${dir}/eprt.bin`, `${srv.url}/six.bin`]);
      assert.ok(sent(eprt).some((c) => c.startsWith("EPRT |2|::1|")), eprt.stderr);
      assert.ok(received(eprt).some((l) => l.startsWith("200 ")));
      assert.equal(await sha256File(`${dir}/eprt.bin`), want);

      const up = await curl(["-P", "::1", "-T", `${dir}/eprt.bin`, `${srv.url}/up6.bin`]);
      assert.ok(sent(up).some((c) => c.startsWith("EPRT |2|")), up.stderr);
      assert.equal(await sha256File(`${srv.root}/up6.bin`), want);
    } finally {
      await srv.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
