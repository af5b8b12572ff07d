/**
 * Which address a client is told to connect to (passive mode), and which
 * address the server connects to (active mode).
 *
 * This is the one place where that is decided: the FTP server's PASV and the
 * proxy's rewriter both ask these functions and never compute it themselves.
 * Everything here is pure: no sockets, no DNS, no clock.
 *
 * @module
 */

import ipaddr from "ipaddr.js";

/**
 * Networks whose clients are told the server's local (LAN) address rather than
 * the public one: most home routers cannot "hairpin" a LAN client's connection
 * to the router's own public address back inside.
 *
 * RFC 1918 private ranges, IPv4 loopback and link-local, IPv6 loopback,
 * link-local and unique-local (ULA).
 */
export const DEFAULT_LAN_NETWORKS: readonly string[] = Object.freeze([
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "::1/128",
  "fe80::/10",
  "fc00::/7",
]);

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/** One parsed network of a {@linkcode LanNetworks} list. */
export interface LanNetwork {
  /** The network as the operator wrote it, normalized ("10.0.0.0/8"). */
  readonly cidr: string;
  /** Parsed network address. */
  readonly network: Address;
  /** Prefix length in bits. */
  readonly prefix: number;
}

/**
 * A parsed, validated list of LAN networks. Build it once at startup with
 * {@linkcode parseLanNetworks} so that a bad entry fails the config load,
 * not a client's PASV.
 */
export interface LanNetworks {
  /** The parsed networks, in the order given. */
  readonly networks: readonly LanNetwork[];
}

/**
 * Parse a list of CIDR networks ("192.168.0.0/16", "fd00::/8"). A bare
 * address without a prefix means that single host (/32 or /128).
 *
 * @throws {TypeError} naming the bad entry when one is not a valid network.
 */
export function parseLanNetworks(cidrs: readonly string[]): LanNetworks {
  const networks: LanNetwork[] = [];
  for (const raw of cidrs) {
    networks.push(parseNetwork(raw));
  }
  return { networks: Object.freeze(networks) };
}

function parseNetwork(raw: string): LanNetwork {
  const text = String(raw).trim();
  const slash = text.indexOf("/");
  const addressText = slash === -1 ? text : text.slice(0, slash);
  const prefixText = slash === -1 ? "" : text.slice(slash + 1);
  const network = parseStrict(addressText);
  if (network === null || addressText.includes("%")) {
    throw new TypeError(
      `invalid LAN network "${raw}": expected CIDR notation such as 192.168.0.0/16 or fd00::/8`,
    );
  }
  const maxPrefix = network.kind() === "ipv4" ? 32 : 128;
  let prefix = maxPrefix;
  if (slash !== -1) {
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
      throw new TypeError(
        `invalid LAN network "${raw}": prefix length must be 0-${maxPrefix}`,
      );
    }
    prefix = Number(prefixText);
  }
  return { cidr: `${network.toString()}/${prefix}`, network, prefix };
}

/**
 * Parse an address strictly: dotted-quad IPv4 (no octal, hex or short forms,
 * which some parsers accept and which would let "010.0.0.1" mean 8.0.0.1), or
 * IPv6 with an optional zone id, with or without brackets. Null when invalid.
 */
function parseStrict(text: string): Address | null {
  let t = text.trim();
  if (t.startsWith("[") && t.endsWith("]")) t = t.slice(1, -1);
  if (t.includes(":")) {
    return ipaddr.IPv6.isValid(t) ? ipaddr.IPv6.parse(t) : null;
  }
  return ipaddr.IPv4.isValidFourPartDecimal(t) ? ipaddr.IPv4.parse(t) : null;
}

/** Parse and unwrap IPv4-mapped IPv6 (::ffff:a.b.c.d) to plain IPv4. */
function parseAndUnmap(addr: string): Address | null {
  const parsed = parseStrict(addr);
  if (parsed === null) return null;
  if (parsed.kind() === "ipv6") {
    const v6 = parsed as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return v6.toIPv4Address();
  }
  return parsed;
}

/** Canonical dotted IPv4: four decimal octets 0-255 without leading zeros. */
const DOTTED_QUAD =
  /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/**
 * Canonical text of an address: IPv4-mapped IPv6 ("::ffff:1.2.3.4", what a
 * dual-stack listener reports for IPv4 peers) becomes "1.2.3.4"; IPv6 is
 * lowercased and compressed (RFC 5952); a zone id ("fe80::1%eth0") is kept;
 * brackets are removed.
 *
 * @throws {TypeError} when the text is not an IP address.
 */
export function normalizeAddress(addr: string): string {
  // Nearly every address the server sees (each data connection's two) is
  // dotted IPv4 that is canonical already: no parse for it.
  if (DOTTED_QUAD.test(addr)) return addr;
  const parsed = parseAndUnmap(addr);
  if (parsed === null) {
    throw new TypeError(`not an IP address: "${addr}"`);
  }
  return parsed.toString();
}

/**
 * Whether an address lies in one of the LAN networks. IPv4-mapped IPv6
 * addresses count as their IPv4 address. Text that is not an IP address is
 * not in the LAN (so such a client is told the public address).
 */
export function isLanAddress(addr: string, lan: LanNetworks): boolean {
  const parsed = parseAndUnmap(addr);
  if (parsed === null) return false;
  for (const net of lan.networks) {
    if (net.network.kind() !== parsed.kind()) continue;
    // Both operands are of the same kind here; ipaddr's overloads cannot see it.
    if ((parsed as ipaddr.IPv4).match(net.network as ipaddr.IPv4, net.prefix)) {
      return true;
    }
  }
  return false;
}

/** What a passive-mode client is told, and why (for the log and `check`). */
export interface Announcement {
  /** IPv4 address for the 227 reply; null when PASV cannot be answered. */
  address: string | null;
  /** One sentence for the operator, naming the addresses involved. */
  reason: string;
  /**
   * - "lan": the client is in the LAN networks, told the local address;
   * - "public": a remote client, told the public address;
   * - "fallback-local": a remote client, but no public address is known;
   * - "ipv6": no IPv4 address can be announced (use EPSV).
   */
  source: "lan" | "public" | "fallback-local" | "ipv6";
}

/** Input of {@linkcode announceAddress}. */
export interface AnnounceInput {
  /** The control connection's peer (client) address. */
  client: string;
  /** The local address the control connection arrived at. */
  local: string;
  /** The current public address, or null when not (yet) known. */
  publicAddress: string | null;
  /** Where the public address came from, for the reason ("myhome.example.net"). */
  publicSource?: string;
  /**
   * False when no public address is configured at all (a server that is not
   * behind NAT): the local address is then told without a warning tone.
   * Default true.
   */
  publicConfigured?: boolean;
}

/**
 * Builds the input of {@linkcode announceAddress} for one client. serve,
 * proxy and check all call this, so they tell the same address with the
 * same reason. `configured` is the config's `public_address` section
 * (undefined when there is none); `publicAddress` its current value.
 */
export function announceInputs(
  addresses: { client: string; local: string },
  options: { publicAddress: string | null; configured: { host?: string } | undefined },
): AnnounceInput {
  return {
    client: addresses.client,
    local: addresses.local,
    publicAddress: options.publicAddress,
    publicSource: options.configured?.host,
    publicConfigured: options.configured !== undefined,
  };
}

/**
 * Decide which address a PASV reply announces to this client.
 *
 * 1. Control connection on IPv6 (not mapped): PASV cannot carry it; null.
 * 2. Client in the LAN networks: the local address the control connection
 *    arrived at (reaches the server without hairpinning through the router).
 * 3. Public address known: the public address.
 * 4. Otherwise the local address ("fallback-local"): right when the server
 *    is not behind NAT, wrong for remote clients until the name resolves; we
 *    prefer a reply that works for some clients over refusing PASV.
 *
 * @throws {TypeError} when `client` or `local` is not an IP address.
 */
export function announceAddress(input: AnnounceInput, lan: LanNetworks): Announcement {
  const localParsed = parseAndUnmap(input.local);
  if (localParsed === null) {
    throw new TypeError(`local address is not an IP address: "${input.local}"`);
  }
  const client = normalizeAddress(input.client);
  const local = localParsed.toString();
  if (localParsed.kind() === "ipv6") {
    return {
      address: null,
      source: "ipv6",
      reason: `control connection is IPv6 (local address ${local}): PASV needs IPv4; use EPSV`,
    };
  }
  if (isLanAddress(client, lan)) {
    return {
      address: local,
      source: "lan",
      reason: `client ${client} is in the LAN networks: local address ${local}`,
    };
  }
  if (input.publicAddress !== null) {
    const pub = parseAndUnmap(input.publicAddress);
    const from = input.publicSource ? ` (from ${input.publicSource})` : "";
    if (pub === null) {
      throw new TypeError(`public address is not an IP address: "${input.publicAddress}"`);
    }
    if (pub.kind() === "ipv6") {
      return {
        address: null,
        source: "ipv6",
        reason: `public address ${pub.toString()}${from} is IPv6: PASV needs IPv4; use EPSV`,
      };
    }
    return {
      address: pub.toString(),
      source: "public",
      reason: `client ${client} is remote: public address ${pub.toString()}${from}`,
    };
  }
  if (input.publicConfigured === false) {
    return {
      address: local,
      source: "fallback-local",
      reason: `no public address configured: telling local address ${local}`,
    };
  }
  const from = input.publicSource ? ` (${input.publicSource})` : "";
  return {
    address: local,
    source: "fallback-local",
    reason: `public address${from} not resolved yet: telling local address ${local}; ` +
      `remote clients will fail until it resolves`,
  };
}

/** Where an active-mode (PORT/EPRT) data connection goes, and why. */
export interface ActiveTarget {
  /** Normalized address to connect to. */
  address: string;
  /** One sentence for the operator. */
  reason: string;
}

/**
 * Decide where an active-mode data connection goes: the control connection's
 * peer address, taking only the port from PORT/EPRT. A client behind NAT
 * writes its LAN address, which we cannot reach; the peer address is what its
 * router forwards. This also stops the FTP bounce attack (RFC 2577). Only
 * with `allowFxp` (server-to-server transfers) is the written address used.
 *
 * @throws {TypeError} when `peer` is not an IP address, or when `allowFxp` is
 * set and `written` is not one.
 */
export function activeTarget(
  input: { peer: string; written: string },
  options: { allowFxp: boolean },
): ActiveTarget {
  const peer = normalizeAddress(input.peer);
  const writtenParsed = parseAndUnmap(input.written);
  const written = writtenParsed === null ? null : writtenParsed.toString();
  if (options.allowFxp) {
    if (written === null) {
      throw new TypeError(`written address is not an IP address: "${input.written}"`);
    }
    return {
      address: written,
      reason: written === peer
        ? `written address ${written} is the control connection's peer`
        : `FXP allowed: connecting to written address ${written} (control peer ${peer})`,
    };
  }
  if (written === peer) {
    return {
      address: peer,
      reason: `written address ${written} is the control connection's peer`,
    };
  }
  const shown = written ?? JSON.stringify(input.written);
  return {
    address: peer,
    reason: `client wrote ${shown}; connecting to the control connection's peer ${peer} instead`,
  };
}
