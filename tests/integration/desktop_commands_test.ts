/**
 * The commands desktop sync tools use, against the in-process server with
 * real clients: MFMT and SITE CHMOD (lftp `mirror -R`, rclone `sync`), HASH
 * and OPTS HASH, the unix.* MLST facts (Python ftplib), and drop boxes
 * (curl): users who may upload but not list, read or overwrite.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ftplibJson } from "../helpers/ftplib.ts";
import {
  PASSWORD,
  run,
  type RunResult,
  sha256File,
  startServer,
  USER,
  writeRandomFile,
} from "../helpers/server.ts";

const LOGIN = { user: USER, password: PASSWORD };

/** Python: `code(cmd)` sends a command and returns the reply text, error replies included. */
const CODE = `
def code(cmd):
    try:
        return ftp.sendcmd(cmd)
    except ftplib.all_errors as e:
        return str(e)
`;

/** The SHA-1 of a file, hex. */
async function sha1File(path: string): Promise<string> {
  return createHash("sha1").update(await Deno.readFile(path)).digest("hex");
}

Deno.test("ftplib: HASH, OPTS HASH, MFMT, SITE CHMOD, SITE HELP and unix.* MLST facts", async () => {
  const outside = await Deno.makeTempDir({ prefix: "pn-outside-" });
  const srv = await startServer();
  try {
    const data = `${srv.root}/data.bin`;
    await writeRandomFile(data, 3 * 1024 * 1024 + 17, 9); // more than one HASH chunk
    await Deno.writeTextFile(`${srv.root}/empty.txt`, "");
    await Deno.mkdir(`${srv.root}/sub`);
    await Deno.writeTextFile(`${outside}/secret.txt`, "outside\n");
    await Deno.chmod(`${outside}/secret.txt`, 0o600);
    await Deno.symlink(`${outside}/secret.txt`, `${srv.root}/link-out`);
    await Deno.symlink("data.bin", `${srv.root}/link-in`);
    const out = await ftplibJson(
      srv.port,
      `${CODE}
out["feat"] = code("FEAT")
out["hash"] = code("HASH data.bin")
out["hash_empty"] = code("HASH empty.txt")
out["opts_show"] = code("OPTS HASH")
out["opts_sha1"] = code("OPTS HASH SHA-1")
out["opts_show1"] = code("OPTS HASH")
out["hash1"] = code("HASH data.bin")
out["opts_md5"] = code("OPTS HASH MD5")
out["hash_missing"] = code("HASH nope.bin")
out["hash_dir"] = code("HASH sub")
out["mfmt_month"] = code("MFMT 20261301000000 data.bin")
out["mfmt_feb"] = code("MFMT 20230229120000 data.bin")
out["mfmt_word"] = code("MFMT yesterday data.bin")
out["mfmt_nopath"] = code("MFMT 20200102030405")
out["mfmt"] = code("MFMT 20200102030405 data.bin")
out["mfmt_ms"] = code("MFMT 20210304050607.250 sub")
out["mfmt_missing"] = code("MFMT 20200102030405 nope.bin")
out["mfmt_out"] = code("MFMT 20200102030405 link-out")
out["chmod_suid"] = code("SITE CHMOD 4755 data.bin")
out["chmod_digit"] = code("SITE CHMOD 789 data.bin")
out["chmod_nopath"] = code("SITE CHMOD 644")
out["chmod"] = code("SITE CHMOD 640 data.bin")
out["chmod_0755"] = code("SITE CHMOD 0755 sub")
out["chmod_missing"] = code("SITE CHMOD 644 nope.bin")
out["chmod_out"] = code("SITE CHMOD 644 link-out")
out["chmod_link_in"] = code("SITE CHMOD 604 link-in")
out["site_help"] = code("SITE HELP")
out["site_other"] = code("SITE EXEC ls")
out["mlst"] = code("MLST data.bin")
out["opts_mlst"] = code("OPTS MLST type;UNIX.mode;")
out["mlst_picked"] = code("MLST data.bin")
`,
      { login: LOGIN },
    );
    const feat = String(out.feat);
    assert.match(feat, /^ MFMT$/m);
    assert.match(feat, /^ HASH SHA-256\*;SHA-1$/m);
    assert.match(feat, /^ MLST [^\n]*unix\.mode\*;unix\.owner\*;unix\.group\*;$/m);

    const size = (await Deno.stat(data)).size;
    assert.equal(out.hash, `213 SHA-256 0-${size - 1} ${await sha256File(data)} data.bin`);
    assert.match(String(out.hash_empty), new RegExp(`^213 SHA-256 0-0 ${sha256Of("")} empty.txt`));
    assert.equal(out.opts_show, "200 SHA-256");
    assert.equal(out.opts_sha1, "200 SHA-1");
    assert.equal(out.opts_show1, "200 SHA-1");
    assert.equal(out.hash1, `213 SHA-1 0-${size - 1} ${await sha1File(data)} data.bin`);
    assert.match(String(out.opts_md5), /^504 /);
    assert.match(String(out.hash_missing), /^550 /);
    assert.match(String(out.hash_dir), /^550 /);

    for (const k of ["mfmt_month", "mfmt_feb", "mfmt_word", "mfmt_nopath"]) {
      assert.match(String(out[k]), /^501 /, `${k}: ${out[k]}`);
    }
    assert.equal(out.mfmt, "213 Modify=20200102030405; data.bin");
    assert.equal(out.mfmt_ms, "213 Modify=20210304050607.250; sub");
    assert.match(String(out.mfmt_missing), /^550 /);
    assert.match(String(out.mfmt_out), /^553 /);
    assert.equal((await Deno.stat(data)).mtime?.toISOString(), "2020-01-02T03:04:05.000Z");
    assert.equal(
      (await Deno.stat(`${srv.root}/sub`)).mtime?.toISOString(),
      "2021-03-04T05:06:07.250Z",
    );

    for (const k of ["chmod_suid", "chmod_digit", "chmod_nopath"]) {
      assert.match(String(out[k]), /^501 /, `${k}: ${out[k]}`);
    }
    assert.match(String(out.chmod), /^200 /);
    assert.match(String(out.chmod_0755), /^200 /);
    assert.match(String(out.chmod_missing), /^550 /);
    assert.match(String(out.chmod_out), /^553 /);
    assert.equal((await Deno.stat(`${outside}/secret.txt`)).mode! & 0o7777, 0o600);
    assert.match(String(out.chmod_link_in), /^200 /);
    assert.equal((await Deno.stat(data)).mode! & 0o7777, 0o604); // through the link, inside
    assert.equal((await Deno.lstat(`${srv.root}/sub`)).mode! & 0o7777, 0o755);
    assert.match(String(out.site_help), /^214-[^]*CHMOD[^]*\n214 /);
    assert.match(String(out.site_other), /^502 /);

    const info = await Deno.stat(data);
    // 0604: the chmod through link-in came last.
    assert.match(String(out.mlst), new RegExp(`;unix\\.mode=0604;`));
    assert.match(
      String(out.mlst),
      new RegExp(`;unix\\.owner=${info.uid};unix\\.group=${info.gid}; `),
    );
    assert.match(String(out.opts_mlst), /^200 MLST OPTS type;unix\.mode;$/);
    assert.match(String(out.mlst_picked), /\n type=file;unix\.mode=0604; \/data\.bin\n/);
  } finally {
    await srv.close();
    await Deno.remove(outside, { recursive: true });
  }
});

/** The SHA-256 of a string, hex. */
function sha256Of(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

Deno.test("HASH runs in the background: other sessions answer meanwhile, ABOR stops it", async () => {
  const srv = await startServer();
  try {
    await writeRandomFile(`${srv.root}/big.bin`, 64 * 1024 * 1024, 3);
    const out = await ftplibJson(
      srv.port,
      `${CODE}
import time
other = ftplib.FTP()
other.connect("127.0.0.1", ftp.port, timeout=20)
other.login(*sys.argv[2:4])
ftp.putcmd("HASH big.bin")
t0 = time.monotonic()
out["other_noop"] = other.sendcmd("NOOP")
out["other_ms"] = (time.monotonic() - t0) * 1000
ftp.putcmd("ABOR")
replies = [ftp.getline(), ftp.getline()]
out["abort"] = replies
out["after"] = code("NOOP")
out["hash_small"] = code("HASH big.bin")
other.quit()
`,
      { login: LOGIN },
    );
    assert.equal(out.other_noop, "200 NOOP ok");
    assert.ok(Number(out.other_ms) < 1000, `NOOP took ${out.other_ms} ms`);
    const abort = out.abort as string[];
    // ABOR before the HASH ended: 426 then 226; a HASH faster than the ABOR: 213 then 225.
    assert.ok(
      (abort[0].startsWith("426") && abort[1].startsWith("226")) ||
        (abort[0].startsWith("213") && abort[1].startsWith("225")),
      abort.join(" | "),
    );
    assert.equal(out.after, "200 NOOP ok");
    assert.match(String(out.hash_small), new RegExp(await sha256File(`${srv.root}/big.bin`)));
  } finally {
    await srv.close();
  }
});

/** Runs curl with a hard limit; checks its exit code. */
async function curl(args: string[], expectCode = 0): Promise<RunResult> {
  const r = await run("curl", ["-sS", "-v", "--max-time", "20", ...args], { timeoutMs: 25_000 });
  assert.equal(r.code, expectCode, `curl ${args.join(" ")} exited ${r.code}:\n${r.stderr}`);
  return r;
}

/** The FTP replies curl received, from its verbose trace ("< 553 ..."). */
function received(r: RunResult): string[] {
  return r.stderr.split("\n").filter((l) => l.startsWith("< ")).map((l) => l.slice(2).trim());
}

Deno.test("drop box with curl: upload yes; list, read, size, overwrite no; delete lets overwrite", async () => {
  const srv = await startServer({
    tweak: (c) => {
      const box = `${c.users[0].home}/box`;
      c.users.push({ ...c.users[0], name: "drop", home: box, permissions: ["write", "mkdir"] });
      c.users.push({ ...c.users[0], name: "drop2", home: box, permissions: ["write", "delete"] });
    },
  });
  const work = await Deno.makeTempDir({ prefix: "pn-drop-" });
  try {
    const box = `${srv.root}/box`;
    await Deno.mkdir(box);
    await Deno.writeTextFile(`${work}/a.txt`, "first sender\n");
    await Deno.writeTextFile(`${work}/b.txt`, "second sender\n");
    const pw = encodeURIComponent(PASSWORD);
    const url = (user: string, path = "") => `ftp://${user}:${pw}@127.0.0.1:${srv.port}/${path}`;

    await curl(["-T", `${work}/a.txt`, url("drop", "a.txt")]);
    assert.equal(await Deno.readTextFile(`${box}/a.txt`), "first sender\n");
    await curl(["--ftp-create-dirs", "-T", `${work}/a.txt`, url("drop", "new/dir/a.txt")]);
    assert.equal(await Deno.readTextFile(`${box}/new/dir/a.txt`), "first sender\n");

    // Listings and reads: 550 (curl: 19 "RETR failed", or its listing/quote errors).
    const list = await run("curl", ["-sS", "-v", "--max-time", "20", url("drop")]);
    assert.notEqual(list.code, 0);
    assert.ok(received(list).some((l) => /^550 /.test(l)), list.stderr);
    const nlst = await run("curl", ["-sS", "-v", "--max-time", "20", "-l", url("drop")]);
    assert.notEqual(nlst.code, 0);
    assert.ok(received(nlst).some((l) => /^550 /.test(l)), nlst.stderr);
    const retr = await run("curl", ["-sS", "-v", "--max-time", "20", url("drop", "a.txt")]);
    assert.notEqual(retr.code, 0);
    assert.ok(received(retr).some((l) => /^550 /.test(l)), retr.stderr);
    const size = await curl(["-Q", "SIZE a.txt", url("drop")], 21);
    assert.ok(received(size).some((l) => /^550 /.test(l)), size.stderr);

    // A second STOR onto the same name: 553, the first upload stays.
    const again = await curl(["-T", `${work}/b.txt`, url("drop", "a.txt")], 25);
    assert.ok(received(again).some((l) => /^553 /.test(l)), again.stderr);
    const append = await curl(["--append", "-T", `${work}/b.txt`, url("drop", "a.txt")], 25);
    assert.ok(received(append).some((l) => /^553 /.test(l)), append.stderr);
    assert.equal(await Deno.readTextFile(`${box}/a.txt`), "first sender\n");

    // With delete, overwriting is allowed; alice (read) can read it all.
    await curl(["-T", `${work}/b.txt`, url("drop2", "a.txt")]);
    assert.equal(await Deno.readTextFile(`${box}/a.txt`), "second sender\n");
    const got = await curl([url(USER, "box/a.txt")]);
    assert.equal(got.stdout, "second sender\n");
  } finally {
    await srv.close();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("drop box with ftplib: MLSD, MLST, MDTM, HASH, STAT path 550; STOU yes; RNTO onto a file no", async () => {
  const srv = await startServer({
    tweak: (c) => {
      c.users.push({ ...c.users[0], name: "drop", permissions: ["write", "rename"] });
    },
  });
  try {
    await Deno.writeTextFile(`${srv.root}/there.txt`, "x\n");
    const out = await ftplibJson(
      srv.port,
      `${CODE}
import io
for cmd in ["MLST there.txt", "MDTM there.txt", "HASH there.txt", "SIZE there.txt", "STAT there.txt"]:
    out[cmd] = code(cmd)
try:
    ftp.retrlines("MLSD", lambda l: None)
    out["MLSD"] = "ok"
except ftplib.all_errors as e:
    out["MLSD"] = str(e)
out["STOU"] = ftp.storbinary("STOU there.txt", io.BytesIO(b"mine\\n"))
out["STOR"] = code("STOR there.txt")
out["RNFR"] = code("RNFR there.txt.1")
out["RNTO"] = code("RNTO there.txt")
out["RNFR2"] = code("RNFR there.txt.1")
out["RNTO2"] = code("RNTO fresh.txt")
`,
      { login: { user: "drop", password: PASSWORD } },
    );
    for (const cmd of ["MLST there.txt", "MDTM there.txt", "HASH there.txt", "SIZE there.txt"]) {
      assert.match(String(out[cmd]), /^550 /, `${cmd}: ${out[cmd]}`);
    }
    assert.match(String(out["STAT there.txt"]), /^550 /);
    assert.match(String(out.MLSD), /^550 /);
    assert.match(String(out.STOU), /^226 /);
    assert.match(String(out.STOR), /^553 /);
    assert.equal(await Deno.readTextFile(`${srv.root}/there.txt`), "x\n");
    assert.match(String(out.RNFR), /^350 /);
    assert.match(String(out.RNTO), /^553 /);
    assert.match(String(out.RNTO2), /^250 /);
    assert.equal(await Deno.readTextFile(`${srv.root}/there.txt`), "x\n");
    assert.equal(await Deno.readTextFile(`${srv.root}/fresh.txt`), "mine\n");
  } finally {
    await srv.close();
  }
});

Deno.test("drop box, atomic uploads: two senders racing for one new name: the first to finish keeps it", async () => {
  const srv = await startServer({
    tweak: (c) => {
      c.atomic_uploads = true;
      c.users.push({ ...c.users[0], name: "drop", permissions: ["write"] });
    },
  });
  try {
    // A starts first and is still sending when B's whole upload lands.
    const r = await run("python3", [
      "-c",
      `import ftplib, io, sys
def login():
    f = ftplib.FTP(); f.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
    f.login("drop", sys.argv[2]); f.voidcmd("TYPE I"); return f
a, b = login(), login()
conn = a.transfercmd("STOR race.txt")
conn.sendall(b"from A\\n")
print(b.storbinary("STOR race.txt", io.BytesIO(b"from B\\n")))
conn.close()
try:
    print(a.voidresp())
except ftplib.all_errors as e:
    print(e)
`,
      String(srv.port),
      PASSWORD,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const [bReply, aReply] = r.stdout.trim().split("\n");
    assert.match(bReply, /^226 /);
    assert.match(aReply, /^553 /, "the later sender does not replace the file");
    assert.equal(await Deno.readTextFile(`${srv.root}/race.txt`), "from B\n");
    const left = [...Deno.readDirSync(srv.root)].map((e) => e.name).filter((n) => n !== "race.txt");
    assert.deepEqual(left, [], "no temporary file is left behind");
  } finally {
    await srv.close();
  }
});

/** Settings that keep lftp from retrying for minutes or trying TLS. */
const LFTP_SETTINGS = "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10; " +
  "set net:reconnect-interval-base 1; set cmd:fail-exit yes";

Deno.test("lftp mirror -R keeps modification times (MFMT) and modes (SITE CHMOD)", async () => {
  const srv = await startServer();
  const work = await Deno.makeTempDir({ prefix: "pn-lftp-times-" });
  try {
    const src = `${work}/src`;
    await Deno.mkdir(`${src}/bin`, { recursive: true });
    const files: [string, number, string][] = [
      ["notes.txt", 0o640, "2019-05-06T07:08:09Z"],
      ["bin/run.sh", 0o755, "2021-12-31T23:59:58Z"],
      ["bin/data.bin", 0o600, "2005-01-02T03:04:05Z"],
    ];
    for (const [name, mode, time] of files) {
      await writeRandomFile(`${src}/${name}`, 5000 + name.length, name.length);
      await Deno.chmod(`${src}/${name}`, mode);
      await Deno.utime(`${src}/${name}`, new Date(time), new Date(time));
    }
    const open = `open -u ${USER},"${PASSWORD}" ftp://127.0.0.1:${srv.port}`;
    const r = await run("lftp", [
      "-d",
      "-c",
      `${LFTP_SETTINGS}; ${open}; mirror -R "${src}" /up`,
    ], { timeoutMs: 25_000 });
    assert.equal(r.code, 0, `lftp exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /---> MFMT /);
    assert.match(r.stderr, /---> SITE CHMOD /);
    for (const [name, mode, time] of files) {
      const info = await Deno.stat(`${srv.root}/up/${name}`);
      assert.equal(info.mtime?.toISOString(), new Date(time).toISOString(), name);
      assert.equal((info.mode! & 0o777).toString(8), mode.toString(8), name);
      assert.deepEqual(
        await Deno.readFile(`${srv.root}/up/${name}`),
        await Deno.readFile(`${src}/${name}`),
      );
    }
  } finally {
    await srv.close();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("rclone sync keeps modification times (MFMT); rclone lsl shows them", async () => {
  const srv = await startServer();
  const work = await Deno.makeTempDir({ prefix: "pn-rclone-" });
  try {
    const src = `${work}/src`;
    await Deno.mkdir(`${src}/deep`, { recursive: true });
    const files: [string, string][] = [
      ["a.txt", "2018-02-03T04:05:06Z"],
      ["deep/b.bin", "2022-07-08T09:10:11Z"],
    ];
    for (const [name, time] of files) {
      await writeRandomFile(`${src}/${name}`, 3000 + name.length, 7);
      await Deno.utime(`${src}/${name}`, new Date(time), new Date(time));
    }
    const obscured = await run("rclone", ["obscure", PASSWORD], { timeoutMs: 10_000 });
    assert.equal(obscured.code, 0, obscured.stderr);
    const remote = `:ftp,host=127.0.0.1,port=${srv.port},user=${USER},` +
      `pass=${obscured.stdout.trim()}:`;
    const env = ["--config", "/dev/null", "--retries", "1", "--low-level-retries", "1"];
    const sync = await run("rclone", ["sync", ...env, src, `${remote}up`], { timeoutMs: 40_000 });
    assert.equal(sync.code, 0, sync.stderr);
    for (const [name, time] of files) {
      const info = await Deno.stat(`${srv.root}/up/${name}`);
      assert.equal(info.mtime?.toISOString(), new Date(time).toISOString(), name);
    }
    // rclone lsl shows local time: run it in UTC.
    const lsl = await run("env", ["TZ=UTC", "rclone", "lsl", ...env, `${remote}up`], {
      timeoutMs: 20_000,
    });
    assert.equal(lsl.code, 0, lsl.stderr);
    // "     3005 2018-02-03 04:05:06.000000000 a.txt"
    for (const [name, time] of files) {
      const shown = time.replace("T", " ").replace("Z", "");
      const line = lsl.stdout.split("\n").find((l) => l.endsWith(` ${name}`)) ?? "";
      assert.ok(line.includes(shown), `rclone lsl: ${lsl.stdout}`);
    }
  } finally {
    await srv.close();
    await Deno.remove(work, { recursive: true });
  }
});
