import assert from "node:assert/strict";
import { Jail, PathError, resolveVirtual } from "../../src/fs/jail.ts";

/** Asserts that `fn` throws a PathError with `code`. */
function assertPathError(fn: () => unknown, code: number): void {
  assert.throws(fn, (err: unknown) => err instanceof PathError && err.code === code);
}

/** Asserts that `promise` rejects with a PathError with `code`. */
async function assertRejectsPath(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => err instanceof PathError && err.code === code);
}

Deno.test("resolveVirtual: table", () => {
  const cases: [string, string, string][] = [
    ["/", "", "/"],
    ["/a/b", "", "/a/b"],
    ["/", "/", "/"],
    ["/", "a", "/a"],
    ["/", "./a", "/a"],
    ["/a", "b", "/a/b"],
    ["/a", "/b", "/b"],
    ["/a/b", "..", "/a"],
    ["/a/b", "../..", "/"],
    ["/a/b", "../../..", "/"],
    ["/", "..", "/"],
    ["/", "/../..", "/"],
    ["/x", "/../../etc/passwd", "/etc/passwd"],
    ["/", "a/../../b", "/b"],
    ["/c", "a/../../b", "/b"],
    ["/c/d", "a/../../b", "/c/b"],
    ["/", "//x//", "/x"],
    ["/", "//x//y///", "/x/y"],
    ["/a", ".", "/a"],
    ["/a", "./", "/a"],
    ["/a", "./././", "/a"],
    ["/a", "b/./c/.", "/a/b/c"],
    ["/a", "b/", "/a/b"],
    ["/a", "...", "/a/..."],
    ["/a", "..b", "/a/..b"],
    ["/a", "b..", "/a/b.."],
    ["/a", ".hidden", "/a/.hidden"],
    ["/", "a\\..\\b", "/a\\..\\b"],
    ["/", "..\\..\\etc", "/..\\..\\etc"],
    ["/", "C:\\x", "/C:\\x"],
    ["/", "with space", "/with space"],
    ["/", " lead/trail ", "/ lead/trail "],
    ["/", "ünïcödé/日本", "/ünïcödé/日本"],
    ["/a//b/", "c", "/a/b/c"],
    ["//a/./b/../", "c", "/a/c"],
    ["/a/b", "/", "/"],
    ["/a/b", "~", "/a/b/~"],
    ["/a/b", "*", "/a/b/*"],
    ["/a/b/c/d", "../../../../../../x/../y", "/y"],
    ["/", "a/b/c/../../d", "/a/d"],
    ["/", "-la", "/-la"],
  ];
  for (const [cwd, arg, want] of cases) {
    assert.equal(resolveVirtual(cwd, arg), want, `resolveVirtual(${cwd}, ${arg})`);
  }
});

Deno.test("resolveVirtual: syntax errors are 501", () => {
  assertPathError(() => resolveVirtual("/", "a\0b"), 501);
  assertPathError(() => resolveVirtual("/", "\0"), 501);
  assertPathError(() => resolveVirtual("/a\0", "b"), 501);
  assertPathError(() => resolveVirtual("/", "a\r\nDELE x"), 501);
  assertPathError(() => resolveVirtual("/", "a\nb"), 501);
  assertPathError(() => resolveVirtual("/", "a\rb"), 501);
  // Component limits: 255 bytes is fine, 256 is not; multibyte counts bytes.
  assert.equal(resolveVirtual("/", "a".repeat(255)), "/" + "a".repeat(255));
  assertPathError(() => resolveVirtual("/", "a".repeat(256)), 501);
  assert.equal(resolveVirtual("/", "é".repeat(127)).length, 128);
  assertPathError(() => resolveVirtual("/", "é".repeat(128)), 501);
  assertPathError(() => resolveVirtual("/", "😀".repeat(64)), 501);
  assert.equal(resolveVirtual("/", "😀".repeat(63)), "/" + "😀".repeat(63));
  // An oversize component is refused even if ".." would remove it.
  assertPathError(() => resolveVirtual("/", "a".repeat(300) + "/.."), 501);
  // Whole path limit: 4096 bytes.
  const seg = "b".repeat(200);
  const long = Array(21).fill(seg).join("/"); // 21*201 - 1 = 4220 bytes
  assertPathError(() => resolveVirtual("/", long), 501);
  assertPathError(() => resolveVirtual("/", "/" + "x/".repeat(2100)), 501);
  assertPathError(() => resolveVirtual("/", "é".repeat(2049)), 501);
  // A long cwd plus a relative argument that pushes it over the limit.
  const cwd = "/" + Array(20).fill(seg).join("/"); // 4020 bytes
  assert.equal(resolveVirtual(cwd, ""), cwd);
  assertPathError(() => resolveVirtual(cwd, "c".repeat(100)), 501);
  assert.equal(resolveVirtual(cwd, "/"), "/");
});

Deno.test("PathError carries code and message", () => {
  const err = new PathError(553, "nope");
  assert.ok(err instanceof Error);
  assert.equal(err.code, 553);
  assert.equal(err.message, "nope");
  assert.equal(err.name, "PathError");
});

/** Builds a home directory and an outside directory with symlinks between them. */
async function setup(): Promise<{ home: string; outside: string; jail: Jail }> {
  const home = await Deno.realPath(await Deno.makeTempDir({ prefix: "pitifulnat_jail_home_" }));
  const outside = await Deno.realPath(await Deno.makeTempDir({ prefix: "pitifulnat_jail_out_" }));
  await Deno.mkdir(`${home}/dir/sub`, { recursive: true });
  await Deno.writeTextFile(`${home}/dir/file.txt`, "hello");
  await Deno.writeTextFile(`${outside}/secret.txt`, "secret");
  await Deno.symlink(outside, `${home}/escape`); // dir link leading out
  await Deno.symlink(`${outside}/secret.txt`, `${home}/secret_link`); // file link leading out
  await Deno.symlink(`${outside}/not_yet`, `${home}/dangling_out`); // dangling, outside
  await Deno.symlink("dir/file.txt", `${home}/inside_link`); // relative, inside
  await Deno.symlink(`${home}/dir`, `${home}/dir_link`); // absolute, inside
  await Deno.symlink("../..", `${home}/dir/sub/up2`); // climbs to the root via ..
  await Deno.symlink("../../..", `${home}/dir/sub/up3`); // climbs out via ..
  await Deno.symlink("loop_b", `${home}/loop_a`);
  await Deno.symlink("loop_a", `${home}/loop_b`);
  const jail = new Jail(home);
  await jail.init();
  return { home, outside, jail };
}

/** Removes the temp directories of {@link setup}. */
async function teardown(ctx: { home: string; outside: string }): Promise<void> {
  await Deno.remove(ctx.home, { recursive: true });
  await Deno.remove(ctx.outside, { recursive: true });
}

Deno.test("Jail: plain paths inside the home", async () => {
  const ctx = await setup();
  const { home, jail } = ctx;
  try {
    assert.equal(jail.realRoot, home);
    assert.equal(await jail.resolve("/"), home);
    assert.equal(await jail.resolve("/dir"), `${home}/dir`);
    assert.equal(await jail.resolve("/dir/file.txt", { mustExist: true }), `${home}/dir/file.txt`);
    // Unnormalized input is normalized again, never trusted.
    assert.equal(await jail.resolve("/../dir//sub/.."), `${home}/dir`);
    assert.equal(await jail.resolve("dir"), `${home}/dir`);
    // Existing target with forCreate (overwrite) is fine.
    assert.equal(await jail.resolve("/dir/file.txt", { forCreate: true }), `${home}/dir/file.txt`);
    // New file in an existing directory.
    assert.equal(await jail.resolve("/dir/new.txt", { forCreate: true }), `${home}/dir/new.txt`);
    assert.equal(await jail.resolve("/new", { forCreate: true }), `${home}/new`);
  } finally {
    await teardown(ctx);
  }
});

Deno.test("Jail: missing targets and parents are 550", async () => {
  const ctx = await setup();
  const { jail } = ctx;
  try {
    await assertRejectsPath(jail.resolve("/nope"), 550);
    await assertRejectsPath(jail.resolve("/nope", { mustExist: true }), 550);
    await assertRejectsPath(jail.resolve("/nope", { mustExist: true, forCreate: true }), 550);
    await assertRejectsPath(jail.resolve("/nope/x", { forCreate: true }), 550);
    await assertRejectsPath(jail.resolve("/a/b/c", { forCreate: true }), 550);
    // Under a regular file.
    await assertRejectsPath(jail.resolve("/dir/file.txt/x", { mustExist: true }), 550);
    // Symlink loop.
    await assertRejectsPath(jail.resolve("/loop_a"), 550);
    await assertRejectsPath(jail.resolve("/loop_a/x", { forCreate: true }), 550);
    await assertRejectsPath(jail.resolve("/nul\0"), 501);
  } finally {
    await teardown(ctx);
  }
});

Deno.test("Jail: symlinks leading outside are 553", async () => {
  const ctx = await setup();
  const { jail } = ctx;
  try {
    await assertRejectsPath(jail.resolve("/escape"), 553);
    await assertRejectsPath(jail.resolve("/escape/secret.txt", { mustExist: true }), 553);
    await assertRejectsPath(jail.resolve("/secret_link"), 553);
    await assertRejectsPath(jail.resolve("/secret_link", { forCreate: true }), 553);
    await assertRejectsPath(jail.resolve("/dir/sub/up3"), 553);
    await assertRejectsPath(jail.resolve("/dir/sub/up3/etc", { forCreate: true }), 553);
    // Creating a new file inside a directory that links outside.
    await assertRejectsPath(jail.resolve("/escape/new.txt", { forCreate: true }), 553);
    // A dangling symlink named like the target: open(create) would follow it.
    await assertRejectsPath(jail.resolve("/dangling_out", { forCreate: true }), 553);
    await assertRejectsPath(jail.resolve("/dangling_out"), 550);
    // Nothing was created outside along the way.
    assert.deepEqual(
      [...Deno.readDirSync(ctx.outside)].map((e) => e.name),
      ["secret.txt"],
    );
  } finally {
    await teardown(ctx);
  }
});

Deno.test("Jail: symlinks inside the home are followed but the link is named", async () => {
  const ctx = await setup();
  const { home, jail } = ctx;
  try {
    // The result names the link itself, so DELE/RNFR act on the link.
    assert.equal(await jail.resolve("/inside_link", { mustExist: true }), `${home}/inside_link`);
    assert.equal(await Deno.readTextFile(await jail.resolve("/inside_link")), "hello");
    assert.equal(await jail.resolve("/dir_link"), `${home}/dir_link`);
    // Through a directory link the parent is canonical.
    assert.equal(await jail.resolve("/dir_link/file.txt"), `${home}/dir/file.txt`);
    assert.equal(await jail.resolve("/dir_link/new", { forCreate: true }), `${home}/dir/new`);
    assert.equal(await jail.resolve("/dir_link/sub"), `${home}/dir/sub`);
    // A link to the root itself is inside.
    assert.equal(await jail.resolve("/dir/sub/up2"), `${home}/dir/sub/up2`);
    assert.equal(await jail.resolve("/dir/sub/up2/dir/file.txt"), `${home}/dir/file.txt`);
  } finally {
    await teardown(ctx);
  }
});

Deno.test("Jail: toVirtual and init errors", async () => {
  const ctx = await setup();
  const { home, jail } = ctx;
  try {
    assert.equal(jail.toVirtual(home), "/");
    assert.equal(jail.toVirtual(`${home}/dir/file.txt`), "/dir/file.txt");
    assert.equal(jail.toVirtual(await jail.resolve("/dir/sub")), "/dir/sub");
    assertPathError(() => jail.toVirtual(ctx.outside), 553);
    assertPathError(() => jail.toVirtual(home + "x"), 553);
    assert.throws(() => new Jail("relative/dir"));
    await assert.rejects(new Jail(`${home}/missing`).init());
    await assert.rejects(new Jail(`${home}/dir/file.txt`).init());
    await assert.rejects(new Jail(home).resolve("/"));
  } finally {
    await teardown(ctx);
  }
});

Deno.test("Jail: a root given through a symlink works", async () => {
  const ctx = await setup();
  const { home, jail: _jail } = ctx;
  const alias = `${ctx.outside}/home_alias`;
  try {
    await Deno.symlink(home, alias);
    const jail = new Jail(alias);
    await jail.init();
    assert.equal(jail.realRoot, home);
    assert.equal(await jail.resolve("/dir"), `${home}/dir`);
    assert.equal(jail.toVirtual(`${alias}/dir`), "/dir");
    await assertRejectsPath(jail.resolve("/escape"), 553);
  } finally {
    await teardown(ctx);
  }
});
