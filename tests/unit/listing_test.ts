import assert from "node:assert/strict";
import {
  formatFacts,
  formatListLine,
  type ListEntry,
  parseListArgs,
  permFacts,
  readEntries,
} from "../../src/fs/listing.ts";

/** A FileInfo with everything null/false except what is given. */
function info(fields: Partial<Deno.FileInfo>): Deno.FileInfo {
  return {
    isFile: false,
    isDirectory: false,
    isSymlink: false,
    size: 0,
    mtime: null,
    atime: null,
    birthtime: null,
    ctime: null,
    dev: 0,
    ino: null,
    mode: null,
    nlink: null,
    uid: null,
    gid: null,
    rdev: null,
    blksize: null,
    blocks: null,
    isBlockDevice: null,
    isCharDevice: null,
    isFifo: null,
    isSocket: null,
    ...fields,
  };
}

const NOW = new Date("2026-11-26T12:00:00Z");

const dirEntry: ListEntry = {
  name: "name",
  info: info({
    isDirectory: true,
    size: 4096,
    mode: 0o40755,
    mtime: new Date("2026-11-26T09:59:30Z"),
    dev: 0x803,
    ino: 0x1a2b,
  }),
};

const fileEntry: ListEntry = {
  name: "my file.txt",
  info: info({
    isFile: true,
    size: 123,
    mode: 0o100644,
    mtime: new Date("2019-03-05T08:07:06Z"),
    dev: 2051,
    ino: 42,
  }),
};

Deno.test("formatListLine: recent directory", () => {
  assert.equal(
    formatListLine(dirEntry, { now: NOW }),
    "drwxr-xr-x 1 ftp ftp         4096 Nov 26 09:59 name",
  );
});

Deno.test("formatListLine: old file, day padded, name with spaces", () => {
  assert.equal(
    formatListLine(fileEntry, { now: NOW }),
    "-rw-r--r-- 1 ftp ftp          123 Mar  5  2019 my file.txt",
  );
});

Deno.test("formatListLine: six-month and future boundaries", () => {
  const at = (iso: string) => ({
    name: "f",
    info: info({ isFile: true, mode: 0o644, mtime: new Date(iso) }),
  });
  // Five months ago: recent.
  assert.ok(formatListLine(at("2026-06-27T01:02:00Z"), { now: NOW }).endsWith(" Jun 27 01:02 f"));
  // Seven months ago: old.
  assert.ok(formatListLine(at("2026-04-20T01:02:00Z"), { now: NOW }).endsWith(" Apr 20  2026 f"));
  // 30 minutes ahead: still shown with time.
  assert.ok(formatListLine(at("2026-11-26T12:30:00Z"), { now: NOW }).endsWith(" Nov 26 12:30 f"));
  // Two hours ahead: year form.
  assert.ok(formatListLine(at("2026-11-26T14:00:00Z"), { now: NOW }).endsWith(" Nov 26  2026 f"));
  // Unknown mtime: the epoch.
  const unknown = { name: "f", info: info({ isFile: true, mode: 0o644 }) };
  assert.ok(formatListLine(unknown, { now: NOW }).endsWith(" Jan  1  1970 f"));
});

Deno.test("formatListLine: mode strings", () => {
  const mode = (fields: Partial<Deno.FileInfo>) =>
    formatListLine({ name: "x", info: info(fields) }, { now: NOW }).split(" ")[0];
  assert.equal(mode({ isFile: true, mode: 0o100600 }), "-rw-------");
  assert.equal(mode({ isFile: true, mode: 0o100777 }), "-rwxrwxrwx");
  assert.equal(mode({ isFile: true, mode: 0o104755 }), "-rwsr-xr-x");
  assert.equal(mode({ isFile: true, mode: 0o102644 }), "-rw-r-Sr--");
  assert.equal(mode({ isDirectory: true, mode: 0o41777 }), "drwxrwxrwt");
  assert.equal(mode({ isDirectory: true, mode: 0o41776 }), "drwxrwxrwT");
  assert.equal(mode({ isDirectory: true, mode: 0o40000 }), "d---------");
  assert.equal(mode({ isSymlink: true, mode: 0o120777 }), "lrwxrwxrwx");
  assert.equal(mode({ isFifo: true, mode: 0o10644 }), "prw-r--r--");
  assert.equal(mode({ isCharDevice: true, mode: 0o20666 }), "crw-rw-rw-");
  assert.equal(mode({ isBlockDevice: true, mode: 0o60660 }), "brw-rw----");
  assert.equal(mode({ isSocket: true, mode: 0o140755 }), "srwxr-xr-x");
  // No mode (Windows): defaults.
  assert.equal(mode({ isDirectory: true }), "drwxr-xr-x");
  assert.equal(mode({ isFile: true }), "-rw-r--r--");
});

Deno.test("formatListLine: big sizes stay one column", () => {
  const big = { name: "big", info: info({ isFile: true, mode: 0o644, size: 5_000_000_000_000 }) };
  const fields = formatListLine(big, { now: NOW }).split(/ +/);
  assert.equal(fields[4], "5000000000000");
  assert.equal(fields.length, 9);
});

Deno.test("formatFacts: file and directories", () => {
  assert.equal(
    formatFacts(fileEntry, { perm: "adfrw" }),
    "type=file;size=123;modify=20190305080706;perm=adfrw;unique=803U2a; my file.txt",
  );
  assert.equal(
    formatFacts(dirEntry, { perm: "el" }),
    "type=dir;modify=20261126095930;perm=el;unique=803U1a2b; name",
  );
  assert.equal(
    formatFacts({ ...dirEntry, name: "." }, { type: "cdir", perm: "cdeflmp" }),
    "type=cdir;modify=20261126095930;perm=cdeflmp;unique=803U1a2b; .",
  );
  assert.equal(
    formatFacts({ ...dirEntry, name: ".." }, { type: "pdir", perm: "el" }),
    "type=pdir;modify=20261126095930;perm=el;unique=803U1a2b; ..",
  );
  // No inode, no mtime: those facts are left out. Perm cannot inject facts.
  const bare = { name: "b", info: info({ isFile: true, size: 7 }) };
  assert.equal(formatFacts(bare, { perm: "r;x=1" }), "type=file;size=7;perm=rx; b");
  // Special files.
  const fifo = { name: "p", info: info({ isFifo: true, dev: 1, ino: 2 }) };
  assert.equal(formatFacts(fifo, { perm: "" }), "type=OS.unix=fifo;size=0;perm=;unique=1U2; p");
});

Deno.test("permFacts", () => {
  const all = { read: true, write: true, delete: true, mkdir: true, rename: true };
  const none = { read: false, write: false, delete: false, mkdir: false, rename: false };
  assert.equal(permFacts(false, all), "adfrw");
  assert.equal(permFacts(true, all), "cdeflmp");
  assert.equal(permFacts(false, none), "");
  assert.equal(permFacts(true, none), "");
  assert.equal(permFacts(false, { ...none, read: true }), "r");
  assert.equal(permFacts(true, { ...none, read: true }), "el");
  assert.equal(permFacts(false, { ...none, write: true }), "aw");
  assert.equal(permFacts(true, { ...none, write: true }), "c");
  assert.equal(permFacts(true, { ...none, mkdir: true }), "m");
  assert.equal(permFacts(true, { ...none, delete: true }), "dp");
  assert.equal(permFacts(false, { ...none, delete: true }), "d");
  assert.equal(permFacts(true, { ...none, rename: true }), "f");
  assert.equal(permFacts(false, { ...none, read: true, rename: true }), "fr");
});

Deno.test("parseListArgs", () => {
  const cases: [string, string, string][] = [
    ["", "", ""],
    ["-la", "la", ""],
    ["-l", "l", ""],
    ["-a /dir", "a", "/dir"],
    ["-la /dir with spaces", "la", "/dir with spaces"],
    ["-l -a sub", "la", "sub"],
    ["-la  /dir", "la", "/dir"],
    ["-R", "R", ""],
    ["/dir", "", "/dir"],
    ["dir with -la inside", "", "dir with -la inside"],
    ["-", "", "-"],
    ["- x", "", "- x"],
    ["--", "", "--"],
    ["-la -", "la", "-"],
    ["-l1", "", "-l1"],
    ["-la/x", "", "-la/x"],
    ["-a -file-name", "a", "-file-name"],
    ["-a -la", "ala", ""],
    [" dir", "", " dir"],
  ];
  for (const [arg, options, path] of cases) {
    assert.deepEqual(parseListArgs(arg), { options, path }, `parseListArgs(${arg})`);
  }
});

Deno.test("readEntries: sorted, symlinks followed, dangling and odd names skipped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "pitifulnat_listing_" });
  try {
    await Deno.writeTextFile(`${dir}/b.txt`, "12345");
    await Deno.writeTextFile(`${dir}/A.txt`, "1");
    await Deno.mkdir(`${dir}/c_dir`);
    await Deno.symlink("b.txt", `${dir}/link_to_b`);
    await Deno.symlink("c_dir", `${dir}/link_to_dir`);
    await Deno.symlink("missing", `${dir}/dangling`);
    await Deno.writeTextFile(`${dir}/bad\nname`, "x");
    const entries = await readEntries(dir);
    assert.deepEqual(entries.map((e) => e.name), [
      "A.txt",
      "b.txt",
      "c_dir",
      "link_to_b",
      "link_to_dir",
    ]);
    const byName = new Map(entries.map((e) => [e.name, e.info]));
    assert.equal(byName.get("b.txt")?.size, 5);
    assert.equal(byName.get("link_to_b")?.isFile, true);
    assert.equal(byName.get("link_to_b")?.size, 5);
    assert.equal(byName.get("link_to_dir")?.isDirectory, true);
    assert.equal(byName.get("c_dir")?.isDirectory, true);
    // The trailing slash form works as well; empty directories give [].
    assert.equal((await readEntries(dir + "/")).length, 5);
    assert.deepEqual(await readEntries(`${dir}/c_dir`), []);
    await assert.rejects(readEntries(`${dir}/nope`), Deno.errors.NotFound);
    const line = formatListLine(entries[1], { now: new Date() });
    assert.match(line, /^-rw.* 1 ftp ftp +5 \w{3} [ \d]\d \d\d:\d\d b\.txt$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
