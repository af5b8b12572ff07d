/**
 * Hostile clients on raw sockets (loopback only): FTP bounce, slowloris on
 * the control and the data connection, a connection flood, Telnet sequences
 * and the urgent form of ABOR, NUL bytes, over-long paths, invalid UTF-8,
 * and commands before login. Each attack checks the reply it gets and that
 * a well-behaved session running beside it goes on unharmed.
 */
import assert from "node:assert/strict";
import { buildCommandTable } from "../../src/serve/commands.ts";
import { RawClient, type Reply } from "../helpers/raw.ts";
import { PASSWORD, run, startServer, type TestServer, USER } from "../helpers/server.ts";

const enc = new TextEncoder();
const BYSTANDER_TEXT = "the bystander's file\n".repeat(100);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Port of a 229 reply. */
function epsvPort(r: Reply): number {
  const m = /\(\|\|\|(\d+)\|\)/.exec(r.text);
  assert.ok(m, `not a 229 reply: ${r.text}`);
  return Number(m[1]);
}

/** Reads a connection to its end within a time limit. */
async function readAll(conn: Deno.Conn, timeoutMs = 10_000): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      const n = await conn.read(buf);
      if (n === null) break;
      parts.push(buf.slice(0, n));
    }
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Downloads `name` over EPSV on a logged-in client; returns the bytes after checking 150/226. */
async function download(c: RawClient, name: string): Promise<Uint8Array> {
  const port = epsvPort(await c.cmd("EPSV"));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const first = await c.cmd(`RETR ${name}`);
  if (first.code !== 150) {
    conn.close();
    throw new Error(`RETR ${name}: ${first.text}`);
  }
  const data = await readAll(conn);
  const last = await c.read();
  assert.equal(last.code, 226, last.text);
  return data;
}

/**
 * A well-behaved logged-in session that keeps doing NOOP and a small
 * download while an attack runs. `stop()` returns the number of rounds done
 * and throws the first thing that went wrong.
 */
class Bystander {
  #rounds = 0;
  #error: unknown = null;
  #stopped = false;
  #loop: Promise<void> = Promise.resolve();

  private constructor(readonly client: RawClient) {}

  /** Logs in a bystander on `t` and starts its loop. */
  static async start(t: TestServer): Promise<Bystander> {
    await Deno.writeTextFile(`${t.root}/bystander.txt`, BYSTANDER_TEXT);
    const [c, hello] = await RawClient.connect("127.0.0.1", t.port);
    assert.equal(hello.code, 220);
    await c.login(USER, PASSWORD);
    const b = new Bystander(c);
    await b.round();
    b.#loop = b.#run();
    return b;
  }

  /** One round: NOOP, then the file, checked byte for byte. */
  async round(): Promise<void> {
    const noop = await this.client.cmd("NOOP");
    assert.equal(noop.code, 200, noop.text);
    const got = new TextDecoder().decode(await download(this.client, "bystander.txt"));
    assert.equal(got, BYSTANDER_TEXT);
    this.#rounds++;
  }

  async #run(): Promise<void> {
    // Bounded: at most 500 rounds, and the tests stop it after a few seconds.
    for (let i = 0; i < 500 && !this.#stopped; i++) {
      try {
        await this.round();
      } catch (e) {
        this.#error = e;
        return;
      }
      await sleep(20);
    }
  }

  /** Stops the loop, does a last round, and returns how many rounds succeeded. */
  async stop(): Promise<number> {
    this.#stopped = true;
    await this.#loop;
    if (this.#error) throw this.#error;
    await this.round();
    return this.#rounds;
  }

  close(): void {
    this.client.close();
  }
}

/** Runs `attack` beside a bystander; the bystander must keep working throughout. */
async function beside(t: TestServer, attack: () => Promise<void>): Promise<void> {
  const b = await Bystander.start(t);
  try {
    await attack();
    const rounds = await b.stop();
    assert.ok(rounds >= 3, `the bystander did only ${rounds} rounds`);
  } finally {
    b.close();
  }
}

/** Waits up to `ms` for `cond`, polling. */
async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await sleep(20);
  }
  return cond();
}

/** Accepts on `l` for `ms`; returns the connection, or null if nobody came. */
async function acceptWithin(l: Deno.TcpListener, ms: number): Promise<Deno.TcpConn | null> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<null>((r) => timer = setTimeout(() => r(null), ms));
  const accepting = l.accept();
  const got = await Promise.race([accepting, timeout]);
  clearTimeout(timer);
  if (got === null) accepting.then((c) => c.close(), () => {});
  return got;
}

Deno.test("FTP bounce: PORT/EPRT naming another address connect to the peer; the target gets nothing", async () => {
  const t = await startServer();
  try {
    await Deno.writeTextFile(`${t.root}/f.txt`, "bounced?");
    await beside(t, async () => {
      const [c] = await RawClient.connect("127.0.0.1", t.port);
      try {
        await c.login(USER, PASSWORD);
        // The victim on 127.0.0.2 and the attacker's own listener on the same port at 127.0.0.1.
        using victim = Deno.listen({ hostname: "127.0.0.2", port: 0 });
        const port = (victim.addr as Deno.NetAddr).port;
        using own = Deno.listen({ hostname: "127.0.0.1", port });
        const commands = [
          `PORT 127,0,0,2,${port >> 8},${port & 255}`,
          `EPRT |1|127.0.0.2|${port}|`,
          `EPRT !1!127.0.0.3!${port}!`,
        ];
        for (const command of commands) {
          assert.equal((await c.cmd(command)).code, 200, command);
          const first = c.cmd("RETR f.txt");
          const conn = await acceptWithin(own, 5000);
          assert.ok(conn, `${command}: the server did not connect to the peer`);
          assert.equal((conn.remoteAddr as Deno.NetAddr).hostname, "127.0.0.1");
          assert.equal((await first).code, 150);
          assert.equal(new TextDecoder().decode(await readAll(conn)), "bounced?");
          assert.equal((await c.read()).code, 226);
        }
        const stray = await acceptWithin(victim, 300);
        stray?.close();
        assert.equal(stray, null, "the server connected to 127.0.0.2");
        // A privileged port is refused whatever the address.
        for (const p of [21, 25, 1023]) {
          assert.equal((await c.cmd(`EPRT |1|127.0.0.2|${p}|`)).code, 504);
          assert.equal((await c.cmd(`PORT 127,0,0,1,${p >> 8},${p & 255}`)).code, 504);
        }
        // No data connection is set up by a refused EPRT.
        assert.equal((await c.cmd("RETR f.txt")).code, 425);
      } finally {
        c.close();
      }
    });
  } finally {
    await t.close();
  }
});

Deno.test("slowloris on control: a line trickled a byte per 200 ms, or NOOPs without login, are closed at login_timeout", async () => {
  const t = await startServer({ tweak: (c) => (c.limits.login_timeout_seconds = 1) });
  try {
    await beside(t, async () => {
      const started = Date.now();
      const [slow] = await RawClient.connect("127.0.0.1", t.port);
      const [chatty] = await RawClient.connect("127.0.0.1", t.port);
      try {
        const trickle = (async () => {
          const bytes = enc.encode("USER " + "a".repeat(100));
          // Bounded: 30 bytes at most, stopping at the first write error.
          for (let i = 0; i < 30; i++) {
            try {
              await slow.sendBytes(bytes.subarray(i, i + 1));
            } catch {
              return i;
            }
            await sleep(200);
          }
          return 30;
        })();
        // A client that answers every timeout with another NOOP still has to log in in time.
        const noops = (async () => {
          const codes: number[] = [];
          for (let i = 0; i < 30; i++) {
            try {
              codes.push((await chatty.cmd("NOOP", 3000)).code);
            } catch {
              break;
            }
            if (codes.at(-1) !== 200) break;
            await sleep(200);
          }
          return codes;
        })();
        const r = await slow.read(4000);
        assert.equal(r.code, 421, r.text);
        assert.equal(await slow.closedWithin(2000), true);
        const elapsed = Date.now() - started;
        assert.ok(elapsed >= 900 && elapsed < 3000, `closed after ${elapsed} ms`);
        assert.ok((await trickle) < 30, "the trickling client was never cut off");
        const codes = await noops;
        assert.equal(codes.at(-1), 421, `NOOPs without login: ${codes.join(",")}`);
        assert.ok(codes.length <= 10, `NOOPs kept the session open: ${codes.length} replies`);
      } finally {
        slow.close();
        chatty.close();
      }
    });
  } finally {
    await t.close();
  }
});

Deno.test("slowloris on data: a RETR nobody reads is aborted with 426 after data_timeout; the session goes on", async () => {
  const t = await startServer({ tweak: (c) => (c.limits.data_timeout_seconds = 0.5) });
  try {
    using f = await Deno.open(`${t.root}/big.bin`, { write: true, create: true });
    await f.truncate(256 * 1024 * 1024);
    await Deno.writeTextFile(`${t.root}/small.txt`, "still here");
    await beside(t, async () => {
      const [c] = await RawClient.connect("127.0.0.1", t.port);
      try {
        await c.login(USER, PASSWORD);
        const port = epsvPort(await c.cmd("EPSV"));
        const stalled = await Deno.connect({ hostname: "127.0.0.1", port });
        try {
          const started = Date.now();
          assert.equal((await c.cmd("RETR big.bin")).code, 150);
          const r = await c.read(10_000);
          assert.equal(r.code, 426, r.text);
          assert.match(r.text, /timed out/);
          assert.ok(Date.now() - started < 8000);
        } finally {
          stalled.close();
        }
        assert.equal((await c.cmd("NOOP")).code, 200);
        assert.equal(new TextDecoder().decode(await download(c, "small.txt")), "still here");
      } finally {
        c.close();
      }
    });
  } finally {
    await t.close();
  }
});

/** Counts this process's open file descriptors. */
function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

Deno.test("a flood of 300 connections opened and dropped: the server stays up and leaks no session", async () => {
  const t = await startServer({
    tweak: (c) => {
      c.limits.max_sessions = 1000;
      c.limits.max_sessions_per_address = 1000;
    },
  });
  try {
    const fdsBefore = openFds();
    let connected = 0;
    await beside(t, async () => {
      // 10 waves of 30, each connection dropped in one of four rude ways.
      for (let wave = 0; wave < 10; wave++) {
        await Promise.all(Array.from({ length: 30 }, async (_, i) => {
          let conn: Deno.TcpConn;
          try {
            conn = await Deno.connect({ hostname: "127.0.0.1", port: t.port });
          } catch {
            return;
          }
          connected++;
          try {
            const how = (wave * 30 + i) % 4;
            if (how === 1) await conn.write(enc.encode("USER flo"));
            if (how === 2) await conn.read(new Uint8Array(512));
            if (how === 3) await conn.write(enc.encode("NOOP\r\nSYST\r\nFEAT\r\n"));
          } catch { /* the server may be faster */ }
          conn.close();
        }));
      }
    });
    assert.ok(connected >= 290, `only ${connected} connections were made`);
    // The bystander has gone too: every session must end.
    const drained = await waitFor(() => t.server.sessions.size === 0, 5000);
    assert.ok(drained, `${t.server.sessions.size} sessions left after the flood`);
    const [c, hello] = await RawClient.connect("127.0.0.1", t.port);
    assert.equal(hello.code, 220);
    c.close();
    await waitFor(() => t.server.sessions.size === 0, 2000);
    const fdsAfter = openFds();
    assert.ok(fdsAfter <= fdsBefore + 5, `fds: ${fdsBefore} before, ${fdsAfter} after`);
  } finally {
    await t.close();
  }
});

/** Resident memory of this process, in MiB. */
function rssMiB(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) / 1024 : 0;
}

Deno.test("a PASS flood from 60 sessions at once: password checks wait their turn; memory stays bounded", async () => {
  const t = await startServer({
    tweak: (c) => {
      c.limits.max_sessions_per_address = 100;
      c.limits.max_login_failures_per_address = 1000;
    },
  });
  try {
    await beside(t, async () => {
      const base = rssMiB();
      let peak = base;
      const sampler = setInterval(() => peak = Math.max(peak, rssMiB()), 5);
      const clients: RawClient[] = [];
      try {
        const codes = await Promise.all(Array.from({ length: 60 }, async (_, i) => {
          const [c] = await RawClient.connect("127.0.0.1", t.port);
          clients.push(c);
          await c.cmd(i % 2 ? `USER ${USER}` : "USER nobody");
          return (await c.cmd("PASS wrong", 30_000)).code;
        }));
        assert.deepEqual(new Set(codes), new Set([530]));
      } finally {
        clearInterval(sampler);
        clients.forEach((c) => c.close());
      }
      // Each scrypt check holds 16 MiB: 60 at once would take about 1 GiB.
      assert.ok(peak - base < 200, `RSS grew by ${(peak - base).toFixed(0)} MiB`);
    });
  } finally {
    await t.close();
  }
});

Deno.test("Telnet in commands: IAC IAC is a 255 byte (not UTF-8: 501), negotiations are ignored", async () => {
  const t = await startServer();
  try {
    await beside(t, async () => {
      const [c] = await RawClient.connect("127.0.0.1", t.port);
      try {
        await c.login(USER, PASSWORD);
        const send = async (...parts: (string | number[])[]) => {
          const bytes = parts.flatMap((p) => typeof p === "string" ? [...enc.encode(p)] : p);
          await c.sendBytes(new Uint8Array([...bytes, 13, 10]));
          return await c.read();
        };
        assert.equal((await send([255, 251, 1], "NOOP")).code, 200); // IAC WILL ECHO
        assert.equal((await send("NO", [255, 253, 3], "OP")).code, 200); // IAC DO SGA inside
        assert.equal((await send([255, 244], "SYST")).code, 215); // IAC IP
        assert.equal((await send([255, 250, 24, 1, 255, 240], "SYST")).code, 215); // IAC SB..SE
        assert.equal((await send("NOOP", [255])).code, 200); // a lone IAC at the end
        const r = await send("MKD a", [255, 255], "b"); // "a\xffb": not UTF-8
        assert.equal(r.code, 501, r.text);
        assert.deepEqual([...Deno.readDirSync(t.root)].map((e) => e.name).sort(), [
          "bystander.txt",
        ]);
        assert.equal((await c.cmd("PWD")).text, '257 "/" is the current directory');
      } finally {
        c.close();
      }
    });
  } finally {
    await t.close();
  }
});

/**
 * RFC 959's urgent ABOR in the two forms clients use: IAC IP, IAC in band and
 * DM as TCP urgent data (lftp), or IAC IP with the Synch's IAC as urgent data
 * and DM in band (BSD ftp). Deno cannot send out-of-band data, so Python does.
 */
const URGENT_ABOR = `
import socket, sys
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
s = socket.create_connection((host, port), timeout=10)
f = s.makefile("rb")
def reply():
    line = f.readline().decode().rstrip("\\r\\n")
    if line[3:4] == "-":
        while True:
            more = f.readline().decode()
            if more.startswith(line[:3] + " "):
                break
    print(line, flush=True)
    return line
def cmd(c):
    s.sendall(c.encode() + b"\\r\\n")
    return reply()
reply()
cmd("USER " + user)
cmd("PASS " + pw)
for flavour in ("lftp", "bsd"):
    epsv = cmd("EPSV")
    dport = int(epsv.split("|||")[1].split("|")[0])
    d = socket.create_connection((host, dport), timeout=10)
    cmd("RETR big.bin")
    got = 0
    while got < 1 << 20:
        chunk = d.recv(65536)
        if not chunk:
            break
        got += len(chunk)
    print("got", got, flush=True)
    if flavour == "lftp":
        s.sendall(b"\\xff\\xf4\\xff")      # IAC IP, IAC
        s.send(b"\\xf2", socket.MSG_OOB)   # DM as urgent data
        s.sendall(b"ABOR\\r\\n")
    else:
        s.sendall(b"\\xff\\xf4")          # IAC IP
        s.send(b"\\xff", socket.MSG_OOB)   # the Synch's IAC as urgent data
        s.sendall(b"\\xf2ABOR\\r\\n")     # DM in band, then the command
    reply()
    reply()
    d.close()
    cmd("NOOP")
cmd("QUIT")
`;

Deno.test("urgent ABOR in the lftp and BSD forms (TCP urgent data) during a RETR: 426 then 226, session goes on", async () => {
  const t = await startServer();
  try {
    using f = await Deno.open(`${t.root}/big.bin`, { write: true, create: true });
    await f.truncate(256 * 1024 * 1024);
    await beside(t, async () => {
      const r = await run("python3", [
        "-c",
        URGENT_ABOR,
        "127.0.0.1",
        String(t.port),
        USER,
        PASSWORD,
      ], {
        timeoutMs: 20_000,
      });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const lines = r.stdout.trim().split("\n");
      const codes = lines.filter((l) => /^\d{3} /.test(l)).map((l) => Number(l.slice(0, 3)));
      // 220 USER PASS, then twice EPSV RETR(150) | ABOR: 426 226 | NOOP, then QUIT
      const round = [229, 150, 426, 226, 200];
      assert.deepEqual(codes, [220, 331, 230, ...round, ...round, 221], r.stdout);
      assert.ok(lines.some((l) => /^got \d+/.test(l) && Number(l.slice(4)) > 0), r.stdout);
    });
  } finally {
    await t.close();
  }
});

Deno.test("lftp aborting a download (urgent ABOR) gets its replies at once, not after its timeout", async () => {
  const t = await startServer();
  try {
    using f = await Deno.open(`${t.root}/big.bin`, { write: true, create: true });
    await f.truncate(256 * 1024 * 1024);
    await beside(t, async () => {
      const started = Date.now();
      // head exits after 100 bytes; lftp then aborts the RETR with IAC IP, IAC DM (urgent), ABOR.
      const script = "set net:timeout 30; set net:max-retries 1; " +
        "cat big.bin | head -c 100 > /dev/null; cls -1; quit";
      const r = await run("lftp", [
        "-u",
        `${USER},${PASSWORD}`,
        "-p",
        String(t.port),
        "-e",
        script,
        "127.0.0.1",
      ], {
        timeoutMs: 40_000,
      });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /bystander\.txt/);
      const elapsed = Date.now() - started;
      assert.ok(elapsed < 10_000, `lftp waited ${elapsed} ms for the ABOR replies`);
    });
  } finally {
    await t.close();
  }
});

Deno.test("NUL bytes, over-long paths and invalid UTF-8 in paths are 501; nothing is created", async () => {
  const t = await startServer({ tweak: (c) => (c.limits.max_line_length = 65536) });
  try {
    await beside(t, async () => {
      const [c] = await RawClient.connect("127.0.0.1", t.port);
      try {
        await c.login(USER, PASSWORD);
        for (const cmd of ["MKD", "CWD", "RETR", "STOR", "DELE", "SIZE", "RNFR", "MLST", "LIST"]) {
          for (const arg of ["a\0b", "\0", "/tmp\0/x", "x".repeat(256), "a/".repeat(2100) + "z"]) {
            const r = await c.cmd(`${cmd} ${arg}`);
            assert.equal(r.code, 501, `${cmd} ${JSON.stringify(arg.slice(0, 20))}: ${r.text}`);
          }
        }
        const badUtf8 = [
          [0xc0, 0xaf], // overlong "/"
          [0x2e, 0x2e, 0xc0, 0xaf, 0x2e, 0x2e, 0xc0, 0xaf, 0x65, 0x74, 0x63], // "..%c0%af..%c0%afetc"
          [0xed, 0xa0, 0x80], // a UTF-16 surrogate
          [0xc3, 0x28],
          [0xf8, 0x88, 0x80, 0x80, 0x80], // 5-byte form
        ];
        for (const bytes of badUtf8) {
          for (const cmd of ["MKD ", "RETR ", "CWD "]) {
            await c.sendBytes(new Uint8Array([...enc.encode(cmd), ...bytes, 13, 10]));
            const r = await c.read();
            assert.equal(r.code, 501, `${cmd}${bytes}: ${r.text}`);
          }
        }
        assert.deepEqual([...Deno.readDirSync(t.root)].map((e) => e.name), ["bystander.txt"]);
        assert.equal((await c.cmd("PWD")).text, '257 "/" is the current directory');
      } finally {
        c.close();
      }
    });
  } finally {
    await t.close();
  }
});

Deno.test("before login only USER PASS AUTH FEAT SYST QUIT NOOP HELP OPTS REIN STAT work; the rest is 530", async () => {
  const t = await startServer();
  try {
    await beside(t, async () => {
      const open = new Set([
        "USER",
        "PASS",
        "AUTH",
        "FEAT",
        "SYST",
        "QUIT",
        "NOOP",
        "HELP",
        "OPTS",
        "REIN",
        "STAT",
      ]);
      const [c] = await RawClient.connect("127.0.0.1", t.port);
      try {
        const names = [...buildCommandTable().keys()];
        assert.ok(names.length > 40, "the command table is complete");
        for (const name of names) {
          if (open.has(name)) continue;
          for (const line of [name, `${name} x`, `${name} /`]) {
            const r = await c.cmd(line);
            assert.equal(r.code, 530, `${line}: ${r.text}`);
          }
        }
        assert.equal((await c.cmd("STAT /")).code, 530, "STAT with a path lists files");
        const expected: [string, number][] = [
          ["NOOP", 200],
          ["SYST", 215],
          ["FEAT", 211],
          ["HELP", 214],
          ["OPTS UTF8 ON", 200],
          ["AUTH TLS", 502],
          ["STAT", 211],
          ["PASS x", 503],
          ["REIN", 220],
          [`USER ${USER}`, 331],
        ];
        for (const [line, code] of expected) {
          const r = await c.cmd(line);
          assert.equal(r.code, code, `${line}: ${r.text}`);
        }
        assert.equal([...Deno.readDirSync(t.root)].length, 1, "nothing was created");
        assert.equal((await c.cmd("QUIT")).code, 221);
        assert.equal(await c.closedWithin(2000), true);
      } finally {
        c.close();
      }
    });
  } finally {
    await t.close();
  }
});
