/**
 * The status snapshot: one structure, built by one function, that feeds the
 * status page, `/status` (JSON), `/metrics` and `pitifulnat status`. The
 * JSON is documented by these types; `schema` changes when a field changes
 * meaning or goes away (new fields may appear without a change).
 * @module
 */

import type { PortMapperSnapshot } from "../nat/portmap/mod.ts";

/** The version of the snapshot's JSON shape. */
export const SNAPSHOT_SCHEMA = 1;

/** One change of the public address. */
export interface AddressChange {
  /** ISO time of the change. */
  at: string;
  /** The address before (null: none was known yet). */
  from: string | null;
  to: string;
}

/** The public address: where it comes from and how its lookups go. */
export interface PublicAddressStatus {
  /**
   * "dns" (a host name), "fixed" (public_address.address), "router" (the WAN
   * address the router reports over port_mapping), "http" (the address a web
   * service at public_address.url answers) or "none" (not configured).
   */
  source: "dns" | "fixed" | "router" | "http" | "none";
  /** The configured host name ("dns"), the URL ("http"), or "router". */
  host: string | null;
  /** The address announced to remote clients now; null while none is known. */
  address: string | null;
  /** "system", "ip:port" of the configured DNS server, or "none". */
  dnsServer: string;
  /** ISO time of the last successful lookup. */
  resolvedAt: string | null;
  /** ISO time of the next scheduled lookup. */
  nextRefreshAt: string | null;
  /** The last failure in plain words (cleared on success), and the resolver's own text. */
  lastError: string | null;
  lastErrorRaw: string | null;
  lastErrorAt: string | null;
  consecutiveFailures: number;
  /** ISO time the current run of failed lookups began; null while lookups succeed. */
  failingSince: string | null;
  resolutions: { ok: number; failed: number };
  /** Changes since start, oldest first (the last 50). */
  history: AddressChange[];
  /** Why this address cannot work from the internet, in plain words; null when it can. */
  unreachable: string | null;
}

/** What a client is told in a 227 reply, and why. */
export interface Told {
  /** The address; null when PASV has none to give (IPv6: EPSV instead). */
  address: string | null;
  reason: string;
}

/** A transfer in progress. */
export interface LiveTransfer {
  /** RETR, STOR, APPE, STOU, LIST, NLST, MLSD (or the proxy's verb). */
  verb: string;
  /** The path as the client named it. */
  path: string;
  /** "out" is a download (to the client), "in" an upload. */
  direction: "in" | "out";
  /** Bytes moved so far. */
  bytes: number;
  /** The whole size when known (downloads of a file), else null. */
  size: number | null;
  startedAt: string;
  /** Bytes per second since the start. */
  rate: number;
}

/** One open control connection. */
export interface SessionStatus {
  id: string;
  /** "addr:port", bracketed for IPv6. */
  peer: string;
  user: string | null;
  since: string;
  /** Seconds since the last command. */
  idleSeconds: number;
  /** Whether the control connection and (PROT P) the data connections are TLS. */
  tls: { control: boolean; data: boolean };
  transfer: LiveTransfer | null;
}

/** A finished transfer (the last 50). */
export interface TransferDone {
  at: string;
  peer: string;
  user: string | null;
  verb: string;
  path: string;
  direction: "in" | "out";
  bytes: number;
  seconds: number;
  /** "ok", "failed" or "aborted". */
  result: string;
}

/** A failed login (the last 50). */
export interface LoginFailure {
  at: string;
  /** The client's address, without port. */
  addr: string;
  /** The user name it tried (control characters replaced). */
  user: string;
}

/** An address refused for repeated failed logins. */
export interface Ban {
  addr: string;
  secondsLeft: number;
}

/** Bytes moved per interval, for the throughput plot (oldest first). */
export interface Throughput {
  intervalSeconds: number;
  /** One point per interval: ISO time of its end, bytes in and out during it. */
  points: { at: string; in: number; out: number }[];
}

/** The whole snapshot. */
export interface StatusSnapshot {
  schema: typeof SNAPSHOT_SCHEMA;
  version: string;
  /** "serve" or "proxy". */
  mode: "serve" | "proxy";
  /** ISO time the snapshot was taken, the server's start, and the seconds between. */
  now: string;
  startedAt: string;
  uptimeSeconds: number;
  /** The control listener, "addr:port". */
  listen: string;
  /** FTPS: off, or on with the `tls.required` policy and the implicit port (null: none). */
  ftps: { enabled: false } | { enabled: true; required: string; implicitPort: number | null };
  publicAddress: PublicAddressStatus;
  /** What a remote client and a LAN client are told right now. */
  told: { remote: Told; lan: Told };
  passive: { min: number; max: number; inUse: number[] };
  /** The router's port mappings (port_mapping), null when off. */
  portMapping: PortMapperSnapshot | null;
  sessions: SessionStatus[];
  recentTransfers: TransferDone[];
  loginFailures: LoginFailure[];
  bans: Ban[];
  throughput: Throughput;
  /** Counters since start; bytes include transfers in progress. */
  stats: {
    loginsOk: number;
    loginsFailed: number;
    bytesIn: number;
    bytesOut: number;
    transfers: number;
  };
}
