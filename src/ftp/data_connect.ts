/**
 * How a data connection opens, once setup (data_setup.ts) has decided how:
 * accepting on a passive listener, only from the control connection's
 * peer, or connecting back for active mode; on Deno's native sockets for
 * plain sessions, on `node:net` (and `node:tls` under PROT P) for sessions
 * whose control connection is TLS.
 * @module
 */
import * as net from "node:net";
import { normalizeAddress } from "../nat/announce.ts";
import { closeQuietly, type Connection, TIMED_OUT, withTimeout } from "./connection.ts";
import { NodeConnection, type NodeListener, tlsHandshake, type TlsIdentity } from "./tls.ts";
import { DataError } from "./transfer_io.ts";

/**
 * A data connection made at the TCP level; `ready` resolves once it can
 * carry data (after the TLS handshake under PROT P). The two are apart
 * because some clients (Python's ftplib) start TLS only after the 150.
 */
export interface MadeConnection {
  ready: Promise<Connection>;
}

/**
 * Accepts the data connection on a passive listener, but only from the
 * control connection's peer address; a connection from anywhere else is
 * closed and reported through `onStranger`, and the wait goes on, so a
 * stranger cannot take or abort a user's transfer. Closes the listener when
 * done, unless `keepOpen` and the peer connected (the caller then owns it).
 * Returns null on timeout or when the listener is closed meanwhile.
 */
export async function acceptFromPeer(
  listener: Deno.TcpListener,
  options: {
    peer: string;
    timeoutMs: number;
    onStranger?: (addr: string) => void;
    keepOpen?: boolean;
  },
): Promise<Deno.TcpConn | null> {
  const deadline = Date.now() + options.timeoutMs;
  let keep = false;
  try {
    while (true) {
      let result: Deno.TcpConn | typeof TIMED_OUT;
      try {
        result = await withTimeout(listener.accept(), deadline - Date.now());
      } catch {
        return null; // listener closed (PASV replaced, ABOR, session end)
      }
      if (result === TIMED_OUT) return null;
      const host = result.remoteAddr.hostname;
      // SECURITY: the data connection must come from the control connection's
      // peer. The listener reports the address in the form the control
      // connection did, so the exact text usually matches without parsing.
      if (host === options.peer || normalizeAddress(host) === normalizeAddress(options.peer)) {
        keep = options.keepOpen === true;
        return result;
      }
      options.onStranger?.(`${host}:${result.remoteAddr.port}`);
      closeQuietly(result);
    }
  } finally {
    if (!keep) closeQuietly(listener);
  }
}

/** Connects back to a client for active mode, within a timeout. */
export async function connectActive(
  target: { host: string; port: number },
  options: { timeoutMs: number },
): Promise<Deno.TcpConn> {
  const attempt = Deno.connect({ hostname: target.host, port: target.port });
  let result: Deno.TcpConn | typeof TIMED_OUT;
  try {
    result = await withTimeout(attempt, options.timeoutMs);
  } catch (e) {
    throw new DataError(425, `Can't open data connection: ${(e as Error).message}`);
  }
  if (result === TIMED_OUT) {
    attempt.then(closeQuietly, () => {});
    throw new DataError(425, "Can't open data connection: timed out");
  }
  return result;
}

/**
 * {@linkcode acceptFromPeer} for a `node:net` listener (sessions whose
 * control connection is TLS); with `tls`, the handshake is made before the
 * connection is handed on, so no byte of data moves in clear.
 */
export async function acceptNodeFromPeer(
  listener: NodeListener,
  options: {
    peer: string;
    timeoutMs: number;
    onStranger?: (addr: string) => void;
    tls: TlsIdentity["context"] | null;
  },
): Promise<MadeConnection | null> {
  const deadline = Date.now() + options.timeoutMs;
  try {
    while (true) {
      let socket: net.Socket | typeof TIMED_OUT;
      try {
        socket = await withTimeout(listener.accept(), deadline - Date.now());
      } catch {
        return null;
      }
      if (socket === TIMED_OUT) return null;
      const host = socket.remoteAddress ?? "";
      // SECURITY: only the control connection's peer may connect.
      if (host !== "" && normalizeAddress(host) === options.peer) {
        return made(socket, { tls: options.tls, timeoutMs: options.timeoutMs });
      }
      options.onStranger?.(`${host}:${socket.remotePort}`);
      socket.destroy();
    }
  } finally {
    listener.close();
  }
}

/** {@linkcode connectActive} over `node:net`, with the TLS handshake (we are its server) under PROT P. */
export async function connectNode(
  target: { host: string; port: number },
  options: { timeoutMs: number; tls: TlsIdentity["context"] | null },
): Promise<MadeConnection> {
  const socket = net.connect({ host: target.host, port: target.port });
  const connected = new Promise<void>((resolve, reject) => {
    socket.once("connect", () => resolve());
    socket.once("error", reject);
  });
  let result: void | typeof TIMED_OUT;
  try {
    result = await withTimeout(connected, options.timeoutMs);
  } catch (e) {
    socket.destroy();
    throw new DataError(425, `Can't open data connection: ${(e as Error).message}`);
  }
  if (result === TIMED_OUT) {
    socket.destroy();
    throw new DataError(425, "Can't open data connection: timed out");
  }
  return made(socket, options);
}

/**
 * A connected socket as a {@linkcode MadeConnection}: plain at once, or
 * with the TLS handshake (we are its server) started now and awaited later.
 */
function made(
  socket: net.Socket,
  options: { tls: TlsIdentity["context"] | null; timeoutMs: number },
): MadeConnection {
  if (!options.tls) return { ready: Promise.resolve(new NodeConnection(socket)) };
  const ready = tlsHandshake(socket, { context: options.tls, timeoutMs: options.timeoutMs });
  ready.catch(() => {}); // awaited by open(), or dropped with the plan
  return { ready };
}
