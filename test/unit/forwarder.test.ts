import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DROP_REASONS, ConnState } from '../../src/dataplane/contract';
import { macToString, ipToInt } from '../../src/dataplane/packet';
import { arpRequest, arpReply, parseArp, ARP_REPLY } from '../../src/dataplane/arp';
import { macFromString } from '../../src/dataplane/packet';
import { ACK, FIN, MAC, PSH, RST, SYN, frame } from '../helpers/frames';
import { BASE_CONFIG, testDaemon } from '../helpers/daemon';
import { DEST_F_DOWN, DEST_F_OVERLOAD } from '../../src/scheduler/index';
import { DOWN_RESCHEDULE } from '../../src/dataplane/services';
import { parseConfig } from '../../src/config/load';

const drops = (d: { daemon: { forwarder: { drops: Float64Array } } }) => {
  const out: Record<string, number> = {};
  DROP_REASONS.forEach((r, i) => {
    if (d.daemon.forwarder.drops[i]) out[r] = d.daemon.forwarder.drops[i];
  });
  return out;
};
const dstMac = (f: Buffer) => macToString(f, 0);
const srcMac = (f: Buffer) => macToString(f, 6);

test('a SYN to the VIP leaves with the real server as destination MAC and nothing else changed', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const syn = frame({ flags: SYN, sport: 40001 });
    const out = t.send(syn);
    assert.equal(out.length, 1);
    assert.equal(dstMac(out[0]), MAC.rs40);
    assert.equal(srcMac(out[0]), MAC.balancer);
    assert.deepEqual(out[0].subarray(12), syn.subarray(12), 'IP header and TCP segment untouched');
  } finally {
    await t.daemon.stop();
  }
});

test('rr alternates new flows and keeps every packet of a flow on its server', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const picks = [1, 2, 3, 4].map((i) => dstMac(t.send(frame({ flags: SYN, sport: 41000 + i }))[0]));
    assert.deepEqual(picks, [MAC.rs40, MAC.rs111, MAC.rs40, MAC.rs111]);
    for (let i = 1; i <= 4; i++) {
      const out = t.send(frame({ flags: ACK | PSH, sport: 41000 + i, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') }));
      assert.equal(dstMac(out[0]), picks[i - 1], `flow ${i} stays on its server`);
    }
    assert.equal(t.daemon.forwarder.conns.size, 4);
    const dt = t.daemon.forwarder.dests;
    assert.deepEqual([dt.conns[0], dt.conns[1]], [2, 2]);
  } finally {
    await t.daemon.stop();
  }
});

test('ActiveConn/InActConn follow IPVS: new = inactive, ESTABLISHED = active, FIN = inactive again', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const dt = t.daemon.forwarder.dests;
    const fw = t.daemon.forwarder;
    t.send(frame({ flags: SYN, sport: 42000 }));
    const slot = fw.conns.find(ipToInt('10.0.10.50'), 42000);
    assert.equal(fw.conns.state[slot], ConnState.SynRecv);
    assert.deepEqual([dt.active[0], dt.inactive[0]], [0, 1]);
    t.send(frame({ flags: ACK, sport: 42000 }));
    assert.equal(fw.conns.state[slot], ConnState.Established);
    assert.deepEqual([dt.active[0], dt.inactive[0]], [1, 0]);
    t.send(frame({ flags: FIN | ACK, sport: 42000 }));
    assert.equal(fw.conns.state[slot], ConnState.FinWait);
    assert.deepEqual([dt.active[0], dt.inactive[0]], [0, 1]);
    t.send(frame({ flags: ACK, sport: 42000 }));
    assert.equal(fw.conns.state[slot], ConnState.FinWait, 'the last ACK keeps FIN_WAIT (input-only table)');
  } finally {
    await t.daemon.stop();
  }
});

test('entries expire on IPVS timeouts, counters return to zero', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const fw = t.daemon.forwarder;
    t.send(frame({ flags: SYN, sport: 43000 }));
    t.send(frame({ flags: ACK, sport: 43000 }));
    t.send(frame({ flags: SYN, sport: 43001 }));
    t.send(frame({ flags: ACK, sport: 43001 }));
    t.send(frame({ flags: RST, sport: 43001 }));
    const start = fw.now;
    fw.now = start + 9;
    fw.sweepAll();
    assert.equal(fw.conns.size, 2, 'CLOSE lives 10 s');
    fw.now = start + 11;
    fw.sweepAll();
    assert.equal(fw.conns.size, 1, 'the RST flow (CLOSE, 10 s) expired');
    fw.now = start + 899;
    fw.sweepAll();
    assert.equal(fw.conns.size, 1, 'ESTABLISHED lives 900 s');
    fw.now = start + 901;
    fw.sweepAll();
    assert.equal(fw.conns.size, 0);
    assert.deepEqual([...fw.dests.active.subarray(0, 2)], [0, 0]);
    assert.deepEqual([...fw.dests.inactive.subarray(0, 2)], [0, 0]);
    assert.deepEqual(drops(t), {});
  } finally {
    await t.daemon.stop();
  }
});

test('a segment without SYN and without an entry is dropped as no_connection (sloppy_tcp=0)', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    assert.equal(t.send(frame({ flags: ACK, sport: 44000 })).length, 0);
    assert.equal(t.send(frame({ flags: SYN | ACK, sport: 44001 })).length, 0);
    assert.equal(t.send(frame({ flags: SYN | RST, sport: 44002 })).length, 0);
    assert.deepEqual(drops(t), { no_connection: 3 });
    assert.equal(t.daemon.forwarder.conns.size, 0);
  } finally {
    await t.daemon.stop();
  }
});

test('malformed, fragmented, foreign and unsupported frames are counted by reason and dropped', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const sentAtStart = t.egress.sent.length; // the gratuitous ARP announcement
    const good = frame({ flags: SYN, sport: 45000 });
    t.send(good.subarray(0, 10)); // shorter than Ethernet
    t.send(good.subarray(0, 30)); // shorter than IPv4
    t.send(good.subarray(0, 40)); // IP says more than the frame holds
    const v6 = Buffer.from(good);
    v6.writeUInt16BE(0x86dd, 12);
    t.send(v6);
    const badVersion = Buffer.from(good);
    badVersion[14] = 0x65;
    t.send(badVersion);
    const badIhl = Buffer.from(good);
    badIhl[14] = 0x44;
    t.send(badIhl);
    t.send(frame({ flags: SYN, fragment: 0x2000 })); // more fragments
    t.send(frame({ flags: SYN, fragment: 0x0010 })); // a later fragment
    t.send(frame({ proto: 1 })); // ICMP
    t.send(frame({ flags: SYN, dport: 81 })); // not a configured port
    t.send(frame({ flags: SYN, dstMac: MAC.other })); // another host's frame
    const badDoff = frame({ flags: SYN });
    badDoff[14 + 20 + 12] = 0x20; // TCP data offset 2 words
    t.send(badDoff);
    assert.deepEqual(drops(t), {
      truncated: 3,
      not_ipv4: 1,
      bad_ip_header: 3,
      fragment: 2,
      unsupported: 2,
      not_our_mac: 1,
    });
    assert.equal(t.egress.sent.length, sentAtStart, 'nothing forwarded');
  } finally {
    await t.daemon.stop();
  }
});

test('random garbage never throws and never forwards', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    let seed = 12345;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 255;
    for (let i = 0; i < 5000; i++) {
      const len = rnd() % 120;
      const b = Buffer.alloc(len);
      for (let j = 0; j < len; j++) b[j] = rnd();
      if (len > 14 && i % 2 === 0) b.writeUInt16BE(0x0800, 12); // make half of them look like IPv4
      t.send(b);
    }
    assert.equal(t.daemon.forwarder.counters[0], 5000);
  } finally {
    await t.daemon.stop();
  }
});

test('IP options are forwarded untouched', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const f = frame({ flags: SYN, ipOptions: Buffer.from([0x01, 0x01, 0x01, 0x00]) }); // NOP NOP NOP EOL
    const out = t.send(f);
    assert.equal(out.length, 1);
    assert.deepEqual(out[0].subarray(12), f.subarray(12));
  } finally {
    await t.daemon.stop();
  }
});

test('UDP: each new flow is scheduled, later datagrams follow it, entries expire after the udp timeout', async () => {
  const t = await testDaemon(BASE_CONFIG({ protocol: 'udp', port: 5353 }));
  try {
    const fw = t.daemon.forwarder;
    const a = t.send(frame({ proto: 'udp', dport: 5353, sport: 5000, payload: Buffer.from('hi') }));
    const b = t.send(frame({ proto: 'udp', dport: 5353, sport: 5001, payload: Buffer.from('hi') }));
    const a2 = t.send(frame({ proto: 'udp', dport: 5353, sport: 5000, payload: Buffer.from('again') }));
    assert.equal(dstMac(a[0]), MAC.rs40);
    assert.equal(dstMac(b[0]), MAC.rs111);
    assert.equal(dstMac(a2[0]), MAC.rs40);
    assert.deepEqual([fw.dests.active[0], fw.dests.inactive[0]], [0, 1], 'UDP entries count as InActConn');
    assert.equal(t.send(frame({ flags: SYN, dport: 5353 })).length, 0, 'TCP to a UDP service is not ours');
    fw.now += 301;
    fw.sweepAll();
    assert.equal(fw.conns.size, 0);
  } finally {
    await t.daemon.stop();
  }
});

test('persistence keeps a client on one real server across connections, until the template expires', async () => {
  const t = await testDaemon(BASE_CONFIG({ persistence: '60s' }));
  try {
    const fw = t.daemon.forwarder;
    const c1 = [0, 1, 2, 3].map((i) => dstMac(t.send(frame({ flags: SYN, src: '10.0.10.50', sport: 46000 + i }))[0]));
    for (let i = 0; i < 4; i++) t.send(frame({ flags: ACK, src: '10.0.10.50', sport: 46000 + i }));
    assert.deepEqual(new Set(c1).size, 1, 'one client, one server');
    const c2 = dstMac(t.send(frame({ flags: SYN, src: '10.0.10.51', sport: 46000 }))[0]);
    t.send(frame({ flags: ACK, src: '10.0.10.51', sport: 46000 }));
    assert.notEqual(c2, c1[0], 'rr gives the next client the other server');
    // Connections keep the template alive past its timeout; once they are gone it expires.
    fw.now += 61;
    fw.sweepAll();
    assert.equal(fw.templates.size, 2, 'templates with live connections stay');
    for (let i = 0; i < 4; i++) t.send(frame({ flags: RST, src: '10.0.10.50', sport: 46000 + i }));
    fw.now += 11;
    fw.sweepAll();
    fw.now += 61;
    fw.sweepAll();
    assert.equal(fw.templates.size, 1, "the idle client's template expired");
  } finally {
    await t.daemon.stop();
  }
});

test('weight 0 quiesces: the open flow continues, new flows go elsewhere', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const first = t.send(frame({ flags: SYN, sport: 47000 }));
    assert.equal(dstMac(first[0]), MAC.rs40);
    const rs40 = t.daemon.forwarder.dests.views[0];
    rs40.weight = 0;
    rs40.service.changed();
    for (let i = 1; i <= 4; i++) assert.equal(dstMac(t.send(frame({ flags: SYN, sport: 47000 + i }))[0]), MAC.rs111);
    assert.equal(dstMac(t.send(frame({ flags: ACK, sport: 47000 }))[0]), MAC.rs40, 'the existing flow continues');
  } finally {
    await t.daemon.stop();
  }
});

/** BASE_CONFIG with connection thresholds on 10.0.10.40 (ipvsadm -x/-y). */
const withThresholds = (lines: string) => BASE_CONFIG().replace(`mac: ${MAC.rs40}`, `mac: ${MAC.rs40}\n${lines}`);

test('u_threshold/l_threshold: at u connections the server takes no new flows, below l it takes them again (IPVS overload)', async () => {
  const t = await testDaemon(withThresholds('        u_threshold: 3\n        l_threshold: 2'));
  try {
    const fw = t.daemon.forwarder;
    const rs40 = fw.dests.views[0];
    assert.deepEqual([rs40.uThreshold, rs40.lThreshold], [3, 2]);
    // rr alternates: flows 0, 2, 4 go to .40; its third connection reaches u_threshold.
    const to = (sport: number) => dstMac(t.send(frame({ flags: SYN, sport }))[0]);
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((i) => to(48000 + i)),
      [MAC.rs40, MAC.rs111, MAC.rs40, MAC.rs111, MAC.rs40],
    );
    assert.equal(rs40.flags & DEST_F_OVERLOAD, DEST_F_OVERLOAD, 'overloaded at 3 connections');
    assert.deepEqual(
      [5, 6, 7].map((i) => to(48000 + i)),
      [MAC.rs111, MAC.rs111, MAC.rs111],
      'new flows avoid it',
    );
    assert.equal(dstMac(t.send(frame({ flags: ACK, sport: 48000 }))[0]), MAC.rs40, 'its own flows go on');
    // Connections end (RST → CLOSE, 10 s; a RST in SYN_RECV is ignored, as IPVS does): one
    // gone leaves 2, not below l_threshold 2.
    const start = fw.now;
    t.send(frame({ flags: RST, sport: 48000 }));
    fw.now = start + 11;
    fw.sweepAll();
    assert.equal(fw.dests.active[0] + fw.dests.inactive[0], 2);
    assert.equal(rs40.flags & DEST_F_OVERLOAD, DEST_F_OVERLOAD, 'still overloaded at l_threshold');
    assert.equal(to(48010), MAC.rs111);
    t.send(frame({ flags: ACK, sport: 48002 }));
    t.send(frame({ flags: RST, sport: 48002 }));
    fw.now = start + 22;
    fw.sweepAll();
    assert.equal(rs40.flags & DEST_F_OVERLOAD, 0, 'below l_threshold: takes new flows again');
    assert.ok([48011, 48012].map(to).includes(MAC.rs40));
  } finally {
    await t.daemon.stop();
  }
});

test('u_threshold without l_threshold: relieved below 3/4 of it; raising it by reload lifts the overload at once', async () => {
  const t = await testDaemon(withThresholds('        u_threshold: 4'));
  try {
    const fw = t.daemon.forwarder;
    const rs40 = fw.dests.views[0];
    for (let i = 0; i < 8; i++) t.send(frame({ flags: SYN, sport: 49000 + i })); // 4 each
    assert.equal(fw.dests.inactive[0], 4);
    assert.equal(rs40.flags & DEST_F_OVERLOAD, DEST_F_OVERLOAD);
    const start = fw.now;
    t.send(frame({ flags: ACK, sport: 49000 }));
    t.send(frame({ flags: RST, sport: 49000 }));
    fw.now = start + 11;
    fw.sweepAll();
    assert.equal(rs40.flags & DEST_F_OVERLOAD, DEST_F_OVERLOAD, '3 is not below 3/4 of 4');
    t.send(frame({ flags: ACK, sport: 49002 }));
    t.send(frame({ flags: RST, sport: 49002 }));
    fw.now = start + 22;
    fw.sweepAll();
    assert.equal(rs40.flags & DEST_F_OVERLOAD, 0, '2 is below 3');
    // Overloaded again, then a reload that raises u_threshold lifts it without waiting.
    t.send(frame({ flags: SYN, sport: 49100 }));
    t.send(frame({ flags: SYN, sport: 49101 }));
    t.send(frame({ flags: SYN, sport: 49102 }));
    t.send(frame({ flags: SYN, sport: 49103 }));
    assert.equal(rs40.flags & DEST_F_OVERLOAD, DEST_F_OVERLOAD);
    const cfg = parseConfig(withThresholds('        u_threshold: 100'), 'test.yaml');
    const actions = await t.daemon.apply(cfg);
    assert.deepEqual(
      actions.map((a) => a.kind),
      ['real-update'],
    );
    assert.equal(rs40.uThreshold, 100);
    assert.equal(rs40.flags & DEST_F_OVERLOAD, 0);
    assert.equal(fw.conns.size, 10, 'a reload never touches the connection table');
  } finally {
    await t.daemon.stop();
  }
});

test('thresholds and on_down reschedule: a moved flow binds to its new server (which may overload) and unbinds from the old', async () => {
  const t = await testDaemon(BASE_CONFIG().replace(`mac: ${MAC.rs111}`, `mac: ${MAC.rs111}\n        u_threshold: 2`));
  try {
    const fw = t.daemon.forwarder;
    const [rs40, rs111] = fw.dests.views;
    assert.deepEqual(
      [1, 2, 3].map((i) => dstMac(t.send(frame({ flags: SYN, sport: 55000 + i }))[0])),
      [MAC.rs40, MAC.rs111, MAC.rs40],
    );
    assert.equal(rs111.flags & DEST_F_OVERLOAD, 0);
    // rs40 fails its health check; its flows are rescheduled on their next frame.
    rs40.flags |= DEST_F_DOWN;
    fw.dests.downAction[rs40.index] = DOWN_RESCHEDULE;
    assert.equal(dstMac(t.send(frame({ flags: ACK, sport: 55001 }))[0]), MAC.rs111, 'moved to rs111');
    assert.equal(fw.dests.inactive[rs111.index] + fw.dests.active[rs111.index], 2);
    assert.equal(rs111.flags & DEST_F_OVERLOAD, DEST_F_OVERLOAD, "the moved flow counts toward rs111's threshold");
    assert.equal(t.send(frame({ flags: ACK, sport: 55003 })).length, 0, 'no server can take the other one');
    assert.deepEqual(drops(t), { no_real_server: 1 });
  } finally {
    await t.daemon.stop();
  }
});

test('one sweepAll() is a whole pass of both tables, however many removals shift entries back', async () => {
  // 1000 flows and 1000 persistence templates in tables of 1024: long clusters, so removing
  // one entry keeps shifting the next ones into its slot.
  const t = await testDaemon(BASE_CONFIG({ persistence: '1', size: 1024 }));
  try {
    const fw = t.daemon.forwarder;
    for (let i = 0; i < 1000; i++) t.send(frame({ flags: SYN, src: `10.2.${i >> 8}.${i & 255}` }));
    assert.deepEqual([fw.conns.size, fw.templates.size], [1000, 1000]);
    fw.now += 1000;
    fw.sweepAll();
    assert.deepEqual([fw.conns.size, fw.templates.size], [0, 0], 'everything expired went');
    assert.deepEqual([...fw.dests.inactive.subarray(0, 2), ...fw.dests.persistent.subarray(0, 2)], [0, 0, 0, 0]);
  } finally {
    await t.daemon.stop();
  }
});

test('no available real server and a full table are drops with their own reasons', async () => {
  const t = await testDaemon(BASE_CONFIG({ weights: [0, 0] }));
  try {
    assert.equal(t.send(frame({ flags: SYN })).length, 0);
    assert.deepEqual(drops(t), { no_real_server: 1 });
  } finally {
    await t.daemon.stop();
  }
  const full = await testDaemon(BASE_CONFIG({ size: 1024 }));
  try {
    // A table full of established connections: nothing may give way (an unestablished entry
    // would: the SYN-flood defense, syn-flood.test.ts).
    for (let i = 0; i < 1024; i++) {
      full.send(frame({ flags: SYN, src: `10.1.${i >> 8}.${i & 255}` }));
      full.send(frame({ flags: ACK, src: `10.1.${i >> 8}.${i & 255}` }));
    }
    for (let i = 1024; i < 1030; i++) full.send(frame({ flags: SYN, src: `10.1.${i >> 8}.${i & 255}` }));
    assert.equal(full.daemon.forwarder.conns.size, 1024);
    assert.deepEqual(drops(full), { table_full: 6 });
  } finally {
    await full.daemon.stop();
  }
});

test('a frame the egress refuses is counted as send_failed', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    t.egress.refuse = true;
    t.send(frame({ flags: SYN }));
    assert.deepEqual(drops(t), { send_failed: 1 });
  } finally {
    await t.daemon.stop();
  }
});

test('ARP: lbd answers who-has VIP with the capture MAC, and nothing else', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const client = macFromString(MAC.client);
    const sentBefore = t.capture.sent.length;
    t.capture.inject(arpRequest(client, ipToInt('10.0.10.50'), ipToInt('10.0.10.100')));
    const replies = t.capture.sent.slice(sentBefore);
    assert.equal(replies.length, 1);
    const a = parseArp(replies[0], replies[0].length)!;
    assert.equal(a.op, ARP_REPLY);
    assert.equal(macToString(a.senderMac), MAC.balancer);
    assert.equal(a.senderIp, ipToInt('10.0.10.100'));
    assert.equal(macToString(replies[0], 0), MAC.client, 'unicast back to the asker');
    t.capture.inject(arpRequest(client, ipToInt('10.0.10.50'), ipToInt('10.0.10.40')));
    assert.equal(t.capture.sent.length, sentBefore + 1, "no answer for a real server's address");
  } finally {
    await t.daemon.stop();
  }
});

test('real-server MACs come from ARP on the egress port and follow a change', async () => {
  const yaml = BASE_CONFIG()
    .replace(/\n\s+mac: .*/g, '')
    .replace('capture: veth-test', 'capture: veth-test\n  egress: veth-back');
  const t = await testDaemon(yaml, { twoPorts: true });
  try {
    const asked = t.egress.sent.map((f) => parseArp(f, f.length)).filter((a) => a && a.op === 1);
    assert.ok(
      asked.some((a) => a!.targetIp === ipToInt('10.0.10.40')),
      'asked for 10.0.10.40 on the egress port',
    );
    assert.equal(t.send(frame({ flags: SYN, sport: 48000 })).length, 0, 'unresolved: dropped');
    assert.deepEqual(drops(t), { no_mac: 1 });
    const egressMac = t.egress.mac;
    t.egress.inject(arpReply(macFromString(MAC.rs40), ipToInt('10.0.10.40'), egressMac, 0));
    t.egress.inject(arpReply(macFromString(MAC.rs111), ipToInt('10.0.10.111'), egressMac, 0));
    const out = t.send(frame({ flags: SYN, sport: 48001 }));
    assert.equal(dstMac(out[0]), MAC.rs111);
    assert.equal(srcMac(out[0]), '02:00:00:00:0e:01', "source MAC is the egress interface's");
    t.egress.inject(arpReply(macFromString(MAC.other), ipToInt('10.0.10.111'), egressMac, 0));
    assert.equal(dstMac(t.send(frame({ flags: ACK, sport: 48001 }))[0]), MAC.other, 'a changed MAC is followed');
  } finally {
    await t.daemon.stop();
  }
});
