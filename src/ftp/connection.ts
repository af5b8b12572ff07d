/**
 * The bottom of the kit: the connection type every control and data
 * connection is seen through (read, write, close, peer, local), and the
 * small helpers every layer above needs (closing quietly, `host:port`, the
 * address family, timeouts). Sessions and transfers use {@linkcode Connection}
 * only, so a connection can be plain TCP or TLS without touching them.
 * @module
 */
import { normalizeAddress } from "../nat/announce.ts";

/** One end of a connection: a normalized address and a port. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** A byte stream with two ends: what sessions, transfers and relays use. */
export interface Connection {
  /** Reads into `p`; null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; resolves with how much. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the connection; throws if it was closed already. */
  close(): void;
  /** The other end, as the socket reports it, normalized. */
  readonly peer: Endpoint;
  /** This end. */
  readonly local: Endpoint;
}

/** A plain TCP connection. */
export class TcpConnection implements Connection {
  readonly peer: Endpoint;
  readonly local: Endpoint;

  constructor(readonly tcp: Deno.TcpConn) {
    this.peer = { host: normalizeAddress(tcp.remoteAddr.hostname), port: tcp.remoteAddr.port };
    this.local = { host: normalizeAddress(tcp.localAddr.hostname), port: tcp.localAddr.port };
  }

  read(p: Uint8Array): Promise<number | null> {
    return this.tcp.read(p);
  }

  write(p: Uint8Array): Promise<number> {
    return this.tcp.write(p);
  }

  close(): void {
    this.tcp.close();
  }
}

/** Closes a connection, listener or file that may be closed already. */
export function closeQuietly(c: { close(): void } | null | undefined): void {
  try {
    c?.close();
  } catch { /* already closed */ }
}

/** `host:port`, with brackets for IPv6. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** Where this machine reaches a listener bound to `address`: loopback for a wildcard. */
export function dialable(address: string): string {
  return address === "0.0.0.0" ? "127.0.0.1" : address === "::" ? "::1" : address;
}

/** The RFC 2428 network protocol number of an address: 1 for IPv4, 2 for IPv6. */
export function addressFamily(address: string): 1 | 2 {
  return address.includes(":") ? 2 : 1;
}

/** What {@linkcode withTimeout} resolves with when the time ran out. */
export const TIMED_OUT: unique symbol = Symbol("timed out");

/**
 * Waits for `p`, but at most `ms`: resolves with its value, or with
 * {@linkcode TIMED_OUT}. The timer is cleared either way; a rejection of
 * `p` after the timeout is ignored.
 */
export async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
    p.catch(() => {});
  }
}

/** Writes all of `bytes` (a write may write less). */
export async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}
