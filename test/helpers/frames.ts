import { ipToInt, macFromString } from '../../src/dataplane/packet';

export const MAC = {
  client: '02:00:00:00:00:50',
  balancer: '02:00:00:00:00:30',
  rs40: '02:00:00:00:00:40',
  rs111: '02:00:00:00:01:11',
  other: '02:00:00:00:00:99',
};

export interface FrameSpec {
  dstMac?: string;
  srcMac?: string;
  src?: string;
  dst?: string;
  sport?: number;
  dport?: number;
  proto?: 'tcp' | 'udp' | number;
  flags?: number;
  payload?: Buffer;
  ipOptions?: Buffer;
  fragment?: number; // raw value of the IP flags/fragment-offset field
  ttl?: number;
}

/** Builds an Ethernet/IPv4/TCP|UDP frame with correct IP and L4 checksums. */
export function frame(spec: FrameSpec = {}): Buffer {
  const proto = spec.proto === 'udp' ? 17 : spec.proto === 'tcp' || spec.proto === undefined ? 6 : spec.proto;
  const payload = spec.payload ?? Buffer.alloc(0);
  const opts = spec.ipOptions ?? Buffer.alloc(0);
  const ihl = 20 + opts.length;
  const l4len = proto === 6 ? 20 : proto === 17 ? 8 : 0;
  const total = ihl + l4len + payload.length;
  const f = Buffer.alloc(14 + total);
  macFromString(spec.dstMac ?? MAC.balancer).copy(f, 0);
  macFromString(spec.srcMac ?? MAC.client).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x40 | (ihl >> 2);
  f.writeUInt16BE(total, 16);
  f.writeUInt16BE(0x1234, 18);
  f.writeUInt16BE(spec.fragment ?? 0x4000, 20);
  f[22] = spec.ttl ?? 64;
  f[23] = proto;
  f.writeUInt32BE(ipToInt(spec.src ?? '10.0.10.50'), 26);
  f.writeUInt32BE(ipToInt(spec.dst ?? '10.0.10.100'), 30);
  opts.copy(f, 34);
  f.writeUInt16BE(checksum(f.subarray(14, 14 + ihl)), 24);
  const l4 = 14 + ihl;
  if (proto === 6 || proto === 17) {
    f.writeUInt16BE(spec.sport ?? 40000, l4);
    f.writeUInt16BE(spec.dport ?? 80, l4 + 2);
  }
  if (proto === 6) {
    f.writeUInt32BE(1000, l4 + 4);
    f[l4 + 12] = 5 << 4;
    f[l4 + 13] = spec.flags ?? 0x02;
    f.writeUInt16BE(64240, l4 + 14);
  } else if (proto === 17) {
    f.writeUInt16BE(8 + payload.length, l4 + 4);
  }
  payload.copy(f, l4 + l4len);
  if (proto === 6 || proto === 17) {
    const pseudo = Buffer.alloc(12 + l4len + payload.length);
    f.copy(pseudo, 0, 26, 34);
    pseudo[9] = proto;
    pseudo.writeUInt16BE(l4len + payload.length, 10);
    f.copy(pseudo, 12, l4);
    f.writeUInt16BE(checksum(pseudo), l4 + (proto === 6 ? 16 : 6));
  }
  return f;
}

export function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length & 1) sum += b[b.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export const SYN = 0x02;
export const ACK = 0x10;
export const FIN = 0x01;
export const RST = 0x04;
export const PSH = 0x08;
