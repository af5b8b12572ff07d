/**
 * `pitifulnat check`: tells an operator in plain words whether their setup
 * will work: the config, the public address (resolved now), what remote and
 * LAN clients are told, and whether the ports can be bound.
 * @module
 */
import type { Config } from "../config/schema.ts";
import { hostPort } from "../ftp/connection.ts";
import {
  announceAddress,
  announceInputs,
  isLanAddress,
  type LanNetworks,
  normalizeAddress,
  parseLanNetworks,
} from "../nat/announce.ts";
import { probeRange } from "../nat/port_range.ts";
import type { ResolveResult } from "../nat/public_address.ts";
import { loadTlsIdentity } from "../ftp/tls.ts";
import { connectUpstream } from "../proxy/upstream.ts";
import { loadFromCli, publicAddressFrom } from "./common.ts";

/** A remote address used to show what internet clients are told (RFC 5737). */
export const SAMPLE_REMOTE = "198.51.100.23";

/** The address LAN clients reach the server at, as the server would see it. */
function localAddressFor(config: Config): string {
  const listen = normalizeAddress(config.listen.address);
  if (listen !== "0.0.0.0" && listen !== "::") return listen;
  try {
    const found = Deno.networkInterfaces().find((i) =>
      i.family === "IPv4" && !i.address.startsWith("127.")
    );
    if (found) return found.address;
  } catch { /* no --allow-sys: fall back */ }
  return "127.0.0.1";
}

function sampleLanClient(local: string, lan: LanNetworks): string {
  const parts = local.split(".");
  if (parts.length === 4) {
    const candidate = [...parts.slice(0, 3), parts[3] === "50" ? "51" : "50"].join(".");
    if (isLanAddress(candidate, lan)) return candidate;
  }
  return "192.168.1.50";
}

/** A resolver error in plain words. */
export function plainDnsError(error: string, type: "A" | "AAAA"): string {
  if (/no records found|NotFound|NXDOMAIN/i.test(error)) return `the name has no ${type} record`;
  if (/timed out|TimedOut/i.test(error)) return "the DNS server did not answer in time";
  if (/refused|ConnectionRefused/i.test(error)) return "the DNS server refused the query";
  return error;
}

/** What the check found: lines to print, and the problems that make it fail. */
interface Report {
  out: string[];
  problems: string[];
}

/** Runs the check; prints a report and returns the exit code. */
export async function runCheck(options: { config?: string; client?: string }): Promise<number> {
  const loaded = await loadFromCli(options.config, { allowDefault: false });
  if (!loaded) return 2;
  const { config } = loaded;
  const report: Report = { out: [`config: ${loaded.file}: OK`], problems: [] };
  const lan = parseLanNetworks(config.lan_networks);
  const publicAddress = await checkPublicAddress(config, { lan, report });
  const local = localAddressFor(config);
  checkAnnouncements(config, { lan, local, publicAddress, client: options.client, report });
  await checkPorts(config, { local, report });
  await checkUpstream(config, { report });
  checkCertificate(config, { report, now: new Date() });
  return printReport(report);
}

/** Days before expiry from which `check` warns about the certificate. */
export const CERT_WARN_DAYS = 14;

/** Whether a certificate name (`*.example.net` allowed) covers `host`. */
export function certificateCovers(name: string, host: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, "");
  const h = host.toLowerCase().replace(/\.$/, "");
  if (!n.startsWith("*.")) return n === h;
  const dot = h.indexOf(".");
  return dot > 0 && h.slice(dot + 1) === n.slice(2);
}

/**
 * FTPS: the certificate's subject, names, issuer and expiry; a warning
 * under 14 days left; NOT OK when expired or when the public name is not
 * among its names (clients that verify would refuse it).
 */
function checkCertificate(config: Config, options: { report: Report; now: Date }): void {
  const { out, problems } = options.report;
  if (!config.tls) {
    out.push("FTPS: not configured (tls in the config): logins and files travel in clear");
    return;
  }
  const id = loadTlsIdentity(config.tls);
  const days = Math.floor((id.validTo.getTime() - options.now.getTime()) / 86_400_000);
  out.push(
    `FTPS certificate ${config.tls.certificate}: subject ${id.subject}; names ` +
      `${id.names.join(", ") || "(none)"}; issuer ${id.issuer}; expires ` +
      `${id.validTo.toISOString().slice(0, 10)} (${days} days left); TLS required: ` +
      config.tls.required,
  );
  if (days < 0) problems.push(`the certificate ${config.tls.certificate} has expired`);
  else if (days < CERT_WARN_DAYS) {
    out.push(`warning: the certificate expires in ${days} days; renew it, then send SIGHUP`);
  }
  const host = config.public_address?.host;
  if (host && !id.names.some((n) => certificateCovers(n, host))) {
    problems.push(
      `the certificate is not valid for ${host} (its names: ${id.names.join(", ") || "none"}): ` +
        `clients that check certificates will refuse it`,
    );
  }
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
  const refresher = publicAddressFrom(config);
  if (!pa) {
    out.push("public address: not configured (public_address in the config)");
    return null;
  }
  if (pa.address) {
    out.push(`public address: ${pa.address} (fixed in the config)`);
    return pa.address;
  }
  const r = await refresher!.resolveNow();
  refresher!.stop();
  if (r.ok && r.address) {
    reportResolved(pa.host!, { result: r, lan: options.lan, report: options.report });
    return r.address;
  }
  reportUnresolved(pa.host!, { result: r, ipv6: pa.ipv6, report: options.report });
  return null;
}

/** A host name that resolved; an answer inside the LAN is a problem. */
function reportResolved(
  host: string,
  options: { result: ResolveResult; lan: LanNetworks; report: Report },
): void {
  const { result: r, report } = options;
  report.out.push(
    `public address: ${host} -> ${r.address} (DNS server ${r.dnsServer}, ${r.ms.toFixed(1)} ms)`,
  );
  if (isLanAddress(r.address!, options.lan)) {
    report.problems.push(
      `${host} resolves to ${r.address}, which is a LAN address: remote clients cannot ` +
        `reach it (a LAN DNS override? set public_address.dns_server to a public resolver)`,
    );
  }
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
  report.problems.push(
    `cannot resolve ${host} (DNS server ${r.dnsServer}): ${why}; until it resolves, ` +
      `remote clients are told the LAN address and their passive transfers fail`,
  );
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
  const remote = tell(SAMPLE_REMOTE);
  const lanClient = sampleLanClient(local, lan);
  const lanTold = tell(lanClient);
  report.out.push(
    `a remote client (e.g. ${SAMPLE_REMOTE}) is told: ${remote.address} (${remote.reason})`,
  );
  report.out.push(
    `a LAN client (e.g. ${lanClient}) is told: ${lanTold.address} (${lanTold.reason})`,
  );
  // Only when the public address did not already explain it.
  if (remote.address && isLanAddress(remote.address, lan) && !report.problems.length) {
    report.problems.push(
      `remote clients would be told ${remote.address}, a LAN address: passive transfers from ` +
        `the internet will fail; set public_address (host or address)`,
    );
  }
  if (options.client) {
    const told = tell(options.client);
    report.out.push(`client ${options.client} is told: ${told.address} (${told.reason})`);
  }
}

/**
 * Reports whether the control port and the passive range can be bound, and
 * what the router must forward to `local`.
 */
async function checkPorts(
  config: Config,
  options: { local: string; report: Report },
): Promise<void> {
  const { out, problems } = options.report;
  const { address, port } = config.listen;
  try {
    const l = Deno.listen({ hostname: address, port });
    l.close();
    out.push(`control port ${address}:${port}: can be bound`);
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      out.push(`control port ${address}:${port}: in use (is pitifulnat already running?)`);
    } else {
      problems.push(`control port ${address}:${port} cannot be bound: ${(e as Error).message}`);
    }
  }
  const { min_port, max_port } = config.passive;
  const probe = await probeRange({ hostname: address, min: min_port, max: max_port });
  out.push(
    `passive ports ${min_port}-${max_port}: ${probe.bindable} of ${probe.tried} tried can be ` +
      `bound` + (probe.failed.length ? ` (busy: ${probe.failed.slice(0, 10).join(", ")})` : ""),
  );
  if (probe.bindable === 0) {
    problems.push(`no passive port in ${min_port}-${max_port} can be bound`);
  }
  out.push(
    `router: forward TCP ${port} and ${min_port}-${max_port} to this machine (${options.local})`,
  );
}

/** Proxy mode: reports whether the upstream server answers and accepts sessions. */
async function checkUpstream(config: Config, options: { report: Report }): Promise<void> {
  if (!config.proxy) return;
  const { out, problems } = options.report;
  const { host, port } = config.proxy.upstream;
  const label = hostPort(host, port);
  const timeoutMs = config.proxy.connect_timeout_seconds * 1000;
  try {
    const { control, greeting } = await connectUpstream({ host, port }, { timeoutMs });
    control.close();
    const last = greeting[greeting.length - 1];
    const banner = greeting.flatMap((r) => r.lines).join(" / ");
    out.push(`proxy upstream ${label} (${control.host}): ${banner}`);
    if (last.code !== 220) problems.push(`upstream ${label} refuses sessions: ${last.lines[0]}`);
  } catch (e) {
    problems.push(`proxy upstream ${label} unreachable: ${(e as Error).message}`);
  }
}

/** Prints the report and the verdict; returns the exit code. */
function printReport(report: Report): number {
  console.log(report.out.join("\n"));
  if (report.problems.length) {
    console.log(`\nNOT OK:\n${report.problems.map((p) => `- ${p}`).join("\n")}`);
    return 1;
  }
  console.log("\nOK: remote and LAN clients will be told reachable addresses");
  return 0;
}
