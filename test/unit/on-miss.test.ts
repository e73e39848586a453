/**
 * on_miss: hash (IPVS's sloppy_tcp) with the consistent schedulers: a TCP segment of a flow this
 * balancer never saw open is scheduled by the hash, so that a balancer taking over another's
 * flows (an ECMP re-hash, a dead balancer) sends each to the server the first one chose.
 * Checked on whole daemons (config → services → data plane) on in-memory ports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnState, DROP_REASONS } from '../../src/dataplane/contract';
import { ipToInt, macToString } from '../../src/dataplane/packet';
import { ConfigError } from '../../src/errors';
import { parseConfig } from '../../src/config/load';
import { DEST_F_DOWN } from '../../src/scheduler/index';
import type { MaglevHashing } from '../../src/scheduler/mh';
import { ACK, FIN, PSH, RST, SYN, frame } from '../helpers/frames';
import { testDaemon, type TestDaemon } from '../helpers/daemon';

const REALS = ['10.0.10.40', '10.0.10.41', '10.0.10.42', '10.0.10.43', '10.0.10.44'];
const macOf = (addr: string) => `02:00:00:00:00:${Number(addr.split('.')[3]).toString(16).padStart(2, '0')}`;

/** One service on 10.0.10.100:80; `reals` in the order the config lists them. */
function config(keys: string, reals: string[] = REALS, weights: Record<string, number> = {}): string {
  return `
interfaces:
  capture: veth-test
log:
  level: silent
services:
  - name: web
    vip: 10.0.10.100
    port: 80
${keys
  .trim()
  .split('\n')
  .map((l) => `    ${l.trim()}`)
  .join('\n')}
    real_servers:
${reals.map((a) => `      - { address: ${a}, weight: ${weights[a] ?? 1}, mac: "${macOf(a)}" }`).join('\n')}
`;
}

const dropped = (t: TestDaemon, reason: string) => t.daemon.forwarder.drops[DROP_REASONS.indexOf(reason as (typeof DROP_REASONS)[number])];
const serverOf = (out: Buffer[]) => (out.length === 1 ? macToString(out[0], 0) : out.length === 0 ? 'dropped' : `${out.length} frames`);

/** A reproducible spread of clients: 10.<a>.<b>.<c>:port. */
function clients(n: number, seed = 7): { src: string; sport: number }[] {
  let s = seed;
  const next = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
  return Array.from({ length: n }, () => ({ src: `10.${1 + (next() % 200)}.${next() % 256}.${1 + (next() % 250)}`, sport: 1024 + (next() % 60000) }));
}

async function pair(keys: string, reals2 = [...REALS].reverse()): Promise<[TestDaemon, TestDaemon]> {
  // The second balancer lists the same servers in another order: mh places them canonically.
  return [await testDaemon(config(keys)), await testDaemon(config(keys, reals2))];
}

for (const scheduler of ['mh', 'sh']) {
  test(`${scheduler} + on_miss: hash: flows opened on one balancer continue through another to the same servers`, async () => {
    // mh places servers in address order, so the second config may list them differently; sh
    // fills its buckets in list order, as IPVS does, so its balancers need the same order.
    const [a, b] = await pair(`scheduler: ${scheduler}\n${scheduler}_port: true\non_miss: hash`, scheduler === 'sh' ? REALS : undefined);
    try {
      const flows = clients(300);
      const chosen = flows.map((c) => serverOf(a.send(frame({ flags: SYN, ...c }))));
      assert.ok(!chosen.includes('dropped'));
      assert.ok(new Set(chosen).size === REALS.length, `the flows spread over all servers (${new Set(chosen).size})`);
      // The routers move the flows: their next segments reach the second balancer, which has no entry.
      const moved = flows.map((c) => serverOf(b.send(frame({ flags: ACK | PSH, ...c, payload: Buffer.from('more') }))));
      assert.deepEqual(moved, chosen, 'each flow reaches the server the first balancer chose');
      const svc = b.daemon.forwarder.services.all[0];
      assert.equal(svc.missScheduled, flows.length, 'counted as picked up');
      assert.equal(svc.conns, flows.length, 'and as connections of the service');
      assert.equal(dropped(b, 'no_connection'), 0);
      // Later segments follow the entry now made.
      assert.deepEqual(
        flows.slice(0, 20).map((c) => serverOf(b.send(frame({ flags: ACK, ...c })))),
        chosen.slice(0, 20),
      );
      assert.equal(svc.missScheduled, flows.length, 'once per flow');
    } finally {
      await a.daemon.stop();
      await b.daemon.stop();
    }
  });
}

test('on_miss: drop (the default): the second balancer drops the moved flows as no_connection', async () => {
  const [a, b] = await pair('scheduler: mh');
  try {
    const flows = clients(50);
    for (const c of flows) assert.equal(a.send(frame({ flags: SYN, ...c })).length, 1);
    for (const c of flows) assert.equal(b.send(frame({ flags: ACK, ...c })).length, 0);
    assert.equal(dropped(b, 'no_connection'), flows.length);
    assert.equal(b.daemon.forwarder.conns.size, 0);
  } finally {
    await a.daemon.stop();
    await b.daemon.stop();
  }
});

test('a picked-up flow is tracked as IPVS sloppy_tcp does: CLOSE, inactive, kept alive by its segments; only an ACK opens one', async () => {
  const t = await testDaemon(config('scheduler: mh\non_miss: hash'));
  try {
    const fw = t.daemon.forwarder;
    const c = { src: '10.7.0.9', sport: 45000 };
    assert.equal(t.send(frame({ flags: ACK | PSH, ...c, payload: Buffer.from('x') })).length, 1);
    const slot = fw.conns.find(ipToInt(c.src), c.sport);
    assert.ok(slot >= 0);
    // The client's side alone cannot tell an established connection from a stray ACK: the entry
    // lives 10 s past its last segment (an ACK flood cannot fill the table for 15 minutes).
    assert.equal(fw.conns.state[slot], ConnState.Close);
    const d = fw.conns.dest[slot];
    assert.deepEqual([fw.dests.active[d], fw.dests.inactive[d]], [0, 1]);
    assert.equal(fw.conns.expires[slot], fw.now + 10);
    fw.now += 8;
    t.send(frame({ flags: ACK, ...c }));
    assert.equal(fw.conns.expires[slot], fw.now + 10, 'each segment renews it');
    // Only what a client sends mid-connection opens one: ACK, without SYN or RST.
    for (const flags of [RST, RST | ACK, SYN | ACK, FIN, 0]) assert.equal(t.send(frame({ flags, src: '10.7.0.10', sport: 45001 })).length, 0, `flags ${flags}`);
    assert.equal(dropped(t, 'no_connection'), 5, 'RSTs, SYN|ACK backscatter, bare FINs and flagless segments are dropped');
    assert.equal(t.send(frame({ flags: FIN | ACK, src: '10.7.0.11', sport: 45002 })).length, 1, 'a FIN of a flow under way is forwarded');
    // A later SYN on the picked-up client port is a new connection (conn_reuse_mode reschedules CLOSE).
    assert.equal(t.send(frame({ flags: SYN, ...c })).length, 1);
    assert.equal(fw.conns.state[fw.conns.find(ipToInt(c.src), c.sport)], ConnState.SynRecv);
  } finally {
    await t.daemon.stop();
  }
});

test('a quiesced server still gets the flows under way that hash to it, not new ones; a down one gets neither', async () => {
  const [a, b] = await pair('scheduler: mh\nmh_port: true\non_miss: hash');
  try {
    const flows = clients(200, 11);
    const chosen = flows.map((c) => serverOf(a.send(frame({ flags: SYN, ...c }))));
    const quiet = macOf('10.0.10.42');
    const down = macOf('10.0.10.43');
    const rs = (addr: string) => b.daemon.forwarder.dests.views.find((v) => v.addr === ipToInt(addr))!;
    const svc = b.daemon.forwarder.services.all[0];
    rs('10.0.10.42').weight = 0;
    rs('10.0.10.43').flags |= DEST_F_DOWN;
    svc.changed();
    const moved = flows.map((c) => serverOf(b.send(frame({ flags: ACK, ...c }))));
    flows.forEach((_, i) => {
      if (chosen[i] === down) assert.equal(moved[i], 'dropped', `flow ${i} of the down server: no server (no mh_fallback)`);
      else assert.equal(moved[i], chosen[i], `flow ${i} keeps its server (${chosen[i]})`);
    });
    assert.ok(chosen.includes(quiet) && chosen.includes(down));
    // New connections: never to the quiesced or the down server.
    const fresh = clients(200, 99).map((c) => serverOf(b.send(frame({ flags: SYN, ...c }))));
    assert.ok(!fresh.includes(quiet) && !fresh.includes(down), 'new flows avoid both');
    assert.ok(fresh.includes('dropped'), 'without mh_fallback, new flows hashed to them find no server');
    assert.ok(dropped(b, 'no_real_server') > 0);
  } finally {
    await a.daemon.stop();
    await b.daemon.stop();
  }
});

test('with mh_fallback the flows of a down server go to the next server the hash picks, the others stay', async () => {
  const t = await testDaemon(config('scheduler: mh\nmh_port: true\nmh_fallback: true\non_miss: hash'));
  try {
    const flows = clients(200, 5);
    const before = flows.map((c) => serverOf(t.send(frame({ flags: SYN, ...c }))));
    const fw = t.daemon.forwarder;
    fw.sweepAll();
    fw.now += 100;
    fw.sweepAll();
    assert.equal(fw.conns.size, 0, 'the entries are gone: the next segments are misses again');
    const rs = fw.dests.views.find((v) => v.addr === ipToInt('10.0.10.40'))!;
    rs.flags |= DEST_F_DOWN;
    fw.services.all[0].changed();
    const after = flows.map((c) => serverOf(t.send(frame({ flags: ACK, ...c }))));
    flows.forEach((_, i) => {
      if (before[i] === macOf('10.0.10.40')) assert.ok(after[i] !== 'dropped' && after[i] !== before[i], `flow ${i} moved to another server`);
      else assert.equal(after[i], before[i], `flow ${i} stays`);
    });
  } finally {
    await t.daemon.stop();
  }
});

test('persistence with mh: the client network, not the client, is hashed, so every balancer keeps a network together', async () => {
  const keys = 'scheduler: mh\npersistence: 300\npersistence_netmask: 255.255.255.0\non_miss: hash';
  const [a, b] = await pair(keys);
  try {
    for (let net = 1; net <= 40; net++) {
      const first = serverOf(a.send(frame({ flags: SYN, src: `10.20.${net}.1`, sport: 40000 })));
      // Another client of the same /24 reaches the other balancer first, mid-stream.
      const other = serverOf(b.send(frame({ flags: ACK, src: `10.20.${net}.77`, sport: 41000 })));
      assert.equal(other, first, `network 10.20.${net}.0/24 on one server on both balancers`);
    }
  } finally {
    await a.daemon.stop();
    await b.daemon.stop();
  }
});

test('config: on_miss: hash needs mh or sh; scheduler options belong to their scheduler; the table size is a listed prime', () => {
  const bad = (keys: string, expect: RegExp) => {
    assert.throws(
      () => parseConfig(config(keys), 'lb.yaml'),
      (e: unknown) => e instanceof ConfigError && expect.test(e.message),
      keys,
    );
  };
  bad('scheduler: wlc\non_miss: hash', /lb\.yaml:\d+:\d+.*on_miss: hash needs a consistent scheduler \(mh or sh\).*scheduler is wlc/s);
  bad('scheduler: sh\nmh_port: true', /"mh_port" applies to scheduler mh only \(this service's scheduler is sh\)/);
  bad('scheduler: mh\nsh_fallback: true', /"sh_fallback" applies to scheduler sh only/);
  bad('scheduler: mh\nmh_table_size: 1000', /mh_table_size must be one of the primes 251, 509,.*65537.*131071, got 1000/);
  bad('scheduler: mh\non_miss: sometimes', /on_miss/);
  const ok = parseConfig(config('scheduler: mh\nmh_table_size: 4093\nmh_fallback: true\nmh_port: true\non_miss: hash'), 'lb.yaml');
  const s = ok.services[0];
  assert.deepEqual([s.mh_table_size, s.mh_fallback, s.mh_port, s.on_miss], [4093, true, true, 'hash']);
  const plain = parseConfig(config('scheduler: mh'), 'lb.yaml').services[0];
  assert.equal(plain.on_miss, undefined, 'absent keys stay absent (drop, 65537, no flags)');
});

test('a reload switches on_miss in place and rebuilds the scheduler only when its options change', async () => {
  const t = await testDaemon(config('scheduler: mh'));
  try {
    const svc = t.daemon.forwarder.services.all[0];
    const first = svc.scheduler;
    const c = { src: '10.9.9.9', sport: 50000 };
    assert.equal(t.send(frame({ flags: ACK, ...c })).length, 0);
    await t.daemon.apply(parseConfig(config('scheduler: mh\non_miss: hash'), 'test.yaml'));
    assert.equal(svc.onMissHash, true);
    assert.equal(svc.scheduler, first, 'on_miss alone keeps the table');
    assert.equal(t.send(frame({ flags: ACK, ...c })).length, 1);
    await t.daemon.apply(parseConfig(config('scheduler: mh\non_miss: hash\nmh_port: true'), 'test.yaml'));
    assert.notEqual(svc.scheduler, first, 'a new flag, a new scheduler');
    assert.equal(svc.scheduler.options?.port, true);
  } finally {
    await t.daemon.stop();
  }
});

test('with mh_fallback, a flow under way on a quiesced server goes where a new connection of its client goes', async () => {
  // Under a fallback the connections opened since the quiesce went to other servers: a balancer
  // picking one up cannot tell it from an older one, so it follows the rule a new one followed.
  const t = await testDaemon(config('scheduler: mh\nmh_fallback: true\non_miss: hash', REALS, { '10.0.10.42': 0 }));
  try {
    const quiet = macOf('10.0.10.42');
    let hashedToQuiet = 0;
    for (const c of clients(200, 21)) {
      const fresh = serverOf(t.send(frame({ flags: SYN, src: c.src, sport: 1000 })));
      const continuing = serverOf(t.send(frame({ flags: ACK, src: c.src, sport: 2000 })));
      assert.equal(continuing, fresh, `client ${c.src}: without mh_port both hash alike`);
      assert.notEqual(fresh, quiet);
      if (fresh !== 'dropped') hashedToQuiet++;
    }
    assert.equal(hashedToQuiet, 200);
  } finally {
    await t.daemon.stop();
  }
});

test("a quiesced server keeps its Maglev entries when a reload gives the service a new scheduler (IPVS's last weight)", async () => {
  const t = await testDaemon(config('scheduler: mh'));
  try {
    const svc = t.daemon.forwarder.services.all[0];
    const table = () => Array.from((svc.scheduler as MaglevHashing).lookupTable());
    const all = table();
    await t.daemon.apply(parseConfig(config('scheduler: mh', REALS, { '10.0.10.42': 0 }), 'test.yaml'));
    assert.deepEqual(table(), all, 'quiescing moves nobody');
    const first = svc.scheduler;
    await t.daemon.apply(parseConfig(config('scheduler: mh\nmh_fallback: true', REALS, { '10.0.10.42': 0 }), 'test.yaml'));
    assert.notEqual(svc.scheduler, first, 'a new scheduler');
    assert.deepEqual(table(), all, 'built from the same last weights: the quiesced server keeps its entries');
  } finally {
    await t.daemon.stop();
  }
});
