/**
 * One control connection: its state, the command loop, replies, and the
 * background transfer that ABOR, STAT and NOOP may interrupt or query.
 * Commands themselves live in the command table (commands.ts).
 * @module
 */
import type { Logger } from "@logtape/logtape";
import type { Config } from "../config/schema.ts";
import type { LoginThrottle } from "../auth/throttle.ts";
import type { Account, UserDb } from "../auth/users.ts";
import type { Jail } from "../fs/jail.ts";
import { PathError } from "../fs/jail.ts";
import type { Announcement, LanNetworks } from "../nat/announce.ts";
import { normalizeAddress } from "../nat/announce.ts";
import type { PublicAddress } from "../nat/public_address.ts";
import { formatReply, parseCommand } from "./codec.ts";
import { closeQuietly, DataError, giveBuffer, OrderedWriter, takeBuffer } from "./data_channel.ts";
import { readCommands } from "./line_reader.ts";
import type { ControlSession, ServerStats } from "./control_server.ts";

export type { ServerStats };

/** What every session shares with the server. */
export interface SessionDeps {
  config: Config;
  users: UserDb;
  /** Null when no public address is configured. */
  publicAddress: PublicAddress | null;
  lan: LanNetworks;
  commands: ReadonlyMap<string, CommandSpec>;
  log: Logger;
  /** Counters the status and metrics endpoints read. */
  stats: ServerStats;
  /** Failed logins per client address. */
  throttle: LoginThrottle;
}

/** A command, declared once: HELP and FEAT are generated from these. */
export interface CommandSpec {
  name: string;
  /** Refused with 530 before login. */
  login: boolean;
  /** none: refuse an argument; required: refuse its absence. */
  arg: "none" | "optional" | "required";
  /** Permission needed, checked before the handler runs. */
  perm?: "read" | "write" | "delete" | "mkdir" | "rename";
  /** One line for HELP. */
  help: string;
  /** The FEAT line, when the command is an extension worth announcing. */
  feat?: string;
  /** Allowed while a transfer runs (ABOR, STAT, NOOP, QUIT). */
  duringTransfer?: boolean;
  handler: (s: Session, arg: string) => Promise<void> | void;
}

/** A transfer running in the background of a session. */
export interface Transfer {
  ended: Promise<void>;
  aborted: boolean;
  /** Closes the data connection; the transfer then replies 426. */
  abort(): void;
  describe(): string;
}

/** Commands that leave a pending REST offset in place. */
const KEEPS_REST = new Set([
  "REST",
  "RETR",
  "STOR",
  "APPE",
  "PASV",
  "EPSV",
  "PORT",
  "EPRT",
  "TYPE",
  "MODE",
  "STRU",
  "NOOP",
  "STAT",
  "SIZE",
  "MDTM",
]);
let nextId = 1;
/** How long a passive listener is kept for the session's next transfer. */
export const SPARE_LISTENER_MS = 2000;
/** Sessions holding a kept passive listener, oldest first. */
const withSpare = new Set<Session>();

/**
 * Closes the oldest kept passive listener of any session, so its port can
 * serve a PASV that found the range full. False when none is kept.
 */
export function reclaimSpareListener(): boolean {
  const oldest = withSpare.values().next();
  if (oldest.done) return false;
  oldest.value.dropSpareListener();
  return true;
}
const encoder = new TextEncoder();

/** One FTP session on a control connection. */
export class Session implements ControlSession {
  readonly id: string;
  readonly peer: string;
  readonly peerPort: number;
  readonly local: string;
  account: Account | null = null;
  pendingUser: string | null = null;
  loginFailures = 0;
  jail: Jail | null = null;
  cwd = "/";
  restOffset = 0;
  renameFrom: string | null = null;
  /**
   * The open passive listener and its accept, running since PASV/EPSV;
   * `viaPublic` when PASV told the public address.
   */
  passive: {
    listener: Deno.TcpListener;
    port: number;
    accepted: Promise<Deno.TcpConn | null>;
    viaPublic?: boolean;
  } | null = null;
  active: { host: string; port: number } | null = null;
  /** The last PASV address decision and what it was made from. */
  announced: { publicAddress: string | null; lan: LanNetworks; decision: Announcement } | null =
    null;
  epsvAll = false;
  binary = true;
  transfer: Transfer | null = null;
  mlstFacts = new Set(["type", "size", "modify", "perm", "unique"]);
  closed = false;
  readonly openedAt = Date.now();
  #buf: Uint8Array | null = null;
  readonly #out: OrderedWriter;
  #idle: ReturnType<typeof setTimeout> | undefined;
  #deadline = 0;
  #timerAt = 0;
  #loginClock: number | null = null;
  #spare: {
    listener: Deno.TcpListener;
    port: number;
    timer: ReturnType<typeof setTimeout>;
  } | null = null;

  constructor(readonly conn: Deno.TcpConn, readonly deps: SessionDeps) {
    this.id = `s${nextId++}`;
    this.#out = new OrderedWriter(conn, () => this.closed, () => this.close());
    this.peer = normalizeAddress(conn.remoteAddr.hostname);
    this.peerPort = conn.remoteAddr.port;
    this.local = normalizeAddress(conn.localAddr.hostname);
  }

  /** The session's logger context, for every line it logs. */
  get ctx(): Record<string, unknown> {
    return { session: this.id, peer: `${this.peer}:${this.peerPort}`, user: this.account?.name };
  }

  /** The transfer buffer, taken from the pool while a transfer runs. */
  get buffer(): Uint8Array {
    return this.#buf ??= takeBuffer();
  }

  /** Gives the transfer buffer back to the pool once the transfer is over. */
  releaseBuffer(): void {
    if (this.#buf) giveBuffer(this.#buf);
    this.#buf = null;
  }

  /** Sends a reply; replies are written in order, errors end the session. */
  reply(code: number, text: string | readonly string[]): Promise<void> {
    return this.#out.write(encoder.encode(formatReply(code, text)));
  }

  /** The logged-in user's name, for status. */
  get userName(): string | null {
    return this.account?.name ?? null;
  }

  /** Tells the client 421 and ends the session; resolves once it has ended. */
  async shutdown(text: string): Promise<void> {
    await this.reply(421, text);
    this.close();
    await this.finished;
  }

  /** Resolves when run() has finished cleaning up. */
  get finished(): Promise<void> {
    return this.#finished.promise;
  }
  #finished = Promise.withResolvers<void>();

  /** Serves the connection until QUIT, timeout or disconnect. */
  async run(): Promise<void> {
    const { config, log } = this.deps;
    log.info("session opened {peer}", this.ctx);
    try {
      await this.reply(220, config.banner);
      this.#armIdle();
      for await (
        const item of readCommands(this.conn, { maxLength: config.limits.max_line_length })
      ) {
        if (this.closed) break;
        this.#armIdle();
        if (item.kind === "too-long") {
          await this.reply(500, "Command line too long");
          continue;
        }
        if (item.kind === "bad-utf8") {
          await this.reply(501, "Command is not valid UTF-8");
          continue;
        }
        await this.#dispatch(item.text);
        if (this.closed) break;
        this.#armIdle(); // again: logging in switches to the longer timeout
      }
    } catch (e) {
      if (!this.closed) {
        log.debug("session {session} read error: {error}", { ...this.ctx, error: e });
      }
    } finally {
      await this.#finish();
    }
  }

  async #dispatch(line: string): Promise<void> {
    const { verb, arg } = parseCommand(line);
    const spec = this.deps.commands.get(verb);
    if (this.transfer && !spec?.duringTransfer) await this.transfer.ended;
    if (!spec) {
      const shown = verb.replace(/[^\x21-\x7e]/g, "?").slice(0, 16);
      return this.reply(500, `${shown || "(empty)"}: command not understood`);
    }
    if (spec.login && !this.account) {
      return this.reply(530, "Please log in with USER and PASS first");
    }
    if (spec.arg === "required" && arg.trim() === "") {
      return this.reply(501, `${verb} needs an argument`);
    }
    if (spec.arg === "none" && arg.trim() !== "") {
      return this.reply(501, `${verb} takes no argument`);
    }
    if (spec.perm && !this.account?.permissions.has(spec.perm)) {
      return this.reply(550, `Permission denied (${spec.perm} is not allowed for this user)`);
    }
    // RNFR applies only to the command right after it. REST survives the
    // commands clients send between it and the transfer (as vsftpd's does).
    if (verb !== "RNFR" && verb !== "RNTO") this.renameFrom = null;
    if (!KEEPS_REST.has(verb)) this.restOffset = 0;
    try {
      await spec.handler(this, arg);
    } catch (e) {
      await this.replyError(e);
    }
  }

  /** Replies to a failed command with the code its error carries. */
  replyError(e: unknown): Promise<void> {
    if (e instanceof PathError || e instanceof DataError) return this.reply(e.code, e.message);
    if (e instanceof Deno.errors.NotFound) return this.reply(550, "No such file or directory");
    if (e instanceof Deno.errors.PermissionDenied) return this.reply(550, "Permission denied");
    if (e instanceof Deno.errors.AlreadyExists) return this.reply(550, "File exists");
    if (e instanceof Deno.errors.NotADirectory) return this.reply(550, "Not a directory");
    if (e instanceof Deno.errors.IsADirectory) return this.reply(550, "Is a directory");
    const msg = e instanceof Error ? e.message : String(e);
    if (/Directory not empty|os error 39/.test(msg)) {
      return this.reply(550, "Directory not empty");
    }
    this.deps.log.error("session {session}: {error}", { ...this.ctx, error: msg });
    return this.reply(451, "Local error in processing");
  }

  /**
   * Keeps a passive listener whose data connection was accepted, for the
   * next PASV/EPSV of this session: back-to-back transfers (a mirror of many
   * small files) then skip a bind and a close each. It is closed after
   * {@linkcode SPARE_LISTENER_MS} unused, so idle sessions hold no port.
   * Connections that arrive meanwhile wait in the backlog and go through the
   * same peer check as on a new listener.
   */
  keepSpareListener(listener: Deno.TcpListener, port: number): void {
    this.#dropSpare();
    if (this.closed) {
      closeQuietly(listener);
      return;
    }
    const timer = setTimeout(() => this.#dropSpare(), SPARE_LISTENER_MS);
    this.#spare = { listener, port, timer };
    withSpare.add(this);
  }

  /** The kept passive listener, now owned by the caller; null if none. */
  takeSpareListener(): { listener: Deno.TcpListener; port: number } | null {
    const spare = this.#spare;
    if (!spare) return null;
    this.#spare = null;
    withSpare.delete(this);
    clearTimeout(spare.timer);
    return { listener: spare.listener, port: spare.port };
  }

  /** Closes the kept passive listener, if any. */
  dropSpareListener(): void {
    this.#dropSpare();
  }

  #dropSpare(): void {
    const spare = this.takeSpareListener();
    if (spare) closeQuietly(spare.listener);
  }

  /** Closes the passive listener, if any. */
  closePassive(): void {
    const p = this.passive;
    if (!p) return;
    this.passive = null;
    try {
      p.listener.close();
    } catch { /* already closed */ }
    p.accepted.then((conn) => {
      if (conn) {
        try {
          conn.close(); // connected, but no transfer came
        } catch { /* already closed */ }
      } else if (p.viaPublic) {
        // Announced with the public address and never connected: the
        // client could not reach it, so the address may be stale.
        this.deps.publicAddress?.hint(`passive port ${p.port} was never connected`);
      }
    });
  }

  /**
   * Moves the idle deadline. One timer serves many commands: it fires at
   * the old deadline, sees the new one, and sleeps again, so a busy session
   * does not create and cancel a timer per command.
   */
  #armIdle(): void {
    const limits = this.deps.config.limits;
    const seconds = this.account ? limits.idle_timeout_seconds : limits.login_timeout_seconds;
    // Before login the clock runs from the connect (or REIN), not from the
    // last command: NOOPs must not hold an unauthenticated session open.
    if (this.account) this.#loginClock = null;
    else this.#loginClock ??= Date.now();
    this.#deadline = (this.#loginClock ?? Date.now()) + seconds * 1000;
    if (this.#idle === undefined || this.#deadline < this.#timerAt) this.#startIdleTimer();
  }

  #startIdleTimer(): void {
    clearTimeout(this.#idle);
    this.#timerAt = this.#deadline;
    this.#idle = setTimeout(() => {
      this.#idle = undefined;
      if (this.closed) return;
      if (this.transfer) return this.#armIdle();
      if (Date.now() < this.#deadline) return this.#startIdleTimer();
      this.deps.log.info("session {session} idle: closing", this.ctx);
      this.reply(421, "Idle timeout; closing control connection").finally(() => this.close());
    }, Math.max(0, this.#deadline - Date.now()));
  }

  /** Ends the session: replies in flight are flushed first by callers. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.#idle);
    this.transfer?.abort();
    this.closePassive();
    this.#dropSpare();
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }

  async #finish(): Promise<void> {
    clearTimeout(this.#idle);
    if (this.transfer) {
      this.transfer.abort();
      await this.transfer.ended.catch(() => {});
    }
    await this.#out.flushed();
    this.close();
    this.deps.log.info("session closed {peer} user={user} after {seconds} s", {
      ...this.ctx,
      seconds: Math.round((Date.now() - this.openedAt) / 1000),
    });
    this.#finished.resolve();
  }
}
