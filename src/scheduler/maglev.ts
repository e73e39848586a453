/**
 * Maglev's lookup-table construction (Eisenbud et al., NSDI'16, §3.4) as IPVS's ip_vs_mh.c does
 * it, kept apart from the scheduler (mh.ts) as pure functions of their inputs, so that a test
 * can feed the paper's own offsets and skips and compare with its Table 1.
 *
 * Every server has a preference list of the M table entries, the permutation
 * offset, offset + skip, offset + 2*skip, ... (mod M). M is prime and 1 <= skip < M, so skip is
 * coprime with M and the list visits every entry exactly once. The servers take turns claiming
 * their most preferred entry not yet taken, until the table is full: each server ends with
 * about M/N entries (weights aside), and removing one server leaves the others' claims mostly
 * where they were, which is what keeps flows on their servers when the list changes.
 */

import { gcd } from './types';

/** One server's part in the construction. */
export interface MaglevSetup {
  /** Its first preferred entry, 0 <= offset < M. */
  readonly offset: number;
  /** The step of its permutation, 1 <= skip < M. */
  readonly skip: number;
  /** How many entries it claims in a row on each pass; 0 = none at all. */
  readonly turns: number;
}

/**
 * IPVS's IP_VS_MH_TAB_BITS for a table of M entries: half the bits of M (the kernel's
 * CONFIG_IP_VS_MH_TAB_INDEX / 2, the index being log2 of the prime rounded: 4093 → 12 → 6,
 * 65521 → 16 → 8). Weights are shifted right until weight/gcd fits in this many bits, so
 * that no server claims more than 2^bits entries in a row.
 */
export function mhTabBits(m: number): number {
  return Math.floor(Math.round(Math.log2(m)) / 2);
}

/**
 * Each server's turns from its last weight, as ip_vs_mh_permutate: the weights are divided by
 * their gcd (6:4 claims like 3:2), then shifted right by rshift = fls(max/gcd) - TAB_BITS (when
 * positive) so that the largest fits in TAB_BITS bits. A positive weight that the shift brings
 * to 0 still gets 1 turn; a last weight of 0 (a server that never had a positive weight) gets
 * none. Every server 0: every turn 0, and the table stays empty.
 */
export function mhTurns(lastWeights: readonly number[], m: number): number[] {
  let g = 0;
  let max = 0;
  for (const w of lastWeights) {
    if (w <= 0) continue;
    g = g > 0 ? gcd(w, g) : w;
    if (w > max) max = w;
  }
  if (g < 1) return lastWeights.map(() => 0);
  // fls(x): the 1-based position of x's highest set bit (0 for 0).
  const fls = 32 - Math.clz32(Math.floor(max / g));
  const rshift = Math.max(0, fls - mhTabBits(m));
  return lastWeights.map((w) => (w > 0 ? Math.floor(w / g) >> rshift || 1 : 0));
}

/**
 * Fills `table` (M entries) with indices into `setup` as ip_vs_mh_populate: walk the servers in
 * order, each with turns >= 1 claiming its next free preferred entry `turns` times in a row
 * before the next server's go, wrapping around the list until all M entries are taken. With
 * no server having a turn, every entry is -1 (no server). M must be prime (or at least coprime
 * with every skip), or a permutation could miss the last free entries and never end.
 */
export function mhPopulate(setup: readonly MaglevSetup[], m: number, table: Int32Array): void {
  if (table.length < m) throw new RangeError(`a table of ${table.length} entries cannot hold ${m}`);
  table.fill(-1, 0, m);
  const n = setup.length;
  if (!setup.some((s) => s.turns >= 1)) return;
  // perm[i]: where server i's walk stands, its last claimed entry (or its offset at first); as
  // in the kernel it moves on only when it finds that entry taken.
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[i] = setup[i].offset;
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      const { skip, turns } = setup[i];
      for (let t = 0; t < turns; t++) {
        let c = perm[i];
        while (table[c] !== -1) {
          // c + skip < 2M: one subtraction is the modulo.
          c += skip;
          if (c >= m) c -= m;
        }
        perm[i] = c;
        table[c] = i;
        if (++filled === m) return;
      }
    }
  }
}
