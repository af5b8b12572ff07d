/**
 * Bad command lines as a user types them: subprocesses of main.ts. Each must
 * end in a usage error (exit 2, a message naming what is wrong, the
 * command's help) and never in a stack trace.
 */
import assert from "node:assert/strict";
import { run, type RunResult } from "../helpers/server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const deno = Deno.execPath();

/** Runs `pitifulnat args...` (stdin a password line, so nothing waits for a terminal). */
function pn(args: string[]): Promise<RunResult> {
  return run(deno, ["run", "-A", MAIN, ...args], { stdin: "correct horse\n", timeoutMs: 30_000 });
}

/** Asserts that stderr holds no stack trace or uncaught error. */
function assertNoStack(r: RunResult): void {
  assert.doesNotMatch(r.stderr, /^\s+at /m, r.stderr);
  assert.doesNotMatch(r.stderr, /TypeError|Uncaught/, r.stderr);
}

/**
 * Asserts a usage error: exit 2, `message` on stderr, then the help of
 * `command` (the general usage when it is undefined), nothing on stdout.
 */
function assertUsageError(r: RunResult, message: string | RegExp, command?: string): void {
  assert.equal(r.code, 2, r.stderr);
  assertNoStack(r);
  if (typeof message === "string") assert.ok(r.stderr.includes(message), r.stderr);
  else assert.match(r.stderr, message);
  if (command) {
    assert.match(r.stderr, new RegExp(`\nUsage: pitifulnat ${command} `), r.stderr);
    assert.doesNotMatch(r.stderr, /Commands:/, "the command's help, not the general usage");
  } else {
    assert.match(r.stderr, /Usage: pitifulnat <command>/, r.stderr);
  }
  assert.equal(r.stdout, "");
}

/** A config that `check` accepts, on a free port with a one-port passive range. */
async function withCheckConfig(fn: (file: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const file = `${dir}/config.yaml`;
    await Deno.writeTextFile(
      file,
      `listen: { address: 127.0.0.1, port: ${port} }\n` +
        `public_address: { address: 203.0.113.7 }\n` +
        `passive: { min_port: ${port}, max_port: ${port} }\n`,
    );
    await fn(file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("check --client: not an IP address is a usage error naming the value", async () => {
  await withCheckConfig(async (file) => {
    const bad = await pn(["check", "--config", file, "--client", "notanip"]);
    assertUsageError(
      bad,
      /pitifulnat check: --client notanip is not an IPv4 or IPv6 address/,
      "check",
    );
    // Without a config too: the argument is checked first.
    const noConfig = await pn(["check", "--client", "1.2.3"]);
    assertUsageError(noConfig, "--client 1.2.3 is not an IPv4 or IPv6 address", "check");
    for (const client of ["10.0.0.5", "::ffff:10.0.0.5", "2001:db8::1"]) {
      const good = await pn(["check", "--config", file, "--client", client]);
      assertNoStack(good);
      assert.ok(good.stdout.includes(`client ${client} is told: `), good.stdout + good.stderr);
    }
  });
});

Deno.test("serve --confg: unknown option, the closest one suggested, serve's help", async () => {
  const r = await pn(["serve", "--confg", "x"]);
  assertUsageError(
    r,
    "pitifulnat serve: unknown option --confg (did you mean --config?)\n",
    "serve",
  );
  const eq = await pn(["check", "--clinet=1.2.3.4"]);
  assertUsageError(
    eq,
    "pitifulnat check: unknown option --clinet (did you mean --client?)",
    "check",
  );
  const far = await pn(["serve", "--frobnicate"]);
  assertUsageError(far, "pitifulnat serve: unknown option --frobnicate\n", "serve");
  const none = await pn(["--confg", "x"]);
  assertUsageError(none, "pitifulnat: unknown option --confg (did you mean --config?)");
});

Deno.test("serve -x: unknown short option, serve's help", async () => {
  const r = await pn(["serve", "-x"]);
  assertUsageError(r, "pitifulnat serve: unknown option -x\n", "serve");
  const v = await pn(["serve", "-v"]);
  assertUsageError(v, "pitifulnat serve: unknown option -v (did you mean -V?)", "serve");
});

Deno.test("serve --client: an option of another command says whose it is", async () => {
  const r = await pn(["serve", "--client", "1.2.3.4"]);
  assertUsageError(
    r,
    "pitifulnat serve: --client is not an option of serve (only of check)",
    "serve",
  );
  const cost = await pn(["status", "--cost", "12"]);
  assertUsageError(cost, "pitifulnat status: --cost is not an option of status", "status");
});

Deno.test("serve --config with no value: the option needs a value", async () => {
  const end = await pn(["serve", "--config"]);
  assertUsageError(end, "pitifulnat serve: option --config needs a value", "serve");
  const short = await pn(["check", "-c"]);
  assertUsageError(short, "pitifulnat check: option -c needs a value", "check");
  const before = await pn(["check", "--config", "--client", "1.2.3.4"]);
  assertUsageError(before, "pitifulnat check: option --config needs a value", "check");
  const flag = await pn(["serve", "--help=yes"]);
  assertUsageError(flag, "pitifulnat serve: option --help takes no value", "serve");
});

Deno.test("help: the general usage, a command's help, an unknown command", async () => {
  const all = await pn(["help"]);
  assert.equal(all.code, 0, all.stderr);
  assert.match(all.stdout, /Usage: pitifulnat <command>/);
  assert.match(all.stdout, /\n {2}help \[COMMAND\] /);
  const serve = await pn(["help", "serve"]);
  assert.equal(serve.code, 0, serve.stderr);
  assert.match(serve.stdout, /^Usage: pitifulnat serve \[--config FILE\]/);
  const nosuch = await pn(["help", "nosuch"]);
  assertUsageError(nosuch, "pitifulnat help: unknown command nosuch\n");
  const two = await pn(["help", "serve", "check"]);
  assertUsageError(two, "pitifulnat help: unexpected argument check", "help");
});

Deno.test("an unknown command suggests the closest", async () => {
  const serv = await pn(["serv"]);
  assertUsageError(serv, "pitifulnat: unknown command serv (did you mean serve?)");
  const helpServ = await pn(["help", "serv"]);
  assertUsageError(helpServ, "pitifulnat help: unknown command serv (did you mean serve?)");
  const far = await pn(["frobnicate", "--help"]);
  assertUsageError(far, "pitifulnat: unknown command frobnicate\n");
});

Deno.test("hash-password --cost: a bad value is a usage error before any password is read", async () => {
  for (const cost of ["abc", "99", "9", "12.5", "0x0c", "1e1", ""]) {
    const r = await pn(["hash-password", `--cost=${cost}`]);
    if (cost === "") {
      assertUsageError(r, "pitifulnat hash-password: option --cost needs a value", "hash-password");
      continue;
    }
    assert.equal(r.code, 2, `--cost ${cost}: ${r.stdout}${r.stderr}`);
    assertNoStack(r);
    assert.ok(
      r.stderr.includes(`pitifulnat hash-password: --cost must be an integer from 10 to 20`),
      r.stderr,
    );
    assert.equal(r.stdout, "", "no hash printed");
  }
  const ok = await pn(["hash-password", "--cost", "10"]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^scrypt\$1024\$/);
});

Deno.test("status --url: not an http(s) URL is a usage error", async () => {
  for (const url of ["notaurl", "ftp://127.0.0.1/status"]) {
    const r = await pn(["status", "--url", url]);
    assertUsageError(
      r,
      `pitifulnat status: --url ${url} is not an http:// or https:// URL`,
      "status",
    );
  }
});

Deno.test("a stray argument is a usage error with the command's help", async () => {
  const r = await pn(["serve", "extra"]);
  assertUsageError(r, "pitifulnat serve: unexpected argument extra", "serve");
});
