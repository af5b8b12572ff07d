/**
 * Accounts from the config: named users with scrypt hashes and the
 * optional anonymous account. Failed logins never reveal whether a user
 * exists: an unknown name costs the same hash work as a wrong password.
 * @module
 */
import type { Config, Permission } from "../config/schema.ts";
import { hashPassword, parseHash, verifyPassword } from "./password.ts";

/** A logged-in account: where it lives and what it may do. */
export interface Account {
  name: string;
  home: string;
  permissions: ReadonlySet<Permission>;
  anonymous: boolean;
}

/** Names that log in as the anonymous account when it is enabled. */
export const ANONYMOUS_NAMES: ReadonlySet<string> = new Set(["anonymous", "ftp"]);

/**
 * Password checks that may run at once, process-wide. Each scrypt check
 * holds 16 MiB for tens of milliseconds, and clients that are not logged in
 * can ask for as many as they like; unlimited, a few dozen PASS commands
 * take hundreds of MiB. Further checks wait their turn.
 */
const MAX_PASSWORD_CHECKS = 4;
let passwordChecks = 0;
const passwordQueue: (() => void)[] = [];

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (passwordChecks < MAX_PASSWORD_CHECKS) passwordChecks++;
  else await new Promise<void>((r) => passwordQueue.push(r));
  try {
    return await fn();
  } finally {
    // Hand the slot to the next in line, or free it.
    const next = passwordQueue.shift();
    if (next) next();
    else passwordChecks--;
  }
}

/** Looks up and authenticates accounts. */
export class UserDb {
  #users: Map<string, Config["users"][number]>;
  #anonymous: Config["anonymous"];
  #dummyHash: Promise<string> | null = null;

  constructor(config: Pick<Config, "users" | "anonymous">) {
    this.#users = new Map(config.users.map((u) => [u.name, u]));
    this.#anonymous = config.anonymous;
  }

  /** True when USER alone is enough (anonymous login needs any password). */
  isAnonymous(name: string): boolean {
    return this.#anonymous.enabled && ANONYMOUS_NAMES.has(name.toLowerCase()) &&
      !this.#users.has(name);
  }

  /**
   * Checks a name and password; null when they do not match, or when
   * `cancelled` says the client left while the check waited for its turn.
   */
  authenticate(
    name: string,
    password: string,
    options: { cancelled?: () => boolean } = {},
  ): Promise<Account | null> {
    return limited(() =>
      options.cancelled?.() ? Promise.resolve(null) : this.#authenticate(name, password)
    );
  }

  /** log2 of the largest scrypt N among the users' hashes (default cost if none). */
  #dummyCost(): number | undefined {
    let n = 0;
    for (const user of this.#users.values()) n = Math.max(n, parseHash(user.password)?.N ?? 0);
    return n === 0 ? undefined : Math.min(20, Math.max(10, Math.log2(n)));
  }

  async #authenticate(name: string, password: string): Promise<Account | null> {
    if (this.isAnonymous(name)) {
      return {
        name: "anonymous",
        home: this.#anonymous.home!,
        permissions: new Set(this.#anonymous.permissions),
        anonymous: true,
      };
    }
    const user = this.#users.get(name);
    if (!user) {
      // Spend the same work as a real check so timing tells nothing: as
      // much as the costliest configured hash, which may predate the default.
      this.#dummyHash ??= hashPassword("pitifulnat-dummy", { cost: this.#dummyCost() });
      await verifyPassword(password, await this.#dummyHash);
      return null;
    }
    if (!(await verifyPassword(password, user.password))) return null;
    return {
      name: user.name,
      home: user.home,
      permissions: new Set(user.permissions),
      anonymous: false,
    };
  }
}
