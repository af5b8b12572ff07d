/**
 * The status listener: the page (`/`, and `/fragment` for its live
 * updates), `/status` (JSON), `/metrics` (Prometheus) and `/health` (for
 * uptime monitors). Read-only: GET and HEAD only. Loopback peers need no
 * password; others must log in with one of `status.users` (HTTP Basic).
 * @module
 */
import { verifyPassword } from "../auth/password.ts";
import { normalizeAddress } from "../nat/announce.ts";
import { renderFragment, renderPage } from "./page.ts";
import { metricsText, type StatusSnapshot } from "./status.ts";

/** A status user: a name and a password hash from `pitifulnat hash-password`. */
export interface StatusUser {
  name: string;
  password: string;
}

/** What `/health` answers: 200 with `ok`, else 503 with why. */
export interface Health {
  ok: boolean;
  text: string;
}

/** What the listener serves from. */
export interface StatusHandlers {
  snapshot: () => StatusSnapshot;
  health: () => Promise<Health>;
}

const SECURITY_HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  // The page's own inline style and script; nothing from anywhere else.
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; " +
    "script-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; " +
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

/** Whether a request comes from this machine: loopback, or the listener's own address. */
function fromThisMachine(peer: string, listen: string): boolean {
  const p = normalizeAddress(peer);
  return p === "::1" || p.startsWith("127.") || p === normalizeAddress(listen);
}

/** Whether the `Authorization: Basic` header names a status user with the right password. */
async function authorized(header: string | null, users: readonly StatusUser[]): Promise<boolean> {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header ?? "");
  if (!match) return false;
  let decoded: string;
  try {
    decoded = new TextDecoder().decode(Uint8Array.from(atob(match[1]), (c) => c.charCodeAt(0)));
  } catch {
    return false;
  }
  const colon = decoded.indexOf(":");
  if (colon < 0) return false;
  const user = users.find((u) => u.name === decoded.slice(0, colon));
  // An unknown name costs a hash too, so timing does not tell names apart.
  const hash = user?.password ?? users[0]?.password ?? "";
  const ok = hash !== "" && await verifyPassword(decoded.slice(colon + 1), hash);
  return ok && user !== undefined;
}

/** A response with the security headers and a type. */
function respond(body: string, status: number, type: string, head: boolean): Response {
  return new Response(head ? null : body, {
    status,
    headers: { ...SECURITY_HEADERS, "content-type": type },
  });
}

/** Answers one request (exported for tests). */
export async function handleStatusRequest(
  req: Request,
  peer: string,
  options: { listen: string; users: () => readonly StatusUser[]; handlers: StatusHandlers },
): Promise<Response> {
  const head = req.method === "HEAD";
  if (req.method !== "GET" && !head) {
    return new Response("read-only: GET and HEAD only\n", {
      status: 405,
      headers: { ...SECURITY_HEADERS, allow: "GET, HEAD", "content-type": "text/plain" },
    });
  }
  if (!fromThisMachine(peer, options.listen)) {
    if (!await authorized(req.headers.get("authorization"), options.users())) {
      return new Response("log in with a status user (status.users)\n", {
        status: 401,
        headers: {
          ...SECURITY_HEADERS,
          "www-authenticate": 'Basic realm="pitifulnat status", charset="UTF-8"',
          "content-type": "text/plain",
        },
      });
    }
  }
  const { handlers } = options;
  switch (new URL(req.url).pathname) {
    case "/":
      return respond(renderPage(handlers.snapshot()), 200, "text/html; charset=utf-8", head);
    case "/fragment":
      return respond(renderFragment(handlers.snapshot()), 200, "text/html; charset=utf-8", head);
    case "/status":
      return respond(
        JSON.stringify(handlers.snapshot()),
        200,
        "application/json",
        head,
      );
    case "/metrics":
      return respond(metricsText(handlers.snapshot()), 200, "text/plain; version=0.0.4", head);
    case "/health": {
      const h = await handlers.health();
      return respond(h.text + "\n", h.ok ? 200 : 503, "text/plain; charset=utf-8", head);
    }
    default:
      return respond("not found\n", 404, "text/plain", head);
  }
}

/** Serves the status listener; throws when it cannot be bound. */
export function serveStatus(
  listen: { address: string; port: number },
  options: { users: () => readonly StatusUser[]; handlers: StatusHandlers },
): Deno.HttpServer {
  return Deno.serve({
    hostname: listen.address,
    port: listen.port,
    onListen: () => {},
  }, (req, info) =>
    handleStatusRequest(req, (info.remoteAddr as Deno.NetAddr).hostname, {
      listen: listen.address,
      ...options,
    }));
}
