/**
 * The native fast path against the TypeScript reference: the same frames through
 * Forwarder.process() and through the addon's processFrames() (the same C++ per-frame code and
 * batching as live traffic, sends captured in memory) must give byte-identical output frames,
 * the same verdicts, the same drop and global counters, the same per-server and per-service
 * counters and the same connection-table and template-table contents.
 *
 * The addon is part of the build (scripts/setup.sh): a missing or broken addon FAILS these
 * tests, with the reason.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ConnState, Counter, DROP_REASONS, Verdict } from '../../src/dataplane/contract';
import { Forwarder } from '../../src/dataplane/forwarder';
import { selectDataplane } from '../../src/control/dataplane-select';
import { NativeDataplane, loadNative } from '../../src/dataplane/native';
import { bindingCandidates, loadBinding } from '../../src/dataplane/binding';
import { RingPort } from '../../src/dataplane/io';
import { ipToInt, macFromString } from '../../src/dataplane/packet';
import { DOWN_DROP, DOWN_KEEP, DOWN_RESCHEDULE } from '../../src/dataplane/services';
import { arpRequest } from '../../src/dataplane/arp';
import { DEST_F_DOWN, DEST_F_OVERLOAD } from '../../src/scheduler/index';
import { parseConfig } from '../../src/config/load';
import { ACK, FIN, MAC, PSH, RST, SYN, checksum, frame } from '../helpers/frames';
import { readPcap } from '../helpers/pcap';
import { Pair, SERVICES, type SvcSpec, addService, rng, side } from '../helpers/differential';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures');
const load = loadNative();
/** The addon must be usable (setup builds it): fails with the reason otherwise. */
function native(_t: TestContext): boolean {
  if (!load.ok) assert.fail(`the native addon must be built and loadable (bash scripts/setup.sh): ${load.reason}`);
  return true;
}

interface Flow {
  frames: Buffer[];
}

/** A varied, interleaved mix: TCP conversations, UDP flows, junk, ARP, all reproducible. */
function traffic(r: () => number, nFlows: number, services: SvcSpec[], opts: { reusePorts?: boolean } = {}): Buffer[] {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
  const int = (n: number) => Math.floor(r() * n);
  const flows: Flow[] = [];
  for (let i = 0; i < nFlows; i++) {
    const s = pick(services);
    // reusePorts: a few clients on a few ports, so that SYNs find the entries of earlier flows (conn_reuse_mode).
    const src = opts.reusePorts ? `10.1.0.${1 + int(3)}` : `10.${1 + int(3)}.${int(3)}.${1 + int(60)}`;
    const sport = opts.reusePorts ? 40000 + int(12) : 1024 + int(64000);
    const ipOptions = r() < 0.05 ? Buffer.from([0x01, 0x01, 0x01, 0x00]) : undefined;
    const base = { src, dst: s.vip, sport, dport: s.port, ipOptions };
    const out: Buffer[] = [];
    const pad = (f: Buffer) => (r() < 0.05 ? Buffer.concat([f, Buffer.alloc(1 + int(20))]) : f); // Ethernet padding
    if (s.proto === 'udp') {
      const n = 1 + int(5);
      for (let k = 0; k < n; k++) out.push(pad(frame({ ...base, proto: 'udp', payload: Buffer.alloc(int(200), k) })));
    } else {
      const script: number[] = [];
      if (r() < 0.1) script.push(ACK); // before any SYN: no_connection
      script.push(SYN);
      if (r() < 0.15) script.push(SYN); // retransmission
      if (r() < 0.05) script.push(SYN | ACK); // odd flags
      script.push(ACK);
      const data = int(4);
      for (let k = 0; k < data; k++) script.push(ACK | PSH);
      const end = r();
      if (end < 0.6) script.push(FIN | ACK, ACK);
      else if (end < 0.75) script.push(RST);
      else if (end < 0.8) script.push(RST | ACK, ACK);
      else if (end < 0.85) script.push(FIN, FIN | ACK, RST);
      if (r() < 0.05) script.push(0); // no flags at all
      if (r() < 0.05) script.push(SYN | FIN);
      for (const flags of script) {
        out.push(pad(frame({ ...base, flags, payload: flags & PSH ? Buffer.alloc(1 + int(300), 0x41) : undefined })));
      }
    }
    flows.push({ frames: out });
  }
  // Junk and other traffic, as one-frame "flows".
  const good = () => frame({ flags: SYN, sport: 1024 + int(60000), src: `10.9.0.${1 + int(200)}` });
  const withByte = (b: Buffer, off: number, v: number) => {
    const c = Buffer.from(b);
    if (off < c.length) c[off] = v;
    return c;
  };
  const junk: (() => Buffer)[] = [
    () => Buffer.from(Array.from({ length: int(14) }, () => int(256))), // runt
    () => good().subarray(0, 14 + int(40)), // truncated
    () => withByte(good(), 12, 0x86), // not IPv4
    () => withByte(withByte(good(), 12, 0x81), 13, 0x00), // VLAN tag
    () => withByte(good(), 14, 0x65), // version 6
    () => withByte(good(), 14, 0x43), // IHL 3
    () => withByte(good(), 16, 0), // total length 0 < IHL
    () => withByte(good(), 17, 0xff), // total length beyond the frame
    () => frame({ flags: SYN, fragment: 0x2000 }), // first fragment
    () => frame({ flags: SYN, fragment: 0x0020 + int(8) }), // later fragment
    () => frame({ proto: pick([1, 47, 50, 132]) }), // other protocols
    () => frame({ flags: SYN, dport: 8081 }), // no such service
    () => frame({ flags: SYN, dst: '10.0.10.99' }), // no such VIP
    () => frame({ proto: 'udp', dport: 80 }), // UDP to a TCP service port
    () => frame({ flags: SYN, dstMac: MAC.other }), // flooded frame for another host
    () => frame({ flags: SYN, dstMac: 'ff:ff:ff:ff:ff:ff' }),
    () => withByte(frame({ flags: SYN }), 14 + 20 + 12, 0x10), // TCP data offset 1
    () => withByte(frame({ flags: SYN, ipOptions: Buffer.alloc(8, 1) }), 14, 0x4f), // IHL beyond the data
    () => frame({ proto: 'udp', dport: 53, dst: '10.0.10.101' }).subarray(0, 14 + 20 + 4), // UDP header cut
    () => arpRequest(macFromString(MAC.client), ipToInt('10.0.10.50'), ipToInt(pick(['10.0.10.100', '10.0.10.30', '10.0.10.101']))),
    () => {
      // fuzz: a real flow frame with random header bytes
      const f = frame({ flags: pick([SYN, ACK, SYN | ACK, FIN]), dst: pick(services).vip, dport: pick(services).port, src: `10.1.0.${1 + int(60)}` });
      for (let k = 0; k < 1 + int(4); k++) f[int(Math.min(f.length, 60))] = int(256);
      return r() < 0.3 ? f.subarray(0, int(f.length + 1)) : f;
    },
  ];
  for (let i = 0; i < nFlows / 3; i++) flows.push({ frames: [pick(junk)()] });
  // Interleave: each flow's frames keep their order.
  const out: Buffer[] = [];
  const live = flows.map((f) => ({ f, i: 0 }));
  while (live.length) {
    const k = int(live.length);
    const l = live[k];
    out.push(l.f.frames[l.i++]);
    if (l.i === l.f.frames.length) live.splice(k, 1);
  }
  return out;
}

// ---- Tests ---------------------------------------------------------------------------------------

test('the addon loads and agrees with contract.ts', (t) => {
  if (!native(t)) return;
  assert.equal(load.ok, true);
});

test('differential: a long mixed run (rr, wlc, lc, sh, persistence, UDP, junk, expiry, control-plane changes)', (t) => {
  if (!native(t)) return;
  const r = rng(0x1bd);
  const p = new Pair(SERVICES, 6000);
  const frames = traffic(r, 4000, SERVICES);
  let overloaded = 0;
  let now = 1;
  let at = 0;
  let round = 0;
  while (at < frames.length) {
    // Chunks from 1 frame to more than two batches (256) at a time.
    const n = 1 + Math.floor(r() * 700);
    p.run(frames.slice(at, at + n));
    at += n;
    round++;
    // The clock moves, sometimes far enough to expire entries; sweeping shifts entries around.
    now += r() < 0.1 ? 100 + Math.floor(r() * 900) : Math.floor(r() * 5);
    p.both((fw) => {
      fw.now = now;
      fw.sweep(Math.floor(fw.conns.slots / 3));
    });
    // Control-plane changes, the same on both sides.
    // Connection thresholds (ipvsadm -x/-y): overload set and cleared as flows come and go.
    if (round === 2) p.both((fw) => fw.dests.views[0].setThresholds(12, 6));
    if (fw0Overloaded(p)) overloaded++;
    if (round === 5) p.both((fw) => (fw.dests.views[1].weight = 0)); // quiesce one server
    if (round === 8) p.both((fw) => ((fw.dests.views[3].flags |= DEST_F_DOWN), fw.services.all[1].changed())); // a health check fails
    if (round === 10) p.both((fw) => fw.setTimeouts({ tcp: 60, tcpfin: 10, udp: 20 }));
    if (round === 12) p.both((fw) => fw.dests.setMac(8, macFromString('02:00:00:00:01:13'))); // the unresolved MAC resolves
    if (round === 14) p.both((fw) => ((fw.dests.views[1].weight = 1), fw.services.all[0].changed()));
    if (round === 16) p.both((fw) => fw.services.remove(fw.services.all[0])); // a service disappears
    if (round === 18) p.both((fw) => addService(fw, 5, { ...SERVICES[0], name: 'web-again', reals: SERVICES[0].reals })); // and comes back
    // Health: flows of a down server are moved (on_down: reschedule) or forgotten (drop).
    if (round === 20) p.both((fw) => ((fw.dests.downAction[2] = DOWN_RESCHEDULE), (fw.dests.views[2].flags |= DEST_F_DOWN), fw.services.all[1].changed()));
    if (round === 22) p.both((fw) => (fw.dests.downAction[5] = DOWN_DROP));
    if (round === 24) p.both((fw) => fw.dests.downAction.fill(DOWN_KEEP));
    p.assertSame(`after round ${round} (${at} frames)`);
  }
  p.both((fw) => {
    fw.now = now + 5000;
    fw.sweepAll();
  });
  p.assertSame('after expiring everything');
  // The run exercised what it should.
  const drops = p.ts.fw.drops;
  for (const reason of ['truncated', 'not_ipv4', 'bad_ip_header', 'fragment', 'unsupported', 'not_our_mac', 'no_connection', 'no_mac'] as const) {
    assert.ok(drops[DROP_REASONS.indexOf(reason)] > 0, `the run produced ${reason} drops`);
  }
  assert.ok(p.ts.sent.length > 5000, `${p.ts.sent.length} frames forwarded`);
  assert.ok(p.ts.arps.length > 10, 'ARP frames went to the control plane');
  assert.ok(p.dp.stats().upcalls > 1000, 'new flows went up to the TypeScript scheduler');
  assert.ok(p.ts.fw.downFlowsRescheduled > 0 && p.ts.fw.downFlowsDropped > 0, 'flows of down servers were moved and dropped');
  assert.ok(overloaded > 0 && !fw0Overloaded(p), `servers were overloaded (${overloaded} rounds) and relieved`);
});

test('differential: SYNs on the client ports of finished flows, in every conn_reuse_mode', (t) => {
  if (!native(t)) return;
  const r = rng(0xc0de);
  const specs = [SERVICES[0], SERVICES[1], SERVICES[2], SERVICES[3]];
  const p = new Pair(specs, 2000);
  const frames = traffic(r, 3000, specs, { reusePorts: true });
  const modes = (m: number[]) => p.both((fw) => m.forEach((mode, i) => (fw.services.all[i].connReuseMode = mode)));
  modes([0, 1, 2, 2]);
  let now = 1;
  let round = 0;
  for (let at = 0; at < frames.length; round++) {
    const n = 1 + Math.floor(r() * 400);
    p.run(frames.slice(at, at + n));
    at += n;
    now += Math.floor(r() * 3);
    p.both((fw) => {
      fw.now = now;
      fw.sweep(Math.floor(fw.conns.slots / 4));
    });
    // Every mode on every service in turn; a down server (reuse is decided first, as in IPVS).
    if (round % 3 === 2) modes([(round + 1) % 3, (round + 2) % 3, round % 3, 2 - (round % 3)]);
    if (round === 6) p.both((fw) => ((fw.dests.downAction[0] = DOWN_RESCHEDULE), (fw.dests.views[0].flags |= DEST_F_DOWN), fw.services.all[0].changed()));
    if (round === 9) p.both((fw) => (fw.dests.downAction[3] = DOWN_DROP));
    if (round === 12) p.both((fw) => ((fw.dests.downAction.fill(DOWN_KEEP), (fw.dests.views[0].flags &= ~DEST_F_DOWN)), fw.services.all[0].changed()));
    p.assertSame(`conn_reuse_mode round ${round} (${at} frames)`);
    assert.equal(p.nat.fw.reuseRescheduled, p.ts.fw.reuseRescheduled, `round ${round}: rescheduled SYNs`);
  }
  assert.ok(p.ts.fw.reuseRescheduled > 50, `${p.ts.fw.reuseRescheduled} SYNs rescheduled`);
  assert.ok(p.ts.fw.downFlowsRescheduled > 0, 'down flows were moved too');
});

test('differential: on_miss: hash picks up flows whose SYN this balancer never saw, on both paths alike', (t) => {
  if (!native(t)) return;
  const r = rng(0x5107);
  const reals = [
    { addr: '10.0.10.40', weight: 1 },
    { addr: '10.0.10.111', weight: 2 },
    { addr: '10.0.10.112', weight: 1 },
  ];
  const specs: SvcSpec[] = [
    {
      name: 'mh',
      vip: '10.0.10.100',
      port: 80,
      proto: 'tcp',
      scheduler: 'mh',
      options: { port: true, fallback: true, tableSize: 4093 },
      onMissHash: true,
      reals,
    },
    { name: 'sh', vip: '10.0.10.100', port: 443, proto: 'tcp', scheduler: 'sh', options: { fallback: false }, onMissHash: true, reals },
    { name: 'mh-persist', vip: '10.0.10.101', port: 80, proto: 'tcp', scheduler: 'mh', persistence: 60, mask: '255.255.255.0', onMissHash: true, reals },
    { name: 'wlc-drop', vip: '10.0.10.102', port: 8080, proto: 'tcp', scheduler: 'wlc', reals },
  ];
  const p = new Pair(specs, 4000);
  // Another balancer saw the SYNs of most flows: here they are missing.
  const tcpFlags = (f: Buffer) => (f.length > 47 && f.readUInt16BE(12) === 0x0800 && f[23] === 6 ? f[14 + (f[14] & 15) * 4 + 13] : -1);
  const frames = traffic(r, 3000, specs).filter((f) => tcpFlags(f) !== SYN || r() < 0.3);
  let now = 1;
  for (let at = 0, round = 0; at < frames.length; round++) {
    const n = 1 + Math.floor(r() * 500);
    p.run(frames.slice(at, at + n));
    at += n;
    now += r() < 0.1 ? 30 : Math.floor(r() * 3);
    p.both((fw) => {
      fw.now = now;
      fw.sweep(Math.floor(fw.conns.slots / 4));
    });
    // A quiesced server still takes the flows under way that hash to it, a down one does not;
    // on_miss switched off and on by a reload.
    if (round === 2) p.both((fw) => ((fw.dests.views[1].weight = 0), fw.services.all[0].changed()));
    if (round === 4) p.both((fw) => ((fw.dests.views[2].flags |= DEST_F_DOWN), fw.services.all[0].changed()));
    if (round === 6) p.both((fw) => (fw.services.all[1].onMissHash = false));
    if (round === 8) p.both((fw) => ((fw.services.all[1].onMissHash = true), (fw.dests.views[2].flags &= ~DEST_F_DOWN), fw.services.all[0].changed()));
    p.assertSame(`on_miss round ${round} (${at} frames)`);
  }
  const picked = p.ts.fw.services.all.map((s) => s.missScheduled);
  assert.ok(picked[0] > 100 && picked[1] > 100 && picked[2] > 100, `flows picked up mid-stream by mh, sh and mh with persistence: ${picked.join(', ')}`);
  assert.equal(picked[3], 0, 'none under on_miss: drop');
  assert.ok(p.ts.fw.drops[DROP_REASONS.indexOf('no_connection')] > 100, 'on_miss: drop still drops them as no_connection');
});

/** Whether any real server of the TypeScript side is overloaded (u_threshold). */
function fw0Overloaded(p: Pair): boolean {
  return p.ts.fw.dests.views.some((v) => (v.flags & DEST_F_OVERLOAD) !== 0);
}

test('differential: a full table (table_full) and templates under churn', (t) => {
  if (!native(t)) return;
  const r = rng(7);
  const specs = [SERVICES[0], SERVICES[1], SERVICES[2]];
  const p = new Pair(specs, 300);
  const frames = traffic(r, 1500, specs);
  for (let at = 0; at < frames.length; at += 300) {
    p.run(frames.slice(at, at + 300));
    p.assertSame(`at ${at}`);
  }
  assert.ok(p.ts.fw.drops[DROP_REASONS.indexOf('table_full')] > 0, 'the table filled up');
});

test('differential: pure random frames never crash and are counted alike', (t) => {
  if (!native(t)) return;
  const r = rng(99);
  const p = new Pair(SERVICES, 1024);
  const vipBytes = [ipToInt('10.0.10.100'), ipToInt('10.0.10.101'), ipToInt('10.0.10.102')];
  for (let round = 0; round < 20; round++) {
    const frames: Buffer[] = [];
    for (let i = 0; i < 500; i++) {
      const len = Math.floor(r() * 120);
      const f = Buffer.from(Array.from({ length: len }, () => Math.floor(r() * 256)));
      // Often steer it deeper into the parser: our MAC, IPv4, a VIP, TCP/UDP.
      if (len >= 14 && r() < 0.8) macFromString(MAC.balancer).copy(f, 0);
      if (len >= 14 && r() < 0.8) f.writeUInt16BE(0x0800, 12);
      if (len >= 15 && r() < 0.7) f[14] = 0x45;
      if (len >= 18 && r() < 0.5) f.writeUInt16BE(Math.max(0, len - 14 - Math.floor(r() * 4)), 16);
      if (len >= 22 && r() < 0.7) f.writeUInt16BE(0, 20);
      if (len >= 24 && r() < 0.7) f[23] = r() < 0.5 ? 6 : 17;
      if (len >= 34 && r() < 0.7) f.writeUInt32BE(vipBytes[Math.floor(r() * 3)], 30);
      if (len >= 38 && r() < 0.7) f.writeUInt16BE([80, 443, 53, 8080, 5353][Math.floor(r() * 5)], 36);
      frames.push(f);
    }
    p.run(frames);
    p.assertSame(`random round ${round}`);
  }
});

test('differential: the pcap fixtures', async (t) => {
  if (!native(t)) return;
  const files = fs.existsSync(FIXTURES)
    ? fs
        .readdirSync(FIXTURES)
        .filter((f) => f.endsWith('.pcap'))
        .sort()
    : [];
  assert.ok(files.length >= 2, 'the pcap fixtures are there');
  const specs: SvcSpec[] = [
    { ...SERVICES[0], name: 'web' },
    { name: 'echo', vip: '10.0.10.100', port: 5353, proto: 'udp', scheduler: 'rr', reals: SERVICES[0].reals },
  ];
  for (const file of files) {
    const frames = await readPcap(path.join(FIXTURES, file));
    const p = new Pair(specs);
    p.run(frames);
    p.assertSame(file);
    // And once more, one frame at a time (every frame its own batch).
    const q = new Pair(specs);
    for (const f of frames) q.run([f]);
    q.assertSame(`${file}, frame by frame`);
  }
});

test('a partial checksum (TP_STATUS_CSUMNOTREADY) is completed; nothing else differs', (t) => {
  if (!native(t)) return;
  const p = new Pair(SERVICES);
  const CSUM_NOT_READY = 1 << 3;
  const frames: Buffer[] = [];
  const expected: number[] = [];
  const specs = [
    { flags: SYN, sport: 3000 },
    { flags: ACK | PSH, sport: 3000, payload: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n') },
    { flags: ACK | PSH, sport: 3000, payload: Buffer.from('odd length!'), ipOptions: Buffer.from([1, 1, 1, 0]) },
    { proto: 'udp' as const, dst: '10.0.10.101', dport: 53, sport: 3001, payload: Buffer.from('query') },
    { proto: 'udp' as const, dst: '10.0.10.101', dport: 53, sport: 3001, payload: Buffer.alloc(0) },
  ];
  for (const s of specs) {
    const f = frame(s);
    const l4 = 14 + ((f[14] & 15) << 2);
    const off = l4 + (s.proto === 'udp' ? 6 : 16);
    expected.push(f.readUInt16BE(off));
    // What veth with tx offload hands over: the pseudo-header sum only, not the final checksum.
    f.writeUInt16BE(0x1234, off);
    frames.push(f);
  }
  p.run(frames, { status: frames.map(() => CSUM_NOT_READY) });
  assert.equal(p.nat.sent.length, frames.length);
  p.nat.sent.forEach((out, i) => {
    const l4 = 14 + ((out[14] & 15) << 2);
    const off = l4 + (specs[i].proto === 'udp' ? 6 : 16);
    assert.equal(out.readUInt16BE(off), expected[i], `frame ${i}: checksum completed`);
    // Verify independently: the checksum over pseudo header + segment folds to zero.
    const seg = out.subarray(l4, 14 + out.readUInt16BE(16));
    const pseudo = Buffer.alloc(12);
    out.copy(pseudo, 0, 26, 34);
    pseudo[9] = out[23];
    pseudo.writeUInt16BE(seg.length, 10);
    assert.equal(checksum(Buffer.concat([pseudo, seg])), 0, `frame ${i}: valid L4 checksum`);
    // Everything else is what the TypeScript path sent.
    const ts = p.ts.sent[i];
    assert.deepEqual(out.subarray(0, off), ts.subarray(0, off));
    assert.deepEqual(out.subarray(off + 2), ts.subarray(off + 2));
  });
  assert.equal(p.dp.stats().csumFixed, frames.length);
});

/** A partial TCP/UDP checksum as an offloading sender leaves it: the folded pseudo-header sum (no IP options). */
function partialL4(f: Buffer): Buffer {
  const proto = f[23];
  const len = f.readUInt16BE(16) - 20;
  let sum = f.readUInt16BE(26) + f.readUInt16BE(28) + f.readUInt16BE(30) + f.readUInt16BE(32) + proto + len;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  f.writeUInt16BE(sum, 34 + (proto === 6 ? 16 : 6));
  return f;
}

/** Super-frames (TSO, GRO, UDP GSO), partial checksums, DATA_VALID and headers lbd refuses, over a few flows. */
function vnetTraffic(seed: number): { frames: Buffer[]; vnets: Buffer[] } {
  const r = rng(seed);
  const frames: Buffer[] = [];
  const vnets: Buffer[] = [];
  const h = (o: { flags?: number; gsoType?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }) => {
    const b = Buffer.alloc(10);
    b[0] = o.flags ?? 0;
    b[1] = o.gsoType ?? 0;
    b.writeUInt16LE(54, 2);
    b.writeUInt16LE(o.gsoSize ?? 0, 4);
    b.writeUInt16LE(o.csumStart ?? 0, 6);
    b.writeUInt16LE(o.csumOffset ?? 0, 8);
    return b;
  };
  const add = (f: Buffer, v: Buffer) => {
    frames.push(f);
    vnets.push(v);
  };
  const tcpCsum = { flags: 1, csumStart: 34, csumOffset: 16 };
  for (let k = 0; k < 12; k++) {
    const sport = 6000 + k;
    const dport = k % 3 === 0 ? 443 : 80;
    add(frame({ flags: SYN, sport, dport }), Buffer.alloc(10));
    add(frame({ flags: ACK, sport, dport }), h({ flags: 2 })); // DATA_VALID: nothing to do
    add(partialL4(frame({ flags: ACK | PSH, sport, dport, payload: randomBytes(1 + Math.floor(r() * 1400)) })), h(tcpCsum));
    const mss = [1448, 1460, 536, 8948][k % 4];
    const big = partialL4(frame({ flags: ACK | PSH | (k % 5 === 0 ? 0x80 : 0), sport, dport, payload: randomBytes(2000 + Math.floor(r() * 63000)) }));
    add(big, h({ ...tcpCsum, gsoType: k % 5 === 0 ? 0x81 : 1, gsoSize: mss }));
    // Headers lbd refuses: TCPV6 on IPv4, UFO, gso_size 0.
    add(frame({ flags: ACK, sport, dport, payload: randomBytes(3000) }), h({ gsoType: [4, 3, 1][k % 3], gsoSize: k % 3 === 2 ? 0 : 1400 }));
    const usport = 7000 + k;
    const dgram = partialL4(frame({ proto: 'udp', dst: '10.0.10.101', dport: 53, sport: usport, payload: randomBytes(1200 * (1 + (k % 5)) + (k % 4) * 77) }));
    add(dgram, h({ flags: 1, gsoType: 5, gsoSize: 1200, csumStart: 34, csumOffset: 6 }));
    add(
      partialL4(frame({ proto: 'udp', dst: '10.0.10.101', dport: 53, sport: usport, payload: randomBytes(33) })),
      h({ flags: 1, csumStart: 34, csumOffset: 6 }),
    );
    add(partialL4(frame({ flags: ACK | FIN, sport, dport, payload: randomBytes(5000) })), h({ ...tcpCsum, gsoType: 1, gsoSize: 1448 }));
  }
  return { frames, vnets };
}

test('differential: super-frames and partial checksums leave whole with their headers on both paths', (t) => {
  if (!native(t)) return;
  const { frames, vnets } = vnetTraffic(21);
  const p = new Pair(SERVICES);
  p.run(frames, { vnet: vnets });
  p.assertSame('virtio-net headers, one batch');
  assert.equal(p.ts.fw.counters[Counter.SuperFrames], 12 * 4);
  assert.equal(p.ts.fw.drops[DROP_REASONS.indexOf('gso_unsupported')], 12);
  assert.equal(p.ts.fw.counters[Counter.SoftwareSegments], 0, 'nothing cut where the header can go on');
  const q = new Pair(SERVICES);
  frames.forEach((f, i) => q.run([f], { vnet: [vnets[i]] }));
  q.assertSame('virtio-net headers, frame by frame');
});

test('differential: super-frames whose segments are too big for the egress MTU (DF) are too_big on both paths', (t) => {
  if (!native(t)) return;
  const { frames, vnets } = vnetTraffic(23);
  const p = new Pair(SERVICES);
  p.both((fw) => (fw.egressMtu = 1500));
  p.run(frames, { vnet: vnets });
  p.assertSame('virtio-net headers, egress MTU 1500');
  assert.equal(p.ts.fw.drops[DROP_REASONS.indexOf('too_big')], 3, 'the gso_size 8948 ones');
});

test("differential: without a header-carrying egress, the TypeScript path's segments are the native path's super-frames cut", (t) => {
  if (!native(t)) return;
  const { frames, vnets } = vnetTraffic(22);
  const p = new Pair(SERVICES);
  p.run(frames, { vnet: vnets });
  const soft = side(SERVICES, 4096);
  soft.sink.vnet = false;
  const verdicts = frames.map((f, i) => soft.fw.process(Buffer.from(f), f.length, undefined, vnets[i]));
  assert.deepEqual(verdicts.filter((v) => v === Verdict.Forward).length, p.nat.sent.length);
  const l4ok = (f: Buffer) => {
    const l4 = 14 + ((f[14] & 15) << 2);
    const seg = f.subarray(l4, 14 + f.readUInt16BE(16));
    const pseudo = Buffer.alloc(12);
    f.copy(pseudo, 0, 26, 34);
    pseudo[9] = f[23];
    pseudo.writeUInt16BE(seg.length, 10);
    return checksum(Buffer.concat([pseudo, seg])) === 0 && checksum(f.subarray(14, l4)) === 0;
  };
  let k = 0;
  let cut = 0;
  p.nat.sent.forEach((whole, i) => {
    const v = p.nat.sentVnet[i];
    const hdrLen = whole[23] === 6 ? 14 + 20 + ((whole[46] >> 4) << 2) : 14 + 20 + 8;
    if (v[1] === 0) {
      const out = soft.sent[k++];
      assert.ok(l4ok(out), `frame ${i}: checksums complete`);
      const off = whole[23] === 6 ? 50 : 40;
      assert.deepEqual(out.subarray(0, off), whole.subarray(0, off), `frame ${i}: the same frame`);
      assert.deepEqual(out.subarray(off + 2), whole.subarray(off + 2), `frame ${i}: the same frame`);
      return;
    }
    const mss = v.readUInt16LE(4);
    const n = Math.max(1, Math.ceil((whole.length - hdrLen) / mss));
    const segs = soft.sent.slice(k, k + n);
    k += n;
    cut += n;
    assert.ok(segs.every(l4ok), `super-frame ${i}: every segment's checksums`);
    assert.ok(
      segs.every((s) => s.length <= hdrLen + mss),
      `super-frame ${i}: segments of gso_size`,
    );
    assert.deepEqual(Buffer.concat(segs.map((s) => s.subarray(hdrLen))), whole.subarray(hdrLen), `super-frame ${i}: the payload, in order`);
    assert.deepEqual(segs[0].subarray(0, 14), whole.subarray(0, 14), `super-frame ${i}: the same MACs`);
  });
  assert.equal(k, soft.sent.length);
  assert.equal(soft.fw.counters[Counter.SoftwareSegments], cut);
  assert.ok(cut > 12 * 3 * 2, `super-frames were cut (${cut} segments)`);
  assert.deepEqual([...soft.fw.drops], [...p.nat.fw.drops], 'the same drops');
  assert.equal(soft.fw.conns.size, p.nat.fw.conns.size);
});

test('a VLAN tag the kernel stripped counts as not_ipv4, as libpcap would show it', (t) => {
  if (!native(t)) return;
  const p = new Pair(SERVICES);
  const f = frame({ flags: SYN });
  const res = p.dp.processFrames(Buffer.from(f), Uint32Array.of(f.length), { status: Uint32Array.of(1 << 4) });
  assert.equal(res.verdicts[0], Verdict.Drop);
  assert.equal(p.nat.fw.drops[DROP_REASONS.indexOf('not_ipv4')], 1);
  assert.equal(p.nat.fw.counters[1], f.length + 4);
});

test('differential: an egress that refuses frames (send_failed)', (t) => {
  if (!native(t)) return;
  const r = rng(3);
  const p = new Pair(SERVICES);
  const frames = traffic(r, 300, SERVICES);
  p.run(frames.slice(0, 400));
  p.run(frames.slice(400, 800), { refuse: true });
  p.run(frames.slice(800));
  p.assertSame('with refusals');
  assert.ok(p.ts.fw.drops[DROP_REASONS.indexOf('send_failed')] > 0);
});

test('an exception in the scheduler propagates out of processFrames, and the next frames work', (t) => {
  if (!native(t)) return;
  const p = new Pair(SERVICES);
  const svc = p.nat.fw.services.all[0];
  const real = svc.scheduler;
  svc.scheduler = {
    name: 'boom',
    schedule: () => {
      throw new Error('boom');
    },
  };
  const frames = [frame({ flags: SYN, sport: 1 }), frame({ flags: SYN, sport: 2 })];
  assert.throws(() => p.dp.processFrames(Buffer.concat(frames), Uint32Array.of(frames[0].length, frames[1].length)), /boom/);
  svc.scheduler = real;
  const res = p.dp.processFrames(Buffer.from(frames[1]), Uint32Array.of(frames[1].length));
  assert.equal(res.verdicts[0], Verdict.Forward);
  assert.equal(res.sent!.length, 1);
});

test('setBusyPoll takes 0 to 1000 microseconds and refuses anything else', (t) => {
  if (!native(t)) return;
  if (!load.ok) return;
  const dp = new load.addon.Dataplane();
  try {
    dp.setBusyPoll(0);
    dp.setBusyPoll(200);
    dp.setBusyPoll(1000);
    assert.throws(() => dp.setBusyPoll(1001), /0 to 1000 microseconds/);
    assert.throws(() => dp.setBusyPoll(-1), /0 to 1000 microseconds/);
    assert.throws(() => (dp.setBusyPoll as (v: unknown) => void)('200'), /setBusyPoll\(microseconds: number\)/);
  } finally {
    dp.close();
  }
});

test('processFrames checks its arguments', (t) => {
  if (!native(t)) return;
  const p = new Pair(SERVICES);
  assert.throws(() => p.dp.processFrames(Buffer.alloc(10), Uint32Array.of(11)), /more than the buffer/);
  assert.throws(() => p.dp.processFrames(Buffer.alloc(10), new Uint8Array(1) as unknown as Uint32Array), /Uint32Array/);
  assert.throws(() => p.dp.processFrames(Buffer.alloc(10), Uint32Array.of(10), { status: new Uint32Array(2) }), /status/);
});

test('a connection survives from SYN to FIN with the same states on both paths', (t) => {
  if (!native(t)) return;
  const p = new Pair(SERVICES);
  const states: number[][] = [];
  for (const flags of [SYN, ACK, ACK | PSH, FIN | ACK, ACK]) {
    p.run([frame({ flags, sport: 4242 })]);
    const st = (fw: Forwarder) => fw.conns.state[fw.conns.find(ipToInt('10.0.10.50'), 4242)];
    states.push([st(p.ts.fw), st(p.nat.fw)]);
  }
  assert.deepEqual(states, [
    [ConnState.SynRecv, ConnState.SynRecv],
    [ConnState.Established, ConnState.Established],
    [ConnState.Established, ConnState.Established],
    [ConnState.FinWait, ConnState.FinWait],
    [ConnState.FinWait, ConnState.FinWait],
  ]);
  p.assertSame('one connection');
});

// ---- Path selection -------------------------------------------------------------------------------

const cfg = (dataplane: string, iface: string) =>
  parseConfig(
    `
interfaces:
  capture: ${iface}
dataplane: ${dataplane}
services:
  - name: web
    vip: 10.0.10.100
    port: 80
    real_servers:
      - { address: 10.0.10.40, mac: "${MAC.rs40}" }
`,
    'test.yaml',
  );
const silent = pino({ level: 'silent' });

test('in-memory ports select the TypeScript path without touching the addon; dataplane: ts captures through it', (t) => {
  const none = loadBinding([], 'linux');
  const mem = selectDataplane(cfg('native', 'lo'), { inMemory: true, log: silent, filter: 'arp', load: none });
  assert.equal(mem.path, 'ts');
  if (!native(t)) return;
  const sel = selectDataplane(cfg('ts', 'lo'), { inMemory: false, log: silent, filter: 'arp' });
  assert.deepEqual([sel.path, sel.fallbackReason, typeof sel.openPort], ['ts', null, 'function']);
});

test('dataplane: auto falls back to TypeScript with a warning saying why; native refuses to start', (t) => {
  if (!native(t)) return;
  const warnings: unknown[] = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void warnings.push(JSON.parse(s)) });
  // lo is not Ethernet: the native capture cannot open it.
  const sel = selectDataplane(cfg('auto', 'lo'), { inMemory: false, log, filter: 'arp' });
  assert.equal(sel.path, 'ts');
  assert.match(sel.fallbackReason ?? '', /not Ethernet/);
  assert.equal(warnings.length, 1);
  assert.match(JSON.stringify(warnings[0]), /native fast path unavailable.*not Ethernet|not Ethernet.*native fast path unavailable/);
  assert.throws(
    () => selectDataplane(cfg('native', 'lbd-no-such-if'), { inMemory: false, log: silent, filter: 'arp' }),
    (e: Error & { code?: string }) => e.code === 'E_NATIVE' && /dataplane: native.*does not exist/.test(e.message),
  );
});

// ---- The binding: where it is looked for, and what lbd says when none loads --------------------

test('the binding is looked for in the local build, then the prebuilt one for this arch; LBD_NATIVE_ADDON alone when set', () => {
  assert.deepEqual(bindingCandidates({}, '/opt/lbd', 'arm64'), [
    { file: '/opt/lbd/native/build/Release/lbd_native.node', what: 'local build' },
    { file: '/opt/lbd/prebuilds/linux-arm64/lbd_native.node', what: 'prebuilt' },
  ]);
  assert.deepEqual(bindingCandidates({ LBD_NATIVE_ADDON: '/tmp/other/lbd_native.node' }, '/opt/lbd', 'x64'), [
    { file: '/tmp/other/lbd_native.node', what: 'LBD_NATIVE_ADDON' },
  ]);
});

test('no binding loads: the error lists every place tried and why, and how to get one; lbd does not start in any mode', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-binding-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const junk = path.join(dir, 'lbd_native.node');
  fs.writeFileSync(junk, 'not an ELF object');
  const none = loadBinding(
    [
      { file: path.join(dir, 'native/build/Release/lbd_native.node'), what: 'local build' },
      { file: junk, what: 'prebuilt' },
    ],
    'linux',
    'arm64',
  );
  assert.equal(none.ok, false);
  if (none.ok) return;
  assert.deepEqual(none.tried.length, 2);
  assert.match(none.tried[0], new RegExp(`^local build ${dir}/native/build/Release/lbd_native.node: not built$`));
  assert.match(none.tried[1], new RegExp(`^prebuilt ${junk}: does not load: `));
  assert.match(none.reason, /^no native binding loads/);
  assert.match(none.reason, /npm run build:native.*needs g\+\+/);
  assert.match(none.reason, /prebuilds\/linux-arm64\/lbd_native\.node/);
  for (const mode of ['ts', 'auto', 'native'] as const) {
    assert.throws(
      () => selectDataplane(cfg(mode, 'lo'), { inMemory: false, log: silent, filter: 'arp', load: none }),
      (e: Error & { code?: string }) => e.code === 'E_BINDING' && e.message === none.reason,
      `dataplane: ${mode}`,
    );
  }
  const other = loadBinding([{ file: junk, what: 'prebuilt' }], 'darwin');
  assert.equal(other.ok, false);
  assert.match(other.ok ? '' : other.reason, /needs Linux.*darwin/);
});

test('a binding built against another contract is passed over for the next one', (t) => {
  if (!native(t)) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-binding-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const stale = path.join(dir, 'stale.js');
  fs.writeFileSync(stale, 'module.exports = { abiVersion: 1, contract: {}, Dataplane() {} };');
  const l = loadBinding([
    { file: stale, what: 'local build' },
    { file: load.path, what: 'prebuilt' },
  ]);
  assert.equal(l.ok && l.path, load.path);
});

// ---- RingPort: the TypeScript path's port on the binding's Capture ------------------------------

test('RingPort refuses a missing interface and a bad filter with a CaptureError', (t) => {
  if (!native(t)) return;
  assert.throws(
    () => new RingPort('lbd-no-such-if', 'arp'),
    (e: Error & { code?: string }) => e.code === 'E_CAPTURE' && /cannot capture on "lbd-no-such-if": interface "lbd-no-such-if" does not exist/.test(e.message),
  );
  assert.throws(
    () => new RingPort('lo', 'no such primitive'),
    (e: Error & { code?: string }) => e.code === 'E_CAPTURE' && /bad capture filter "no such primitive"/.test(e.message),
  );
});

// ---- Super-frames (virtio-net headers), ICMP and too-big hand-offs: the native side ----------

/** A struct virtio_net_hdr (host byte order, as PACKET_VNET_HDR gives it). */
function vnetHdr(h: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }): Buffer {
  const b = Buffer.alloc(10);
  b[0] = h.flags ?? 0;
  b[1] = h.gsoType ?? 0;
  b.writeUInt16LE(h.hdrLen ?? 0, 2);
  b.writeUInt16LE(h.gsoSize ?? 0, 4);
  b.writeUInt16LE(h.csumStart ?? 0, 6);
  b.writeUInt16LE(h.csumOffset ?? 0, 8);
  return b;
}
const NEEDS_CSUM = 1;
const GSO_TCPV4 = 1;

/** A native forwarder alone, its hand-offs to the TypeScript path recorded (and answered with `verdict`). */
function nativeAlone(verdict: number | undefined = Verdict.Drop) {
  const s = side(SERVICES, 4096);
  const handed: { frame: Buffer; vnet: Buffer }[] = [];
  const dp = new NativeDataplane(s.fw, (buf, len, vnet) => {
    handed.push({ frame: Buffer.from(buf.subarray(0, len)), vnet: Buffer.from(vnet) });
    return verdict;
  });
  const run = (frames: Buffer[], vnets: Buffer[]) =>
    dp.processFrames(Buffer.concat(frames), Uint32Array.from(frames.map((f) => f.length)), { vnet: Buffer.concat(vnets) });
  return { s, dp, handed, run };
}

/** A partial checksum as a TSO sender leaves it: the pseudo-header's sum, not complemented. */
function makePartial(f: Buffer): Buffer {
  const l4 = 34;
  const len = f.readUInt16BE(16) - 20;
  let sum = f.readUInt16BE(26) + f.readUInt16BE(28) + f.readUInt16BE(30) + f.readUInt16BE(32) + 6 + len;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  f.writeUInt16BE(sum, l4 + 16);
  return f;
}

test('native: a TSO super-frame is forwarded once, whole, with the very header it came with', (t) => {
  if (!native(t)) return;
  const { s, dp, run } = nativeAlone();
  const syn = frame({ flags: SYN, sport: 5000 });
  const ack = frame({ flags: ACK, sport: 5000 });
  const big = makePartial(frame({ flags: ACK | PSH, sport: 5000, payload: randomBytes(60000) }));
  const h = vnetHdr({ flags: NEEDS_CSUM, gsoType: GSO_TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
  const zero = Buffer.alloc(10);
  const res = run([syn, ack, Buffer.from(big)], [zero, zero, h]);
  assert.deepEqual([...res.verdicts], [Verdict.Forward, Verdict.Forward, Verdict.Forward]);
  assert.equal(res.sent?.length, 3);
  const out = res.sent![2];
  assert.equal(out.length, big.length, 'not cut, not segmented');
  assert.deepEqual(out.subarray(12), big.subarray(12), 'IP and TCP untouched: the partial checksum stays for the kernel');
  assert.deepEqual(res.sentVnet![2], h, 'leaves with the same header');
  assert.deepEqual(res.sentVnet![0], zero);
  assert.equal(s.fw.counters[Counter.SuperFrames], 1, 'SuperFrames');
  assert.equal(s.fw.counters[Counter.TxFrames], 3, 'TxFrames');
  assert.equal(s.fw.counters[Counter.TxBytes], syn.length + ack.length + big.length, 'TxBytes');
  assert.equal(dp.stats().csumFixed, 0);
});

test('native: with headers, a partial checksum is left to the kernel; without, the status bit completes it', (t) => {
  if (!native(t)) return;
  const { dp, run } = nativeAlone();
  const f = makePartial(frame({ flags: SYN, sport: 5001, payload: Buffer.from('abc') }));
  const h = vnetHdr({ flags: NEEDS_CSUM, csumStart: 34, csumOffset: 16 });
  const res = run([Buffer.from(f)], [h]);
  assert.deepEqual(res.sent![0].subarray(12), f.subarray(12));
  assert.deepEqual(res.sentVnet![0], h);
  const g = makePartial(frame({ flags: SYN, sport: 5002, payload: Buffer.from('abc') }));
  const r2 = dp.processFrames(Buffer.from(g), Uint32Array.of(g.length), { status: Uint32Array.of(1 << 3) });
  assert.equal(r2.sent![0].readUInt16BE(50), frame({ flags: SYN, sport: 5002, payload: Buffer.from('abc') }).readUInt16BE(50));
  assert.deepEqual(r2.sentVnet![0], Buffer.alloc(10));
  assert.equal(dp.stats().csumFixed, 1);
});

test('native: super-frames of kinds that cannot leave whole are dropped as gso_unsupported', (t) => {
  if (!native(t)) return;
  const { s, run } = nativeAlone();
  const syn = frame({ flags: SYN, sport: 5003 });
  const data = () => frame({ flags: ACK, sport: 5003, payload: Buffer.alloc(3000) });
  const res = run(
    [syn, data(), data(), data(), data()],
    [
      Buffer.alloc(10),
      vnetHdr({ gsoType: 4, gsoSize: 1400 }), // TCPV6 on an IPv4 frame
      vnetHdr({ gsoType: 3, gsoSize: 1400 }), // UFO on a TCP frame
      vnetHdr({ gsoType: GSO_TCPV4, gsoSize: 0 }),
      vnetHdr({ gsoType: GSO_TCPV4 | 0x80, gsoSize: 1400 }), // ECN: fine
    ],
  );
  assert.deepEqual([...res.verdicts], [Verdict.Forward, Verdict.Drop, Verdict.Drop, Verdict.Drop, Verdict.Forward]);
  assert.equal(s.fw.drops[DROP_REASONS.indexOf('gso_unsupported')], 3);
  assert.equal(s.fw.counters[Counter.SuperFrames], 4, 'SuperFrames: every one received');
});

test('native: ICMP goes to the TypeScript path whole with its header, which decides the verdict and counts it', (t) => {
  if (!native(t)) return;
  const { s, dp, handed, run } = nativeAlone(Verdict.Forward);
  const icmp = frame({ proto: 1, payload: randomBytes(100) });
  const res = run([icmp], [vnetHdr({ flags: 2 })]);
  assert.equal(res.verdicts[0], Verdict.Forward, "the callback's verdict");
  assert.equal(handed.length, 1);
  assert.deepEqual(handed[0].frame, icmp);
  assert.deepEqual(handed[0].vnet, vnetHdr({ flags: 2 }));
  assert.equal(s.fw.counters[Counter.RxFrames], 0, 'RxFrames: counted by the TypeScript path, not here');
  assert.equal(dp.stats().slowPath, 1);
  assert.equal(res.sent?.length, 0);
});

test('native: frames too big for the egress MTU with DF set go to the TypeScript path; a super-frame by its segment size', (t) => {
  if (!native(t)) return;
  const { s, handed, run } = nativeAlone();
  s.fw.egressMtu = 1500;
  const zero = Buffer.alloc(10);
  const syn = frame({ flags: SYN, sport: 5004 });
  const fits = frame({ flags: ACK, sport: 5004, payload: Buffer.alloc(1460) }); // 1500 bytes of IP
  const tooBig = frame({ flags: ACK, sport: 5004, payload: Buffer.alloc(1461) });
  const noDf = frame({ flags: ACK, sport: 5004, payload: Buffer.alloc(1461), fragment: 0 });
  const gsoFits = frame({ flags: ACK, sport: 5004, payload: Buffer.alloc(20000) });
  const gsoTooBig = frame({ flags: ACK, sport: 5004, payload: Buffer.alloc(20000) });
  const res = run(
    [syn, fits, tooBig, noDf, gsoFits, gsoTooBig],
    [zero, zero, zero, zero, vnetHdr({ gsoType: GSO_TCPV4, gsoSize: 1460 }), vnetHdr({ gsoType: GSO_TCPV4, gsoSize: 1461 })],
  );
  assert.deepEqual([...res.verdicts], [Verdict.Forward, Verdict.Forward, Verdict.Drop, Verdict.Forward, Verdict.Forward, Verdict.Drop]);
  assert.deepEqual(
    handed.map((h) => h.frame.length),
    [tooBig.length, gsoTooBig.length],
  );
  assert.deepEqual(handed[1].vnet, vnetHdr({ gsoType: GSO_TCPV4, gsoSize: 1461 }));
  assert.equal(s.fw.counters[Counter.RxFrames], 4, 'RxFrames: the handed-off ones are counted by the TypeScript path');
  assert.equal(s.fw.counters[Counter.SuperFrames], 1, 'SuperFrames: likewise');
  s.fw.egressMtu = 0; // no check
  const again = run([Buffer.from(tooBig)], [zero]);
  assert.equal(again.verdicts[0], Verdict.Forward);
});

test('native: processFrames checks the vnet headers', (t) => {
  if (!native(t)) return;
  const { dp } = nativeAlone();
  const f = frame({ flags: SYN });
  assert.throws(() => dp.processFrames(Buffer.from(f), Uint32Array.of(f.length), { vnet: new Uint8Array(9) }), /vnet/);
});

test('Capture on lo: a super-frame comes whole with its virtio-net header, and send() passes one on (root)', async (t) => {
  if (!native(t)) return;
  if (process.getuid?.() !== 0) return t.skip('AF_PACKET needs root (CAP_NET_RAW)');
  const addon = loadNative();
  if (!addon.ok) return;
  const cap = new addon.addon.Capture();
  t.after(() => cap.close());
  const opened = cap.open('lo', 'ip and tcp port 5999', 4 << 20);
  assert.equal(opened.vnet, true);
  const buf = Buffer.alloc(65536 + 64);
  const vnet = new Uint8Array(10);
  const got: { frame: Buffer; vnet: Buffer }[] = [];
  cap.start(buf, (len) => got.push({ frame: Buffer.from(buf.subarray(0, len)), vnet: Buffer.from(vnet) }), vnet);
  const f = makePartial(
    frame({
      src: '127.0.0.1',
      dst: '127.0.0.1',
      dport: 5999,
      flags: ACK,
      payload: randomBytes(20000),
      dstMac: '00:00:00:00:00:00',
      srcMac: '00:00:00:00:00:00',
    }),
  );
  const h = vnetHdr({ flags: NEEDS_CSUM, gsoType: GSO_TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 });
  assert.equal(cap.send(f, f.length, h), true);
  const plain = frame({ src: '127.0.0.1', dst: '127.0.0.1', dport: 5999, flags: ACK, dstMac: '00:00:00:00:00:00', srcMac: '00:00:00:00:00:00' });
  assert.equal(cap.send(plain, plain.length), true, 'no header given: an ordinary frame');
  for (const deadline = Date.now() + 3000; got.length < 2 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 10));
  assert.equal(got.length, 2);
  assert.deepEqual(got[0].frame, f, 'whole, not segmented');
  assert.equal(got[0].vnet[1], GSO_TCPV4, 'gso_type');
  assert.equal(got[0].vnet.readUInt16LE(4), 1448, 'gso_size');
  assert.equal(got[0].vnet[0] & NEEDS_CSUM, NEEDS_CSUM);
  assert.equal(got[0].vnet.readUInt16LE(6), 34, 'csum_start');
  assert.equal(got[0].vnet.readUInt16LE(8), 16, 'csum_offset');
  assert.deepEqual(got[1].frame, plain);
  assert.equal(got[1].vnet[1], 0);
  const st = cap.stats();
  assert.equal(st.superFrames, 1);
  assert.equal(st.truncated, 0);
});

test('Capture: a frame larger than the buffer is delivered with length 0 and counted truncated (root)', async (t) => {
  if (!native(t)) return;
  if (process.getuid?.() !== 0) return t.skip('AF_PACKET needs root (CAP_NET_RAW)');
  const addon = loadNative();
  if (!addon.ok) return;
  const cap = new addon.addon.Capture();
  t.after(() => cap.close());
  cap.open('lo', 'ether proto 0x88b7', 4 << 20);
  const got: number[] = [];
  cap.start(Buffer.alloc(1024), (len) => got.push(len), new Uint8Array(10));
  const f = Buffer.alloc(3000);
  f.writeUInt16BE(0x88b7, 12);
  assert.equal(cap.send(f, f.length), true);
  for (const deadline = Date.now() + 3000; got.length < 1 && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(got, [0]);
  assert.equal(cap.stats().truncated, 1);
});

test('RingPort on lo: one call per frame in the one buffer, every frame whole (64 KiB + a VLAN tag), setFilter (root)', async (t) => {
  if (!native(t)) return;
  if (process.getuid?.() !== 0) return t.skip('AF_PACKET needs root (CAP_NET_RAW)');
  const port = new RingPort('lo', 'ether proto 0x88b5', 4 << 20);
  t.after(() => port.close());
  assert.deepEqual([...port.mac], [0, 0, 0, 0, 0, 0]);
  const marker = randomBytes(8);
  const got: { buf: Buffer; len: number; copy: Buffer }[] = [];
  port.start((buf, len) => got.push({ buf, len, copy: Buffer.from(buf.subarray(0, len)) }));
  const ours = () => got.filter((g) => g.len === 0 || g.copy.subarray(14, 22).equals(marker));
  const frameOf = (type: number, i: number, size = 60) => {
    const f = Buffer.alloc(size);
    f.fill(0xff, 0, 6); // broadcast
    Buffer.from([2, 0, 0, 0, 0x88, 0xb5]).copy(f, 6);
    f.writeUInt16BE(type, 12);
    marker.copy(f, 14);
    f[22] = i;
    return f;
  };
  const until = async (n: number) => {
    for (const deadline = Date.now() + 3000; ours().length < n && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 10));
  };

  const frames = [0, 1, 2].map((i) => frameOf(0x88b5, i));
  for (const f of frames) assert.equal(port.send(f, f.length), true);
  await until(3);
  // lo shows each frame going out and coming in: the port keeps one, as libpcap does.
  assert.deepEqual(
    ours().map((g) => g.copy),
    frames,
  );
  assert.ok(
    ours().every((g) => g.buf === got[0].buf && g.buf.length === 65536 + 64),
    "every frame in the port's one buffer",
  );

  // As large as lo takes (its MTU is 64 KiB): delivered whole, nothing truncated.
  const big = frameOf(0x88b5, 3, 65540);
  assert.equal(port.send(big, big.length), true);
  await until(4);
  assert.equal(ours()[3]?.len, big.length);
  assert.deepEqual(ours()[3]?.copy, big);
  assert.equal(port.stats().truncated, 0);

  // The filter changes on the open capture.
  port.setFilter('ether proto 0x88b6');
  const skipped = frameOf(0x88b5, 4);
  const taken = frameOf(0x88b6, 5);
  port.send(skipped, skipped.length);
  port.send(taken, taken.length);
  await until(5);
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(
    ours()
      .slice(4)
      .map((g) => g.copy),
    [taken],
  );
  assert.equal(port.stats().frames, 5);
});

test('RingPort closed from its own callback: that wake-up ends there and nothing more arrives (root)', async (t) => {
  if (!native(t)) return;
  if (process.getuid?.() !== 0) return t.skip('AF_PACKET needs root (CAP_NET_RAW)');
  const port = new RingPort('lo', 'ether proto 0x88b7', 4 << 20);
  t.after(() => port.close());
  let calls = 0;
  port.start(() => {
    calls++;
    port.close();
  });
  const f = Buffer.alloc(60, 0xff);
  f.writeUInt16BE(0x88b7, 12);
  // All three are in the ring before the event loop wakes the port up.
  for (let i = 0; i < 3; i++) assert.equal(port.send(f, f.length), true);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(calls, 1);
  assert.equal(port.stats().live, false);
  assert.equal(port.send(f, f.length), false, 'a closed port sends nothing');
});
