/**
 * Whether this process may read or write a path, asked of the kernel by
 * trying: Deno's `node:fs` access() judges mode bits itself (it refuses
 * root what root may do, and knows no supplementary groups).
 * @module
 */

/** Whether the folder can be listed. */
export function canList(folder: string): boolean {
  try {
    for (const _ of Deno.readDirSync(folder)) break;
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether a file can be created in `folder`: creates an empty hidden file
 * and removes it at once.
 */
export function canCreateIn(folder: string): boolean {
  let made: string | null = null;
  try {
    made = Deno.makeTempFileSync({ dir: folder, prefix: ".pitifulnat-check-" });
    return true;
  } catch {
    return false;
  } finally {
    if (made) {
      try {
        Deno.removeSync(made);
      } catch { /* gone already */ }
    }
  }
}

/** Whether an existing file can be opened for appending (nothing is written). */
export function canAppend(file: string): boolean {
  try {
    Deno.openSync(file, { append: true }).close();
    return true;
  } catch {
    return false;
  }
}

/** Whether something exists at `path` (a broken symlink does not). */
export function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
