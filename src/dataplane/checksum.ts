/**
 * The Internet checksum (RFC 1071), once for everything TypeScript builds or completes: the vip
 * probe's SYN and RST, ICMP errors lbd sends, segments cut from super-frames and partial
 * checksums completed.
 */

/** The one's-complement sum of buf[from..to) as 16-bit big-endian words (odd tail padded), plus acc, not folded. */
export function sum16(buf: Uint8Array, from: number, to: number, acc = 0): number {
  let i = from;
  const even = to - ((to - from) & 1);
  // Numbers stay exact far beyond 64 KiB of words, so fold once at the end.
  for (; i < even; i += 2) acc += (buf[i] << 8) | buf[i + 1];
  if (i < to) acc += buf[i] << 8;
  return acc;
}

/** Folds a sum to 16 bits (end-around carry). */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum of buf[off, off+len) with `initial` (e.g. a pseudo-header's sum) added in. */
export function inetChecksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return ~fold(sum16(buf, off, off + len, initial)) & 0xffff;
}
