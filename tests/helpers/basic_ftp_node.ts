/**
 * The npm `basic-ftp` client for tests that run it under Node.js: under
 * Deno's own node:tls the client never sees the end of a TLS download of
 * more than a few KB (the same client and server pass under Node.js), a
 * client-side matter. `node` loads the package Deno installed.
 * @module
 */
// Makes `deno test` fetch the package before `node` looks for it on disk.
import "basic-ftp";

/** The directory of the `basic-ftp` package: `node_modules/` if there is one, else Deno's npm cache. */
export async function basicFtpDir(): Promise<string> {
  const local = new URL("../../node_modules/basic-ftp", import.meta.url).pathname;
  try {
    if ((await Deno.stat(`${local}/package.json`)).isFile) return local;
  } catch {
    // No node_modules: Deno's global cache.
  }
  const out = await new Deno.Command(Deno.execPath(), { args: ["info", "--json"] }).output();
  const cache = JSON.parse(new TextDecoder().decode(out.stdout)).npmCache as string;
  const dir = `${cache}/registry.npmjs.org/basic-ftp`;
  const versions = [...Deno.readDirSync(dir)].filter((e) => e.isDirectory).map((e) => e.name)
    .sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  if (versions.length === 0) throw new Error(`basic-ftp is not in Deno's npm cache (${dir})`);
  return `${dir}/${versions.at(-1)}`;
}
