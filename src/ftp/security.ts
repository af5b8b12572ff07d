/**
 * The FTPS commands (RFC 4217) for serve and proxy alike: AUTH TLS (and
 * its alias AUTH SSL), PBSZ, PROT and CCC, and the rule that refuses a
 * plain login to a client that must use TLS.
 * @module
 */
import type { SessionBase } from "./session_base.ts";

type Session = SessionBase;

/** The FEAT lines a server with `tls` adds. */
export const TLS_FEATURES: readonly string[] = ["AUTH TLS", "PBSZ", "PROT"];

/** The 530 for USER/PASS from a client that must use TLS and has not. */
export function refuseIfPlain(s: Session): Promise<void> | null {
  if (s.secure || !s.tlsRequired) return null;
  return s.reply(530, "TLS required: send AUTH TLS first");
}

/** AUTH TLS | SSL: the control connection turns TLS after the 234. */
export async function auth(s: Session, arg: string) {
  if (!s.deps.tls) return s.reply(502, "AUTH not available: TLS is not configured on this server");
  const mechanism = arg.trim().toUpperCase();
  if (!["TLS", "SSL", "TLS-C", "TLS-P"].includes(mechanism)) {
    return s.reply(504, `AUTH ${mechanism.slice(0, 16)} not supported; use AUTH TLS`);
  }
  if (s.secure) return s.reply(503, "Already using TLS");
  if (!await s.startTls()) return;
  // AUTH TLS-P (and SSL, by old convention) also protect data.
  if (mechanism === "TLS-P" || mechanism === "SSL") s.pbsz = s.protectData = true;
}

/** PBSZ 0: the only buffer size TLS needs. */
export function pbsz(s: Session, arg: string) {
  if (!s.secure) return s.reply(503, "PBSZ needs AUTH TLS first");
  if (!/^\d{1,10}$/.test(arg.trim())) return s.reply(501, "PBSZ needs a number");
  s.pbsz = true;
  return s.reply(200, "PBSZ=0");
}

/** PROT P | C: whether data connections are TLS. */
export function prot(s: Session, arg: string) {
  if (!s.secure) return s.reply(503, "PROT needs AUTH TLS first");
  if (!s.pbsz) return s.reply(503, "PROT needs PBSZ 0 first");
  const level = arg.trim().toUpperCase();
  if (level === "P") {
    s.protectData = true;
    return s.reply(200, "Protection level set to Private: data connections are TLS");
  }
  if (level === "C") {
    s.protectData = false;
    return s.reply(200, "Protection level set to Clear");
  }
  if (level === "S" || level === "E") return s.reply(536, `PROT ${level} not supported; use P`);
  return s.reply(504, "PROT takes P or C");
}

/**
 * CCC is refused: it clears the control channel so that a router's FTP
 * helper can read PASV again. pitifulnat announces the right address
 * itself, so the control connection stays encrypted.
 */
export function ccc(s: Session) {
  if (!s.secure) return s.reply(533, "CCC needs a TLS control connection");
  return s.reply(
    534,
    "CCC refused: the control connection stays encrypted (no router help needed)",
  );
}
