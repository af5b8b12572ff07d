import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { ROOT, runtimeFlags, startBundleFlags } from "../../scripts/compile_all.ts";
import { serveOneDownload } from "../helpers/program.ts";
import { run } from "../helpers/server.ts";

/**
 * `deno run` of the bundle alone, with the compiled executable's permissions
 * and no deno.json, as if it were the only file on the machine.
 */
function runArgs(...args: string[]): string[] {
  return ["run", "--no-prompt", "--no-config", ...runtimeFlags(), "bundle.js", ...args];
}

/** Static imports of a bundle, minified or not: each starts a statement. */
function importsOf(text: string): string[] {
  return [...text.matchAll(/(?:^|[;\n}])\s*import\s*[^;"'()]*?from\s*"([^"]+)"/g)]
    .map((m) => m[1]);
}

// The plain bundle README's "Install on a NAS" describes, and the one `deno task start` runs.
for (
  const [what, flags] of [
    ["deno bundle", []],
    [`deno bundle ${startBundleFlags().join(" ")} (deno task start)`, startBundleFlags()],
  ] as const
) {
  Deno.test(`${what}: one file runs from an empty directory and serves a real download`, async () => {
    await bundleServesDownload([...flags]);
  });
}

async function bundleServesDownload(flags: string[]): Promise<void> {
  const work = await Deno.makeTempDir({ prefix: "pn-bundle-" });
  try {
    const built = `${work}/build/pitifulnat.js`;
    const bundled = await run(Deno.execPath(), ["bundle", ...flags, "--output", built, "main.ts"], {
      cwd: ROOT,
      timeoutMs: 120_000,
    });
    assert.equal(bundled.code, 0, bundled.stderr);
    const text = await Deno.readTextFile(built);
    // Every import left in the bundle is a runtime built-in: nothing is
    // loaded from the source tree or a package cache at run time.
    const imports = importsOf(text);
    assert.ok(imports.length > 0, "the bundle imports node: built-ins");
    assert.deepEqual(imports.filter((specifier) => !specifier.startsWith("node:")), []);
    assert.ok(!text.includes(ROOT), "the bundle names no path of the source tree");

    const empty = `${work}/empty`;
    await Deno.mkdir(empty);
    await Deno.copyFile(built, `${empty}/bundle.js`);

    const version = await run(Deno.execPath(), runArgs("--version"), { cwd: empty });
    assert.equal(version.code, 0, version.stderr);
    assert.match(
      version.stdout,
      new RegExp(`^pitifulnat ${denoJson.version.replaceAll(".", "\\.")} `),
    );

    const { setup, log } = await serveOneDownload(
      Deno.execPath(),
      (config) => runArgs("serve", "--config", config),
      empty,
    );
    assert.match(
      log,
      new RegExp(
        `transfer user=anonymous dir=out path=/${setup.fileName} ` +
          `bytes=${setup.content.length} seconds=\\S+ rate=\\S+ result=ok`,
      ),
    );
    assert.match(log, /SIGTERM: stopping/);
    assert.deepEqual([...Deno.readDirSync(empty)].map((entry) => entry.name), ["bundle.js"]);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
