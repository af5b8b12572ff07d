/**
 * contrib/ for real: the crontab lines run as written (only the program,
 * config and directory paths swapped for test ones) by a fresh system user
 * without a home, as the README's guide makes it; and the fail2ban filter
 * run by fail2ban-regex on the log of a real server after real failed logins.
 *
 * Every process is tracked by PID: the ones this file starts, and the ones
 * that run as the test user (unique to one test run). All traffic is on
 * loopback.
 * @module
 */
import assert from "node:assert/strict";
import { ROOT, runtimeFlags } from "../../scripts/compile_all.ts";
import { findProgram, isCi, Proc } from "../e2e/lab.ts";
import { freePort, makeServeSetup, startInBackground } from "../helpers/program.ts";
import { run, type RunResult } from "../helpers/server.ts";

const CONTRIB = `${ROOT}contrib`;
const EXE = "/usr/local/bin/pitifulnat";
const CONFIG = "/etc/pitifulnat/config.yaml";
/** The user name the contrib files use. */
const SERVICE_USER = "pitifulnat";
/** cron's environment before the crontab's own `NAME=value` lines (Vixie cron, cronie). */
const CRON_PATH = "/usr/bin:/bin";

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `test` every 100 ms for at most `timeoutMs`; true as soon as it holds. */
async function waitUntil(test: () => boolean | Promise<boolean>, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await test()) return true;
    await sleep(100);
  }
  return await test();
}

/** True when something accepts TCP connections on host:port. */
async function listening(port: number, hostname = "127.0.0.1"): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

function show(r: RunResult): string {
  return `exit ${r.code}\n${r.stdout}${r.stderr}`;
}

// --- crontab lines -------------------------------------------------------

/** A crontab: `NAME=value` lines and the entries' commands (with the user for /etc/cron.d). */
interface Crontab {
  env: Record<string, string>;
  entries: { fields: string; user: string | null; command: string }[];
}

/** Reads a crontab file; `userField` for the /etc/cron.d format. */
async function readCrontab(path: string, userField: boolean): Promise<Crontab> {
  const env: Record<string, string> = {};
  const entries: Crontab["entries"] = [];
  for (const raw of (await Deno.readTextFile(path)).split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const assignment = /^([A-Za-z_]\w*)\s*=\s*(.*)$/.exec(line);
    if (assignment) {
      env[assignment[1]] = assignment[2];
      continue;
    }
    const m = userField
      ? /^(\S+ \S+ \S+ \S+ \S+)\s+(\S+)\s+(.+)$/.exec(line)
      : /^(\S+ \S+ \S+ \S+ \S+)\s+()(.+)$/.exec(line);
    assert.ok(m, `${path}: ${line}`);
    entries.push({ fields: m[1], user: userField ? m[2] : null, command: m[3] });
  }
  return { env, entries };
}

/** The one entry whose command includes `text`. */
function entryWith(crontab: Crontab, text: string): Crontab["entries"][number] {
  const found = crontab.entries.filter((e) => e.command.includes(text));
  assert.equal(found.length, 1, `one entry with ${text}: ${JSON.stringify(crontab.entries)}`);
  return found[0];
}

/**
 * Replaces every occurrence of each key by its value, and checks that the
 * result names none of the real install's paths or its user: the test must
 * never touch them.
 */
function substitute(command: string, swaps: [string, string][]): string {
  let out = command;
  for (const [from, to] of swaps) out = out.replaceAll(from, to);
  for (const real of [EXE, "/etc/pitifulnat/", "/var/lib/pitifulnat", `-u ${SERVICE_USER} `]) {
    assert.ok(!out.includes(real), `${real} left in: ${out}`);
  }
  return out;
}

/** `env -i` and the arguments that set exactly `env` for the command after them. */
function envArgs(env: Record<string, string>): string[] {
  return ["/usr/bin/env", "-i", ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
}

/** Runs `command` with /bin/sh -c in exactly `env`, as root (cron.d's root lines). */
function runShAsRoot(command: string, env: Record<string, string>, cwd: string) {
  const [cmd, ...args] = envArgs(env);
  return run(cmd, [...args, "/bin/sh", "-c", command], { cwd, timeoutMs: 60_000 });
}

// --- processes of the test user --------------------------------------------

/** The real uid of a running process; null when it is gone or a zombie. */
function uidOf(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    if (/^State:\s+Z/m.test(status)) return null;
    return Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  return uidOf(pid) !== null;
}

/** PIDs of the running processes whose real uid is `uid` (from /proc). */
function pidsOfUid(uid: number): number[] {
  return [...Deno.readDirSync("/proc")]
    .filter((entry) => /^\d+$/.test(entry.name))
    .map((entry) => Number(entry.name))
    .filter((pid) => uidOf(pid) === uid);
}

/** Stops every process of `uid` by PID: SIGTERM, then SIGKILL after 5 s (bounded rounds). */
async function stopProcessesOf(uid: number): Promise<void> {
  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    for (const pid of pidsOfUid(uid)) {
      try {
        Deno.kill(pid, signal);
      } catch {
        // Exited meanwhile.
      }
    }
    if (await waitUntil(() => pidsOfUid(uid).length === 0, 5_000)) return;
  }
}

/** A fresh system user without a home, as the README's guide makes `pitifulnat`. */
interface TestUser {
  name: string;
  uid: number;
  gid: number;
  /** The home in /etc/passwd, which does not exist. */
  home: string;
}

async function createUser(tools: Tools): Promise<TestUser> {
  const name = `pnt${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
  const made = await run(tools.useradd, [
    "--system",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    name,
  ]);
  assert.equal(made.code, 0, show(made));
  const passwd = (await Deno.readTextFile("/etc/passwd")).split("\n")
    .find((line) => line.startsWith(`${name}:`))?.split(":");
  assert.ok(passwd, `${name} in /etc/passwd`);
  return { name, uid: Number(passwd[2]), gid: Number(passwd[3]), home: passwd[5] };
}

async function removeUser(tools: Tools, user: TestUser): Promise<void> {
  await stopProcessesOf(user.uid);
  const removed = await run(tools.userdel, [user.name]);
  assert.equal(removed.code, 0, show(removed));
  const group = await run("getent", ["group", user.name]);
  if (group.code === 0) await run(tools.groupdel, [user.name]);
}

// --- the program as the test user runs it ----------------------------------

/**
 * A stand-in for /usr/local/bin/pitifulnat that the test user can run: a
 * shell script that records each start (`pid uid arguments`) and execs the
 * real program, bundled into one file, with the compiled executable's
 * permissions. Also stubs for `logger` and `systemctl` that record how they
 * were called.
 */
interface Kit {
  work: string;
  exe: string;
  /** Put first in PATH: logger and systemctl stubs. */
  stubs: string;
  /** The records the wrapper and the stubs write. */
  records: string;
}

async function makeKit(user: TestUser, tools: Tools): Promise<Kit> {
  const work = await Deno.makeTempDir({ prefix: "pn-ops-" });
  await Deno.chmod(work, 0o755);
  const bundle = `${work}/pitifulnat.js`;
  const bundled = await run(Deno.execPath(), ["bundle", "--quiet", "--output", bundle, "main.ts"], {
    cwd: ROOT,
    timeoutMs: 120_000,
  });
  assert.equal(bundled.code, 0, show(bundled));
  await Deno.chmod(bundle, 0o644);
  // Deno itself, where the user can run it (a copy when it lives under /root).
  let deno = Deno.execPath();
  const reachable = await run(tools.runuser, ["-u", user.name, "--", "test", "-x", deno]);
  if (reachable.code !== 0) {
    await Deno.copyFile(deno, `${work}/deno`);
    await Deno.chmod(`${work}/deno`, 0o755);
    deno = `${work}/deno`;
  }
  const records = `${work}/records`;
  const denoDir = `${work}/deno-dir`;
  const stubs = `${work}/stubs`;
  for (const dir of [records, denoDir]) {
    await Deno.mkdir(dir);
    await Deno.chmod(dir, 0o1777);
  }
  await Deno.mkdir(stubs);
  await Deno.chmod(stubs, 0o755);
  const exe = `${work}/pitifulnat`;
  const script = (body: string[]) => ["#!/bin/sh", ...body, ""].join("\n");
  await Deno.writeTextFile(
    exe,
    script([
      `echo "$$ $(id -u) $*" >> ${records}/starts`,
      `export DENO_NO_UPDATE_CHECK=1 DENO_DIR=${denoDir}/$(id -u)`,
      `exec ${deno} run --no-prompt --no-config --no-code-cache ${
        runtimeFlags().join(" ")
      } ${bundle} "$@"`,
    ]),
  );
  await Deno.writeTextFile(
    `${stubs}/logger`,
    script([`{ echo "$(id -u) logger $*"; cat; } >> ${records}/logger`]),
  );
  await Deno.writeTextFile(
    `${stubs}/systemctl`,
    script([`echo "$(id -u) systemctl $*" >> ${records}/systemctl`]),
  );
  for (const file of [exe, `${stubs}/logger`, `${stubs}/systemctl`]) await Deno.chmod(file, 0o755);
  return { work, exe, stubs, records };
}

/** The lines a record file holds ([] when it does not exist yet). */
async function records(kit: Kit, name: string): Promise<string[]> {
  const text = await Deno.readTextFile(`${kit.records}/${name}`).catch(() => "");
  return text.split("\n").filter((line) => line !== "");
}

/** The wrapper's records of `pitifulnat <command>` starts: [pid, uid]. */
async function starts(kit: Kit, command: string): Promise<[number, number][]> {
  return (await records(kit, "starts"))
    .map((line) => line.split(" "))
    .filter((words) => words[2] === command)
    .map((words) => [Number(words[0]), Number(words[1])]);
}

interface Tools {
  useradd: string;
  userdel: string;
  groupdel: string;
  runuser: string;
  flock: string;
  fuser: string;
  curl: string;
}

function findTools(): { tools: Tools | null; missing: string[] } {
  const names = ["useradd", "userdel", "groupdel", "runuser", "flock", "fuser", "curl"] as const;
  const found = Object.fromEntries(names.map((n) => [n, findProgram(n)]));
  const missing: string[] = names.filter((n) => !found[n]);
  // The crontab names flock and fuser by these paths (util-linux, psmisc).
  for (const path of ["/usr/bin/flock", "/usr/bin/fuser"]) {
    try {
      Deno.statSync(path);
    } catch {
      missing.push(path);
    }
  }
  if (Deno.uid() !== 0) missing.push("root (useradd, runuser)");
  return { tools: missing.length ? null : found as unknown as Tools, missing };
}

const cron = findTools();
const cronIgnore = cron.missing.length > 0 && !isCi();
if (cronIgnore) {
  console.warn(`SKIPPED contrib cron tests: missing ${cron.missing.join(", ")}`);
}

/** A config for the test user: serve on a free loopback port, log file owned by the user. */
async function userSetup(user: TestUser) {
  const setup = await makeServeSetup();
  await Deno.chmod(setup.dir, 0o755);
  await Deno.chown(`${setup.dir}/log`, user.uid, user.gid);
  return setup;
}

/** The PIDs that have `path` open, by fuser (as root: every process). */
async function holders(tools: Tools, path: string): Promise<number[]> {
  const r = await run(tools.fuser, [path]);
  return [...r.stdout.matchAll(/\d+/g)].map((m) => Number(m[0])).sort((a, b) => a - b);
}

Deno.test({
  name: "contrib: pitifulnat.cron for a user without a home: one server, weekly SIGTERM",
  ignore: cronIgnore,
  async fn() {
    assert.deepEqual(cron.missing, [], "prerequisites");
    const tools = cron.tools!;
    const user = await createUser(tools);
    const procs: Proc[] = [];
    let kit: Kit | null = null;
    let setupDir: string | null = null;
    try {
      // The precondition of the bug: the user's home does not exist.
      await assert.rejects(Deno.stat(user.home), Deno.errors.NotFound);
      kit = await makeKit(user, tools);
      const setup = await userSetup(user);
      setupDir = setup.dir;

      const crontab = await readCrontab(`${CONTRIB}/pitifulnat.cron`, false);
      const start = entryWith(crontab, `${EXE} serve `);
      const weekly = entryWith(crontab, "fuser -k -TERM ");
      const hourly = entryWith(crontab, "| logger ");
      assert.equal(start.fields, "* * * * *");
      const lock = /flock -n (\S+) /.exec(start.command)?.[1];
      assert.ok(lock);
      const stateDir = lock.slice(0, lock.lastIndexOf("/"));
      // Made as the README says: install -d -o pitifulnat -g pitifulnat -m 0750 DIR.
      const state = `${kit.work}/state`;
      const made = await run("install", [
        "-d",
        "-o",
        user.name,
        "-g",
        user.name,
        "-m",
        "0750",
        state,
      ]);
      assert.equal(made.code, 0, show(made));
      const swaps: [string, string][] = [[EXE, kit.exe], [CONFIG, setup.config]];
      const here = (command: string) => substitute(command, [...swaps, [stateDir, state]]);
      const testLock = `${state}/${lock.slice(stateDir.length + 1)}`;

      // cron's environment for the user: its passwd entry, then the crontab's lines.
      const env = {
        SHELL: "/bin/sh",
        PATH: CRON_PATH,
        LOGNAME: user.name,
        USER: user.name,
        HOME: user.home,
        ...Object.fromEntries(
          Object.entries(crontab.env).map(([k, v]) => [k, v.replaceAll(stateDir, state)]),
        ),
      };
      assert.equal(env.HOME, state, "HOME= is the lock's directory");
      const asUser = (command: string, environment: Record<string, string> = env) => [
        "-u",
        user.name,
        "--",
        ...envArgs(environment),
        "/bin/sh",
        "-c",
        command,
      ];
      const runAsUser = (command: string, environment?: Record<string, string>) =>
        run(tools.runuser, asUser(command, environment), { cwd: state, timeoutMs: 60_000 });

      // The old line: the lock under $HOME, which this user does not have. Nothing starts.
      const oldLine = substitute(start.command, [[lock, "$HOME/.pitifulnat.lock"], ...swaps]);
      const old = await run(
        tools.runuser,
        asUser(oldLine, { ...env, HOME: user.home }),
        { cwd: "/", timeoutMs: 30_000 },
      );
      assert.notEqual(old.code, 0, "flock cannot create a lock in a missing home");
      assert.deepEqual(await starts(kit, "serve"), [], "the old line started nothing");
      assert.ok(!await listening(setup.port));

      // The minute line: starts the server, as the user, holding the lock.
      const first = new Proc(tools.runuser, asUser(here(start.command)), { cwd: state });
      procs.push(first);
      const up = await waitUntil(
        async () => first.exited !== null || await listening(setup.port),
        30_000,
      );
      assert.ok(up && first.exited === null, `not listening: ${first.output}`);
      const served = await starts(kit, "serve");
      assert.equal(served.length, 1, JSON.stringify(served));
      const [[serverPid, serverUid]] = served;
      assert.equal(serverUid, user.uid, "the server runs as the user");
      assert.equal(uidOf(serverPid), user.uid);
      const held = await holders(tools, testLock);
      assert.ok(held.includes(serverPid), `the server ${serverPid} holds the lock: ${held}`);
      assert.ok(held.every((pid) => uidOf(pid) === user.uid), `holders ${held}`);
      const got = await run(tools.curl, [
        "-sS",
        "--max-time",
        "20",
        `ftp://127.0.0.1:${setup.port}/${setup.fileName}`,
      ]);
      assert.equal(got.code, 0, show(got));
      assert.equal(got.stdout, setup.content);

      // The next minute: flock -n finds the lock taken and starts nothing.
      const second = await runAsUser(here(start.command));
      assert.equal(second.code, 1, `flock -n exits 1 on a taken lock: ${show(second)}`);
      assert.equal((await starts(kit, "serve")).length, 1, "no second server");
      assert.ok(alive(serverPid));
      assert.deepEqual(await holders(tools, testLock), held);

      // The hourly check logs OK through logger (a stub: no syslog here).
      const checked = await runAsUser(here(hourly.command), {
        ...env,
        PATH: `${kit.stubs}:${env.PATH}`,
      });
      assert.equal(checked.code, 0, show(checked));
      const logged = (await records(kit, "logger")).join("\n");
      assert.match(logged, new RegExp(`^${user.uid} logger -t pitifulnat-check$`, "m"));
      assert.match(logged, /in use by a running pitifulnat/);
      assert.doesNotMatch(logged, /NOT OK/);

      // The weekly line: the check passes, fuser sends SIGTERM, the server stops cleanly.
      const stopped = await runAsUser(here(weekly.command));
      assert.equal(stopped.code, 0, show(stopped));
      const checks = await starts(kit, "check");
      assert.ok(checks.length >= 2 && checks.every(([, uid]) => uid === user.uid));
      assert.ok(await waitUntil(() => first.exited !== null, 30_000), "the minute line ended");
      assert.ok(await waitUntil(() => !alive(serverPid), 10_000), "the server exited");
      assert.ok(!await listening(setup.port));
      const log = await Deno.readTextFile(setup.logFile);
      assert.match(log, /\[INF\] pitifulnat\S*: SIGTERM: stopping/);
      assert.equal(log.match(/serve listening on/g)?.length, 1, log);
      assert.deepEqual(await holders(tools, testLock), [], "the lock is free");

      // And the minute line starts it again, which the weekly line stops again.
      const again = new Proc(tools.runuser, asUser(here(start.command)), { cwd: state });
      procs.push(again);
      assert.ok(
        await waitUntil(async () => again.exited !== null || await listening(setup.port), 30_000),
      );
      assert.equal(again.exited, null, again.output);
      const servedAgain = await starts(kit, "serve");
      assert.equal(servedAgain.length, 2);
      const stoppedAgain = await runAsUser(here(weekly.command));
      assert.equal(stoppedAgain.code, 0, show(stoppedAgain));
      assert.ok(await waitUntil(() => again.exited !== null, 30_000));
      assert.ok(await waitUntil(() => !alive(servedAgain[1][0]), 10_000));
      const finalLog = await Deno.readTextFile(setup.logFile);
      assert.equal(finalLog.match(/SIGTERM: stopping/g)?.length, 2, finalLog);
    } finally {
      for (const proc of procs) await proc.stop("SIGTERM", 5_000);
      await removeUser(tools, user);
      if (kit) await Deno.remove(kit.work, { recursive: true });
      if (setupDir) await Deno.remove(setupDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "contrib: cron.d/pitifulnat restarts the unit as root only after the user's check passed",
  ignore: cronIgnore,
  async fn() {
    assert.deepEqual(cron.missing, [], "prerequisites");
    const tools = cron.tools!;
    const user = await createUser(tools);
    let kit: Kit | null = null;
    let setupDir: string | null = null;
    try {
      kit = await makeKit(user, tools);
      const setup = await userSetup(user);
      setupDir = setup.dir;
      const crontab = await readCrontab(`${CONTRIB}/cron.d/pitifulnat`, true);
      const weekly = entryWith(crontab, "systemctl try-restart ");
      const hourly = entryWith(crontab, "| logger ");
      assert.equal(weekly.user, "root");
      assert.equal(hourly.user, SERVICE_USER);
      const env: Record<string, string> = { SHELL: "/bin/sh", PATH: CRON_PATH, ...crontab.env };
      // The stubs first: systemctl (no systemd here) and logger (no syslog).
      const stubbed = { ...env, PATH: `${kit.stubs}:${env.PATH}` };
      const swaps = (config: string): [string, string][] => [
        [EXE, kit!.exe],
        [CONFIG, config],
        [`-u ${SERVICE_USER} --`, `-u ${user.name} --`],
      ];
      const asRoot = (command: string) => runShAsRoot(command, stubbed, env.HOME ?? "/");

      // The hourly line, as its user field says (the test user for pitifulnat).
      const hourlyRun = await run(tools.runuser, [
        "-u",
        user.name,
        "--",
        ...envArgs({ ...stubbed, LOGNAME: user.name, USER: user.name }),
        "/bin/sh",
        "-c",
        substitute(hourly.command, swaps(setup.config)),
      ], { cwd: "/", timeoutMs: 60_000 });
      assert.equal(hourlyRun.code, 0, show(hourlyRun));
      const logged = (await records(kit, "logger")).join("\n");
      assert.match(logged, new RegExp(`^${user.uid} logger -t pitifulnat-check$`, "m"));
      assert.match(logged, /^OK/m);

      // The weekly line, as root: the check runs as the user, then root restarts.
      const restarted = await asRoot(substitute(weekly.command, swaps(setup.config)));
      assert.equal(restarted.code, 0, show(restarted));
      assert.deepEqual(await records(kit, "systemctl"), [
        "0 systemctl try-restart pitifulnat*.service",
      ]);
      const checks = await starts(kit, "check");
      assert.deepEqual(
        checks.map(([, uid]) => uid),
        [user.uid, user.uid],
        "both checks as the user",
      );

      // A config the user cannot read: root could, the user's check fails, no restart.
      // (Without log.file: the user's log file, 0644, is not writable for
      // root's check under Deno's node:fs.accessSync, which ignores root.)
      const unreadable = `${setup.dir}/root-only.yaml`;
      const text = await Deno.readTextFile(setup.config);
      await Deno.writeTextFile(unreadable, text.replace(/^log: .*\n/m, ""), { mode: 0o600 });
      await Deno.chmod(unreadable, 0o600);
      const asRootCheck = await run(kit.exe, ["check", "--config", unreadable], {
        timeoutMs: 60_000,
      });
      assert.equal(asRootCheck.code, 0, `root can read it: ${show(asRootCheck)}`);
      const refused = await asRoot(substitute(weekly.command, swaps(unreadable)));
      assert.notEqual(refused.code, 0, show(refused));
      assert.equal((await records(kit, "systemctl")).length, 1, "no second restart");
    } finally {
      await removeUser(tools, user);
      if (kit) await Deno.remove(kit.work, { recursive: true });
      if (setupDir) await Deno.remove(setupDir, { recursive: true });
    }
  },
});

// --- fail2ban on a real server's log ----------------------------------------

const fail2banRegex = findProgram("fail2ban-regex");
const curl = findProgram("curl");
const f2bMissing = [
  ...(fail2banRegex ? [] : ["fail2ban-regex (Debian package fail2ban)"]),
  ...(curl ? [] : ["curl"]),
];
const f2bIgnore = f2bMissing.length > 0 && !isCi();
if (f2bIgnore) console.warn(`SKIPPED contrib fail2ban test: missing ${f2bMissing.join(", ")}`);

const FILTER = `${CONTRIB}/fail2ban/filter.d/pitifulnat.conf`;
const PASSWORD = "correct horse";
/** The failed logins: user and password. The third forges an address in its name. */
const FAILED: [string, string][] = [
  ["bob", "wrong"],
  ["nobody", "guess"],
  ["x addr=6.6.6.6 user=y", "wrong"],
  ["bob", "wrong again"],
];

/** Hashes a password with the program's own `hash-password` (password on stdin). */
async function hashPassword(password: string): Promise<string> {
  const r = await run(Deno.execPath(), ["run", "-A", "main.ts", "hash-password"], {
    cwd: ROOT,
    stdin: `${password}\n`,
    timeoutMs: 60_000,
  });
  assert.equal(r.code, 0, show(r));
  const hash = r.stdout.trim();
  assert.match(hash, /^scrypt\$/);
  return hash;
}

/** A config: bob on `host`:`port`, a ban after all of FAILED, the log in `dir/log/`. */
async function writeConfig(dir: string, host: string, port: number, hash: string) {
  await Deno.mkdir(`${dir}/home`, { recursive: true });
  await Deno.mkdir(`${dir}/log`, { recursive: true });
  const logFile = `${dir}/log/pitifulnat.log`;
  const passive = freePort();
  const config = `${dir}/config.yaml`;
  await Deno.writeTextFile(
    config,
    [
      `listen: { address: "${host}", port: ${port} }`,
      `passive: { min_port: ${passive}, max_port: ${passive} }`,
      "users:",
      `  - { name: bob, password: "${hash}", home: ${JSON.stringify(`${dir}/home`)}, ` +
      "permissions: [read] }",
      `limits: { login_failure_delay_ms: 0, max_login_failures_per_address: ${FAILED.length} }`,
      `log: { level: info, file: ${JSON.stringify(logFile)} }`,
      "",
    ].join("\n"),
  );
  return { config, logFile };
}

/** curl's exit code for one login (67: the server refused the login). */
async function login(url: string, user: string, password: string): Promise<number> {
  const r = await run(curl!, ["-sS", "-g", "--max-time", "20", "-u", `${user}:${password}`, url]);
  return r.code;
}

/** fail2ban-regex with the filter; the `-o ip` lines and the summary. */
async function regex(log: string, filter: string, extra: string[] = []) {
  const ips = await run(fail2banRegex!, [...extra, "-o", "ip", log, filter], { timeoutMs: 60_000 });
  assert.equal(ips.code, 0, show(ips));
  const summary = await run(fail2banRegex!, [...extra, log, filter], { timeoutMs: 60_000 });
  assert.equal(summary.code, 0, show(summary));
  const lines = /Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed/.exec(
    summary.stdout,
  );
  assert.ok(lines, summary.stdout);
  return {
    ips: ips.stdout.split("\n").filter((line) => line !== ""),
    lines: Number(lines[1]),
    matched: Number(lines[3]),
    summary: summary.stdout,
  };
}

Deno.test({
  name: "contrib: fail2ban-regex finds exactly the real server's failed logins, with their address",
  ignore: f2bIgnore,
  async fn() {
    assert.deepEqual(f2bMissing, [], "prerequisites");
    const dir = await Deno.makeTempDir({ prefix: "pn-f2b-" });
    try {
      const hash = await hashPassword(PASSWORD);
      const port = freePort();
      const { config, logFile } = await writeConfig(dir, "127.0.0.1", port, hash);
      const server = await startInBackground(
        Deno.execPath(),
        ["run", "-A", "main.ts", "serve", "--config", config],
        { cwd: ROOT, port },
      );
      let stopped;
      try {
        const url = `ftp://127.0.0.1:${port}/`;
        assert.equal(await login(url, "bob", PASSWORD), 0, "the good login");
        for (const [user, password] of FAILED) {
          assert.equal(await login(url, user, password), 67, `login as ${user} refused`);
        }
      } finally {
        stopped = await server.stop();
      }
      assert.equal(stopped.code, 0, stopped.stderr);

      const log = await Deno.readTextFile(logFile);
      assert.equal(log.match(/ login failed /g)?.length, FAILED.length, log);
      assert.match(log, /login failed addr=127\.0\.0\.1 user=x addr=6\.6\.6\.6 user=y peer=/);
      assert.match(log, /address 127\.0\.0\.1 banned for 600 s after repeated failed logins/);
      assert.match(log, /logged in as bob/);

      const found = await regex(logFile, FILTER);
      assert.equal(found.matched, FAILED.length, found.summary);
      assert.deepEqual(found.ips, FAILED.map(() => "127.0.0.1"));
      // Every line's time stamp was read (fail2ban drops lines it cannot date).
      assert.match(found.summary, new RegExp(`\\[${found.lines}\\] \\^Year-Month-Day`));

      // The journal's form of the same lines (backend = systemd).
      const journal = `${dir}/journal.txt`;
      await Deno.writeTextFile(
        journal,
        log.split("\n").filter((l) => l !== "").map((l) => `nas pitifulnat[77]: ${l}\n`).join(""),
      );
      const fromJournal = await regex(journal, FILTER, ["-d", "{NONE}"]);
      assert.deepEqual(fromJournal.ips, found.ips);

      // The forged name does fool a filter that is not anchored: the test can tell.
      const naive = await regex(logFile, "login failed .*addr=<ADDR>");
      assert.ok(naive.ips.includes("6.6.6.6"), naive.summary);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Whether ::1 can be bound here (IPv6 loopback). */
function hasIpv6Loopback(): boolean {
  try {
    Deno.listen({ hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "contrib: fail2ban-regex takes a bare IPv6 address (addr=::1) from the real log",
  ignore: f2bIgnore || !hasIpv6Loopback(),
  async fn() {
    assert.deepEqual(f2bMissing, [], "prerequisites");
    const dir = await Deno.makeTempDir({ prefix: "pn-f2b6-" });
    let server: Proc | null = null;
    try {
      const listener = Deno.listen({ hostname: "::1", port: 0 });
      const port = (listener.addr as Deno.NetAddr).port;
      listener.close();
      const { config, logFile } = await writeConfig(dir, "::1", port, await hashPassword(PASSWORD));
      server = new Proc(Deno.execPath(), ["run", "-A", "main.ts", "serve", "--config", config], {
        cwd: ROOT,
      });
      const up = await waitUntil(
        async () => server!.exited !== null || await listening(port, "::1"),
        20_000,
      );
      assert.ok(up && server.exited === null, server.output);
      const url = `ftp://[::1]:${port}/`;
      assert.equal(await login(url, "bob", "wrong"), 67);
      assert.equal(await login(url, "x addr=6.6.6.6 user=y", "wrong"), 67);
      const status = await server.stop("SIGTERM", 10_000);
      assert.equal(status.code, 0, server.output);
      const log = await Deno.readTextFile(logFile);
      assert.match(log, /login failed addr=::1 user=bob peer=\[::1\]:\d+/);
      const found = await regex(logFile, FILTER);
      assert.deepEqual(found.ips, ["::1", "::1"]);
    } finally {
      await server?.stop("SIGKILL", 1_000);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
