import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnState, Counter } from '../../src/dataplane/contract';
import { ipToInt, macToString } from '../../src/dataplane/packet';
import { ACK, FIN, MAC, RST, SYN, frame } from '../helpers/frames';
import { BASE_CONFIG, testDaemon } from '../helpers/daemon';
import { formatConfig, parseConfig } from '../../src/config/load';
import { ConfigError, formatConfigIssue } from '../../src/errors';
import { plan } from '../../src/control/reconcile';

const dstMac = (f: Buffer) => macToString(f, 0);
const CLIENT = ipToInt('10.0.10.50');

/** BASE_CONFIG with a top-level conn_reuse_mode (undefined: the default) and/or the service's own. */
const withMode = (top?: number, own?: number, extra: Parameters<typeof BASE_CONFIG>[0] = {}) => {
  let y = BASE_CONFIG(extra);
  if (own !== undefined) y = y.replace('    scheduler:', `    conn_reuse_mode: ${own}\n    scheduler:`);
  return top !== undefined ? `conn_reuse_mode: ${top}\n${y}` : y;
};

/** The segments that leave a flow's entry in each state (after its SYN). */
const TO_STATE: Record<string, { flags: number[]; state: ConnState }> = {
  FIN_WAIT: { flags: [ACK, FIN | ACK, ACK], state: ConnState.FinWait },
  CLOSE: { flags: [ACK, RST], state: ConnState.Close },
  TIME_WAIT: { flags: [FIN], state: ConnState.TimeWait },
  ESTABLISHED: { flags: [ACK], state: ConnState.Established },
};

/** Rescheduled (true) or reused (false), by mode then state: IPVS's is_new_conn_expected() for DR. */
const EXPECTED: Record<number, Record<string, boolean>> = {
  0: { FIN_WAIT: false, CLOSE: false, TIME_WAIT: false, ESTABLISHED: false },
  1: { FIN_WAIT: false, CLOSE: true, TIME_WAIT: true, ESTABLISHED: false },
  2: { FIN_WAIT: true, CLOSE: true, TIME_WAIT: true, ESTABLISHED: false },
};

for (const mode of [0, 1, 2]) {
  for (const [name, { flags, state }] of Object.entries(TO_STATE)) {
    const resched = EXPECTED[mode][name];
    test(`conn_reuse_mode ${mode}: a SYN on a port whose entry is in ${name} is ${resched ? 'rescheduled and counted' : 'sent down the old entry'}`, async () => {
      const t = await testDaemon(withMode(mode));
      try {
        const fw = t.daemon.forwarder;
        const svc = fw.services.all[0];
        const dt = fw.dests;
        assert.equal(dstMac(t.send(frame({ flags: SYN, sport: 50000 }))[0]), MAC.rs40);
        for (const f of flags) t.send(frame({ flags: f, sport: 50000 }));
        const slot = fw.conns.find(CLIENT, 50000);
        assert.equal(fw.conns.state[slot], state);
        const expiredBefore = fw.counters[Counter.ExpiredConns];
        const out = t.send(frame({ flags: SYN, sport: 50000 }));
        assert.equal(out.length, 1);
        const now = fw.conns.find(CLIENT, 50000);
        assert.equal(fw.conns.size, 1, 'one entry for the port either way');
        if (resched) {
          assert.equal(dstMac(out[0]), MAC.rs111, 'rr: the new connection goes to the next server');
          assert.equal(svc.conns, 2);
          assert.deepEqual([dt.conns[0], dt.conns[1]], [1, 1]);
          assert.equal(fw.counters[Counter.NewConns], 2);
          assert.equal(fw.counters[Counter.ExpiredConns], expiredBefore + 1, 'the old entry expired');
          assert.deepEqual([dt.active[0], dt.inactive[0]], [0, 0], 'the old entry released');
          assert.deepEqual([dt.active[1], dt.inactive[1]], [0, 1], 'the new one bound');
          assert.equal(fw.reuseRescheduled, 1);
        } else {
          assert.equal(dstMac(out[0]), MAC.rs40, 'the old server');
          assert.equal(svc.conns, 1, 'not counted');
          assert.equal(fw.counters[Counter.NewConns], 1);
          assert.equal(fw.reuseRescheduled, 0);
          assert.equal(dt.active[0] + dt.inactive[0], 1);
        }
        // IPVS's input-only table: a SYN in ESTABLISHED stays there, elsewhere it means SYN_RECV.
        assert.equal(fw.conns.state[now], name === 'ESTABLISHED' ? ConnState.Established : ConnState.SynRecv);
      } finally {
        await t.daemon.stop();
      }
    });
  }
}

test('conn_reuse_mode: a SYN with ACK or RST never reschedules, nor does UDP', async () => {
  const t = await testDaemon(withMode(2));
  try {
    const fw = t.daemon.forwarder;
    t.send(frame({ flags: SYN, sport: 50100 }));
    t.send(frame({ flags: FIN | ACK, sport: 50100 }));
    assert.equal(dstMac(t.send(frame({ flags: SYN | ACK, sport: 50100 }))[0]), MAC.rs40);
    assert.equal(fw.services.all[0].conns, 1);
  } finally {
    await t.daemon.stop();
  }
});

test('conn_reuse_mode: a rescheduled persistent flow releases its template reference and keeps its server', async () => {
  const t = await testDaemon(withMode(undefined, undefined, { persistence: '300' }));
  try {
    const fw = t.daemon.forwarder;
    assert.equal(dstMac(t.send(frame({ flags: SYN, sport: 50200 }))[0]), MAC.rs40);
    const tpl = fw.templates.find(CLIENT, 0);
    assert.equal(fw.templates.refs[tpl], 1);
    t.send(frame({ flags: FIN | ACK, sport: 50200 }));
    assert.equal(dstMac(t.send(frame({ flags: SYN, sport: 50200 }))[0]), MAC.rs40, 'the template keeps the server');
    assert.equal(fw.templates.refs[tpl], 1, 'the old reference released, the new one taken');
    assert.equal(fw.services.all[0].conns, 2);
    assert.equal(fw.dests.persistent[0], 1);
  } finally {
    await t.daemon.stop();
  }
});

test('conn_reuse_mode: top level (default 2), per service overrides, written to the shared state, reloadable', async () => {
  const t = await testDaemon(withMode(undefined, 0));
  try {
    const fw = t.daemon.forwarder;
    const svc = fw.services.all[0];
    assert.equal(svc.connReuseMode, 0);
    assert.equal(fw.state.arrays.svcFlags[svc.index] & 3, 0, 'the native path reads it from the region');
    const running = parseConfig(withMode(undefined, 0), 'test.yaml');
    assert.equal(running.conn_reuse_mode, 2);
    // The service's own removed: the top level's 1 applies.
    const next = parseConfig(withMode(1), 'test.yaml');
    const actions = await t.daemon.apply(next);
    assert.deepEqual(actions.map((a) => a.kind).sort(), ['conn-reuse-mode', 'service-update']);
    assert.equal(svc.connReuseMode, 1);
    assert.equal(fw.state.arrays.svcFlags[svc.index] & 3, 1);
    // Top level only.
    await t.daemon.apply(parseConfig(withMode(2), 'test.yaml'));
    assert.equal(svc.connReuseMode, 2);
    assert.deepEqual(plan(parseConfig(withMode(2), 'test.yaml'), parseConfig(withMode(0), 'test.yaml')), [{ kind: 'conn-reuse-mode', mode: 0 }]);
  } finally {
    await t.daemon.stop();
  }
});

test('conn_reuse_mode and expire_nodest_conn in the field table: ranges, lbd check prints them', () => {
  const bad = (y: string) => {
    try {
      parseConfig(y, 'test.yaml');
    } catch (e) {
      return (e as ConfigError).issues.map(formatConfigIssue).join('\n');
    }
    return '';
  };
  assert.match(bad(withMode(3)), /conn_reuse_mode/);
  assert.match(bad(withMode(undefined, -1)), /conn_reuse_mode/);
  const cfg = parseConfig(`expire_nodest_conn: true\n${withMode(undefined, 1)}`, 'test.yaml');
  assert.equal(cfg.expire_nodest_conn, true);
  const out = formatConfig(cfg);
  assert.match(out, /^conn_reuse_mode: 2$/m);
  assert.match(out, /^ {4}conn_reuse_mode: 1$/m);
  assert.match(out, /^expire_nodest_conn: true$/m);
  assert.deepEqual(parseConfig(out, 'test.yaml'), { ...cfg, file: 'test.yaml' });
});

test('expire_nodest_conn: true makes drop the on_remove of services without their own; a service on_remove still wins', async () => {
  for (const [extra, cut] of [
    ['expire_nodest_conn: true\n', true],
    ['', false],
    ['expire_nodest_conn: true\non_remove: drain\n', false],
  ] as const) {
    const yaml = extra + BASE_CONFIG();
    const t = await testDaemon(yaml);
    try {
      const fw = t.daemon.forwarder;
      t.send(frame({ flags: SYN, sport: 50300 })); // rs40
      t.send(frame({ flags: SYN, sport: 50301 })); // rs111
      const without111 = yaml.replace(/ {6}- address: 10\.0\.10\.111\n.*\n.*\n/, '');
      await t.daemon.apply(parseConfig(without111, 'test.yaml'));
      assert.equal(fw.conns.find(CLIENT, 50301) < 0, cut, `${JSON.stringify(extra)}: flows of the removed server ${cut ? 'cut' : 'drain'}`);
      assert.equal(fw.conns.size, cut ? 1 : 2);
    } finally {
      await t.daemon.stop();
    }
  }
});
