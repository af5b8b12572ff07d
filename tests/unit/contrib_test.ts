import assert from "node:assert/strict";
import { DEFAULT_CONFIG_PATH } from "../../src/config/locate.ts";
import { run } from "../helpers/server.ts";

const UNIT = new URL("../../contrib/pitifulnat.service", import.meta.url);
const CRON = new URL("../../contrib/pitifulnat.cron", import.meta.url);
const EXE = "/usr/local/bin/pitifulnat";

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

Deno.test("contrib: the systemd unit runs serve on the default config, with hardening", async () => {
  const service = unitSection(await Deno.readTextFile(UNIT), "Service");
  const one = (key: string) => {
    const values = service.get(key);
    assert.ok(values && values.length === 1, `${key} set once, got ${values}`);
    return values[0];
  };
  assert.equal(one("Type"), "simple");
  assert.equal(one("ExecStart"), `${EXE} serve --config ${DEFAULT_CONFIG_PATH}`);
  assert.equal(one("ExecReload"), "/bin/kill -HUP $MAINPID");
  assert.equal(one("Restart"), "on-failure");
  assert.equal(one("NoNewPrivileges"), "yes");
  assert.equal(one("ProtectSystem"), "strict");
  assert.ok(one("ReadWritePaths").startsWith("/"));
  // The JavaScript engine writes and runs machine code: this would kill it.
  assert.equal(service.get("MemoryDenyWriteExecute"), undefined);
  assert.ok(service.has("User") || service.get("DynamicUser")?.[0] === "yes");
});

const systemdAnalyze = await run("systemd-analyze", ["--version"]).then(
  (r) => r.code === 0,
  () => false,
);

Deno.test({
  name: systemdAnalyze
    ? "contrib: the systemd unit passes systemd-analyze verify"
    : "contrib: systemd-analyze verify: skipped: no systemd-analyze",
  ignore: !systemdAnalyze,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "pn-unit-" });
    try {
      // verify checks that ExecStart exists: point it at a stand-in executable.
      const stub = `${dir}/pitifulnat`;
      await Deno.writeTextFile(stub, "#!/bin/sh\nexit 0\n");
      await Deno.chmod(stub, 0o755);
      const text = await Deno.readTextFile(UNIT);
      assert.ok(text.includes(`ExecStart=${EXE} `));
      await Deno.writeTextFile(
        `${dir}/pitifulnat.service`,
        text.replace(`ExecStart=${EXE} `, `ExecStart=${stub} `),
      );
      const result = await run("systemd-analyze", [
        "verify",
        "--man=no",
        `${dir}/pitifulnat.service`,
      ]);
      // Unknown or misspelt keys are only warnings: any output fails the test.
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr.trim(), "");
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

/** A crontab line: five time fields and the command. */
interface CronEntry {
  line: number;
  active: boolean;
  fields: string[];
  command: string;
}

/** Parses crontab text; entries commented out as `#<minute> ...` count too. */
function parseCrontab(text: string): CronEntry[] {
  const entries: CronEntry[] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line === "") return;
    const disabled = /^#(?=[\d*])/.test(line);
    if (line.startsWith("#") && !disabled) return;
    const body = disabled ? line.slice(1) : line;
    const m = /^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.+)$/.exec(body);
    assert.ok(m, `line ${index + 1}: not 5 time fields and a command: ${line}`);
    entries.push({
      line: index + 1,
      active: !disabled,
      fields: m.slice(1, 6),
      command: m[6],
    });
  });
  return entries;
}

Deno.test("contrib: the crontab parses and its commands run pitifulnat check", async () => {
  const entries = parseCrontab(await Deno.readTextFile(CRON));
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
    }
    // The command is valid shell (cron runs it with /bin/sh).
    const syntax = await run("sh", ["-n", "-c", entry.command]);
    assert.equal(syntax.code, 0, `line ${entry.line}: ${syntax.stderr}`);
  }
  const active = entries.filter((entry) => entry.active);
  assert.ok(active.length >= 2, `${active.length} active entries`);
  assert.ok(
    active.some((e) => e.command.startsWith(`${EXE} check --config ${DEFAULT_CONFIG_PATH}`)),
    "an active entry runs pitifulnat check on the default config",
  );
  // Every restart is guarded by a passing check.
  for (const entry of entries.filter((e) => /try-restart|fuser -k/.test(e.command))) {
    assert.match(entry.command, new RegExp(`^${EXE} check .*&& `), `line ${entry.line}`);
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
  // Four time fields: the program lands in the day-of-week field.
  const [short] = parseCrontab("* * * * /usr/local/bin/pitifulnat check\n");
  assert.notEqual(fieldProblem(short.fields[4], 0, 7), null);
  assert.deepEqual(parseCrontab("# prose\n#7 * * * * x y\n").map((e) => [e.active, e.command]), [
    [false, "x y"],
  ]);
});
