import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import { describeAction, plan } from '../../src/control/reconcile';
import { ReloadError } from '../../src/control/daemon';
import { ACK, MAC, SYN, frame } from '../helpers/frames';
import { BASE_CONFIG, testDaemon } from '../helpers/daemon';
import { macToString } from '../../src/dataplane/packet';

const cfg = (yaml: string) => parseConfig(yaml, 'test.yaml');

test('an unchanged config plans nothing', () => {
  assert.deepEqual(plan(cfg(BASE_CONFIG()), cfg(BASE_CONFIG())), []);
});

test('a weight change, an added and a removed real server are exactly three actions', () => {
  const before = cfg(BASE_CONFIG());
  const afterYaml = BASE_CONFIG({ weights: [3, 1] }).replace(/      - address: 10\.0\.10\.111\n.*\n.*\n/, '      - address: 10.0.10.112\n        weight: 1\n');
  const actions = plan(before, cfg(afterYaml)).map(describeAction);
  assert.deepEqual(actions, [
    'remove real server 10.0.10.111 from 10.0.10.100:80/tcp (drain)',
    'update real server 10.0.10.40 of 10.0.10.100:80/tcp: weight',
    'add real server 10.0.10.112:80 to 10.0.10.100:80/tcp (weight 1)',
  ]);
});

test('interfaces and table size need a restart; scheduler and timeouts do not', () => {
  const before = cfg(BASE_CONFIG());
  const after = cfg(BASE_CONFIG({ scheduler: 'wlc', size: 2048 }).replace('capture: veth-test', 'capture: veth-other') + 'timeouts:\n  tcp: 60s\n');
  const kinds = plan(before, after).map((a) => a.kind + ('field' in a ? `:${a.field}` : ''));
  assert.deepEqual(kinds.sort(), [
    'restart-required:connection_table.size',
    'restart-required:interfaces.capture',
    'restart-required:interfaces.egress',
    'service-update',
    'timeouts',
  ]);
});

test('apply: flows survive a reload; a removed server drains; its flow keeps going; new flows avoid it', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const first = t.send(frame({ flags: SYN, sport: 50000 }));
    t.send(frame({ flags: ACK, sport: 50000 }));
    assert.equal(macToString(first[0]), MAC.rs40);
    const without40 = BASE_CONFIG().replace(/      - address: 10\.0\.10\.40\n.*\n.*\n/, '');
    const actions = await t.daemon.apply(cfg(without40));
    assert.deepEqual(
      actions.map((a) => a.kind),
      ['real-remove'],
    );
    assert.equal(macToString(t.send(frame({ flags: ACK, sport: 50000 }))[0]), MAC.rs40, 'the open flow still reaches 10.0.10.40');
    for (let i = 1; i <= 3; i++) assert.equal(macToString(t.send(frame({ flags: SYN, sport: 50000 + i }))[0]), MAC.rs111);
    assert.equal(t.daemon.forwarder.conns.size, 4, 'no entry was lost');
    // Once its last flow is gone, the server is let go.
    const fw = t.daemon.forwarder;
    t.send(frame({ flags: 0x04, sport: 50000 }));
    fw.now += 11;
    fw.sweepAll();
    (t.daemon as any).finishDrains();
    assert.equal(fw.dests.views[0].gone, true);
  } finally {
    await t.daemon.stop();
  }
});

test('apply: a change that needs a restart is refused and nothing changes', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const before = t.daemon.running;
    await assert.rejects(t.daemon.apply(cfg(BASE_CONFIG({ size: 4096, weights: [5, 5] }))), (e: unknown) => {
      assert.ok(e instanceof ReloadError);
      assert.match((e as Error).message, /connection_table\.size changed \(1024 → 4096\): needs a restart/);
      return true;
    });
    assert.equal(t.daemon.running, before);
    assert.equal(t.daemon.forwarder.dests.views[0].weight, 1);
  } finally {
    await t.daemon.stop();
  }
});

test('apply: a new service is balanced at once; the scheduler can change under running flows', async () => {
  const t = await testDaemon(BASE_CONFIG());
  try {
    const withUdp =
      BASE_CONFIG() +
      `  - name: dns
    vip: 10.0.10.101
    port: 53
    protocol: udp
    real_servers:
      - address: 10.0.10.40
        mac: ${MAC.rs40}
`;
    await t.daemon.apply(cfg(withUdp));
    const out = t.send(frame({ proto: 'udp', dst: '10.0.10.101', dport: 53, payload: Buffer.from('q') }));
    assert.equal(macToString(out[0]), MAC.rs40);
    await t.daemon.apply(cfg(withUdp.replace('scheduler: rr', 'scheduler: wlc')));
    assert.equal(t.daemon.findService('10.0.10.100:80/tcp')!.scheduler.name, 'wlc');
  } finally {
    await t.daemon.stop();
  }
});

test('apply: changing persistence drops the old templates; removed servers still drain to zero references', async () => {
  const t = await testDaemon(BASE_CONFIG({ persistence: '60s' }));
  try {
    const fw = t.daemon.forwarder;
    t.send(frame({ flags: SYN, sport: 51000 }));
    t.send(frame({ flags: ACK, sport: 51000 }));
    assert.equal(fw.templates.size, 1);
    await t.daemon.apply(cfg(BASE_CONFIG({ persistence: '0' })));
    assert.equal(fw.templates.size, 0, 'the template made under persistence 60s is gone');
    assert.equal(fw.dests.persistent[0], 0);
    // The flow goes on; when it ends nothing is left pointing at its server.
    t.send(frame({ flags: 0x04, sport: 51000 }));
    fw.now += 11;
    fw.sweepAll();
    assert.equal(fw.conns.size, 0);
    assert.equal(fw.dests.views[0].references, 0);
  } finally {
    await t.daemon.stop();
  }
});

test('busy_poll: a change is one action, applied without a restart', () => {
  const a = cfg(BASE_CONFIG());
  const b = cfg(BASE_CONFIG().replace('log:', 'busy_poll: 150us\nlog:'));
  assert.deepEqual(plan(a, b), [{ kind: 'busy-poll', busyPoll: 0.00015 }]);
  assert.equal(describeAction(plan(a, b)[0]), 'busy_poll → 150us');
  assert.deepEqual(plan(b, b), []);
});
