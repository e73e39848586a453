/**
 * SYN-flood defense (dataplane/syn-flood.ts): a full table's unestablished entries give way to
 * new connections, never an established one; while the defense is on, half-open entries live
 * defense_syn_recv_timeout; auto turns on at the threshold and off below three quarters of it.
 * The flood that used to lock clients out: one spoofed address cycling its ports, whose repeated
 * SYNs keep refreshing their own entries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnState, DROP_REASONS } from '../../src/dataplane/contract';
import { SynFloodDefense } from '../../src/dataplane/syn-flood';
import { ConnTable } from '../../src/dataplane/conntable';
import { parseConfig } from '../../src/config/load';
import { describeAction, plan } from '../../src/control/reconcile';
import { ACK, SYN, frame } from '../helpers/frames';
import { BASE_CONFIG, testDaemon, type TestDaemon } from '../helpers/daemon';
import { Pair, SERVICES } from '../helpers/differential';

const drops = (t: TestDaemon) => Object.fromEntries(DROP_REASONS.map((r, i) => [r, t.daemon.forwarder.drops[i]]).filter(([, n]) => n !== 0));
const withDefense = (yaml: string, keys: string) =>
  yaml.replace(/connection_table:\n  size: (\d+)\n/, (_m, size) => `connection_table:\n  size: ${size}\n${keys}`);
const flooder = '198.18.0.1';

/** One spoofed source cycling its ports: `count` SYNs from ports 1024, 1025, … (wrapping at `ports`). */
function flood(t: TestDaemon, count: number, ports = 64000, from = 0): void {
  for (let i = from; i < from + count; i++) t.send(frame({ flags: SYN, src: flooder, sport: 1024 + (i % ports) }));
}

/** A client's handshake: SYN then ACK; true when both were forwarded. */
function connect(t: TestDaemon, src: string, sport: number): boolean {
  return t.send(frame({ flags: SYN, src, sport })).length === 1 && t.send(frame({ flags: ACK, src, sport })).length === 1;
}

test('a flood from one address cycling its ports keeps the table full, yet every new client gets in', async () => {
  const t = await testDaemon(BASE_CONFIG({ size: 1024 }));
  try {
    // Two rounds over 4096 ports: the table (1024) full of refreshed half-open entries.
    flood(t, 8192, 4096);
    const fw = t.daemon.forwarder;
    assert.equal(fw.conns.size, 1024);
    t.daemon.tick();
    assert.equal(fw.defense.active, true, 'auto: on at 75 % full');
    let ok = 0;
    for (let c = 0; c < 50; c++) {
      if (connect(t, `10.1.0.${c + 1}`, 40000)) ok++;
      flood(t, 200, 4096, 8192 + c * 200); // the flood goes on between clients
    }
    assert.equal(ok, 50, 'every client connected');
    assert.equal(fw.defense.noVictim, 0, 'every sample held a half-open entry');
    assert.equal(drops(t).table_full ?? 0, 0, 'nothing dropped as table_full');
    // The clients' connections are established and stay: the flood evicts only half-open entries.
    let established = 0;
    for (let i = 0; i < fw.conns.slots; i++) if (fw.conns.dest[i] >= 0 && fw.conns.state[i] === ConnState.Established) established++;
    assert.equal(established, 50);
    assert.ok(fw.defense.evictions > 0);
  } finally {
    await t.daemon.stop();
  }
});

test('off: the same flood locks new clients out (table_full), as before the defense', async () => {
  const t = await testDaemon(withDefense(BASE_CONFIG({ size: 1024 }), '  syn_flood_defense: off\n'));
  try {
    flood(t, 8192, 4096);
    t.daemon.tick();
    assert.equal(t.daemon.forwarder.defense.active, false);
    assert.equal(connect(t, '10.1.0.1', 40000), false);
    assert.ok((drops(t).table_full ?? 0) > 0);
    assert.equal(t.daemon.forwarder.defense.evictions, 0);
  } finally {
    await t.daemon.stop();
  }
});

test('an established connection never gives way: a table full of them drops new flows as table_full', async () => {
  const t = await testDaemon(withDefense(BASE_CONFIG({ size: 1024 }), '  syn_flood_defense: on\n'));
  try {
    for (let i = 0; i < 1024; i++) assert.ok(connect(t, `10.2.${i >> 8}.${i & 255}`, 40000));
    flood(t, 100);
    assert.deepEqual(drops(t), { table_full: 100 });
    assert.equal(t.daemon.forwarder.conns.size, 1024);
    assert.equal(t.daemon.forwarder.defense.evictions, 0);
    assert.equal(t.daemon.forwarder.defense.noVictim, 100);
  } finally {
    await t.daemon.stop();
  }
});

test('while on, half-open entries live defense_syn_recv_timeout: new ones when tracked, older ones shortened by the sweep', async () => {
  const t = await testDaemon(withDefense(BASE_CONFIG({ size: 1024 }), '  defense_threshold: 50\n  defense_syn_recv_timeout: 3s\n'));
  try {
    const fw = t.daemon.forwarder;
    const now = () => fw.now;
    flood(t, 100);
    const slotOf = (port: number) => fw.conns.find(0xc6120001, port); // 198.18.0.1, service 0
    assert.equal(fw.conns.expires[slotOf(1024)], now() + 60, "off: IPVS's 60 s");
    flood(t, 500, 64000, 100); // 600 of 1024: over 50 %
    t.daemon.tick();
    assert.equal(fw.defense.active, true);
    fw.sweepAll();
    assert.equal(fw.conns.expires[slotOf(1024)], now() + 3, 'an older entry shortened');
    flood(t, 1, 64000, 700);
    assert.equal(fw.conns.expires[slotOf(1024 + 700)], now() + 3, 'a new one tracked with the short timeout');
    // An established connection keeps its own timeout.
    assert.ok(connect(t, '10.1.0.1', 40000));
    fw.sweepAll();
    assert.equal(fw.conns.expires[fw.conns.find(0x0a010001, 40000)], now() + 900);
    // Expired entries go; below three quarters of the threshold (37.5 %), auto turns off, and SYN_RECV is 60 s again.
    fw.now += 4;
    fw.sweepAll();
    t.daemon.tick();
    assert.equal(fw.defense.active, false);
    flood(t, 1, 64000, 5000);
    assert.equal(fw.conns.expires[slotOf(1024 + 5000)], now() + 60);
  } finally {
    await t.daemon.stop();
  }
});

test('auto: on at the threshold, off only below three quarters of it (no flapping at the edge)', () => {
  const d = new SynFloodDefense({ mode: 'auto', thresholdPercent: 80, synRecvTimeout: 5 });
  assert.equal(d.update(799, 1000), false);
  assert.equal(d.update(800, 1000), true);
  assert.equal(d.active, true);
  assert.equal(d.update(700, 1000), false, 'still on at 70 %');
  assert.equal(d.update(600, 1000), false, 'still on at 60 % (= 3/4 of 80 %)');
  assert.equal(d.update(599, 1000), true);
  assert.equal(d.active, false);
  assert.equal(d.activations, 1);
  const on = new SynFloodDefense({ mode: 'on', thresholdPercent: 80, synRecvTimeout: 5 });
  on.update(0, 1000);
  assert.equal(on.active, true);
});

test('the victim is a half-open entry, the one due soonest in its sample; none when the sample holds only established ones', () => {
  const conns = new ConnTable(1024);
  const d = new SynFloodDefense({ mode: 'on', thresholdPercent: 75, synRecvTimeout: 5 });
  // Half the entries established, a quarter half-open due at 100, a quarter half-open due at 200.
  for (let i = 0; i < 1024; i++) {
    const state = i % 2 === 0 ? ConnState.Established : ConnState.SynRecv;
    conns.insert(0x0a000000 + i, 1000, 0, state, 0, state === ConnState.Established ? 50 : i % 4 === 1 ? 100 : 200);
  }
  for (let n = 0; n < 200; n++) {
    const v = d.victim(conns);
    assert.ok(v >= 0);
    assert.equal(conns.state[v], ConnState.SynRecv, 'never an established one (though due sooner)');
    assert.equal(conns.expires[v], 100, 'the one due soonest in its sample');
  }
  for (let i = 0; i < conns.slots; i++) if (conns.dest[i] >= 0) conns.state[i] = ConnState.Established;
  for (let n = 0; n < 50; n++) assert.equal(d.victim(conns), -1);
  assert.equal(d.noVictim, 50);
});

test('the defense keys: checked, normalized, and reloaded without a restart', () => {
  const cfg = parseConfig(withDefense(BASE_CONFIG(), '  syn_flood_defense: on\n  defense_threshold: 60\n  defense_syn_recv_timeout: 2s\n'), 'lb.yaml');
  assert.deepEqual(cfg.connection_table, { size: 1024, syn_flood_defense: 'on', defense_threshold: 60, defense_syn_recv_timeout: 2 });
  assert.throws(() => parseConfig(withDefense(BASE_CONFIG(), '  syn_flood_defense: yes\n'), 'lb.yaml'), /connection_table\.syn_flood_defense/);
  assert.throws(() => parseConfig(withDefense(BASE_CONFIG(), '  defense_threshold: 0\n'), 'lb.yaml'), /connection_table\.defense_threshold/);
  assert.throws(() => parseConfig(withDefense(BASE_CONFIG(), '  defense_syn_recv_timeout: 2m\n'), 'lb.yaml'), /connection_table\.defense_syn_recv_timeout/);
  const actions = plan(parseConfig(BASE_CONFIG(), 'lb.yaml'), cfg);
  assert.deepEqual(actions.map(describeAction), ['SYN-flood defense → on, threshold 60%, SYN_RECV 2s']);
});

test('a reload turns the defense off and on: off stops evicting, on starts again', async () => {
  const t = await testDaemon(BASE_CONFIG({ size: 1024 }));
  try {
    const fw = t.daemon.forwarder;
    await t.daemon.apply(parseConfig(withDefense(BASE_CONFIG({ size: 1024 }), '  syn_flood_defense: off\n'), 'lb.yaml'));
    flood(t, 2048, 2048);
    t.daemon.tick();
    assert.equal(connect(t, '10.1.0.1', 40000), false);
    await t.daemon.apply(parseConfig(withDefense(BASE_CONFIG({ size: 1024 }), '  syn_flood_defense: on\n'), 'lb.yaml'));
    t.daemon.tick();
    assert.equal(fw.defense.active, true);
    assert.equal(connect(t, '10.1.0.2', 40000), true);
  } finally {
    await t.daemon.stop();
  }
});

test('differential: a cycling flood, clients among it, the defense turning on, sweeps: both data paths alike', () => {
  const pair = new Pair(SERVICES, 1024);
  let port = 0;
  const floodFrames = (n: number) => Array.from({ length: n }, () => frame({ flags: SYN, src: flooder, sport: 1024 + (port++ % 3000) }));
  pair.run(floodFrames(2500));
  pair.both((fw) => fw.updateDefense());
  assert.equal(pair.ts.fw.defense.active, true);
  for (let c = 0; c < 40; c++) {
    pair.run([frame({ flags: SYN, src: `10.3.0.${c + 1}`, sport: 50000 }), ...floodFrames(100), frame({ flags: ACK, src: `10.3.0.${c + 1}`, sport: 50000 })]);
    if (c % 10 === 9)
      pair.both((fw) => {
        fw.now += 2;
        fw.sweepAll();
        fw.updateDefense();
      });
  }
  pair.assertSame('after the flood');
  assert.ok(pair.ts.fw.defense.evictions > 0);
  assert.equal(pair.nat.fw.defense.evictions, pair.ts.fw.defense.evictions);
});
