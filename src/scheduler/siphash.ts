/**
 * The Linux kernel's hsiphash on 64-bit machines (lib/siphash.c, BITS_PER_LONG == 64):
 * SipHash-1-3, one compression round and three finalization rounds, with a 64-bit state and a
 * 128-bit key, returning the low 32 bits. IPVS's mh scheduler hashes with it, and lbd must
 * hash exactly alike for a table to match the kernel's.
 *
 * JS has no 64-bit integers short of BigInt, which allocates; so each 64-bit word is kept as
 * two 32-bit halves (hi, lo) in local variables, and every operation is written on the halves.
 * Nothing is allocated per call.
 */

/** A hsiphash key: two 64-bit words {key[0], key[1]}, each as 32-bit halves. */
export interface HsiphashKey {
  readonly k0hi: number;
  readonly k0lo: number;
  readonly k1hi: number;
  readonly k1lo: number;
}

/** A key from its two 64-bit words given as numbers below 2^53 (IPVS's keys are below 2^32). */
export function hsiphashKey(k0: number, k1: number): HsiphashKey {
  const split = (k: number): [number, number] => [Math.floor(k / 0x100000000) >>> 0, k >>> 0];
  const [k0hi, k0lo] = split(k0);
  const [k1hi, k1lo] = split(k1);
  return { k0hi, k0lo, k1hi, k1lo };
}

/**
 * hsiphash of 0..7 bytes: `lo` holds bytes 0..3 and `hi` bytes 4..6, little-endian (byte i at
 * bits 8*i), as the kernel reads them on x86; bytes past `len` must be 0. With fewer than 8
 * bytes there is no full message word: the only one is b = len << 56 | the bytes.
 */
export function hsiphashTail(lo: number, hi: number, len: number, key: HsiphashKey): number {
  // PREAMBLE: the constants are "somepseudorandomlygeneratedbytes".
  let v0h = 0x736f6d65 ^ key.k0hi;
  let v0l = 0x70736575 ^ key.k0lo;
  let v1h = 0x646f7261 ^ key.k1hi;
  let v1l = 0x6e646f6d ^ key.k1lo;
  let v2h = 0x6c796765 ^ key.k0hi;
  let v2l = 0x6e657261 ^ key.k0lo;
  let v3h = 0x74656462 ^ key.k1hi;
  let v3l = 0x79746573 ^ key.k1lo;
  const bh = (len << 24) | (hi & 0xffffff);
  const bl = lo | 0;

  // POSTAMBLE: v3 ^= b; one round; v0 ^= b; v2 ^= 0xff; three rounds.
  v3h ^= bh;
  v3l ^= bl;
  for (let r = 0; r < 4; r++) {
    if (r === 1) {
      v0h ^= bh;
      v0l ^= bl;
      v2l ^= 0xff;
    }
    // SIPROUND. A 64-bit add: add the low halves modulo 2^32 (`| 0` wraps), then the high
    // halves with the carry out of the low ones. That carry is the top bit of
    // (a & b) | ((a | b) & ~sum): both top bits set, or one set and the sum's cleared. Kept
    // in 32-bit integer operations, it is much faster than comparing the unsigned sum with
    // 2^32 as a double. A rotation by k < 32 moves the top k bits of each half into the
    // bottom of the other; by 32 it swaps the halves.
    let s: number;
    let t: number;
    // v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
    s = (v0l + v1l) | 0;
    v0h = (v0h + v1h + (((v0l & v1l) | ((v0l | v1l) & ~s)) >>> 31)) | 0;
    v0l = s;
    t = v1h;
    v1h = (v1h << 13) | (v1l >>> 19);
    v1l = (v1l << 13) | (t >>> 19);
    v1h ^= v0h;
    v1l ^= v0l;
    t = v0h;
    v0h = v0l;
    v0l = t;
    // v2 += v3; v3 = rotl(v3, 16); v3 ^= v2
    s = (v2l + v3l) | 0;
    v2h = (v2h + v3h + (((v2l & v3l) | ((v2l | v3l) & ~s)) >>> 31)) | 0;
    v2l = s;
    t = v3h;
    v3h = (v3h << 16) | (v3l >>> 16);
    v3l = (v3l << 16) | (t >>> 16);
    v3h ^= v2h;
    v3l ^= v2l;
    // v0 += v3; v3 = rotl(v3, 21); v3 ^= v0
    s = (v0l + v3l) | 0;
    v0h = (v0h + v3h + (((v0l & v3l) | ((v0l | v3l) & ~s)) >>> 31)) | 0;
    v0l = s;
    t = v3h;
    v3h = (v3h << 21) | (v3l >>> 11);
    v3l = (v3l << 21) | (t >>> 11);
    v3h ^= v0h;
    v3l ^= v0l;
    // v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    s = (v2l + v1l) | 0;
    v2h = (v2h + v1h + (((v2l & v1l) | ((v2l | v1l) & ~s)) >>> 31)) | 0;
    v2l = s;
    t = v1h;
    v1h = (v1h << 17) | (v1l >>> 15);
    v1l = (v1l << 17) | (t >>> 15);
    v1h ^= v2h;
    v1l ^= v2l;
    t = v2h;
    v2h = v2l;
    v2l = t;
  }
  // The kernel returns (v0 ^ v1) ^ (v2 ^ v3) as a u32: the low halves.
  return (v0l ^ v1l ^ v2l ^ v3l) >>> 0;
}

/** hsiphash(&v, sizeof(u32), key) of one u32 `v`: what IPVS's mh hashes. */
export function hsiphashU32(v: number, key: HsiphashKey): number {
  return hsiphashTail(v, 0, 4, key);
}
