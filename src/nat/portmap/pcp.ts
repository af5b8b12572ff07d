/**
 * PCP (RFC 6887) as a {@linkcode Backend}: the MAP opcode for TCP over
 * IPv4 (the gateway's port 5351, shared with NAT-PMP), ANNOUNCE for the
 * epoch (a gateway restart), and MAP with lifetime 0 to delete. Each
 * mapping keeps its nonce, as the RFC asks for renewals and deletions.
 * @module
 */
import type { Backend, GatewayState, Granted } from "./backend.ts";
import { udpExchange } from "./natpmp_client.ts";
import { epochWentBack, NATPMP_PORT } from "./natpmp_wire.ts";

/** PCP opcodes. */
const OP = { announce: 0, map: 1 } as const;
/** IANA protocol number of TCP. */
const TCP = 6;

/** Result codes, RFC 6887 section 7.4. */
const RESULT_TEXT: Record<number, string> = {
  0: "success",
  1: "unsupported version",
  2: "not authorized",
  3: "malformed request",
  4: "unsupported opcode",
  5: "unsupported option",
  6: "malformed option",
  7: "network failure",
  8: "no resources",
  9: "unsupported protocol",
  10: "user exceeded quota",
  11: "cannot provide external port",
  12: "address mismatch (the gateway sees another client address)",
  13: "excessive remote peers",
};

/** A result code in words. */
export function pcpResultText(result: number): string {
  return RESULT_TEXT[result] ?? `PCP result code ${result}`;
}

/** An IPv4 address as the 16-byte IPv4-mapped IPv6 address PCP carries. */
export function mappedV4(address: string): Uint8Array {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) {
    throw new TypeError(`PCP: not an IPv4 address: ${address}`);
  }
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(parts, 12);
  return out;
}

/** The 24-byte request header: version 2, opcode, lifetime, client address. */
function requestHeader(op: number, lifetime: number, client: string): Uint8Array {
  const buf = new Uint8Array(24);
  buf[0] = 2;
  buf[1] = op;
  new DataView(buf.buffer).setUint32(4, lifetime);
  buf.set(mappedV4(client), 8);
  return buf;
}

/** An ANNOUNCE request (24 bytes). */
export function encodeAnnounce(client: string): Uint8Array {
  return requestHeader(OP.announce, 0, client);
}

/** A MAP request for TCP (60 bytes); lifetime 0 deletes the mapping of `nonce`. */
export function encodeMap(
  options: {
    client: string;
    nonce: Uint8Array;
    internalPort: number;
    externalPort: number;
    lifetime: number;
  },
): Uint8Array {
  const buf = new Uint8Array(60);
  buf.set(requestHeader(OP.map, options.lifetime, options.client));
  buf.set(options.nonce.subarray(0, 12), 24);
  buf[36] = TCP;
  const view = new DataView(buf.buffer);
  view.setUint16(40, options.internalPort);
  view.setUint16(42, options.externalPort);
  // Suggested external address: any IPv4 (::ffff:0.0.0.0).
  buf.set(mappedV4("0.0.0.0"), 44);
  return buf;
}

/** A decoded PCP response. */
export interface PcpReply {
  /** The opcode answered. */
  op: number;
  /** 0 on success; see {@linkcode pcpResultText}. */
  result: number;
  /** Lifetime granted (MAP), or how long an error lasts. */
  lifetime: number;
  /** The gateway's epoch time in seconds. */
  epoch: number;
  /** MAP only: the nonce, the internal port, the external port and address. */
  map?: { nonce: Uint8Array; internalPort: number; externalPort: number; externalAddress: string };
}

/** Decodes a PCP response; null when `bytes` is not one. */
export function decodePcpReply(bytes: Uint8Array): PcpReply | null {
  if (bytes.length < 24 || bytes[0] !== 2 || (bytes[1] & 0x80) === 0) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const reply: PcpReply = {
    op: bytes[1] & 0x7f,
    result: bytes[3],
    lifetime: view.getUint32(4),
    epoch: view.getUint32(8),
  };
  if (reply.op === OP.map && bytes.length >= 60) {
    reply.map = {
      nonce: bytes.slice(24, 36),
      internalPort: view.getUint16(40),
      externalPort: view.getUint16(42),
      externalAddress: Array.from(bytes.subarray(56, 60)).join("."),
    };
  }
  return reply;
}

/** Whether two nonces are equal. */
function sameNonce(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A PCP server (the gateway). */
export class PcpBackend implements Backend {
  readonly protocol = "pcp";
  readonly gateway: string;
  readonly #client: string;
  readonly #to: { gateway: string; port: number; firstWaitMs: number; attempts: number };
  readonly #now: () => number;
  /** Nonce of each mapping, by internal port. */
  readonly #nonces = new Map<number, Uint8Array>();
  #lastEpoch: { epoch: number; atMs: number } | null = null;
  #restartSeen = false;
  #externalAddress: string | null = null;

  constructor(
    options: {
      gateway: string;
      internalAddress: string;
      port?: number;
      firstWaitMs?: number;
      attempts?: number;
    },
    now: () => number = Date.now,
  ) {
    this.gateway = options.gateway;
    this.#client = options.internalAddress;
    this.#to = {
      gateway: options.gateway,
      port: options.port ?? NATPMP_PORT,
      firstWaitMs: options.firstWaitMs ?? 250,
      attempts: Math.max(1, Math.min(options.attempts ?? 4, 9)),
    };
    this.#now = now;
  }

  /**
   * ANNOUNCE for the epoch; the external address is the one the last MAP
   * reply named (PCP has no request for it alone), so `deferred` on the first round.
   */
  async state(): Promise<GatewayState> {
    const r = await this.#send(encodeAnnounce(this.#client), (x) => x.op === OP.announce);
    const restarted = this.#noteEpoch(r.epoch) || this.#restartSeen;
    this.#restartSeen = false;
    if (r.result !== 0) {
      return { address: null, error: `ANNOUNCE: ${pcpResultText(r.result)}`, restarted };
    }
    return { address: this.#externalAddress, restarted, deferred: true };
  }

  /** One MAP request, with this mapping's nonce. */
  async map(internalPort: number, externalPort: number, lease: number): Promise<Granted | string> {
    const nonce = this.#nonces.get(internalPort) ?? crypto.getRandomValues(new Uint8Array(12));
    this.#nonces.set(internalPort, nonce);
    const r = await this.#send(
      encodeMap({ client: this.#client, nonce, internalPort, externalPort, lifetime: lease }),
      (x) => x.op === OP.map && x.map !== undefined && sameNonce(x.map.nonce, nonce),
    );
    if (this.#noteEpoch(r.epoch)) this.#restartSeen = true;
    if (r.result !== 0 || r.map === undefined) return pcpResultText(r.result);
    this.#externalAddress = r.map.externalAddress;
    return {
      externalPort: r.map.externalPort,
      lifetime: r.lifetime,
      externalAddress: r.map.externalAddress,
    };
  }

  /** MAP with lifetime 0 and the mapping's nonce. */
  async unmap(internalPort: number): Promise<string | null> {
    const nonce = this.#nonces.get(internalPort);
    if (nonce === undefined) return "no nonce known for this mapping";
    const r = await this.#send(
      encodeMap({ client: this.#client, nonce, internalPort, externalPort: 0, lifetime: 0 }),
      (x) => x.op === OP.map && x.map !== undefined && sameNonce(x.map.nonce, nonce),
      3,
    );
    if (r.result !== 0) return pcpResultText(r.result);
    this.#nonces.delete(internalPort);
    return null;
  }

  /** Sends a request; resolves with the first reply `accept` takes. */
  #send(
    request: Uint8Array,
    accept: (r: PcpReply) => boolean,
    attempts?: number,
  ): Promise<PcpReply> {
    return udpExchange(
      {
        ...this.#to,
        attempts: Math.min(attempts ?? this.#to.attempts, this.#to.attempts),
        what: "PCP",
      },
      request,
      (bytes) => {
        const r = decodePcpReply(bytes);
        // An error reply to a MAP may come without the MAP data: take it too.
        if (r !== null && r.result !== 0 && (r.op === request[1])) return r;
        return r !== null && accept(r) ? r : null;
      },
    );
  }

  /** Records an epoch; true when it shows a restart since the last one. */
  #noteEpoch(epoch: number): boolean {
    const now = this.#now();
    const back = this.#lastEpoch !== null && epochWentBack(this.#lastEpoch, epoch, now);
    this.#lastEpoch = { epoch, atMs: now };
    return back;
  }
}
