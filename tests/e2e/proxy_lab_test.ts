/**
 * `pitifulnat proxy` fixing NAT for an FTP server that is already there, in
 * the NAT lab (tests/e2e/lab.ts): a port-forwarding router with no FTP
 * helper, a client behind its own masquerading router, a real DNS server.
 *
 * First vsftpd alone on the server LAN, with its passive range forwarded:
 * it announces its LAN address in 227, so a PASV transfer from the
 * internet fails (EPSV works: the forwarding is fine). Then the same vsftpd
 * on loopback behind `pitifulnat proxy`, which announces the address its
 * dynamic-DNS name resolves to: the same transfers pass, and keep passing
 * after the router's WAN address and the DNS record change, with no restart.
 *
 * Needs root, iproute2, nftables, dnsmasq, curl, lftp, python3 and vsftpd;
 * skipped with a message otherwise, except under CI=true where that is a
 * failure.
 */
import assert from "node:assert/strict";
import { sha256File, writeRandomFile } from "../helpers/server.ts";
import { makeCertificate } from "../helpers/tls.ts";
import {
  ADDR,
  cacheCli,
  cliArgs,
  type Dnsmasq,
  DYN_NAME,
  findProgram,
  FORWARD,
  fresh,
  FTPLIB_CLIENT,
  in227,
  labCurl,
  labGate,
  NatLab,
  type Proc,
  REPO,
  type Role,
  show,
  startDnsmasq,
  told,
} from "./lab.ts";

/** vsftpd's control port on the server's loopback when it sits behind the proxy. */
const UPSTREAM_PORT = 2100;
/** vsftpd's own passive range behind the proxy (loopback only, not forwarded). */
const UPSTREAM_PASV = { min: 40000, max: 40020 } as const;

const VSFTPD = findProgram("vsftpd");
const { missing, ignore } = await labGate(
  "proxy NAT lab",
  "root, iproute2, nftables, dnsmasq-base, curl, lftp, python3 and vsftpd",
  VSFTPD ? [] : ["vsftpd"],
);

/** An anonymous vsftpd (read/write in `root`) that runs as root with no chroot or system user. */
function vsftpdConfig(
  o: {
    dir: string;
    root: string;
    address: string;
    port: number;
    pasv: { min: number; max: number };
  },
): string {
  return [
    "listen=YES",
    "listen_ipv6=NO",
    "background=NO",
    `listen_address=${o.address}`,
    `listen_port=${o.port}`,
    `pasv_min_port=${o.pasv.min}`,
    `pasv_max_port=${o.pasv.max}`,
    "anonymous_enable=YES",
    "no_anon_password=YES",
    `anon_root=${o.root}`,
    "anon_upload_enable=YES",
    "write_enable=YES",
    "anon_other_write_enable=YES",
    "anon_world_readable_only=NO",
    "anon_umask=022",
    "seccomp_sandbox=NO",
    "run_as_launching_user=YES",
    "local_enable=NO",
    "check_shell=NO",
    `secure_chroot_dir=${o.dir}/empty`,
    "",
  ].join("\n");
}

function proxyConfig(): string {
  return [
    `listen: { address: 0.0.0.0, port: ${FORWARD.control} }`,
    `passive: { min_port: ${FORWARD.min}, max_port: ${FORWARD.max} }`,
    `public_address: { host: ${DYN_NAME}, dns_server: "${ADDR.inet}:53", refresh_seconds: 5 }`,
    "proxy:",
    `  upstream: { host: 127.0.0.1, port: ${UPSTREAM_PORT} }`,
    "  connect_timeout_seconds: 5",
    "limits: { data_timeout_seconds: 10 }",
    "log: { level: info }",
    "",
  ].join("\n");
}

Deno.test({
  name: "proxy lab: vsftpd alone fails PASV through NAT; behind pitifulnat proxy it passes",
  ignore,
  async fn(t) {
    if (missing.length > 0 || VSFTPD === null) {
      throw new Error(`proxy NAT lab prerequisites missing under CI=true: ${missing.join(", ")}`);
    }
    const vsftpd = VSFTPD;
    // A namespace has no route to the package registry: fill the cache first.
    await cacheCli();

    const dir = await Deno.makeTempDir({ prefix: "pn-proxy-lab-" });
    const root = `${dir}/root`;
    const local = `${dir}/client`;
    await Deno.mkdir(root);
    await Deno.mkdir(local);
    await Deno.mkdir(`${dir}/empty`);
    await writeRandomFile(`${root}/dl.bin`, 3 * 1024 * 1024 + 11, 31);
    await writeRandomFile(`${local}/up.bin`, 2 * 1024 * 1024 + 3, 32);
    const dlSum = await sha256File(`${root}/dl.bin`);
    const upSum = await sha256File(`${local}/up.bin`);
    const waitPasv = `${dir}/wait_pasv.py`;
    await Deno.writeTextFile(waitPasv, FTPLIB_CLIENT);
    const alone = `${dir}/vsftpd-alone.conf`;
    const behind = `${dir}/vsftpd-behind.conf`;
    await Deno.writeTextFile(
      alone,
      vsftpdConfig({
        dir,
        root,
        address: "0.0.0.0",
        port: FORWARD.control,
        pasv: { min: FORWARD.min, max: FORWARD.max },
      }),
    );
    await Deno.writeTextFile(
      behind,
      vsftpdConfig({
        dir,
        root,
        address: "127.0.0.1",
        port: UPSTREAM_PORT,
        pasv: UPSTREAM_PASV,
      }),
    );
    // vsftpd alone again, with FTPS offered (not required) for the helper control case.
    const aloneTls = `${dir}/vsftpd-alone-tls.conf`;
    const cert = await makeCertificate(dir, { cn: "vsftpd", names: [], rsa: true });
    await Deno.writeTextFile(
      aloneTls,
      vsftpdConfig({
        dir,
        root,
        address: "0.0.0.0",
        port: FORWARD.control,
        pasv: { min: FORWARD.min, max: FORWARD.max },
      }) + [
        "ssl_enable=YES",
        "allow_anon_ssl=YES",
        "force_anon_logins_ssl=NO",
        "force_anon_data_ssl=NO",
        `rsa_cert_file=${cert.certificate}`,
        `rsa_private_key_file=${cert.key}`,
        "",
      ].join("\n"),
    );
    const proxyYaml = `${dir}/proxy.yaml`;
    await Deno.writeTextFile(proxyYaml, proxyConfig());
    const hostsFile = `${dir}/hosts`;
    await Deno.writeTextFile(hostsFile, `${ADDR.srvRouterWan} ${DYN_NAME}\n`);

    let lab: NatLab | null = null;
    let dns: Dnsmasq | null = null;
    try {
      lab = await NatLab.create({ tag: "px" });
      const theLab = lab;
      assert.doesNotMatch(await lab.rulesets(), /helper/, "the lab must not use an FTP helper");
      dns = await startDnsmasq({ listen: ADDR.inet, port: 53, hostsFile, netns: lab.ns.inet });
      const theDns = dns;

      /** Waits (at most 5 s, 100 tries) until `host:port` in the server namespace accepts. */
      const listening = async (host: string, port: number, proc: Proc) => {
        const r = await theLab.exec("srv", "bash", [
          "-c",
          `for i in $(seq 100); do (exec 3<>/dev/tcp/${host}/${port}) 2>/dev/null && exit 0; ` +
          "sleep 0.05; done; exit 1",
        ], 10_000);
        assert.equal(
          r.code,
          0,
          `${proc.label} does not listen on ${host}:${port}:\n${proc.output}`,
        );
      };
      const startVsftpd = async (config: string, host: string, port: number) => {
        const p = theLab.spawn("srv", vsftpd, [config], { cwd: dir });
        await listening(host, port, p);
        return p;
      };

      const url = (host: string, path = "") => `ftp://${host}:${FORWARD.control}/${path}`;
      const curl = (role: Role, mode: "pasv" | "epsv", args: string[]) =>
        labCurl(theLab, role, mode, args);
      /** Downloads dl.bin and uploads up.bin as `name` with curl, checking both by SHA-256. */
      const checkTransfers = async (
        name: string,
        role: Role,
        host: string,
        mode: "pasv" | "epsv",
        expect: RegExp,
      ) => {
        const to = await fresh(`${local}/${name}.bin`);
        const g = await curl(role, mode, ["-o", to, url(host, "dl.bin")]);
        assert.equal(g.code, 0, show(g));
        assert.match(g.stderr, expect, show(g));
        assert.equal(await sha256File(to), dlSum, `${name}: downloaded bytes differ`);
        const as = `up-${name}.bin`;
        await fresh(`${root}/${as}`);
        const p = await curl(role, mode, ["-T", `${local}/up.bin`, url(host, as)]);
        assert.equal(p.code, 0, show(p));
        assert.match(p.stderr, expect, show(p));
        assert.equal(await sha256File(`${root}/${as}`), upSum, `${name}: uploaded bytes differ`);
      };
      const wan = ADDR.srvRouterWan;

      await t.step(
        "vsftpd alone: PASV from the client's LAN fails (it announces 10.0.0.2)",
        async () => {
          const direct = await startVsftpd(alone, "0.0.0.0", FORWARD.control);
          try {
            const to = await fresh(`${local}/alone.bin`);
            const r = await curl("cli", "pasv", ["-o", to, url(wan, "dl.bin")]);
            assert.notEqual(r.code, 0, `a PASV transfer to the LAN address must fail:\n${show(r)}`);
            assert.match(r.stderr, told(ADDR.srv), show(r));
            assert.match(r.stderr, /Trying 10\.0\.0\.2:5\d{4}/, show(r));
            const up = await curl("cli", "pasv", ["-T", `${local}/up.bin`, url(wan, "alone.bin")]);
            assert.notEqual(up.code, 0, `a PASV upload must fail too:\n${show(up)}`);
            assert.match(up.stderr, told(ADDR.srv), show(up));
            // vsftpd and the forwarding work: EPSV (port only) passes. Only the address is wrong.
            await checkTransfers(
              "alone-epsv",
              "cli",
              wan,
              "epsv",
              /229 Entering Extended Passive Mode \(\|\|\|5\d{4}\|\)/,
            );
          } finally {
            // Frees the control port for the proxy.
            await direct.stop("SIGTERM", 5_000);
          }
        },
      );

      await t.step(
        "control: a router's FTP helper fixes vsftpd's plain PASV, and cannot fix its FTPS",
        async () => {
          await theLab.serverRouterFtpHelper(true);
          const direct = await startVsftpd(aloneTls, "0.0.0.0", FORWARD.control);
          try {
            // Plain: the helper rewrites 10.0.0.2 in the 227 to the router's WAN address.
            await checkTransfers("helper-plain", "cli", wan, "pasv", told(wan));
            // FTPS: the helper cannot read the 227, so the client is told 10.0.0.2.
            const to = await fresh(`${local}/helper-tls.bin`);
            const r = await curl("cli", "pasv", ["--ssl-reqd", "-k", "-o", to, url(wan, "dl.bin")]);
            assert.notEqual(r.code, 0, `FTPS PASV past the helper must fail:\n${show(r)}`);
            assert.match(r.stderr, told(ADDR.srv), show(r));
          } finally {
            await direct.stop("SIGTERM", 5_000);
            await theLab.serverRouterFtpHelper(false);
          }
          assert.doesNotMatch(await theLab.rulesets(), /helper/, "the helper is off again");
        },
      );

      // vsftpd on the server's loopback, pitifulnat proxy on the forwarded port in front of it.
      const upstream = await startVsftpd(behind, "127.0.0.1", UPSTREAM_PORT);
      const proxy = theLab.spawn(
        "srv",
        Deno.execPath(),
        cliArgs(
          "proxy",
          "--config",
          proxyYaml,
        ),
        { cwd: REPO },
      );
      await proxy.waitFor(/proxy listening on ftp:\/\/0\.0\.0\.0:2121\//, 15_000);
      await proxy.waitFor(
        /resolved ftp\.dyn\.test -> 198\.51\.100\.20 via 198\.51\.100\.1:53/,
        15_000,
      );

      await t.step("behind pitifulnat proxy: the same PASV transfers pass", async () => {
        await checkTransfers("proxy-pasv", "cli", wan, "pasv", told(wan));
        await checkTransfers(
          "proxy-epsv",
          "cli",
          wan,
          "epsv",
          /229 Entering Extended Passive Mode \(\|\|\|5\d{4}\|\)/,
        );
        assert.match(proxy.output, /transfer user=anonymous dir=out cmd=RETR path=dl\.bin /);
        assert.match(
          proxy.output,
          /transfer user=anonymous dir=in cmd=STOR path=up-proxy-pasv\.bin /,
        );
      });

      await t.step(
        "behind pitifulnat proxy: a client on the server's LAN is told the LAN address",
        async () => {
          await checkTransfers("proxy-lan", "lan", ADDR.srv, "pasv", told(ADDR.srv));
        },
      );

      await t.step(
        "the WAN address and the DNS record change: PASV follows, no restart",
        async () => {
          const newWan = ADDR.srvRouterWanNew;
          await theLab.renumberServerWan(wan, newWan);
          await theDns.setHosts(`${newWan} ${DYN_NAME}\n`);
          const changed = Date.now();
          // One session polling PASV for at most 20 s: the running proxy must pick up the change.
          const r = await theLab.exec(
            "cli",
            "python3",
            [
              waitPasv,
              "wait-pasv",
              newWan,
              `${FORWARD.control}`,
              "anonymous",
              "lab@example.com",
              in227(newWan),
              "20",
            ],
            30_000,
          );
          assert.equal(
            r.code,
            0,
            `no 227 with ${newWan} within 20 s:\n${show(r)}\n--- proxy\n${proxy.output}`,
          );
          const waited = Date.now() - changed;
          assert.ok(waited < 25_000, `the new address came ${waited} ms after the change`);
          assert.equal(proxy.exited, null, "the proxy must not have restarted");
          assert.equal(upstream.exited, null, "vsftpd must not have restarted");
          assert.match(
            proxy.output,
            /public address changed: 198\.51\.100\.20 -> 198\.51\.100\.21/,
          );
          await checkTransfers("proxy-pasv-new", "cli", newWan, "pasv", told(newWan));
        },
      );
    } finally {
      // Stops vsftpd, the proxy and dnsmasq by PID, then deletes the namespaces.
      await dns?.stop().catch(() => {});
      await lab?.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
