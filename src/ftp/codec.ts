/**
 * The FTP wire codec: command lines in, replies out, and the encodings of
 * data-connection addresses (PORT, EPRT, PASV, EPSV). Pure functions only.
 * @module
 */
import { addressFamily } from "./connection.ts";

/** A parsed command line: upper-cased verb and the raw argument. */
export interface Command {
  verb: string;
  arg: string;
}

/** Splits a command line (without CRLF) into verb and argument. */
export function parseCommand(line: string): Command {
  const trimmed = line.replace(/^[ \t]+/, "");
  const space = trimmed.indexOf(" ");
  if (space < 0) return { verb: trimmed.toUpperCase(), arg: "" };
  return { verb: trimmed.slice(0, space).toUpperCase(), arg: trimmed.slice(space + 1) };
}

/**
 * Formats a reply. A multi-line text becomes the RFC 959 multi-line form
 * (`123-first`, ..., `123 last`); a text line that would look like an end
 * line is indented by one space.
 */
export function formatReply(code: number, text: string | readonly string[]): string {
  const lines = (typeof text === "string" ? text.split("\n") : [...text]).map((l) =>
    l.replace(/[\r\n]/g, " ")
  );
  if (lines.length === 1) return `${code} ${lines[0]}\r\n`;
  let out = `${code}-${lines[0]}\r\n`;
  for (let i = 1; i < lines.length - 1; i++) {
    const l = lines[i];
    out += (/^\d{3}/.test(l) ? " " : "") + l + "\r\n";
  }
  return out + `${code} ${lines[lines.length - 1]}\r\n`;
}

/** A host and port, as written in PORT/EPRT or announced by PASV/EPSV. */
export interface HostPort {
  host: string;
  port: number;
}

/** Parses the argument of PORT (`h1,h2,h3,h4,p1,p2`); null when malformed. */
export function parsePort(arg: string): HostPort | null {
  const parts = arg.trim().split(",");
  if (parts.length !== 6) return null;
  const nums: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p.trim())) return null;
    const n = Number(p.trim());
    if (n > 255) return null;
    nums.push(n);
  }
  const port = nums[4] * 256 + nums[5];
  if (port === 0) return null;
  return { host: nums.slice(0, 4).join("."), port };
}

/** Encodes an IPv4 host and port as in a 227 reply or PORT: `h1,h2,h3,h4,p1,p2`. */
export function encodeHostPort(hp: HostPort): string {
  const octets = hp.host.split(".");
  if (octets.length !== 4 || octets.some((o) => !/^\d{1,3}$/.test(o) || Number(o) > 255)) {
    throw new RangeError(`not an IPv4 address: ${hp.host}`);
  }
  return `${octets.join(",")},${hp.port >> 8},${hp.port & 255}`;
}

/** The 227 reply text in the exact form clients and middleboxes parse. */
export function pasvReplyText(hp: HostPort): string {
  return `Entering Passive Mode (${encodeHostPort(hp)}).`;
}

/** Parses a 227 reply text; null when it has no `(h1,...,p2)` group. */
export function parsePasvReply(text: string): HostPort | null {
  const m = /(\d{1,3}(?:,\d{1,3}){5})/.exec(text);
  return m ? parsePort(m[1]) : null;
}

/** The 229 reply text: `Entering Extended Passive Mode (|||port|)`. */
export function epsvReplyText(port: number): string {
  return `Entering Extended Passive Mode (|||${port}|)`;
}

/** Parses a 229 reply text; null when malformed. */
export function parseEpsvReply(text: string): number | null {
  const m = /\((.)\1\1(\d{1,5})\1\)/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? port : null;
}

/** Result of parsing EPRT: the address family (1 = IPv4, 2 = IPv6) too. */
export interface EprtArg extends HostPort {
  family: 1 | 2;
}

/**
 * Parses the argument of EPRT (`|1|132.235.1.2|6275|`, any delimiter in
 * 33-126). Returns `"family"` for an unsupported address family (the
 * caller answers 522) and null when malformed.
 */
export function parseEprt(arg: string): EprtArg | "family" | null {
  const s = arg.trim();
  if (s.length < 7) return null;
  const d = s[0];
  const code = d.charCodeAt(0);
  if (code < 33 || code > 126) return null;
  const parts = s.split(d);
  if (parts.length !== 5 || parts[0] !== "" || parts[4] !== "") return null;
  const [, fam, host, portText] = parts;
  if (fam !== "1" && fam !== "2") return /^\d+$/.test(fam) ? "family" : null;
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port < 1 || port > 65535) return null;
  if (fam === "1") {
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.split(".").some((o) => Number(o) > 255)) {
      return null;
    }
    return { family: 1, host, port };
  }
  if (!/^[0-9a-fA-F:.]+$/.test(host) || !host.includes(":")) return null;
  return { family: 2, host, port };
}

/** Encodes an EPRT argument for a host and port. */
export function encodeEprt(hp: HostPort): string {
  return `|${addressFamily(hp.host)}|${hp.host}|${hp.port}|`;
}

/** Parses the argument of EPSV: empty, `ALL`, or a family number. */
export function parseEpsvArg(arg: string): "all" | "any" | 1 | 2 | "family" | null {
  const a = arg.trim().toUpperCase();
  if (a === "") return "any";
  if (a === "ALL") return "all";
  if (a === "1") return 1;
  if (a === "2") return 2;
  if (/^\d+$/.test(a)) return "family";
  return null;
}

const IAC = 255;
const SB = 250;
const SE = 240;
const WILL = 251;
const DONT = 254;
const IP = 244;
const DM = 242;

/**
 * Removes Telnet commands from control-connection bytes (RFC 854): IAC IAC
 * stays as one 255 byte, option negotiations (IAC WILL/WONT/DO/DONT x) and
 * subnegotiations are dropped, as are two-byte commands such as IAC IP and
 * IAC DM that precede an urgent ABOR, and a DM right after IAC IP. Returns the same array when there is no
 * IAC byte, so the common case costs one scan.
 */
export function stripTelnet(bytes: Uint8Array): Uint8Array {
  if (bytes.indexOf(IAC) < 0) return bytes;
  const out = new Uint8Array(bytes.length);
  let o = 0;
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b !== IAC) {
      out[o++] = b;
      i++;
      continue;
    }
    const next = bytes[i + 1];
    if (next === undefined) break;
    if (next === IAC) {
      out[o++] = IAC;
      i += 2;
    } else if (next >= WILL && next <= DONT) {
      i += 3;
    } else if (next === SB) {
      const end = bytes.indexOf(SE, i + 2);
      i = end < 0 ? bytes.length : end + 1;
    } else if (next >= SE) {
      i += 2;
      // IAC IP then a bare DM: BSD-style clients send the Synch's IAC as
      // the urgent byte, which the kernel removes, leaving DM in band.
      if (next === IP && bytes[i] === DM) i++;
    } else {
      // A lone IAC before an ordinary byte: the urgent byte (IAC DM's DM)
      // was taken out of band, so drop only the IAC.
      i += 1;
    }
  }
  return out.subarray(0, o);
}

/** Reads the 3-digit code of a reply line; null when it is not one. */
export function replyCode(line: string): number | null {
  const m = /^(\d{3})[ -]/.exec(line);
  return m ? Number(m[1]) : null;
}
