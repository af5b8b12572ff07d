/**
 * The proxy's control connection to the upstream FTP server: connecting
 * within a time limit, reading its replies in order, and matching each
 * reply to the command it answers.
 *
 * Commands can be in flight while a transfer runs (ABOR, STAT, NOOP); the
 * upstream answers in order, so a FIFO of expectations is enough to know
 * which reply belongs to which command.
 * @module
 */
import { closeQuietly, TIMED_OUT, withTimeout, writeAll } from "../ftp/connection.ts";
import { type ControlLine, readLines } from "../ftp/line_reader.ts";
import { isPreliminary, type Reply, ReplyAssembler, ReplyError } from "./protocol.ts";

/** Longest upstream reply line the proxy reads (bytes). */
const MAX_UPSTREAM_LINE = 65_536;

/** The upstream could not be reached, or did not greet in time. */
export class UpstreamError extends Error {}

/** What happens to the replies to one command sent upstream. */
export interface Expectation {
  /**
   * Called for each reply, preliminary ones included; `final` is true for
   * the reply that completes the command. Replies are handled one at a
   * time: the next is not read until this settles.
   */
  onReply(reply: Reply, final: boolean): Promise<void> | void;
  /** Called instead when the connection ends before the final reply. */
  onLost?(): void;
}

/** Why the reply loop stopped. */
export type UpstreamEnd =
  | { kind: "eof" }
  | { kind: "error"; message: string };

const encoder = new TextEncoder();

/**
 * Connects within `timeoutMs` and reads the greeting within the same
 * deadline (a server that accepts and stays silent counts as down).
 * Preliminary greetings (120) are collected and returned with the final one.
 */
export async function connectUpstream(
  target: { host: string; port: number },
  options: { timeoutMs: number },
): Promise<{ control: UpstreamControl; greeting: Reply[] }> {
  const deadline = Date.now() + options.timeoutMs;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), options.timeoutMs);
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname: target.host, port: target.port, signal: ac.signal });
  } catch (e) {
    throw new UpstreamError(
      ac.signal.aborted
        ? `no connection within ${options.timeoutMs / 1000} s`
        : (e as Error).message,
    );
  } finally {
    clearTimeout(timer);
  }
  try {
    conn.setNoDelay(true);
  } catch { /* not fatal */ }
  const control = new UpstreamControl(conn);
  try {
    const greeting: Reply[] = [];
    while (greeting.length < 10) {
      const reply = await control.readReplyBefore(deadline);
      greeting.push(reply);
      if (!isPreliminary(reply)) return { control, greeting };
    }
    throw new UpstreamError("greeting never ended (10 preliminary replies)");
  } catch (e) {
    control.close();
    throw e instanceof UpstreamError ? e : new UpstreamError((e as Error).message);
  }
}

/** A control connection to the upstream server. */
export class UpstreamControl {
  readonly conn: Deno.TcpConn;
  /** The address the control connection reached: data connections go there too. */
  readonly host: string;
  readonly #lines: AsyncGenerator<ControlLine>;
  readonly #assembler = new ReplyAssembler();
  readonly #queue: Expectation[] = [];
  #idle: PromiseWithResolvers<void> | null = null;
  #writes: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
    this.host = (conn.remoteAddr as Deno.NetAddr).hostname;
    this.#lines = readLines(conn, { maxLength: MAX_UPSTREAM_LINE });
  }

  /** Commands sent and not yet completed by a final reply. */
  get pending(): number {
    return this.#queue.length;
  }

  /**
   * Reads one reply before the deadline (only before {@linkcode run}).
   * @throws {UpstreamError} on timeout, EOF or a line that is no reply.
   */
  async readReplyBefore(deadline: number): Promise<Reply> {
    // When the timeout wins, closing the connection rejects the read: withTimeout ignores that.
    const reply = await withTimeout(this.#nextReply(), Math.max(0, deadline - Date.now()));
    if (reply === TIMED_OUT) throw new UpstreamError("connected, but no greeting in time");
    if (reply === null) throw new UpstreamError("closed the connection before greeting");
    return reply;
  }

  /** Reads lines until one reply is complete; null at EOF. */
  async #nextReply(): Promise<Reply | null> {
    while (true) {
      const item = await this.#lines.next();
      if (item.done) return null;
      const line = item.value;
      if (line.kind === "urgent") continue; // Telnet IP from a server means nothing here
      if (line.kind === "line") {
        const reply = this.#assembler.push(line.text);
        if (reply) return reply;
        continue;
      }
      // A line we cannot read: inside a multi-line reply it is left out;
      // on its own it still ends a command, so stand in for it.
      if (this.#assembler.inside) continue;
      const why = line.kind === "too-long" ? "too long" : "not valid UTF-8";
      return { code: 451, lines: [`451 Reply from the FTP server could not be read (${why})`] };
    }
  }

  /**
   * Sends a command line whose replies go to `expect`. The expectation is
   * queued before the bytes leave, so no reply can arrive unmatched.
   */
  send(line: string, expect: Expectation): Promise<void> {
    this.#queue.push(expect);
    return this.#write(line);
  }

  /** Sends a command and resolves with its final reply (preliminary ones are dropped). */
  request(line: string, options: { timeoutMs: number }): Promise<Reply> {
    const { promise, resolve, reject } = Promise.withResolvers<Reply>();
    const timer = setTimeout(() => {
      reject(new UpstreamError(`no reply to ${line.split(" ")[0]} within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    this.send(line, {
      onReply: (reply, final) => {
        if (final) resolve(reply);
      },
      onLost: () => reject(new UpstreamError("connection to the FTP server lost")),
    }).catch(reject);
    return promise.finally(() => clearTimeout(timer));
  }

  #write(line: string): Promise<void> {
    const bytes = encoder.encode(line + "\r\n");
    this.#writes = this.#writes.then(() => {
      if (this.#closed) throw new UpstreamError("connection to the FTP server is closed");
      return writeAll(this.conn, bytes);
    });
    return this.#writes;
  }

  /** Resolves once every command sent so far has had its final reply. */
  idle(): Promise<void> {
    if (this.#queue.length === 0 || this.#closed) return Promise.resolve();
    this.#idle ??= Promise.withResolvers<void>();
    return this.#idle.promise;
  }

  /**
   * Reads replies until the connection ends, handing each to the oldest
   * waiting expectation; a reply nobody waits for (a 421 on timeout) goes
   * to `unsolicited`. Never rejects.
   */
  async run(unsolicited: (reply: Reply) => Promise<void> | void): Promise<UpstreamEnd> {
    let end: UpstreamEnd = { kind: "eof" };
    try {
      while (true) {
        const reply = await this.#nextReply();
        if (reply === null) break;
        const head = this.#queue[0];
        if (!head) {
          await unsolicited(reply);
          continue;
        }
        const final = !isPreliminary(reply);
        if (final) this.#queue.shift();
        await head.onReply(reply, final);
        if (final && this.#queue.length === 0) this.#wakeIdle();
      }
    } catch (e) {
      if (!this.#closed) {
        end = {
          kind: "error",
          message: e instanceof ReplyError ? e.message : (e as Error).message,
        };
      }
    }
    this.close();
    for (const lost of this.#queue.splice(0)) lost.onLost?.();
    this.#wakeIdle();
    return end;
  }

  #wakeIdle(): void {
    this.#idle?.resolve();
    this.#idle = null;
  }

  /** Closes the connection; the reply loop then ends. Safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.conn);
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }
}
