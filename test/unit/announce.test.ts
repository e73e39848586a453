/**
 * Announcing the VIPs (host/announce.ts) on whole daemons, with the host's side recorded: the
 * TAP handed to a keeper, the routes that follow the services' ability to serve, the keeper
 * letting go, and what each kind of stop does to the announcement. The kernel's side (a TAP
 * that dies with its keeper, BIRD withdrawing) is the e2e tests' (announce.test.ts, bgp.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/errors';
import { parseConfig } from '../../src/config/load';
import { FakeAnnounceHost as FakeHost } from '../helpers/announce-host';
import { testDaemon } from '../helpers/daemon';

const config = (announce: string) => `
interfaces:
  capture: veth-test
log:
  level: silent
${announce}
services:
  - name: web
    vip: 10.0.10.100
    port: 80
    scheduler: mh
    real_servers: [{ address: 10.0.10.40, mac: "02:00:00:00:00:28" }]
  - name: tls
    vip: 10.0.10.100
    port: 443
    real_servers: [{ address: 10.0.10.40, mac: "02:00:00:00:00:28" }]
  - name: dns
    vip: 10.0.10.101
    port: 53
    protocol: udp
    real_servers: [{ address: 10.0.10.40, mac: "02:00:00:00:00:28" }]
`;
const ANNOUNCE = `announce:
  withdraw_delay: 300ms
  hang_timeout: 700ms`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('announce: the config section, its defaults and what it refuses', () => {
  const c = parseConfig(config('announce:'), 'lb.yaml');
  assert.deepEqual(c.announce, { interface: 'lbdv-veth-test', table: 4242, hold_on_restart: 0, withdraw_delay: 2, hang_timeout: 1 });
  assert.equal(parseConfig(config(''), 'lb.yaml').announce, undefined, 'absent: nothing is announced');
  const custom = parseConfig(config('announce: { interface: vips0, table: 100, hold_on_restart: 5s, hang_timeout: 500ms }'), 'lb.yaml').announce;
  assert.deepEqual(custom, { interface: 'vips0', table: 100, hold_on_restart: 5, withdraw_delay: 2, hang_timeout: 0.5 });
  for (const [text, why] of [
    ['announce: { table: 254 }', /announce\.table: table 254 is the kernel's main table: .* use a table of its own/],
    ['announce: { table: 0 }', /announce\.table/],
    ['announce: { hang_timeout: 0 }', /announce\.hang_timeout/],
    ['announce: { hang_timeout: 200ms }', /announce\.hang_timeout: hang_timeout must be at least 300ms .* got 200ms/],
    ['announce: { withdraw_delay: 10m }', /announce\.withdraw_delay.*5m/],
    ['announce: { interface: "this-name-is-too-long" }', /announce\.interface/],
  ] as const) {
    assert.throws(
      () => parseConfig(config(text), 'lb.yaml'),
      (e: unknown) => e instanceof ConfigError && why.test(e.message) && /lb\.yaml:\d+:\d+/.test(e.message),
      text,
    );
  }
});

test('announce: the TAP goes to a keeper, one route per VIP that can serve, and heartbeats', async () => {
  const host = new FakeHost();
  const t = await testDaemon(config(ANNOUNCE), { announceHost: host });
  try {
    assert.deepEqual(host.log.slice(0, 5), [
      'open lbdv-veth-test',
      'keeper fd 40 hang 700',
      'close 40',
      'ip link set lbdv-veth-test up',
      'routes via lbdv-veth-test table 4242',
    ]);
    assert.deepEqual([...host.routes].sort(), ['10.0.10.100/32', '10.0.10.101/32'], 'each VIP once, however many services');
    assert.ok(host.log.includes('ip route replace 10.0.10.100/32 dev lbdv-veth-test table 4242 proto static'));
    await sleep(350);
    assert.ok(host.keepers[0].lines.filter((l) => l === '.\n').length >= 2, 'heartbeats every 100 ms');
    // A service below quorum without a sorry server cannot serve: its VIP goes when no other
    // service on it can serve. (health.test.ts drives this through real health verdicts.)
    const svc = (name: string) => [...t.daemon.forwarder.services.all].find((s) => s?.name === name)!;
    svc('dns').belowQuorum = true;
    svc('web').belowQuorum = true;
    await sleep(250);
    assert.deepEqual([...host.routes], ['10.0.10.100/32'], 'tls still serves 10.0.10.100; dns was the only service of .101');
    svc('tls').belowQuorum = true;
    await sleep(250);
    assert.deepEqual([...host.routes], []);
    svc('dns').belowQuorum = false;
    await sleep(250);
    assert.deepEqual([...host.routes], ['10.0.10.101/32'], 'announced again when it can serve');
    // A route deleted behind lbd's back comes back at the next look at the kernel (every 2 s).
    host.routes.clear();
    await sleep(2300);
    assert.deepEqual([...host.routes], ['10.0.10.101/32']);
  } finally {
    await t.daemon.stop('failed-start');
  }
});

test('announce: when the keeper lets go under a running lbd, the VIPs are announced again with a new one', async () => {
  const host = new FakeHost();
  const t = await testDaemon(config(ANNOUNCE), { announceHost: host });
  try {
    host.keepers[0].die();
    host.routes.clear(); // the kernel deleted the TAP and its routes
    await sleep(1300);
    assert.equal(host.keepers.length, 2, 'a new keeper');
    assert.ok(host.log.filter((l) => l === 'open lbdv-veth-test').length === 2);
    assert.deepEqual([...host.routes].sort(), ['10.0.10.100/32', '10.0.10.101/32']);
  } finally {
    await t.daemon.stop('failed-start');
  }
});

test('announce: a stop withdraws, forwards on for withdraw_delay, then lets go; a hold keeps the routes for the next lbd', async () => {
  for (const [mode, announce, expectHold] of [
    ['keep', ANNOUNCE, 0],
    ['clean', ANNOUNCE, 0],
    ['keep', `${ANNOUNCE}\n  hold_on_restart: 4s`, 4000],
    ['handover', ANNOUNCE, 5000],
    ['failed-start', ANNOUNCE, 0],
  ] as const) {
    const host = new FakeHost();
    const t = await testDaemon(config(announce), { announceHost: host });
    const k = host.keepers[0];
    const t0 = Date.now();
    const stopped = t.daemon.stop(mode);
    await sleep(100);
    const routesWhileForwarding = host.routes.size;
    await stopped;
    const took = Date.now() - t0;
    if (expectHold > 0) {
      assert.ok(k.lines.includes(`hold ${expectHold}\n`) && k.ended, `${mode}: the keeper holds ${expectHold} ms`);
      assert.equal(host.routes.size, 2, `${mode}: nothing withdrawn`);
    } else if (mode === 'failed-start') {
      assert.ok(k.ended && !k.lines.some((l) => l.startsWith('hold')), `${mode}: the keeper lets go at once`);
      assert.ok(took < 250, `${mode}: no delay (${took} ms)`);
    } else {
      assert.equal(routesWhileForwarding, 0, `${mode}: withdrawn first`);
      assert.ok(took >= 280, `${mode}: forwarded on for withdraw_delay (${took} ms)`);
      assert.ok(k.ended && !k.lines.some((l) => l.startsWith('hold')), `${mode}: then the keeper lets go`);
    }
  }
});

test('announce: routes an lbd before left on a held interface are taken over: the wanted ones never go, the others are withdrawn', async () => {
  const host = new FakeHost();
  host.routes.add('10.0.10.100/32');
  host.routes.add('10.0.10.199/32');
  const t = await testDaemon(config(ANNOUNCE), { announceHost: host });
  try {
    assert.deepEqual([...host.routes].sort(), ['10.0.10.100/32', '10.0.10.101/32']);
    assert.ok(host.log.includes('ip route del 10.0.10.199/32 dev lbdv-veth-test table 4242'));
    assert.ok(!host.log.some((l) => l.startsWith('ip route del 10.0.10.100/32') || l.startsWith('ip route flush')), 'the wanted route was never taken down');
  } finally {
    await t.daemon.stop('failed-start');
  }
});

test("announce: a restart's hold also hands a queue of the interface to the service manager (systemd's descriptor store), and closes lbd's copy", async () => {
  for (const [mode, announce, stores] of [
    ['keep', `${ANNOUNCE}\n  hold_on_restart: 4s`, true],
    ['keep', ANNOUNCE, false], // no hold: withdrawn, nothing kept
    ['handover', `${ANNOUNCE}\n  hold_on_restart: 4s`, false], // the new lbd has attached already
    ['clean', `${ANNOUNCE}\n  hold_on_restart: 4s`, false],
  ] as const) {
    const host = new FakeHost();
    const kept: { name: string; fd: number }[] = [];
    const t = await testDaemon(config(announce), { announceHost: host, keepForRestart: (name, fd) => (kept.push({ name, fd }), true) });
    host.log.length = 0;
    await t.daemon.stop(mode);
    if (stores) {
      assert.equal(kept.length, 1, `${mode}: one queue kept`);
      assert.equal(kept[0].name, 'announce');
      // A queue opened for the store (the keeper still holds its own), then closed: the store's copy alone keeps it.
      const opened = host.log.findIndex((l) => l.startsWith('open lbdv-'));
      assert.ok(opened >= 0, host.log.join('; '));
      assert.ok(host.log.indexOf(`close ${kept[0].fd}`) > opened, host.log.join('; '));
    } else {
      assert.deepEqual(kept, [], `${mode}: ${announce.includes('hold') ? 'no store' : 'no hold, no store'}`);
    }
  }
});
