import assert from "node:assert/strict";
import { DEFAULT_CONFIG_PATH } from "../../src/config/locate.ts";
import { findProgram, isCi } from "../e2e/lab.ts";
import { run } from "../helpers/server.ts";

const CONTRIB = new URL("../../contrib/", import.meta.url).pathname;
const README = new URL("../../README.md", import.meta.url).pathname;
/** The two units and the mode each runs. */
const UNITS = [
  { file: "pitifulnat.service", mode: "serve" },
  { file: "pitifulnat-proxy.service", mode: "proxy" },
] as const;
/** The user's crontab (cron alone runs the server) and the /etc/cron.d file (systemd runs it). */
const USER_CRONTAB = `${CONTRIB}pitifulnat.cron`;
const CRON_D = `${CONTRIB}cron.d/pitifulnat`;
const FILTER = `${CONTRIB}fail2ban/filter.d/pitifulnat.conf`;
const JAIL = `${CONTRIB}fail2ban/jail.d/pitifulnat.conf`;
const EXE = "/usr/local/bin/pitifulnat";
/** The user the README's guide creates (`useradd --system --no-create-home`). */
const SERVICE_USER = "pitifulnat";

/** The `key=value` settings of one section of a systemd unit (comments skipped). */
function unitSection(text: string, section: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1];
      continue;
    }
    if (current !== section) continue;
    const eq = line.indexOf("=");
    assert.ok(eq > 0, `not a key=value line: ${line}`);
    const key = line.slice(0, eq);
    settings.set(key, [...settings.get(key) ?? [], line.slice(eq + 1)]);
  }
  return settings;
}

/** Every section of a unit, as `section.key` -> values. */
function unitSettings(text: string): Map<string, string[]> {
  const all = new Map<string, string[]>();
  for (const section of ["Unit", "Service", "Install"]) {
    for (const [key, values] of unitSection(text, section)) all.set(`${section}.${key}`, values);
  }
  return all;
}

for (const { file, mode } of UNITS) {
  Deno.test(`contrib: ${file} runs ${mode} on the default config, with hardening`, async () => {
    const service = unitSection(await Deno.readTextFile(`${CONTRIB}${file}`), "Service");
    const one = (key: string) => {
      const values = service.get(key);
      assert.ok(values && values.length === 1, `${key} set once, got ${values}`);
      return values[0];
    };
    assert.equal(one("Type"), "simple");
    assert.equal(one("ExecStart"), `${EXE} ${mode} --config ${DEFAULT_CONFIG_PATH}`);
    assert.equal(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert.equal(one("Restart"), "on-failure");
    assert.equal(one("NoNewPrivileges"), "yes");
    assert.equal(one("ProtectSystem"), "strict");
    assert.equal(one("LogsDirectory"), "pitifulnat");
    if (mode === "serve") {
      // The FTP homes.
      assert.ok(one("ReadWritePaths").startsWith("/"));
    } else {
      // The proxy writes no file but its log: a missing /srv/ftp must not stop it.
      assert.equal(service.get("ReadWritePaths"), undefined);
    }
    // The JavaScript engine writes and runs machine code: this would kill it.
    assert.equal(service.get("MemoryDenyWriteExecute"), undefined);
    assert.equal(one("User"), SERVICE_USER);
  });
}

Deno.test("contrib: the proxy unit differs from the serve unit only in what it runs", async () => {
  const [serve, proxy] = await Promise.all(
    UNITS.map(async ({ file }) => unitSettings(await Deno.readTextFile(`${CONTRIB}${file}`))),
  );
  // The same hardening, restart and reload in both, so they cannot drift apart.
  const differ = new Set(["Unit.Description", "Service.ExecStart", "Service.ReadWritePaths"]);
  const keep = (settings: Map<string, string[]>) =>
    Object.fromEntries([...settings].filter(([key]) => !differ.has(key)));
  assert.deepEqual(keep(proxy), keep(serve));
  assert.ok(serve.size > 25, `${serve.size} settings`);
});

const systemdAnalyze = findProgram("systemd-analyze");

Deno.test({
  name: systemdAnalyze
    ? "contrib: both systemd units pass systemd-analyze verify"
    : "contrib: systemd-analyze verify: skipped: no systemd-analyze (Debian package systemd)",
  ignore: !systemdAnalyze && !isCi(),
  async fn() {
    assert.ok(systemdAnalyze, "systemd-analyze is missing (Debian package systemd)");
    const dir = await Deno.makeTempDir({ prefix: "pn-unit-" });
    try {
      // verify checks that ExecStart exists: point it at a stand-in executable.
      const stub = `${dir}/pitifulnat`;
      await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n");
      await Deno.chmod(stub, 0o755);
      for (const { file } of UNITS) {
        const text = await Deno.readTextFile(`${CONTRIB}${file}`);
        assert.ok(text.includes(`ExecStart=${EXE} `));
        await Deno.writeTextFile(
          `${dir}/${file}`,
          text.replace(`ExecStart=${EXE} `, `ExecStart=${stub} `),
        );
        const result = await run(systemdAnalyze, ["verify", "--man=no", `${dir}/${file}`]);
        // Unknown or misspelt keys are only warnings: any output fails the test.
        assert.equal(result.code, 0, `${file}: ${result.stderr}`);
        assert.equal(result.stderr.trim(), "", file);
      }
      // The check itself: a misspelt key is reported.
      const broken = (await Deno.readTextFile(`${dir}/${UNITS[0].file}`))
        .replace("Restart=on-failure", "Restart=on-failure\nRestartt=always");
      await Deno.writeTextFile(`${dir}/broken.service`, broken);
      const result = await run(systemdAnalyze, ["verify", "--man=no", `${dir}/broken.service`]);
      assert.match(result.stderr, /Unknown key 'Restartt'/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** Checks one crontab time field against its range; returns a problem or null. */
function fieldProblem(field: string, min: number, max: number): string | null {
  for (const part of field.split(",")) {
    const m = /^(\*|(\d+)(?:-(\d+))?)(?:\/(\d+))?$/.exec(part);
    if (!m) return `"${part}" is not *, N, N-M or a step`;
    const values = [m[2], m[3]].filter((v) => v !== undefined).map(Number);
    if (values.some((v) => v < min || v > max)) return `"${part}" is outside ${min}-${max}`;
    if (values.length === 2 && values[0] > values[1]) return `"${part}" is a reversed range`;
    if (m[4] !== undefined && Number(m[4]) === 0) return `"${part}" has a zero step`;
  }
  return null;
}

/** A crontab line: five time fields, the user (system crontabs only) and the command. */
interface CronEntry {
  line: number;
  active: boolean;
  fields: string[];
  user: string | null;
  command: string;
}

/** A parsed crontab: its `NAME=value` lines and its entries. */
interface Crontab {
  env: Map<string, string>;
  entries: CronEntry[];
}

/**
 * Parses crontab text; entries commented out as `#<minute> ...` count too.
 * `userField`: the format of /etc/crontab and /etc/cron.d, with a user
 * after the time fields.
 */
function parseCrontab(text: string, options: { userField?: boolean } = {}): Crontab {
  const env = new Map<string, string>();
  const entries: CronEntry[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "") return;
    const assignment = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (assignment) {
      env.set(assignment[1], assignment[2]);
      return;
    }
    const disabled = /^#(?=[\d*])/.test(line);
    if (line.startsWith("#") && !disabled) return;
    const body = disabled ? line.slice(1) : line;
    const m = options.userField
      ? /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.+)$/.exec(body)
      : /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+()(.+)$/.exec(body);
    assert.ok(m, `line ${index + 1}: not 5 time fields, a user if any, and a command: ${line}`);
    entries.push({
      line: index + 1,
      active: !disabled,
      fields: m.slice(1, 6),
      user: options.userField ? m[6] : null,
      command: m[7],
    });
  });
  return { env, entries };
}

/** What every crontab entry must be: valid fields and shell, only `check` and `serve`. */
async function assertEntriesValid(entries: CronEntry[]): Promise<void> {
  const ranges: [number, number][] = [[0, 59], [0, 23], [1, 31], [1, 12], [0, 7]];
  for (const entry of entries) {
    entry.fields.forEach((field, i) => {
      const problem = fieldProblem(field, ...ranges[i]);
      assert.equal(problem, null, `line ${entry.line}, field ${i + 1}: ${problem}`);
    });
    assert.ok(!entry.command.includes("%"), `line ${entry.line}: % ends a crontab command`);
    assert.ok(entry.command.includes(`${EXE} `), `line ${entry.line} runs ${EXE}`);
    for (const use of entry.command.matchAll(new RegExp(`${EXE} (\\S+)`, "g"))) {
      assert.ok(["check", "serve"].includes(use[1]), `line ${entry.line}: pitifulnat ${use[1]}`);
      assert.ok(
        entry.command.includes(`${EXE} ${use[1]} --config ${DEFAULT_CONFIG_PATH}`),
        `line ${entry.line}: the default config`,
      );
    }
    // The command is valid shell (cron runs it with /bin/sh).
    const syntax = await run("sh", ["-n", "-c", entry.command]);
    assert.equal(syntax.code, 0, `line ${entry.line}: ${syntax.stderr}`);
    // Every restart is guarded by a passing check.
    if (/try-restart|fuser -k/.test(entry.command)) {
      assert.match(
        entry.command,
        new RegExp(`^(runuser -u ${SERVICE_USER} -- )?${EXE} check .*&& `),
        `line ${entry.line}`,
      );
    }
  }
  assert.ok(
    entries.some((e) =>
      e.active && e.fields.join(" ") === "7 * * * *" &&
      e.command.startsWith(`${EXE} check --config ${DEFAULT_CONFIG_PATH} 2>&1 | logger `)
    ),
    "an hourly entry logs pitifulnat check on the default config",
  );
}

Deno.test("contrib: the user's crontab runs the server with a lock its user can take", async () => {
  const text = await Deno.readTextFile(USER_CRONTAB);
  const { env, entries } = parseCrontab(text);
  await assertEntriesValid(entries);
  const active = entries.filter((entry) => entry.active);
  assert.equal(active.length, 3, "hourly check, start, weekly restart");
  // A user's crontab cannot restart a system service.
  assert.ok(!text.includes("systemctl"), "no systemctl in a user's crontab");

  const start = active.find((e) => e.command.includes(`${EXE} serve `));
  const stop = active.find((e) => e.command.includes("fuser -k -TERM "));
  assert.ok(start && stop);
  assert.equal(start.fields.join(" "), "* * * * *");
  const lock = /\/usr\/bin\/flock -n (\S+) /.exec(start.command)?.[1];
  assert.ok(lock, start.command);
  // The same absolute path in both lines: no $HOME (the user has none), no ~.
  assert.match(lock, /^\/[\w./-]+$/);
  assert.ok(stop.command.includes(`/usr/bin/fuser -k -TERM ${lock} `), stop.command);
  const dir = lock.slice(0, lock.lastIndexOf("/"));
  // cron starts jobs in HOME: it must exist (cronie skips jobs otherwise).
  assert.equal(env.get("HOME"), dir);
  // The file and the README's guide make that directory, owned by the user.
  const mkdir = `install -d -o ${SERVICE_USER} -g ${SERVICE_USER} -m 0750 ${dir}`;
  assert.ok(text.includes(mkdir), `pitifulnat.cron says: ${mkdir}`);
  assert.ok((await Deno.readTextFile(README)).includes(mkdir), `README says: ${mkdir}`);
});

Deno.test("contrib: cron.d restarts the service as root after a check as the service user", async () => {
  const name = CRON_D.slice(CRON_D.lastIndexOf("/") + 1);
  // run-parts naming: Debian's cron skips /etc/cron.d files with a dot.
  assert.match(name, /^[A-Za-z0-9_-]+$/);
  const { env, entries } = parseCrontab(await Deno.readTextFile(CRON_D), { userField: true });
  await assertEntriesValid(entries);
  assert.equal(env.get("SHELL"), "/bin/sh");
  assert.equal(env.get("HOME"), "/");
  assert.ok(env.get("PATH")?.split(":").includes("/usr/sbin"), "runuser is in /usr/sbin");
  const active = entries.filter((e) => e.active);
  assert.equal(active.length, 2);
  for (const entry of active) {
    if (entry.command.includes("systemctl")) {
      assert.equal(entry.user, "root", `line ${entry.line}: only root restarts a service`);
      assert.ok(entry.command.startsWith(`runuser -u ${SERVICE_USER} -- ${EXE} check `));
      const pattern = /systemctl try-restart '([^']+)'$/.exec(entry.command)?.[1];
      assert.ok(pattern, entry.command);
      // The pattern covers both units (systemctl matches it like the shell).
      const glob = new RegExp(`^${pattern.replaceAll(".", "\\.").replaceAll("*", ".*")}$`);
      for (const { file } of UNITS) assert.match(file, glob);
    } else {
      assert.equal(entry.user, SERVICE_USER, `line ${entry.line}`);
    }
  }
});

Deno.test("contrib: the crontab checker rejects bad lines", () => {
  assert.equal(fieldProblem("*/15", 0, 59), null);
  assert.equal(fieldProblem("1-5,7", 0, 7), null);
  assert.notEqual(fieldProblem("60", 0, 59), null);
  assert.notEqual(fieldProblem("*/0", 0, 59), null);
  assert.notEqual(fieldProblem("5-1", 0, 23), null);
  assert.notEqual(fieldProblem("mon", 0, 7), null);
  assert.throws(() => parseCrontab("* * * * *\n"));
  assert.throws(() => parseCrontab("* * * * * root\n", { userField: true }));
  // Four time fields: the program lands in the day-of-week field.
  const [short] = parseCrontab("* * * * /usr/local/bin/pitifulnat check\n").entries;
  assert.notEqual(fieldProblem(short.fields[4], 0, 7), null);
  const parsed = parseCrontab("# prose\nHOME=/x\n#7 * * * * x y\n");
  assert.deepEqual(parsed.entries.map((e) => [e.active, e.command]), [[false, "x y"]]);
  assert.equal(parsed.env.get("HOME"), "/x");
  const [system] = parseCrontab("30 4 * * 1 root a && b\n", { userField: true }).entries;
  assert.deepEqual([system.user, system.command], ["root", "a && b"]);
});

const fail2banRegex = findProgram("fail2ban-regex");
const fail2banClient = findProgram("fail2ban-client");
const fail2banSkip = "skipped: no fail2ban-regex (Debian package fail2ban)";

/** A failed-login line as pitifulnat writes it; `rest` is what follows the address. */
const LINE = (addr: string, rest: string, category = "ftp") =>
  `2026-12-01 12:17:09.201 +00 [WRN] pitifulnat\u00b7${category}: session s1: ` +
  `login failed addr=${addr} ${rest}`;

/** Runs fail2ban-regex with the filter on `log`, with `args` and `env` (TZ); its stdout. */
async function fail2ban(log: string, args: string[] = [], env: Record<string, string> = {}) {
  assert.ok(fail2banRegex, "fail2ban-regex is missing (Debian package fail2ban)");
  const prefix = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const result = await run("env", [...prefix, fail2banRegex, ...args, log, FILTER], {
    timeoutMs: 60_000,
  });
  assert.equal(result.code, 0, result.stderr);
  return result.stdout;
}

Deno.test({
  name: fail2banRegex
    ? "contrib: the fail2ban filter takes the address only from the server's own text"
    : `contrib: fail2ban filter: ${fail2banSkip}`,
  ignore: !fail2banRegex && !isCi(),
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pn-f2b-" });
    try {
      const log = `${dir}/pitifulnat.log`;
      const matching = [
        LINE("127.0.0.1", "user=bob peer=127.0.0.1:40602"),
        LINE("::1", "user=bob peer=[::1]:40602"),
        LINE("::ffff:10.1.2.3", "user=bob peer=[::ffff:10.1.2.3]:40602"),
        LINE("192.0.2.7", "user=anonymous peer=192.0.2.7:5000", "proxy"),
        // The client's name, with a forged address and a forged line.
        LINE("198.51.100.1", "user=x addr=6.6.6.6 user=y peer=198.51.100.1:1"),
        LINE("2001:db8::5", "user=[WRN] pitifulnat: session s: login failed addr=6.6.6.6 user="),
        LINE("203.0.113.9", "user= peer=203.0.113.9:2"),
      ];
      const other = [
        "2026-12-01 12:17:09.202 +00 [WRN] pitifulnat\u00b7ftp: address 127.0.0.1 banned for " +
        "600 s after repeated failed logins",
        "2026-12-01 12:17:09.203 +00 [INF] pitifulnat\u00b7ftp: session s2 logged in as " +
        "[WRN] pitifulnat\u00b7ftp: session s1: login failed addr=6.6.6.6 user=x",
        "2026-12-01 12:17:09.204 +00 [INF] pitifulnat\u00b7ftp: session s3 opened from 6.6.6.6:1",
      ];
      await Deno.writeTextFile(log, [...matching, ...other].join("\n") + "\n");
      const ips = (await fail2ban(log, ["-o", "ip"])).trim().split("\n");
      assert.deepEqual(ips, [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "192.0.2.7",
        "198.51.100.1",
        "2001:db8::5",
        "203.0.113.9",
      ]);

      // The time stamp is UTC, whatever the machine's time zone.
      const rows = await fail2ban(log, ["-o", "row"], { TZ: "Asia/Tokyo" });
      const times = [...rows.matchAll(/^\['[^']+',\s*(\d+)/gm)].map((m) => Number(m[1]));
      assert.equal(times.length, matching.length, rows);
      assert.ok(times.every((t) => t === Date.UTC(2026, 11, 1, 12, 17, 9) / 1000), rows);

      // The journal (backend = systemd): "host ident[pid]: " and the message,
      // time stamp included; fail2ban takes the time from the entry ({NONE} here).
      const journal = `${dir}/journal.txt`;
      await Deno.writeTextFile(
        journal,
        [...matching, ...other].map((l) => `nas pitifulnat[4242]: ${l}`).join("\n") + "\n",
      );
      const fromJournal = (await fail2ban(journal, ["-d", "{NONE}", "-o", "ip"])).trim();
      assert.deepEqual(fromJournal.split("\n"), ips);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: fail2banClient
    ? "contrib: both fail2ban jails load with the system's fail2ban config"
    : `contrib: fail2ban jails: ${fail2banSkip}`,
  ignore: !fail2banClient && !isCi(),
  async fn() {
    assert.ok(fail2banClient, "fail2ban-client is missing (Debian package fail2ban)");
    const dir = await Deno.makeTempDir({ prefix: "pn-f2b-conf-" });
    try {
      // The system's config (actions, jail.conf) with only our jail in jail.d.
      const copied = await run("cp", ["-r", "/etc/fail2ban/.", `${dir}/`]);
      assert.equal(copied.code, 0, copied.stderr);
      await Deno.remove(`${dir}/jail.d`, { recursive: true });
      await Deno.remove(`${dir}/jail.local`).catch(() => {});
      await Deno.mkdir(`${dir}/jail.d`);
      await Deno.copyFile(FILTER, `${dir}/filter.d/pitifulnat.conf`);
      const log = `${dir}/pitifulnat.log`;
      await Deno.writeTextFile(log, "");
      const jail = await Deno.readTextFile(JAIL);
      assert.match(jail, /^logpath\s*=\s*\/var\/log\/pitifulnat\/pitifulnat\.log$/m);
      const split = jail.indexOf("\n[pitifulnat-journal]\n");
      assert.ok(split > 0);
      const variants = {
        pitifulnat: jail,
        "pitifulnat-journal":
          jail.slice(0, split).replace(/^enabled\s*=\s*true$/m, "enabled = false") +
          jail.slice(split).replace(/^enabled\s*=\s*false$/m, "enabled = true"),
      };
      for (const [name, text] of Object.entries(variants)) {
        await Deno.writeTextFile(
          `${dir}/jail.d/pitifulnat.conf`,
          text.replace(/^logpath\s*=.*$/m, `logpath = ${log}`),
        );
        const tested = await run(fail2banClient, ["-c", dir, "--test"]);
        assert.equal(tested.code, 0, `${name}: ${tested.stdout}${tested.stderr}`);
        const dump = await run(fail2banClient, ["-c", dir, "-d"]);
        assert.equal(dump.code, 0, dump.stderr);
        const jails = [...dump.stdout.matchAll(/^\['add', '([^']+)', '([^']+)'\]$/gm)]
          .map((m) => `${m[1]} ${m[2]}`);
        assert.deepEqual(jails, [name === "pitifulnat" ? "pitifulnat auto" : `${name} systemd`]);
        assert.match(dump.stdout, /'port', '21,2121,50000:50100'/);
        assert.match(dump.stdout, /'addfailregex', '.*login failed addr=<ADDR> user='/);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
