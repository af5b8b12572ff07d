/**
 * The NAT-PMP wire format (RFC 6886): the two requests a client sends (the
 * gateway's external address, and a port mapping) and the gateway's replies.
 * Pure functions on bytes; the UDP exchange is in natpmp_client.ts.
 * @module
 */

/** The UDP port a NAT-PMP (and PCP) gateway listens on. */
export const NATPMP_PORT = 5351;

/** Opcodes of the requests (a reply's opcode is the request's plus 128). */
export const OPCODE = { externalAddress: 0, mapUdp: 1, mapTcp: 2 } as const;

/** Result codes of a reply, RFC 6886 section 3.5. */
export const RESULT_TEXT: Record<number, string> = {
  0: "success",
  1: "unsupported version",
  2: "not authorized / refused",
  3: "network failure (the gateway has no external address)",
  4: "out of resources (no more mappings)",
  5: "unsupported opcode",
};

/** A decoded reply to the external-address request. */
export interface ExternalAddressReply {
  /** 0 on success; see {@linkcode RESULT_TEXT}. */
  result: number;
  /** Seconds since the gateway's port-mapping table was (re)initialized. */
  epoch: number;
  /** The gateway's external IPv4 address (meaningful only on success). */
  address: string;
}

/** A decoded reply to a mapping request. */
export interface MapReply {
  /** 0 on success; see {@linkcode RESULT_TEXT}. */
  result: number;
  /** Seconds since the gateway's port-mapping table was (re)initialized. */
  epoch: number;
  /** "tcp" or "udp", from the reply's opcode. */
  protocol: "tcp" | "udp";
  /** The internal port the reply is about. */
  internalPort: number;
  /** The external port the gateway chose (may differ from the one asked for). */
  externalPort: number;
  /** Seconds the mapping lasts; 0 in the reply to a deletion. */
  lifetime: number;
}

/** The 2-byte external-address request. */
export function encodeExternalAddressRequest(): Uint8Array {
  return new Uint8Array([0, OPCODE.externalAddress]);
}

/** Checks a port number (1-65535, or 0 where `zeroOk`). */
function checkPort(port: number, what: string, zeroOk = false): void {
  if (!Number.isInteger(port) || port < (zeroOk ? 0 : 1) || port > 65535) {
    throw new RangeError(`NAT-PMP: bad ${what} ${port}`);
  }
}

/**
 * The 12-byte mapping request: `lifetime` 0 deletes the mapping of
 * `internalPort` (then `externalPort` must be 0 too, RFC 6886 section 3.4).
 */
export function encodeMapRequest(
  protocol: "tcp" | "udp",
  internalPort: number,
  externalPort: number,
  lifetime: number,
): Uint8Array {
  checkPort(internalPort, "internal port");
  checkPort(externalPort, "external port", true);
  if (!Number.isInteger(lifetime) || lifetime < 0 || lifetime > 0xffffffff) {
    throw new RangeError(`NAT-PMP: bad lifetime ${lifetime}`);
  }
  const buf = new Uint8Array(12);
  const view = new DataView(buf.buffer);
  buf[1] = protocol === "tcp" ? OPCODE.mapTcp : OPCODE.mapUdp;
  view.setUint16(4, internalPort);
  view.setUint16(6, externalPort);
  view.setUint32(8, lifetime);
  return buf;
}

/** The version, opcode and result code of a reply, or null when it is no NAT-PMP reply. */
function header(bytes: Uint8Array): { op: number; result: number; epoch: number } | null {
  if (bytes.length < 8 || bytes[0] !== 0 || bytes[1] < 128) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { op: bytes[1] - 128, result: view.getUint16(2), epoch: view.getUint32(4) };
}

/**
 * Decodes a reply to the external-address request; null when `bytes` is
 * not one (wrong version or opcode, or too short on success).
 */
export function decodeExternalAddressReply(bytes: Uint8Array): ExternalAddressReply | null {
  const h = header(bytes);
  if (h === null || h.op !== OPCODE.externalAddress) return null;
  if (h.result === 0 && bytes.length < 12) return null;
  const address = bytes.length >= 12 ? Array.from(bytes.subarray(8, 12)).join(".") : "0.0.0.0";
  return { result: h.result, epoch: h.epoch, address };
}

/**
 * Decodes a reply to a mapping request; null when `bytes` is not one. An
 * error reply may be short (RFC 6886: only the header is reliable); its
 * ports and lifetime are then 0.
 */
export function decodeMapReply(bytes: Uint8Array): MapReply | null {
  const h = header(bytes);
  if (h === null || (h.op !== OPCODE.mapTcp && h.op !== OPCODE.mapUdp)) return null;
  if (h.result === 0 && bytes.length < 16) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const full = bytes.length >= 16;
  return {
    result: h.result,
    epoch: h.epoch,
    protocol: h.op === OPCODE.mapTcp ? "tcp" : "udp",
    internalPort: full ? view.getUint16(8) : 0,
    externalPort: full ? view.getUint16(10) : 0,
    lifetime: full ? view.getUint32(12) : 0,
  };
}

/** A result code in words. */
export function resultText(result: number): string {
  return RESULT_TEXT[result] ?? `result code ${result}`;
}

/**
 * Whether a gateway lost its mappings between two replies (RFC 6886
 * section 3.6): its epoch must advance by at least 7/8 of the client's
 * elapsed time, less 2 seconds of slack; less than that means it restarted.
 */
export function epochWentBack(
  previous: { epoch: number; atMs: number },
  epoch: number,
  nowMs: number,
): boolean {
  const elapsed = Math.max(0, (nowMs - previous.atMs) / 1000);
  return epoch + 2 < previous.epoch + (elapsed * 7) / 8;
}
