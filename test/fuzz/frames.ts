/**
 * Property-based fuzzing of the TypeScript data path (Forwarder.process) and of the differential
 * run (the same frames through the TypeScript path and the native addon, test/helpers/differential.ts).
 *
 * A scenario is a list of steps: batches of frames (each with or without a virtio-net header) and
 * control-plane actions between them (the clock moves and the table is swept, the egress MTU,
 * a server down with an on_down action, weights, thresholds, conn_reuse_mode, on_miss). Frames
 * are structured (Ethernet/IPv4/TCP/UDP/ICMP/ARP to and from the VIPs with random flags, ports,
 * lengths, IP options, fragments, TTL, bad checksums, TCP data offsets, VLAN tags, padding,
 * truncation at any offset, vnet headers with random gso_type/gso_size/csum offsets), raw random
 * bytes steered into the parser, and mutations of the pcap fixtures' frames.
 *
 * Properties of the TypeScript path (checkTs), after every frame and every step:
 *   - process() never throws and every frame gets a verdict (Forward, Drop or Arp);
 *   - a Drop is counted under exactly one drop reason (or, for an ICMP error over its rate limit,
 *     under lbd_icmp_errors_total{result="rate_limited"}), a Forward under none, an Arp in
 *     ArpFrames and handed to the control plane;
 *   - received = forwarded + Σ dropped by reason + ARP + ICMP rate-limited, RxBytes = Σ lengths;
 *   - a forwarded frame leaves with only its MACs changed (destination: its real server's, source:
 *     the egress interface's), same length; where the egress cannot carry the virtio-net header,
 *     a partial checksum is completed (those 2 bytes may change, nothing else) and a super-frame is
 *     cut into segments of at most gso_size whose payloads, in order, are the original's, each
 *     with a valid IP header checksum;
 *   - the connection and template tables stay consistent: size = occupied slots ≤ capacity, every
 *     entry found at its key, valid dest/state/flags; each server's ActiveConn/InActConn equal
 *     its entries, its persistent count its templates, each template's references the entries
 *     that hold one.
 * The differential (checkDifferential): both paths give identical verdicts, output frames and
 * headers, counters, drops and tables after every step (Pair.assertSame), and the invariants hold.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import fs from 'node:fs';
import path from 'node:path';
import { CONN_FLAGS_ALL, CONN_F_INACTIVE, CONN_F_PERSIST, ConnState, Counter, DROP_REASONS, SLOT_EMPTY, Verdict } from '../../src/dataplane/contract';
import { ConnTable, connPort } from '../../src/dataplane/conntable';
import type { Forwarder } from '../../src/dataplane/forwarder';
import { IcmpResult, ICMP_KIND_NAMES, ICMP_RESULT_NAMES } from '../../src/dataplane/icmp';
import { ipToInt, macFromString } from '../../src/dataplane/packet';
import { DEST_F_DOWN } from '../../src/scheduler/index';
import { arpRequest } from '../../src/dataplane/arp';
import { MAC, checksum, frame } from '../helpers/frames';
import { EGRESS_MAC, Pair, SERVICES, type SvcSpec, side } from '../helpers/differential';
import { readPcap } from '../helpers/pcap';

// ---- The configuration under test --------------------------------------------------------------

/** The differential's services, and an mh service under on_miss: hash. */
export const FUZZ_SERVICES: SvcSpec[] = [
  ...SERVICES,
  {
    name: 'mh-hash',
    vip: '10.0.10.103',
    port: 80,
    proto: 'tcp',
    scheduler: 'mh',
    options: { port: true, fallback: true, tableSize: 251 },
    onMissHash: true,
    reals: [
      { addr: '10.0.10.40', weight: 1 },
      { addr: '10.0.10.111', weight: 2 },
      { addr: '10.0.10.112', weight: 1 },
    ],
  },
];
const VIPS = ['10.0.10.100', '10.0.10.101', '10.0.10.102', '10.0.10.103'];
const PORTS = [80, 443, 53, 8080, 5353];
const CLIENTS = ['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.1.9'];

// ---- Scenarios ---------------------------------------------------------------------------------

export interface FrameCase {
  frame: Buffer;
  /** The frame's struct virtio_net_hdr (10 bytes), or none. */
  vnet?: Buffer;
}
export type Step =
  | { kind: 'frames'; frames: FrameCase[] }
  | { kind: 'tick'; seconds: number; sweep: number }
  | { kind: 'mtu'; mtu: number }
  | { kind: 'down'; dest: number; down: boolean; action: number }
  | { kind: 'weight'; dest: number; weight: number }
  | { kind: 'thresholds'; dest: number; upper: number; lower: number }
  | { kind: 'reuse'; svc: number; mode: number }
  | { kind: 'onMiss'; svc: number; on: boolean };
export interface Scenario {
  /** Connection-table capacity: small ones fill up (table_full). */
  size: number;
  /** TypeScript path only: an egress without virtio-net headers (software segmentation and checksums). */
  softwareEgress: boolean;
  steps: Step[];
}

/** The first five are a flow's (SYN, ACK, ACK|PSH, FIN|ACK, RST); then odd ones. */
const TCP_FLAG_SETS = [0x02, 0x10, 0x18, 0x11, 0x04, 0x12, 0x14, 0x00, 0x03, 0x01, 0x19, 0xc2];

/** The pseudo-header + L4 checksum, recomputed after a header byte changed (no-op for other protocols). */
function fixL4Checksum(f: Buffer): void {
  if (f.length < 34 || f.readUInt16BE(12) !== 0x0800) return;
  const ihl = (f[14] & 15) << 2;
  const l4 = 14 + ihl;
  const end = Math.min(f.length, 14 + f.readUInt16BE(16));
  const proto = f[23];
  const off = proto === 6 ? 16 : proto === 17 ? 6 : -1;
  if (off < 0 || l4 + off + 2 > end) return;
  f.writeUInt16BE(0, l4 + off);
  const pseudo = Buffer.alloc(12 + end - l4);
  f.copy(pseudo, 0, 26, 34);
  pseudo[9] = proto;
  pseudo.writeUInt16BE(end - l4, 10);
  f.copy(pseudo, 12, l4, end);
  f.writeUInt16BE(checksum(pseudo), l4 + off);
}

function vnetBuf(h: { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number }): Buffer {
  const b = Buffer.alloc(10);
  b[0] = h.flags;
  b[1] = h.gsoType;
  b.writeUInt16LE(h.hdrLen & 0xffff, 2);
  b.writeUInt16LE(h.gsoSize & 0xffff, 4);
  b.writeUInt16LE(h.csumStart & 0xffff, 6);
  b.writeUInt16LE(h.csumOffset & 0xffff, 8);
  return b;
}

/** A partial checksum as an offloading sender leaves it: the folded pseudo-header sum. */
function makePartial(f: Buffer, l4: number, proto: number): void {
  const end = 14 + f.readUInt16BE(16);
  let sum = f.readUInt16BE(26) + f.readUInt16BE(28) + f.readUInt16BE(30) + f.readUInt16BE(32) + proto + (end - l4);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  f.writeUInt16BE(sum, l4 + (proto === 6 ? 16 : 6));
}

const weighted = <T>(...a: [number, fc.Arbitrary<T>][]) => fc.oneof(...a.map(([weight, arbitrary]) => ({ weight, arbitrary })));
const addrArb = weighted(
  [6, fc.constantFrom(...CLIENTS)],
  [1, fc.integer({ min: 0, max: 0xffffffff }).map((n) => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`)],
);
const portArb = weighted([5, fc.integer({ min: 40000, max: 40007 })], [2, fc.integer({ min: 0, max: 65535 })]);
const macArb = weighted([12, fc.constant(MAC.balancer)], [1, fc.constantFrom(MAC.other, 'ff:ff:ff:ff:ff:ff', EGRESS_MAC)]);

interface VnetSpec {
  flags: number;
  gsoType: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
  partial: boolean;
}

/** Ethernet/IPv4/TCP|UDP|other to (mostly) the VIPs, with every header field a fuzzer may bend, and maybe a virtio-net header. */
const l4FrameArb: fc.Arbitrary<FrameCase> = fc
  .record({
    // Most frames are well-formed (flows to open, continue and close); the rest bend one or more fields.
    clean: weighted([3, fc.constant(true)], [2, fc.constant(false)]),
    proto: weighted([6, fc.constant(6)], [3, fc.constant(17)], [1, fc.constantFrom(1, 47, 50, 132, 0, 255)]),
    src: addrArb,
    dst: weighted([10, fc.constantFrom(...VIPS)], [1, fc.constantFrom('10.0.10.99', '10.0.10.30', '255.255.255.255')]),
    sport: portArb,
    dport: weighted([10, fc.constantFrom(...PORTS)], [1, fc.integer({ min: 0, max: 65535 })]),
    flags: weighted([6, fc.constantFrom(...TCP_FLAG_SETS)], [1, fc.integer({ min: 0, max: 255 })]),
    svc: fc.nat({ max: FUZZ_SERVICES.length - 1 }),
    flowFlags: fc.constantFrom(0x02, 0x02, 0x10, 0x10, 0x18, 0x18, 0x11, 0x04),
    payloadLen: weighted([12, fc.integer({ min: 0, max: 300 })], [3, fc.integer({ min: 301, max: 1600 })], [1, fc.integer({ min: 1601, max: 9000 })]),
    superLen: weighted([1, fc.integer({ min: 9001, max: 65400 })], [9, fc.constant(0)]),
    fill: fc.integer({ min: 0, max: 255 }),
    ipOptWords: weighted([12, fc.constant(0)], [1, fc.integer({ min: 1, max: 10 })]),
    fragment: weighted([8, fc.constantFrom(0x4000, 0)], [1, fc.constantFrom(0x2000, 0x6000, 0x0001, 0x00b9)], [1, fc.integer({ min: 0, max: 0xffff })]),
    ttl: fc.integer({ min: 0, max: 255 }),
    dstMac: macArb,
    srcMac: fc.constantFrom(MAC.client, MAC.rs40, '00:00:00:00:00:00'),
    tcpDataOff: weighted([12, fc.constant(5)], [1, fc.integer({ min: 0, max: 15 })]),
    badIpCsum: weighted([9, fc.constant(false)], [1, fc.constant(true)]),
    badL4Csum: weighted([9, fc.constant(false)], [1, fc.constant(true)]),
    totalLenDelta: weighted([14, fc.constant(0)], [1, fc.integer({ min: -64, max: 64 })]),
    vlan: weighted([19, fc.constant(false)], [1, fc.constant(true)]),
    pad: weighted([10, fc.constant(0)], [1, fc.integer({ min: 1, max: 40 })]),
    truncate: weighted([10, fc.constant(-1)], [1, fc.nat()]),
    vnet: weighted<VnetSpec | Uint8Array | null>(
      [6, fc.constant(null)],
      [
        3,
        fc.record({
          flags: fc.constantFrom(0, 1, 2, 3),
          gsoType: fc.constantFrom(0, 1, 0x81, 5, 3, 4, 0x85),
          gsoSize: weighted([4, fc.constantFrom(536, 1448, 1460, 1200, 8948)], [1, fc.integer({ min: 0, max: 65535 })]),
          csumStart: weighted([6, fc.constant(-1)], [1, fc.integer({ min: 0, max: 200 })]),
          csumOffset: weighted([6, fc.constant(-1)], [1, fc.integer({ min: 0, max: 40 })]),
          partial: fc.boolean(),
        }),
      ],
      [1, fc.uint8Array({ minLength: 10, maxLength: 10 })],
    ),
  })
  .map((bent): FrameCase => {
    const s = bent.clean
      ? {
          ...bent,
          proto: FUZZ_SERVICES[bent.svc].proto === 'udp' ? 17 : 6,
          dst: FUZZ_SERVICES[bent.svc].vip,
          dport: FUZZ_SERVICES[bent.svc].port,
          flags: bent.flowFlags,
          fragment: 0x4000,
          dstMac: MAC.balancer,
          tcpDataOff: 5,
          badIpCsum: false,
          totalLenDelta: 0,
          vlan: false,
          truncate: -1,
          // A header as a TSO/GRO sender gives it: the frame's own type, its checksum partial.
          vnet:
            bent.vnet === null || bent.vnet instanceof Uint8Array
              ? null
              : {
                  ...bent.vnet,
                  gsoType: bent.vnet.gsoType === 0 ? 0 : FUZZ_SERVICES[bent.svc].proto === 'udp' ? 5 : bent.vnet.gsoType & 0x80 ? 0x81 : 1,
                  flags: bent.vnet.gsoType === 0 ? bent.vnet.flags : 1,
                  gsoSize: bent.vnet.gsoSize || 1448,
                  csumStart: -1,
                  csumOffset: -1,
                  partial: true,
                },
        }
      : bent;
    const len = s.superLen > 0 && s.vnet !== null ? s.superLen : s.payloadLen;
    const payload = Buffer.alloc(len);
    for (let i = 0; i < len; i++) payload[i] = (s.fill + i * 7) & 255;
    const ipOptions = s.ipOptWords ? Buffer.from(Array.from({ length: s.ipOptWords * 4 }, (_, i) => (i === 0 ? 0x94 : i === 1 ? 4 : 1))) : undefined;
    let f = frame({
      proto: s.proto,
      src: s.src,
      dst: s.dst,
      sport: s.sport,
      dport: s.dport,
      flags: s.flags,
      payload,
      ipOptions,
      fragment: s.fragment,
      ttl: s.ttl,
      dstMac: s.dstMac,
      srcMac: s.srcMac,
    });
    const l4 = 14 + ((f[14] & 15) << 2);
    if (s.proto === 6 && s.tcpDataOff !== 5) {
      f[l4 + 12] = s.tcpDataOff << 4;
      fixL4Checksum(f);
    }
    let vnet: Buffer | undefined;
    if (s.vnet instanceof Uint8Array) vnet = Buffer.from(s.vnet);
    else if (s.vnet !== null) {
      const v = s.vnet;
      const proto = s.proto === 17 ? 17 : 6;
      if (v.partial && (s.proto === 6 || s.proto === 17) && (v.flags & 1) !== 0) makePartial(f, l4, proto);
      vnet = vnetBuf({
        flags: v.flags,
        gsoType: v.gsoType,
        hdrLen: l4 + (s.proto === 17 ? 8 : 20),
        gsoSize: v.gsoSize,
        csumStart: v.csumStart >= 0 ? v.csumStart : l4,
        csumOffset: v.csumOffset >= 0 ? v.csumOffset : s.proto === 17 ? 6 : 16,
      });
    }
    if (s.badIpCsum) f[25] ^= 0x5a;
    if (s.badL4Csum && (s.proto === 6 || s.proto === 17)) f[l4 + (s.proto === 6 ? 16 : 6)] ^= 0xa5;
    if (s.totalLenDelta !== 0) f.writeUInt16BE(Math.max(0, Math.min(65535, f.readUInt16BE(16) + s.totalLenDelta)), 16);
    if (s.pad) f = Buffer.concat([f, Buffer.alloc(s.pad)]);
    if (s.vlan) f = Buffer.concat([f.subarray(0, 12), Buffer.from([0x81, 0x00, 0x00, 0x0a]), f.subarray(12)]);
    if (s.truncate >= 0) f = f.subarray(0, s.truncate % (f.length + 1));
    return { frame: Buffer.from(f), vnet };
  });

/** An ICMP error to a VIP quoting a reply VIP:vport → client:cport (the flows' own, mostly), or other ICMP. */
const icmpFrameArb: fc.Arbitrary<FrameCase> = fc
  .record({
    type: weighted([6, fc.constantFrom(3, 11)], [1, fc.constantFrom(0, 8, 5, 12)], [1, fc.integer({ min: 0, max: 255 })]),
    code: weighted([3, fc.constant(4)], [2, fc.integer({ min: 0, max: 15 })]),
    // Mostly about a service's flow (VIP:port, its protocol), so that some find their entry.
    svc: weighted([4, fc.nat({ max: FUZZ_SERVICES.length - 1 })], [1, fc.constant(-1)]),
    vip: fc.constantFrom(...VIPS, '10.0.10.99'),
    outerDst: weighted([8, fc.constant('')], [1, fc.constantFrom(...VIPS)]),
    vport: fc.constantFrom(...PORTS),
    client: addrArb,
    cport: portArb,
    qproto: weighted([6, fc.constantFrom(6, 17)], [1, fc.integer({ min: 0, max: 255 })]),
    qVerIhl: weighted([8, fc.constant(0x45)], [1, fc.integer({ min: 0, max: 255 })]),
    qFrag: weighted([8, fc.constant(0x4000)], [1, fc.integer({ min: 0, max: 0xffff })]),
    extra: fc.integer({ min: 0, max: 600 }),
    dstMac: macArb,
    truncate: weighted([8, fc.constant(-1)], [1, fc.nat()]),
  })
  .map((bent): FrameCase => {
    const svc = FUZZ_SERVICES[bent.svc];
    const s = svc
      ? { ...bent, vip: svc.vip, vport: svc.port, qproto: svc.proto === 'udp' ? 17 : 6, type: bent.type === 3 || bent.type === 11 ? bent.type : 3 }
      : bent;
    const q = Buffer.alloc(20 + 8 + s.extra);
    q[0] = s.qVerIhl;
    q.writeUInt16BE(q.length, 2);
    q.writeUInt16BE(s.qFrag, 6);
    q[8] = 64;
    q[9] = s.qproto;
    q.writeUInt32BE(ipToInt(s.vip), 12);
    q.writeUInt32BE(ipToInt(s.client), 16);
    q.writeUInt16BE(s.vport, 20);
    q.writeUInt16BE(s.cport, 22);
    const icmp = Buffer.concat([Buffer.from([s.type, s.code, 0, 0, 0, 0, 0x05, 0x78]), q]);
    icmp.writeUInt16BE(checksum(icmp), 2);
    let f = frame({ proto: 1, src: '10.0.20.1', dst: s.outerDst || s.vip, payload: icmp, dstMac: s.dstMac, srcMac: '02:00:00:00:20:01' });
    if (s.truncate >= 0) f = f.subarray(0, s.truncate % (f.length + 1));
    return { frame: Buffer.from(f) };
  });

const arpFrameArb: fc.Arbitrary<FrameCase> = fc
  .record({
    target: fc.constantFrom(...VIPS, '10.0.10.30', '10.0.10.40'),
    sender: fc.constantFrom('10.0.10.50', '10.0.10.40', '10.0.10.111'),
    mutations: fc.array(fc.tuple(fc.nat({ max: 63 }), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
    truncate: weighted([6, fc.constant(-1)], [1, fc.nat()]),
  })
  .map((s): FrameCase => {
    let f = Buffer.from(arpRequest(macFromString(MAC.client), ipToInt(s.sender), ipToInt(s.target)));
    for (const [off, v] of s.mutations) if (off < f.length && off !== 12 && off !== 13) f[off] = v;
    if (s.truncate >= 0) f = f.subarray(0, s.truncate % (f.length + 1));
    return { frame: Buffer.from(f) };
  });

/** Random bytes, often steered deeper into the parser (our MAC, IPv4, version 4, a VIP, a service port). */
const rawFrameArb: fc.Arbitrary<FrameCase> = fc
  .record({
    bytes: fc.uint8Array({ maxLength: 160 }),
    steer: fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }),
    vip: fc.constantFrom(...VIPS),
    port: fc.constantFrom(...PORTS),
    proto: fc.constantFrom(6, 17, 1),
    vnet: weighted([6, fc.constant(null)], [1, fc.uint8Array({ minLength: 10, maxLength: 10 })]),
  })
  .map((s): FrameCase => {
    const f = Buffer.from(s.bytes);
    const n = f.length;
    if (n >= 6 && s.steer[0]) macFromString(MAC.balancer).copy(f, 0);
    if (n >= 14 && s.steer[1]) f.writeUInt16BE(0x0800, 12);
    if (n >= 15 && s.steer[2]) f[14] = 0x45;
    if (n >= 18 && s.steer[3]) f.writeUInt16BE(Math.max(0, n - 14), 16);
    if (n >= 22 && s.steer[4]) f.writeUInt16BE(0, 20);
    if (n >= 24 && s.steer[5]) f[23] = s.proto;
    if (n >= 38 && s.steer[6]) {
      f.writeUInt32BE(ipToInt(s.vip), 30);
      f.writeUInt16BE(s.port, 36);
    }
    return { frame: f, vnet: s.vnet ? Buffer.from(s.vnet) : undefined };
  });

/** A pcap fixture's frame with bytes changed, cut short or lengthened. */
function pcapFrameArb(fixtures: readonly Buffer[]): fc.Arbitrary<FrameCase> {
  return fc
    .record({
      i: fc.nat({ max: fixtures.length - 1 }),
      mutations: fc.array(fc.tuple(fc.nat({ max: 1600 }), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      truncate: weighted([4, fc.constant(-1)], [1, fc.nat()]),
      extend: weighted([6, fc.constant(0)], [1, fc.integer({ min: 1, max: 64 })]),
    })
    .map((s): FrameCase => {
      let f = Buffer.from(fixtures[s.i]);
      // Mostly in the headers, where the parser looks.
      for (const [off, v] of s.mutations) {
        const at = off % Math.min(f.length || 1, off & 1 ? 64 : 1600);
        if (at < f.length) f[at] = v;
      }
      if (s.truncate >= 0) f = f.subarray(0, s.truncate % (f.length + 1));
      if (s.extend) f = Buffer.concat([f, Buffer.alloc(s.extend, 0xee)]);
      return { frame: Buffer.from(f) };
    });
}

export function frameArb(fixtures: readonly Buffer[]): fc.Arbitrary<FrameCase> {
  const arbs: [number, fc.Arbitrary<FrameCase>][] = [
    [10, l4FrameArb],
    [2, icmpFrameArb],
    [1, arpFrameArb],
    [2, rawFrameArb],
  ];
  if (fixtures.length) arbs.push([2, pcapFrameArb(fixtures)]);
  return weighted(...arbs);
}

const DESTS = 16; // indices modulo the servers the services have
const controlArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('tick' as const),
      seconds: weighted([5, fc.integer({ min: 0, max: 5 })], [1, fc.integer({ min: 6, max: 2000 })]),
      sweep: fc.integer({ min: 0, max: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('mtu' as const), mtu: fc.constantFrom(0, 0, 576, 1400, 1500, 9000) }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('down' as const), dest: fc.nat({ max: DESTS }), down: fc.boolean(), action: fc.constantFrom(0, 1, 2) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('weight' as const), dest: fc.nat({ max: DESTS }), weight: fc.constantFrom(0, 1, 2, 5) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('thresholds' as const),
      dest: fc.nat({ max: DESTS }),
      upper: fc.constantFrom(0, 1, 3, 8),
      lower: fc.constantFrom(0, 1, 2),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reuse' as const), svc: fc.nat({ max: 7 }), mode: fc.constantFrom(0, 1, 2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('onMiss' as const), svc: fc.nat({ max: 7 }), on: fc.boolean() }) },
);

export interface ScenarioShape {
  /** Most frames in a batch. */
  batch?: number;
  /** Most steps in a scenario. */
  steps?: number;
}

export function scenarioArb(fixtures: readonly Buffer[], shape: ScenarioShape = {}): fc.Arbitrary<Scenario> {
  const frames = frameArb(fixtures);
  const batch = fc.record({ kind: fc.constant('frames' as const), frames: fc.array(frames, { minLength: 1, maxLength: shape.batch ?? 64, size: 'max' }) });
  return fc.record({
    size: fc.constantFrom(16, 4096),
    softwareEgress: fc.boolean(),
    steps: fc.array(weighted<Step>([4, batch], [2, controlArb]), { minLength: 1, maxLength: shape.steps ?? 12, size: 'max' }),
  });
}

// ---- Control-plane steps, the same on every forwarder -------------------------------------------

/** Applies a control step to a forwarder; `ms` is the ICMP clock's cell (advanced with the clock). */
export function applyControl(fw: Forwarder, s: Step, ms: { now: number }): void {
  const views = fw.dests.views;
  const svcOf = (d: number) => fw.services.all[fw.dests.svc[d] - 1];
  switch (s.kind) {
    case 'frames':
      return;
    case 'tick':
      fw.now += s.seconds;
      ms.now += s.seconds * 1000 + 1;
      if (s.sweep) fw.sweep(Math.ceil((fw.conns.slots * s.sweep) / 4));
      return;
    case 'mtu':
      fw.egressMtu = s.mtu;
      return;
    case 'down': {
      const d = s.dest % views.length;
      fw.dests.downAction[d] = s.action;
      if (s.down) views[d].flags |= DEST_F_DOWN;
      else views[d].flags &= ~DEST_F_DOWN;
      svcOf(d)?.changed();
      return;
    }
    case 'weight': {
      const d = s.dest % views.length;
      views[d].weight = s.weight;
      svcOf(d)?.changed();
      return;
    }
    case 'thresholds': {
      const d = s.dest % views.length;
      views[d].setThresholds(s.upper, s.upper === 0 ? 0 : Math.min(s.lower, s.upper));
      return;
    }
    case 'reuse': {
      const svc = fw.services.all[s.svc % FUZZ_SERVICES.length];
      if (svc) svc.connReuseMode = s.mode;
      return;
    }
    case 'onMiss': {
      const svc = fw.services.all[s.svc % FUZZ_SERVICES.length];
      // on_miss: hash exists for the consistent schedulers only (config rules.ts).
      if (svc && (svc.scheduler.name === 'mh' || svc.scheduler.name === 'sh')) svc.onMissHash = s.on;
      return;
    }
  }
}

// ---- Invariants --------------------------------------------------------------------------------

/** A table's own consistency: size = occupied slots ≤ capacity, every entry found at its key, valid fields. */
export function checkTable(t: ConnTable, name: string, dests: number, template: boolean): void {
  let occupied = 0;
  for (let i = 0; i < t.slots; i++) {
    const d = t.dest[i];
    if (d === SLOT_EMPTY) continue;
    occupied++;
    if (d < 0 || d >= dests) assert.fail(`${name}: slot ${i} points at real server ${d} of ${dests}`);
    const found = t.find(t.keyAddr[i], t.keyPort[i]);
    if (found !== i) assert.fail(`${name}: the entry in slot ${i} is found at ${found} (its key: ${t.keyAddr[i]}/${t.keyPort[i].toString(16)})`);
    if (template) {
      if (t.state[i] !== ConnState.Template) assert.fail(`${name}: slot ${i} has state ${t.state[i]}`);
    } else if (t.state[i] > ConnState.Udp || (t.flags[i] & ~CONN_FLAGS_ALL) !== 0) {
      assert.fail(`${name}: slot ${i} has state ${t.state[i]}, flags ${t.flags[i]}`);
    }
  }
  if (occupied !== t.size) assert.fail(`${name}: size ${t.size}, ${occupied} occupied slots`);
  if (t.size > t.capacity) assert.fail(`${name}: size ${t.size} over capacity ${t.capacity}`);
}

/** Both tables, and what the real servers count of them (ActiveConn, InActConn, persistent, template references). */
export function checkInvariants(fw: Forwarder): void {
  const n = fw.dests.views.length;
  checkTable(fw.conns, 'conns', n, false);
  checkTable(fw.templates, 'templates', n, true);
  const active = new Array<number>(n).fill(0);
  const inactive = new Array<number>(n).fill(0);
  const persistent = new Array<number>(n).fill(0);
  const refs = new Map<number, number>();
  const c = fw.conns;
  for (let i = 0; i < c.slots; i++) {
    if (c.dest[i] === SLOT_EMPTY) continue;
    if ((c.flags[i] & CONN_F_INACTIVE) !== 0) inactive[c.dest[i]]++;
    else active[c.dest[i]]++;
    if ((c.flags[i] & CONN_F_PERSIST) !== 0) {
      const svc = fw.services.all[c.keyPort[i] >>> 16];
      if (svc === undefined) continue;
      const t = fw.templates.find((c.keyAddr[i] & svc.persistenceMask) >>> 0, connPort(svc.index, 0));
      if (t < 0) assert.fail(`conns: slot ${i} holds a reference on a template that is not there`);
      refs.set(t, (refs.get(t) ?? 0) + 1);
    }
  }
  const t = fw.templates;
  for (let i = 0; i < t.slots; i++) {
    if (t.dest[i] === SLOT_EMPTY) continue;
    persistent[t.dest[i]]++;
    if (t.refs[i] !== (refs.get(i) ?? 0)) assert.fail(`templates: slot ${i} has ${t.refs[i]} references, ${refs.get(i) ?? 0} entries hold one`);
  }
  for (let d = 0; d < n; d++) {
    if (fw.dests.active[d] !== active[d] || fw.dests.inactive[d] !== inactive[d]) {
      assert.fail(`real server ${d}: ActiveConn ${fw.dests.active[d]}/InActConn ${fw.dests.inactive[d]}, its entries ${active[d]}/${inactive[d]}`);
    }
    if (fw.dests.persistent[d] !== persistent[d]) assert.fail(`real server ${d}: persistent ${fw.dests.persistent[d]}, its templates ${persistent[d]}`);
  }
}

// ---- The properties ----------------------------------------------------------------------------

const sumDrops = (fw: Forwarder) => fw.drops.reduce((a, b) => a + b, 0);
const icmpRateLimited = (fw: Forwarder) => {
  let n = 0;
  for (let k = 0; k < ICMP_KIND_NAMES.length; k++) n += fw.icmp.errors[k * ICMP_RESULT_NAMES.length + IcmpResult.RateLimited];
  return n;
};
const hex = (b: Buffer) => b.toString('hex');

/** The IPv4 header checksum folds to zero. */
function ipHeaderOk(f: Buffer): boolean {
  return checksum(f.subarray(14, 14 + ((f[14] & 15) << 2))) === 0;
}

/** Counts properties checked and frames run (the long run's summary). */
export const stats = {
  frames: 0,
  checks: 0,
  scenarios: 0,
  /** What the TypeScript-path runs exercised: verdicts, drops by reason, counters of interest. */
  coverage: {
    forwarded: 0,
    arp: 0,
    drops: Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<string, number>,
    superFrames: 0,
    softwareSegments: 0,
    icmpForwarded: 0,
    icmpRateLimited: 0,
    newConns: 0,
    expired: 0,
  },
};

/**
 * The TypeScript path's properties on one scenario (throws an AssertionError naming the frame and
 * the broken property). Returns the frames run.
 */
export function checkTs(sc: Scenario): number {
  const ms = { now: 0 };
  const s = side(FUZZ_SERVICES, sc.size, { icmpClock: () => ms.now });
  s.sink.vnet = !sc.softwareEgress;
  const fw = s.fw;
  const egressMac = macFromString(EGRESS_MAC);
  let frames = 0;
  let forwarded = 0;
  let rxBytes = 0;
  let checks = 0;
  for (const [k, step] of sc.steps.entries()) {
    if (step.kind !== 'frames') {
      applyControl(fw, step, ms);
      checkInvariants(fw);
      checks++;
      continue;
    }
    for (const [j, fc_] of step.frames.entries()) {
      const where = `step ${k} frame ${j} (${hex(fc_.frame.subarray(0, 80))}${fc_.vnet ? `, vnet ${hex(fc_.vnet)}` : ''})`;
      const buf = Buffer.from(fc_.frame);
      const len = buf.length;
      const sentBefore = s.sent.length;
      const arpsBefore = s.arps.length;
      const dropsBefore = sumDrops(fw);
      const limitedBefore = icmpRateLimited(fw);
      const arpBefore = fw.counters[Counter.ArpFrames];
      let v: Verdict;
      try {
        v = fw.process(buf, len, undefined, fc_.vnet);
      } catch (e) {
        assert.fail(`${where}: process() threw ${(e as Error)?.stack ?? e}`);
      }
      frames++;
      rxBytes += len;
      const dDrops = sumDrops(fw) - dropsBefore;
      const dLimited = icmpRateLimited(fw) - limitedBefore;
      const dArp = fw.counters[Counter.ArpFrames] - arpBefore;
      const out = s.sent.slice(sentBefore);
      if (v === Verdict.Forward) {
        forwarded++;
        if (dDrops !== 0 || dArp !== 0) assert.fail(`${where}: forwarded, yet counted as a drop or ARP`);
        checkForwarded(fc_, out, egressMac, fw, sc.softwareEgress, where);
      } else if (v === Verdict.Drop) {
        if (dDrops + dLimited !== 1 || dArp !== 0) assert.fail(`${where}: dropped, counted under ${dDrops} drop reasons and ${dLimited} ICMP rate limits`);
        // Only a software segmentation the egress refused part of may have sent anything (none here: the sink takes all).
        if (out.length !== 0) assert.fail(`${where}: dropped, yet ${out.length} frames sent`);
      } else if (v === Verdict.Arp) {
        if (dArp !== 1 || dDrops !== 0 || s.arps.length !== arpsBefore + 1 || out.length !== 0)
          assert.fail(`${where}: ARP, not counted as one or not handed over`);
        if (!s.arps[arpsBefore].equals(fc_.frame)) assert.fail(`${where}: the ARP frame handed over differs`);
      } else {
        assert.fail(`${where}: verdict ${v as number}`);
      }
      checks += 3;
    }
    checkInvariants(fw);
    checks++;
  }
  const c = fw.counters;
  assert.equal(c[Counter.RxFrames], frames, 'RxFrames = frames processed');
  assert.equal(c[Counter.RxBytes], rxBytes, 'RxBytes = their bytes');
  const dropped = sumDrops(fw);
  if (c[Counter.RxFrames] !== forwarded + dropped + c[Counter.ArpFrames] + icmpRateLimited(fw)) {
    const named = Object.fromEntries(DROP_REASONS.map((r, i) => [r, fw.drops[i]]).filter(([, n]) => n));
    assert.fail(
      `received ${c[Counter.RxFrames]} ≠ forwarded ${forwarded} + dropped ${dropped} ${JSON.stringify(named)} + ARP ${c[Counter.ArpFrames]} + ICMP rate-limited ${icmpRateLimited(fw)}`,
    );
  }
  if (!sc.softwareEgress) assert.equal(c[Counter.TxFrames], forwarded, 'TxFrames = frames forwarded (a header-carrying egress)');
  checks += 4;
  const cov = stats.coverage;
  cov.forwarded += forwarded;
  cov.arp += c[Counter.ArpFrames];
  DROP_REASONS.forEach((r, i) => (cov.drops[r] += fw.drops[i]));
  cov.superFrames += c[Counter.SuperFrames];
  cov.softwareSegments += c[Counter.SoftwareSegments];
  cov.icmpForwarded += c[Counter.IcmpForwarded];
  cov.icmpRateLimited += icmpRateLimited(fw);
  cov.newConns += c[Counter.NewConns];
  cov.expired += c[Counter.ExpiredConns];
  stats.frames += frames;
  stats.checks += checks;
  stats.scenarios++;
  return frames;
}

/** A forwarded frame: MACs rewritten, and otherwise its bytes, or its completed checksum, or its segments. */
function checkForwarded(fc_: FrameCase, out: Buffer[], egressMac: Buffer, fw: Forwarder, software: boolean, where: string): void {
  const orig = fc_.frame;
  const known = new Set<string>();
  for (let d = 0; d < fw.dests.views.length; d++) if (fw.dests.macKnown[d]) known.add(hex(Buffer.from(fw.dests.mac.subarray(d * 6, d * 6 + 6))));
  const macsOk = (f: Buffer) => f.subarray(6, 12).equals(egressMac) && known.has(hex(f.subarray(0, 6)));
  const v = fc_.vnet;
  const work = v !== undefined && ((v[0] & 1) !== 0 || v[1] !== 0);
  const icmp = orig.length > 23 && orig[23] === 1;
  if (!software || !work || icmp) {
    if (out.length !== 1) assert.fail(`${where}: forwarded as ${out.length} frames`);
    const o = out[0];
    if (o.length !== orig.length) assert.fail(`${where}: forwarded with length ${o.length}, was ${orig.length}`);
    if (!macsOk(o)) assert.fail(`${where}: MACs ${hex(o.subarray(0, 12))}: not a real server's from the egress interface's`);
    if (!o.subarray(12).equals(orig.subarray(12))) assert.fail(`${where}: bytes past the MACs changed`);
    return;
  }
  // An egress without headers: the checksum completed here, or the super-frame cut here.
  if (v[1] === 0) {
    if (out.length !== 1) assert.fail(`${where}: a partial checksum forwarded as ${out.length} frames`);
    const o = out[0];
    const field = v.readUInt16LE(6) + v.readUInt16LE(8);
    if (o.length !== orig.length || !macsOk(o)) assert.fail(`${where}: a partial checksum: length or MACs wrong`);
    for (let i = 12; i < o.length; i++) {
      if (o[i] !== orig[i] && i !== field && i !== field + 1) assert.fail(`${where}: byte ${i} changed completing the checksum at ${field}`);
    }
    return;
  }
  const l4 = 14 + ((orig[14] & 15) << 2);
  const tcp = orig[23] === 6;
  const hdrEnd = l4 + (tcp ? (orig[l4 + 12] >> 4) << 2 : 8);
  const ipEnd = 14 + orig.readUInt16BE(16);
  const mss = v.readUInt16LE(4);
  if (out.length < 1) assert.fail(`${where}: a super-frame forwarded as no segment`);
  const payload: Buffer[] = [];
  for (const [i, o] of out.entries()) {
    if (!macsOk(o)) assert.fail(`${where}: segment ${i}: MACs`);
    if (o.length > hdrEnd + mss) assert.fail(`${where}: segment ${i} of ${o.length} bytes, more than headers ${hdrEnd} + gso_size ${mss}`);
    if (!ipHeaderOk(o)) assert.fail(`${where}: segment ${i}: IP header checksum`);
    if (14 + o.readUInt16BE(16) !== o.length) assert.fail(`${where}: segment ${i}: IP total length`);
    if (!o.subarray(26, 34).equals(orig.subarray(26, 34))) assert.fail(`${where}: segment ${i}: addresses`);
    payload.push(o.subarray(hdrEnd));
  }
  if (!Buffer.concat(payload).equals(orig.subarray(hdrEnd, ipEnd))) assert.fail(`${where}: the segments' payloads are not the super-frame's`);
}

/**
 * The differential on one scenario: the same steps on a TypeScript and a native forwarder, all
 * compared after every step (Pair.assertSame), the invariants checked on the TypeScript side.
 */
export function checkDifferential(sc: Scenario): number {
  const ms = { now: 0 };
  const p = new Pair(FUZZ_SERVICES, sc.size, { icmpClock: () => ms.now });
  let frames = 0;
  let checks = 0;
  try {
    for (const [k, step] of sc.steps.entries()) {
      if (step.kind === 'frames') {
        const withVnet = step.frames.some((f) => f.vnet !== undefined);
        p.run(
          step.frames.map((f) => f.frame),
          withVnet ? { vnet: step.frames.map((f) => f.vnet ?? Buffer.alloc(10)) } : {},
        );
        frames += step.frames.length;
        checks += step.frames.length; // a verdict compared per frame
      } else {
        // The ICMP clock is shared by both sides: advanced once.
        p.both((fw) => applyControl(fw, step, fw === p.ts.fw ? ms : { now: 0 }));
      }
      p.assertSame(`step ${k}`);
      checkInvariants(p.ts.fw);
      checks += 2;
    }
  } finally {
    p.dp.close();
  }
  stats.frames += frames;
  stats.checks += checks;
  stats.scenarios++;
  return frames;
}

// ---- Fixtures: a failing scenario, written and replayed --------------------------------------

interface StoredScenario {
  property: 'ts' | 'differential';
  seed?: number;
  error?: string;
  scenario: { size: number; softwareEgress: boolean; steps: unknown[] };
}

export function encodeScenario(sc: Scenario): StoredScenario['scenario'] {
  return {
    size: sc.size,
    softwareEgress: sc.softwareEgress,
    steps: sc.steps.map((s) =>
      s.kind === 'frames' ? { kind: 'frames', frames: s.frames.map((f) => ({ frame: hex(f.frame), ...(f.vnet ? { vnet: hex(f.vnet) } : {}) })) } : s,
    ),
  };
}

export function decodeScenario(o: StoredScenario['scenario']): Scenario {
  return {
    size: o.size,
    softwareEgress: o.softwareEgress,
    steps: o.steps.map((s) => {
      const st = s as { kind: string; frames?: { frame: string; vnet?: string }[] };
      if (st.kind !== 'frames') return st as Step;
      return { kind: 'frames', frames: st.frames!.map((f) => ({ frame: Buffer.from(f.frame, 'hex'), vnet: f.vnet ? Buffer.from(f.vnet, 'hex') : undefined })) };
    }),
  };
}

export function writeFixture(dir: string, property: 'ts' | 'differential', sc: Scenario, seed: number | undefined, error: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const body = JSON.stringify({ property, seed, error: error.slice(0, 2000), scenario: encodeScenario(sc) } satisfies StoredScenario, null, 1);
  const file = path.join(dir, `${property}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}.json`);
  fs.writeFileSync(file, body + '\n');
  return file;
}

/** Every stored failing scenario of `dir`, to be replayed. */
export function readFixtures(dir: string): { file: string; property: 'ts' | 'differential'; scenario: Scenario }[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => {
      const o = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as StoredScenario;
      return { file: f, property: o.property, scenario: decodeScenario(o.scenario) };
    });
}

export async function pcapFixtures(dir: string): Promise<Buffer[]> {
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.pcap')) : [];
  const out: Buffer[] = [];
  for (const f of files.sort()) out.push(...(await readPcap(path.join(dir, f))));
  return out;
}

// ---- Runs --------------------------------------------------------------------------------------

export interface RunOptions {
  seed: number;
  /** Stop after this many frames, or at this time (ms since the epoch), whichever first. */
  frames?: number;
  deadline?: number;
  /** Which properties: the TypeScript path's, the differential, or both in turn. */
  properties: ('ts' | 'differential')[];
  /** Runs (scenarios) per fast-check round. */
  runsPerRound?: number;
  shape?: ScenarioShape;
  /** Where failing scenarios are written (none: not written). */
  fixtureDir?: string;
  /** Most failures before giving up. */
  maxFailures?: number;
  log?: (s: string) => void;
}

export interface RunSummary {
  frames: number;
  scenarios: number;
  propertiesChecked: number;
  failures: { property: string; seed: number; error: string; fixture?: string }[];
  rounds: number;
  /** Frames by property. */
  byProperty: Record<string, number>;
}

export async function fuzzFrames(fixtures: readonly Buffer[], o: RunOptions): Promise<RunSummary> {
  const arb = scenarioArb(fixtures, o.shape);
  const start = { ...stats };
  const failures: RunSummary['failures'] = [];
  const byProperty: Record<string, number> = {};
  let rounds = 0;
  const props = { ts: checkTs, differential: checkDifferential };
  const done = () => (o.frames !== undefined && stats.frames - start.frames >= o.frames) || (o.deadline !== undefined && Date.now() >= o.deadline);
  while (!done() && failures.length < (o.maxFailures ?? 5)) {
    const which = o.properties[rounds % o.properties.length];
    const seed = (o.seed + rounds) | 0;
    rounds++;
    const before = stats.frames;
    const r = fc.check(
      fc.property(arb, (sc) => {
        props[which](sc);
      }),
      { seed, numRuns: o.runsPerRound ?? 50, endOnFailure: false, interruptAfterTimeLimit: 120_000 },
    );
    byProperty[which] = (byProperty[which] ?? 0) + stats.frames - before;
    if (r.failed && r.counterexample) {
      const sc = r.counterexample[0];
      const error = String((r.errorInstance as Error)?.message ?? r.errorInstance);
      const fixture = o.fixtureDir ? writeFixture(o.fixtureDir, which, sc, seed, error) : undefined;
      failures.push({ property: which, seed, error: error.slice(0, 500), fixture });
      o.log?.(`FAILURE (${which}, seed ${seed}): ${error.slice(0, 300)}${fixture ? `\n  → ${fixture}` : ''}`);
    }
    if (rounds % 20 === 0) o.log?.(`  ${stats.frames - start.frames} frames, ${stats.scenarios - start.scenarios} scenarios, ${failures.length} failures`);
    await new Promise((r) => setImmediate(r));
  }
  return {
    frames: stats.frames - start.frames,
    scenarios: stats.scenarios - start.scenarios,
    propertiesChecked: stats.checks - start.checks,
    failures,
    rounds,
    byProperty,
  };
}
