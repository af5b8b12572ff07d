/**
 * The npm `basic-ftp` client (run by Deno's Node compatibility layer)
 * against the in-process server: login, upload, download, list, rename,
 * remove, ensureDir and removeDir.
 */
import assert from "node:assert/strict";
import { Readable, Writable } from "node:stream";
import { Client, FileType } from "basic-ftp";
import { PASSWORD, sha256File, startServer, USER, writeRandomFile } from "../helpers/server.ts";

async function login(client: Client, port: number): Promise<void> {
  const greeting = await client.access({
    host: "127.0.0.1",
    port,
    user: USER,
    password: PASSWORD,
    secure: false,
  });
  // access() answers with the server's greeting; PWD works only once logged in.
  assert.equal(greeting.code, 220);
  assert.equal(await client.pwd(), "/");
}

Deno.test({
  name: "basic-ftp: upload, download, list, rename, remove",
  fn: async () => {
    const srv = await startServer();
    const dir = await Deno.makeTempDir({ prefix: "pn-basic-ftp-" });
    const client = new Client(10_000);
    try {
      await login(client, srv.port);
      await writeRandomFile(`${dir}/up.bin`, 3_000_000, 21);
      const want = await sha256File(`${dir}/up.bin`);

      const up = await client.uploadFrom(`${dir}/up.bin`, "up.bin");
      assert.equal(up.code, 226);
      assert.equal(await sha256File(`${srv.root}/up.bin`), want);

      const text = await client.uploadFrom(Readable.from(["from a stream\n"]), "note.txt");
      assert.equal(text.code, 226);
      assert.equal(await Deno.readTextFile(`${srv.root}/note.txt`), "from a stream\n");

      const down = await client.downloadTo(`${dir}/down.bin`, "up.bin");
      assert.equal(down.code, 226);
      assert.equal(await sha256File(`${dir}/down.bin`), want);

      // A partial download resumed from an offset.
      const chunks: Uint8Array[] = [];
      const sink = new Writable({
        write(chunk, _enc, done) {
          chunks.push(chunk);
          done();
        },
      });
      await client.downloadTo(sink, "note.txt", 5);
      assert.equal(Buffer.concat(chunks).toString(), "a stream\n");

      const list = await client.list();
      const byName = new Map(list.map((f) => [f.name, f]));
      assert.deepEqual([...byName.keys()].sort(), ["note.txt", "up.bin"]);
      assert.equal(byName.get("up.bin")?.size, 3_000_000);
      assert.equal(byName.get("up.bin")?.type, FileType.File);
      assert.ok(byName.get("up.bin")?.modifiedAt instanceof Date);

      assert.equal(await client.size("up.bin"), 3_000_000);
      assert.equal((await client.rename("up.bin", "renamed.bin")).code, 250);
      await assert.rejects(Deno.stat(`${srv.root}/up.bin`), Deno.errors.NotFound);
      assert.equal(await sha256File(`${srv.root}/renamed.bin`), want);

      assert.equal((await client.remove("renamed.bin")).code, 250);
      await assert.rejects(client.remove("renamed.bin"), /550/);
      assert.deepEqual((await client.list()).map((f) => f.name), ["note.txt"]);
    } finally {
      client.close();
      await srv.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "basic-ftp: ensureDir creates nested directories, removeDir removes a tree",
  fn: async () => {
    const srv = await startServer();
    const client = new Client(10_000);
    try {
      await login(client, srv.port);
      await client.ensureDir("a/b c/d");
      assert.equal(await client.pwd(), "/a/b c/d");
      assert.ok((await Deno.stat(`${srv.root}/a/b c/d`)).isDirectory);
      await client.uploadFrom(Readable.from(["x"]), "x.txt");
      assert.equal(await Deno.readTextFile(`${srv.root}/a/b c/d/x.txt`), "x");
      // ensureDir of an existing path only changes into it.
      await client.cd("/");
      await client.ensureDir("a/b c");
      assert.equal(await client.pwd(), "/a/b c");
      const list = await client.list();
      assert.deepEqual(list.map((f) => [f.name, f.type]), [["d", FileType.Directory]]);

      await client.cd("/");
      await client.removeDir("a");
      assert.deepEqual([...Deno.readDirSync(srv.root)], []);
      await assert.rejects(client.cd("a"), /550/);
      assert.equal(await client.pwd(), "/");
    } finally {
      client.close();
      await srv.close();
    }
  },
});
