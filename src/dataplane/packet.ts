import {
  Drop,
  ETH_HLEN,
  ETH_TYPE,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  IP_FRAG,
  IP_MF,
  IP_MIN_HLEN,
  IP_OFFSET_MASK,
  IP_PROTO,
  IP_SRC,
  IP_DST,
  IP_TOTAL_LEN,
  IP_VER_IHL,
  IPPROTO_TCP,
  IPPROTO_UDP,
  L4_DST_PORT,
  L4_SRC_PORT,
  TCP_FLAGS,
  TCP_MIN_HLEN,
  UDP_HLEN,
} from './contract';

/** What parse() learned about a frame. One instance is reused for every frame. */
export class ParsedFrame {
  srcAddr = 0;
  dstAddr = 0;
  proto = 0;
  l4Off = 0;
  srcPort = 0;
  dstPort = 0;
  tcpFlags = 0;
}

/** parse() results that are not a Drop reason. */
export const PARSED_L4 = -1;
export const PARSED_ARP = -2;

/**
 * Parses Ethernet → IPv4 → TCP/UDP in place, every read bounds-checked against `len`.
 * Returns PARSED_L4 (fields in `out`), PARSED_ARP, or the Drop reason.
 * IP options are allowed (the L4 offset follows IHL); they are forwarded untouched.
 */
export function parse(buf: Buffer, len: number, out: ParsedFrame): number {
  if (len < ETH_HLEN) return Drop.Truncated;
  const etherType = (buf[ETH_TYPE] << 8) | buf[ETH_TYPE + 1];
  if (etherType === ETHERTYPE_ARP) return PARSED_ARP;
  if (etherType !== ETHERTYPE_IPV4) return Drop.NotIpv4;
  if (len < ETH_HLEN + IP_MIN_HLEN) return Drop.Truncated;

  const verIhl = buf[IP_VER_IHL];
  const ihl = (verIhl & 0x0f) << 2;
  if (verIhl >> 4 !== 4 || ihl < IP_MIN_HLEN) return Drop.BadIpHeader;
  const totalLen = (buf[IP_TOTAL_LEN] << 8) | buf[IP_TOTAL_LEN + 1];
  if (totalLen < ihl) return Drop.BadIpHeader;
  // Ethernet pads short frames, so the frame may be longer than the datagram, never shorter.
  const ipEnd = ETH_HLEN + totalLen;
  if (ipEnd > len) return Drop.Truncated;
  const frag = (buf[IP_FRAG] << 8) | buf[IP_FRAG + 1];
  if ((frag & (IP_MF | IP_OFFSET_MASK)) !== 0) return Drop.Fragment;

  const proto = buf[IP_PROTO];
  const l4 = ETH_HLEN + ihl;
  if (proto === IPPROTO_TCP) {
    if (l4 + TCP_MIN_HLEN > ipEnd) return Drop.Truncated;
    const dataOff = (buf[l4 + 12] >> 4) << 2;
    if (dataOff < TCP_MIN_HLEN) return Drop.BadIpHeader;
    if (l4 + dataOff > ipEnd) return Drop.Truncated;
    out.tcpFlags = buf[l4 + TCP_FLAGS];
  } else if (proto === IPPROTO_UDP) {
    if (l4 + UDP_HLEN > ipEnd) return Drop.Truncated;
    out.tcpFlags = 0;
  } else {
    return Drop.Unsupported;
  }
  out.proto = proto;
  out.l4Off = l4;
  out.srcAddr = buf.readUInt32BE(IP_SRC);
  out.dstAddr = buf.readUInt32BE(IP_DST);
  out.srcPort = (buf[l4 + L4_SRC_PORT] << 8) | buf[l4 + L4_SRC_PORT + 1];
  out.dstPort = (buf[l4 + L4_DST_PORT] << 8) | buf[l4 + L4_DST_PORT + 1];
  return PARSED_L4;
}

/** True when the 6 bytes at buf[off] equal mac[0..6]. */
export function macEquals(buf: Uint8Array, off: number, mac: Uint8Array, macOff = 0): boolean {
  return (
    buf[off] === mac[macOff] &&
    buf[off + 1] === mac[macOff + 1] &&
    buf[off + 2] === mac[macOff + 2] &&
    buf[off + 3] === mac[macOff + 3] &&
    buf[off + 4] === mac[macOff + 4] &&
    buf[off + 5] === mac[macOff + 5]
  );
}

/** Direct Routing's whole rewrite: new destination and source MAC; IP and L4 stay as they are. */
export function rewriteMacs(buf: Uint8Array, dstMac: Uint8Array, dstOff: number, srcMac: Uint8Array): void {
  buf[0] = dstMac[dstOff];
  buf[1] = dstMac[dstOff + 1];
  buf[2] = dstMac[dstOff + 2];
  buf[3] = dstMac[dstOff + 3];
  buf[4] = dstMac[dstOff + 4];
  buf[5] = dstMac[dstOff + 5];
  buf[6] = srcMac[0];
  buf[7] = srcMac[1];
  buf[8] = srcMac[2];
  buf[9] = srcMac[3];
  buf[10] = srcMac[4];
  buf[11] = srcMac[5];
}

// ---- Address helpers (control plane only: these allocate) ----------------------------------
export function ipToInt(ip: string): number {
  const p = ip.split('.');
  return ((+p[0] << 24) | (+p[1] << 16) | (+p[2] << 8) | +p[3]) >>> 0;
}

export function intToIp(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function macFromString(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
}

export function macToString(mac: Uint8Array, off = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(mac[off + i].toString(16).padStart(2, '0'));
  return parts.join(':');
}
