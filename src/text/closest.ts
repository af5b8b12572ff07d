/**
 * "Did you mean": the known words nearest to a mistyped one, for unknown
 * config keys, options and commands.
 * @module
 */

/**
 * The candidates nearest to `typed`: within an edit distance of 2 (and
 * less than its length), or starting with it; ties all kept, none when
 * nothing is near.
 */
export function closest(typed: string, candidates: string[]): string[] {
  let best: string[] = [];
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(typed, candidate);
    const near = (d <= 2 && d < typed.length) || (typed !== "" && candidate.startsWith(typed));
    if (!near || d > bestDistance) continue;
    if (d < bestDistance) best = [];
    bestDistance = d;
    best.push(candidate);
  }
  return best;
}

/** The Levenshtein distance between `a` and `b` (insertions, deletions, substitutions). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      row.push(Math.min(previous[j] + 1, row[j - 1] + 1, substitution));
    }
    previous = row;
  }
  return previous[b.length];
}
