/**
 * The proxy's understanding of the control channel, kept pure: which client
 * commands it must handle itself (the ones that carry addresses, and the
 * ones it cannot relay), how upstream reply lines group into replies, and
 * the few reply edits it makes. No sockets here.
 * @module
 */
import { replyCode } from "../ftp/codec.ts";

/** What the proxy does with one client command. */
export type CommandAction =
  /** PASV: open a passive listener of our own, answer 227 ourselves. */
  | "pasv"
  /** EPSV (and EPSV ALL): as PASV, answered 229. */
  | "epsv"
  /** PORT / EPRT: remember where to connect, answer 200 ourselves. */
  | "port"
  | "eprt"
  /** A command that moves data: set up both data connections and relay. */
  | "transfer"
  /** ABOR: forward it and close the data relay at once. */
  | "abort"
  /** REST: forward it, and repeat it right before the next transfer command. */
  | "rest"
  /** A command the proxy cannot relay safely: answered 502 by the proxy. */
  | "refuse"
  /** Everything else: relayed unchanged. */
  | "forward";

/** Which way a transfer command moves bytes. */
export type TransferDirection = "download" | "upload";

/** Transfer commands and the direction of their data. */
export const TRANSFER_COMMANDS: ReadonlyMap<string, TransferDirection> = new Map([
  ["RETR", "download"],
  ["LIST", "download"],
  ["NLST", "download"],
  ["MLSD", "download"],
  ["STOR", "upload"],
  ["APPE", "upload"],
  ["STOU", "upload"],
]);

/**
 * Commands refused by the proxy, with the reason the client is told.
 * AUTH would encrypt the control channel, which the proxy must read to fix
 * addresses; LPRT/LPSV (RFC 1639) carry addresses the proxy does not rewrite,
 * so relaying them would let the upstream hand out its own unreachable ones.
 */
export const REFUSED_COMMANDS: ReadonlyMap<string, string> = new Map([
  [
    "AUTH",
    "AUTH not available through this proxy: it must read the control channel to fix " +
    "data-connection addresses, and cannot read an encrypted one",
  ],
  ["LPRT", "LPRT not available through this proxy; use PORT or EPRT"],
  ["LPSV", "LPSV not available through this proxy; use PASV or EPSV"],
]);

/** Decides what the proxy does with a command verb (already upper-cased). */
export function classifyCommand(verb: string): CommandAction {
  if (TRANSFER_COMMANDS.has(verb)) return "transfer";
  if (REFUSED_COMMANDS.has(verb)) return "refuse";
  switch (verb) {
    case "PASV":
      return "pasv";
    case "EPSV":
      return "epsv";
    case "PORT":
      return "port";
    case "EPRT":
      return "eprt";
    case "ABOR":
      return "abort";
    case "REST":
      return "rest";
    default:
      return "forward";
  }
}

/** One complete reply from the upstream server, lines as received. */
export interface Reply {
  /** The reply code; 1xx replies are preliminary. */
  code: number;
  /** Every line without its CRLF, the first and last carrying the code. */
  lines: string[];
}

/** True for a preliminary (1xx) reply, after which another reply follows. */
export function isPreliminary(reply: Reply): boolean {
  return reply.code >= 100 && reply.code < 200;
}

/** The reply's text (lines joined by LF), for parsing 227/229. */
export function replyText(reply: Reply): string {
  return reply.lines.join("\n");
}

/** The reply as it goes on the wire to the client: unchanged lines, CRLF. */
export function replyWire(reply: Reply): string {
  return reply.lines.map((l) => l + "\r\n").join("");
}

/** A line that does not fit the reply grammar, outside a multi-line reply. */
export class ReplyError extends Error {}

/**
 * Groups upstream lines into replies (RFC 959 4.2): a line `123-text`
 * opens a multi-line reply that ends at the next line starting `123 `;
 * lines between are kept as they are, whatever they start with. At most
 * `maxLines` lines are gathered, so a server that never ends a reply
 * cannot make the proxy hold unbounded memory.
 */
export class ReplyAssembler {
  #open: Reply | null = null;
  readonly #maxLines: number;

  constructor(options: { maxLines?: number } = {}) {
    this.#maxLines = options.maxLines ?? 10_000;
  }

  /** True while a multi-line reply has been opened but not ended. */
  get inside(): boolean {
    return this.#open !== null;
  }

  /**
   * Takes one line; returns the reply it completes, or null.
   * @throws {ReplyError} for a line that is not a reply line, or a reply
   * longer than the line limit.
   */
  push(line: string): Reply | null {
    const open = this.#open;
    if (open) {
      open.lines.push(line);
      if (line.startsWith(`${open.code} `) || line === String(open.code)) {
        this.#open = null;
        return open;
      }
      if (open.lines.length >= this.#maxLines) {
        this.#open = null;
        throw new ReplyError(`multi-line reply ${open.code} longer than ${this.#maxLines} lines`);
      }
      return null;
    }
    const code = replyCode(line + " ");
    if (code === null || code < 100 || code > 599) {
      throw new ReplyError(`not a reply line: ${JSON.stringify(line.slice(0, 80))}`);
    }
    if (line[3] === "-") {
      this.#open = { code, lines: [line] };
      return null;
    }
    return { code, lines: [line] };
  }
}

/**
 * The FEAT reply without the features the proxy refuses or cannot offer
 * through itself (AUTH, and PBSZ/PROT that only make sense after it), so
 * that clients do not try them.
 */
export function filterFeatReply(reply: Reply): Reply {
  if (reply.code !== 211 || reply.lines.length < 3) return reply;
  const inner = reply.lines.slice(1, -1).filter((l) =>
    !/^\s*(AUTH|PBSZ|PROT|LPRT|LPSV)\b/i.test(l)
  );
  return { code: reply.code, lines: [reply.lines[0], ...inner, reply.lines.at(-1)!] };
}

/**
 * How a transfer's final reply reaches the client, given how the relay
 * ended. The upstream's reply goes through unchanged unless it claims
 * success for a transfer whose relay broke or stalled (the upstream cannot
 * know that the client did not get, or send, every byte). After an ABOR the
 * upstream's word stands: a transfer may have completed before it.
 */
export function finalReplyFor(
  upstream: Reply,
  relay: "ok" | "client-failed" | "upstream-failed" | "aborted" | "stalled",
): Reply | { code: number; text: string } {
  const success = upstream.code >= 200 && upstream.code < 300;
  if (!success || relay === "ok" || relay === "aborted") return upstream;
  if (relay === "stalled") {
    return { code: 426, text: "Data connection timed out; transfer aborted" };
  }
  return { code: 426, text: "Connection closed; transfer aborted" };
}
