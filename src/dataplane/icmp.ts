/**
 * ICMP for Direct Routing (IPVS's ip_vs_in_icmp and the DR transmit's MTU check), without
 * allocating per frame:
 *   - an ICMP error (destination unreachable, time exceeded) about a reply of a flow comes to
 *     the VIP, because the real server answered from it; parseIcmpError() reads the quoted
 *     header (VIP:vport → client:cport) so that the Forwarder can hand the error, unchanged, to
 *     the real server that holds the connection (path MTU discovery would black-hole otherwise);
 *   - a frame with DF set larger than the egress MTU is not forwarded: buildFragNeeded() makes
 *     the ICMP "fragmentation needed" (type 3 code 4, next-hop MTU) the client gets, from the VIP.
 * Both are rate-limited by a token bucket (TokenBucket).
 */
import { inetChecksum } from './checksum';
import { ETH_HLEN, ETH_SRC, IP_FRAG, IP_MF, IP_OFFSET_MASK, IP_TOTAL_LEN, IP_VER_IHL, IPPROTO_TCP, IPPROTO_UDP } from './contract';

export const IPPROTO_ICMP = 1;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP_FRAG_NEEDED = 4; // code of ICMP_DEST_UNREACH
/** IP_DF in the flags/fragment-offset field. */
export const IP_DF = 0x4000;
/** Linux quotes at most this much: the whole ICMP error datagram is ≤ 576 bytes (RFC 1812 4.3.2.3). */
export const ICMP_ERROR_MAX = 576;

/** The kinds of ICMP error lbd tells apart in its metrics (lbd_icmp_errors_total{type}). */
export const enum IcmpKind {
  FragNeeded = 0,
  DestUnreachable = 1,
  TimeExceeded = 2,
}
export const ICMP_KIND_NAMES = ['frag_needed', 'dest_unreachable', 'time_exceeded'] as const;
/** What happened to an ICMP error (lbd_icmp_errors_total{result}). */
export const enum IcmpResult {
  Forwarded = 0,
  UnknownFlow = 1,
  RateLimited = 2,
}
export const ICMP_RESULT_NAMES = ['forwarded', 'unknown_flow', 'rate_limited'] as const;

/** What parseIcmpError() read: the outer addresses and the quoted (offending) packet's header. */
export class IcmpError {
  kind: IcmpKind = IcmpKind.DestUnreachable;
  outerDst = 0;
  /** The quoted packet: the reply, VIP:vport → client:cport. */
  quotedSrc = 0;
  quotedDst = 0;
  quotedProto = 0;
  quotedSrcPort = 0;
  quotedDstPort = 0;
}

/** parseIcmpError() results besides a Drop reason. */
export const ICMP_OK = -1;
/** ICMP that is not an error lbd forwards (echo, redirect, …), or a quote without ports. */
export const ICMP_NOT_ERROR = -2;
export const ICMP_NO_PORTS = -3;
export const ICMP_TRUNCATED = -4;

/**
 * Reads an IPv4 ICMP error from a frame that parse() found to be well-formed IPv4 (not a
 * fragment) with protocol ICMP. Returns ICMP_OK (fields in `out`), ICMP_NOT_ERROR, ICMP_NO_PORTS
 * (the quote is a later fragment, or not TCP/UDP), or `truncated` (ICMP_TRUNCATED) when the quote is shorter
 * than an IP header and 8 bytes.
 */
export function parseIcmpError(buf: Buffer, len: number, out: IcmpError): number {
  const ihl = (buf[IP_VER_IHL] & 0x0f) << 2;
  const ipEnd = Math.min(len, ETH_HLEN + ((buf[IP_TOTAL_LEN] << 8) | buf[IP_TOTAL_LEN + 1]));
  const icmp = ETH_HLEN + ihl;
  // Shorter than an ICMP header: not an error lbd can tell apart (unsupported, as any other ICMP).
  if (icmp + 8 > ipEnd) return ICMP_NOT_ERROR;
  const type = buf[icmp];
  if (type === ICMP_DEST_UNREACH) out.kind = buf[icmp + 1] === ICMP_FRAG_NEEDED ? IcmpKind.FragNeeded : IcmpKind.DestUnreachable;
  else if (type === ICMP_TIME_EXCEEDED) out.kind = IcmpKind.TimeExceeded;
  else return ICMP_NOT_ERROR;
  const q = icmp + 8;
  if (q + 20 > ipEnd) return ICMP_TRUNCATED;
  const qVerIhl = buf[q];
  const qIhl = (qVerIhl & 0x0f) << 2;
  if (qVerIhl >> 4 !== 4 || qIhl < 20) return ICMP_NO_PORTS;
  if (q + qIhl + 8 > ipEnd) return ICMP_TRUNCATED;
  const qFrag = (buf[q + 6] << 8) | buf[q + 7];
  if ((qFrag & IP_OFFSET_MASK) !== 0) return ICMP_NO_PORTS;
  const proto = buf[q + 9];
  if (proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) return ICMP_NO_PORTS;
  out.outerDst = buf.readUInt32BE(ETH_HLEN + 16);
  out.quotedProto = proto;
  out.quotedSrc = buf.readUInt32BE(q + 12);
  out.quotedDst = buf.readUInt32BE(q + 16);
  const l4 = q + qIhl;
  out.quotedSrcPort = (buf[l4] << 8) | buf[l4 + 1];
  out.quotedDstPort = (buf[l4 + 2] << 8) | buf[l4 + 3];
  return ICMP_OK;
}

/** True when the frame's IPv4 header has DF set (and it is not a fragment: parse() refused those). */
export function dfSet(buf: Uint8Array): boolean {
  return (buf[IP_FRAG] & (IP_DF >> 8)) !== 0 && (((buf[IP_FRAG] << 8) | buf[IP_FRAG + 1]) & IP_MF) === 0;
}

let ipId = 0;

/**
 * Writes into `out` the frame that tells the sender of `buf` (an IPv4 frame with DF set that
 * does not fit the egress MTU) "fragmentation needed, next-hop MTU `mtu`": Ethernet to the
 * frame's source MAC from `srcMac`, IP from the frame's destination (the VIP) to its source
 * (the client), quoting its IP header and as much of its data as keeps the error within 576
 * bytes, as Linux's icmp_send() does. Returns the frame's length. `out` must hold
 * ETH_HLEN + ICMP_ERROR_MAX bytes.
 */
export function buildFragNeeded(buf: Buffer, len: number, srcMac: Uint8Array, mtu: number, out: Buffer): number {
  const ipLen = Math.min(len - ETH_HLEN, (buf[IP_TOTAL_LEN] << 8) | buf[IP_TOTAL_LEN + 1]);
  const quote = Math.min(ipLen, ICMP_ERROR_MAX - 20 - 8);
  const total = 20 + 8 + quote;
  // Ethernet: back to whoever sent the frame, from the interface it reached.
  buf.copy(out, 0, ETH_SRC, ETH_SRC + 6);
  out.set(srcMac.subarray(0, 6), 6);
  out[12] = 0x08;
  out[13] = 0x00;
  const ip = ETH_HLEN;
  out[ip] = 0x45;
  out[ip + 1] = 0xc0; // IPTOS_PREC_INTERNETCONTROL, as Linux sends ICMP errors
  out.writeUInt16BE(total, ip + 2);
  ipId = (ipId + 1) & 0xffff;
  out.writeUInt16BE(ipId, ip + 4);
  out.writeUInt16BE(0, ip + 6); // no DF: an ICMP error may be fragmented on its way
  out[ip + 8] = 64;
  out[ip + 9] = IPPROTO_ICMP;
  out.writeUInt16BE(0, ip + 10);
  buf.copy(out, ip + 12, ETH_HLEN + 16, ETH_HLEN + 20); // from the VIP (the frame's destination)
  buf.copy(out, ip + 16, ETH_HLEN + 12, ETH_HLEN + 16); // to the client (its source)
  out.writeUInt16BE(inetChecksum(out, ip, 20), ip + 10);
  const icmp = ip + 20;
  out[icmp] = ICMP_DEST_UNREACH;
  out[icmp + 1] = ICMP_FRAG_NEEDED;
  out.writeUInt16BE(0, icmp + 2);
  out.writeUInt16BE(0, icmp + 4);
  out.writeUInt16BE(mtu & 0xffff, icmp + 6);
  buf.copy(out, icmp + 8, ETH_HLEN, ETH_HLEN + quote);
  out.writeUInt16BE(inetChecksum(out, icmp, 8 + quote), icmp + 2);
  return ETH_HLEN + total;
}

/**
 * A token bucket: `rate` tokens a second, at most `burst` saved up. take() is true while a token
 * is left. The defaults are Linux's for the ICMP it sends (net.ipv4.icmp_msgs_per_sec 1000,
 * icmp_msgs_burst 50).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    readonly rate = 1000,
    readonly burst = 50,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = clock();
  }

  take(): boolean {
    const now = this.clock();
    const add = ((now - this.last) * this.rate) / 1000;
    if (add > 0) {
      this.tokens = Math.min(this.burst, this.tokens + add);
      this.last = now;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

/**
 * Per-client limits on the ICMP lbd sends, on top of the global bucket: Linux's per-destination
 * icmp_ratelimit (one a second after a burst of 6), so that one client sending oversize frames
 * at line rate cannot use up the global burst and leave the others without their
 * "fragmentation needed". A fixed table hashed by address (no allocation per packet); two
 * clients that share a slot share a limit.
 */
export class HostBuckets {
  private readonly tokens: Float64Array;
  private readonly last: Float64Array;
  private readonly shift: number;

  constructor(
    /** A power of two. */
    readonly slots = 1024,
    readonly perSecond = 1,
    readonly burst = 6,
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.tokens = new Float64Array(slots).fill(burst);
    this.last = new Float64Array(slots).fill(-Infinity);
    this.shift = 32 - Math.log2(slots);
  }

  take(addr: number): boolean {
    // Fibonacci hashing: the top bits of addr × 2^32/φ spread neighbouring addresses apart.
    const i = Math.imul(addr, 0x9e3779b1) >>> this.shift;
    const now = this.clock();
    const add = this.last[i] === -Infinity ? this.burst : ((now - this.last[i]) * this.perSecond) / 1000;
    if (add > 0) {
      this.tokens[i] = Math.min(this.burst, this.tokens[i] + add);
      this.last[i] = now;
    }
    if (this.tokens[i] < 1) return false;
    this.tokens[i]--;
    return true;
  }
}

/** TypeScript-side ICMP counters (both paths hand ICMP to TypeScript), read by metrics at scrape time. */
export class IcmpStats {
  /** errors[kind * 3 + result]: ICMP errors to a VIP by kind and what became of them. */
  readonly errors = new Float64Array(ICMP_KIND_NAMES.length * ICMP_RESULT_NAMES.length);
  /** "fragmentation needed" not sent to a client because of the rate limit (the frame is dropped too_big all the same). */
  tooBigRateLimited = 0;

  count(kind: IcmpKind, result: IcmpResult): void {
    this.errors[kind * ICMP_RESULT_NAMES.length + result]++;
  }

  get(kind: IcmpKind, result: IcmpResult): number {
    return this.errors[kind * ICMP_RESULT_NAMES.length + result];
  }
}
