/**
 * The embedded default: serve a small demo directory read-only to
 * anonymous users on 127.0.0.1:2121, so `pitifulnat serve` works with no
 * config and exposes nothing to the network.
 * @module
 */

/** Files of the demo directory, written to a temporary folder at start. */
export const DEMO_FILES: Readonly<Record<string, string>> = {
  "README.txt": `Welcome to pitifulnat.

This is the demo directory of the embedded default config: anonymous,
read-only, on 127.0.0.1:2121. Write your own config (see
config.example.yaml) and run: pitifulnat serve --config FILE
`,
  "docs/behind-a-router.txt": `pitifulnat announces your public address (from a dynamic-DNS name)
to clients on the internet and your LAN address to clients at home.
`,
  "hello.txt": "Hello from pitifulnat!\n",
};

/** The default config text; `HOME` is replaced by the demo directory. */
export const DEFAULT_CONFIG_YAML = `
listen:
  address: 127.0.0.1
  port: 2121
anonymous:
  enabled: true
  home: HOME
  permissions: [read]
`;

/** Writes the demo directory into a new temporary folder. */
export async function makeDemoDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "pitifulnat-demo-" });
  for (const [name, text] of Object.entries(DEMO_FILES)) {
    const path = `${dir}/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, text);
  }
  return dir;
}
