/**
 * Jailed virtual paths.
 *
 * Every path a client names is a *virtual* POSIX path, absolute from the
 * user's home ("/"). {@link resolveVirtual} turns a client argument into a
 * normalized virtual path without touching the disk; {@link Jail} maps a
 * virtual path to a real one and makes sure symlinks cannot lead outside the
 * home directory.
 *
 * @module
 */

/** Longest virtual path we accept, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;

/** Longest single path component we accept, in UTF-8 bytes (Linux NAME_MAX). */
export const MAX_NAME_BYTES = 255;

/**
 * A path the client may not use. `code` is the FTP reply code to send:
 * 501 bad syntax (NUL/CR/LF byte, too long), 553 not allowed (outside the
 * home directory), 550 not found or not accessible.
 */
export class PathError extends Error {
  /** FTP reply code for this failure. */
  code: 550 | 553 | 501;

  /** Creates a path error carrying the FTP reply code to answer with. */
  constructor(code: 550 | 553 | 501, message: string) {
    super(message);
    this.name = "PathError";
    this.code = code;
  }
}

/**
 * Counts the UTF-8 bytes of a string without allocating. Lone surrogates
 * count as 3 bytes, as TextEncoder encodes them as U+FFFD.
 */
function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else {
        n += 3;
      }
    } else n += 3;
  }
  return n;
}

/**
 * Rejects bytes that must never reach a file name: NUL ends C strings and
 * CR/LF would let a name inject lines into replies and listings.
 */
function checkBytes(s: string): void {
  if (s.length > MAX_PATH_BYTES) {
    // A UTF-16 length over the limit is over it in UTF-8 too.
    throw new PathError(501, "Path too long");
  }
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) throw new PathError(501, "Path contains a NUL byte");
    if (c === 0x0a || c === 0x0d) throw new PathError(501, "Path contains a line break");
  }
  if (utf8Length(s) > MAX_PATH_BYTES) throw new PathError(501, "Path too long");
}

/**
 * Resolves a client's path argument against the current virtual directory.
 *
 * Pure: no disk access. Absolute arguments start at "/", relative ones at
 * `cwd`; ".", "..", repeated and trailing slashes are collapsed, and ".."
 * never climbs above "/". Backslashes are ordinary characters. An empty
 * argument means `cwd`. Throws {@link PathError} 501 for NUL, CR or LF bytes,
 * a path over 4096 UTF-8 bytes or a component over 255 bytes (checked on the
 * input too, so oversize components are refused even if ".." removes them).
 *
 * @example resolveVirtual("/a/b", "../c//d/") === "/a/c/d"
 */
export function resolveVirtual(cwd: string, arg: string): string {
  checkBytes(cwd);
  checkBytes(arg);
  const parts: string[] = [];
  const joined = arg.startsWith("/") ? arg : `${cwd}/${arg}`;
  for (const part of joined.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      parts.pop();
      continue;
    }
    if (utf8Length(part) > MAX_NAME_BYTES) {
      throw new PathError(501, "Path component too long");
    }
    parts.push(part);
  }
  const result = "/" + parts.join("/");
  if (utf8Length(result) > MAX_PATH_BYTES) throw new PathError(501, "Path too long");
  return result;
}

/** Options for {@link Jail.resolve}. */
export interface ResolveOptions {
  /** The target must exist (550 otherwise). Wins over `forCreate`. */
  mustExist?: boolean;
  /** The target may not exist yet: its parent must exist inside the home. */
  forCreate?: boolean;
}

/** Whether an error means "no such file" rather than something worse. */
function isMissing(err: unknown): boolean {
  return err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory;
}

/** Splits a real absolute path into parent directory and last component. */
function splitLast(real: string): [string, string] {
  const i = real.lastIndexOf("/");
  return [i === 0 ? "/" : real.slice(0, i), real.slice(i + 1)];
}

/**
 * A home directory that virtual paths cannot escape, not even through
 * symlinks placed inside it by local users.
 *
 * Checks are made at resolve time; a local user who swaps a directory for a
 * symlink between the check and the use can still race us. FTP users cannot
 * create symlinks, so only local accounts can mount that attack.
 */
export class Jail {
  /** The home directory as configured. */
  readonly root: string;
  #real = "";
  #prefix = "";

  /** Creates a jail for `root`, a real absolute directory. Call {@link init} next. */
  constructor(root: string) {
    if (!root.startsWith("/")) throw new Error(`Jail root must be absolute: ${root}`);
    this.root = root;
  }

  /** The canonical real path of the root (after {@link init}). */
  get realRoot(): string {
    return this.#real;
  }

  /** Resolves the root's real path once; throws if it is not a directory. */
  async init(): Promise<void> {
    const real = await Deno.realPath(this.root);
    const info = await Deno.stat(real);
    if (!info.isDirectory) throw new Error(`Jail root is not a directory: ${this.root}`);
    this.#real = real;
    this.#prefix = real === "/" ? "/" : real + "/";
  }

  /** Whether a canonical real path is the root or below it. */
  #inside(real: string): boolean {
    return real === this.#real || real.startsWith(this.#prefix);
  }

  /**
   * Maps a virtual path to a real path inside the home directory.
   *
   * The argument is normalized again (it should come from
   * {@link resolveVirtual}). Existing targets: their real path, symlinks
   * followed, must be inside (553 otherwise). The result names the last
   * component itself, not what it links to, so DELE or RNFR of a symlink act
   * on the link. Missing targets: 550, unless `forCreate`, in which case the
   * parent must exist (550) and be inside (553), and a dangling symlink with
   * the target's name is refused (553) because creating through it would
   * write wherever it points. Without options, a missing target is 550.
   *
   * One realPath call when no symlink is involved.
   */
  resolve(virtualPath: string, options: ResolveOptions = {}): Promise<string> {
    try {
      return Promise.resolve(this.resolveSync(virtualPath, options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * {@linkcode resolve}, synchronously. The checks are metadata lookups that
   * the kernel answers from its caches; a thread-pool hop for each costs
   * more than the lookup, and this runs for every path a command names.
   */
  resolveSync(virtualPath: string, options: ResolveOptions = {}): string {
    if (this.#real === "") throw new Error("Jail.init() was not called");
    const virtual = resolveVirtual("/", virtualPath);
    const lexical = virtual === "/" ? this.#real : this.#prefix + virtual.slice(1);
    let canonical: string | undefined;
    try {
      canonical = Deno.realPathSync(lexical);
    } catch (err) {
      if (err instanceof Deno.errors.FilesystemLoop) {
        throw new PathError(550, `${virtual}: too many levels of symbolic links`);
      }
      if (!isMissing(err)) throw new PathError(550, `${virtual}: not accessible`);
    }
    if (canonical !== undefined) {
      if (!this.#inside(canonical)) throw new PathError(553, `${virtual}: outside home`);
      if (canonical === lexical || virtual === "/") return canonical;
      // A symlink somewhere on the way: name the last component through the
      // parent's canonical path, which must be inside as well.
      return this.#throughParent(lexical, virtual);
    }
    if (options.mustExist || !options.forCreate) {
      throw new PathError(550, `${virtual}: no such file or directory`);
    }
    const real = this.#throughParent(lexical, virtual);
    try {
      Deno.lstatSync(real);
    } catch (err) {
      if (isMissing(err)) return real;
      throw new PathError(550, `${virtual}: not accessible`);
    }
    // realPath failed but the name exists: a dangling symlink (or a loop).
    throw new PathError(553, `${virtual}: refusing to create through a symbolic link`);
  }

  /** Canonical parent (checked inside) joined with the last component. */
  #throughParent(lexical: string, virtual: string): string {
    const [parent, name] = splitLast(lexical);
    let parentReal: string;
    try {
      parentReal = Deno.realPathSync(parent);
    } catch (err) {
      if (isMissing(err)) throw new PathError(550, `${virtual}: no such directory`);
      throw new PathError(550, `${virtual}: not accessible`);
    }
    if (!this.#inside(parentReal)) throw new PathError(553, `${virtual}: outside home`);
    return parentReal === "/" ? "/" + name : `${parentReal}/${name}`;
  }

  /**
   * Maps a real path below the root back to its virtual path, for messages.
   * Throws {@link PathError} 553 for a path outside the root.
   */
  toVirtual(real: string): string {
    for (const base of [this.#real, this.root.replace(/\/+$/, "") || "/"]) {
      if (base === "") continue;
      if (real === base) return "/";
      const prefix = base === "/" ? "/" : base + "/";
      if (real.startsWith(prefix)) {
        return resolveVirtual("/", real.slice(prefix.length));
      }
    }
    throw new PathError(553, "Path outside home");
  }
}
