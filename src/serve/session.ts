/**
 * One `serve` session: the FTP server's state for a control connection,
 * and the gate every command passes (login, argument, permission) before
 * its handler in the command table runs. The lifecycle (timeouts, login
 * accounting, transfer records) is the kit's {@linkcode SessionBase}.
 * @module
 */
import type { Account, UserDb } from "../auth/users.ts";
import type { Connection } from "../ftp/connection.ts";
import { parseCommand } from "../ftp/codec.ts";
import type { CommandLine } from "../ftp/line_reader.ts";
import { type KitDeps, SessionBase } from "../ftp/session_base.ts";
import type { RunningTransfer } from "../ftp/control_server.ts";
import { DataError } from "../ftp/transfer_io.ts";
import { type Jail, PathError, resolveVirtual } from "../fs/jail.ts";

/** What every serve session shares with the server. */
export interface SessionDeps extends KitDeps {
  users: UserDb;
  commands: ReadonlyMap<string, CommandSpec>;
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
  /** Offered only with `tls` configured: FEAT leaves its line out otherwise. */
  tls?: boolean;
  /** Allowed while a transfer runs (ABOR, STAT, NOOP, QUIT). */
  duringTransfer?: boolean;
  handler: (s: Session, arg: string) => Promise<void> | void;
}

/** A transfer running in the background of a session. */
export interface Transfer extends RunningTransfer {
  ended: Promise<void>;
  aborted: boolean;
  /** Closes the data connection; the transfer then replies 426. */
  abort(): void;
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

/** The facts MLST and MLSD give until OPTS MLST chooses others: one set for every session. */
const DEFAULT_MLST_FACTS: ReadonlySet<string> = new Set([
  "type",
  "size",
  "modify",
  "perm",
  "unique",
]);

/** One FTP session on a control connection. */
export class Session extends SessionBase<SessionDeps> {
  account: Account | null = null;
  pendingUser: string | null = null;
  jail: Jail | null = null;
  cwd = "/";
  restOffset = 0;
  renameFrom: string | null = null;
  binary = true;
  transfer: Transfer | null = null;
  /** The MLST/MLSD facts chosen with OPTS MLST (replaced, never changed in place). */
  mlstFacts: ReadonlySet<string> = DEFAULT_MLST_FACTS;

  constructor(conn: Connection, deps: SessionDeps) {
    super(conn, deps, "s");
  }

  /** The logged-in user's name. */
  get userName(): string | null {
    return this.account?.name ?? null;
  }

  protected get loggedIn(): boolean {
    return this.account !== null;
  }

  /** The logged-in user's home; the table lets only logged-in sessions reach its callers. */
  get home(): Jail {
    return this.jail!;
  }

  /** The virtual path `arg` names, from the working directory. */
  path(arg: string): string {
    return resolveVirtual(this.cwd, arg);
  }

  protected async open(): Promise<boolean> {
    await this.reply(220, this.deps.config.banner);
    return true;
  }

  protected handle(item: CommandLine): Promise<void> {
    if (item.kind === "too-long") return this.reply(500, "Command line too long");
    if (item.kind === "bad-utf8") return this.reply(501, "Command is not valid UTF-8");
    return this.#dispatch(item.text);
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

  protected onClose(): void {
    this.transfer?.abort();
  }

  protected override async finish(): Promise<void> {
    if (this.transfer) {
      this.transfer.abort();
      await this.transfer.ended.catch(() => {});
    }
    await super.finish();
  }
}
