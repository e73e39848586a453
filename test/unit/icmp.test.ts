import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, DROP_REASONS } from '../../src/dataplane/contract';
import { ipToInt, macFromString, macToString } from '../../src/dataplane/packet';
import { HostBuckets, IcmpKind, IcmpResult, TokenBucket } from '../../src/dataplane/icmp';
import { inetChecksum } from '../../src/dataplane/checksum';
import { captureFilter } from '../../src/control/daemon';
import { ACK, MAC, PSH, SYN, checksum, frame } from '../helpers/frames';
import { BASE_CONFIG, TestDaemon, testDaemon } from '../helpers/daemon';

const EGRESS_MAC = '02:00:00:00:0e:01';
const ROUTER_MAC = '02:00:00:00:00:01';

const dropsOf = (t: TestDaemon): Record<string, number> => {
  const out: Record<string, number> = {};
  DROP_REASONS.forEach((r, i) => {
    if (t.daemon.forwarder.drops[i]) out[r] = t.daemon.forwarder.drops[i];
  });
  return out;
};

/**
 * An ICMP error from a router (10.0.10.1) to the VIP quoting `quoted` (an Ethernet frame whose
 * IP packet is the reply the router could not deliver), cut to `quoteBytes` of it.
 */
function icmpError(quoted: Buffer, opts: { type?: number; code?: number; mtu?: number; quoteBytes?: number; dst?: string; dstMac?: string } = {}): Buffer {
  const ip = quoted.subarray(14, 14 + Math.min(quoted.length - 14, opts.quoteBytes ?? 548));
  const total = 20 + 8 + ip.length;
  const f = Buffer.alloc(14 + total);
  macFromString(opts.dstMac ?? MAC.balancer).copy(f, 0);
  macFromString(ROUTER_MAC).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f[15] = 0xc0;
  f.writeUInt16BE(total, 16);
  f[22] = 64;
  f[23] = 1;
  f.writeUInt32BE(ipToInt('10.0.10.1'), 26);
  f.writeUInt32BE(ipToInt(opts.dst ?? '10.0.10.100'), 30);
  f.writeUInt16BE(checksum(f.subarray(14, 34)), 24);
  f[34] = opts.type ?? 3;
  f[35] = opts.code ?? 4;
  f.writeUInt16BE(opts.mtu ?? 1400, 40);
  ip.copy(f, 42);
  f.writeUInt16BE(checksum(f.subarray(34)), 36);
  return f;
}

/** The real server's reply of the client's flow 10.0.10.50:sport → VIP:80 (what a router quotes). */
const reply = (sport: number, proto: 'tcp' | 'udp' = 'tcp', size = 1448) =>
  frame({ src: '10.0.10.100', dst: '10.0.10.50', sport: proto === 'udp' ? 5353 : 80, dport: sport, proto, flags: ACK, payload: Buffer.alloc(size) });

/** BASE_CONFIG with a second interface for the real servers: what leaves on either is told apart. */
const TWO_NIC = (extra: Parameters<typeof BASE_CONFIG>[0] = {}) =>
  BASE_CONFIG(extra).replace('  capture: veth-test\n', '  capture: veth-test\n  egress: veth-egress\n');
const UDP_CONFIG = TWO_NIC({ protocol: 'udp', port: 5353 });

test('ICMP fragmentation needed about a reply goes, unchanged but for the MACs, to the real server holding the flow', async () => {
  const t = await testDaemon(TWO_NIC(), { twoPorts: true });
  try {
    const servers = [40001, 40002].map((sport) => macToString(t.send(frame({ flags: SYN, sport }))[0], 0));
    assert.deepEqual(servers, [MAC.rs40, MAC.rs111]);
    for (const [i, sport] of [40001, 40002].entries()) {
      const icmp = icmpError(reply(sport));
      const out = t.send(icmp);
      assert.equal(out.length, 1, 'forwarded');
      assert.equal(macToString(out[0], 0), servers[i], 'to the server of that flow');
      assert.equal(macToString(out[0], 6), EGRESS_MAC, 'from the egress interface');
      assert.deepEqual(out[0].subarray(12), icmp.subarray(12), 'IP and ICMP untouched');
    }
    const fw = t.daemon.forwarder;
    assert.equal(fw.counters[Counter.IcmpForwarded], 2);
    assert.equal(fw.icmp.get(IcmpKind.FragNeeded, IcmpResult.Forwarded), 2);
    assert.equal(fw.conns.size, 2, 'no entry made or removed');
    assert.deepEqual(dropsOf(t), {});
  } finally {
    await t.daemon.stop();
  }
});

test('destination unreachable and time exceeded about UDP and TCP flows are forwarded, counted by type', async () => {
  const t = await testDaemon(UDP_CONFIG, { twoPorts: true });
  try {
    const to = macToString(t.send(frame({ proto: 'udp', sport: 41000, dport: 5353, payload: Buffer.from('hi') }))[0], 0);
    const unreach = t.send(icmpError(reply(41000, 'udp', 10), { code: 1 }));
    const exceeded = t.send(icmpError(reply(41000, 'udp', 10), { type: 11, code: 0 }));
    assert.equal(macToString(unreach[0], 0), to);
    assert.equal(macToString(exceeded[0], 0), to);
    const fw = t.daemon.forwarder;
    assert.equal(fw.icmp.get(IcmpKind.DestUnreachable, IcmpResult.Forwarded), 1);
    assert.equal(fw.icmp.get(IcmpKind.TimeExceeded, IcmpResult.Forwarded), 1);
    assert.equal(fw.counters[Counter.IcmpForwarded], 2);
  } finally {
    await t.daemon.stop();
  }
});

test('an ICMP error about a flow without an entry is dropped icmp_unknown_flow; other ICMP is not forwarded', async () => {
  const t = await testDaemon(TWO_NIC(), { twoPorts: true });
  try {
    t.send(frame({ flags: SYN, sport: 42000 }));
    assert.equal(t.send(icmpError(reply(42001))).length, 0, 'another client port');
    // The quote's source is not the VIP the error went to, or not a service's port.
    const other = frame({ src: '10.0.10.101', dst: '10.0.10.50', sport: 80, dport: 42000, flags: ACK });
    assert.equal(t.send(icmpError(other)).length, 0);
    const wrongPort = frame({ src: '10.0.10.100', dst: '10.0.10.50', sport: 81, dport: 42000, flags: ACK });
    assert.equal(t.send(icmpError(wrongPort, { type: 11, code: 0 })).length, 0);
    const fw = t.daemon.forwarder;
    assert.equal(fw.icmp.get(IcmpKind.FragNeeded, IcmpResult.UnknownFlow), 2);
    assert.equal(fw.icmp.get(IcmpKind.TimeExceeded, IcmpResult.UnknownFlow), 1);
    // An echo request to the VIP is not an error about a flow: unsupported, as before.
    const echo = icmpError(reply(42000), { type: 8, code: 0 });
    assert.equal(t.send(echo).length, 0);
    // A quote too short for the ports: truncated. Addressed to another MAC: not_our_mac.
    assert.equal(t.send(icmpError(reply(42000), { quoteBytes: 24 })).length, 0);
    assert.equal(t.send(icmpError(reply(42000), { dstMac: MAC.other })).length, 0);
    assert.deepEqual(dropsOf(t), { icmp_unknown_flow: 3, unsupported: 1, truncated: 1, not_our_mac: 1 });
    assert.equal(fw.counters[Counter.IcmpForwarded], 0);
  } finally {
    await t.daemon.stop();
  }
});

test('ICMP errors forwarded are rate-limited (token bucket), the excess counted', async () => {
  const t = await testDaemon(TWO_NIC(), { twoPorts: true });
  try {
    t.send(frame({ flags: SYN, sport: 43000 }));
    const icmp = icmpError(reply(43000));
    const t0 = performance.now();
    let forwarded = 0;
    for (let i = 0; i < 1000; i++) forwarded += t.send(icmp).length;
    const ms = performance.now() - t0;
    const fw = t.daemon.forwarder;
    const limited = fw.icmp.get(IcmpKind.FragNeeded, IcmpResult.RateLimited);
    assert.equal(forwarded + limited, 1000);
    // A burst of 50, then 1000 a second.
    assert.ok(forwarded >= 50 && forwarded <= 50 + Math.ceil(ms) + 1, `forwarded ${forwarded} in ${ms.toFixed(1)} ms`);
    assert.equal(fw.counters[Counter.IcmpForwarded], forwarded);
  } finally {
    await t.daemon.stop();
  }
});

test('TokenBucket: a burst, then the rate', () => {
  let now = 0;
  const b = new TokenBucket(100, 5, () => now);
  let n = 0;
  for (let i = 0; i < 20; i++) n += b.take() ? 1 : 0;
  assert.equal(n, 5);
  now += 50; // 5 tokens
  n = 0;
  for (let i = 0; i < 20; i++) n += b.take() ? 1 : 0;
  assert.equal(n, 5);
  now += 10_000; // never more than the burst
  n = 0;
  for (let i = 0; i < 20; i++) n += b.take() ? 1 : 0;
  assert.equal(n, 5);
});

test('a DF frame larger than the egress MTU is not forwarded; the client gets fragmentation needed from the VIP', async () => {
  const t = await testDaemon(TWO_NIC(), { twoPorts: true });
  try {
    const fw = t.daemon.forwarder;
    fw.egressMtu = 1400;
    t.send(frame({ flags: SYN, sport: 44000 }));
    const before = t.capture.sent.length;
    const big = frame({ flags: ACK | PSH, sport: 44000, payload: Buffer.alloc(1460, 7) }); // IP 1500
    assert.equal(t.send(big).length, 0, 'not forwarded');
    const icmps = t.capture.sent.slice(before);
    assert.equal(icmps.length, 1, 'one ICMP out of the capture port');
    const m = icmps[0];
    assert.equal(macToString(m, 0), MAC.client, 'to the frame’s source MAC');
    assert.equal(macToString(m, 6), MAC.balancer);
    assert.equal(m.readUInt16BE(12), 0x0800);
    assert.equal(m[23], 1, 'ICMP');
    assert.equal(m.readUInt32BE(26), ipToInt('10.0.10.100'), 'from the VIP');
    assert.equal(m.readUInt32BE(30), ipToInt('10.0.10.50'), 'to the client');
    assert.equal(m.readUInt16BE(16), 576, 'quoted up to 576 bytes, as Linux');
    assert.equal(m.length, 14 + 576);
    assert.equal(inetChecksum(m, 14, 20), 0, 'IP checksum');
    assert.deepEqual([m[34], m[35]], [3, 4], 'destination unreachable, fragmentation needed');
    assert.equal(m.readUInt16BE(40), 1400, 'next-hop MTU');
    assert.equal(inetChecksum(m, 34, m.length - 34), 0, 'ICMP checksum');
    assert.deepEqual(m.subarray(42), big.subarray(14, 14 + 548), 'quotes the IP header and data');
    assert.equal(fw.counters[Counter.IcmpTooBigSent], 1);
    assert.deepEqual(dropsOf(t), { too_big: 1 });
    // Fits: forwarded. Larger without DF: forwarded too (the kernel's egress may fragment it).
    assert.equal(t.send(frame({ flags: ACK | PSH, sport: 44000, payload: Buffer.alloc(1360) })).length, 1, 'IP 1400 fits');
    assert.equal(t.send(frame({ flags: ACK | PSH, sport: 44000, payload: Buffer.alloc(1460), fragment: 0 })).length, 1, 'no DF');
    // No MTU known (0): no check.
    fw.egressMtu = 0;
    assert.equal(t.send(big).length, 1);
    assert.equal(fw.counters[Counter.IcmpTooBigSent], 1);
  } finally {
    await t.daemon.stop();
  }
});

test('a short too-big frame is quoted whole; the ICMPs sent to one client are rate-limited per client', async () => {
  const t = await testDaemon(TWO_NIC(), { twoPorts: true });
  try {
    const fw = t.daemon.forwarder;
    fw.egressMtu = 100;
    t.send(frame({ flags: SYN, sport: 45000 }));
    const before = t.capture.sent.length;
    const small = frame({ flags: ACK | PSH, sport: 45000, payload: Buffer.alloc(200) });
    t.send(small);
    const m = t.capture.sent[before];
    assert.equal(m.readUInt16BE(16), 20 + 8 + small.length - 14);
    assert.deepEqual(m.subarray(42), small.subarray(14));
    for (let i = 0; i < 999; i++) t.send(small);
    const sent = fw.counters[Counter.IcmpTooBigSent];
    assert.equal(sent + fw.icmp.tooBigRateLimited, 1000);
    // One client: its own limit (a burst of 6, then one a second) holds well before the global one.
    assert.ok(sent >= 6 && sent <= 8, `sent ${sent}`);
    assert.equal(fw.drops[DROP_REASONS.indexOf('too_big')], 1000);
  } finally {
    await t.daemon.stop();
  }
});

test('the capture filter lets ICMP errors to each VIP in, once per VIP', () => {
  const f = captureFilter([
    { vip: '10.0.10.100', port: 80, protocol: 'tcp' },
    { vip: '10.0.10.100', port: 443, protocol: 'tcp' },
    { vip: '10.0.10.101', port: 53, protocol: 'udp' },
  ]);
  assert.equal(f.match(/and icmp and/g)?.length, 2);
  assert.match(f, /\(dst host 10\.0\.10\.100 and icmp and \(icmp\[0\] == 3 or icmp\[0\] == 11\)\)/);
  assert.match(f, /\(dst host 10\.0\.10\.101 and icmp and/);
  assert.equal(captureFilter([]), 'inbound and arp');
});

test('HostBuckets: one client over its limit (a burst of 6, then one a second) leaves the others theirs', () => {
  let now = 0;
  const b = new HostBuckets(1024, 1, 6, () => now);
  const a = 0x0a000a32;
  const other = 0x0a000a33;
  let sent = 0;
  for (let i = 0; i < 100; i++) if (b.take(a)) sent++;
  assert.equal(sent, 6, 'the burst');
  assert.equal(b.take(other), true, 'another client is not held back');
  now += 1000;
  assert.equal(b.take(a), true, 'one more a second later');
  assert.equal(b.take(a), false);
});
