/**
 * Python's ftplib against the in-process server. Each test runs a small
 * Python script that drives ftplib and prints what it observed as JSON; the
 * assertions are made here, on those observations and on the disk.
 */
import assert from "node:assert/strict";
import { ABORT_BIG_RETR } from "../helpers/ftplib.ts";
import {
  PASSWORD,
  run,
  sha256File,
  startServer,
  USER,
  writeRandomFile,
} from "../helpers/server.ts";

/** Common prologue: connects and logs in as argv[1..4] (host, port, user, password). */
const PROLOGUE = `
import ftplib, io, json, sys
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ftp = ftplib.FTP()
ftp.encoding = "utf-8"
out = {}
out["welcome"] = ftp.connect(host, port, timeout=10)
out["login"] = ftp.login(user, password)
`;

/** Runs a script after the prologue and returns the JSON it printed last. */
async function python(
  srv: { host: string; port: number },
  body: string,
  extra: string[] = [],
): Promise<Record<string, unknown>> {
  const dir = await Deno.makeTempDir({ prefix: "pn-ftplib-" });
  try {
    const script = `${dir}/client.py`;
    await Deno.writeTextFile(script, PROLOGUE + body + "\nprint(json.dumps(out))\n");
    const r = await run("python3", [script, srv.host, String(srv.port), USER, PASSWORD, ...extra], {
      timeoutMs: 25_000,
    });
    assert.equal(r.code, 0, `python exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
    const last = r.stdout.trim().split("\n").at(-1) ?? "";
    return JSON.parse(last);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ftplib: login, MLSD facts, NLST, SIZE, MDTM", async () => {
  const srv = await startServer();
  try {
    await Deno.writeTextFile(`${srv.root}/a.txt`, "hello");
    await Deno.mkdir(`${srv.root}/dir`);
    const when = new Date(Date.UTC(2021, 2, 4, 5, 6, 7));
    await Deno.utime(`${srv.root}/a.txt`, when, when);
    const out = await python(
      srv,
      `
out["mlsd"] = {name: facts for name, facts in ftp.mlsd(facts=["type", "size", "modify", "perm"])}
out["nlst"] = sorted(ftp.nlst())
out["size"] = ftp.size("a.txt")
out["mdtm"] = ftp.sendcmd("MDTM a.txt")
out["pwd"] = ftp.pwd()
ftp.quit()
`,
    );
    assert.match(String(out.welcome), /^220 /);
    assert.match(String(out.login), /^230 /);
    const mlsd = out.mlsd as Record<string, Record<string, string>>;
    assert.deepEqual(Object.keys(mlsd).sort(), [".", "a.txt", "dir"]);
    assert.equal(mlsd["."].type, "cdir");
    assert.equal(mlsd["a.txt"].type, "file");
    assert.equal(mlsd["a.txt"].size, "5");
    assert.equal(mlsd["a.txt"].modify, "20210304050607");
    assert.equal(mlsd["a.txt"].perm, "adfrw");
    assert.equal(mlsd.dir.type, "dir");
    assert.equal(mlsd.dir.perm, "cdeflmp");
    assert.equal(mlsd.dir.size, undefined);
    assert.deepEqual(out.nlst, ["a.txt", "dir"]);
    assert.equal(out.size, 5);
    assert.equal(out.mdtm, "213 20210304050607");
    assert.equal(out.pwd, "/");
  } finally {
    await srv.close();
  }
});

Deno.test("ftplib: storbinary, retrbinary with rest, rename, delete, mkd/rmd", async () => {
  const srv = await startServer();
  const dir = await Deno.makeTempDir({ prefix: "pn-ftplib-data-" });
  try {
    await writeRandomFile(`${dir}/up.bin`, 1_000_000, 5);
    const out = await python(
      srv,
      `
local = sys.argv[5]
with open(local, "rb") as f:
    out["stor"] = ftp.storbinary("STOR up.bin", f)
buf = io.BytesIO()
out["retr_rest"] = ftp.retrbinary("RETR up.bin", buf.write, rest=999_000)
out["tail_len"] = len(buf.getvalue())
with open(local, "rb") as f:
    out["tail_ok"] = buf.getvalue() == f.read()[999_000:]
out["mkd"] = ftp.mkd("new dir")
out["cwd"] = ftp.cwd("new dir")
out["pwd_in"] = ftp.pwd()
ftp.cwd("/")
out["rename"] = ftp.rename("up.bin", "new dir/moved.bin")
out["nlst_dir"] = ftp.nlst("new dir")
try:
    ftp.rmd("new dir")
    out["rmd_full"] = "removed"
except ftplib.error_perm as e:
    out["rmd_full"] = str(e)
out["delete"] = ftp.delete("new dir/moved.bin")
try:
    ftp.delete("new dir/moved.bin")
    out["delete_again"] = "deleted"
except ftplib.error_perm as e:
    out["delete_again"] = str(e)
out["rmd"] = ftp.rmd("new dir")
out["nlst"] = ftp.nlst()
ftp.quit()
`,
      [`${dir}/up.bin`],
    );
    assert.match(String(out.stor), /^226 /);
    assert.match(String(out.retr_rest), /^226 /);
    assert.equal(out.tail_len, 1000);
    assert.equal(out.tail_ok, true);
    assert.equal(out.mkd, "/new dir");
    assert.equal(out.pwd_in, "/new dir");
    assert.match(String(out.rename), /^250 /);
    assert.deepEqual(out.nlst_dir, ["moved.bin"]);
    assert.match(String(out.rmd_full), /^550 /);
    assert.match(String(out.delete), /^250 /);
    assert.match(String(out.delete_again), /^550 /);
    assert.match(String(out.rmd), /^250 /);
    assert.deepEqual(out.nlst, []);
    await assert.rejects(Deno.stat(`${srv.root}/new dir`), Deno.errors.NotFound);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ftplib: abort a big download mid-way, then NOOP still answers 200", async () => {
  const srv = await startServer();
  try {
    using f = await Deno.open(`${srv.root}/big.bin`, { write: true, create: true });
    await f.truncate(64 * 1024 * 1024);
    const out = await python(
      srv,
      `
${ABORT_BIG_RETR}
buf = io.BytesIO()
ftp.retrbinary("RETR big.bin", buf.write, rest=64 * 1024 * 1024 - 10)
out["after"] = len(buf.getvalue())
ftp.quit()
`,
    );
    assert.ok((out.got as number) >= 1_000_000);
    const codes = (out.abort as string[]).map((r) => r.slice(0, 3));
    assert.deepEqual(codes, ["426", "226"], String(out.abort));
    assert.equal(out.noop, "200 NOOP ok");
    assert.equal(out.after, 10);
  } finally {
    await srv.close();
  }
});

Deno.test("ftplib: active mode (set_pasv(False)) up and down", async () => {
  const srv = await startServer();
  const dir = await Deno.makeTempDir({ prefix: "pn-ftplib-data-" });
  try {
    await writeRandomFile(`${dir}/act.bin`, 2_000_000, 9);
    const out = await python(
      srv,
      `
ftp.set_pasv(False)
with open(sys.argv[5], "rb") as f:
    out["stor"] = ftp.storbinary("STOR act.bin", f)
with open(sys.argv[6], "wb") as f:
    out["retr"] = ftp.retrbinary("RETR act.bin", f.write)
lines = []
out["list"] = ftp.retrlines("LIST", lines.append)
out["lines"] = lines
ftp.quit()
`,
      [`${dir}/act.bin`, `${dir}/back.bin`],
    );
    assert.match(String(out.stor), /^226 /);
    assert.match(String(out.retr), /^226 /);
    const want = await sha256File(`${dir}/act.bin`);
    assert.equal(await sha256File(`${srv.root}/act.bin`), want);
    assert.equal(await sha256File(`${dir}/back.bin`), want);
    const lines = out.lines as string[];
    assert.equal(lines.length, 1);
    assert.match(lines[0], /^-rw\S+ 1 ftp ftp +2000000 .* act\.bin$/);
  } finally {
    await srv.close();
    await Deno.remove(dir, { recursive: true });
  }
});
