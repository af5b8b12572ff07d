/**
 * Property-based tests (fast-check) of every piece that reads bytes from the
 * network or paths from a client: the command parser, the reply formatter,
 * the data-address codecs, Telnet stripping, the line reader, virtual path
 * resolution and the jail on a real directory tree. Each property runs a
 * bounded number of times with a fixed seed, so a failure reproduces.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  encodeEprt,
  encodeHostPort,
  epsvReplyText,
  formatReply,
  parseCommand,
  parseEprt,
  parseEpsvArg,
  parseEpsvReply,
  parsePasvReply,
  parsePort,
  pasvReplyText,
  stripTelnet,
} from "../../src/ftp/codec.ts";
import { type ControlLine, readLines } from "../../src/ftp/line_reader.ts";
import { Jail, MAX_NAME_BYTES, PathError, resolveVirtual } from "../../src/fs/jail.ts";

/** Same seed every run: a failure is reproducible; numRuns keeps each property fast. */
const RUNS = { numRuns: 1000, seed: 20240611 };
const IAC = 255;
const enc = new TextEncoder();

/** Any string, including lone surrogates, CR, LF, NUL and astral characters. */
const anyString = fc.oneof(
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.string({ maxLength: 200 }),
  fc.array(fc.constantFrom("\r", "\n", "\0", " ", "\t", "\ud800", "|", ",", "(", ")", "1", "A"), {
    maxLength: 40,
  }).map((a) => a.join("")),
);

const port = fc.integer({ min: 1, max: 65535 });
const hostPort4 = fc.record({ host: fc.ipV4(), port });

Deno.test("fuzz parseCommand: never throws; verb has no space and is upper case; arg kept", () => {
  fc.assert(
    fc.property(anyString, (line) => {
      const { verb, arg } = parseCommand(line);
      assert.ok(!verb.includes(" "));
      assert.equal(verb, verb.toUpperCase());
      const trimmed = line.replace(/^[ \t]+/, "");
      if (trimmed.includes(" ")) assert.ok(trimmed.endsWith(" " + arg));
      else assert.equal(arg, "");
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.stringMatching(/^[A-Za-z]{3,4}$/), anyString, (verb, arg) => {
      assert.deepEqual(parseCommand(`${verb} ${arg}`), { verb: verb.toUpperCase(), arg });
    }),
    RUNS,
  );
});

Deno.test("fuzz formatReply: CRLF lines only, no bare CR/LF, one end line, text kept", () => {
  const text = fc.oneof(anyString, fc.array(anyString, { minLength: 1, maxLength: 6 }));
  fc.assert(
    fc.property(fc.integer({ min: 100, max: 599 }), text, (code, t) => {
      const out = formatReply(code, t);
      assert.ok(out.endsWith("\r\n"));
      const lines = out.slice(0, -2).split("\r\n");
      for (const l of lines) assert.ok(!/[\r\n]/.test(l), `bare CR/LF in ${JSON.stringify(l)}`);
      const input = typeof t === "string" ? t.split("\n") : t;
      assert.equal(lines.length, input.length);
      const last = lines[lines.length - 1];
      assert.ok(last.startsWith(`${code} `));
      if (lines.length > 1) {
        assert.ok(lines[0].startsWith(`${code}-`));
        // No middle line may look like the end of the reply (or another reply).
        for (const l of lines.slice(1, -1)) assert.ok(!/^\d{3}/.test(l), l);
      }
      // The words survive, with CR and LF turned into spaces.
      const clean = (s: string) => s.replace(/[\r\n]/g, " ");
      assert.equal(last.slice(4), clean(input[input.length - 1]));
      if (lines.length > 1) assert.equal(lines[0].slice(4), clean(input[0]));
    }),
    RUNS,
  );
});

Deno.test("fuzz PORT/PASV codecs: never throw on garbage; encode then parse round-trips", () => {
  const garbage = fc.oneof(
    anyString,
    fc.array(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: -5, max: 70000 })), {
      minLength: 5,
      maxLength: 7,
    }).map((a) => a.join(",")),
  );
  fc.assert(
    fc.property(garbage, (s) => {
      for (const hp of [parsePort(s), parsePasvReply(s)]) {
        if (hp === null) continue;
        assert.ok(hp.port >= 1 && hp.port <= 65535);
        assert.match(hp.host, /^\d{1,3}(\.\d{1,3}){3}$/);
        assert.ok(hp.host.split(".").every((o) => Number(o) <= 255));
      }
    }),
    RUNS,
  );
  fc.assert(
    fc.property(hostPort4, (hp) => {
      const want = { host: hp.host, port: hp.port };
      assert.deepEqual(parsePort(encodeHostPort(want)), want);
      assert.deepEqual(parsePasvReply(`227 ${pasvReplyText(want)}`), want);
    }),
    RUNS,
  );
});

Deno.test("fuzz EPRT/EPSV codecs: never throw on garbage; encode then parse round-trips", () => {
  fc.assert(
    fc.property(anyString, (s) => {
      const e = parseEprt(s);
      if (e !== null && e !== "family") {
        assert.ok(e.port >= 1 && e.port <= 65535);
        assert.ok(e.family === 1 || e.family === 2);
      }
      const p = parseEpsvReply(s);
      if (p !== null) assert.ok(Number.isInteger(p) && p >= 1 && p <= 65535);
      assert.ok(["all", "any", 1, 2, "family", null].includes(parseEpsvArg(s)));
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), port, (host, p) => {
      const family = host.includes(":") ? 2 : 1;
      assert.deepEqual(parseEprt(encodeEprt({ host, port: p })), { family, host, port: p });
      assert.equal(parseEpsvReply(`229 ${epsvReplyText(p)}`), p);
    }),
    RUNS,
  );
  // RFC 2428: any delimiter in 33-126 that cannot appear in the fields.
  const delimiter = fc.integer({ min: 33, max: 126 }).map((c) => String.fromCharCode(c))
    .filter((d) => !/[0-9.]/.test(d));
  fc.assert(
    fc.property(delimiter, hostPort4, (d, hp) => {
      const arg = `${d}1${d}${hp.host}${d}${hp.port}${d}`;
      assert.deepEqual(parseEprt(arg), { family: 1, host: hp.host, port: hp.port });
    }),
    RUNS,
  );
  fc.assert(
    fc.property(fc.integer({ min: 3, max: 99 }), (fam) => {
      assert.equal(parseEprt(`|${fam}|x|5000|`), "family");
      assert.equal(parseEpsvArg(String(fam)), "family");
    }),
    { numRuns: 100 },
  );
});

/** Doubles every IAC byte, as a Telnet sender must. */
function escapeIac(bytes: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (const b of bytes) {
    out.push(b);
    if (b === IAC) out.push(IAC);
  }
  return new Uint8Array(out);
}

/** A Telnet command that carries no data: option negotiation or a two-byte command. */
const telnetCommand = fc.oneof(
  fc.tuple(fc.integer({ min: 251, max: 254 }), fc.integer({ min: 0, max: 255 })).map((
    [c, o],
  ) => [IAC, c, o]),
  // IAC IP is left out: a DM byte right after it is taken as the Synch (tested below).
  fc.integer({ min: 240, max: 249 }).filter((c) => c !== 244).map((c) => [IAC, c]),
);

Deno.test("fuzz stripTelnet: never throws; IAC IAC and negotiations decode to the data", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const out = stripTelnet(bytes);
      assert.ok(out.length <= bytes.length);
      if (bytes.indexOf(IAC) < 0) assert.equal(out, bytes);
    }),
    RUNS,
  );
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }),
      fc.array(fc.tuple(fc.nat(), telnetCommand), { maxLength: 5 }),
      (data, inserts) => {
        const escaped = [...escapeIac(data)];
        // Insert commands only between escaped units, never inside an IAC IAC pair.
        const units: number[][] = [];
        for (let i = 0; i < escaped.length; i++) {
          if (escaped[i] === IAC) units.push([IAC, escaped[++i]]);
          else units.push([escaped[i]]);
        }
        for (const [at, cmd] of inserts) units.splice(at % (units.length + 1), 0, cmd);
        const wire = new Uint8Array(units.flat());
        assert.deepEqual([...stripTelnet(wire)], [...data]);
      },
    ),
    RUNS,
  );
  // The urgent ABOR forms: IAC IP with IAC DM in band, or with only DM left in band.
  fc.assert(
    fc.property(fc.constantFrom([IAC, 244, IAC, 242], [IAC, 244, 242], [IAC, 244, IAC]), (pre) => {
      const got = stripTelnet(new Uint8Array([...pre, ...enc.encode("ABOR")]));
      assert.equal(new TextDecoder().decode(got), "ABOR");
    }),
    { numRuns: 10 },
  );
});

/** A reader that hands out `bytes` in chunks cut at the given points. */
function chunkedReader(bytes: Uint8Array, cuts: number[]) {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let last = 0;
  for (const p of [...points, bytes.length]) {
    if (p > last) chunks.push(bytes.subarray(last, p));
    last = p;
  }
  let i = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      if (i >= chunks.length) return Promise.resolve(null);
      // The reader's buffer is 4096 bytes; split a larger chunk.
      const c = chunks[i];
      const n = Math.min(c.length, p.length);
      p.set(c.subarray(0, n));
      if (n < c.length) chunks[i] = c.subarray(n);
      else i++;
      return Promise.resolve(n);
    },
  };
}

async function collect(
  reader: { read(p: Uint8Array): Promise<number | null> },
  maxLength: number,
): Promise<ControlLine[]> {
  const out: ControlLine[] = [];
  for await (const l of readLines(reader, { maxLength })) out.push(l);
  return out;
}

Deno.test("fuzz line reader: any chunking gives the same lines; long lines reported once", async () => {
  // Valid UTF-8 never contains byte 255, so no Telnet stripping applies here.
  const lineText = fc.string({ unit: "binary", maxLength: 80 }).filter((s) => !/[\r\n]/.test(s));
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(lineText, fc.constantFrom("\r\n", "\n")), { maxLength: 12 }),
      fc.array(fc.nat(), { maxLength: 12 }),
      fc.integer({ min: 8, max: 120 }),
      fc.string({ maxLength: 20 }).filter((s) => !/[\r\n]/.test(s)),
      async (lines, cuts, maxLength, tail) => {
        const wire = enc.encode(lines.map(([l, end]) => l + end).join("") + tail);
        const got = await collect(chunkedReader(wire, cuts), maxLength);
        const want: ControlLine[] = lines.map(([text]) =>
          enc.encode(text).length > maxLength ? { kind: "too-long" } : { kind: "line", text }
        );
        // An unterminated tail is never reported as a line.
        if (got.length === want.length + 1) assert.deepEqual(got.at(-1), { kind: "too-long" });
        assert.deepEqual(got.slice(0, want.length), want);
      },
    ),
    { ...RUNS, numRuns: 500 },
  );
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 600 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      async (bytes, cuts) => {
        const got = await collect(chunkedReader(bytes, cuts), 64);
        for (const item of got) {
          if (item.kind !== "line") continue;
          assert.ok(!item.text.includes("\n"));
          assert.ok(enc.encode(item.text).length <= 64);
        }
        // At most one item per line end (and one for an over-long unterminated tail),
        // and at most one "urgent" per line.
        const ends = bytes.filter((b) => b === 10 || b === 13).length;
        assert.ok(got.filter((g) => g.kind !== "urgent").length <= ends + 1);
        assert.ok(got.filter((g) => g.kind === "urgent").length <= ends + 1);
      },
    ),
    { ...RUNS, numRuns: 500 },
  );
});

Deno.test("fuzz line reader: an urgent ABOR cut after IAC IP is reported before its line", async () => {
  // What reaches the reader of each client's urgent ABOR (the urgent byte
  // itself is taken out of band): lftp, BSD ftp (DM left in band), all inline.
  const forms: [number[], number[]][] = [
    [[IAC, 244, IAC], []],
    [[IAC, 244], [242]],
    [[IAC, 244, IAC, 242], []],
  ];
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...forms), fc.nat({ max: 6 }), async ([pre, dm], extra) => {
      const wire = new Uint8Array([...pre, ...dm, ...enc.encode("ABOR\r\n")]);
      // The read stops at the urgent mark, and perhaps again later in the line.
      const got = await collect(chunkedReader(wire, [pre.length, pre.length + extra]), 64);
      assert.deepEqual(got, [{ kind: "urgent" }, { kind: "line", text: "ABOR" }]);
    }),
    { numRuns: 60 },
  );
});

/** Path arguments built from the parts an attacker would use. */
const pathArg = fc.array(
  fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom("..", ".", "", "a", "b", "\\..", "...", "..\\..") },
    { weight: 1, arbitrary: fc.constantFrom("x\0y", "x\ny", "é", "\ud800", "%2e%2e") },
    { weight: 1, arbitrary: fc.constant("n".repeat(MAX_NAME_BYTES + 1)) },
    { weight: 2, arbitrary: fc.string({ maxLength: 8 }) },
  ),
  { maxLength: 12 },
).chain((parts) => fc.boolean().map((abs) => (abs ? "/" : "") + parts.join("/")));

function checkVirtual(result: string): void {
  assert.ok(result.startsWith("/"), result);
  if (result === "/") return;
  const segments = result.slice(1).split("/");
  assert.ok(segments.every((s) => s !== "" && s !== "." && s !== ".."), result);
}

Deno.test("fuzz resolveVirtual: only PathError; absolute, normalized, no '..' segment", () => {
  fc.assert(
    fc.property(pathArg, pathArg, (cwdArg, arg) => {
      let cwd: string;
      try {
        cwd = resolveVirtual("/", cwdArg);
      } catch (e) {
        assert.ok(e instanceof PathError, String(e));
        return;
      }
      checkVirtual(cwd);
      let result: string;
      try {
        result = resolveVirtual(cwd, arg);
      } catch (e) {
        assert.ok(e instanceof PathError, String(e));
        assert.equal(e.code, 501);
        return;
      }
      checkVirtual(result);
      assert.equal(resolveVirtual("/", result), result, "normalizing twice changes nothing");
      if (arg.startsWith("/")) assert.equal(resolveVirtual("/", arg), result);
    }),
    { ...RUNS, numRuns: 2000 },
  );
});

/** Whether `real` is `root` or below it. */
function inside(root: string, real: string): boolean {
  return real === root || real.startsWith(root + "/");
}

Deno.test("fuzz Jail.resolve: on a tree with hostile symlinks, never a path outside the root", async () => {
  const base = await Deno.realPath(await Deno.makeTempDir({ prefix: "pn-fuzz-jail-" }));
  const home = `${base}/home`;
  const outside = `${base}/outside`;
  try {
    await Deno.mkdir(`${home}/dir/sub`, { recursive: true });
    await Deno.mkdir(outside);
    await Deno.writeTextFile(`${home}/dir/file.txt`, "in");
    await Deno.writeTextFile(`${outside}/secret.txt`, "out");
    await Deno.symlink(outside, `${home}/escape`);
    await Deno.symlink(`${outside}/secret.txt`, `${home}/secret_link`);
    await Deno.symlink(`${outside}/nothing`, `${home}/dangling_out`);
    await Deno.symlink("../..", `${home}/dir/sub/up2`);
    await Deno.symlink("../../..", `${home}/dir/sub/up3`);
    await Deno.symlink("dir/file.txt", `${home}/inside_link`);
    await Deno.symlink("..", `${home}/dir/parent`);
    await Deno.symlink("loop_b", `${home}/loop_a`);
    await Deno.symlink("loop_a", `${home}/loop_b`);
    const jail = new Jail(home);
    await jail.init();
    const names = [
      "..",
      ".",
      "dir",
      "sub",
      "file.txt",
      "escape",
      "secret_link",
      "secret.txt",
      "dangling_out",
      "up2",
      "up3",
      "parent",
      "inside_link",
      "loop_a",
      "missing",
      "outside",
      "home",
    ];
    const virtualPath = fc.array(fc.constantFrom(...names), { maxLength: 8 }).map((p) =>
      "/" + p.join("/")
    );
    const mode = fc.constantFrom<{ mustExist?: boolean; forCreate?: boolean }>(
      {},
      { mustExist: true },
      { forCreate: true },
    );
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(virtualPath, mode, async (vpath, options) => {
        let real: string;
        try {
          real = await jail.resolve(vpath, options);
        } catch (e) {
          assert.ok(e instanceof PathError, `${vpath}: ${e}`);
          return;
        }
        accepted++;
        assert.ok(inside(home, real), `${vpath} -> ${real}`);
        const parent = real.slice(0, real.lastIndexOf("/")) || "/";
        if (real !== home) assert.ok(inside(home, await Deno.realPath(parent)), real);
        const target = await Deno.realPath(real).catch(() => null);
        if (target !== null) assert.ok(inside(home, target), `${vpath} -> ${real} -> ${target}`);
        else {
          // Only a name to create may be missing, and it must not be a symlink.
          assert.equal(options.forCreate, true, vpath);
          assert.equal(await Deno.lstat(real).catch(() => null), null, real);
        }
      }),
      { ...RUNS, numRuns: 800 },
    );
    assert.ok(accepted > 50, `too few accepted paths to mean anything: ${accepted}`);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
