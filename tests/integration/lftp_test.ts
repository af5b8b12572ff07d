/**
 * lftp against the in-process server: `mirror -R` uploads a directory tree
 * (nested directories, an empty directory, an empty file, a 5 MB file, a
 * UTF-8 name), `mirror` downloads it again, and the trees are compared byte
 * for byte.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  PASSWORD,
  run,
  sha256File,
  startServer,
  USER,
  writeRandomFile,
} from "../helpers/server.ts";

/** Settings that keep lftp from retrying for minutes or trying TLS. */
const SETTINGS = "set ftp:ssl-allow no; set net:max-retries 1; set net:timeout 10; " +
  "set net:reconnect-interval-base 1; set cmd:fail-exit yes";

/** Runs an lftp script against the server; fails with lftp's output when it fails. */
async function lftp(
  port: number,
  commands: string,
  options: { passive?: boolean; debug?: boolean } = {},
) {
  const mode = options.passive === false ? "set ftp:passive-mode no; " : "";
  const open = `open -u ${USER},"${PASSWORD}" ftp://127.0.0.1:${port}`;
  const args = ["-c", `${SETTINGS}; ${mode}${open}; ${commands}`];
  const r = await run("lftp", options.debug ? ["-d", ...args] : args, {
    timeoutMs: 25_000,
  });
  assert.equal(r.code, 0, `lftp exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Every entry below `root`: relative path to "dir" or the file's size and SHA-256. */
async function tree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(dir: string, rel: string, depth: number): Promise<void> {
    assert.ok(depth < 16, "tree too deep");
    for await (const e of Deno.readDir(dir)) {
      const path = join(dir, e.name);
      const relPath = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) {
        out.set(relPath, "dir");
        await walk(path, relPath, depth + 1);
      } else {
        const info = await Deno.stat(path);
        out.set(relPath, `${info.size} ${await sha256File(path)}`);
      }
    }
  }
  await walk(root, "", 0);
  return out;
}

/** Builds the test tree in `root`. */
async function makeTree(root: string): Promise<void> {
  await Deno.mkdir(`${root}/docs/deep/deeper`, { recursive: true });
  await Deno.mkdir(`${root}/empty dir`);
  await Deno.mkdir(`${root}/データ`);
  await Deno.writeTextFile(`${root}/readme.txt`, "top level\n");
  await Deno.writeTextFile(`${root}/docs/a.txt`, "a\r\nwith CRLF kept\r\n");
  await Deno.writeFile(`${root}/docs/empty.bin`, new Uint8Array(0));
  await writeRandomFile(`${root}/docs/deep/five.bin`, 5 * 1024 * 1024, 77);
  await writeRandomFile(`${root}/docs/deep/deeper/small.bin`, 1234, 78);
  await Deno.writeTextFile(`${root}/データ/名前.txt`, "ユニコード\n");
}

Deno.test("lftp mirror -R uploads a tree and mirror downloads it, byte for byte", async () => {
  const srv = await startServer();
  const work = await Deno.makeTempDir({ prefix: "pn-lftp-" });
  try {
    const src = `${work}/src`;
    const back = `${work}/back`;
    await Deno.mkdir(src);
    await makeTree(src);
    const want = await tree(src);
    assert.equal(want.size, 11);

    await lftp(srv.port, `mirror -R --no-perms "${src}" /up`);
    assert.deepEqual(await tree(`${srv.root}/up`), want);

    const ls = await lftp(srv.port, "cd /up; cls -1");
    assert.deepEqual(ls.stdout.trim().split("\n").sort(), [
      "docs/",
      "empty dir/",
      "readme.txt",
      "データ/",
    ]);

    await lftp(srv.port, `mirror --no-perms /up "${back}"`);
    assert.deepEqual(await tree(back), want);
  } finally {
    await srv.close();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("lftp in active mode: put, get with resume, rm, mkdir, rmdir", async () => {
  const srv = await startServer();
  const work = await Deno.makeTempDir({ prefix: "pn-lftp-" });
  try {
    await writeRandomFile(`${work}/f.bin`, 700_000, 5);
    const whole = await Deno.readFile(`${work}/f.bin`);
    await lftp(srv.port, `mkdir d; put -O d "${work}/f.bin"`, { passive: false });
    assert.deepEqual(await Deno.readFile(`${srv.root}/d/f.bin`), whole);

    await Deno.writeFile(`${work}/got.bin`, whole.subarray(0, 300_000));
    const r = await lftp(
      srv.port,
      `get -c d/f.bin -o "${work}/got.bin"`,
      { passive: false, debug: true },
    );
    assert.match(r.stderr, /---> REST 300000/);
    assert.match(r.stderr, /---> (PORT|EPRT) /);
    assert.deepEqual(await Deno.readFile(`${work}/got.bin`), whole);

    await lftp(srv.port, "rm d/f.bin; rmdir d", { passive: false });
    assert.deepEqual([...Deno.readDirSync(srv.root)], []);
  } finally {
    await srv.close();
    await Deno.remove(work, { recursive: true });
  }
});
