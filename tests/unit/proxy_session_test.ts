/**
 * Exact protocol behaviour of a proxied session against a scripted upstream
 * on loopback: what the upstream receives, in which order, and what the
 * client is told when the upstream misbehaves.
 */
import assert from "node:assert/strict";
import { configSchema } from "../../src/config/schema.ts";
import type { Config } from "../../src/config/schema.ts";
import { readLines } from "../../src/ftp/line_reader.ts";
import { ProxyServer } from "../../src/proxy/server.ts";
import { RawClient } from "../helpers/raw.ts";
import type { Reply } from "../helpers/raw.ts";

const encoder = new TextEncoder();

/** What a scripted upstream handler can do. */
interface FakeIo {
  /** Sends text followed by CRLF. */
  say(text: string): Promise<void>;
  /** Opens a data listener on loopback; `accept` takes one connection. */
  passive(): { port: number; accept(): Promise<Deno.TcpConn> };
  /** Closes the control connection. */
  hangUp(): void;
}

type Handler = (line: string, io: FakeIo) => Promise<void> | void;

/** A scripted FTP server: greets, records every command line, lets `handler` answer. */
function fakeUpstream(handler: Handler, options: { banner?: string } = {}) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: string[] = [];
  const open = new Set<Deno.Conn | Deno.Listener>();
  const serve = async (conn: Deno.TcpConn) => {
    open.add(conn);
    const io: FakeIo = {
      say: async (text) => {
        const bytes = encoder.encode(text + "\r\n");
        let off = 0;
        while (off < bytes.length) off += await conn.write(bytes.subarray(off));
      },
      passive: () => {
        const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        open.add(l);
        return {
          port: (l.addr as Deno.NetAddr).port,
          accept: async () => {
            const c = await l.accept();
            l.close();
            open.delete(l);
            return c;
          },
        };
      },
      hangUp: () => {
        try {
          conn.close();
        } catch { /* closed */ }
      },
    };
    try {
      await io.say(options.banner ?? "220 fake upstream ready");
      for await (const item of readLines(conn, { maxLength: 4096 })) {
        if (item.kind !== "line") continue;
        received.push(item.text);
        await handler(item.text, io);
      }
    } catch { /* closed */ }
    io.hangUp();
    open.delete(conn);
  };
  const loop = (async () => {
    for (let i = 0; i < 20; i++) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return;
      }
      void serve(conn);
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    received,
    async close() {
      listener.close();
      await loop;
      for (const c of open) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    },
  };
}

/** Replies every scripted upstream gives the same way. */
async function common(line: string, io: FakeIo): Promise<boolean> {
  const verb = line.split(" ")[0];
  if (verb === "USER") await io.say("230 Login successful.");
  else if (verb === "TYPE") await io.say("200 Switching to Binary mode.");
  else if (verb === "NOOP") await io.say("200 NOOP ok.");
  else if (verb === "QUIT") {
    await io.say("221 Goodbye.");
    io.hangUp();
  } else return false;
  return true;
}

function startProxy(upstreamPort: number, tweak?: (c: Config) => void) {
  const config = configSchema.parse({
    listen: { address: "127.0.0.1", port: 2121 },
    passive: { min_port: 42200, max_port: 42299 },
    proxy: { upstream: { host: "127.0.0.1", port: upstreamPort }, connect_timeout_seconds: 2 },
  });
  config.listen.port = 0;
  tweak?.(config);
  const proxy = new ProxyServer(config, { publicAddress: null });
  return { proxy, port: proxy.listen().port };
}

type FakeUpstream = ReturnType<typeof fakeUpstream>;

/** Starts a proxy in front of `up`, runs `body` with the proxy's port, then closes both. */
async function withProxy(
  up: FakeUpstream,
  body: (port: number) => Promise<void>,
  tweak?: (c: Config) => void,
): Promise<void> {
  const px = startProxy(up.port, tweak);
  try {
    await body(px.port);
  } finally {
    await px.proxy.close();
    await up.close();
  }
}

/** As `withProxy`, with one client connected through the proxy (closed afterwards). */
function throughProxy(
  up: FakeUpstream,
  body: (c: RawClient, greeting: Reply) => Promise<void>,
  tweak?: (c: Config) => void,
): Promise<void> {
  return withProxy(up, async (port) => {
    const [c, greeting] = await RawClient.connect("127.0.0.1", port);
    try {
      await body(c, greeting);
    } finally {
      c.close();
    }
  }, tweak);
}

/** Opens a data listener and tells the client about it with a 229. */
async function offerEpsv(io: FakeIo): Promise<ReturnType<FakeIo["passive"]>> {
  const data = io.passive();
  await io.say(`229 Entering Extended Passive Mode (|||${data.port}|)`);
  return data;
}

async function login(c: RawClient): Promise<void> {
  const r = await c.cmd("USER anonymous");
  assert.equal(r.code, 230, r.text);
}

async function readAll(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(65536);
  let text = "";
  const deadline = Date.now() + 10_000;
  try {
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
  } finally {
    conn.close();
  }
  return text;
}

async function epsv(c: RawClient): Promise<Deno.TcpConn> {
  const r = await c.cmd("EPSV");
  assert.equal(r.code, 229, r.text);
  const port = Number(/\|\|\|(\d+)\|/.exec(r.text)![1]);
  return await Deno.connect({ hostname: "127.0.0.1", port });
}

/** Sends one file on the data connection the client gets through the proxy. */
async function sendFile(io: FakeIo, data: { accept(): Promise<Deno.TcpConn> }, body: string) {
  const conn = await data.accept();
  await io.say("150 Opening BINARY mode data connection.");
  await conn.write(encoder.encode(body));
  conn.close();
  await io.say("226 Transfer complete.");
}

Deno.test("proxy session: REST is repeated after EPSV, right before RETR", async () => {
  let data: ReturnType<FakeIo["passive"]> | null = null;
  const up = fakeUpstream(async (line, io) => {
    if (await common(line, io)) return;
    if (line.startsWith("REST ")) return io.say("350 Restart position accepted (5).");
    if (line === "EPSV") {
      data = await offerEpsv(io);
      return;
    }
    if (line.startsWith("RETR ")) return sendFile(io, data!, "from offset 5");
    await io.say("500 Unknown command.");
  });
  await throughProxy(up, async (c) => {
    await login(c);
    const dataConn = await epsv(c);
    assert.equal((await c.cmd("REST 5")).code, 350);
    assert.equal((await c.cmd("RETR file.txt")).code, 150);
    assert.equal(await readAll(dataConn), "from offset 5");
    assert.equal((await c.read()).code, 226);
    assert.deepEqual(up.received, ["USER anonymous", "REST 5", "EPSV", "REST 5", "RETR file.txt"]);
  });
});

Deno.test("proxy session: no EPSV upstream -> PASV, connecting to the control host, not the 227's", async () => {
  let data: ReturnType<FakeIo["passive"]> | null = null;
  const up = fakeUpstream(async (line, io) => {
    if (await common(line, io)) return;
    if (line === "EPSV") return io.say("502 EPSV not implemented.");
    if (line === "PASV") {
      data = io.passive();
      // An address nobody can reach: the proxy must not use it.
      return io.say(`227 Entering Passive Mode (10,9,8,7,${data.port >> 8},${data.port & 255}).`);
    }
    if (line === "LIST") return sendFile(io, data!, "-rw-r--r-- 1 0 0 5 Jan 1 00:00 a\r\n");
    await io.say("500 Unknown command.");
  });
  await throughProxy(up, async (c) => {
    await login(c);
    for (let i = 0; i < 2; i++) {
      const dataConn = await epsv(c);
      assert.equal((await c.cmd("LIST")).code, 150);
      assert.match(await readAll(dataConn), / a\r\n$/);
      assert.equal((await c.read()).code, 226);
    }
    // EPSV was tried once; the second transfer went straight to PASV.
    assert.deepEqual(up.received, ["USER anonymous", "EPSV", "PASV", "LIST", "PASV", "LIST"]);
  });
});

Deno.test("proxy session: pipelined commands get their replies in order", async () => {
  const up = fakeUpstream(async (line, io) => {
    if (line === "NOOP") {
      await new Promise((r) => setTimeout(r, 200));
      return io.say("200 NOOP ok.");
    }
    if (await common(line, io)) return;
    if (line === "SYST") return io.say("215 UNIX Type: L8");
  });
  await throughProxy(up, async (c) => {
    await login(c);
    await c.sendBytes(encoder.encode("NOOP\r\nPASV\r\nSYST\r\n"));
    const codes = [(await c.read()).code, (await c.read()).code, (await c.read()).code];
    // PASV is answered by the proxy, but only after the NOOP before it.
    assert.deepEqual(codes, [200, 227, 215]);
    assert.deepEqual(up.received, ["USER anonymous", "NOOP", "SYST"]);
  });
});

Deno.test("proxy session: multi-line replies pass unchanged; FEAT loses what cannot pass", async () => {
  const help = "214-The following commands are recognized.\r\n 214 this is not the end\r\n" +
    "230 nor is this\r\n214 Help OK.\r\n";
  const up = fakeUpstream(async (line, io) => {
    if (await common(line, io)) return;
    if (line === "HELP") return io.say(help.slice(0, -2));
    if (line === "FEAT") {
      return io.say("211-Features:\r\n AUTH TLS\r\n EPSV\r\n PBSZ\r\n PROT\r\n MDTM\r\n211 End");
    }
  }, { banner: "220-first\r\n220-220 second\r\n220 third" });
  await throughProxy(up, async (c, greeting) => {
    assert.deepEqual(greeting.lines, ["220-first", "220-220 second", "220 third"]);
    const h = await c.cmd("HELP");
    assert.equal(h.text.replaceAll("\n", "\r\n") + "\r\n", help);
    const f = await c.cmd("FEAT");
    assert.deepEqual(f.lines, ["211-Features:", " EPSV", " MDTM", "211 End"]);
  });
});

Deno.test("proxy session: a 226 after the client's side broke reaches the client as 426", async () => {
  const up = fakeUpstream(async (line, io) => {
    if (await common(line, io)) return;
    if (line === "EPSV") {
      const conn = await (await offerEpsv(io)).accept();
      // RETR comes next; answer it from here with an upload of 64 MB
      // that the upstream believes complete whatever happens.
      const buf = new Uint8Array(1 << 20);
      (async () => {
        await new Promise((r) => setTimeout(r, 50));
        await io.say("150 Opening BINARY mode data connection.");
        try {
          for (let i = 0; i < 64; i++) await conn.write(buf);
        } catch { /* the proxy closed it */ }
        try {
          conn.close();
        } catch { /* closed */ }
        await io.say("226 Transfer complete.");
      })();
    }
  });
  await throughProxy(up, async (c) => {
    await login(c);
    const dataConn = await epsv(c);
    assert.equal((await c.cmd("RETR big")).code, 150);
    dataConn.close();
    const end = await c.read();
    assert.equal(end.code, 426, end.text);
    assert.equal((await c.cmd("NOOP")).code, 200);
  });
});

Deno.test("proxy session: a stalled transfer ends after the data timeout with 426", async () => {
  const up = fakeUpstream(async (line, io) => {
    if (await common(line, io)) return;
    if (line === "EPSV") {
      const conn = await (await offerEpsv(io)).accept();
      (async () => {
        await io.say("150 Opening BINARY mode data connection.");
        // Send nothing; when the proxy gives up, claim success.
        await conn.read(new Uint8Array(16)).catch(() => null);
        conn.close();
        await io.say("226 Transfer complete.");
      })();
    }
  });
  await throughProxy(up, async (c) => {
    await login(c);
    const dataConn = await epsv(c);
    assert.equal((await c.cmd("RETR slow")).code, 150);
    const started = Date.now();
    const end = await c.read(5000);
    assert.equal(end.code, 426, end.text);
    assert.match(end.text, /timed out/);
    assert.ok(Date.now() - started < 2000);
    assert.equal(await readAll(dataConn), "");
  }, (c) => c.limits.data_timeout_seconds = 0.3);
});

Deno.test("proxy session: an urgent ABOR is forwarded once", async () => {
  const up = fakeUpstream(async (line, io) => {
    if (await common(line, io)) return;
    if (line === "ABOR") return io.say("225 No transfer to ABOR.");
  });
  await throughProxy(up, async (c) => {
    await login(c);
    await c.sendBytes(new Uint8Array([255, 244, 255, 242])); // IAC IP, IAC DM
    assert.equal((await c.read()).code, 225);
    await c.sendBytes(encoder.encode("ABOR\r\n"));
    assert.equal((await c.cmd("NOOP")).code, 200);
    assert.deepEqual(up.received, ["USER anonymous", "ABOR", "NOOP"]);
  });
});

Deno.test("proxy session: garbage from the upstream ends the session with 421", async () => {
  const up = fakeUpstream(async (line, io) => {
    if (line === "NOOP") return io.say("hello, I am not an FTP server");
    await common(line, io);
  });
  await throughProxy(up, async (c) => {
    await login(c);
    const r = await c.cmd("NOOP");
    assert.equal(r.code, 421, r.text);
    assert.ok(await c.closedWithin(2000));
  });
});

Deno.test("proxy session: the upstream's own 421 reaches the client, then the session ends", async () => {
  const up = fakeUpstream(async (line, io) => {
    if (line.startsWith("USER")) {
      await io.say("230 Login successful.");
      await new Promise((r) => setTimeout(r, 50));
      await io.say("421 Timeout.");
      return io.hangUp();
    }
  });
  await throughProxy(up, async (c) => {
    await login(c);
    const r = await c.read();
    assert.deepEqual(r.lines, ["421 Timeout."]);
    assert.ok(await c.closedWithin(2000), "closed, without a second 421");
  });
});

Deno.test("proxy session: an upstream that stops answering gets the client 421, not a hang", async () => {
  const up = fakeUpstream(async (line, io) => {
    await common(line, io); // EPSV goes unanswered
  });
  await throughProxy(up, async (c) => {
    await login(c);
    const dataConn = await epsv(c);
    dataConn.close();
    const r = await c.cmd("RETR x", 5000);
    assert.equal(r.code, 421, r.text);
    assert.ok(await c.closedWithin(2000));
  }, (c) => c.limits.data_timeout_seconds = 0.3);
});

Deno.test("proxy session: an upstream refusing the session at greeting is passed on", async () => {
  const up = fakeUpstream(() => {}, { banner: "421 Too many users, try later." });
  await throughProxy(up, async (c, greeting) => {
    assert.deepEqual(greeting.lines, ["421 Too many users, try later."]);
    assert.ok(await c.closedWithin(2000));
  });
});

Deno.test("proxy session: login timeout before login, idle timeout after, from config.limits", async () => {
  const up = fakeUpstream(async (line, io) => {
    await common(line, io);
  });
  await withProxy(up, async (port) => {
    const [idle] = await RawClient.connect("127.0.0.1", port);
    const r0 = await idle.read(3000);
    assert.equal(r0.code, 421, "no login within the login timeout");
    idle.close();

    const [c] = await RawClient.connect("127.0.0.1", port);
    try {
      await login(c);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(
        (await c.cmd("NOOP")).code,
        200,
        "logged in: the login timeout no longer applies",
      );
      const started = Date.now();
      const r = await c.read(3000);
      assert.equal(r.code, 421);
      assert.match(r.text, /Idle timeout/);
      assert.ok(Date.now() - started >= 600, "the idle timeout counts from the last command");
      assert.ok(await c.closedWithin(2000));
    } finally {
      c.close();
    }
  }, (c) => {
    c.limits.login_timeout_seconds = 0.3;
    c.limits.idle_timeout_seconds = 0.8;
  });
});

Deno.test("proxy session: the upstream's 530s count toward the per-address ban", async () => {
  const up = fakeUpstream(async (line, io) => {
    const verb = line.split(" ")[0];
    if (verb === "USER") await io.say("331 Please specify the password.");
    else if (verb === "PASS") await io.say("530 Login incorrect.");
    else await common(line, io);
  });
  await withProxy(up, async (port) => {
    const clients: RawClient[] = [];
    try {
      const [c] = await RawClient.connect("127.0.0.1", port);
      clients.push(c);
      for (let i = 0; i < 3; i++) {
        assert.equal((await c.cmd("USER bob")).code, 331);
        assert.equal((await c.cmd("PASS wrong")).code, 530);
      }
      const [banned, r] = await RawClient.connect("127.0.0.1", port);
      clients.push(banned);
      assert.equal(r.code, 421);
      assert.match(r.text, /failed logins/);
      assert.equal((await c.cmd("NOOP")).code, 200, "the open session is not cut");
    } finally {
      clients.forEach((c) => c.close());
    }
  }, (c) => (c.limits.max_login_failures_per_address = 3));
});
