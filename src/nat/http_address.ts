/**
 * `public_address: { from: http, url: ... }`: the public address as a
 * "what is my IP" web service reports it. One GET per lookup, a bounded
 * body, plain text or JSON; {@linkcode PublicAddress} runs the lookups on
 * its schedule and keeps the last good address when one fails.
 *
 * @module
 */

import ipaddr from "ipaddr.js";
import { normalizeAddress } from "./announce.ts";
import type { Resolver } from "./public_address.ts";

/** How {@linkcode PublicAddress} names this source in logs and the status snapshot. */
export const HTTP_SOURCE_LABEL = "HTTP";

/** Give up on one request (redirects and body included) after this long by default. */
export const DEFAULT_HTTP_TIMEOUT_MS = 8_000;

/** An address needs a few dozen bytes; a longer body is refused unread. */
export const MAX_BODY_BYTES = 4096;

/** Redirects followed by default before giving up. */
const MAX_REDIRECTS = 3;

/** JSON keys that hold the address in common services' answers, in the order tried. */
export const JSON_ADDRESS_KEYS = ["ip", "address", "ipAddress", "ip_addr", "origin", "query"];

/** Characters of a refused body quoted in the error. */
const PREVIEW_CHARS = 60;

/** Options of {@linkcode httpAddressResolver}. */
export interface HttpAddressOptions {
  /** Give up after this long; default {@linkcode DEFAULT_HTTP_TIMEOUT_MS}. */
  timeoutMs?: number;
  /** Refuse a longer body; default {@linkcode MAX_BODY_BYTES}. */
  maxBytes?: number;
  /** Redirects to follow (http and https only); default 3. */
  maxRedirects?: number;
}

/**
 * Whether `text` is a URL `from: http` can fetch: http:// or https://, a
 * host, and no `user:password@` (it would end up in logs and the status page).
 */
export function isAddressUrl(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "" &&
    url.username === "" && url.password === "" && /^https?:\/\//i.test(text.trim());
}

/** The text as an IP address (normalized), or null. Zone ids and legacy IPv4 forms are refused. */
function asAddress(text: string): string | null {
  const t = text.trim();
  if (t.includes("%")) return null;
  if (!ipaddr.IPv4.isValidFourPartDecimal(t) && !ipaddr.IPv6.isValid(t)) return null;
  return normalizeAddress(t);
}

/**
 * The address in a response body, or null: plain text (an address with
 * surrounding whitespace), a JSON string, or a JSON object with one of
 * {@linkcode JSON_ADDRESS_KEYS} (for `origin`, the first of a comma-separated list).
 */
export function addressFromBody(text: string): string | null {
  const t = text.trim();
  if (!t.startsWith("{") && !t.startsWith('"')) return asAddress(t);
  let value: unknown;
  try {
    value = JSON.parse(t);
  } catch {
    return null;
  }
  if (typeof value === "string") return asAddress(value);
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const fields = value as Record<string, unknown>;
  for (const key of JSON_ADDRESS_KEYS) {
    const v = fields[key];
    if (typeof v !== "string") continue;
    const address = asAddress(key === "origin" ? v.split(",")[0] : v);
    if (address !== null) return address;
  }
  return null;
}

/** The start of a refused body, quoted on one line. */
function preview(text: string): string {
  const t = text.trim();
  return JSON.stringify(t.slice(0, PREVIEW_CHARS)) + (t.length > PREVIEW_CHARS ? "..." : "");
}

/**
 * A fetch failure in plain words. Deno's text is "error sending request for
 * url (URL): client error (Connect): tcp connect error: ..."; the URL is
 * named once already.
 */
function fetchFailure(url: URL, err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const raw = cause instanceof Error ? cause.message : String(cause);
  if (/connection refused/i.test(raw)) {
    return `nothing accepts connections on ${url.host}`;
  }
  if (/dns error|failed to lookup address/i.test(raw)) {
    return `its host name ${url.hostname} does not resolve`;
  }
  return raw.replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \([^)]*\): /, "");
}

/** Reads at most `maxBytes` of the body; more is an error, and the rest is never read. */
async function readCapped(res: Response, where: string, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`${where} body is ${declared} bytes; an address needs at most ${maxBytes}`);
  }
  const out = new Uint8Array(maxBytes);
  let length = 0;
  if (res.body === null) return out.subarray(0, 0);
  const reader = res.body.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      if (length + value.length > maxBytes) {
        throw new Error(`${where} body is longer than ${maxBytes} bytes: not an IP address`);
      }
      out.set(value, length);
      length += value.length;
    }
  } catch (e) {
    await reader.cancel().catch(() => {});
    throw e;
  } finally {
    reader.releaseLock();
  }
  return out.subarray(0, length);
}

/**
 * GETs `url`, following at most `maxRedirects` redirects to http(s) URLs.
 * Returns the final response (its body unread) and where it came from.
 */
async function getFollowing(
  url: URL,
  options: { signal: AbortSignal; client: Deno.HttpClient; maxRedirects: number },
): Promise<{ res: Response; where: string }> {
  let current = url;
  for (let hop = 0;; hop++) {
    const where = current === url ? url.href : `${url.href} (redirected to ${current.href})`;
    let res: Response;
    try {
      res = await fetch(current, {
        redirect: "manual",
        signal: options.signal,
        client: options.client,
        headers: { accept: "text/plain, application/json;q=0.9, */*;q=0.1" },
      });
    } catch (e) {
      if (options.signal.aborted) throw e;
      throw new Error(`${where} cannot be reached: ${fetchFailure(current, e)}`);
    }
    const location = res.headers.get("location");
    if (res.status < 300 || res.status > 399 || location === null) return { res, where };
    await res.body?.cancel().catch(() => {});
    if (hop >= options.maxRedirects) {
      throw new Error(`${url.href} redirects more than ${options.maxRedirects} times`);
    }
    let next: URL;
    try {
      next = new URL(location, current);
    } catch {
      throw new Error(`${where} redirects to ${preview(location)}, which is not a URL`);
    }
    if (next.protocol !== "http:" && next.protocol !== "https:") {
      throw new Error(
        `${where} redirects to ${preview(next.href)}, which is not an http:// or https:// URL`,
      );
    }
    current = next;
  }
}

/**
 * One lookup: GET the URL and return the address its body holds, of the
 * family `type` asks for.
 *
 * @throws {Error} naming the URL and what was wrong: no connection, a
 * non-2xx status, a body that is too long, not text or not an IP address,
 * an address of the other family, no answer in time; or `signal`'s reason
 * when the caller aborted.
 */
async function fetchAddress(
  url: URL,
  options: {
    type: "A" | "AAAA";
    signal?: AbortSignal;
    timeoutMs: number;
    maxBytes: number;
    maxRedirects: number;
  },
): Promise<string[]> {
  const outer = options.signal;
  if (outer?.aborted) throw outer.reason;
  const abort = new AbortController();
  const onAbort = () => abort.abort(outer?.reason);
  outer?.addEventListener("abort", onAbort, { once: true });
  // Deno returns a number; the Node typings that may be in scope say Timeout.
  const timer = Number(setTimeout(() => {
    abort.abort(new Error(`${url.href} gave no answer within ${options.timeoutMs} ms`));
  }, options.timeoutMs));
  Deno.unrefTimer(timer);
  // No idle connections: each lookup connects afresh, so a changed route or
  // source address (the very event being watched for) never meets a stale socket.
  const client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
  try {
    const { res, where } = await getFollowing(url, {
      signal: abort.signal,
      client,
      maxRedirects: options.maxRedirects,
    });
    if (res.status < 200 || res.status > 299) {
      await res.body?.cancel().catch(() => {});
      throw new Error(
        `${where} answered ${res.status}${res.statusText ? ` ${res.statusText}` : ""}`,
      );
    }
    const bytes = await readCapped(res, where, options.maxBytes);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      throw new Error(`${where} body is not text (not UTF-8)`);
    }
    if (text.trim() === "") throw new Error(`${where} body is empty, not an IP address`);
    const address = addressFromBody(text);
    if (address === null) throw new Error(`${where} body is not an IP address: ${preview(text)}`);
    const isV6 = address.includes(":");
    if (isV6 !== (options.type === "AAAA")) {
      throw new Error(
        isV6
          ? `${where} answered ${address}, an IPv6 address, but IPv4 is wanted ` +
            `(public_address.ipv6 is false)`
          : `${where} answered ${address}, an IPv4 address, but IPv6 is wanted ` +
            `(public_address.ipv6 is true: use a URL that is reached over IPv6)`,
      );
    }
    return [address];
  } catch (e) {
    // A timeout or the caller's abort: its reason, not fetch's AbortError.
    if (abort.signal.aborted) throw abort.signal.reason;
    throw e;
  } finally {
    clearTimeout(timer);
    outer?.removeEventListener("abort", onAbort);
    client.close();
  }
}

/**
 * A {@linkcode Resolver} for {@linkcode PublicAddress} that ignores the name
 * and fetches `url` instead: the service's answer is the public address.
 *
 * @throws {TypeError} when `url` is not one {@linkcode isAddressUrl} accepts.
 */
export function httpAddressResolver(url: string, options: HttpAddressOptions = {}): Resolver {
  if (!isAddressUrl(url)) {
    throw new TypeError(`public address: "${url}" is not an http:// or https:// URL`);
  }
  const target = new URL(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_HTTP_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new RangeError(`public address: timeoutMs must be positive (got ${timeoutMs})`);
  }
  const maxBytes = options.maxBytes ?? MAX_BODY_BYTES;
  const maxRedirects = options.maxRedirects ?? MAX_REDIRECTS;
  return (_name, type, opts) =>
    fetchAddress(target, { type, signal: opts.signal, timeoutMs, maxBytes, maxRedirects });
}
