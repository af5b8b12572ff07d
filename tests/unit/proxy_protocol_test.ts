/**
 * The proxy's pure control-channel pieces: command classification, reply
 * grouping, the FEAT filter and the final-reply decision.
 */
import assert from "node:assert/strict";
import {
  classifyCommand,
  filterFeatReply,
  finalReplyFor,
  isPreliminary,
  type Reply,
  ReplyAssembler,
  ReplyError,
  replyWire,
  TRANSFER_COMMANDS,
} from "../../src/proxy/protocol.ts";

Deno.test("classifyCommand: address carriers, transfers, refusals, the rest forwarded", () => {
  const cases: [string, string][] = [
    ["PASV", "pasv"],
    ["EPSV", "epsv"],
    ["PORT", "port"],
    ["EPRT", "eprt"],
    ["ABOR", "abort"],
    ["REST", "rest"],
    ["AUTH", "refuse"],
    ["LPRT", "refuse"],
    ["LPSV", "refuse"],
    ["USER", "forward"],
    ["SITE", "forward"],
    ["XYZZY", "forward"],
  ];
  for (const verb of ["RETR", "STOR", "APPE", "STOU", "LIST", "NLST", "MLSD"]) {
    cases.push([verb, "transfer"]);
  }
  for (const [verb, action] of cases) assert.equal(classifyCommand(verb), action, verb);
  assert.equal(TRANSFER_COMMANDS.get("RETR"), "download");
  assert.equal(TRANSFER_COMMANDS.get("MLSD"), "download");
  assert.equal(TRANSFER_COMMANDS.get("STOU"), "upload");
  assert.equal(TRANSFER_COMMANDS.get("APPE"), "upload");
});

Deno.test("ReplyAssembler: single-line replies come out at once", () => {
  const a = new ReplyAssembler();
  assert.deepEqual(a.push("200 NOOP ok."), { code: 200, lines: ["200 NOOP ok."] });
  assert.deepEqual(a.push("150 Opening"), { code: 150, lines: ["150 Opening"] });
  assert.deepEqual(a.push("221"), { code: 221, lines: ["221"] }, "a bare code is a reply");
  assert.equal(a.inside, false);
});

Deno.test("ReplyAssembler: a multi-line reply ends only at its own code and a space", () => {
  const a = new ReplyAssembler();
  const lines = [
    "220-Welcome",
    "220-220 looks like an end but has a dash",
    " 220 indented",
    "230 another code",
    "",
    "220 ",
  ];
  for (const line of lines.slice(0, -1)) {
    assert.equal(a.push(line), null, line);
    assert.equal(a.inside, true);
  }
  const reply = a.push(lines.at(-1)!)!;
  assert.deepEqual(reply, { code: 220, lines });
  assert.equal(replyWire(reply), lines.map((l) => l + "\r\n").join(""));
  assert.equal(a.inside, false);
});

Deno.test("ReplyAssembler: a line that is no reply is an error, not a guess", () => {
  for (const bad of ["hello", "20 short", "2000 long", "099 low", "600 high", "abc-def"]) {
    assert.throws(() => new ReplyAssembler().push(bad), ReplyError, bad);
  }
});

Deno.test("ReplyAssembler: a never-ending multi-line reply is cut off", () => {
  const a = new ReplyAssembler({ maxLines: 5 });
  assert.equal(a.push("211-start"), null);
  for (let i = 0; i < 3; i++) assert.equal(a.push(` line ${i}`), null);
  assert.throws(() => a.push(" line 4"), ReplyError);
  assert.equal(a.inside, false);
});

Deno.test("isPreliminary: only 1xx", () => {
  assert.equal(isPreliminary({ code: 150, lines: [] }), true);
  assert.equal(isPreliminary({ code: 125, lines: [] }), true);
  assert.equal(isPreliminary({ code: 226, lines: [] }), false);
  assert.equal(isPreliminary({ code: 425, lines: [] }), false);
});

Deno.test("filterFeatReply drops AUTH, PBSZ and PROT, keeps the rest as it was", () => {
  const feat: Reply = {
    code: 211,
    lines: ["211-Features:", " AUTH TLS", " EPSV", " PBSZ", " PROT", " REST STREAM", "211 End"],
  };
  assert.deepEqual(filterFeatReply(feat).lines, [
    "211-Features:",
    " EPSV",
    " REST STREAM",
    "211 End",
  ]);
  const none: Reply = { code: 211, lines: ["211-Features:", " AUTH SSL", "211 End"] };
  assert.deepEqual(filterFeatReply(none).lines, ["211-Features:", "211 End"]);
  const refused: Reply = { code: 500, lines: ["500 FEAT not understood"] };
  assert.equal(filterFeatReply(refused), refused);
});

Deno.test("finalReplyFor: the upstream's word stands unless the relay broke", () => {
  const ok: Reply = { code: 226, lines: ["226 Transfer complete."] };
  const failed: Reply = { code: 426, lines: ["426 Failure writing network stream."] };
  assert.equal(finalReplyFor(ok, "ok"), ok);
  assert.equal(finalReplyFor(ok, "aborted"), ok, "the transfer may have ended before ABOR");
  assert.equal(finalReplyFor(failed, "client-failed"), failed);
  assert.equal(finalReplyFor(failed, "stalled"), failed);
  assert.deepEqual(finalReplyFor(ok, "client-failed"), {
    code: 426,
    text: "Connection closed; transfer aborted",
  });
  assert.deepEqual(finalReplyFor(ok, "upstream-failed"), {
    code: 426,
    text: "Connection closed; transfer aborted",
  });
  assert.deepEqual(finalReplyFor(ok, "stalled"), {
    code: 426,
    text: "Data connection timed out; transfer aborted",
  });
});
