/**
 * `pitifulnat check`: tells an operator in plain words whether their setup
 * will work: the config, the public address (resolved now), what remote and
 * LAN clients are told, and whether the ports can be bound.
 * @module
 */
import type { Config } from "../config/schema.ts";
import {
  announceAddress,
  isLanAddress,
  type LanNetworks,
  normalizeAddress,
  parseLanNetworks,
} from "../nat/announce.ts";
import { probeRange } from "../nat/port_range.ts";
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

/** Runs the check; prints a report and returns the exit code. */
export async function runCheck(options: { config?: string; client?: string }): Promise<number> {
  const loaded = await loadFromCli(options.config, { allowDefault: false });
  if (!loaded) return 2;
  const { config } = loaded;
  const problems: string[] = [];
  const out: string[] = [`config: ${loaded.file}: OK`];
  const lan = parseLanNetworks(config.lan_networks);

  // Public address.
  const pa = config.public_address;
  const refresher = publicAddressFrom(config);
  let publicAddress: string | null = null;
  if (!pa) {
    out.push("public address: not configured (public_address in the config)");
  } else if (pa.address) {
    publicAddress = pa.address;
    out.push(`public address: ${pa.address} (fixed in the config)`);
  } else {
    const r = await refresher!.resolveNow();
    refresher!.stop();
    if (r.ok && r.address) {
      publicAddress = r.address;
      out.push(
        `public address: ${pa.host} -> ${r.address} (DNS server ${r.dnsServer}, ${
          r.ms.toFixed(1)
        } ms)`,
      );
      if (isLanAddress(r.address, lan)) {
        problems.push(
          `${pa.host} resolves to ${r.address}, which is a LAN address: remote clients cannot ` +
            `reach it (a LAN DNS override? set public_address.dns_server to a public resolver)`,
        );
      }
    } else {
      const why = plainDnsError(r.error ?? "unknown error", pa.ipv6 ? "AAAA" : "A");
      out.push(
        `public address: ${pa.host} -> not resolved (DNS server ${r.dnsServer}, ` +
          `${r.ms.toFixed(1)} ms): ${why}`,
      );
      problems.push(
        `cannot resolve ${pa.host} (DNS server ${r.dnsServer}): ${why}; until it resolves, ` +
          `remote clients are told the LAN address and their passive transfers fail`,
      );
    }
  }

  // What clients are told.
  const local = localAddressFor(config);
  const remote = announceAddress({ client: SAMPLE_REMOTE, local, publicAddress }, lan);
  const lanClient = sampleLanClient(local, lan);
  const lanTold = announceAddress({ client: lanClient, local, publicAddress }, lan);
  out.push(`a remote client (e.g. ${SAMPLE_REMOTE}) is told: ${remote.address} (${remote.reason})`);
  out.push(`a LAN client (e.g. ${lanClient}) is told: ${lanTold.address} (${lanTold.reason})`);
  if (remote.address && isLanAddress(remote.address, lan) && !problems.length) {
    problems.push(
      `remote clients would be told ${remote.address}, a LAN address: passive transfers from ` +
        `the internet will fail; set public_address (host or address)`,
    );
  }
  if (options.client) {
    const told = announceAddress({ client: options.client, local, publicAddress }, lan);
    out.push(`client ${options.client} is told: ${told.address} (${told.reason})`);
  }

  // Ports.
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
    `router: forward TCP ${port} and ${min_port}-${max_port} to this machine (${local})`,
  );

  // Proxy mode: the upstream server must answer.
  if (config.proxy) {
    const { host, port: upPort } = config.proxy.upstream;
    const label = `${host.includes(":") ? `[${host}]` : host}:${upPort}`;
    const timeoutMs = config.proxy.connect_timeout_seconds * 1000;
    try {
      const { control, greeting } = await connectUpstream({ host, port: upPort }, { timeoutMs });
      control.close();
      const last = greeting[greeting.length - 1];
      const banner = greeting.flatMap((r) => r.lines).join(" / ");
      out.push(`proxy upstream ${label} (${control.host}): ${banner}`);
      if (last.code !== 220) problems.push(`upstream ${label} refuses sessions: ${last.lines[0]}`);
    } catch (e) {
      problems.push(`proxy upstream ${label} unreachable: ${(e as Error).message}`);
    }
  }

  console.log(out.join("\n"));
  if (problems.length) {
    console.log(`\nNOT OK:\n${problems.map((p) => `- ${p}`).join("\n")}`);
    return 1;
  }
  console.log("\nOK: remote and LAN clients will be told reachable addresses");
  return 0;
}
