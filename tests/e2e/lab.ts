/**
 * Test helpers for the NAT lab and the real-DNS tests: long-running child
 * processes with captured output, a dnsmasq serving a hosts file, and a
 * small internet of network namespaces (a client behind a masquerading
 * router, a server behind a port-forwarding router, no FTP helper anywhere).
 *
 * Every process is started by this module, tracked by PID and stopped by
 * PID; every namespace is created with a per-run prefix and deleted by name.
 * @module
 */
import dgram from "node:dgram";
import { run, type RunResult } from "../helpers/server.ts";

/** Where the lab's tools are looked for besides `$PATH` (root's sbin may be missing from it). */
const SBIN_DIRS = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/** The absolute path of a program, or null when it is not installed. */
export function findProgram(name: string): string | null {
  const dirs = [...(Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== ""), ...SBIN_DIRS];
  for (const dir of dirs) {
    try {
      const info = Deno.statSync(`${dir}/${name}`);
      if (info.isFile && ((info.mode ?? 0) & 0o111) !== 0) return `${dir}/${name}`;
    } catch {
      // Not in this directory.
    }
  }
  return null;
}

/** True when this run must fail, not skip, on a missing prerequisite. */
export function isCi(): boolean {
  return Deno.env.get("CI") === "true";
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs a command and throws, with its output, when it exits non-zero. */
export async function mustRun(
  cmd: string,
  args: string[],
  options: { timeoutMs?: number } = {},
): Promise<RunResult> {
  const r = await run(cmd, args, { timeoutMs: options.timeoutMs ?? 15_000 });
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  }
  return r;
}

/**
 * A long-running child process whose stdout and stderr are collected into
 * one text, so a test can wait for a log line and show the log on failure.
 */
export class Proc {
  /** The child process (its PID is the program's: `ip netns exec` execs in place). */
  readonly child: Deno.ChildProcess;
  /** What the command was, for messages. */
  readonly label: string;
  #output = "";
  #exit: Deno.CommandStatus | null = null;
  readonly #pumps: Promise<void>;
  readonly #status: Promise<Deno.CommandStatus>;

  constructor(cmd: string, args: string[], options: { cwd?: string } = {}) {
    this.label = [cmd, ...args].join(" ");
    this.child = new Deno.Command(cmd, {
      args,
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#pumps = Promise.all([this.#pump(this.child.stdout), this.#pump(this.child.stderr)])
      .then(() => {});
    this.#status = this.child.status.then((s) => this.#exit = s);
  }

  async #pump(stream: ReadableStream<Uint8Array>): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) this.#output += dec.decode(chunk, { stream: true });
  }

  /** The PID. */
  get pid(): number {
    return this.child.pid;
  }

  /** Everything the process printed so far. */
  get output(): string {
    return this.#output;
  }

  /** The exit status, or null while it runs. */
  get exited(): Deno.CommandStatus | null {
    return this.#exit;
  }

  /**
   * Waits until the output matches `pattern` (checked every 50 ms, at most
   * `timeoutMs`). Throws, with the output so far, on timeout or exit.
   */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const m = this.#output.match(pattern);
      if (m) return m;
      if (this.#exit !== null) {
        throw new Error(
          `${this.label} exited (${this.#exit.code}) before printing ${pattern}:\n${this.#output}`,
        );
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `${this.label}: no ${pattern} within ${timeoutMs} ms; output:\n${this.#output}`,
        );
      }
      await sleep(50);
    }
  }

  /** Sends a signal; ignored when the process has already exited. */
  signal(sig: Deno.Signal): void {
    if (this.#exit !== null) return;
    try {
      this.child.kill(sig);
    } catch {
      // Exited meanwhile.
    }
  }

  /**
   * Stops the process: `signal` (default SIGTERM), then SIGKILL after
   * `graceMs`. Resolves once it has exited and its output is read.
   */
  async stop(sig: Deno.Signal = "SIGTERM", graceMs = 5_000): Promise<Deno.CommandStatus> {
    this.signal(sig);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) =>
      timer = setTimeout(() => resolve("late"), graceMs)
    );
    const first = await Promise.race([this.#status, late]);
    clearTimeout(timer);
    if (first === "late") this.signal("SIGKILL");
    const status = await this.#status;
    await this.#pumps;
    return status;
  }
}

/** A running dnsmasq that answers from one hosts file. */
export interface Dnsmasq {
  /** The process (PID, log). */
  proc: Proc;
  /** The hosts file it serves. */
  hostsFile: string;
  /** Rewrites the hosts file and makes dnsmasq re-read it (SIGHUP). */
  setHosts(text: string): Promise<void>;
  /** Kills it (by PID) and waits for it to exit. */
  stop(): Promise<void>;
}

/**
 * Starts dnsmasq in the foreground as an authoritative-only server for the
 * names in `hostsFile` (no upstream, no /etc/hosts, no config file), on
 * `listen:port`, optionally inside a network namespace. Resolves once it
 * reports it has started (its sockets are bound by then).
 */
export async function startDnsmasq(
  options: { listen: string; port: number; hostsFile: string; netns?: string },
): Promise<Dnsmasq> {
  const dnsmasq = findProgram("dnsmasq");
  if (dnsmasq === null) throw new Error("dnsmasq is not installed");
  const args = [
    "--keep-in-foreground",
    `--port=${options.port}`,
    `--listen-address=${options.listen}`,
    "--bind-interfaces",
    "--no-resolv",
    "--no-hosts",
    `--addn-hosts=${options.hostsFile}`,
    "--pid-file=",
    "--conf-file=/dev/null",
    "--user=root",
    "--log-facility=-",
  ];
  const proc = options.netns === undefined
    ? new Proc(dnsmasq, args)
    : new Proc("ip", ["netns", "exec", options.netns, dnsmasq, ...args]);
  try {
    // Logged once the sockets are bound and the hosts file is loaded.
    await proc.waitFor(new RegExp(`read ${escapeRegExp(options.hostsFile)}`), 5_000);
  } catch (e) {
    await proc.stop("SIGKILL");
    throw e;
  }
  return {
    proc,
    hostsFile: options.hostsFile,
    async setHosts(text: string) {
      // dnsmasq logs each re-read; waiting for the next one makes the change certain.
      const before = proc.output.split("read " + options.hostsFile).length;
      await Deno.writeTextFile(options.hostsFile, text);
      proc.signal("SIGHUP");
      const deadline = Date.now() + 5_000;
      while (proc.output.split("read " + options.hostsFile).length <= before) {
        if (Date.now() > deadline) throw new Error(`dnsmasq did not re-read ${options.hostsFile}`);
        await sleep(20);
      }
    },
    async stop() {
      await proc.stop("SIGTERM", 3_000);
    },
  };
}

function udpPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket("udp4");
    sock.once("error", () => {
      sock.close();
      resolve(false);
    });
    sock.bind(port, "127.0.0.1", () => sock.close(() => resolve(true)));
  });
}

/** A free port on 127.0.0.1 for both TCP and UDP (a DNS server listens on both). */
export async function freeLoopbackPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    if (await udpPortFree(port)) return port;
  }
  throw new Error("no free loopback port found in 50 tries");
}

function namespaceExists(name: string): boolean {
  try {
    Deno.statSync(`/run/netns/${name}`);
    return true;
  } catch {
    return false;
  }
}

/** The lab's addresses (documentation ranges for the "internet", RFC 5737). */
export const ADDR = {
  cli: "192.168.10.2",
  cliRouterLan: "192.168.10.1",
  cliRouterWan: "198.51.100.10",
  inet: "198.51.100.1",
  srvRouterWan: "198.51.100.20",
  srvRouterWanNew: "198.51.100.21",
  srvRouterLan: "10.0.0.1",
  srv: "10.0.0.2",
  lan: "10.0.0.3",
} as const;

/** The FTP control port, implicit FTPS port and passive range the server router forwards. */
export const FORWARD = { control: 2121, implicit: 990, min: 50000, max: 50020 } as const;

/** The lab's namespaces by role. */
export type Role = "cli" | "crt" | "inet" | "srt" | "srv" | "lan";

const ROLES: readonly Role[] = ["cli", "crt", "inet", "srt", "srv", "lan"];

/**
 * Missing prerequisites of the NAT lab (empty when it can run): root, the
 * tools, and the right to create a network namespace.
 */
export async function labPrerequisites(): Promise<string[]> {
  const missing: string[] = [];
  if (Deno.build.os !== "linux") return ["Linux"];
  if (Deno.uid() !== 0) missing.push("root");
  for (const tool of ["ip", "nft", "dnsmasq", "curl", "lftp", "python3"]) {
    if (findProgram(tool) === null) missing.push(tool);
  }
  if (missing.length === 0) {
    const probe = `pn${Deno.pid}-probe`;
    const r = await run("ip", ["netns", "add", probe], { timeoutMs: 5_000 });
    if (r.code !== 0) missing.push(`network namespaces (ip netns add: ${r.stderr.trim()})`);
    else await run("ip", ["netns", "del", probe], { timeoutMs: 5_000 });
  }
  return missing;
}

/**
 * The NAT lab: six namespaces wired as a tiny internet.
 *
 * ```
 * cli 192.168.10.2 ── crt (masquerade) 198.51.100.10 ─┐
 *                                                      inet bridge 198.51.100.1 (dnsmasq)
 * srv 10.0.0.2 ─┬─ srt 10.0.0.1 (DNAT 2121, 990, 50000-50020) 198.51.100.20 ─┘
 * lan 10.0.0.3 ─┘
 * ```
 *
 * Neither router has an FTP helper: nothing rewrites `227` or `PORT`.
 */
export class NatLab {
  /** Namespace names by role (unique per run). */
  readonly ns: Record<Role, string>;
  readonly #created: string[] = [];
  readonly #procs: Proc[] = [];
  readonly #dir: string;

  private constructor(dir: string, tag: string) {
    const prefix = `pn${Deno.pid}${tag}-`;
    this.ns = Object.fromEntries(ROLES.map((r) => [r, prefix + r])) as Record<Role, string>;
    this.#dir = dir;
  }

  /**
   * Builds the lab; on failure removes whatever was made and rethrows.
   * `tag` (letters) keeps the namespace names of labs in one process apart.
   * `forward: false` leaves out the server router's DNAT (a port-mapping
   * daemon such as miniupnpd adds the forwards instead).
   */
  static async create(options: { tag?: string; forward?: boolean } = {}): Promise<NatLab> {
    const tag = options.tag ?? "";
    if (!/^[a-z]*$/.test(tag)) throw new TypeError(`lab tag must be lower-case letters: ${tag}`);
    const lab = new NatLab(await Deno.makeTempDir({ prefix: "pn-lab-" }), tag);
    try {
      await lab.#build(options.forward ?? true);
    } catch (e) {
      await lab.close();
      throw e;
    }
    return lab;
  }

  /** `ip -n <ns> args...`, checked. */
  /** A veth pair: `name` in `role`'s namespace, `peer` in `peerRole`'s. */
  #veth(role: Role, name: string, peer: string, peerRole: Role): Promise<RunResult> {
    return this.ip(
      role,
      "link",
      "add",
      name,
      "type",
      "veth",
      "peer",
      "name",
      peer,
      "netns",
      this.ns[peerRole],
    );
  }

  ip(role: Role, ...args: string[]): Promise<RunResult> {
    return mustRun("ip", ["-n", this.ns[role], ...args]);
  }

  /** Runs a program inside a namespace with a time limit (not checked). */
  exec(role: Role, cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
    return run("ip", ["netns", "exec", this.ns[role], cmd, ...args], { timeoutMs });
  }

  /** Starts a long-running program inside a namespace; {@linkcode NatLab.close} stops it. */
  spawn(role: Role, cmd: string, args: string[], options: { cwd?: string } = {}): Proc {
    const p = new Proc("ip", ["netns", "exec", this.ns[role], cmd, ...args], options);
    this.#procs.push(p);
    return p;
  }

  /** Gives the server router's WAN a new address (as an ISP does); DNAT keeps working. */
  async renumberServerWan(from: string, to: string): Promise<void> {
    await this.ip("srt", "addr", "del", `${from}/24`, "dev", "wan");
    await this.ip("srt", "addr", "add", `${to}/24`, "dev", "wan");
  }

  /**
   * Switches the kernel's FTP helper on (or off again) for the forwarded
   * control port on the server's router: the control case that shows what
   * a router's helper can and cannot do.
   */
  async serverRouterFtpHelper(on: boolean): Promise<void> {
    if (!on) {
      await mustRun("ip", [
        "netns",
        "exec",
        this.ns.srt,
        "nft",
        "delete",
        "table",
        "ip",
        "pn_helper",
      ]);
      return;
    }
    await this.#nft(
      "srt",
      `table ip pn_helper {
  ct helper ftp-standard { type "ftp" protocol tcp; }
  chain prerouting {
    type filter hook prerouting priority filter; policy accept;
    iifname "wan" tcp dport ${FORWARD.control} ct helper set "ftp-standard"
  }
}
`,
    );
  }

  async #nft(role: Role, rules: string): Promise<void> {
    const file = `${this.#dir}/${role}.nft`;
    await Deno.writeTextFile(file, rules);
    await mustRun("ip", ["netns", "exec", this.ns[role], "nft", "-f", file]);
  }

  async #sysctlForward(role: Role): Promise<void> {
    await mustRun("ip", [
      "netns",
      "exec",
      this.ns[role],
      "sh",
      "-c",
      "echo 1 > /proc/sys/net/ipv4/ip_forward",
    ]);
  }

  async #build(forward: boolean): Promise<void> {
    for (const role of ROLES) {
      // A namespace left by an earlier run of the same PID would make `add` fail.
      await run("ip", ["netns", "del", this.ns[role]], { timeoutMs: 5_000 });
      await mustRun("ip", ["netns", "add", this.ns[role]]);
      this.#created.push(this.ns[role]);
      await this.ip(role, "link", "set", "lo", "up");
    }
    // The internet: one bridge, with the DNS server's address on it.
    await this.ip("inet", "link", "add", "br0", "type", "bridge");
    await this.ip("inet", "addr", "add", `${ADDR.inet}/24`, "dev", "br0");
    await this.ip("inet", "link", "set", "br0", "up");
    for (const router of ["crt", "srt"] as const) {
      await this.#veth(router, "wan", `to-${router}`, "inet");
      await this.ip("inet", "link", "set", `to-${router}`, "master", "br0", "up");
    }
    // The client's home: cli behind crt.
    await this.#veth("cli", "eth0", "lan", "crt");
    await this.ip("cli", "addr", "add", `${ADDR.cli}/24`, "dev", "eth0");
    await this.ip("cli", "link", "set", "eth0", "up");
    await this.ip("cli", "route", "add", "default", "via", ADDR.cliRouterLan);
    await this.ip("crt", "addr", "add", `${ADDR.cliRouterLan}/24`, "dev", "lan");
    await this.ip("crt", "addr", "add", `${ADDR.cliRouterWan}/24`, "dev", "wan");
    await this.ip("crt", "link", "set", "lan", "up");
    await this.ip("crt", "link", "set", "wan", "up");
    await this.ip("crt", "route", "add", "default", "via", ADDR.inet);
    // The server's home: srv and lan on a bridge in srt.
    await this.ip("srt", "link", "add", "br-lan", "type", "bridge");
    await this.ip("srt", "addr", "add", `${ADDR.srvRouterLan}/24`, "dev", "br-lan");
    await this.ip("srt", "link", "set", "br-lan", "up");
    await this.ip("srt", "addr", "add", `${ADDR.srvRouterWan}/24`, "dev", "wan");
    await this.ip("srt", "link", "set", "wan", "up");
    await this.ip("srt", "route", "add", "default", "via", ADDR.inet);
    for (const host of ["srv", "lan"] as const) {
      await this.#veth(host, "eth0", `p-${host}`, "srt");
      await this.ip("srt", "link", "set", `p-${host}`, "master", "br-lan", "up");
      await this.ip(host, "addr", "add", `${ADDR[host]}/24`, "dev", "eth0");
      await this.ip(host, "link", "set", "eth0", "up");
      await this.ip(host, "route", "add", "default", "via", ADDR.srvRouterLan);
    }
    await this.#sysctlForward("crt");
    await this.#sysctlForward("srt");
    // With forwarding on, "the internet" answers a packet for a private address
    // it has no route to with ICMP unreachable (a quick failure, not a timeout).
    await this.#sysctlForward("inet");
    // NAT with no FTP helper: no `ct helper` anywhere, so 227/PORT pass unchanged.
    await this.#nft(
      "crt",
      `table ip pitifulnat_lab {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }
}
`,
    );
    const dnat = forward
      ? `    iifname "wan" tcp dport { ${FORWARD.control}, ${FORWARD.implicit}, ${FORWARD.min}-${FORWARD.max} } dnat to ${ADDR.srv}\n`
      : "";
    await this.#nft(
      "srt",
      `table ip pitifulnat_lab {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
${dnat}  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "wan" masquerade
  }
}
`,
    );
  }

  /** The nftables rules of every router, for asserting what the lab does. */
  async rulesets(): Promise<string> {
    const out: string[] = [];
    for (const role of ["crt", "srt"] as const) {
      const r = await mustRun("ip", ["netns", "exec", this.ns[role], "nft", "list", "ruleset"]);
      out.push(r.stdout);
    }
    return out.join("\n");
  }

  /**
   * Stops every process the lab started (by PID), kills anything still
   * inside the lab's namespaces (only this lab's processes can be there),
   * and deletes the namespaces by name. Never throws.
   */
  async close(): Promise<void> {
    for (const p of this.#procs.splice(0)) {
      try {
        await p.stop("SIGTERM", 3_000);
      } catch {
        // Keep cleaning up.
      }
    }
    for (const name of this.#created) {
      const r = await run("ip", ["netns", "pids", name], { timeoutMs: 5_000 }).catch(() => null);
      for (const pid of (r?.stdout ?? "").split(/\s+/).filter((t) => /^\d+$/.test(t))) {
        try {
          Deno.kill(Number(pid), "SIGKILL");
        } catch {
          // Gone already.
        }
      }
    }
    for (const name of this.#created.splice(0).reverse()) {
      // Deleting can fail for a moment (busy) while killed processes exit: retry, bounded.
      let error = "";
      for (let attempt = 0; attempt < 10; attempt++) {
        const r = await run("ip", ["netns", "del", name], { timeoutMs: 5_000 }).catch((e) => ({
          code: -1,
          stdout: "",
          stderr: String(e),
        }));
        if (!namespaceExists(name)) {
          error = "";
          break;
        }
        error = r.stderr.trim();
        await sleep(100);
      }
      if (error !== "" || namespaceExists(name)) {
        console.warn(`NAT lab: could not delete network namespace ${name}: ${error}`);
      }
    }
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** The CLI entry point the lab runs inside its namespaces. */
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;
/** The repository root: the working directory for `deno run` in the lab. */
export const REPO = new URL("../../", import.meta.url).pathname;
/** The dynamic-DNS name the lab's DNS server resolves to the router's WAN address. */
export const DYN_NAME = "ftp.dyn.test";

/** Arguments for `deno` that run the CLI from the module cache (a namespace has no registry). */
export function cliArgs(...args: string[]): string[] {
  return ["run", "-A", "--cached-only", MAIN, ...args];
}

/** Fills the module cache for the CLI; to be done before anything runs inside a namespace. */
export async function cacheCli(): Promise<void> {
  await mustRun(Deno.execPath(), ["cache", MAIN], { timeoutMs: 120_000 });
}

/** "198.51.100.20" -> "(198,51,100,20," as it appears in a 227 reply. */
export function in227(address: string): string {
  return `(${address.replaceAll(".", ",")},`;
}

/** Matches a 227 reply that announces `address`. */
export function told(address: string): RegExp {
  return new RegExp(`227 Entering Passive Mode \\${in227(address)}`);
}

/** A run's exit code and output, for assertion messages. */
export function show(r: RunResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** Removes `path` if it exists and returns it. */
export async function fresh(path: string): Promise<string> {
  await Deno.remove(path).catch(() => {});
  return path;
}

/**
 * A tiny ftplib client. Python ignores the address in a 227 reply by default
 * (it reuses the control connection's); the lab turns that off so the
 * announced address is really used, as most clients do. Modes: pasv, get,
 * put, wait-pasv, and get-port (PASV until told a given port, then RETR over
 * it); an "active-" prefix makes get/put use PORT, a "tls-" prefix FTPS.
 */
export const FTPLIB_CLIENT = `
import ftplib, sys, time
mode, host, port, user, password = sys.argv[1:6]
rest = sys.argv[6:]
tls = mode.startswith("tls-")
mode = mode[4:] if tls else mode
active = mode.startswith("active-")
mode = mode[7:] if active else mode
if tls:
    import ssl
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    f = ftplib.FTP_TLS(context=ctx, timeout=10)
else:
    f = ftplib.FTP(timeout=10)
f.trust_server_pasv_ipv4_address = True
f.connect(host, int(port))
f.login(user, password)
if tls:
    f.prot_p()
if active:
    f.set_pasv(False)
if mode == "pasv":
    print(f.sendcmd("PASV"))
elif mode == "get":
    f.set_debuglevel(1)
    with open(rest[1], "wb") as out:
        f.retrbinary("RETR " + rest[0], out.write)
elif mode == "put":
    f.set_debuglevel(1)
    with open(rest[0], "rb") as src:
        f.storbinary("STOR " + rest[1], src)
elif mode == "get-port":
    import re, socket
    want = int(rest[0])
    for _ in range(400):
        reply = f.sendcmd("PASV")
        h1, h2, h3, h4, p1, p2 = map(int, re.search(r"\\((.*)\\)", reply).group(1).split(","))
        if p1 * 256 + p2 == want:
            break
    else:
        sys.exit(4)
    print(reply, flush=True)
    data = socket.create_connection((host, want), timeout=10)
    print(f.sendcmd("RETR " + rest[1]), flush=True)
    with open(rest[2], "wb") as out:
        while True:
            chunk = data.recv(65536)
            if not chunk:
                break
            out.write(chunk)
    data.close()
    print(f.voidresp(), flush=True)
elif mode == "wait-pasv":
    want, limit = rest[0], float(rest[1])
    deadline = time.monotonic() + limit
    for _ in range(1000):
        reply = f.sendcmd("PASV")
        print(reply, flush=True)
        if want in reply:
            break
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.25)
    else:
        sys.exit(3)
f.quit()
`;

/**
 * Runs curl in the lab's `role` namespace, verbose and time-limited, with
 * EPSV off and the 227's address used ("pasv") or EPSV on ("epsv").
 */
export function labCurl(
  lab: NatLab,
  role: Role,
  mode: "pasv" | "epsv",
  args: string[],
): Promise<RunResult> {
  return lab.exec(role, "curl", [
    "-sS",
    "-v",
    "--max-time",
    "20",
    "--connect-timeout",
    "5",
    ...(mode === "pasv" ? ["--disable-epsv", "--no-ftp-skip-pasv-ip"] : ["--ftp-pasv"]),
    ...args,
  ], 30_000);
}

/**
 * The missing prerequisites of a lab test (`extra` names more of them), and
 * whether the test is skipped for it: it is outside CI, with a warning saying why.
 */
export async function labGate(
  label: string,
  needs: string,
  extra: string[] = [],
): Promise<{ missing: string[]; ignore: boolean }> {
  const missing = [...await labPrerequisites(), ...extra];
  const ignore = missing.length > 0 && !isCi();
  if (ignore) {
    console.warn(`SKIPPED ${label}: missing ${missing.join(", ")} (it needs ${needs})`);
  }
  return { missing, ignore };
}

/**
 * A STUN responder (RFC 5389 binding responses with MAPPED-ADDRESS only) for
 * miniupnpd's `ext_perform_stun`: it tells each asker the source address and
 * port it saw, from the port asked (it ignores CHANGE-REQUEST, so miniupnpd
 * sees four answers, all alike, which it takes for "no filtering NAT").
 */
const STUN_RESPONDER = `
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("stun ready", flush=True)
while True:
    data, (ip, port) = s.recvfrom(2048)
    if len(data) < 20 or data[0:2] != b"\\x00\\x01":
        continue
    attr = struct.pack("!HHBBH4s", 1, 8, 0, 1, port, socket.inet_aton(ip))
    s.sendto(struct.pack("!HH", 0x0101, len(attr)) + data[4:20] + attr, (ip, port))
    print("stun answered", ip, port, flush=True)
`;

/** Where the lab's STUN responder listens (in the "internet" namespace). */
export const STUN_PORT = 3478;

/** A miniupnpd running on the lab's server router. */
export interface Miniupnpd {
  /** The daemon (PID, log); replaced by {@linkcode Miniupnpd.restart}. */
  proc: Proc;
  /** The config file it reads. */
  configFile: string;
  /** Stops the daemon by PID (`sig`, then SIGKILL). */
  stop(sig?: Deno.Signal): Promise<void>;
  /**
   * A router reboot: kills the daemon (SIGKILL), empties its nftables chains
   * (a reboot loses the kernel's rules) and starts it again.
   */
  reboot(): Promise<void>;
  /** The server router's miniupnpd nftables chains, listed. */
  rules(): Promise<string>;
}

/** The nftables chains miniupnpd 2.3.1 (nftables build) fills: its defaults, in `inet filter`. */
const MINIUPNPD_CHAINS = ["miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"];

/** The nftables structure miniupnpd needs (what Debian's nft_init.sh would create). */
function miniupnpdTables(): string {
  return `table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
`;
}

/**
 * miniupnpd's config for the lab: WAN `wan`, LAN `br-lan`, NAT-PMP/PCP and
 * UPnP on, and the external address learned by STUN from the lab's own
 * responder. Why STUN: miniupnpd 2.3.1 turns port forwarding off when the
 * WAN interface's address is reserved (the lab's "internet" is TEST-NET-2,
 * 198.51.100.0/24) and refuses a reserved `ext_ip=`; only the STUN path
 * takes the address it is told without that check. No packet leaves the
 * lab's namespaces and no public address is used.
 */
function miniupnpdConfig(leaseFile: string): string {
  return [
    "ext_ifname=wan",
    "listening_ip=br-lan",
    "http_port=5000",
    "enable_natpmp=yes",
    "enable_upnp=yes",
    "secure_mode=yes",
    "system_uptime=no",
    "ext_perform_stun=yes",
    `ext_stun_host=${ADDR.inet}`,
    `ext_stun_port=${STUN_PORT}`,
    `lease_file=${leaseFile}`,
    "uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b",
    "clean_ruleset_interval=0",
    // PCP grants at least min_lifetime (default 120 s): short leases keep renewals within the test.
    "min_lifetime=10",
    "allow 1024-65535 10.0.0.0/24 1024-65535",
    "deny 0-65535 0.0.0.0/0 0-65535",
    "",
  ].join("\n");
}

/** Matches the log line miniupnpd prints once NAT-PMP/PCP is listening. */
const MINIUPNPD_READY = /Listening for NAT-PMP\/PCP traffic on port 5351/;

/**
 * Starts miniupnpd (Debian's `miniupnpd-nftables`) in the foreground on the
 * server router, after its nftables chains and the STUN responder it asks.
 * Stopped by PID by the returned handle or by {@linkcode NatLab.close}.
 */
export async function startMiniupnpd(lab: NatLab, dir: string): Promise<Miniupnpd> {
  const program = findProgram("miniupnpd");
  if (program === null) throw new Error("miniupnpd is not installed (miniupnpd-nftables)");
  const tables = `${dir}/miniupnpd.nft`;
  await Deno.writeTextFile(tables, miniupnpdTables());
  await mustRun("ip", ["netns", "exec", lab.ns.srt, "nft", "-f", tables]);
  const stunScript = `${dir}/stun_responder.py`;
  await Deno.writeTextFile(stunScript, STUN_RESPONDER);
  const stun = lab.spawn("inet", "python3", [stunScript, ADDR.inet, `${STUN_PORT}`]);
  await stun.waitFor(/stun ready/, 5_000);
  const configFile = `${dir}/miniupnpd.conf`;
  const leaseFile = `${dir}/miniupnpd.leases`;
  await Deno.writeTextFile(configFile, miniupnpdConfig(leaseFile));
  const launch = async (): Promise<Proc> => {
    const p = lab.spawn("srt", program, ["-d", "-f", configFile]);
    await p.waitFor(MINIUPNPD_READY, 15_000);
    return p;
  };
  const handle: Miniupnpd = {
    proc: await launch(),
    configFile,
    async stop(sig: Deno.Signal = "SIGTERM") {
      await handle.proc.stop(sig, 3_000);
    },
    async reboot() {
      await handle.proc.stop("SIGKILL", 3_000);
      for (const chain of MINIUPNPD_CHAINS) {
        await mustRun("ip", [
          "netns",
          "exec",
          lab.ns.srt,
          "nft",
          "flush",
          "chain",
          "inet",
          "filter",
          chain,
        ]);
      }
      await Deno.remove(leaseFile).catch(() => {});
      handle.proc = await launch();
    },
    async rules() {
      const out: string[] = [];
      for (const chain of MINIUPNPD_CHAINS) {
        const r = await mustRun("ip", [
          "netns",
          "exec",
          lab.ns.srt,
          "nft",
          "list",
          "chain",
          "inet",
          "filter",
          chain,
        ]);
        out.push(r.stdout);
      }
      return out.join("");
    },
  };
  return handle;
}
