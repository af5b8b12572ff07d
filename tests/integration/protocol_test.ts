/**
 * Exact protocol behaviour over a raw control connection: reply codes for
 * bad input, the jail, PASV/PORT rules (passive listeners accept only the
 * control peer, active mode connects only to it), FEAT/HELP/STAT, REST,
 * STOU, LIST options and ABOR during a transfer.
 */
import assert from "node:assert/strict";
import { SPARE_LISTENER_MS } from "../../src/ftp/data_setup.ts";
import { RawClient, type Reply } from "../helpers/raw.ts";
import { PASSWORD, run, startServer, type TestServer, USER } from "../helpers/server.ts";

const PASV_RE = /^227 Entering Passive Mode \((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)\.$/;

/** Starts a server and a logged-in raw client; `fn` runs with both, then both close. */
async function withSession(
  fn: (c: RawClient, srv: TestServer) => Promise<void>,
  options: { login?: boolean } = {},
): Promise<void> {
  const srv = await startServer();
  let c: RawClient | undefined;
  try {
    const [client, greeting] = await RawClient.connect("127.0.0.1", srv.port);
    c = client;
    assert.equal(greeting.code, 220);
    if (options.login !== false) await c.login(USER, PASSWORD);
    await fn(c, srv);
  } finally {
    c?.close();
    await srv.close();
  }
}

/** Sends PASV, checks the reply's exact form and connects to the announced port. */
async function pasvConnect(c: RawClient): Promise<Deno.TcpConn> {
  const r = await c.cmd("PASV");
  const m = PASV_RE.exec(r.text);
  assert.ok(m, `unexpected PASV reply: ${r.text}`);
  const host = m.slice(1, 5).join(".");
  const port = Number(m[5]) * 256 + Number(m[6]);
  return await Deno.connect({ hostname: host, port });
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* closed */ }
}

/** Reads a data connection to its end; closing it at the time limit fails the read. */
async function readAll(conn: Deno.Conn, timeoutMs = 10_000): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  const timer = setTimeout(() => closeQuietly(conn), timeoutMs);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
    }
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Sends a command whose data arrives over `conn`; returns preliminary, data and final reply. */
async function transfer(
  c: RawClient,
  conn: Deno.TcpConn,
  line: string,
): Promise<{ first: Reply; data: Uint8Array; last: Reply }> {
  const first = await c.cmd(line);
  if (first.code !== 150) {
    conn.close();
    return { first, data: new Uint8Array(0), last: first };
  }
  const data = await readAll(conn);
  return { first, data, last: await c.read() };
}

async function assertWorks(c: RawClient): Promise<void> {
  assert.equal((await c.cmd("NOOP")).code, 200);
  assert.equal((await c.cmd("PWD")).text, '257 "/" is the current directory');
}

Deno.test("unknown command 500, before login 530, missing argument 501", async () => {
  await withSession(async (c) => {
    assert.equal((await c.cmd("FOOBAR x")).code, 500);
    assert.equal((await c.cmd("")).code, 500);
    assert.equal((await c.cmd("PWD")).code, 530);
    assert.equal((await c.cmd("LIST")).code, 530);
    assert.equal((await c.cmd("RETR x")).code, 530);
    assert.equal((await c.cmd("PASS nobody-asked")).code, 503);
    assert.equal((await c.cmd("USER")).code, 501);
    await c.login(USER, PASSWORD);
    assert.equal((await c.cmd("CWD")).code, 501);
    assert.equal((await c.cmd("RETR")).code, 501);
    assert.equal((await c.cmd("MKD   ")).code, 501);
    assert.equal((await c.cmd("PWD extra")).code, 501);
    await assertWorks(c);
  }, { login: false });
});

Deno.test("TYPE, MODE and STRU: supported, not implemented, unknown", async () => {
  await withSession(async (c) => {
    assert.equal((await c.cmd("TYPE I")).code, 200);
    assert.equal((await c.cmd("TYPE A")).code, 200);
    assert.equal((await c.cmd("TYPE L 8")).code, 200);
    assert.equal((await c.cmd("TYPE X")).code, 501);
    assert.equal((await c.cmd("TYPE E")).code, 504);
    assert.equal((await c.cmd("MODE S")).code, 200);
    assert.equal((await c.cmd("MODE B")).code, 504);
    assert.equal((await c.cmd("MODE Q")).code, 501);
    assert.equal((await c.cmd("STRU F")).code, 200);
    assert.equal((await c.cmd("STRU R")).code, 504);
    assert.equal((await c.cmd("STRU Q")).code, 501);
  });
});

Deno.test("RNTO without RNFR 503; RNFR+RNTO renames; RNFR is forgotten after another command", async () => {
  await withSession(async (c, srv) => {
    await Deno.writeTextFile(`${srv.root}/a.txt`, "a");
    assert.equal((await c.cmd("RNTO b.txt")).code, 503);
    assert.equal((await c.cmd("RNFR a.txt")).code, 350);
    assert.equal((await c.cmd("NOOP")).code, 200);
    assert.equal((await c.cmd("RNTO b.txt")).code, 503);
    assert.equal((await c.cmd("RNFR a.txt")).code, 350);
    assert.equal((await c.cmd("RNTO b.txt")).code, 250);
    assert.equal(await Deno.readTextFile(`${srv.root}/b.txt`), "a");
    assert.equal((await c.cmd("RNFR missing")).code, 550);
  });
});

Deno.test("wrong password 530 while a session beside it keeps working", async () => {
  await withSession(async (good, srv) => {
    const [bad] = await RawClient.connect("127.0.0.1", srv.port);
    try {
      assert.equal((await bad.cmd(`USER ${USER}`)).code, 331);
      assert.equal((await bad.cmd("PASS not the password")).code, 530);
      assert.equal((await bad.cmd("PWD")).code, 530);
      assert.equal((await bad.cmd("USER nobody-here")).code, 331);
      assert.equal((await bad.cmd("PASS x")).code, 530);
      await assertWorks(good);
      // The failure that reaches max_login_failures ends the session.
      const { max_login_failures, max_login_failures_per_address } = srv.server.config.limits;
      const limit = Math.min(max_login_failures, max_login_failures_per_address);
      assert.ok(limit >= 3 && limit <= 10, `test assumes a small limit, got ${limit}`);
      for (let i = 3; i < limit; i++) {
        await bad.cmd(`USER ${USER}`);
        assert.equal((await bad.cmd("PASS wrong")).code, 530);
      }
      await bad.cmd(`USER ${USER}`);
      assert.equal((await bad.cmd("PASS wrong again")).code, 530);
      assert.equal((await bad.read()).code, 421);
      assert.ok(await bad.closedWithin(5_000));
      await assertWorks(good);
    } finally {
      bad.close();
    }
  });
});

Deno.test("a 100 KB line gets 500 and the session goes on", async () => {
  await withSession(async (c) => {
    const r = await c.cmd("NOOP " + "x".repeat(100 * 1024));
    assert.equal(r.code, 500);
    assert.match(r.text, /too long/);
    // Exactly one reply for the long line: the next reply belongs to NOOP.
    assert.equal((await c.cmd("NOOP")).text, "200 NOOP ok");
    await assertWorks(c);
  });
});

Deno.test("a bare CR ends a command; CR LF split across segments is one line end", async () => {
  await withSession(async (c) => {
    // Python's ftplib sends "ABOR\r\n" as urgent data; the LF then never arrives in band.
    await c.sendBytes(new TextEncoder().encode("NOOP\rSYST\r\n"));
    assert.equal((await c.read()).code, 200);
    assert.equal((await c.read()).code, 215);
    await c.sendBytes(new TextEncoder().encode("NOOP\r"));
    assert.equal((await c.read()).code, 200);
    await c.sendBytes(new TextEncoder().encode("\nPWD\r\n"));
    assert.equal((await c.read()).text, '257 "/" is the current directory');
    // Exactly one reply each: nothing more is pending.
    assert.equal((await c.cmd("NOOP")).code, 200);
  });
});

Deno.test("binary garbage gets 500/501 and the session goes on", async () => {
  await withSession(async (c) => {
    let x = 12345;
    for (let round = 0; round < 20; round++) {
      const line = new Uint8Array(200);
      for (let i = 0; i < line.length; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        let b = x >>> 24;
        if (round % 2 === 1) b &= 0x7f; // odd rounds: ASCII (valid UTF-8) control junk
        if (b === 10 || b === 13) b = 0x20; // keep it one line
        if (b === 255) b = 0xfe; // no Telnet IAC
        line[i] = b;
      }
      // A first byte that starts no verb: invalid UTF-8 (501) or a control byte (500).
      line[0] = round % 2 === 1 ? 0x01 : 0xfe;
      await c.sendBytes(new Uint8Array([...line, 13, 10]));
      const r = await c.read();
      assert.equal(r.code, round % 2 === 1 ? 500 : 501, `round ${round}: ${r.text}`);
    }
    // Invalid UTF-8 after a real verb.
    await c.sendBytes(new Uint8Array([...new TextEncoder().encode("CWD "), 0xc3, 0x28, 13, 10]));
    assert.equal((await c.read()).code, 501);
    await assertWorks(c);
  });
});

Deno.test("paths cannot escape the home directory", async () => {
  await withSession(async (c, srv) => {
    await Deno.symlink("/etc", `${srv.root}/etc-link`);
    await Deno.symlink("/etc/passwd", `${srv.root}/passwd-link`);
    await Deno.writeTextFile(`${srv.root}/inside.txt`, "inside");
    assert.equal((await c.cmd("CWD ../../..")).code, 250); // ".." stops at "/"
    assert.equal((await c.cmd("PWD")).text, '257 "/" is the current directory');
    assert.equal((await c.cmd("CWD /etc")).code, 550);
    assert.equal((await c.cmd("CWD etc-link")).code, 553);
    assert.equal((await c.cmd("CWD /etc-link/..")).code, 250);
    assert.equal((await c.cmd("PWD")).text, '257 "/" is the current directory');
    for (
      const p of [
        "../../etc/passwd",
        "/etc/passwd",
        "../../../../../../etc/passwd",
        "etc-link/passwd",
        "passwd-link",
        "/etc-link/../etc-link/passwd",
      ]
    ) {
      for (const cmd of ["RETR", "SIZE", "MDTM"]) {
        const r = await c.cmd(`${cmd} ${p}`);
        assert.ok(r.code === 550 || r.code === 553, `${cmd} ${p}: ${r.text}`);
      }
    }
    // STAT and LIST of the link list nothing outside either.
    const stat = await c.cmd("STAT etc-link");
    assert.ok(stat.code === 550 || stat.code === 553, stat.text);
    const conn = await pasvConnect(c);
    const list = await transfer(c, conn, "LIST etc-link");
    assert.ok(list.first.code === 550 || list.first.code === 553, list.first.text);
    // Uploads through the link are refused and write nothing outside.
    const up = await c.cmd("STOR etc-link/pn-should-not-exist");
    assert.ok(up.code === 550 || up.code === 553, up.text);
    await assert.rejects(Deno.stat("/etc/pn-should-not-exist"), Deno.errors.NotFound);
    assert.equal((await c.cmd("PWD")).text, '257 "/" is the current directory');
    // The session still reads what is really inside.
    const ok = await transfer(c, await pasvConnect(c), "RETR inside.txt");
    assert.equal(new TextDecoder().decode(ok.data), "inside");
    assert.equal(ok.last.code, 226);
  });
});

Deno.test("PASV reply has the exact form and a port inside the range", async () => {
  await withSession(async (c, srv) => {
    for (let i = 0; i < 5; i++) {
      const r = await c.cmd("PASV");
      const m = PASV_RE.exec(r.text);
      assert.ok(m, r.text);
      assert.equal(m.slice(1, 5).join("."), "127.0.0.1");
      const port = Number(m[5]) * 256 + Number(m[6]);
      assert.ok(port >= 40000 && port <= 40999, `port ${port}`);
      assert.equal(srv.server.config.passive.min_port, 40000);
    }
    const e = await c.cmd("EPSV");
    const m = /^229 Entering Extended Passive Mode \(\|\|\|(\d+)\|\)$/.exec(e.text);
    assert.ok(m, e.text);
    assert.ok(Number(m[1]) >= 40000 && Number(m[1]) <= 40999);
    assert.equal((await c.cmd("EPSV 2")).code, 522);
  });
});

const STRANGER = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(5)
s.bind(("127.0.0.2", 0))
s.connect(("127.0.0.1", int(sys.argv[1])))
try:
    data = s.recv(100)
    print("closed" if data == b"" else "data")
except ConnectionResetError:
    print("closed")
except socket.timeout:
    print("open")
`;

Deno.test("a stranger on the passive port is closed; the real client's transfer succeeds", async () => {
  await withSession(async (c, srv) => {
    const body = "only for the real client\n".repeat(100);
    await Deno.writeTextFile(`${srv.root}/secret.txt`, body);
    const r = await c.cmd("PASV");
    const m = PASV_RE.exec(r.text);
    assert.ok(m, r.text);
    const port = Number(m[5]) * 256 + Number(m[6]);
    // The server waits for a data connection once RETR arrives.
    await c.sendBytes(new TextEncoder().encode("RETR secret.txt\r\n"));
    const stranger = await run("python3", ["-c", STRANGER, String(port)], { timeoutMs: 10_000 });
    assert.equal(stranger.code, 0, stranger.stderr);
    assert.equal(stranger.stdout.trim(), "closed");
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const data = await readAll(conn);
    assert.equal(new TextDecoder().decode(data), body);
    assert.equal((await c.read()).code, 150);
    assert.equal((await c.read()).code, 226);
  });
});

Deno.test("back-to-back PASV reuse the passive port; a stranger waiting on it is closed; unused it closes after 2 s", async () => {
  await withSession(async (c, srv) => {
    await Deno.writeTextFile(`${srv.root}/f.txt`, "first and second");
    const pasvPort = async () => {
      const r = await c.cmd("PASV");
      const m = PASV_RE.exec(r.text);
      assert.ok(m, r.text);
      return Number(m[5]) * 256 + Number(m[6]);
    };
    const fetch = async (port: number) => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      assert.equal((await c.cmd("RETR f.txt")).code, 150);
      assert.equal(new TextDecoder().decode(await readAll(conn)), "first and second");
      assert.equal((await c.read()).code, 226);
    };
    const port = await pasvPort();
    await fetch(port);
    // Between transfers the kept listener takes connections into its backlog:
    // the next PASV's accept must refuse this one and wait for the client.
    const stranger = run("python3", ["-c", STRANGER, String(port)], { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await pasvPort(), port, "the second PASV did not reuse the port");
    await fetch(port);
    const s = await stranger;
    assert.equal(s.code, 0, s.stderr);
    assert.equal(s.stdout.trim(), "closed");
    await new Promise((r) => setTimeout(r, SPARE_LISTENER_MS + 500));
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
      "the unused passive listener is still open",
    );
  });
});

Deno.test("a passive range of one port: sessions taking turns reclaim each other's kept listener", async () => {
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const only = (probe.addr as Deno.NetAddr).port;
  probe.close();
  const srv = await startServer({
    tweak: (c) => c.passive = { min_port: only, max_port: only },
  });
  const clients: RawClient[] = [];
  try {
    await Deno.writeTextFile(`${srv.root}/f.txt`, "one port for all");
    for (let i = 0; i < 2; i++) {
      const [c] = await RawClient.connect("127.0.0.1", srv.port);
      clients.push(c);
      await c.login(USER, PASSWORD);
    }
    // A, B, A: each PASV finds the only port kept by the other session.
    for (const c of [clients[0], clients[1], clients[0]]) {
      const conn = await pasvConnect(c);
      assert.equal((conn.remoteAddr as Deno.NetAddr).port, only);
      assert.equal((await c.cmd("RETR f.txt")).code, 150);
      assert.equal(new TextDecoder().decode(await readAll(conn)), "one port for all");
      assert.equal((await c.read()).code, 226);
    }
  } finally {
    for (const c of clients) c.close();
    await srv.close();
  }
});

Deno.test("active mode connects to the control peer, not to the address written in PORT", async () => {
  await withSession(async (c, srv) => {
    await Deno.writeTextFile(`${srv.root}/f.txt`, "active data");
    // Listening on 127.0.0.1 only: a connection to 127.0.0.2 would be refused.
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const r = await c.cmd(`PORT 127,0,0,2,${port >> 8},${port & 255}`);
    assert.equal(r.code, 200, r.text);
    const accepted = listener.accept();
    accepted.catch(() => {}); // rejects when the listener closes after a failed assertion
    // The 150 comes once the server has connected, so a 425 fails here instead of hanging.
    const first = await c.cmd("RETR f.txt");
    assert.equal(first.code, 150, first.text);
    const conn = await accepted;
    assert.equal((conn.remoteAddr as Deno.NetAddr).hostname, "127.0.0.1");
    assert.equal(new TextDecoder().decode(await readAll(conn)), "active data");
    assert.equal((await c.read()).code, 226);
  });
});

Deno.test("PORT and EPRT to a port below 1024 are refused with 504", async () => {
  await withSession(async (c) => {
    assert.equal((await c.cmd("PORT 127,0,0,1,0,21")).code, 504);
    assert.equal((await c.cmd("PORT 127,0,0,1,3,255")).code, 504);
    assert.equal((await c.cmd("EPRT |1|127.0.0.1|22|")).code, 504);
    assert.equal((await c.cmd("PORT 127,0,0,1,4,0")).code, 200);
    assert.equal((await c.cmd("PORT 1,2,3")).code, 501);
    assert.equal((await c.cmd("EPRT |3|x|5000|")).code, 522);
    assert.equal((await c.cmd("EPRT garbage")).code, 501);
  });
});

Deno.test("FEAT, HELP, STAT and ABOR without a transfer", async () => {
  await withSession(async (c) => {
    const feat = await c.cmd("FEAT");
    assert.equal(feat.code, 211);
    assert.ok(feat.lines[0].startsWith("211-"));
    assert.equal(feat.lines.at(-1), "211 End");
    const features = feat.lines.slice(1, -1).map((l) => l.trim());
    for (const f of ["EPSV", "EPRT", "SIZE", "MDTM", "REST STREAM", "UTF8"]) {
      assert.ok(features.includes(f), `FEAT lacks ${f}: ${feat.text}`);
    }
    assert.ok(features.some((f) => f.startsWith("MLST ")), feat.text);
    for (const l of feat.lines.slice(1, -1)) assert.ok(l.startsWith(" "), `FEAT line ${l}`);

    const help = await c.cmd("HELP");
    assert.equal(help.code, 214);
    assert.match(help.text, /RETR/);
    assert.equal((await c.cmd("HELP RETR")).code, 214);
    assert.equal((await c.cmd("HELP NOSUCH")).code, 502);

    const stat = await c.cmd("STAT");
    assert.equal(stat.code, 211);
    assert.match(stat.text, /Logged in as alice/);
    assert.equal(stat.lines.at(-1), "211 End of status");

    assert.equal((await c.cmd("ABOR")).code, 225);
    assert.equal((await c.cmd("PASV")).code, 227);
    assert.equal((await c.cmd("ABOR")).code, 225);
    assert.equal((await c.cmd("SYST")).text, "215 UNIX Type: L8");
  });
});

Deno.test("REST then RETR resumes at the offset; REST then STOR writes from it", async () => {
  await withSession(async (c, srv) => {
    await Deno.writeTextFile(`${srv.root}/r.txt`, "0123456789");
    // As lftp, ftplib and curl do: PASV, then REST right before RETR.
    const dc = await pasvConnect(c);
    assert.equal((await c.cmd("REST 4")).code, 350);
    const d = await transfer(c, dc, "RETR r.txt");
    assert.equal(new TextDecoder().decode(d.data), "456789");
    assert.equal(d.last.code, 226);
    // The offset was used once.
    const again = await transfer(c, await pasvConnect(c), "RETR r.txt");
    assert.equal(new TextDecoder().decode(again.data), "0123456789");
    assert.equal((await c.cmd("REST x")).code, 501);
    const bc = await pasvConnect(c);
    assert.equal((await c.cmd("REST 11")).code, 350);
    const beyond = await transfer(c, bc, "RETR r.txt");
    assert.ok(beyond.first.code >= 400, beyond.first.text);
    const conn = await pasvConnect(c);
    assert.equal((await c.cmd("REST 6")).code, 350);
    assert.equal((await c.cmd("STOR r.txt")).code, 150);
    await conn.write(new TextEncoder().encode("abc"));
    conn.close();
    assert.equal((await c.read()).code, 226);
    assert.equal(await Deno.readTextFile(`${srv.root}/r.txt`), "012345abc");
  });
});

Deno.test("STOU stores under a unique name given in the 150 reply", async () => {
  await withSession(async (c, srv) => {
    await Deno.writeTextFile(`${srv.root}/u.txt`, "existing");
    const conn = await pasvConnect(c);
    const first = await c.cmd("STOU u.txt");
    assert.equal(first.code, 150);
    const m = /^150 FILE: (.+)$/.exec(first.text);
    assert.ok(m, first.text);
    assert.notEqual(m[1], "u.txt");
    await conn.write(new TextEncoder().encode("new"));
    conn.close();
    assert.equal((await c.read()).code, 226);
    assert.equal(await Deno.readTextFile(`${srv.root}/${m[1]}`), "new");
    assert.equal(await Deno.readTextFile(`${srv.root}/u.txt`), "existing");
  });
});

Deno.test("LIST -la takes -la as options, not as a path", async () => {
  await withSession(async (c, srv) => {
    await Deno.writeTextFile(`${srv.root}/listed.txt`, "12345");
    await Deno.mkdir(`${srv.root}/d`);
    await Deno.writeTextFile(`${srv.root}/d/deep.txt`, "x");
    for (
      const [arg, expect] of [["-la", "listed.txt"], ["-la d", "deep.txt"], ["-l /d", "deep.txt"]]
    ) {
      const r = await transfer(c, await pasvConnect(c), `LIST ${arg}`);
      assert.equal(r.first.code, 150, `LIST ${arg}: ${r.first.text}`);
      const lines = new TextDecoder().decode(r.data).split("\r\n").filter(Boolean);
      assert.ok(lines.some((l) => l.endsWith(` ${expect}`)), lines.join("\n"));
      assert.equal(r.last.code, 226);
    }
    const r = await transfer(c, await pasvConnect(c), "LIST -la");
    const line = new TextDecoder().decode(r.data).split("\r\n").find((l) =>
      l.endsWith("listed.txt")
    );
    assert.match(line ?? "", /^-rw\S+ 1 ftp ftp +5 \w{3} [ \d]\d [\d:]{4,5} listed\.txt$/);
  });
});

Deno.test("ABOR during a big RETR gives 426, then 226, and the session goes on", async () => {
  await withSession(async (c, srv) => {
    // Large enough that it cannot sit in socket buffers while nobody reads.
    using f = await Deno.open(`${srv.root}/big.bin`, { write: true, create: true });
    await f.truncate(64 * 1024 * 1024);
    const conn = await pasvConnect(c);
    assert.equal((await c.cmd("RETR big.bin")).code, 150);
    const buf = new Uint8Array(65536);
    assert.ok((await conn.read(buf) ?? 0) > 0);
    const r1 = await c.cmd("ABOR");
    const r2 = await c.read();
    assert.deepEqual([r1.code, r2.code], [426, 226], `${r1.text} / ${r2.text}`);
    conn.close();
    await assertWorks(c);
    const d = await transfer(c, await pasvConnect(c), "NLST");
    assert.equal(new TextDecoder().decode(d.data), "big.bin\r\n");
  });
});
