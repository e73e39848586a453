/**
 * Super-frames and partial checksums in software (segment.ts), checked against an independent
 * checksum (test/helpers/frames.ts) and against what Linux's tcp_gso_segment / __udp_gso_segment
 * make of the same frame; then the Forwarder's use of it on ports with and without a
 * virtio_net_hdr.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Counter, DROP_REASONS, Drop, Verdict } from '../../src/dataplane/contract';
import { Forwarder } from '../../src/dataplane/forwarder';
import { PARSED_L4, ParsedFrame, ipToInt, macFromString, parse } from '../../src/dataplane/packet';
import {
  GSO_ECN,
  GSO_NONE,
  GSO_TCPV4,
  GSO_TCPV6,
  GSO_UDP,
  GSO_UDP_L4,
  MAX_FRAME,
  Segmenter,
  VNET_F_DATA_VALID,
  VNET_F_NEEDS_CSUM,
  VNET_HDR_LEN,
  completeChecksum,
  segmentSize,
  validate,
  writeVnet,
} from '../../src/dataplane/segment';
import { VirtualService } from '../../src/dataplane/services';
import { createScheduler } from '../../src/scheduler/index';
import { ACK, FIN, MAC, PSH, SYN, checksum, frame } from '../helpers/frames';
import { BASE_CONFIG, testDaemon } from '../helpers/daemon';

const CWR = 0x80;
const ECE = 0x40;

// ---- Frames built by hand ----------------------------------------------------------------------

/** The folded pseudo-header sum a sender with checksum offload leaves in the field (not complemented). */
function pseudoPartial(f: Buffer, l4Len: number, proto: number): number {
  const p = Buffer.alloc(12);
  f.copy(p, 0, 26, 34);
  p[9] = proto;
  p.writeUInt16BE(l4Len, 10);
  return ~checksum(p) & 0xffff;
}

/** Independent check: the L4 checksum over pseudo header + segment folds to 0 (checksum() of it is 0). */
function l4Valid(f: Buffer): boolean {
  const ihl = (f[14] & 15) << 2;
  const l4 = 14 + ihl;
  const end = 14 + f.readUInt16BE(16);
  const seg = f.subarray(l4, end);
  const p = Buffer.alloc(12);
  f.copy(p, 0, 26, 34);
  p[9] = f[23];
  p.writeUInt16BE(seg.length, 10);
  return checksum(Buffer.concat([p, seg])) === 0;
}

const ipValid = (f: Buffer) => checksum(f.subarray(14, 14 + ((f[14] & 15) << 2))) === 0;

interface SuperSpec {
  payload: Buffer;
  mss: number;
  ipId?: number;
  seq?: number;
  flags?: number;
  ipOptions?: Buffer;
  tcpOptions?: Buffer;
  df?: boolean;
  proto?: 'tcp' | 'udp';
  ecn?: boolean;
}

/**
 * A super-frame as the capture hands it over: one IPv4 datagram of up to 64 KiB with its
 * checksum partial (the pseudo-header sum), and its virtio_net_hdr.
 */
function superFrame(s: SuperSpec): { frame: Buffer; vnet: Uint8Array } {
  const tcp = (s.proto ?? 'tcp') === 'tcp';
  const ipOpts = s.ipOptions ?? Buffer.alloc(0);
  const tcpOpts = s.tcpOptions ?? Buffer.alloc(0);
  const ihl = 20 + ipOpts.length;
  const l4Hdr = tcp ? 20 + tcpOpts.length : 8;
  const total = ihl + l4Hdr + s.payload.length;
  assert.ok(total <= 65535, 'an IPv4 datagram');
  const f = Buffer.alloc(14 + total);
  macFromString(MAC.balancer).copy(f, 0);
  macFromString(MAC.client).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x40 | (ihl >> 2);
  f[15] = 0x02; // ECT(0)
  f.writeUInt16BE(total, 16);
  f.writeUInt16BE(s.ipId ?? 0x1234, 18);
  f.writeUInt16BE(s.df === false ? 0 : 0x4000, 20);
  f[22] = 64;
  f[23] = tcp ? 6 : 17;
  f.writeUInt32BE(ipToInt('10.0.10.50'), 26);
  f.writeUInt32BE(ipToInt(tcp ? '10.0.10.100' : '10.0.10.101'), 30);
  ipOpts.copy(f, 34);
  f.writeUInt16BE(checksum(f.subarray(14, 14 + ihl)), 24);
  const l4 = 14 + ihl;
  f.writeUInt16BE(40000, l4);
  f.writeUInt16BE(tcp ? 80 : 53, l4 + 2);
  if (tcp) {
    f.writeUInt32BE(s.seq ?? 1000, l4 + 4);
    f.writeUInt32BE(777, l4 + 8);
    f[l4 + 12] = (l4Hdr >> 2) << 4;
    f[l4 + 13] = s.flags ?? ACK | PSH;
    f.writeUInt16BE(502, l4 + 14);
    tcpOpts.copy(f, l4 + 20);
  } else {
    f.writeUInt16BE(total - ihl, l4 + 4);
  }
  s.payload.copy(f, l4 + l4Hdr);
  const csumOffset = tcp ? 16 : 6;
  f.writeUInt16BE(pseudoPartial(f, total - ihl, tcp ? 6 : 17), l4 + csumOffset);
  const vnet = writeVnet(new Uint8Array(VNET_HDR_LEN), {
    flags: VNET_F_NEEDS_CSUM,
    gsoType: (tcp ? GSO_TCPV4 : GSO_UDP_L4) | (s.ecn ? GSO_ECN : 0),
    hdrLen: l4 + l4Hdr,
    gsoSize: s.mss,
    csumStart: l4,
    csumOffset,
  });
  return { frame: f, vnet };
}

function parsed(f: Buffer): ParsedFrame {
  const p = new ParsedFrame();
  assert.equal(parse(f, f.length, p), PARSED_L4);
  return p;
}

function cut(f: Buffer, vnet: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  const seg = new Segmenter();
  const p = parsed(f);
  assert.equal(validate(f, p, vnet), -1, 'a header lbd can follow');
  const took = seg.segment(f, p, vnet, (b, len) => {
    assert.equal(b, seg.out, 'every segment built in the one preallocated buffer');
    out.push(Buffer.from(b.subarray(0, len)));
    return true;
  });
  assert.equal(took, out.length);
  return out;
}

// A timestamp option (NOP NOP TS), as every Linux TCP segment carries.
const TS_OPTION = Buffer.from([1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78]);

// ---- Segmentation ------------------------------------------------------------------------------

test('a 64 KiB TCP super-frame is cut into gso_size segments with the headers Linux gives them', () => {
  const mss = 1448;
  const payload = randomBytes(65535 - 20 - 32);
  // IP id and sequence number both wrap inside the frame.
  const { frame: f, vnet } = superFrame({ payload, mss, ipId: 0xffe0, seq: 0xffff0000, flags: ACK | PSH | FIN | CWR | ECE, tcpOptions: TS_OPTION, ecn: true });
  const original = Buffer.from(f);
  const segs = cut(f, vnet);
  assert.equal(segs.length, Math.ceil(payload.length / mss));
  assert.deepEqual(f, original, 'the super-frame itself is left as it was');
  const hdr = 14 + 20 + 32;
  segs.forEach((s, i) => {
    const last = i === segs.length - 1;
    const chunk = last ? payload.length - i * mss : mss;
    assert.equal(s.length, hdr + chunk, `segment ${i}: frame length`);
    assert.equal(s.readUInt16BE(16), 20 + 32 + chunk, `segment ${i}: IP total length`);
    assert.equal(s.readUInt16BE(18), (0xffe0 + i) & 0xffff, `segment ${i}: IP id`);
    assert.ok(ipValid(s), `segment ${i}: IP header checksum`);
    assert.equal(s.readUInt32BE(38), (0xffff0000 + i * mss) >>> 0, `segment ${i}: sequence number`);
    assert.equal(s.readUInt32BE(42), 777, 'ack number untouched');
    const flags = s[47];
    assert.equal((flags & (FIN | PSH)) !== 0, last, `segment ${i}: FIN and PSH on the last only`);
    if (last) assert.equal(flags & (FIN | PSH), FIN | PSH);
    assert.equal((flags & CWR) !== 0, i === 0, `segment ${i}: CWR on the first only`);
    assert.equal(flags & (ACK | ECE), ACK | ECE, `segment ${i}: ACK and ECE on every one`);
    assert.ok(l4Valid(s), `segment ${i}: TCP checksum`);
    // Everything else in the headers is the super-frame's: MACs, TOS, DF, TTL, addresses, ports, window, options.
    assert.deepEqual(s.subarray(0, 16), f.subarray(0, 16));
    assert.deepEqual(s.subarray(20, 24), f.subarray(20, 24));
    assert.deepEqual(s.subarray(26, 38), f.subarray(26, 38));
    assert.deepEqual(s.subarray(46, 47), f.subarray(46, 47));
    assert.deepEqual(s.subarray(48, 50), f.subarray(48, 50));
    assert.deepEqual(s.subarray(52, hdr), f.subarray(52, hdr));
  });
  assert.deepEqual(Buffer.concat(segs.map((s) => s.subarray(hdr))), payload, 'the payloads, in order, are the original');
});

test('IP options ride along; a payload of exactly n segments and one of a single short segment', () => {
  const ipOptions = Buffer.from([1, 1, 1, 0]); // NOP NOP NOP EOL
  for (const [len, mss, n] of [
    [3 * 1000, 1000, 3],
    [10, 1000, 1],
    [0, 536, 1],
    [1001, 1000, 2],
  ] as const) {
    const payload = randomBytes(len);
    const { frame: f, vnet } = superFrame({ payload, mss, ipOptions, flags: ACK | FIN });
    const segs = cut(f, vnet);
    assert.equal(segs.length, n, `${len} bytes at ${mss}`);
    const hdr = 14 + 24 + 20;
    segs.forEach((s, i) => {
      assert.ok(ipValid(s) && l4Valid(s), `${len}/${mss} segment ${i}: checksums`);
      assert.deepEqual(s.subarray(34, 38), ipOptions);
      assert.equal((s[14 + 24 + 13] & FIN) !== 0, i === n - 1);
    });
    assert.deepEqual(Buffer.concat(segs.map((s) => s.subarray(hdr))), payload);
  }
});

test('UDP GSO (UDP_L4) becomes datagrams with their own UDP length and checksum', () => {
  const payload = randomBytes(10 * 1200 + 345);
  const { frame: f, vnet } = superFrame({ payload, mss: 1200, proto: 'udp', ipId: 7 });
  const segs = cut(f, vnet);
  assert.equal(segs.length, 11);
  segs.forEach((s, i) => {
    const chunk = i === 10 ? 345 : 1200;
    assert.equal(s.length, 14 + 20 + 8 + chunk);
    assert.equal(s.readUInt16BE(16), 20 + 8 + chunk, `datagram ${i}: IP total length`);
    assert.equal(s.readUInt16BE(18), 7 + i, `datagram ${i}: IP id`);
    assert.equal(s.readUInt16BE(38), 8 + chunk, `datagram ${i}: UDP length`);
    assert.ok(ipValid(s) && l4Valid(s), `datagram ${i}: checksums`);
    assert.notEqual(s.readUInt16BE(40), 0, 'a UDP checksum of 0 would mean none');
  });
  assert.deepEqual(Buffer.concat(segs.map((s) => s.subarray(42))), payload);
});

test('the checksum field of a super-frame is not trusted: segments are checksummed from scratch', () => {
  const { frame: f, vnet } = superFrame({ payload: randomBytes(5000), mss: 1448 });
  f.writeUInt16BE(0xdead, 50); // garbage where the pseudo-header sum should be
  for (const s of cut(f, vnet)) assert.ok(l4Valid(s));
});

test('a refusing sink: the rest still go, each refusal counted', () => {
  const { frame: f, vnet } = superFrame({ payload: randomBytes(4000), mss: 1000 });
  const seg = new Segmenter();
  let n = 0;
  const took = seg.segment(f, parsed(f), vnet, () => n++ % 2 === 0);
  assert.deepEqual([took, seg.made, seg.refused], [2, 4, 2]);
  assert.equal(seg.out.length, MAX_FRAME);
});

// ---- Partial checksums -------------------------------------------------------------------------

test('a partial checksum completed equals the full recomputation (TCP, UDP, odd lengths, IP options)', () => {
  const specs = [
    { flags: SYN, sport: 3000 },
    { flags: ACK | PSH, payload: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n') },
    { flags: ACK | PSH, payload: Buffer.from('odd length!'), ipOptions: Buffer.from([1, 1, 1, 0]) },
    { flags: ACK, payload: randomBytes(1460) },
    { proto: 'udp' as const, dport: 53, payload: Buffer.from('query') },
    { proto: 'udp' as const, dport: 53, payload: randomBytes(1471) },
    { proto: 'udp' as const, dport: 53, payload: Buffer.alloc(0) },
  ];
  for (const [i, s] of specs.entries()) {
    const f = frame(s);
    const l4 = 14 + ((f[14] & 15) << 2);
    const udp = s.proto === 'udp';
    const off = udp ? 6 : 16;
    const expected = Buffer.from(f);
    f.writeUInt16BE(pseudoPartial(f, f.length - l4, udp ? 17 : 6), l4 + off);
    const vnet = writeVnet(new Uint8Array(VNET_HDR_LEN), { flags: VNET_F_NEEDS_CSUM, csumStart: l4, csumOffset: off });
    assert.equal(validate(f, parsed(f), vnet), -1);
    completeChecksum(f, vnet);
    assert.deepEqual(f, expected, `frame ${i}: completed = recomputed`);
    assert.ok(l4Valid(f));
  }
});

test('a completed checksum that folds to 0 is written 0xffff (skb_checksum_help)', () => {
  // Find a UDP payload whose checksum is 0xffff, i.e. a sum that completes to 0.
  const f = frame({ proto: 'udp', dport: 53, payload: Buffer.alloc(2) });
  const l4 = 34;
  const vnet = writeVnet(new Uint8Array(VNET_HDR_LEN), { flags: VNET_F_NEEDS_CSUM, csumStart: l4, csumOffset: 6 });
  for (let v = 0; v < 0x10000; v++) {
    f.writeUInt16BE(v, 42);
    f.writeUInt16BE(pseudoPartial(f, 10, 17), l4 + 6);
    completeChecksum(f, vnet);
    if (f.readUInt16BE(40) === 0xffff) {
      assert.ok(l4Valid(f));
      return;
    }
    assert.notEqual(f.readUInt16BE(40), 0);
  }
  assert.fail('no payload gave a 0 checksum');
});

// ---- Headers lbd cannot follow -----------------------------------------------------------------

test('headers lbd cannot follow are gso_unsupported; good ones pass', () => {
  const tcp = superFrame({ payload: randomBytes(3000), mss: 1448 });
  const udp = superFrame({ payload: randomBytes(3000), mss: 1200, proto: 'udp' });
  const tp = parsed(tcp.frame);
  const up = parsed(udp.frame);
  const h = (o: Parameters<typeof writeVnet>[1]) => writeVnet(new Uint8Array(VNET_HDR_LEN), o);
  const tcpOk = { flags: VNET_F_NEEDS_CSUM, gsoType: GSO_TCPV4, gsoSize: 1448, csumStart: 34, csumOffset: 16 };
  const udpOk = { flags: VNET_F_NEEDS_CSUM, gsoType: GSO_UDP_L4, gsoSize: 1200, csumStart: 34, csumOffset: 6 };
  const good: [string, Buffer, ParsedFrame, Uint8Array][] = [
    ['TCPV4', tcp.frame, tp, h(tcpOk)],
    ['TCPV4 with ECN', tcp.frame, tp, h({ ...tcpOk, gsoType: GSO_TCPV4 | GSO_ECN })],
    ['TCPV4 without NEEDS_CSUM', tcp.frame, tp, h({ ...tcpOk, flags: 0 })],
    ['TCPV4, DATA_VALID', tcp.frame, tp, h({ ...tcpOk, flags: VNET_F_DATA_VALID })],
    ['UDP_L4', udp.frame, up, h(udpOk)],
    ['DATA_VALID alone', tcp.frame, tp, h({ flags: VNET_F_DATA_VALID })],
    ['all zeros', tcp.frame, tp, h({})],
    ['a partial checksum field in the last two bytes', tcp.frame, tp, h({ flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 3018 })],
  ];
  for (const [name, f, p, v] of good) assert.equal(validate(f, p, v), -1, name);
  const bad: [string, Buffer, ParsedFrame, Uint8Array][] = [
    ['TCPV6 on an IPv4 frame', tcp.frame, tp, h({ ...tcpOk, gsoType: GSO_TCPV6 })],
    ['UFO', udp.frame, up, h({ ...udpOk, gsoType: GSO_UDP })],
    ['an unknown gso_type', tcp.frame, tp, h({ ...tcpOk, gsoType: 2 })],
    ['ECN alone', tcp.frame, tp, h({ ...tcpOk, gsoType: GSO_ECN })],
    ['ECN on UDP_L4', udp.frame, up, h({ ...udpOk, gsoType: GSO_UDP_L4 | GSO_ECN })],
    ['UDP_L4 without NEEDS_CSUM (fraglist GRO: the kernel refuses to send it)', udp.frame, up, h({ ...udpOk, flags: 0 })],
    ['TCPV4 on a UDP frame', udp.frame, up, h({ ...udpOk, gsoType: GSO_TCPV4, csumOffset: 16 })],
    ['UDP_L4 on a TCP frame', tcp.frame, tp, h({ ...tcpOk, gsoType: GSO_UDP_L4, csumOffset: 6 })],
    ['gso_size 0', tcp.frame, tp, h({ ...tcpOk, gsoSize: 0 })],
    ['csum_start in the IP header', tcp.frame, tp, h({ ...tcpOk, csumStart: 20, csumOffset: 30 })],
    ['csum_start past the packet', tcp.frame, tp, h({ ...tcpOk, csumStart: 60000 })],
    ['csum_offset past the packet', tcp.frame, tp, h({ ...tcpOk, csumOffset: 4000 })],
    ['a super-frame checksum that is not its TCP one', tcp.frame, tp, h({ ...tcpOk, csumOffset: 18 })],
    ['a partial checksum past the packet', tcp.frame, tp, h({ flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 3019 })],
  ];
  for (const [name, f, p, v] of bad) assert.equal(validate(f, p, v), Drop.GsoUnsupported, name);
});

test('segmentSize: the headers plus gso_size, never more than the datagram', () => {
  const { frame: f, vnet } = superFrame({ payload: randomBytes(3000), mss: 1448, tcpOptions: TS_OPTION });
  assert.equal(segmentSize(f, parsed(f), vnet), 20 + 32 + 1448);
  const small = superFrame({ payload: randomBytes(100), mss: 1448 });
  assert.equal(segmentSize(small.frame, parsed(small.frame), small.vnet), 20 + 20 + 100);
});

// ---- The Forwarder -------------------------------------------------------------------------------

const EGRESS_MAC = '02:00:00:00:0e:01';

function forwarder(vnetSink: boolean) {
  const sent: { frame: Buffer; vnet: Buffer | null }[] = [];
  const sink = {
    vnet: vnetSink,
    refuse: false,
    send(buf: Buffer, len: number, vnet?: Uint8Array): boolean {
      if (this.refuse) return false;
      sent.push({ frame: Buffer.from(buf.subarray(0, len)), vnet: vnet ? Buffer.from(vnet) : null });
      return true;
    },
  };
  const fw = new Forwarder({
    connTableSize: 1024,
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    captureMac: macFromString(MAC.balancer),
    egressMac: macFromString(EGRESS_MAC),
    egress: sink,
  });
  for (const [i, vip, port, proto] of [
    [0, '10.0.10.100', 80, 6],
    [1, '10.0.10.101', 53, 17],
  ] as const) {
    const svc = new VirtualService(i, `s${i}`, ipToInt(vip), port, proto, createScheduler('rr'), 0, 0xffffffff);
    const rs = fw.dests.add(svc, ipToInt('10.0.10.40'), port, 1);
    fw.dests.setMac(rs.index, macFromString(MAC.rs40));
    svc.dests.push(rs);
    svc.reals.push(rs);
    svc.changed();
    fw.services.add(svc);
  }
  return { fw, sent, sink };
}

const drops = (fw: Forwarder) => Object.fromEntries(DROP_REASONS.map((r, i) => [r, fw.drops[i]]).filter(([, n]) => n !== 0));

test('forwarder, egress without a virtio_net_hdr: super-frames cut in software, partial checksums completed', () => {
  const { fw, sent } = forwarder(false);
  assert.equal(fw.process(frame({ flags: SYN, sport: 40000 }), 54, undefined, new Uint8Array(VNET_HDR_LEN)), Verdict.Forward);
  const payload = randomBytes(20000);
  const { frame: f, vnet } = superFrame({ payload, mss: 1448, flags: ACK | PSH });
  assert.equal(fw.process(f, f.length, undefined, vnet), Verdict.Forward);
  const segs = sent.slice(1).map((s) => s.frame);
  assert.equal(segs.length, 14);
  assert.ok(
    sent.every((s) => s.vnet === null),
    'no header handed to a port that cannot take one',
  );
  for (const s of segs) {
    assert.equal(s.subarray(0, 6).toString('hex'), MAC.rs40.replace(/:/g, ''), 'rewritten');
    assert.ok(ipValid(s) && l4Valid(s));
  }
  assert.deepEqual(Buffer.concat(segs.map((s) => s.subarray(54))), payload);
  const c = fw.counters;
  assert.equal(c[Counter.SuperFrames], 1);
  assert.equal(c[Counter.SoftwareSegments], 14);
  assert.equal(c[Counter.TxFrames], 15);
  assert.equal(c[Counter.TxBytes], 54 + 14 * 54 + payload.length);
  assert.equal(fw.dests.packets[0], 2, 'per real server: frames as received');

  // A partial checksum alone.
  const g = frame({ flags: ACK | PSH, sport: 40000, payload: Buffer.from('hello, odd') });
  const want = g.readUInt16BE(50);
  g.writeUInt16BE(pseudoPartial(g, g.length - 34, 6), 50);
  const v = writeVnet(new Uint8Array(VNET_HDR_LEN), { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 });
  assert.equal(fw.process(g, g.length, undefined, v), Verdict.Forward);
  assert.equal(sent.at(-1)!.frame.readUInt16BE(50), want);
  assert.equal(c[Counter.SuperFrames], 1);
  assert.deepEqual(drops(fw), {});
});

test('forwarder, egress with a virtio_net_hdr: the super-frame leaves whole with its header unchanged', () => {
  const { fw, sent } = forwarder(true);
  fw.process(frame({ flags: SYN, sport: 40000 }), 54);
  const { frame: f, vnet } = superFrame({ payload: randomBytes(60000), mss: 1448 });
  const before = Buffer.from(f);
  assert.equal(fw.process(f, f.length, undefined, vnet), Verdict.Forward);
  assert.equal(sent.length, 2);
  assert.deepEqual(sent[1].vnet, Buffer.from(vnet));
  assert.deepEqual(sent[1].frame.subarray(12), before.subarray(12), 'only the MACs changed');
  assert.equal(sent[0].vnet, null, 'an ordinary frame goes without one');
  assert.equal(fw.counters[Counter.SuperFrames], 1);
  assert.equal(fw.counters[Counter.SoftwareSegments], 0);
  assert.equal(fw.counters[Counter.TxFrames], 2);
});

test('forwarder: a header lbd cannot follow is dropped as gso_unsupported before it touches the tables', () => {
  const { fw, sent } = forwarder(false);
  const { frame: f, vnet } = superFrame({ payload: randomBytes(3000), mss: 1448, flags: SYN });
  vnet[1] = GSO_TCPV6;
  assert.equal(fw.process(f, f.length, undefined, vnet), Verdict.Drop);
  assert.deepEqual(drops(fw), { gso_unsupported: 1 });
  assert.equal(fw.conns.size, 0);
  assert.equal(sent.length, 0);
  assert.equal(fw.counters[Counter.SuperFrames], 1, 'counted as received');
  vnet[1] = GSO_NONE;
  vnet[0] = 0;
  assert.equal(fw.process(f, f.length, undefined, vnet), Verdict.Forward, 'the same frame as an ordinary one');
});

test('forwarder: DF super-frames are checked against the egress MTU by their segments, not their length', () => {
  const { fw, sent } = forwarder(false);
  fw.egressMtu = 1500;
  fw.process(frame({ flags: SYN, sport: 40000 }), 54);
  const ok = superFrame({ payload: randomBytes(30000), mss: 1460 });
  assert.equal(fw.process(ok.frame, ok.frame.length, undefined, ok.vnet), Verdict.Forward);
  assert.ok(sent.slice(1).every((s) => s.frame.length - 14 <= 1500));
  const big = superFrame({ payload: randomBytes(30000), mss: 1461 });
  assert.equal(fw.process(big.frame, big.frame.length, undefined, big.vnet), Verdict.Drop);
  assert.equal(drops(fw).too_big, 1);
});

test('forwarder: an egress that refuses segments counts send_failed, and only what left as sent', () => {
  const { fw, sink } = forwarder(false);
  fw.process(frame({ flags: SYN, sport: 40000 }), 54);
  sink.refuse = true;
  const { frame: f, vnet } = superFrame({ payload: randomBytes(5000), mss: 1448 });
  assert.equal(fw.process(f, f.length, undefined, vnet), Verdict.Drop);
  assert.deepEqual(drops(fw), { send_failed: 1 });
  assert.equal(fw.counters[Counter.SoftwareSegments], 4);
  assert.equal(fw.counters[Counter.TxFrames], 1);
});

test('daemon on in-memory ports: the capture port hands the header to the forwarder, super-frames arrive cut', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    t.send(frame({ flags: SYN, sport: 40000 }));
    const payload = randomBytes(9000);
    const { frame: f, vnet } = superFrame({ payload, mss: 1448 });
    const before = t.egress.sent.length;
    t.capture.inject(f, vnet);
    const segs = t.egress.sent.slice(before);
    assert.equal(segs.length, 7);
    assert.ok(segs.every((s) => ipValid(s) && l4Valid(s)));
    assert.deepEqual(Buffer.concat(segs.map((s) => s.subarray(54))), payload);
    assert.equal(t.daemon.forwarder.counters[Counter.SuperFrames], 1);
  } finally {
    await t.daemon.stop();
  }
});
