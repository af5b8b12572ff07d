/**
 * `pitifulnat check`: tells an operator in plain words whether their setup
 * will work: the config, the public address (resolved now), what remote and
 * LAN clients are told, whether the ports can be bound, whether users can
 * log in, and what a server already running announces. Each cause that
 * makes the setup fail has its own exit code ({@linkcode CHECK_EXIT}).
 * @module
 */
import type { Config } from "../config/schema.ts";
import { unreachableFromInternet } from "../nat/address_kind.ts";
import {
  announceAddress,
  announceInputs,
  isLanAddress,
  type LanNetworks,
  normalizeAddress,
  parseLanNetworks,
} from "../nat/announce.ts";
import type { ResolveResult } from "../nat/public_address.ts";
import type { StatusSnapshot } from "../observe/status.ts";
import {
  checkCertificate,
  checkHomes,
  checkPortMapping,
  checkPorts,
  checkStatusPort,
  checkUpstream,
  findRunningServer,
} from "./check_host.ts";
import { CHECK_EXIT, type Report } from "./check_report.ts";
import { loadFromCli, publicAddressFrom } from "./common.ts";
import { localAddressFor, plainDnsError, SAMPLE_REMOTE, sampleLanClient } from "../nat/explain.ts";

export { plainDnsError, SAMPLE_REMOTE };

export { CERT_WARN_DAYS, certificateCovers } from "./check_host.ts";
export { CHECK_EXIT } from "./check_report.ts";

/** Whether the listener accepts only this machine's own connections. */
function isLoopbackListen(config: Config): boolean {
  const a = normalizeAddress(config.listen.address);
  return a === "::1" || a.startsWith("127.");
}

/** Runs the check; prints a report and returns the exit code. */
export async function runCheck(options: { config?: string; client?: string }): Promise<number> {
  const loaded = await loadFromCli(options.config, { allowDefault: false });
  if (!loaded) return CHECK_EXIT.config;
  const { config } = loaded;
  const report: Report = {
    out: [`config: ${loaded.file}: OK (${config.proxy ? "proxy" : "serve"})`],
    warnings: [],
    problems: [],
  };
  const lan = parseLanNetworks(config.lan_networks);
  checkListen(config, report);
  const running = await findRunningServer(config);
  const publicAddress = await checkPublicAddress(config, { lan, report });
  const local = localAddressFor(config);
  checkAnnouncements(config, { lan, local, publicAddress, client: options.client, report });
  if (running) reportRunning(running, report);
  const { controlFree } = await checkPorts(config, { local, running: running !== null, report });
  checkStatusPort(config, { running: running !== null, report });
  if (!config.proxy) await checkHomes(config, report);
  await checkUpstream(config, report);
  await checkPortMapping(config, { publicAddress, report, running, controlFree });
  checkCertificate(config, { report, now: new Date() });
  return printReport(report, verdict(config, { local, lan }));
}

/** A loopback listener with a public address: no remote client can ever connect. */
function checkListen(config: Config, report: Report): void {
  if (!config.public_address || !isLoopbackListen(config)) return;
  const { address, port } = config.listen;
  report.problems.push({
    code: CHECK_EXIT.loopbackListen,
    text: `listen.address is ${address}: only this machine can connect to port ${port}, so ` +
      `no port forward can reach it; set listen.address to 0.0.0.0 (or this machine's LAN ` +
      `address)`,
  });
}

/**
 * Reports the public address as it is now (resolving a host name once, so
 * a broken name shows up before a client's PASV does); returns it, or null.
 */
async function checkPublicAddress(
  config: Config,
  options: { lan: LanNetworks; report: Report },
): Promise<string | null> {
  const { out } = options.report;
  const pa = config.public_address;
  if (!pa) {
    out.push("public address: not configured (public_address in the config)");
    return null;
  }
  if (pa.address) {
    out.push(`public address: ${pa.address} (fixed in the config)`);
    judgePublic(pa.address, { what: "public_address.address", ...options });
    return pa.address;
  }
  const refresher = publicAddressFrom(config);
  if (!refresher) return null; // from: router without port_mapping: a config error already
  const r = await refresher.resolveNow();
  refresher.stop();
  if (pa.from === "http" && pa.url) return reportFetched(pa.url, { result: r, ...options });
  const name = pa.host ?? "the router's WAN address";
  if (!r.ok || !r.address) {
    reportUnresolved(name, { result: r, ipv6: pa.ipv6, report: options.report });
    return null;
  }
  options.report.out.push(
    `public address: ${pa.host ?? "from the router"} -> ${r.address} (${
      pa.host ? "DNS server " : "asked over "
    }${r.dnsServer}, ${r.ms.toFixed(1)} ms)`,
  );
  judgePublic(r.address, { what: name, ...options });
  if (pa.dns_server) await compareSystemResolver(config, { answer: r.address, ...options });
  return r.address;
}

/**
 * `from: http`: what the URL answered (fetched once), or why it gave no
 * address: a problem of the same kind as a name that does not resolve.
 */
function reportFetched(
  url: string,
  options: { result: ResolveResult; lan: LanNetworks; report: Report },
): string | null {
  const { result: r, report } = options;
  const ms = r.ms.toFixed(1);
  if (!r.ok || !r.address) {
    const why = r.error ?? "unknown error";
    report.out.push(`public address: ${url} -> no address (fetched over HTTP, ${ms} ms): ${why}`);
    report.problems.push({
      code: CHECK_EXIT.unresolved,
      text: `cannot get the public address from ${url}: ${why}; a fresh start tells remote ` +
        `clients the LAN address until the URL answers with an address, and their passive ` +
        `transfers fail`,
    });
    return null;
  }
  report.out.push(`public address: ${url} -> ${r.address} (fetched over HTTP, ${ms} ms)`);
  judgePublic(r.address, {
    what: url,
    lanHint: "the URL sees this machine from inside the LAN: use a service on the internet",
    ...options,
  });
  return r.address;
}

/** A public address inside the LAN, or one the internet cannot reach, is a problem. */
function judgePublic(
  address: string,
  options: { what: string; lan: LanNetworks; report: Report; lanHint?: string },
): void {
  const { what, report } = options;
  const lanHint = options.lanHint ??
    "a LAN DNS override? set public_address.dns_server to a public resolver";
  const unreachable = unreachableFromInternet(address);
  if (unreachable) {
    report.problems.push({ code: CHECK_EXIT.publicAddress, text: `${what}: ${unreachable.text}` });
  } else if (isLanAddress(address, options.lan)) {
    report.problems.push({
      code: CHECK_EXIT.publicAddress,
      text: `${what} is ${address}, which is in lan_networks: remote clients cannot reach it ` +
        `(${lanHint})`,
    });
  }
}

/**
 * Split horizon: with a `dns_server`, asks the system resolver too and,
 * when the answers differ, says which one internet clients see.
 */
async function compareSystemResolver(
  config: Config,
  options: { answer: string; report: Report },
): Promise<void> {
  const pa = config.public_address!;
  const system = publicAddressFrom({
    ...config,
    public_address: { ...pa, dns_server: undefined },
  })!;
  const r = await system.resolveNow();
  system.stop();
  if (!r.ok || !r.address || r.address === options.answer) return;
  options.report.warnings.push(
    `${pa.host} resolves differently here: the system resolver says ${r.address}, ` +
      `${pa.dns_server} says ${options.answer} (split horizon). pitifulnat announces ` +
      `${options.answer}; clients on the internet see what public DNS says, so make sure ` +
      `${pa.dns_server} is a public resolver`,
  );
}

/** A host name that did not resolve, with the resolver's error in plain words. */
function reportUnresolved(
  host: string,
  options: { result: ResolveResult; ipv6: boolean; report: Report },
): void {
  const { result: r, report } = options;
  const why = plainDnsError(r.error ?? "unknown error", options.ipv6 ? "AAAA" : "A");
  report.out.push(
    `public address: ${host} -> not resolved (DNS server ${r.dnsServer}, ` +
      `${r.ms.toFixed(1)} ms): ${why}`,
  );
  report.problems.push({
    code: CHECK_EXIT.unresolved,
    text: `cannot resolve ${host} (DNS server ${r.dnsServer}): ${why}; a fresh start tells ` +
      `remote clients the LAN address until it resolves, and their passive transfers fail`,
  });
}

/** "a.b.c.d (why)", or what happens instead when PASV has no address to give. */
function told(a: { address: string | null; reason: string }): string {
  if (a.address) return `${a.address} (${a.reason})`;
  return `no PASV address (${a.reason}); EPSV names only a port, so the client connects ` +
    `to the address it already uses`;
}

/**
 * Reports what a remote client, a LAN client and `--client` are told, with
 * the inputs serve and proxy build (announceInputs), so the reasons match.
 */
function checkAnnouncements(
  config: Config,
  options: {
    lan: LanNetworks;
    local: string;
    publicAddress: string | null;
    client?: string;
    report: Report;
  },
): void {
  const { lan, local, report } = options;
  const tell = (client: string) =>
    announceAddress(
      announceInputs({ client, local }, {
        publicAddress: options.publicAddress,
        configured: config.public_address,
      }),
      lan,
    );
  const lanClient = sampleLanClient(local, lan);
  if (config.public_address) {
    report.out.push(
      `a remote client (e.g. ${SAMPLE_REMOTE}) is told: ${told(tell(SAMPLE_REMOTE))}`,
    );
  }
  report.out.push(`a LAN client (e.g. ${lanClient}) is told: ${told(tell(lanClient))}`);
  if (options.client) {
    report.out.push(`client ${options.client} is told: ${told(tell(options.client))}`);
  }
}

/** What the server already running says it announces, beside what a fresh start would. */
function reportRunning(s: StatusSnapshot, report: Report): void {
  const pa = s.publicAddress;
  const since = `pitifulnat ${s.version} on ${s.listen}, up since ${s.startedAt}`;
  if (!pa.address) {
    report.out.push(`running server: ${since}; it has no public address yet`);
  } else {
    report.out.push(
      `running server: ${since}; it tells remote clients ${pa.address}` +
        (pa.source === "fixed"
          ? " (fixed in its config)"
          : ` (resolved at ${pa.resolvedAt ?? "never"})`),
    );
  }
  if (pa.lastError && pa.address) {
    report.warnings.push(
      `the running server's lookups fail since ${pa.lastErrorAt} (${pa.lastError}); it keeps ` +
        `announcing the last good address ${pa.address}`,
    );
  }
}

/** The closing line when nothing is wrong. */
function verdict(config: Config, options: { local: string; lan: LanNetworks }): string {
  if (config.public_address) {
    return "OK: remote and LAN clients will be told reachable addresses";
  }
  if (isLoopbackListen(config)) {
    return `OK (this machine only): listen.address ${config.listen.address} accepts only ` +
      `connections from this machine`;
  }
  return `OK (LAN only): no public_address, so only LAN clients are served (told ` +
    `${options.local}); to serve the internet, set public_address (host or address)`;
}

/** Prints the report and the verdict; returns the exit code (the lowest problem's). */
function printReport(report: Report, ok: string): number {
  console.log(report.out.join("\n"));
  if (report.warnings.length) {
    console.log(`\n${report.warnings.map((w) => `warning: ${w}`).join("\n")}`);
  }
  if (report.problems.length) {
    const lines = report.problems.map((p) => `- ${p.text} (exit ${p.code})`);
    console.log(`\nNOT OK:\n${lines.join("\n")}`);
    return Math.min(...report.problems.map((p) => p.code));
  }
  console.log(`\n${ok}`);
  return CHECK_EXIT.ok;
}
