/**
 * FTPS for the kit: the certificate and key as a TLS context, the
 * connection type over `node:net` / `node:tls` sockets (Deno can upgrade an
 * accepted socket to TLS on the server side only through `node:tls`), the
 * upgrade itself, passive listeners that can hand out TLS data connections,
 * and the rule which clients must use TLS.
 *
 * Plain sessions of a server without `tls` never come here: they stay on
 * Deno's native sockets, which are faster.
 * @module
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import * as net from "node:net";
import * as tls from "node:tls";
import { isLanAddress, type LanNetworks, normalizeAddress } from "../nat/announce.ts";
import {
  closeQuietly,
  type Connection,
  type Endpoint,
  TIMED_OUT,
  withTimeout,
} from "./connection.ts";

/** `tls.required`: who must use TLS for login and data. */
export type TlsPolicy = "always" | "remote" | "never";

/** A loaded certificate, ready for handshakes, and what `check` shows of it. */
export interface TlsIdentity {
  context: tls.SecureContext;
  subject: string;
  issuer: string;
  /** DNS names and IP addresses the certificate is valid for. */
  names: string[];
  validTo: Date;
}

/** Why a certificate or key cannot be used; names the file and the problem. */
export class TlsFileError extends Error {
  constructor(readonly key: "certificate" | "key", readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
  }
}

function readPem(key: "certificate" | "key", file: string): string {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable
      ? "permission denied"
      : (e as Error).message;
    throw new TlsFileError(key, file, `cannot read the ${key}: ${why}`);
  }
  const marker = key === "certificate" ? "CERTIFICATE" : "PRIVATE KEY";
  if (!text.includes(`-----BEGIN `) || !text.includes(marker)) {
    throw new TlsFileError(key, file, `not a PEM ${key} (no "-----BEGIN ...${marker}-----")`);
  }
  return text;
}

/**
 * Loads the certificate (a chain is allowed) and its key.
 * @throws {TlsFileError} when a file is missing, unreadable, not PEM, or the two do not match.
 */
export function loadTlsIdentity(files: { certificate: string; key: string }): TlsIdentity {
  const cert = readPem("certificate", files.certificate);
  const key = readPem("key", files.key);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw new TlsFileError(
      "certificate",
      files.certificate,
      `bad certificate: ${(e as Error).message}`,
    );
  }
  let context: tls.SecureContext;
  try {
    context = tls.createSecureContext({ cert, key, minVersion: "TLSv1.2" });
  } catch (e) {
    const msg = (e as Error).message;
    if (/mismatch|does not match|KEY_VALUES_MISMATCH/i.test(msg)) {
      throw new TlsFileError(
        "key",
        files.key,
        `does not match the certificate ${files.certificate}`,
      );
    }
    throw new TlsFileError("key", files.key, `bad key: ${msg}`);
  }
  if (!x509.checkPrivateKey(parseKey(key, files.key))) {
    throw new TlsFileError("key", files.key, `does not match the certificate ${files.certificate}`);
  }
  const names = (x509.subjectAltName ?? "").split(/,\s*/).flatMap((n) => {
    const m = /^(DNS|IP Address):(.+)$/.exec(n.trim());
    return m ? [m[2]] : [];
  });
  return {
    context,
    subject: x509.subject.replaceAll("\n", ", "),
    issuer: x509.issuer.replaceAll("\n", ", "),
    names,
    validTo: new Date(x509.validTo),
  };
}

function parseKey(pem: string, file: string) {
  try {
    return createPrivateKey(pem);
  } catch (e) {
    throw new TlsFileError("key", file, `bad key: ${(e as Error).message}`);
  }
}

/** The certificate a config names, loaded (null without `tls`); the loader checked the files. */
export function identityFrom(
  config: { tls?: { certificate: string; key: string } },
): TlsIdentity | null {
  return config.tls ? loadTlsIdentity(config.tls) : null;
}

/** Whether a client at `peer` must use TLS for login and data. */
export function tlsRequiredFor(
  peer: string,
  options: { policy: TlsPolicy; lan: LanNetworks },
): boolean {
  if (options.policy === "always") return true;
  if (options.policy === "never") return false;
  return !isLanAddress(peer, options.lan);
}

/**
 * Bytes a connection buffers ahead of its reader before it pauses the
 * socket (resumed once the reader has taken all). Under Deno, a `node:net`
 * or `node:tls` socket that was paused, or read in paused mode, delivers
 * about 3 MB/s instead of 300, so this is only a safety valve: normally the
 * reader drains the buffer every event-loop turn and it never fills.
 */
const READ_AHEAD = 64 << 20;

/** A {@linkcode Connection} over a `node:net` or `node:tls` socket. */
export class NodeConnection implements Connection {
  readonly peer: Endpoint;
  readonly local: Endpoint;
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  #paused = false;
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  readonly #onData = (chunk: Uint8Array) => {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    if (this.#buffered > READ_AHEAD && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
    }
    this.#notify();
  };
  readonly #onEnd = () => {
    this.#ended = true;
    this.#notify();
  };
  readonly #onError = (e: Error) => {
    this.#error ??= e;
    this.#notify();
  };

  /** The TCP socket under a TLS one (closing TLS does not close it under Deno). */
  readonly #raw: net.Socket | null;

  constructor(
    readonly socket: net.Socket,
    ends?: { peer: Endpoint; local: Endpoint },
    raw?: net.Socket,
  ) {
    this.#raw = raw ?? null;
    this.peer = ends?.peer ??
      { host: normalizeAddress(socket.remoteAddress ?? "0.0.0.0"), port: socket.remotePort ?? 0 };
    this.local = ends?.local ??
      { host: normalizeAddress(socket.localAddress ?? "0.0.0.0"), port: socket.localPort ?? 0 };
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onEnd);
    socket.on("error", this.#onError);
  }

  /** True when the socket is TLS. */
  get encrypted(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  /** True when the TLS handshake resumed an earlier session (a ticket). */
  get resumed(): boolean {
    return this.socket instanceof tls.TLSSocket && this.socket.isSessionReused();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    let n = 0;
    while (n < p.length && this.#chunks.length > 0) {
      const chunk = this.#chunks[0];
      const take = Math.min(chunk.length, p.length - n);
      p.set(chunk.subarray(0, take), n);
      n += take;
      if (take === chunk.length) this.#chunks.shift();
      else this.#chunks[0] = chunk.subarray(take);
    }
    this.#buffered -= n;
    if (this.#buffered === 0 && this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    if (this.socket.destroyed) return Promise.reject(new Error("connection closed"));
    return new Promise((resolve, reject) => {
      // The callback comes once the bytes are handed on, so the caller may reuse `p`.
      this.socket.write(p, (err) => err ? reject(err) : resolve(p.length));
    });
  }

  /**
   * Closes the connection. TLS ends with a close_notify first (clients such
   * as GnuTLS's and Python's report a TLS connection cut without one as
   * truncated), and is torn down for good at most 2 s later.
   */
  close(): void {
    const raw = this.#raw;
    if (this.encrypted && !this.socket.destroyed) {
      const timer = setTimeout(() => {
        this.socket.destroy();
        raw?.destroy();
      }, 2000);
      Deno.unrefTimer(Number(timer));
      // close_notify, then the TCP FIN once it is written.
      this.socket.end(() => raw?.end());
      this.socket.once("close", () => {
        raw?.end();
        if (!raw) clearTimeout(timer);
      });
      raw?.once("close", () => clearTimeout(timer));
    } else {
      this.socket.destroy();
      raw?.destroy();
    }
    this.#ended = true;
    this.#notify();
  }

  /**
   * Stops reading and gives up the socket, dropping what was read ahead:
   * after AUTH TLS, bytes sent before the handshake must never count as
   * commands (a plaintext command injected there would run as if encrypted).
   */
  detach(): net.Socket {
    this.socket.pause();
    this.socket.off("data", this.#onData);
    this.socket.off("end", this.#onEnd);
    this.socket.off("close", this.#onEnd);
    this.socket.off("error", this.#onError);
    this.#chunks = [];
    this.#buffered = 0;
    return this.socket;
  }
}

/**
 * Makes `socket` the TLS server end of a handshake and waits for it, at most
 * `timeoutMs`. Resolves with the encrypted connection.
 * @throws when the handshake fails or times out (the socket is destroyed).
 */
export async function tlsHandshake(
  socket: net.Socket,
  options: {
    context: tls.SecureContext;
    timeoutMs: number;
    ends?: { peer: Endpoint; local: Endpoint };
  },
): Promise<NodeConnection> {
  const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: options.context });
  const done = new Promise<void>((resolve, reject) => {
    secure.once("secure", () => resolve());
    secure.once("error", reject);
    secure.once("close", () => reject(new Error("closed during the TLS handshake")));
  });
  let result: void | typeof TIMED_OUT;
  try {
    result = await withTimeout(done, options.timeoutMs);
  } catch (e) {
    secure.destroy();
    throw e;
  }
  if (result === TIMED_OUT) {
    secure.destroy();
    throw new Error("TLS handshake timed out");
  }
  return new NodeConnection(secure, options.ends, socket);
}

/**
 * Writes `reply` on a plain control connection, then turns it into TLS:
 * the handshake starts once the reply is written (starting it earlier can
 * stall it).
 */
export async function upgradeControl(
  conn: NodeConnection,
  options: { reply: Uint8Array; context: tls.SecureContext; timeoutMs: number },
): Promise<NodeConnection> {
  const socket = conn.detach();
  await new Promise<void>((resolve, reject) => {
    socket.write(options.reply, (err) => err ? reject(err) : resolve());
  });
  return await tlsHandshake(socket, {
    context: options.context,
    timeoutMs: options.timeoutMs,
    ends: { peer: conn.peer, local: conn.local },
  });
}

/** A passive listener over `node:net`, for sessions whose control connection is TLS. */
export class NodeListener {
  readonly #queue: net.Socket[] = [];
  #wake: (() => void) | null = null;
  #closed = false;

  constructor(readonly server: net.Server, readonly port: number) {
    server.on("connection", (socket: net.Socket) => {
      if (this.#closed) return void socket.destroy();
      this.#queue.push(socket);
      const wake = this.#wake;
      this.#wake = null;
      wake?.();
    });
  }

  /** The next connection; rejects once closed. */
  async accept(): Promise<net.Socket> {
    while (this.#queue.length === 0) {
      if (this.#closed) throw new Error("listener closed");
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    return this.#queue.shift()!;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.server.close();
    for (const s of this.#queue.splice(0)) s.destroy();
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** Listens with `node:net` on a free port of `min`-`max` (random start, each port tried once). */
export async function listenNodeInRange(
  options: { hostname: string; min: number; max: number; accept?: (port: number) => boolean },
): Promise<NodeListener | null> {
  const count = options.max - options.min + 1;
  const start = Math.floor(Math.random() * count);
  for (let i = 0; i < count; i++) {
    const port = options.min + ((start + i) % count);
    if (options.accept && !options.accept(port)) continue;
    const server = net.createServer({ pauseOnConnect: false });
    const bound = await new Promise<boolean>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) => {
        if (e.code === "EADDRINUSE" || e.code === "EACCES") resolve(false);
        else reject(e);
      });
      server.listen({ host: options.hostname, port, exclusive: true }, () => resolve(true));
    });
    if (bound) return new NodeListener(server, port);
    closeQuietly(server);
  }
  return null;
}
