/**
 * Whether an address can be a public address at all: one that clients on
 * the internet can reach. `check` and the running server use it to say,
 * in plain words, why an announced address cannot work.
 * @module
 */
import ipaddr from "ipaddr.js";

/** Why an address cannot be reached from the internet. */
export type UnreachableKind =
  | "private"
  | "loopback"
  | "cgnat"
  | "documentation"
  | "link-local"
  | "reserved";

/** An address no internet client can reach, and what to do about it. */
export interface Unreachable {
  kind: UnreachableKind;
  /** One sentence: what the address is and what the user can do. */
  text: string;
}

/** RFC 5737 and RFC 3849: addresses for examples, never routed. */
const DOCUMENTATION = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]
  .map((c) => ipaddr.parseCIDR(c));

const ADVICE: Record<UnreachableKind, string> = {
  private: "a private (LAN) address: clients on the internet cannot reach it",
  loopback: "a loopback address: only this machine can reach it",
  cgnat: "in 100.64.0.0/10, carrier-grade NAT: your provider shares one public address " +
    "among many customers, so no port forward on your own router can make this server " +
    "reachable from the internet. Ask the provider for a public IPv4 address, serve over " +
    "IPv6, or use a tunnel or a VPS",
  documentation: "in a documentation range (RFC 5737/3849): it is an example address " +
    "that no real client can reach; put your own public address or DNS name here",
  "link-local": "a link-local address: it is only valid on one network segment",
  reserved: "in a reserved range: it is not routed on the internet",
};

/**
 * Null for an address internet clients can reach; otherwise why not. An
 * IPv4-mapped IPv6 address is judged as the IPv4 address inside it.
 */
export function unreachableFromInternet(address: string): Unreachable | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.process(address);
  } catch {
    return null;
  }
  const kind = kindOf(parsed);
  return kind ? { kind, text: `${parsed.toString()} is ${ADVICE[kind]}` } : null;
}

function kindOf(a: ipaddr.IPv4 | ipaddr.IPv6): UnreachableKind | null {
  if (DOCUMENTATION.some(([net, bits]) => net.kind() === a.kind() && a.match(net, bits))) {
    return "documentation";
  }
  switch (a.range()) {
    case "unicast":
    case "6to4":
    case "teredo":
      return null;
    case "private":
    case "uniqueLocal":
      return "private";
    case "loopback":
      return "loopback";
    case "carrierGradeNat":
      return "cgnat";
    case "linkLocal":
      return "link-local";
    default:
      return "reserved";
  }
}
