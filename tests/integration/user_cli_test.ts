/**
 * `pitifulnat user add|passwd|del|list` as an operator uses it: subprocesses
 * of main.ts editing a config file with comments, and a real server (curl
 * logging in) reading the result, at a restart or after SIGHUP.
 */
import assert from "node:assert/strict";
import { type Background, freePort, startServe } from "../helpers/program.ts";
import { run, type RunResult } from "../helpers/server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const deno = Deno.execPath();

/** Runs `pitifulnat args...`, with `stdin` (a password line) when given. */
function pn(args: string[], stdin?: string): Promise<RunResult> {
  return run(deno, ["run", "-A", MAIN, ...args], { stdin, timeoutMs: 30_000 });
}

/** A temporary config with comments, a user alice, and a home for bob. */
interface Setup {
  dir: string;
  config: string;
  port: number;
  bobHome: string;
}

/** The config's lines before `users:` (comments, flow mappings, a blank line). */
function header(port: number, passive: number): string[] {
  return [
    "# pitifulnat config for the user command's tests.",
    `listen: { address: 127.0.0.1, port: ${port} } # loopback only`,
    `passive: { min_port: ${passive}, max_port: ${passive} }`,
    "",
    "# No waiting after a wrong password: the tests try some.",
    "limits: { login_failure_delay_ms: 0, max_login_failures_per_address: 100 }",
    "",
  ];
}

/** Writes the setup: with alice in a commented `users:` list, or with no `users:` at all. */
async function makeSetup(options: { users: boolean }): Promise<Setup> {
  const dir = await Deno.makeTempDir({ prefix: "pn-user-" });
  const port = freePort();
  const bobHome = `${dir}/bob`;
  await Deno.mkdir(bobHome);
  await Deno.writeTextFile(`${bobHome}/notes.txt`, "bob's notes\n");
  await Deno.mkdir(`${dir}/alice`);
  const users = [
    "# Who may log in.",
    "users:",
    "  - name: alice # the first user",
    "    # a hash no password matches",
    `    password: "scrypt$4096$8$1$AAAAAAAAAAAAAAAAAAAAAA$${"B".repeat(43)}"`,
    "    home: alice",
    "    permissions: [read]",
    "",
    "# The end.",
  ];
  const lines = [...header(port, freePort()), ...(options.users ? users : ["# No users yet."])];
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(config, lines.join("\n") + "\n");
  return { dir, config, port, bobHome };
}

/** Runs `fn` on a fresh setup, removing it afterwards. */
async function withSetup(options: { users: boolean }, fn: (s: Setup) => Promise<void>) {
  const setup = await makeSetup(options);
  try {
    await fn(setup);
  } finally {
    await Deno.remove(setup.dir, { recursive: true });
  }
}

/** Runs `fn` with `serve` running on the setup's config, stopping it by its PID afterwards. */
async function withServer(setup: Setup, fn: (server: Background) => Promise<void>) {
  const server = await startServe(setup.config, { cwd: setup.dir, port: setup.port });
  try {
    await fn(server);
  } finally {
    const stopped = await server.stop();
    assert.equal(stopped.code, 0, stopped.stderr);
  }
}

/** curl's exit code and listing for a login as `user:password` listing "/". */
async function login(setup: Setup, user: string, password: string): Promise<RunResult> {
  return await run("curl", [
    "-sS",
    "--max-time",
    "10",
    "-u",
    `${user}:${password}`,
    `ftp://127.0.0.1:${setup.port}/`,
  ], { timeoutMs: 15_000 });
}

/** Waits (at most 10 s) until `user:password` can log in (`wanted` true) or cannot. */
async function waitForLogin(setup: Setup, user: string, password: string, wanted: boolean) {
  let last: RunResult | undefined;
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    last = await login(setup, user, password);
    if ((last.code === 0) === wanted) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`login ${user}:${password} ${wanted ? "fails" : "works"}: ${JSON.stringify(last)}`);
}

/**
 * Asserts that `after` is `before` with lines only added: every old line
 * still there, in order; returns the added lines.
 */
function addedLines(before: string, after: string): string[] {
  const old = before.split("\n");
  const added: string[] = [];
  let next = 0;
  for (const line of after.split("\n")) {
    if (next < old.length && line === old[next]) next++;
    else added.push(line);
  }
  assert.equal(next, old.length, `old lines missing or moved:\n${after}`);
  return added;
}

/** Asserts that `lines` are exactly bob's entry, with his home and permissions. */
function assertBobEntry(lines: string[], home: string, permissions: string): void {
  assert.equal(lines.length, 4, lines.join("\n"));
  assert.equal(lines[0], "  - name: bob");
  assert.match(lines[1], /^ {4}password: scrypt\$4096\$8\$1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
  assert.equal(lines[2], `    home: ${home}`);
  assert.equal(lines[3], `    permissions: [${permissions}]`);
}

/** The names of the files in `dir`, sorted (to see that no temporary file is left). */
async function fileNames(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

Deno.test("user add: only the new lines are added, comments kept; bob logs in with curl", async () => {
  await withSetup({ users: true }, async (setup) => {
    const before = await Deno.readTextFile(setup.config);
    const names = await fileNames(setup.dir);
    const r = await pn(
      ["user", "add", "bob", "--home", setup.bobHome, "--config", setup.config],
      "b0b pass\n",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /added user bob .*permissions read\) to /);
    assert.match(r.stdout, /reload a running server: systemctl reload pitifulnat, or kill -HUP/);
    const after = await Deno.readTextFile(setup.config);
    assertBobEntry(addedLines(before, after), setup.bobHome, "read");
    // Right after alice's entry, before the blank line and the closing comment.
    assert.ok(after.includes("    permissions: [read]\n  - name: bob\n"), after);
    assert.ok(after.endsWith("\n\n# The end.\n"), after);
    assert.doesNotMatch(after, /b0b pass/);
    assert.deepEqual(await fileNames(setup.dir), names, "no temporary file left");
    await withServer(setup, async () => {
      const listing = await login(setup, "bob", "b0b pass");
      assert.equal(listing.code, 0, listing.stderr);
      assert.match(listing.stdout, /notes\.txt/);
      const wrong = await login(setup, "bob", "not it");
      assert.equal(wrong.code, 67, "curl: login denied");
    });
  });
});

Deno.test("user add: a config without users gets the key, with only added lines", async () => {
  await withSetup({ users: false }, async (setup) => {
    const before = await Deno.readTextFile(setup.config);
    const r = await pn(
      [
        "user",
        "add",
        "bob",
        "--home",
        setup.bobHome,
        "--permissions",
        "read,write",
        "-c",
        setup.config,
      ],
      "b0b pass\n",
    );
    assert.equal(r.code, 0, r.stderr);
    const added = addedLines(before, await Deno.readTextFile(setup.config)).filter((l) => l !== "");
    assert.equal(added[0], "users:");
    assertBobEntry(added.slice(1), setup.bobHome, "read, write");
    const list = await pn(["user", "list", "--config", setup.config]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, new RegExp(`^bob +${setup.bobHome} +read,write$`, "m"));
  });
});

Deno.test("user passwd, list, del: a running server follows after user ... --reload PID", async () => {
  await withSetup({ users: true }, async (setup) => {
    const add = await pn(
      ["user", "add", "bob", "--home", setup.bobHome, "--config", setup.config],
      "first\n",
    );
    assert.equal(add.code, 0, add.stderr);
    await withServer(setup, async (server) => {
      await waitForLogin(setup, "bob", "first", true);
      const list = await pn(["user", "list", "--config", setup.config]);
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /^NAME +HOME +PERMISSIONS$/m);
      assert.match(list.stdout, new RegExp(`^alice +${setup.dir}/alice +read$`, "m"));
      assert.match(list.stdout, new RegExp(`^bob +${setup.bobHome} +read$`, "m"));
      assert.doesNotMatch(list.stdout, /scrypt/, "never a hash");

      const before = await Deno.readTextFile(setup.config);
      const passwd = await pn(
        ["user", "passwd", "bob", "--config", setup.config, "--reload", String(server.pid)],
        "second\n",
      );
      assert.equal(passwd.code, 0, passwd.stderr);
      assert.match(passwd.stdout, new RegExp(`sent SIGHUP to ${server.pid} \\(pitifulnat serve`));
      const after = await Deno.readTextFile(setup.config);
      const changed = after.split("\n").filter((l, i) => l !== before.split("\n")[i]);
      assert.equal(changed.length, 1, "only bob's password line changed");
      assert.match(changed[0], /^ {4}password: scrypt\$/);
      await waitForLogin(setup, "bob", "second", true);
      assert.equal((await login(setup, "bob", "first")).code, 67, "the old password fails");

      const del = await pn([
        "user",
        "del",
        "bob",
        "--config",
        setup.config,
        "--reload",
        String(server.pid),
      ]);
      assert.equal(del.code, 0, del.stderr);
      assert.match(del.stdout, /removed user bob from /);
      assert.equal(await Deno.readTextFile(setup.config), withoutBob(after));
      await waitForLogin(setup, "bob", "second", false);
      const gone = await pn(["user", "list", "--config", setup.config]);
      assert.doesNotMatch(gone.stdout, /^bob /m);
      assert.match(gone.stdout, /^alice /m);
    });
  });
});

/** The config text without bob's entry (the four lines after alice's). */
function withoutBob(text: string): string {
  return text.replace(/ {2}- name: bob\n(?: {4}.*\n){3}/, "");
}

Deno.test("user --reload: a process that is not this config's server gets no signal", async () => {
  await withSetup({ users: true }, async (setup) => {
    // Its command line has "serve --config FILE", but it is not pitifulnat.
    const lookalike = new Deno.Command("python3", {
      args: ["-c", "import time; time.sleep(30)", "serve", "--config", setup.config],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      await new Promise((r) => setTimeout(r, 200));
      const base = ["user", "add", "bob", "--home", setup.bobHome, "--config", setup.config];
      const r = await pn([...base, "--reload", String(lookalike.pid)], "pw\n");
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /was changed, but no signal was sent: process \d+ is not pitifulnat/);
      // The test runner itself: no "serve" on its command line.
      const self = await pn([
        "user",
        "del",
        "bob",
        "--config",
        setup.config,
        "--reload",
        String(Deno.pid),
      ]);
      assert.equal(self.code, 1, self.stderr);
      assert.match(self.stderr, /no signal was sent: process \d+ is not pitifulnat serve or proxy/);
      // A server of another config.
      const other = await makeSetup({ users: true });
      try {
        await withServer(other, async (server) => {
          const r2 = await pn(
            [...base, "--reload", String(server.pid)],
            "pw\n",
          );
          assert.equal(r2.code, 1, r2.stderr);
          assert.match(
            r2.stderr,
            new RegExp(`process ${server.pid} \\(pitifulnat serve\\) reads .*, not `),
          );
        });
      } finally {
        await Deno.remove(other.dir, { recursive: true });
      }
      const status = await Promise.race([
        lookalike.status.then(() => "exited"),
        new Promise((r) => setTimeout(() => r("running"), 100)),
      ]);
      assert.equal(status, "running", "the lookalike was not signalled");
    } finally {
      lookalike.kill("SIGKILL");
      await lookalike.status;
    }
  });
});

Deno.test("user errors: existing name, bad permission, unknown name and subcommand", async () => {
  await withSetup({ users: true }, async (setup) => {
    const original = await Deno.readTextFile(setup.config);
    const names = await fileNames(setup.dir);
    const add = ["user", "add", "alice", "--home", setup.bobHome, "--config", setup.config];
    const exists = await pn(add, "pw\n");
    assert.equal(exists.code, 1, exists.stderr);
    assert.match(exists.stderr, /user alice already exists; .*pitifulnat user passwd alice/);

    const bad = await pn(
      [
        "user",
        "add",
        "bob",
        "--home",
        setup.bobHome,
        "--permissions",
        "read,raed",
        "--config",
        setup.config,
      ],
      "pw\n",
    );
    assert.equal(bad.code, 1, bad.stderr);
    const file = setup.config.replace(/[.]/g, "\\.");
    assert.match(
      bad.stderr,
      new RegExp(
        `^${file}:\\d+:\\d+: users\\[1\\]\\.permissions\\[1\\]: expected one of read, write, ` +
          `delete, mkdir, rename; got "raed"$`,
        "m",
      ),
    );
    assert.match(bad.stderr, /not changed/);

    const passwd = await pn(["user", "passwd", "carol", "--config", setup.config], "pw\n");
    assert.equal(passwd.code, 1, passwd.stderr);
    assert.match(passwd.stderr, /pitifulnat user passwd: no user carol/);
    const del = await pn(["user", "del", "carol", "--config", setup.config]);
    assert.equal(del.code, 1, del.stderr);
    assert.match(del.stderr, /pitifulnat user del: no user carol/);
    assert.equal(await Deno.readTextFile(setup.config), original, "file unchanged");
    assert.deepEqual(await fileNames(setup.dir), names, "no temporary file left");

    const typo = await pn(["user", "ad", "bob", "--config", setup.config]);
    assert.equal(typo.code, 2, typo.stderr);
    assert.match(typo.stderr, /pitifulnat user: unknown subcommand ad \(did you mean add\?\)/);
    assert.match(typo.stderr, /\nUsage: pitifulnat user add NAME --home DIR/);
    const noHome = await pn(["user", "add", "bob", "--config", setup.config]);
    assert.equal(noHome.code, 2, noHome.stderr);
    assert.match(noHome.stderr, /pitifulnat user add: missing --home DIR/);
    const wrongOption = await pn(["user", "list", "--home", "x"]);
    assert.equal(wrongOption.code, 2, wrongOption.stderr);
    assert.match(wrongOption.stderr, /--home is not an option of user list \(only of add\)/);
    const none = await pn(["user"]);
    assert.equal(none.code, 2, none.stderr);
    assert.match(none.stderr, /pitifulnat user: missing subcommand \(add, passwd, del, list\)/);
    assert.equal(await Deno.readTextFile(setup.config), original, "file unchanged");
  });
});

Deno.test("user add, passwd, del keep the file's mode (640)", async () => {
  await withSetup({ users: true }, async (setup) => {
    await Deno.chmod(setup.config, 0o640);
    const mode = async () => (await Deno.stat(setup.config)).mode! & 0o7777;
    const base = ["--config", setup.config];
    const steps: [string[], string | undefined][] = [
      [["user", "add", "bob", "--home", setup.bobHome, ...base], "pw\n"],
      [["user", "passwd", "bob", ...base], "pw2\n"],
      [["user", "del", "bob", ...base], undefined],
    ];
    for (const [args, stdin] of steps) {
      const r = await pn(args, stdin);
      assert.equal(r.code, 0, r.stderr);
      assert.equal((await mode()).toString(8), "640", args.join(" "));
    }
  });
});
