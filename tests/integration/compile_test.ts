import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { compileArgs, findRuntime, hostTriple, ROOT, TARGETS } from "../../scripts/compile_all.ts";
import { serveOneDownload } from "../helpers/program.ts";
import { run } from "../helpers/server.ts";

// `deno compile` needs a runtime (denort): $DENORT_BIN or one cached by an
// earlier download. Without one the test is registered as ignored, by name.
const host = TARGETS.find((target) => target.triple === hostTriple());
const runtime = host ? (await findRuntime(host)).runtime : null;

if (!runtime) {
  Deno.test({
    name: "deno compile: skipped: no denort runtime (set DENORT_BIN)",
    ignore: true,
    fn() {},
  });
} else {
  Deno.test(`deno compile (runtime ${runtime.path}): the executable serves a real download`, async () => {
    const work = await Deno.makeTempDir({ prefix: "pn-compile-" });
    try {
      const empty = `${work}/empty`;
      await Deno.mkdir(empty);
      const exe = `${empty}/pitifulnat`;
      // The compile task's own permission flags (compileArgs reads them).
      const compiled = await run(Deno.execPath(), compileArgs(exe), {
        cwd: ROOT,
        timeoutMs: 300_000,
      });
      assert.equal(compiled.code, 0, compiled.stderr);

      // A file built on the deno CLI instead of a runtime prints deno's version.
      const version = await run(exe, ["--version"], { cwd: empty });
      assert.equal(version.code, 0, version.stderr);
      assert.match(
        version.stdout,
        new RegExp(`^pitifulnat ${denoJson.version.replaceAll(".", "\\.")} `),
      );

      const { setup, log } = await serveOneDownload(
        exe,
        (config) => ["serve", "--config", config],
        empty,
      );
      assert.match(log, new RegExp(`transfer user=anonymous dir=out path=/${setup.fileName} `));
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  });
}
