/**
 * Port mapping for real: the NAT lab without any manual forward on the
 * server's router, a real miniupnpd (Debian's miniupnpd-nftables) there,
 * and pitifulnat's port mapper on the server asking it for the control
 * port and the passive range, over NAT-PMP, over UPnP-IGD (SSDP
 * discovery, SOAP) and over PCP (MAP). A client behind its own router reaches the
 * server through only those mappings; they are gone after stop; and when
 * the router "reboots" (miniupnpd killed, its rules lost, started again)
 * the next renewal notices (the NAT-PMP or PCP epoch went back; the UPnP entry is
 * gone) and repairs them.
 *
 * About the addresses: the lab's internet is TEST-NET-2 (198.51.100.0/24),
 * which miniupnpd 2.3.1 calls reserved and then refuses to forward (its
 * `ext_allow_private_ipv4` override only exists from 2.3.9, and it refuses a
 * reserved `ext_ip=`). Its STUN path takes the address it is told, so the
 * lab runs a tiny STUN responder inside its own "internet" namespace (see
 * startMiniupnpd in lab.ts): no traffic leaves the lab's namespaces and no
 * public address is used. miniupnpc's `upnpc` likewise calls an IGD with a
 * reserved WAN address "not connected", hence its `-i`.
 *
 * Needs root, the NAT lab's tools, miniupnpd (miniupnpd-nftables), natpmpc
 * and upnpc (miniupnpc); skipped with a message otherwise, except under
 * CI=true where that is a failure.
 */
import assert from "node:assert/strict";
import { hashPassword } from "../../src/auth/password.ts";
import { type MappingReport, PROTOCOL_NAME } from "../../src/nat/portmap/mod.ts";
import { type RunResult, sha256File, writeRandomFile } from "../helpers/server.ts";
import { makeCertificate } from "../helpers/tls.ts";
import {
  ADDR,
  cacheCli,
  cliArgs,
  findProgram,
  FORWARD,
  fresh,
  FTPLIB_CLIENT,
  labCurl,
  labGate,
  type Miniupnpd,
  mustRun,
  NatLab,
  type Proc,
  REPO,
  type Role,
  show,
  startMiniupnpd,
  told,
} from "./lab.ts";

const USER = "alice";
const PASS = "lab-secret-2";
/** The agent that runs the mapper in the server's namespace. */
const AGENT = new URL("../tools/portmap_agent.ts", import.meta.url).pathname;
/** A short lease, so renewals (every LEASE/2 s) happen within the test. */
const LEASE = 20;
/** The ports mapped: the control port and the lab's passive range. */
const PORTS = `${FORWARD.control},${FORWARD.min}-${FORWARD.max}`;
const PORT_COUNT = 1 + FORWARD.max - FORWARD.min + 1;
/** The status port of the server the last steps run (loopback, in its namespace). */
const STATUS = 2180;

const { missing, ignore } = await labGate(
  "port-mapping lab",
  "root, the NAT lab's tools, miniupnpd-nftables, natpmpc and miniupnpc",
  ["miniupnpd", "natpmpc", "upnpc"].filter((p) => findProgram(p) === null),
);

/** The `ROUND {json}` reports the agent printed, in order. */
function rounds(agent: Proc): MappingReport[] {
  return [...agent.output.matchAll(/^ROUND (.*)$/gm)].map((m) => JSON.parse(m[1]));
}

/** Waits (bounded) until the agent has printed a round that `ok` accepts after the first `after`. */
async function waitRound(
  agent: Proc,
  after: number,
  ok: (r: MappingReport) => boolean,
  timeoutMs: number,
): Promise<MappingReport> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = rounds(agent).slice(after).find(ok);
    if (found) return found;
    if (agent.exited !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no such round within ${timeoutMs} ms\n${tail(agent)}`);
}

/** One `upnpc -l` listing, as "external->internal-address:port" (sorted). */
async function upnpcOnce(lab: NatLab): Promise<string[]> {
  const r = await lab.exec("srv", "upnpc", ["-i", "-l"], 20_000);
  assert.equal(r.code, 0, show(r));
  // " 4 TCP  2121->10.0.0.2:2121  'NAT-PMP 2121 tcp' '' 4"
  return [...r.stdout.matchAll(/^\s*\d+ TCP\s+(\d+)->([\d.]+:\d+)/gm)]
    .map((m) => `${m[1]}->${m[2]}`).sort();
}

/**
 * The port mappings upnpc lists. It walks them by index, and a renewal
 * running meanwhile (every few seconds with short leases) can shift the
 * indices: the listing counts once two in a row agree, or once it is the
 * one `expected` accepts (at most 12 tries). The caller still asserts on it.
 */
async function upnpcList(
  lab: NatLab,
  expected?: (listing: string[]) => boolean,
): Promise<string[]> {
  let last = await upnpcOnce(lab);
  if (expected?.(last)) return last;
  for (let i = 0; i < 12; i++) {
    const next = await upnpcOnce(lab);
    if (expected?.(next) || next.join() === last.join()) return next;
    last = next;
  }
  throw new Error(`upnpc listings never agreed; the last:\n${last.join("\n")}`);
}

/** The tail of a process's output, for assertion messages. */
function tail(p: Proc, chars = 4000): string {
  return `--- ${p.label.slice(0, 80)}\n${p.output.slice(-chars)}`;
}

/** A minimal serve config: the lab's ports, a fixed public address. */
function serverConfig(home: string, hash: string): string {
  return [
    `listen: { address: 0.0.0.0, port: ${FORWARD.control} }`,
    `passive: { min_port: ${FORWARD.min}, max_port: ${FORWARD.max} }`,
    `public_address: { address: ${ADDR.srvRouterWan} }`,
    "users:",
    `  - name: ${USER}`,
    `    password: "${hash}"`,
    `    home: ${JSON.stringify(home)}`,
    "    permissions: [read, write]",
    "limits: { login_failure_delay_ms: 0, data_timeout_seconds: 10 }",
    "log: { level: info }",
    "",
  ].join("\n");
}

Deno.test({
  name: "port-mapping lab: NAT-PMP, UPnP-IGD and PCP mappings on a real miniupnpd carry FTP",
  ignore,
  async fn(t) {
    if (missing.length > 0) {
      throw new Error(
        `port-mapping lab prerequisites missing under CI=true: ${missing.join(", ")}`,
      );
    }
    await cacheCli();
    await mustRun(Deno.execPath(), ["cache", AGENT], { timeoutMs: 120_000 });
    const dir = await Deno.makeTempDir({ prefix: "pn-portmap-" });
    const home = `${dir}/home`;
    await Deno.mkdir(home);
    await writeRandomFile(`${home}/dl.bin`, 1024 * 1024 + 3, 5);
    await writeRandomFile(`${dir}/up.bin`, 512 * 1024 + 1, 6);
    const dlSum = await sha256File(`${home}/dl.bin`);
    const upSum = await sha256File(`${dir}/up.bin`);
    const config = `${dir}/serve.yaml`;
    await Deno.writeTextFile(config, serverConfig(home, await hashPassword(PASS)));

    let lab: NatLab | null = null;
    let miniupnpd: Miniupnpd | null = null;
    let agent: Proc | null = null;
    try {
      lab = await NatLab.create({ tag: "pm", forward: false });
      const theLab = lab;
      assert.doesNotMatch(await lab.rulesets(), /dnat/, "no manual forward on the server router");
      miniupnpd = await startMiniupnpd(lab, dir);
      const upnpd = miniupnpd;
      const server = lab.spawn("srv", Deno.execPath(), cliArgs("serve", "--config", config), {
        cwd: REPO,
      });
      await server.waitFor(/listening on ftp:\/\//, 15_000);

      const wan = ADDR.srvRouterWan;
      const url = (path: string) => `ftp://${USER}:${PASS}@${wan}:${FORWARD.control}/${path}`;
      /** A download and an upload from the client's namespace, checked by SHA-256. */
      const transfers = async (name: string) => {
        const to = await fresh(`${dir}/${name}.bin`);
        const g = await labCurl(theLab, "cli", "pasv", ["-o", to, url("dl.bin")]);
        assert.equal(g.code, 0, show(g));
        assert.match(g.stderr, told(wan), show(g));
        assert.equal(await sha256File(to), dlSum);
        const p = await labCurl(theLab, "cli", "epsv", ["-T", `${dir}/up.bin`, url(`${name}.bin`)]);
        assert.equal(p.code, 0, show(p));
        assert.equal(await sha256File(`${home}/${name}.bin`), upSum);
      };
      const unreachable = async (why: string) => {
        const r = await labCurl(theLab, "cli", "pasv", ["-o", "/dev/null", url("dl.bin")]);
        assert.notEqual(r.code, 0, `${why}: the server must not be reachable:\n${show(r)}`);
      };

      await t.step("without mappings the server is unreachable from outside", async () => {
        await unreachable("no mapping yet");
      });

      for (const protocol of ["natpmp", "upnp", "pcp"] as const) {
        const name = PROTOCOL_NAME[protocol];
        agent = theLab.spawn("srv", Deno.execPath(), [
          "run",
          "-A",
          "--cached-only",
          AGENT,
          ADDR.srvRouterLan,
          // NAT-PMP is told the server's address; the others find it (toward the gateway).
          protocol === "natpmp" ? ADDR.srv : "-",
          `${LEASE}`,
          PORTS,
          protocol,
        ], { cwd: REPO });
        const mapper = agent;

        await t.step(
          `${name}: the mapper maps the control port and the passive range`,
          async () => {
            const first = await waitRound(mapper, 0, () => true, 20_000);
            assert.equal(first.error, null, `${JSON.stringify(first)}\n${tail(upnpd.proc)}`);
            assert.equal(first.protocol, protocol);
            assert.equal(first.gateway, ADDR.srvRouterLan);
            assert.equal(first.externalAddress, wan);
            assert.equal(first.mapped.length, PORT_COUNT);
            assert.deepEqual(first.different, []);
            assert.ok(first.mapped.every((m) => m.lifetimeSeconds === LEASE));
            // Cross-checks by independent clients: natpmpc's view of the WAN address,
            // upnpc's list of the redirects, and the router's own rules.
            const n = await theLab.exec("srv", "natpmpc", ["-g", ADDR.srvRouterLan], 10_000);
            assert.match(n.stdout, /Public IP address : 198\.51\.100\.20/, show(n));
            const want: number[] = [FORWARD.control];
            for (let p = FORWARD.min; p <= FORWARD.max; p++) want.push(p);
            const wanted = want.map((p) => `${p}->${ADDR.srv}:${p}`).sort();
            const listed = await upnpcList(theLab, (l) => l.join() === wanted.join());
            assert.deepEqual(listed, wanted);
            const rules = await upnpd.rules();
            assert.equal(rules.match(/dnat ip to 10\.0\.0\.2/g)?.length, PORT_COUNT, rules);
          },
        );

        await t.step(
          `${name}: a client behind its router transfers through the mappings`,
          async () => {
            await transfers(`through-${protocol}`);
          },
        );

        await t.step(`${name}: renewals at half the lease keep the mappings`, async () => {
          const before = rounds(mapper).length;
          const r = await waitRound(mapper, before, () => true, LEASE * 1000 + 5_000);
          assert.equal(r.mapped.length, PORT_COUNT);
          assert.equal(r.gatewayRestarted, false);
        });

        await t.step(
          `${name}: the router reboots, the next renewal repairs the mappings`,
          async () => {
            const before = rounds(mapper).length;
            await upnpd.reboot();
            assert.deepEqual(
              await upnpcList(theLab, (l) => l.length === 0),
              [],
              "a rebooted miniupnpd has no mappings",
            );
            const repaired = await waitRound(
              mapper,
              before,
              (r) => r.gatewayRestarted,
              LEASE * 1000 + 5_000,
            );
            assert.equal(
              repaired.mapped.length,
              PORT_COUNT,
              `${JSON.stringify(repaired)}\n${tail(upnpd.proc)}`,
            );
            assert.ok(
              /lost its mappings \(restarted\): mapping again/.test(mapper.output),
              tail(mapper),
            );
            assert.equal(
              (await upnpcList(theLab, (l) => l.length === PORT_COUNT)).length,
              PORT_COUNT,
            );
            await transfers(`after-reboot-${protocol}`);
          },
        );

        await t.step(`${name}: stop removes every mapping`, async () => {
          const stopped = await mapper.stop("SIGTERM", 15_000);
          assert.equal(stopped.code, 0, tail(mapper));
          assert.ok(/^STOPPED /m.test(mapper.output), tail(mapper));
          assert.ok(new RegExp(`removed ${PORT_COUNT} mappings`).test(mapper.output), tail(mapper));
          assert.deepEqual(await upnpcList(theLab, (l) => l.length === 0), []);
          assert.doesNotMatch(await upnpd.rules(), /dnat/);
          await unreachable(`after ${name} stop`);
        });
      }
      // The rest runs pitifulnat serve itself: port_mapping over NAT-PMP, its
      // public address from the router too (the 227s carry the WAN address).
      await server.stop("SIGTERM", 15_000);
      const mapped = `${dir}/mapped.yaml`;
      // FTPS offered too: through an encrypted control channel only the server's own 227 can help.
      const cert = await makeCertificate(dir, { cn: "ftp.lab.test" });
      await Deno.writeTextFile(
        mapped,
        (await Deno.readTextFile(config)).replace(
          `public_address: { address: ${ADDR.srvRouterWan} }`,
          "public_address: { from: router }",
        ) +
          `port_mapping: { protocol: natpmp, gateway: ${ADDR.srvRouterLan}, ` +
          `internal_address: ${ADDR.srv}, lease_seconds: ${LEASE} }\n` +
          `status: { port: ${STATUS} }\n` +
          `tls: { certificate: ${cert.certificate}, key: ${cert.key}, required: never }\n`,
      );
      const script = `${dir}/ftp_client.py`;
      await Deno.writeTextFile(script, FTPLIB_CLIENT);
      const ftplib = (role: Role, mode: string, host: string, ...rest: string[]) =>
        theLab.exec(role, "python3", [
          script,
          mode,
          host,
          `${FORWARD.control}`,
          USER,
          PASS,
          ...rest,
        ]);
      const lftp = (command: string) =>
        theLab.exec("cli", "lftp", [
          "-d",
          "-c",
          [
            "set ftp:prefer-epsv no",
            "set ftp:ssl-allow no",
            "set net:max-retries 1",
            "set net:timeout 10",
            "set xfer:clobber on",
            `open -u ${USER},${PASS} -p ${FORWARD.control} ${wan}`,
            command,
          ].join("; "),
        ], 30_000);
      /** Down and up by `get`/`put`, both checked by SHA-256. */
      const both = async (
        name: string,
        get: (to: string) => Promise<RunResult>,
        put: (as: string) => Promise<RunResult>,
      ) => {
        const to = await fresh(`${dir}/${name}.bin`);
        const g = await get(to);
        assert.equal(g.code, 0, show(g));
        assert.equal(await sha256File(to), dlSum, `${name}: downloaded bytes differ`);
        const p = await put(`${name}.bin`);
        assert.equal(p.code, 0, show(p));
        assert.equal(
          await sha256File(`${home}/${name}.bin`),
          upSum,
          `${name}: uploaded bytes differ`,
        );
      };
      /** The server's own entries of a listing. */
      const ours = (l: string[]) => l.filter((m) => m.includes(`->${ADDR.srv}:`));
      /** The server's mappings as upnpc lists them (a LAN host's own mapping left out). */
      const serversMappings = async () =>
        ours(await upnpcList(theLab, (l) => [0, PORT_COUNT].includes(ours(l).length)));
      /** `pitifulnat check` on the server host. */
      const check = (file: string) =>
        theLab.exec("srv", Deno.execPath(), cliArgs("check", "--config", file));
      /** `pitifulnat serve` on the server host (stopped by the steps or the finally below). */
      const serve = (file: string) =>
        theLab.spawn("srv", Deno.execPath(), cliArgs("serve", "--config", file), { cwd: REPO });
      /** A client on the server's LAN, which never needs the router: down and up. */
      const lanTransfers = (name: string) =>
        both(
          name,
          (to) => ftplib("lan", "get", ADDR.srv, "dl.bin", to),
          (as) => ftplib("lan", "put", ADDR.srv, `${dir}/up.bin`, as),
        );
      /** The redirect another LAN host holds: external 50005, so the server's 50005 gets another. */
      const TAKEN = FORWARD.min + 5;
      let serving: Proc | null = null;
      try {
        await t.step(
          "serve: the NAT lab's clients work through only the mappings it asked for",
          async () => {
            const grab = await theLab.exec("lan", "upnpc", [
              "-i",
              "-a",
              ADDR.lan,
              `${TAKEN}`,
              `${TAKEN}`,
              "TCP",
            ], 20_000);
            assert.equal(grab.code, 0, show(grab));
            serving = serve(mapped);
            const srv = serving;
            await srv.waitFor(new RegExp(`mapped ${PORT_COUNT} of ${PORT_COUNT} ports`), 20_000);
            await srv.waitFor(/resolved router -> 198\.51\.100\.20 via port_mapping/, 10_000);
            assert.equal((await serversMappings()).length, PORT_COUNT, tail(srv));
            // The router gave the server's 50005 another external port: remote clients are told that one.
            const shifted = srv.output.match(
              new RegExp(`forwards \\d+ ports on other external ports \\(.*\\b${TAKEN}->(\\d+)`),
            );
            assert.ok(shifted, tail(srv));
            const external = Number(shifted[1]);
            assert.notEqual(external, TAKEN);
            const viaShifted = await fresh(`${dir}/via-shifted.bin`);
            const g = await ftplib("cli", "get-port", wan, `${external}`, "dl.bin", viaShifted);
            assert.equal(g.code, 0, `${show(g)}\n${tail(srv)}`);
            assert.match(g.stdout, /^226 /m, show(g));
            assert.equal(await sha256File(viaShifted), dlSum);
            await transfers("serve-curl");
            await both(
              "serve-ftps",
              (to) => labCurl(theLab, "cli", "pasv", ["--ssl-reqd", "-k", "-o", to, url("dl.bin")]),
              (as) =>
                labCurl(theLab, "cli", "pasv", [
                  "--ssl-reqd",
                  "-k",
                  "-T",
                  `${dir}/up.bin`,
                  url(as),
                ]),
            );
            await both(
              "serve-ftplib-tls",
              (to) => ftplib("cli", "tls-get", wan, "dl.bin", to),
              (as) => ftplib("cli", "tls-put", wan, `${dir}/up.bin`, as),
            );
            await both(
              "serve-lftp",
              (to) => lftp(`get dl.bin -o ${to}`),
              (as) => lftp(`put ${dir}/up.bin -o ${as}`),
            );
            await both(
              "serve-ftplib",
              (to) => ftplib("cli", "get", wan, "dl.bin", to),
              (as) => ftplib("cli", "put", wan, `${dir}/up.bin`, as),
            );
            // Active mode from a host on the internet: the server connects back to the
            // control connection's peer through its router's masquerade, no mapping needed.
            await both(
              "serve-active",
              (to) => ftplib("inet", "active-get", wan, "dl.bin", to),
              (as) => ftplib("inet", "active-put", wan, `${dir}/up.bin`, as),
            );
            // Every forward on the server's router is one of miniupnpd's, made for the server.
            const all = (await theLab.rulesets()).match(/dnat/g)?.length ?? 0;
            const upnpRules = await upnpd.rules();
            assert.equal(all, upnpRules.match(/dnat/g)?.length ?? 0, upnpRules);
            assert.equal(upnpRules.match(/dnat ip to 10\.0\.0\.2/g)?.length, PORT_COUNT, upnpRules);
          },
        );

        await t.step(
          "serve: the router's daemon dies: logged once, the server serves on, check says why",
          async () => {
            const srv = serving!;
            const from = srv.output.length;
            await upnpd.stop("SIGKILL");
            const warned = () =>
              srv.output.slice(from).split("\n").filter((l) => /\[WRN\].*port mapping: /.test(l));
            const deadline = Date.now() + LEASE * 1000 + 10_000;
            while (warned().length === 0) {
              assert.ok(Date.now() < deadline, `no port-mapping warning\n${tail(srv)}`);
              await new Promise((r) => setTimeout(r, 200));
            }
            // The next failed round (the mappings held still run out in LEASE s, so it comes
            // within LEASE/2 s) must not log it again.
            const failedRounds = async () => {
              const r = await theLab.exec("srv", "curl", [
                "-sS",
                `http://127.0.0.1:${STATUS}/status`,
              ]);
              assert.equal(r.code, 0, show(r));
              const pm = JSON.parse(r.stdout).portMapping;
              assert.ok(pm.lastError, r.stdout);
              return pm.rounds as number;
            };
            const at = await failedRounds();
            const until = Date.now() + LEASE * 1000 + 10_000;
            while (await failedRounds() === at) {
              assert.ok(Date.now() < until, `no second round\n${tail(srv)}`);
              await new Promise((r) => setTimeout(r, 500));
            }
            assert.equal(warned().length, 1, tail(srv));
            assert.equal(srv.exited, null);
            // The kernel still forwards (a crashed daemon leaves its rules): remote clients work,
            // and LAN clients never needed the router.
            await both(
              "dead-router-remote",
              (to) => ftplib("cli", "get", wan, "dl.bin", to),
              (as) => ftplib("cli", "put", wan, `${dir}/up.bin`, as),
            );
            await lanTransfers("dead-router-lan");
            const c = await check(mapped);
            // Its lowest code may be another cause (the router gives no WAN address either).
            assert.notEqual(c.code, 0, show(c));
            assert.match(
              c.stdout,
              /port_mapping is natpmp, but .*no NAT-PMP reply.*\(exit 13\)/,
              show(c),
            );
            assert.match(c.stdout, /running server: port mapping .*no NAT-PMP reply/, show(c));
          },
        );

        await t.step(
          "serve: the router comes back empty: the next renewal maps everything again",
          async () => {
            const srv = serving!;
            const before = srv.output.length;
            await upnpd.reboot();
            const deadline = Date.now() + LEASE * 1000 + 15_000;
            while (!srv.output.slice(before).match(/mapped \d+ of \d+ ports/)) {
              assert.ok(Date.now() < deadline, tail(srv));
              await new Promise((r) => setTimeout(r, 200));
            }
            assert.match(
              srv.output.slice(before),
              new RegExp(`mapped ${PORT_COUNT} of ${PORT_COUNT}`),
            );
            assert.equal((await serversMappings()).length, PORT_COUNT);
            await transfers("serve-after-reboot");
          },
        );

        await t.step("serve: SIGTERM removes every mapping", async () => {
          const srv = serving!;
          const stopped = await srv.stop("SIGTERM", 15_000);
          assert.equal(stopped.code, 0, tail(srv));
          assert.match(srv.output, new RegExp(`removed ${PORT_COUNT} mappings`), tail(srv));
          assert.deepEqual(await serversMappings(), [], "the server's mappings are gone");
          await unreachable("after the server stopped");
        });

        await t.step(
          "serve: a router that refuses: check says so, the server logs it once and serves",
          async () => {
            // The router's own permission rules now deny this machine any mapping. Over
            // UPnP-IGD, which answers that at once (606); miniupnpd 2.3.1's NAT-PMP instead
            // searches every other external port for an allowed one and stops answering.
            const conf = await Deno.readTextFile(upnpd.configFile);
            const overUpnp = `${dir}/upnp.yaml`;
            await Deno.writeTextFile(
              overUpnp,
              (await Deno.readTextFile(mapped)).replace(
                /port_mapping: \{ protocol: natpmp, gateway: [\d.]+,/,
                "port_mapping: { protocol: upnp,",
              ),
            );
            await Deno.writeTextFile(
              upnpd.configFile,
              conf.replace(
                "allow 1024-65535",
                `deny 0-65535 ${ADDR.srv}/32 0-65535\nallow 1024-65535`,
              ),
            );
            await upnpd.reboot();
            const c = await check(overUpnp);
            assert.notEqual(c.code, 0, show(c));
            assert.match(
              c.stdout,
              new RegExp(
                `port_mapping is upnp, but the gateway refused a trial mapping of port ` +
                  `${FORWARD.control} .*\\(exit 13\\)`,
              ),
              show(c),
            );
            const refused = serve(overUpnp);
            serving = refused;
            await refused.waitFor(/\[WRN\].*port mapping: the gateway mapped none of/, 20_000);
            await lanTransfers("refused-lan");
            assert.deepEqual(await serversMappings(), []);
            const stopped = await refused.stop("SIGTERM", 15_000);
            assert.equal(stopped.code, 0, tail(refused));
            assert.equal(
              refused.output.split("\n").filter((l) => /\[WRN\].*port mapping: /.test(l)).length,
              1,
              tail(refused),
            );
            await Deno.writeTextFile(upnpd.configFile, conf);
          },
        );

        await t.step(
          "serve: with no router answering at all it serves, and check says why",
          async () => {
            await upnpd.stop("SIGTERM");
            const alone = serve(mapped);
            serving = alone;
            await alone.waitFor(/listening on ftp:\/\//, 20_000);
            await alone.waitFor(/port mapping: /, 20_000);
            await lanTransfers("no-router-lan");
            const c = await check(mapped);
            assert.notEqual(c.code, 0, show(c));
            assert.match(c.stdout, /port_mapping is natpmp, but .*\(exit 13\)/, show(c));
            const stopped = await alone.stop("SIGTERM", 15_000);
            assert.equal(stopped.code, 0, tail(alone));
            assert.equal(
              alone.output.split("\n").filter((l) => /\[WRN\].*port mapping: /.test(l)).length,
              1,
              tail(alone),
            );
          },
        );
      } finally {
        await (serving as Proc | null)?.stop("SIGTERM", 15_000).catch(() => {});
      }
    } finally {
      await agent?.stop("SIGTERM", 10_000).catch(() => {});
      await miniupnpd?.stop().catch(() => {});
      await lab?.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
