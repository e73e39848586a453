/**
 * "Did you mean" suggestions for misspelt keys and names.
 */

/**
 * Edit distance between a and b, counting an insertion, a deletion, a substitution or a swap
 * of two adjacent characters as one edit (optimal string alignment distance), so that
 * "shceduler" is one edit from "scheduler".
 */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  // Three rolling rows: i-2, i-1, i.
  let prev2 = new Array<number>(b.length + 1).fill(0);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let cur = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, prev2[j - 2] + 1);
      }
      cur[j] = d;
    }
    [prev2, prev, cur] = [prev, cur, prev2];
  }
  return prev[b.length];
}

/**
 * The candidate closest to `word`, or undefined when none is close enough to be a plausible
 * typo. Comparison ignores case, so "WLC" suggests "wlc". Allowed distance grows with length,
 * max(1, floor(length / 3)) edits; a candidate that the word is a prefix of, or the other way
 * round (3+ characters), also counts ("persist" → "persistence"). Ties go to the earlier
 * candidate.
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  if (w.length === 0) return undefined;
  const maxDist = Math.max(1, Math.floor(w.length / 3));
  let best: string | undefined;
  let bestDist = Infinity;
  for (const c of candidates) {
    const lc = c.toLowerCase();
    let d = editDistance(w, lc);
    if (d > maxDist) {
      const prefix = Math.min(w.length, lc.length) >= 3 && (lc.startsWith(w) || w.startsWith(lc));
      if (!prefix) continue;
      d = maxDist; // plausible, but rank below closer edits
    }
    if (d < bestDist) {
      best = c;
      bestDist = d;
    }
  }
  return best;
}
