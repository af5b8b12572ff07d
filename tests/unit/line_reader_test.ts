import assert from "node:assert/strict";
import { type ControlLine, readLines } from "../../src/ftp/line_reader.ts";

function reader(chunks: Uint8Array[]) {
  let i = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      if (i >= chunks.length) return Promise.resolve(null);
      const c = chunks[i++];
      p.set(c);
      return Promise.resolve(c.length);
    },
  };
}

async function collect(chunks: Uint8Array[], maxLength = 64): Promise<ControlLine[]> {
  const out: ControlLine[] = [];
  for await (const l of readLines(reader(chunks), { maxLength })) out.push(l);
  return out;
}

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("lines split across chunks, CRLF and bare LF", async () => {
  const got = await collect([enc("US"), enc("ER a\r\nPA"), enc("SS b\nNOOP\r\n")]);
  assert.deepEqual(got, [
    { kind: "line", text: "USER a" },
    { kind: "line", text: "PASS b" },
    { kind: "line", text: "NOOP" },
  ]);
});

Deno.test("an over-long line is reported once and skipped; the next line is read", async () => {
  const long = "X".repeat(200);
  const got = await collect([enc(long.slice(0, 100)), enc(long.slice(100) + "\r\nNOOP\r\n")]);
  assert.deepEqual(got, [{ kind: "too-long" }, { kind: "line", text: "NOOP" }]);
  const oneChunk = await collect([enc("Y".repeat(100) + "\r\nPWD\r\n")]);
  assert.deepEqual(oneChunk, [{ kind: "too-long" }, { kind: "line", text: "PWD" }]);
});

Deno.test("invalid UTF-8 is reported, valid UTF-8 decoded, Telnet removed", async () => {
  const got = await collect([
    new Uint8Array([0xff, 0xf4, 0xff, 0xf2, ...enc("ABOR\r\n")]),
    new Uint8Array([0x43, 0x57, 0x44, 0x20, 0xc3, 0x28, 0x0d, 0x0a]),
    enc("CWD 日本語\r\n"),
  ]);
  assert.deepEqual(got, [
    { kind: "line", text: "ABOR" },
    { kind: "bad-utf8" },
    { kind: "line", text: "CWD 日本語" },
  ]);
});

Deno.test("a bare CR ends a line (urgent ABOR loses its LF); CR LF split across reads is one end", async () => {
  const got = await collect([enc("ABOR\r"), enc("\nNOOP\r"), enc("PWD\r\n")]);
  assert.deepEqual(got, [
    { kind: "line", text: "ABOR" },
    { kind: "line", text: "NOOP" },
    { kind: "line", text: "PWD" },
  ]);
});

Deno.test("readCommands: an urgent ABOR is answered at once and its line dropped once", async () => {
  const { readCommands } = await import("../../src/ftp/line_reader.ts");
  const out: unknown[] = [];
  const chunks = [
    new Uint8Array([0xff, 0xf4, 0xff, ...enc("AB")]), // IAC IP IAC, line not complete
    enc("OR\r\n"),
    enc("ABOR\r\nNOOP\r\n"),
  ];
  for await (const l of readCommands(reader(chunks), { maxLength: 64 })) out.push(l);
  assert.deepEqual(out, [
    { kind: "line", text: "ABOR" },
    { kind: "line", text: "ABOR" },
    { kind: "line", text: "NOOP" },
  ]);
});
