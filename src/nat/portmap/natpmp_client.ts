/**
 * One NAT-PMP exchange over UDP (RFC 6886 section 3.1): a request to the
 * gateway's port 5351, resent after 250 ms, then doubling, a bounded number
 * of times; only a reply from the gateway's address and port is taken.
 * @module
 */
import dgram from "node:dgram";
import {
  decodeExternalAddressReply,
  decodeMapReply,
  encodeExternalAddressRequest,
  encodeMapRequest,
  type ExternalAddressReply,
  type MapReply,
  NATPMP_PORT,
} from "./natpmp_wire.ts";

/** Where and how patiently a {@linkcode NatPmpClient} asks. */
export interface NatPmpClientOptions {
  /** The gateway's IPv4 address. */
  gateway: string;
  /** The gateway's port; default 5351. */
  port?: number;
  /** First wait for a reply; default 250 ms (doubled on each resend). */
  firstWaitMs?: number;
  /** Sends in all, the first included; default 4 (250+500+1000+2000 ms). */
  attempts?: number;
}

/** Thrown when the gateway does not answer at all. */
export class NoReplyError extends Error {
  override name = "NoReplyError";
}

/** A NAT-PMP client for one gateway. */
export class NatPmpClient {
  /** The gateway's address. */
  readonly gateway: string;
  readonly #port: number;
  readonly #firstWaitMs: number;
  readonly #attempts: number;

  constructor(options: NatPmpClientOptions) {
    this.gateway = options.gateway;
    this.#port = options.port ?? NATPMP_PORT;
    this.#firstWaitMs = options.firstWaitMs ?? 250;
    this.#attempts = Math.max(1, Math.min(options.attempts ?? 4, 9));
  }

  /** Asks for the gateway's external address (and its epoch). */
  externalAddress(): Promise<ExternalAddressReply> {
    return this.#exchange(encodeExternalAddressRequest(), decodeExternalAddressReply);
  }

  /**
   * Asks for a mapping of `internalPort` (external port `externalPort`
   * suggested) for `lifetime` seconds; lifetime 0 deletes it.
   */
  map(
    protocol: "tcp" | "udp",
    internalPort: number,
    externalPort: number,
    lifetime: number,
  ): Promise<MapReply> {
    const req = encodeMapRequest(
      protocol,
      internalPort,
      lifetime === 0 ? 0 : externalPort,
      lifetime,
    );
    return this.#exchange(req, (bytes) => {
      const reply = decodeMapReply(bytes);
      // A reply about another port (a late answer to an earlier request) is not ours.
      if (reply === null || reply.protocol !== protocol) return null;
      if (reply.result === 0 && reply.internalPort !== internalPort) return null;
      return reply;
    });
  }

  /** One exchange with this client's gateway, port and patience. */
  #exchange<T>(request: Uint8Array, decode: (bytes: Uint8Array) => T | null): Promise<T> {
    return udpExchange(
      {
        gateway: this.gateway,
        port: this.#port,
        firstWaitMs: this.#firstWaitMs,
        attempts: this.#attempts,
        what: "NAT-PMP",
      },
      request,
      decode,
    );
  }
}

/**
 * Sends `request` to `gateway:port` (resent after `firstWaitMs`, then
 * doubling, `attempts` sends in all) and resolves with the first reply from
 * there that `decode` accepts; a {@linkcode NoReplyError} when none comes.
 */
export function udpExchange<T>(
  to: { gateway: string; port: number; firstWaitMs: number; attempts: number; what: string },
  request: Uint8Array,
  decode: (bytes: Uint8Array) => T | null,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const sock = dgram.createSocket("udp4");
    let timer: ReturnType<typeof setTimeout> | undefined;
    let sent = 0;
    let done = false;
    const finish = (error: Error | null, value?: T) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      if (error) reject(error);
      else resolve(value as T);
    };
    const send = () => {
      if (sent >= to.attempts) {
        finish(
          new NoReplyError(`no ${to.what} reply from ${to.gateway}:${to.port} after ${sent} tries`),
        );
        return;
      }
      const wait = to.firstWaitMs * 2 ** sent;
      sent++;
      sock.send(request, to.port, to.gateway, (e) => {
        if (e) finish(new Error(`${to.what}: cannot send to ${to.gateway}: ${e.message}`));
      });
      timer = setTimeout(send, wait);
    };
    sock.on("error", (e) => finish(new Error(`${to.what}: ${e.message}`)));
    sock.on("message", (msg, rinfo) => {
      if (rinfo.address !== to.gateway || rinfo.port !== to.port) return;
      const value = decode(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
      if (value !== null) finish(null, value);
    });
    sock.bind(0, send);
  });
}

/**
 * The IPv4 default gateway from Linux's `/proc/net/route`, or null when
 * there is none or the file cannot be read (another system).
 */
export function defaultGateway(routeTable?: string): string | null {
  let text = routeTable;
  if (text === undefined) {
    try {
      text = Deno.readTextFileSync("/proc/net/route");
    } catch {
      return null;
    }
  }
  for (const line of text.split("\n").slice(1)) {
    const [, destination, gateway, flags] = line.trim().split(/\s+/);
    // RTF_GATEWAY (0x2) on the 0.0.0.0 route; the gateway is little-endian hex.
    if (destination !== "00000000" || !gateway || (parseInt(flags, 16) & 2) === 0) continue;
    const n = parseInt(gateway, 16);
    return [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, n >>> 24].join(".");
  }
  return null;
}

/** An IPv4 address as a 32-bit number. */
function v4(address: string): number {
  return address.split(".").reduce((n, part) => (n * 256 + Number(part)) >>> 0, 0);
}

/**
 * The local IPv4 address on the same subnet as `gateway` (the one a router
 * forwards to), from the interface list; throws when no interface is.
 */
export function localAddressToward(
  gateway: string,
  interfaces: { family: string; address: string; netmask: string }[] = Deno.networkInterfaces(),
): string {
  const gw = v4(gateway);
  for (const i of interfaces) {
    if (i.family !== "IPv4") continue;
    const mask = v4(i.netmask);
    if (((v4(i.address) & mask) >>> 0) === ((gw & mask) >>> 0)) return i.address;
  }
  throw new Error(`no local IPv4 address on the subnet of ${gateway} (set the internal address)`);
}
