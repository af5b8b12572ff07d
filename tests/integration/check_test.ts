/**
 * `pitifulnat check` and the running server tell the truth: each setup that
 * cannot work fails `check` with its own exit code and a plain reason, and
 * the server says what is wrong instead of running on quietly. Subprocesses
 * of main.ts, as an operator runs them.
 */
import assert from "node:assert/strict";
import dgram from "node:dgram";
import { hashPassword } from "../../src/auth/password.ts";
import { CHECK_EXIT } from "../../src/cli/check.ts";
import { rawGreeting } from "../helpers/ftplib.ts";
import { freePort, startServe } from "../helpers/program.ts";
import { run, type RunResult } from "../helpers/server.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const REPO = new URL("../../", import.meta.url).pathname;
const deno = Deno.execPath();

/** An address no test contacts, outside every special range: check calls it public. */
const PUBLIC = "5.6.7.8";

/** A temporary directory for one test, removed afterwards. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "pn-check-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A setup meant for the internet that works: listening beyond loopback,
 * a public address, anonymous read access to the config's directory.
 * `lines` replace or add top-level keys.
 */
function internetConfig(lines: Record<string, string> = {}): string {
  const passive = freePort();
  const base: Record<string, string> = {
    listen: `{ address: 0.0.0.0, port: ${freePort()} }`,
    passive: `{ min_port: ${passive}, max_port: ${passive} }`,
    public_address: `{ address: ${PUBLIC} }`,
    anonymous: '{ enabled: true, home: "." }',
    ...lines,
  };
  return Object.entries(base).filter(([, v]) => v !== "")
    .map(([k, v]) => `${k}: ${v}`).join("\n") + "\n";
}

/** Runs `check` on `yaml` written to `dir/check.yaml`. */
async function check(dir: string, yaml: string, args: string[] = []): Promise<RunResult> {
  await Deno.writeTextFile(`${dir}/check.yaml`, yaml);
  return await run(deno, ["run", "-A", MAIN, "check", "--config", `${dir}/check.yaml`, ...args], {
    timeoutMs: 60_000,
  });
}

/** The exit code, with the whole report in the message when it is not `code`. */
function assertExit(r: RunResult, code: number): void {
  assert.equal(r.code, code, `exit ${r.code}, expected ${code}:\n${r.stdout}${r.stderr}`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, "no stack trace");
}

Deno.test("check: a working internet setup passes with exit 0", async () => {
  await withDir(async (dir) => {
    const r = await check(dir, internetConfig());
    assertExit(r, CHECK_EXIT.ok);
    assert.match(r.stdout, /OK: remote and LAN clients will be told reachable addresses/);
    assert.match(r.stdout, /a remote client .* is told: 5\.6\.7\.8/);
    assert.match(r.stdout, /router: forward TCP \d+ and \d+-\d+ to this machine/);
  });
});

Deno.test("check 1: a loopback listener with a public address fails (exit 4), no forward advice", async () => {
  await withDir(async (dir) => {
    const r = await check(
      dir,
      internetConfig({ listen: `{ address: 127.0.0.1, port: ${freePort()} }` }),
    );
    assertExit(r, CHECK_EXIT.loopbackListen);
    assert.match(r.stdout, /listen\.address is 127\.0\.0\.1: only this machine can connect/);
    assert.doesNotMatch(r.stdout, /router: forward/);
  });
});

Deno.test("check 2: a public address the internet cannot reach fails (exit 5) and says why", async () => {
  await withDir(async (dir) => {
    const cases: [string, RegExp][] = [
      ["100.64.3.4", /carrier-grade NAT.*no port forward on your own router.*Ask the provider/],
      ["192.168.1.10", /private \(LAN\) address/],
      ["127.0.0.2", /loopback address/],
      ["203.0.113.5", /documentation range/],
    ];
    for (const [address, why] of cases) {
      const r = await check(dir, internetConfig({ public_address: `{ address: ${address} }` }));
      assertExit(r, CHECK_EXIT.publicAddress);
      assert.match(r.stdout, why, address);
    }
  });
});

Deno.test("check 3: a missing home, or a file as home, fails (exit 10)", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/a-file`, "x");
    const hash = await hashPassword("pw", { cost: 10 });
    const users = (home: string) => `\n  - { name: bob, password: "${hash}", home: ${home} }`;
    const missing = await check(dir, internetConfig({ users: users("nowhere") }));
    assertExit(missing, CHECK_EXIT.home);
    assert.match(missing.stdout, /the home of user bob, .*nowhere, does not exist/);
    const file = await check(
      dir,
      internetConfig({ anonymous: '{ enabled: true, home: "a-file" }' }),
    );
    assertExit(file, CHECK_EXIT.home);
    assert.match(file.stdout, /the home of anonymous, .*a-file, is not a directory/);
  });
});

Deno.test("server 3: the right password with a missing home gets 421 and a log line naming the user", async () => {
  await withDir(async (dir) => {
    const port = freePort();
    const hash = await hashPassword("secret", { cost: 10 });
    await Deno.writeTextFile(
      `${dir}/c.yaml`,
      `listen: { address: 127.0.0.1, port: ${port} }\n` +
        `users:\n  - { name: bob, password: "${hash}", home: gone }\n`,
    );
    const server = await startServe("c.yaml", {
      cwd: dir,
      port,
    });
    let log = "";
    try {
      const r = await run("python3", [
        "-c",
        `import ftplib, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
try:
    ftp.login("bob", "secret")
    print("logged in")
except ftplib.all_errors as e:
    print(e)
`,
        String(port),
      ]);
      assert.match(r.stdout, /^421 Home directory not available/, r.stderr);
    } finally {
      log = (await server.stop()).stderr;
    }
    assert.match(log, /bob gave the right password, but the home .*gone is not usable/);
    assert.match(log, /peer=127\.0\.0\.1:\d+/);
    assert.doesNotMatch(log, /login failed/);
  });
});

Deno.test("check 5: a status port in use fails (exit 8); the server names the port and runs on", async () => {
  await withDir(async (dir) => {
    const held = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const statusPort = (held.addr as Deno.NetAddr).port;
    try {
      const r = await check(dir, internetConfig({ status: `{ port: ${statusPort} }` }));
      assertExit(r, CHECK_EXIT.statusPort);
      assert.match(
        r.stdout,
        new RegExp(`status port 127\\.0\\.0\\.1:${statusPort} \\(status\\.port\\) cannot be bound`),
      );
      const port = freePort();
      await Deno.writeTextFile(
        `${dir}/s.yaml`,
        `listen: { address: 127.0.0.1, port: ${port} }\nstatus: { port: ${statusPort} }\n` +
          `anonymous: { enabled: true, home: "." }\n`,
      );
      const server = await startServe("s.yaml", {
        cwd: dir,
        port,
      });
      const out = await server.stop();
      assert.match(
        out.stderr,
        new RegExp(
          `status\\.port: cannot listen on http://127\\.0\\.0\\.1:${statusPort}/: address in use`,
        ),
      );
      assert.doesNotMatch(out.stderr, /unhandled error/);
    } finally {
      held.close();
    }
  });
});

Deno.test("check 6: a log file in a missing folder is a config error (exit 3) with file:line:col", async () => {
  await withDir(async (dir) => {
    const r = await check(
      dir,
      internetConfig({ log: "{ file: /nonexistent-dir/pitifulnat.log }" }),
    );
    assertExit(r, CHECK_EXIT.config);
    assert.match(
      r.stderr,
      /check\.yaml:5:\d+: log\.file: the folder \/nonexistent-dir does not exist/,
    );
  });
});

Deno.test("check 7: a LAN-only setup passes and says so; this-machine-only too", async () => {
  await withDir(async (dir) => {
    const lan = await check(dir, internetConfig({ public_address: "" }));
    assertExit(lan, CHECK_EXIT.ok);
    assert.match(lan.stdout, /OK \(LAN only\): no public_address/);
    assert.doesNotMatch(lan.stdout, /will fail until it resolves|remote and LAN clients/);
    const local = await check(
      dir,
      internetConfig({
        public_address: "",
        listen: `{ address: 127.0.0.1, port: ${freePort()} }`,
      }),
    );
    assertExit(local, CHECK_EXIT.ok);
    assert.match(local.stdout, /OK \(this machine only\)/);
  });
});

Deno.test("serve 9: serve refuses a proxy config, and proxy a config without proxy", async () => {
  await withDir(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/p.yaml`,
      internetConfig({ proxy: "{ upstream: { host: 127.0.0.1 } }" }),
    );
    const serve = await run(deno, ["run", "-A", MAIN, "serve", "--config", `${dir}/p.yaml`]);
    assert.equal(serve.code, 2);
    assert.match(
      serve.stderr,
      /has a proxy section, which serve does not use: run `pitifulnat proxy`/,
    );
    await Deno.writeTextFile(`${dir}/s.yaml`, internetConfig());
    const proxy = await run(deno, ["run", "-A", MAIN, "proxy", "--config", `${dir}/s.yaml`]);
    assert.equal(proxy.code, 2);
    assert.match(proxy.stderr, /no proxy section, which proxy needs.*or run `pitifulnat serve`/);
  });
});

Deno.test("server 10: SIGHUP with a new listen port says a restart is needed and keeps serving", async () => {
  await withDir(async (dir) => {
    const port = freePort();
    const other = freePort();
    const yaml = (p: number) =>
      `listen: { address: 127.0.0.1, port: ${p} }\nanonymous: { enabled: true, home: "." }\n` +
      `banner: reload test\n`;
    await Deno.writeTextFile(`${dir}/c.yaml`, yaml(port));
    const server = await startServe("c.yaml", {
      cwd: dir,
      port,
    });
    try {
      await Deno.writeTextFile(`${dir}/c.yaml`, yaml(other).replace("reload test", "reloaded"));
      Deno.kill(server.pid, "SIGHUP");
      // Bounded: the greeting changes once the reload is applied.
      let greeting = "";
      for (let i = 0; i < 50 && !greeting.includes("reloaded"); i++) {
        await new Promise((r) => setTimeout(r, 100));
        greeting = await rawGreeting(port);
      }
      assert.match(greeting, /^220 reloaded/, "still serving on the old port, with the new banner");
      await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: other }));
    } finally {
      const out = await server.stop();
      assert.match(
        out.stderr,
        /reloaded .*c\.yaml; restart needed for listen\.port: they keep their running values/,
      );
    }
  });
});

Deno.test("check 12: IPv6 listeners are bracketed and never 'told: null'", async () => {
  await withDir(async (dir) => {
    const port = freePort();
    const r = await check(
      dir,
      internetConfig({
        listen: `{ address: "::", port: ${port} }`,
        public_address: `{ address: "2a01:4f8::5", ipv6: true }`,
      }),
      ["--client", "2a02:8070::9"],
    );
    assert.doesNotMatch(r.stdout, /null/);
    assert.match(r.stdout, new RegExp(`control port \\[::\\]:${port}: can be bound`));
    assert.match(r.stdout, /client 2a02:8070::9 is told: no PASV address .*EPSV/);
  });
});

Deno.test("check causes: the passive range holds the control port (exit 7); nobody can log in (exit 9)", async () => {
  await withDir(async (dir) => {
    const port = freePort();
    const clash = await check(
      dir,
      internetConfig({
        listen: `{ address: 0.0.0.0, port: ${port} }`,
        passive: `{ min_port: ${port}, max_port: ${port + 1} }`,
      }),
    );
    assertExit(clash, CHECK_EXIT.ports);
    assert.match(
      clash.stdout,
      new RegExp(`passive range ${port}-${port + 1} holds the control port`),
    );
    const nobody = await check(dir, internetConfig({ anonymous: "" }));
    assertExit(nobody, CHECK_EXIT.noLogin);
    assert.match(nobody.stdout, /nobody can log in: there are no users and anonymous is off/);
  });
});

Deno.test("check causes: the passive range inside the ephemeral ports is a warning, not a failure", async () => {
  let range: number[];
  try {
    range = (await Deno.readTextFile("/proc/sys/net/ipv4/ip_local_port_range")).trim().split(/\s+/)
      .map(Number);
  } catch {
    return; // Not Linux: the kernel does not say.
  }
  await withDir(async (dir) => {
    const inside = await check(
      dir,
      internetConfig({ passive: `{ min_port: ${range[1]}, max_port: ${range[1]} }` }),
    );
    assertExit(inside, CHECK_EXIT.ok);
    assert.match(
      inside.stdout,
      /warning: the passive range .* overlaps the system's ephemeral ports/,
    );
    assert.match(inside.stdout, /ip_local_reserved_ports=/);
  });
});

/**
 * Runs the bundled program as the user `nobody` (no privileges, and subject
 * to file permissions, unlike root), with its own DENO_DIR.
 */
async function checkAsNobody(dir: string, yaml: string): Promise<RunResult> {
  const bundle = `${dir}/pitifulnat.js`;
  const built = await run(deno, ["bundle", "--quiet", "--output", bundle, "main.ts"], {
    cwd: REPO,
    timeoutMs: 120_000,
  });
  assert.equal(built.code, 0, built.stderr);
  await Deno.writeTextFile(`${dir}/check.yaml`, yaml);
  await Deno.mkdir(`${dir}/deno-dir`);
  await Deno.chmod(dir, 0o755);
  await run("chown", ["nobody", `${dir}/deno-dir`]);
  return await run("runuser", [
    "-u",
    "nobody",
    "--",
    "env",
    `DENO_DIR=${dir}/deno-dir`,
    deno,
    "run",
    "--no-config",
    "-A",
    bundle,
    "check",
    "--config",
    `${dir}/check.yaml`,
  ], { timeoutMs: 60_000 });
}

Deno.test({
  name: "check causes, as an unprivileged user: port 21 needs privileges; a home not writable",
  ignore: Deno.uid() !== 0,
  async fn() {
    await withDir(async (dir) => {
      const home = `${dir}/home`;
      await Deno.mkdir(home, { mode: 0o755 });
      const hash = await hashPassword("pw", { cost: 10 });
      const r = await checkAsNobody(
        dir,
        internetConfig({
          listen: "{ address: 0.0.0.0, port: 21 }",
          users:
            `\n  - { name: carol, password: "${hash}", home: ${home}, permissions: [read, write] }`,
          anonymous: "",
        }),
      );
      assertExit(r, CHECK_EXIT.ports);
      assert.match(
        r.stdout,
        /port 21 needs privileges this process does not have.*CAP_NET_BIND_SERVICE/,
      );
      assert.match(
        r.stdout,
        /the home of user carol, .*home, is not writable by this user.*\(exit 10\)/,
      );
    });
  },
});

Deno.test("check causes: port_mapping on, and no router answers (exit 13)", async () => {
  await withDir(async (dir) => {
    // 127.0.0.9 is loopback: nothing there speaks NAT-PMP.
    const r = await check(
      dir,
      internetConfig({ port_mapping: "{ protocol: natpmp, gateway: 127.0.0.9 }" }),
    );
    assertExit(r, CHECK_EXIT.portMapping);
    assert.match(r.stdout, /port_mapping is natpmp, but no NAT-PMP reply from 127\.0\.0\.9:5351/);
    assert.match(r.stdout, /router: port_mapping \(natpmp\) asks the router for TCP/);
  });
});

/** Runs `fn` with an HTTP server on 127.0.0.1 that answers every GET with `status` and `body`. */
async function withAddressUrl(
  answer: { status: number; body: string },
  fn: (url: string) => Promise<void>,
): Promise<void> {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(answer.body, { status: answer.status }),
  );
  try {
    await fn(`http://127.0.0.1:${server.addr.port}/`);
  } finally {
    await server.shutdown();
  }
}

Deno.test("check: from: http fetches the URL once and says what it answered", async () => {
  await withDir(async (dir) => {
    await withAddressUrl({ status: 200, body: `${PUBLIC}\n` }, async (url) => {
      const r = await check(
        dir,
        internetConfig({ public_address: `{ from: http, url: "${url}" }` }),
      );
      assertExit(r, CHECK_EXIT.ok);
      assert.match(
        r.stdout,
        new RegExp(
          `^public address: ${url} -> 5\\.6\\.7\\.8 \\(fetched over HTTP, [\\d.]+ ms\\)$`,
          "m",
        ),
      );
      assert.match(r.stdout, /a remote client .* is told: 5\.6\.7\.8/);
      assert.match(r.stdout, /OK: remote and LAN clients will be told reachable addresses/);
    });
  });
});

Deno.test("check: a from: http URL that answers 500 fails like a name that does not resolve (exit 6)", async () => {
  await withDir(async (dir) => {
    await withAddressUrl({ status: 500, body: "oops" }, async (url) => {
      const r = await check(
        dir,
        internetConfig({ public_address: `{ from: http, url: "${url}" }` }),
      );
      assertExit(r, CHECK_EXIT.unresolved);
      assert.match(
        r.stdout,
        new RegExp(`^public address: ${url} -> no address .*: ${url} answered 500`, "m"),
      );
      assert.match(
        r.stdout,
        new RegExp(
          `^- cannot get the public address from ${url}: ${url} answered 500.*\\(exit 6\\)$`,
          "m",
        ),
      );
      assert.match(
        r.stdout,
        /a remote client .* is told: \S+ \(public address not resolved yet/,
      );
    });
  });
});

Deno.test("check: from: http and a router that reports another WAN address: a warning", async () => {
  // A NAT-PMP gateway on loopback: the external address, and TCP mappings granted as asked
  // (check's trial mapping; a deletion is a map with lifetime 0).
  const gateway = dgram.createSocket("udp4");
  const trial: number[][] = [];
  gateway.on("message", (msg, from) => {
    if (msg[1] === 2 && msg.length >= 12) {
      const req = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
      trial.push([req.getUint16(4), req.getUint32(8)]);
      const reply = new Uint8Array(16);
      const view = new DataView(reply.buffer);
      reply[1] = 130;
      view.setUint32(4, 1000);
      view.setUint16(8, req.getUint16(4));
      view.setUint16(10, req.getUint16(4));
      view.setUint32(12, req.getUint32(8));
      gateway.send(reply, from.port, from.address);
      return;
    }
    if (msg[1] !== 0) return;
    const reply = new Uint8Array(12);
    reply[1] = 128;
    new DataView(reply.buffer).setUint32(4, 1000);
    reply.set([5, 6, 7, 9], 8);
    gateway.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => gateway.bind(5351, "127.0.0.10", resolve));
  try {
    await withDir(async (dir) => {
      await withAddressUrl({ status: 200, body: PUBLIC }, async (url) => {
        const r = await check(
          dir,
          internetConfig({
            public_address: `{ from: http, url: "${url}" }`,
            port_mapping: "{ protocol: natpmp, gateway: 127.0.0.10 }",
          }),
        );
        assertExit(r, CHECK_EXIT.ok);
        assert.match(
          r.stdout,
          new RegExp(
            `^warning: the router reports the WAN address 5\\.6\\.7\\.9, but ${url} answers ` +
              `5\\.6\\.7\\.8: the router is not the one facing the internet`,
            "m",
          ),
        );
        assert.doesNotMatch(r.stdout, /dynamic-DNS record/);
        // Nothing runs on the control port: check tried one mapping of it and removed it.
        assert.match(r.stdout, /a trial mapping of port \d+ was granted and removed again/);
        assert.equal(trial.length, 2, JSON.stringify(trial));
        assert.equal(trial[0][0], trial[1][0]);
        assert.ok(trial[0][1] > 0 && trial[1][1] === 0, JSON.stringify(trial));
      });
    });
  } finally {
    await new Promise<void>((resolve) => gateway.close(() => resolve()));
  }
});

Deno.test("check's exit codes are all documented: README's table and check --help", async () => {
  const readme = await Deno.readTextFile(`${REPO}/README.md`);
  const { HELP } = await import("../../src/cli/help.ts");
  for (const [name, code] of Object.entries(CHECK_EXIT)) {
    assert.match(
      readme,
      new RegExp(`^\\|\\s+${code} \\| `, "m"),
      `README row for ${name} (${code})`,
    );
    assert.match(
      HELP.check,
      new RegExp(`(^|[ ;(])${code} [A-Za-z]`, "m"),
      `check --help names ${name} (${code})`,
    );
  }
});
