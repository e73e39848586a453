import { ETH_HLEN, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from './contract';

// ARP for IPv4 over Ethernet (RFC 826), offsets from the start of the frame.
const ARP_HTYPE = ETH_HLEN;
const ARP_PTYPE = ETH_HLEN + 2;
const ARP_HLEN = ETH_HLEN + 4;
const ARP_PLEN = ETH_HLEN + 5;
const ARP_OPER = ETH_HLEN + 6;
export const ARP_SHA = ETH_HLEN + 8;
export const ARP_SPA = ETH_HLEN + 14;
export const ARP_THA = ETH_HLEN + 18;
export const ARP_TPA = ETH_HLEN + 24;
const ARP_FRAME_LEN = 60; // minimum Ethernet frame without FCS; the tail is padding

export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;

export interface ArpPacket {
  op: number;
  senderMac: Buffer;
  senderIp: number;
  targetMac: Buffer;
  targetIp: number;
}

/**
 * Parses an Ethernet/IPv4 ARP request or reply, or returns null when it is anything else or
 * malformed: another hardware or protocol type or length, an opcode other than 1 (request) or 2
 * (reply), or a sender MAC no station can have (zero, multicast, broadcast).
 */
export function parseArp(buf: Buffer, len: number): ArpPacket | null {
  if (len < ARP_TPA + 4 || buf.length < ARP_TPA + 4) return null;
  if (buf.readUInt16BE(12) !== ETHERTYPE_ARP) return null;
  if (buf.readUInt16BE(ARP_HTYPE) !== 1 || buf.readUInt16BE(ARP_PTYPE) !== ETHERTYPE_IPV4) return null;
  if (buf[ARP_HLEN] !== 6 || buf[ARP_PLEN] !== 4) return null;
  const op = buf.readUInt16BE(ARP_OPER);
  if (op !== ARP_REQUEST && op !== ARP_REPLY) return null;
  if (!isStationMac(buf, ARP_SHA)) return null;
  return {
    op,
    senderMac: Buffer.from(buf.subarray(ARP_SHA, ARP_SHA + 6)),
    senderIp: buf.readUInt32BE(ARP_SPA),
    targetMac: Buffer.from(buf.subarray(ARP_THA, ARP_THA + 6)),
    targetIp: buf.readUInt32BE(ARP_TPA),
  };
}

/** A MAC a single station can have: not all zeros, not multicast (the group bit; broadcast included). */
export function isStationMac(buf: Uint8Array, off = 0): boolean {
  if (buf[off] & 1) return false;
  for (let i = 0; i < 6; i++) if (buf[off + i] !== 0) return true;
  return false;
}

/** The Ethernet source equals the ARP sender MAC, as in every ARP frame a host's own stack sends. */
export function arpSourceConsistent(buf: Buffer): boolean {
  return buf.compare(buf, ARP_SHA, ARP_SHA + 6, 6, 12) === 0;
}

const BROADCAST = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const ZERO_MAC = Buffer.alloc(6);

export function buildArp(op: number, ethDst: Uint8Array, senderMac: Uint8Array, senderIp: number, targetMac: Uint8Array, targetIp: number): Buffer {
  const f = Buffer.alloc(ARP_FRAME_LEN);
  f.set(ethDst, 0);
  f.set(senderMac, 6);
  f.writeUInt16BE(ETHERTYPE_ARP, 12);
  f.writeUInt16BE(1, ARP_HTYPE);
  f.writeUInt16BE(ETHERTYPE_IPV4, ARP_PTYPE);
  f[ARP_HLEN] = 6;
  f[ARP_PLEN] = 4;
  f.writeUInt16BE(op, ARP_OPER);
  f.set(senderMac, ARP_SHA);
  f.writeUInt32BE(senderIp >>> 0, ARP_SPA);
  f.set(targetMac, ARP_THA);
  f.writeUInt32BE(targetIp >>> 0, ARP_TPA);
  return f;
}

/** "Who has targetIp? Tell senderIp" — broadcast. senderIp 0 makes it an ARP probe. */
export function arpRequest(senderMac: Uint8Array, senderIp: number, targetIp: number): Buffer {
  return buildArp(ARP_REQUEST, BROADCAST, senderMac, senderIp, ZERO_MAC, targetIp);
}

/** "ip is at mac", unicast to whoever asked. */
export function arpReply(mac: Uint8Array, ip: number, toMac: Uint8Array, toIp: number): Buffer {
  return buildArp(ARP_REPLY, toMac, mac, ip, toMac, toIp);
}

/** Gratuitous ARP announcing ip at mac (a broadcast request with sender = target = ip). */
export function gratuitousArp(mac: Uint8Array, ip: number): Buffer {
  return buildArp(ARP_REQUEST, BROADCAST, mac, ip, ZERO_MAC, ip);
}
