/**
 * Addresses and resolver errors in plain words: the sample clients whose
 * 227 replies `check` and the status page show, and what a DNS error means.
 * @module
 */
import type { Config } from "../config/schema.ts";
import { isLanAddress, type LanNetworks, normalizeAddress } from "./announce.ts";

/** A remote address used to show what internet clients are told (RFC 5737). */
export const SAMPLE_REMOTE = "198.51.100.23";

/** The address LAN clients reach the server at, as the server would see it. */
export function localAddressFor(config: Config): string {
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

/** A LAN address next to `local`, to show what LAN clients are told. */
export function sampleLanClient(local: string, lan: LanNetworks): string {
  const parts = local.split(".");
  if (parts.length === 4) {
    const candidate = [...parts.slice(0, 3), parts[3] === "50" ? "51" : "50"].join(".");
    if (isLanAddress(candidate, lan)) return candidate;
  }
  return local.includes(":") ? "fd00::50" : "192.168.1.50";
}

/** A resolver error in plain words. */
export function plainDnsError(error: string, type: "A" | "AAAA"): string {
  if (/no records found|NotFound|NXDOMAIN/i.test(error)) return `the name has no ${type} record`;
  if (/timed out|TimedOut/i.test(error)) return "the DNS server did not answer in time";
  if (/refused|ConnectionRefused/i.test(error)) return "the DNS server refused the query";
  return error;
}
