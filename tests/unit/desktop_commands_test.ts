/**
 * The parsers and fact formatting behind MFMT, SITE CHMOD and the unix.*
 * MLST facts.
 */
import assert from "node:assert/strict";
import { parseTimeVal } from "../../src/serve/files.ts";
import { parseMode } from "../../src/serve/site.ts";
import { formatFacts, MLST_FACTS } from "../../src/fs/listing.ts";

Deno.test("parseTimeVal: valid UTC times, with up to three decimals", () => {
  assert.equal(parseTimeVal("20200102030405")?.toISOString(), "2020-01-02T03:04:05.000Z");
  assert.equal(parseTimeVal("20240229235959.5")?.toISOString(), "2024-02-29T23:59:59.500Z");
  assert.equal(parseTimeVal("19700101000000.123")?.toISOString(), "1970-01-01T00:00:00.123Z");
});

Deno.test("parseTimeVal: out-of-range fields and bad syntax are null", () => {
  for (
    const bad of [
      "",
      "2020010203040",
      "202001020304056",
      "20201301000000",
      "20200001000000",
      "20230229000000",
      "20200132000000",
      "20200101240000",
      "20200101006000",
      "20200101000060",
      "20200101000000.",
      "20200101000000.1234",
      "2020-01-01T00:00",
      "0050010100000",
      "00500101000000",
      " 20200101000000",
    ]
  ) {
    assert.equal(parseTimeVal(bad), null, bad);
  }
});

Deno.test("parseMode: permission bits only", () => {
  assert.equal(parseMode("644"), 0o644);
  assert.equal(parseMode("0755"), 0o755);
  assert.equal(parseMode("0"), 0);
  assert.equal(parseMode("777"), 0o777);
  for (
    const bad of ["4755", "2755", "1777", "7777", "8", "789", "", "-644", "+x", "u+x", "00644"]
  ) {
    assert.equal(parseMode(bad), null, bad);
  }
});

Deno.test("formatFacts: unix.mode, unix.owner and unix.group where known, only when asked", () => {
  const info = {
    isFile: true,
    isDirectory: false,
    isSymlink: false,
    size: 5,
    mtime: null,
    atime: null,
    birthtime: null,
    ctime: null,
    dev: 0,
    ino: null,
    mode: 0o104755,
    nlink: null,
    uid: 1000,
    gid: 100,
    rdev: null,
    blksize: null,
    blocks: null,
    isBlockDevice: null,
    isCharDevice: null,
    isFifo: null,
    isSocket: null,
  };
  const entry = { name: "f", info };
  assert.equal(formatFacts(entry, { perm: "r" }), "type=file;size=5;perm=r; f");
  assert.equal(
    formatFacts(entry, { perm: "r", unix: true }),
    "type=file;size=5;perm=r;unix.mode=4755;unix.owner=1000;unix.group=100; f",
  );
  const windows = { name: "w", info: { ...info, mode: null, uid: null, gid: null } };
  assert.equal(formatFacts(windows, { perm: "r", unix: true }), "type=file;size=5;perm=r; w");
  assert.deepEqual(MLST_FACTS.slice(5), ["unix.mode", "unix.owner", "unix.group"]);
});
