import assert from "node:assert/strict";
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
  replyCode,
  stripTelnet,
} from "../../src/ftp/codec.ts";

Deno.test("parseCommand: verb upper-cased, argument kept verbatim", () => {
  assert.deepEqual(parseCommand("retr  a b.txt"), { verb: "RETR", arg: " a b.txt" });
  assert.deepEqual(parseCommand("NOOP"), { verb: "NOOP", arg: "" });
  assert.deepEqual(parseCommand("  pwd"), { verb: "PWD", arg: "" });
  assert.deepEqual(parseCommand("CWD 日本"), { verb: "CWD", arg: "日本" });
  assert.deepEqual(parseCommand(""), { verb: "", arg: "" });
});

Deno.test("formatReply: single and multi-line forms", () => {
  assert.equal(formatReply(200, "ok"), "200 ok\r\n");
  assert.equal(
    formatReply(211, ["Features:", " EPSV", "End"]),
    "211-Features:\r\n EPSV\r\n211 End\r\n",
  );
  // A middle line that starts with digits is indented so it cannot end the reply.
  assert.equal(formatReply(214, ["a", "214 x", "b"]), "214-a\r\n 214 x\r\n214 b\r\n");
  // CR and LF inside a text never split a reply.
  assert.equal(formatReply(550, ["bad\rname"]), "550 bad name\r\n");
});

Deno.test("PORT and 227 encoding round-trip", () => {
  assert.deepEqual(parsePort("127,0,0,1,156,64"), { host: "127.0.0.1", port: 40000 });
  assert.equal(encodeHostPort({ host: "203.0.113.7", port: 50001 }), "203,0,113,7,195,81");
  assert.equal(
    pasvReplyText({ host: "10.0.0.2", port: 50000 }),
    "Entering Passive Mode (10,0,0,2,195,80).",
  );
  assert.deepEqual(parsePasvReply("Entering Passive Mode (10,0,0,2,195,80)."), {
    host: "10.0.0.2",
    port: 50000,
  });
  for (
    const bad of ["1,2,3,4,5", "1,2,3,4,5,6,7", "256,0,0,1,1,1", "a,b,c,d,e,f", "1,2,3,4,0,0", ""]
  ) {
    assert.equal(parsePort(bad), null, bad);
  }
  assert.throws(() => encodeHostPort({ host: "::1", port: 1 }));
});

Deno.test("EPRT and EPSV encoding", () => {
  assert.deepEqual(parseEprt("|1|132.235.1.2|6275|"), {
    family: 1,
    host: "132.235.1.2",
    port: 6275,
  });
  assert.deepEqual(parseEprt("|2|::1|40000|"), { family: 2, host: "::1", port: 40000 });
  assert.deepEqual(parseEprt("!1!10.0.0.1!2000!"), { family: 1, host: "10.0.0.1", port: 2000 });
  assert.equal(parseEprt("|3|x|1|"), "family");
  for (
    const bad of [
      "|1|1.2.3|5|",
      "|1|1.2.3.4|0|",
      "|1|1.2.3.4|70000|",
      "|2|zz|5|",
      "1|1.2.3.4|5|",
      "",
    ]
  ) {
    assert.equal(parseEprt(bad), null, bad);
  }
  assert.equal(encodeEprt({ host: "::1", port: 5 }), "|2|::1|5|");
  assert.equal(encodeEprt({ host: "1.2.3.4", port: 5 }), "|1|1.2.3.4|5|");
  assert.equal(epsvReplyText(50000), "Entering Extended Passive Mode (|||50000|)");
  assert.equal(parseEpsvReply("Entering Extended Passive Mode (|||50000|)"), 50000);
  assert.equal(parseEpsvReply("Entering Extended Passive Mode (|||0|)"), null);
  assert.equal(parseEpsvArg(""), "any");
  assert.equal(parseEpsvArg("all"), "all");
  assert.equal(parseEpsvArg("1"), 1);
  assert.equal(parseEpsvArg("2"), 2);
  assert.equal(parseEpsvArg("7"), "family");
  assert.equal(parseEpsvArg("x"), null);
});

Deno.test("stripTelnet: IAC sequences removed, IAC IAC kept as one byte", () => {
  const b = (...x: number[]) => new Uint8Array(x);
  const text = new TextEncoder().encode("ABOR");
  // IAC IP IAC DM ABOR (urgent form, DM delivered inline)
  assert.deepEqual(stripTelnet(b(255, 244, 255, 242, ...text)), text);
  // DM taken out of band: IAC IP IAC ABOR
  assert.deepEqual(stripTelnet(b(255, 244, 255, ...text)), text);
  assert.deepEqual(stripTelnet(b(65, 255, 255, 66)), b(65, 255, 66));
  assert.deepEqual(stripTelnet(b(255, 251, 1, 65)), b(65)); // IAC WILL ECHO
  assert.deepEqual(stripTelnet(b(255, 250, 24, 0, 255, 240, 65)), b(65)); // subnegotiation
  const plain = b(1, 2, 3);
  assert.equal(stripTelnet(plain), plain);
});

Deno.test("replyCode", () => {
  assert.equal(replyCode("226 done"), 226);
  assert.equal(replyCode("211-Features"), 211);
  assert.equal(replyCode(" EPSV"), null);
});
