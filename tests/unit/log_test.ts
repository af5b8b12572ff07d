import assert from "node:assert/strict";
import { getLogger, type LogRecord, reset } from "@logtape/logtape";
import { formatLine, rotateFiles, rotatingFileSink, setupLogging } from "../../src/observe/log.ts";

/** A minimal record; the tests format it themselves. */
function record(message: string): LogRecord {
  return {
    category: ["pitifulnat", "test"],
    level: "info",
    message: [message],
    rawMessage: message,
    timestamp: Date.now(),
    properties: {},
  };
}

const format = (r: LogRecord) => `${r.message[0]}\n`;

async function withTempDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pitifulnat-log-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function readOrNull(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

Deno.test("rotatingFileSink rotates by size, keeps N files, never splits a line", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/app.log`;
    const fallback: LogRecord[] = [];
    const sink = rotatingFileSink(path, {
      maxBytes: 100,
      keep: 3,
      format,
      fallback: (r) => fallback.push(r),
    });
    const lines: string[] = [];
    for (let i = 0; i < 60; i++) {
      const line = `line ${String(i).padStart(3, "0")} ${"x".repeat(i % 7)}`;
      lines.push(line);
      sink(record(line));
    }
    sink[Symbol.dispose]();
    assert.deepEqual(fallback, []);
    const files = [`${path}.3`, `${path}.2`, `${path}.1`, path].map(readOrNull);
    assert.equal(readOrNull(`${path}.4`), null, "only keep=3 rotated files");
    for (const text of files) {
      assert.ok(text !== null);
      assert.ok(text.length <= 100, `file of ${text.length} bytes`);
      assert.ok(text.endsWith("\n"), "a file ends on a whole line");
    }
    // Oldest to newest, the files hold the newest lines in order, whole.
    const kept = files.join("").split("\n").slice(0, -1);
    assert.ok(kept.length > 10, `kept ${kept.length} lines`);
    assert.deepEqual(kept, lines.slice(lines.length - kept.length));
  });
});

Deno.test("rotatingFileSink continues an existing file and counts its size", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/app.log`;
    Deno.writeTextFileSync(path, "a".repeat(95) + "\n");
    const sink = rotatingFileSink(path, { maxBytes: 100, keep: 2, format });
    sink(record("next"));
    sink[Symbol.dispose]();
    assert.equal(Deno.readTextFileSync(`${path}.1`), "a".repeat(95) + "\n");
    assert.equal(Deno.readTextFileSync(path), "next\n");
  });
});

Deno.test("rotatingFileSink gives an oversized line a file of its own; keep 0 keeps none", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/app.log`;
    const sink = rotatingFileSink(path, { maxBytes: 10, keep: 0, format });
    sink(record("short"));
    sink(record("a line longer than ten bytes"));
    sink(record("tail"));
    sink[Symbol.dispose]();
    assert.equal(Deno.readTextFileSync(path), "tail\n");
    assert.equal(readOrNull(`${path}.1`), null);
  });
});

Deno.test("rotatingFileSink falls back when the file cannot be written, then recovers", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/missing/app.log`;
    const fallback: string[] = [];
    const sink = rotatingFileSink(path, {
      maxBytes: 1000,
      keep: 2,
      format,
      fallback: (r) => fallback.push(String(r.message[0])),
    });
    sink(record("one"));
    Deno.mkdirSync(`${dir}/missing`);
    sink(record("two"));
    sink[Symbol.dispose]();
    assert.deepEqual(fallback, ["one"]);
    assert.equal(Deno.readTextFileSync(path), "two\n");
  });
});

Deno.test("rotatingFileSink: a failing rotation sends lines to the fallback, file stays bounded", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/app.log`;
    // A non-empty directory where the rotated file must go: rename fails.
    Deno.mkdirSync(`${path}.1/blocker`, { recursive: true });
    const fallback: string[] = [];
    const sink = rotatingFileSink(path, {
      maxBytes: 20,
      keep: 1,
      format,
      fallback: (r) => fallback.push(String(r.message[0])),
    });
    for (const word of ["aaaaaaaa", "bbbbbbbb", "cccccccc", "dddddddd"]) sink(record(word));
    sink[Symbol.dispose]();
    assert.equal(Deno.readTextFileSync(path), "aaaaaaaa\nbbbbbbbb\n");
    assert.deepEqual(fallback, ["cccccccc", "dddddddd"]);
  });
});

Deno.test("rotateFiles shifts numbered files up and drops the oldest", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/x.log`;
    Deno.writeTextFileSync(path, "0");
    Deno.writeTextFileSync(`${path}.1`, "1");
    Deno.writeTextFileSync(`${path}.2`, "2");
    rotateFiles(path, 2);
    assert.equal(readOrNull(path), null);
    assert.equal(readOrNull(`${path}.1`), "0");
    assert.equal(readOrNull(`${path}.2`), "1");
    assert.equal(readOrNull(`${path}.3`), null);
  });
});

Deno.test("setupLogging writes greppable lines to the rotated file and reconfigures", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/pitifulnat.log`;
    try {
      await setupLogging({ level: "info", file: path, max_bytes: 4096, keep: 2 });
      const log = getLogger(["pitifulnat", "test"]);
      log.debug("hidden at level info");
      for (let i = 0; i < 40; i++) {
        log.info("transfer user={user} dir={dir} path={path} bytes={bytes} result={result}", {
          user: "alice",
          dir: "out",
          path: `/f${i}.bin`,
          bytes: i * 1000,
          result: "ok",
        });
      }
      // A reload: the first file is closed (the test's resource check
      // would catch a leak) and logging goes on in the same file.
      await setupLogging({ level: "debug", file: path, max_bytes: 4096, keep: 2 });
      getLogger(["pitifulnat", "test"]).debug("shown at level debug");
    } finally {
      await reset();
    }
    const text = (readOrNull(`${path}.1`) ?? "") + Deno.readTextFileSync(path);
    assert.ok(readOrNull(`${path}.1`) !== null, "40 lines of ~130 bytes exceed 4096: rotated");
    assert.ok(!text.includes("hidden at level info"));
    assert.ok(text.includes("shown at level debug"));
    assert.match(text, /^.* transfer user=alice dir=out path=\/f39\.bin bytes=39000 result=ok$/m);
    for (const name of [path, `${path}.1`]) {
      assert.ok(Deno.statSync(name).size <= 4096);
    }
  });
});

Deno.test("a line about a client ends in its peer address, unless the message names it", () => {
  const withPeer = (rawMessage: string, message: unknown[]): LogRecord => ({
    ...record(""),
    rawMessage,
    message,
    properties: { session: "s1", peer: "[2001:db8::7]:40602", user: "bob" },
  });
  const failed = formatLine(
    withPeer("session {session}: login failed", ["session ", "s1", ": login failed"]),
  );
  assert.match(
    failed,
    /\[INF\] pitifulnat·test: session s1: login failed peer=\[2001:db8::7\]:40602\n$/,
  );
  const named = formatLine(
    withPeer("opened from {peer}", ["opened from ", "[2001:db8::7]:40602", ""]),
  );
  assert.doesNotMatch(named, /peer=/);
  assert.doesNotMatch(formatLine(record("no client here")), /peer=/);
});

Deno.test("formatLine's fast path writes exactly LogTape's text line, escapes and all", async () => {
  const { configure, getTextFormatter } = await import("@logtape/logtape");
  // The formatter the fast path stands in for: LogTape's, UTC timestamps, plain values.
  const reference = getTextFormatter({
    timestamp: "date-time-tz",
    value: (v: unknown) => typeof v === "string" ? v : JSON.stringify(v) ?? String(v),
  });
  const templates = [
    "transfer user={user} dir={direction} path={what} bytes={bytes} result={result}",
    "login failed addr={addr} user={user}",
    "plain text, no placeholders",
    "{a}{b} adjacent, {c} at the end {d}",
    "escaped {{braces}} and {user}",
    "non-ASCII \u2018quotes\u2019 {user}",
    "control \u0007 char {user}",
    "a {missing} property",
  ];
  const values: unknown[] = [
    "alice",
    "x addr=6.6.6.6 user=y",
    "",
    42,
    0.5,
    null,
    undefined,
    { k: [1, "two"] },
    "tab\there",
    "new\nline",
    "\u00e9",
    true,
  ];
  const levels = ["debug", "info", "warning", "error", "fatal"] as const;
  // Times across second, minute and year boundaries, and the millisecond paddings.
  const times = [0, 999, 1000, 1_767_225_599_999, 1_767_225_600_000, 1_767_225_600_007, 5.5];
  // Records as LogTape itself makes them (message parts and all), caught by a sink.
  const caught: LogRecord[] = [];
  await configure({
    sinks: { catch: (r: LogRecord) => void caught.push(r) },
    loggers: [
      { category: ["logtape", "meta"], lowestLevel: "fatal", sinks: [] },
      { category: ["pitifulnat"], lowestLevel: "debug", sinks: ["catch"] },
    ],
    reset: true,
  });
  try {
    const log = getLogger(["pitifulnat", "ftp"]);
    for (const template of templates) {
      for (const value of values) {
        for (const level of levels) {
          log[level](template, {
            user: value,
            direction: "out",
            what: value,
            bytes: 16384,
            result: "ok",
            addr: "192.0.2.1",
            a: value,
            b: 1,
            c: value,
            d: "z",
          });
        }
      }
    }
  } finally {
    await reset();
  }
  assert.equal(caught.length, templates.length * values.length * levels.length);
  for (const r of caught) {
    for (const timestamp of times) {
      const at = { ...r, timestamp };
      assert.equal(formatLine(at), reference(at), `${String(r.rawMessage)} at ${timestamp}`);
    }
  }
});
