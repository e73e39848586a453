/**
 * Super-frames and partial checksums in software: what the kernel does for a frame that carries
 * a struct virtio_net_hdr (PACKET_VNET_HDR) when the egress cannot be handed that header.
 *
 * A TSO sender or a GRO NIC hands the capture frames of up to 64 KiB whose header says how to cut
 * them (gso_type, gso_size) and whose TCP/UDP checksum holds only the pseudo-header sum
 * (NEEDS_CSUM, csum_start, csum_offset). Where the egress port carries the header on (a ring
 * opened with PACKET_VNET_HDR), the frame leaves whole and the kernel or NIC does this work; where
 * it does not, validate() checks the header against the parsed frame, and the Segmenter completes
 * the checksum in place or cuts the frame into wire-sized frames, as Linux's tcp_gso_segment() /
 * __udp_gso_segment() / skb_checksum_help() would: every segment with its own IP total length, IP
 * id (the first's + i), IP header checksum, TCP sequence number (FIN and PSH on the last only, CWR
 * on the first only) or UDP length, and a full TCP/UDP checksum.
 *
 * Nothing is ever cut short silently: a header lbd cannot follow (TCPV6 or UFO on an IPv4 frame,
 * a gso_size of 0, offsets outside the packet) is the drop reason gso_unsupported.
 * No allocation per frame: segments are built one at a time in one preallocated buffer.
 */
import { fold, sum16 } from './checksum';
import { Drop, ETH_HLEN, IP_TOTAL_LEN, IPPROTO_TCP, IPPROTO_UDP, TCP_FIN, UDP_HLEN } from './contract';
import type { ParsedFrame } from './packet';
import { MAX_FRAME, VNET_HDR_LEN } from './binding';

/**
 * VNET_HDR_LEN: sizeof(struct virtio_net_hdr), the addon's: flags u8, gso_type u8, then hdr_len,
 * gso_size, csum_start, csum_offset (u16 little-endian). MAX_FRAME: the largest frame the
 * software path takes in (and so the largest segment it makes).
 */
export { MAX_FRAME, VNET_HDR_LEN };
export const VNET_FLAGS = 0;
export const VNET_GSO_TYPE = 1;
export const VNET_HDR_LEN_OFF = 2;
export const VNET_GSO_SIZE = 4;
export const VNET_CSUM_START = 6;
export const VNET_CSUM_OFFSET = 8;

export const VNET_F_NEEDS_CSUM = 1;
export const VNET_F_DATA_VALID = 2;

export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
/** UFO: one UDP datagram to be cut into IP fragments. Not supported (gso_unsupported). */
export const GSO_UDP = 3;
export const GSO_TCPV6 = 4;
/** UDP GSO (UDP_SEGMENT): several datagrams, each with its own UDP header. */
export const GSO_UDP_L4 = 5;
/** The sender set CWR on the super-frame (TCP ECN): only the first segment keeps it. */
export const GSO_ECN = 0x80;

const TCP_PSH = 0x08;
const TCP_CWR = 0x80;
const TCP_SEQ = 4;
const TCP_CHECK = 16;
const UDP_LEN = 4;
const UDP_CHECK = 6;
const IP_ID = ETH_HLEN + 4;
const IP_CHECK = ETH_HLEN + 10;

const u16le = (b: Uint8Array, off: number): number => b[off] | (b[off + 1] << 8);

/** gso_type without the ECN bit (0 = an ordinary frame). */
export function gsoType(vnet: Uint8Array): number {
  return vnet[VNET_GSO_TYPE] & ~GSO_ECN;
}

/** True when the header asks for work: a super-frame or a partial checksum. DATA_VALID alone asks for none. */
export function needsWork(vnet: Uint8Array): boolean {
  return (vnet[VNET_FLAGS] & VNET_F_NEEDS_CSUM) !== 0 || vnet[VNET_GSO_TYPE] !== GSO_NONE;
}

/** Writes a virtio_net_hdr (tests, and a software path that builds one). */
export function writeVnet(
  out: Uint8Array,
  h: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number },
): Uint8Array {
  const put = (off: number, v: number) => {
    out[off] = v & 0xff;
    out[off + 1] = (v >> 8) & 0xff;
  };
  out[VNET_FLAGS] = h.flags ?? 0;
  out[VNET_GSO_TYPE] = h.gsoType ?? 0;
  put(VNET_HDR_LEN_OFF, h.hdrLen ?? 0);
  put(VNET_GSO_SIZE, h.gsoSize ?? 0);
  put(VNET_CSUM_START, h.csumStart ?? 0);
  put(VNET_CSUM_OFFSET, h.csumOffset ?? 0);
  return out;
}

/**
 * Checks a frame's virtio_net_hdr against what parse() found (f; the frame parsed as IPv4 TCP or
 * UDP, not a fragment). Returns -1 when lbd can carry the frame on (whole, or cut in software), or
 * Drop.GsoUnsupported:
 *   - gso_type TCPV4 needs a TCP frame, UDP_L4 a UDP one with NEEDS_CSUM, each with gso_size > 0; TCPV6 (on an
 *     IPv4 frame), UFO and unknown types are refused; the ECN bit only goes with TCPV4;
 *   - NEEDS_CSUM needs csum_start inside the packet after the IP header and the 2-byte field at
 *     csum_start + csum_offset inside the packet; a super-frame's must be its TCP/UDP checksum.
 * The same rules whether the egress carries the header on or not, so that a frame's fate does not
 * depend on the port it leaves by. hdr_len is a hint (the kernel's too) and is not checked.
 */
export function validate(buf: Uint8Array, f: ParsedFrame, vnet: Uint8Array): number {
  const flags = vnet[VNET_FLAGS];
  const raw = vnet[VNET_GSO_TYPE];
  const type = raw & ~GSO_ECN;
  const ipEnd = ETH_HLEN + ((buf[IP_TOTAL_LEN] << 8) | buf[IP_TOTAL_LEN + 1]);
  if ((flags & VNET_F_NEEDS_CSUM) !== 0) {
    const start = u16le(vnet, VNET_CSUM_START);
    const field = start + u16le(vnet, VNET_CSUM_OFFSET);
    if (start < f.l4Off || field + 2 > ipEnd) return Drop.GsoUnsupported;
  }
  if (type === GSO_NONE) return raw === GSO_NONE ? -1 : Drop.GsoUnsupported;
  if (u16le(vnet, VNET_GSO_SIZE) === 0) return Drop.GsoUnsupported;
  if (type === GSO_TCPV4) {
    if (f.proto !== IPPROTO_TCP) return Drop.GsoUnsupported;
  } else if (type === GSO_UDP_L4) {
    // Without NEEDS_CSUM (fraglist GRO's) the kernel refuses to send it (EINVAL): not ours to carry.
    if (f.proto !== IPPROTO_UDP || raw !== type || (flags & VNET_F_NEEDS_CSUM) === 0) return Drop.GsoUnsupported;
  } else {
    return Drop.GsoUnsupported;
  }
  if ((flags & VNET_F_NEEDS_CSUM) !== 0) {
    const start = u16le(vnet, VNET_CSUM_START);
    const offset = u16le(vnet, VNET_CSUM_OFFSET);
    if (start !== f.l4Off || offset !== (type === GSO_TCPV4 ? TCP_CHECK : UDP_CHECK)) return Drop.GsoUnsupported;
  }
  return -1;
}

/** The IPv4 pseudo-header's sum: source, destination, protocol, L4 length (the frame's addresses). */
function pseudoSum(buf: Uint8Array, proto: number, l4Len: number): number {
  const s = ETH_HLEN + 12;
  return sum16(buf, s, s + 8) + proto + l4Len;
}

/**
 * Completes a partial checksum in place, as skb_checksum_help() does: the field at
 * csum_start + csum_offset holds the folded pseudo-header sum; the one's-complement sum from
 * csum_start to the end of the IP packet (that field included) is complemented and stored there
 * (0 becomes 0xffff). Bounds are validate()'s.
 */
export function completeChecksum(buf: Uint8Array, vnet: Uint8Array): void {
  const start = u16le(vnet, VNET_CSUM_START);
  const field = start + u16le(vnet, VNET_CSUM_OFFSET);
  const ipEnd = ETH_HLEN + ((buf[IP_TOTAL_LEN] << 8) | buf[IP_TOTAL_LEN + 1]);
  const c = ~fold(sum16(buf, start, ipEnd)) & 0xffff;
  const v = c === 0 ? 0xffff : c;
  buf[field] = v >> 8;
  buf[field + 1] = v & 0xff;
}

/**
 * The IP datagram size of each segment a validated super-frame stands for (its IP and TCP/UDP
 * headers plus gso_size, at most the datagram itself): what must fit the egress MTU.
 */
export function segmentSize(buf: Uint8Array, f: ParsedFrame, vnet: Uint8Array): number {
  const l4 = f.l4Off;
  const hdrEnd = l4 + (f.proto === IPPROTO_TCP ? (buf[l4 + 12] >> 4) << 2 : UDP_HLEN);
  const total = (buf[IP_TOTAL_LEN] << 8) | buf[IP_TOTAL_LEN + 1];
  return Math.min(total, hdrEnd - ETH_HLEN + u16le(vnet, VNET_GSO_SIZE));
}

/** Where the Segmenter's segments go, one at a time: false when it refused the segment. */
export type SegmentSink = (buf: Buffer, len: number) => boolean;

/**
 * Cuts validated TCPv4 and UDP-GSO super-frames into wire frames in one preallocated buffer,
 * handing each to a sink before building the next.
 */
export class Segmenter {
  /** The one buffer every segment is built in: the sink must use it before it returns. */
  readonly out = Buffer.alloc(MAX_FRAME);
  /** Segments made, and segments the sink refused, since construction. */
  made = 0;
  refused = 0;

  /**
   * Segments buf[0..len) (parsed into f, validated against vnet) and sends each segment to
   * `sink`. Returns the number of segments the sink took; refused ones are counted in
   * `refused` and the rest still go. A frame whose payload fits in one segment becomes one
   * frame with its checksums completed.
   */
  segment(buf: Buffer, f: ParsedFrame, vnet: Uint8Array, sink: SegmentSink): number {
    const tcp = f.proto === IPPROTO_TCP;
    const ipEnd = ETH_HLEN + ((buf[IP_TOTAL_LEN] << 8) | buf[IP_TOTAL_LEN + 1]);
    const l4 = f.l4Off;
    const hdrEnd = l4 + (tcp ? (buf[l4 + 12] >> 4) << 2 : UDP_HLEN);
    const mss = u16le(vnet, VNET_GSO_SIZE);
    const payload = ipEnd - hdrEnd;
    const out = this.out;
    buf.copy(out, 0, 0, hdrEnd);
    const ipId = (buf[IP_ID] << 8) | buf[IP_ID + 1];
    const seq = tcp ? buf.readUInt32BE(l4 + TCP_SEQ) : 0;
    const flags = tcp ? buf[l4 + 13] : 0;
    const proto = tcp ? IPPROTO_TCP : IPPROTO_UDP;
    const n = payload <= 0 ? 1 : Math.ceil(payload / mss);
    let took = 0;
    for (let i = 0; i < n; i++) {
      const from = hdrEnd + i * mss;
      const chunk = i === n - 1 ? ipEnd - from : mss;
      buf.copy(out, hdrEnd, from, from + chunk);
      const end = hdrEnd + chunk;
      const ipLen = end - ETH_HLEN;
      out[IP_TOTAL_LEN] = ipLen >> 8;
      out[IP_TOTAL_LEN + 1] = ipLen & 0xff;
      const id = (ipId + i) & 0xffff;
      out[IP_ID] = id >> 8;
      out[IP_ID + 1] = id & 0xff;
      out[IP_CHECK] = 0;
      out[IP_CHECK + 1] = 0;
      const ipSum = ~fold(sum16(out, ETH_HLEN, l4)) & 0xffff;
      out[IP_CHECK] = ipSum >> 8;
      out[IP_CHECK + 1] = ipSum & 0xff;
      let check: number;
      if (tcp) {
        out.writeUInt32BE((seq + i * mss) >>> 0, l4 + TCP_SEQ);
        let fl = flags;
        if (i !== n - 1) fl &= ~(TCP_FIN | TCP_PSH);
        if (i !== 0) fl &= ~TCP_CWR;
        out[l4 + 13] = fl;
        check = l4 + TCP_CHECK;
      } else {
        const udpLen = end - l4;
        out[l4 + UDP_LEN] = udpLen >> 8;
        out[l4 + UDP_LEN + 1] = udpLen & 0xff;
        check = l4 + UDP_CHECK;
      }
      out[check] = 0;
      out[check + 1] = 0;
      const c = ~fold(sum16(out, l4, end, pseudoSum(out, proto, end - l4))) & 0xffff;
      const v = c === 0 && !tcp ? 0xffff : c;
      out[check] = v >> 8;
      out[check + 1] = v & 0xff;
      this.made++;
      if (sink(out, end)) took++;
      else this.refused++;
    }
    return took;
  }
}
