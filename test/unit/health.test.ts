import { test } from 'node:test';
import { FakeAnnounceHost } from '../helpers/announce-host';
import assert from 'node:assert/strict';
import pino from 'pino';
import { parseConfig } from '../../src/config/load';
import type { HealthCheckConfig } from '../../src/config/types';
import { Daemon } from '../../src/control/daemon';
import { MemoryPort } from '../../src/dataplane/io';
import { intToIp, ipToInt, macFromString, macToString } from '../../src/dataplane/packet';
import { DEST_F_DOWN, DEST_F_OVERLOAD } from '../../src/scheduler/index';
import { HealthSupervisor } from '../../src/health/supervisor';
import type { Checker, CheckResult } from '../../src/health/types';
import { ACK, FIN, MAC, PSH, SYN, frame } from '../helpers/frames';

/** A checker that answers whatever the test says the server is right now. */
class ScriptedChecker implements Checker {
  readonly type = 'fake';
  runs = 0;
  constructor(public result: CheckResult = { ok: true, reason: 'connected' }) {}
  async run(): Promise<CheckResult> {
    this.runs++;
    return this.result;
  }
}

const OK: CheckResult = { ok: true, reason: 'connected' };
const REFUSED: CheckResult = { ok: false, reason: 'connect refused' };

function supervisor(o: { rise: number; fall: number; initial?: 'up' | 'down'; interval?: number; random?: number }) {
  const clock = new FakeClock();
  const checker = new ScriptedChecker();
  const transitions: string[] = [];
  const sup = new HealthSupervisor({
    checker,
    interval: o.interval ?? 1,
    rise: o.rise,
    fall: o.fall,
    initial: o.initial ?? 'up',
    clock,
    random: () => o.random ?? 0,
    onTransition: (to, reason) => transitions.push(`${clock.t}:${to}:${reason}`),
  });
  return { clock, checker, sup, transitions };
}

test('supervisor: fall consecutive failures take it down, rise consecutive successes bring it up, one transition each', async () => {
  const { clock, checker, sup, transitions } = supervisor({ rise: 2, fall: 3 });
  sup.start();
  await clock.advance(0); // first check at random() × interval = 0
  assert.equal(checker.runs, 1);
  checker.result = REFUSED;
  await clock.advance(2000); // checks at 1000, 2000: two failures
  assert.equal(sup.state, 'up');
  assert.deepEqual(transitions, []);
  await clock.advance(1000); // third failure
  assert.equal(sup.state, 'down');
  assert.deepEqual(transitions, ['3000:down:connect refused']);
  await clock.advance(3000); // still failing: no more transitions
  assert.equal(transitions.length, 1);
  checker.result = OK;
  await clock.advance(1000); // one success
  assert.equal(sup.state, 'down');
  checker.result = { ok: false, reason: 'timeout' };
  await clock.advance(1000); // a failure resets the run
  checker.result = OK;
  await clock.advance(1000);
  assert.equal(sup.state, 'down', 'one success after a failure is not rise=2');
  await clock.advance(1000);
  assert.equal(sup.state, 'up');
  assert.deepEqual(transitions, ['3000:down:connect refused', '10000:up:connected']);
  sup.stop();
  assert.equal(clock.pending, 0, 'stop() leaves no timer behind');
});

test('supervisor: random initial spread, checks every interval, initial state down needs rise successes', async () => {
  const { clock, checker, sup, transitions } = supervisor({ rise: 3, fall: 1, initial: 'down', interval: 2, random: 0.25 });
  sup.start();
  await clock.advance(499);
  assert.equal(checker.runs, 0, 'first check not before 0.25 × 2 s');
  await clock.advance(1);
  assert.equal(checker.runs, 1);
  await clock.advance(4000);
  assert.equal(checker.runs, 3, 'then every 2 s');
  assert.deepEqual(transitions, ['4500:up:connected']);
  sup.stop();
});

test('supervisor: a flapping server (down 2 checks, up 2 checks) is damped by rise/fall', async () => {
  // fall 3 > the 2-check down phases: never marked down.
  const a = supervisor({ rise: 2, fall: 3 });
  a.sup.start();
  for (let i = 0; i < 20; i++) {
    a.checker.result = Math.floor(i / 2) % 2 ? REFUSED : OK;
    await a.clock.advance(i === 0 ? 0 : 1000);
  }
  assert.deepEqual(a.transitions, [], 'short outages do not flip it');
  a.sup.stop();
  // fall 2, rise 3 > the 2-check up phases: down once, kept down while it flaps.
  const b = supervisor({ rise: 3, fall: 2 });
  b.sup.start();
  for (let i = 0; i < 20; i++) {
    b.checker.result = Math.floor(i / 2) % 2 ? REFUSED : OK;
    await b.clock.advance(i === 0 ? 0 : 1000);
  }
  assert.equal(b.transitions.length, 1, b.transitions.join(' '));
  assert.match(b.transitions[0], /:down:connect refused$/);
  b.checker.result = OK;
  await b.clock.advance(3000);
  assert.equal(b.sup.state, 'up', 'back once it is steady for rise checks');
  b.sup.stop();
});

test('supervisor: checks never overlap, and a check slower than the interval delays the next one', async () => {
  const clock = new FakeClock();
  let release: (r: CheckResult) => void = () => {};
  let runs = 0;
  const checker: Checker = {
    type: 'slow',
    run: () => {
      runs++;
      return new Promise((r) => (release = r));
    },
  };
  const sup = new HealthSupervisor({ checker, interval: 1, rise: 1, fall: 1, initial: 'up', clock, random: () => 0, onTransition: () => {} });
  sup.start();
  await clock.advance(0);
  assert.equal(runs, 1);
  await clock.advance(5000);
  assert.equal(runs, 1, 'no second check while the first runs');
  await sup.runOnce(); // a manual run while busy is refused
  assert.equal(runs, 1);
  release(REFUSED);
  for (let i = 0; i < 5; i++) await Promise.resolve();
  assert.equal(sup.state, 'down');
  await clock.advance(0);
  assert.equal(runs, 2, 'the late check is followed at once by the next');
  sup.stop();
});

// ---- the daemon: verdicts in the data plane ---------------------------------------------------

const RS40 = '10.0.10.40';
const RS111 = '10.0.10.111';
const SORRY = '10.0.10.112';
const SORRY_MAC = '02:00:00:00:01:12';

function healthConfig(svc: string[] = [], opts: { weights?: [number, number]; rs111?: string[] } = {}): string {
  return `
interfaces:
  capture: veth-test
log:
  level: silent
connection_table:
  size: 1024
services:
  - name: web
    vip: 10.0.10.100
    port: 80
    scheduler: rr
    health_check:
      type: tcp
      interval: 1s
      timeout: 500ms
      rise: 2
      fall: 2
${svc.map((l) => `    ${l}`).join('\n')}
    real_servers:
      - address: ${RS40}
        weight: ${opts.weights?.[0] ?? 1}
        mac: ${MAC.rs40}
      - address: ${RS111}
        weight: ${opts.weights?.[1] ?? 1}
        mac: ${MAC.rs111}
${(opts.rs111 ?? []).map((l) => `        ${l}`).join('\n')}
`;
}

async function healthDaemon(yaml: string, announceHost?: FakeAnnounceHost) {
  const config = parseConfig(yaml, 'test.yaml');
  const clock = new FakeClock();
  const port = new MemoryPort(config.interfaces.capture, macFromString(MAC.balancer));
  const servers = new Map<string, ScriptedChecker>();
  const checks = new Map<string, HealthCheckConfig>();
  const daemon = new Daemon({
    config,
    log: pino({ level: 'silent' }),
    openPort: () => port,
    hostGuard: false,
    metrics: false,
    localAddresses: new Set(['10.0.10.30']),
    announceHost,
    health: {
      clock,
      random: () => 0,
      // Every server's checker reads the same scripted verdict: the test flips it per address.
      makeChecker: (rs, check) => {
        const addr = intToIp(rs.addr);
        checks.set(addr, check);
        if (!servers.has(addr)) servers.set(addr, new ScriptedChecker());
        const s = servers.get(addr)!;
        return { type: check.type, run: () => s.run() };
      },
    },
  });
  await daemon.start();
  const send = (f: Buffer) => {
    const before = port.sent.length;
    port.inject(f);
    return port.sent.slice(before).map((x) => macToString(x, 0));
  };
  const rs = (addr: string) => daemon.forwarder.dests.views.find((d) => intToIp(d.addr) === addr && !d.removed)!;
  const set = (addr: string, r: CheckResult) => (servers.get(addr)!.result = r);
  return { daemon, clock, port, send, rs, set, servers, checks };
}

const syn = (sport: number) => frame({ flags: SYN, sport });
const ack = (sport: number) => frame({ flags: ACK, sport });
const data = (sport: number) => frame({ flags: ACK | PSH, sport, payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') });

test('daemon: a down server gets no new flows at once; its existing flow is rescheduled (default) and counters move', async () => {
  const t = await healthDaemon(healthConfig());
  try {
    await t.clock.advance(0);
    assert.deepEqual([t.rs(RS40).health, t.rs(RS111).health], ['up', 'up']);
    assert.deepEqual(
      [syn(50001), syn(50002)].map((f) => t.send(f)[0]),
      [MAC.rs40, MAC.rs111],
    );
    t.send(ack(50002)); // ESTABLISHED on rs111
    const dt = t.daemon.forwarder.dests;
    const i111 = t.rs(RS111).index;
    const i40 = t.rs(RS40).index;
    assert.deepEqual([dt.active[i40], dt.inactive[i40], dt.active[i111]], [0, 1, 1]);

    t.set(RS111, REFUSED);
    await t.clock.advance(1000);
    assert.equal(t.rs(RS111).health, 'up', 'one failure is not fall=2');
    await t.clock.advance(1000);
    assert.equal(t.rs(RS111).health, 'down');
    assert.equal(t.rs(RS111).healthReason, 'connect refused');
    assert.ok(t.rs(RS111).flags & DEST_F_DOWN);
    for (let i = 0; i < 4; i++) assert.deepEqual(t.send(syn(50100 + i)), [MAC.rs40], 'new flows avoid the down server');
    // The established flow's next segment goes to a live server (whose RST ends it quickly).
    assert.deepEqual(t.send(data(50002)), [MAC.rs40]);
    assert.equal(dt.active[i111], 0, 'ActiveConn moved with the flow');
    assert.equal(dt.active[i40], 1);
    assert.equal(dt.inactive[i40], 5);
    assert.equal(t.daemon.forwarder.downFlowsRescheduled, 1);
    // Up again after rise=2 successes: rr uses it again.
    t.set(RS111, OK);
    await t.clock.advance(2000);
    assert.equal(t.rs(RS111).health, 'up');
    assert.equal(t.rs(RS111).flags & DEST_F_DOWN, 0);
    const picks = [0, 1, 2, 3].map((i) => t.send(syn(50200 + i))[0]);
    assert.ok(picks.includes(MAC.rs111) && picks.includes(MAC.rs40), picks.join(' '));
  } finally {
    await t.daemon.stop();
  }
});

test('daemon: on_down drop forgets the flow (expire_nodest_conn), keep leaves it on the down server', async () => {
  const d = await healthDaemon(healthConfig(['on_down: drop']));
  try {
    await d.clock.advance(0);
    d.send(syn(51001));
    d.send(syn(51002));
    d.send(ack(51002));
    d.set(RS111, REFUSED);
    await d.clock.advance(2000);
    const before = d.daemon.forwarder.conns.size;
    assert.deepEqual(d.send(data(51002)), [], 'dropped');
    assert.equal(d.daemon.forwarder.conns.size, before - 1, 'entry forgotten');
    assert.equal(d.daemon.forwarder.dests.active[d.rs(RS111).index], 0);
    assert.equal(d.daemon.forwarder.downFlowsDropped, 1);
  } finally {
    await d.daemon.stop();
  }
  const k = await healthDaemon(healthConfig(['on_down: keep']));
  try {
    await k.clock.advance(0);
    k.send(syn(52001));
    k.send(syn(52002));
    k.send(ack(52002));
    k.set(RS111, REFUSED);
    await k.clock.advance(2000);
    assert.equal(k.rs(RS111).health, 'down');
    assert.deepEqual(k.send(data(52002)), [MAC.rs111], 'keep: the flow stays where it was');
    assert.deepEqual(k.send(syn(52003)), [MAC.rs40]);
  } finally {
    await k.daemon.stop();
  }
});

test('daemon: inhibit_on_failure holds a down server at weight 0 and restores its weight', async () => {
  const t = await healthDaemon(healthConfig(['inhibit_on_failure: true'], { weights: [1, 3] }));
  try {
    await t.clock.advance(0);
    t.set(RS111, REFUSED);
    await t.clock.advance(2000);
    assert.equal(t.rs(RS111).weight, 0);
    assert.equal(t.rs(RS111).flags & DEST_F_DOWN, 0, 'listed, not flagged');
    assert.deepEqual(
      [1, 2, 3].map((i) => t.send(syn(53000 + i))[0]),
      [MAC.rs40, MAC.rs40, MAC.rs40],
    );
    t.set(RS111, OK);
    await t.clock.advance(2000);
    assert.equal(t.rs(RS111).weight, 3);
  } finally {
    await t.daemon.stop();
  }
});

test('daemon: quorum and sorry server: below quorum every new flow goes to the sorry server, back when regained', async () => {
  const t = await healthDaemon(healthConfig(['quorum: 2', `sorry_server: { address: ${SORRY}, mac: "${SORRY_MAC}" }`]));
  try {
    await t.clock.advance(0);
    const svc = t.daemon.forwarder.services.all[0];
    assert.equal(svc.sorryActive, false);
    assert.deepEqual(
      [1, 2].map((i) => t.send(syn(54000 + i))[0]),
      [MAC.rs40, MAC.rs111],
    );
    t.set(RS111, REFUSED);
    await t.clock.advance(2000);
    assert.equal(svc.sorryActive, true);
    assert.deepEqual(
      [3, 4, 5].map((i) => t.send(syn(54000 + i))[0]),
      [SORRY_MAC, SORRY_MAC, SORRY_MAC],
      'rs40 is up but quorum is 2',
    );
    // The flow of the down server is rescheduled to the sorry server too.
    assert.deepEqual(t.send(data(54002)), [SORRY_MAC]);
    // An existing flow of the live server stays where it is.
    assert.deepEqual(t.send(data(54001)), [MAC.rs40]);
    t.set(RS111, OK);
    await t.clock.advance(2000);
    assert.equal(svc.sorryActive, false);
    assert.deepEqual([6, 7].map((i) => t.send(syn(54000 + i))[0]).sort(), [MAC.rs40, MAC.rs111].sort());
  } finally {
    await t.daemon.stop();
  }
});

test('daemon: quorum counts an overloaded server (u_threshold) as up: load is not a reason for the sorry server', async () => {
  const t = await healthDaemon(healthConfig([`sorry_server: { address: ${SORRY}, mac: "${SORRY_MAC}" }`]));
  try {
    await t.clock.advance(0);
    const svc = t.daemon.forwarder.services.all[0];
    t.rs(RS40).setThresholds(1, 0);
    assert.deepEqual(t.send(syn(56001)), [MAC.rs40]);
    assert.equal(t.rs(RS40).flags & DEST_F_OVERLOAD, DEST_F_OVERLOAD);
    t.set(RS111, REFUSED);
    await t.clock.advance(2000);
    assert.equal(t.rs(RS111).health, 'down');
    assert.equal(svc.sorryActive, false, 'rs40 is up: quorum 1 holds');
    assert.deepEqual(t.send(syn(56002)), [], 'rs40 is full and rs111 down: dropped, as IPVS would');
  } finally {
    await t.daemon.stop();
  }
});

test('daemon: initial_state down: no server takes flows until rise successes', async () => {
  const t = await healthDaemon(healthConfig(['initial_state: down']));
  try {
    assert.deepEqual([t.rs(RS40).health, t.rs(RS111).health], ['down', 'down']);
    assert.deepEqual(t.send(syn(55001)), [], 'dropped: no real server');
    await t.clock.advance(1000); // checks at 0 and 1000: rise=2
    assert.deepEqual([t.rs(RS40).health, t.rs(RS111).health], ['up', 'up']);
    assert.equal(t.send(syn(55002)).length, 1);
  } finally {
    await t.daemon.stop();
  }
});

test('drain (weight 0 via daemon.apply): the open flow keeps its server, new flows avoid it, ActiveConn falls to 0', async () => {
  const t = await healthDaemon(healthConfig());
  try {
    await t.clock.advance(0);
    t.send(syn(56001));
    t.send(syn(56002));
    t.send(ack(56002)); // long-lived flow on rs111
    const i111 = t.rs(RS111).index;
    assert.equal(t.daemon.forwarder.dests.active[i111], 1);
    await t.daemon.apply(parseConfig(healthConfig([], { weights: [1, 0] }), 'test.yaml'));
    assert.equal(t.rs(RS111).weight, 0);
    assert.deepEqual(
      [1, 2, 3].map((i) => t.send(syn(56100 + i))[0]),
      [MAC.rs40, MAC.rs40, MAC.rs40],
    );
    for (let i = 0; i < 3; i++) assert.deepEqual(t.send(data(56002)), [MAC.rs111], 'the open connection keeps working');
    assert.equal(t.daemon.forwarder.dests.active[i111], 1);
    t.send(frame({ flags: FIN | ACK, sport: 56002 }));
    assert.equal(t.daemon.forwarder.dests.active[i111], 0, 'active connections fall to zero as flows end');
    assert.equal(t.rs(RS111).health, 'up', 'drain is not a health verdict');
  } finally {
    await t.daemon.stop();
  }
});

test('apply(): only the checks whose config changed restart; removing a check clears the verdict', async () => {
  const t = await healthDaemon(healthConfig());
  try {
    await t.clock.advance(0);
    const sup40 = t.daemon.health.supervisor(t.rs(RS40));
    const sup111 = t.daemon.health.supervisor(t.rs(RS111));
    t.set(RS111, REFUSED);
    await t.clock.advance(2000);
    assert.equal(t.rs(RS111).health, 'down');
    // A per-server override for rs111 only.
    await t.daemon.apply(parseConfig(healthConfig([], { rs111: ['health_check: { fall: 5 }'] }), 'test.yaml'));
    assert.equal(t.daemon.health.supervisor(t.rs(RS40)), sup40, 'rs40 check untouched');
    assert.notEqual(t.daemon.health.supervisor(t.rs(RS111)), sup111, 'rs111 check restarted');
    assert.equal(t.checks.get(RS111)!.fall, 5);
    assert.equal(t.rs(RS111).health, 'down', 'a restarted check keeps the current verdict');
    // Unchanged config: nothing restarts.
    const again = t.daemon.health.supervisor(t.rs(RS111));
    await t.daemon.apply(parseConfig(healthConfig([], { rs111: ['health_check: { fall: 5 }'] }), 'test.yaml'));
    assert.equal(t.daemon.health.supervisor(t.rs(RS111)), again);
    // on_down changes apply to a server already down without restarting its check.
    await t.daemon.apply(parseConfig(healthConfig(['on_down: keep'], { rs111: ['health_check: { fall: 5 }'] }), 'test.yaml'));
    assert.equal(t.daemon.health.supervisor(t.rs(RS111)), again);
    assert.equal(t.daemon.forwarder.dests.downAction[t.rs(RS111).index], 0);
    // No health_check at all: every server unchecked and schedulable.
    const plain = healthConfig().replace(/    health_check:\n(      .*\n)+/, '');
    assert.doesNotMatch(plain, /health_check/);
    await t.daemon.apply(parseConfig(plain, 'test.yaml'));
    assert.deepEqual([t.rs(RS40).health, t.rs(RS111).health], ['unchecked', 'unchecked']);
    assert.equal(t.rs(RS111).flags & DEST_F_DOWN, 0);
    assert.equal(t.clock.pending, 0, 'no check timers left');
  } finally {
    await t.daemon.stop();
  }
});

test('daemon.stop() stops every check', async () => {
  const t = await healthDaemon(healthConfig());
  await t.clock.advance(0);
  assert.ok(t.clock.pending > 0);
  await t.daemon.stop();
  assert.equal(t.clock.pending, 0);
  assert.equal(ipToInt(RS40) > 0, true);
});

// ---- the checkers, against servers on loopback -------------------------------------------------
import http from 'node:http';
import net from 'node:net';
import { TcpChecker } from '../../src/health/tcp';
import { HttpChecker } from '../../src/health/http';
import { VipProber, VipChecker, buildTcpFrame, PROBE_PORT_MIN, PROBE_PORT_MAX, probeTableSpec } from '../../src/health/vip';
import { inetChecksum as checksum } from '../../src/dataplane/checksum';
import { FakeClock } from '../helpers/fake-clock';

function listen(server: net.Server): Promise<number> {
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r((server.address() as net.AddressInfo).port)));
}

test('tcp checker: connected, connect refused', async () => {
  const srv = net.createServer((s) => s.destroy());
  const port = await listen(srv);
  try {
    assert.deepEqual(await new TcpChecker('127.0.0.1', port, 1000).run(), { ok: true, reason: 'connected' });
  } finally {
    await new Promise((r) => srv.close(r));
  }
  assert.deepEqual(await new TcpChecker('127.0.0.1', port, 1000).run(), { ok: false, reason: 'connect refused' });
  // (the timeout path is covered by the http checker test: a loopback connect never times out)
});

test('http checker: status set, Host header, body regex, status 503, timeout, refused', async () => {
  let status = 200;
  const body = 'server40 ok';
  let hang = false;
  const hosts: string[] = [];
  const srv = http.createServer((req, res) => {
    hosts.push(String(req.headers.host));
    if (hang) return; // never answers
    res.writeHead(status, { 'Content-Type': 'text/plain' });
    res.end(body);
  });
  const port = await listen(srv);
  const check = (o: Partial<ConstructorParameters<typeof HttpChecker>[0]> = {}) =>
    new HttpChecker({ address: '127.0.0.1', port, path: '/health', expectStatus: '200-299', timeoutMs: 500, ...o }).run();
  try {
    assert.deepEqual(await check(), { ok: true, reason: 'status 200' });
    assert.equal(hosts.at(-1), '127.0.0.1', 'Host defaults to the address');
    assert.deepEqual(await check({ host: 'www.example.com' }), { ok: true, reason: 'status 200' });
    assert.equal(hosts.at(-1), 'www.example.com');
    assert.deepEqual(await check({ expectBody: '^server\\d+ ok$' }), { ok: true, reason: 'status 200' });
    assert.deepEqual(await check({ expectBody: 'maintenance' }), { ok: false, reason: 'body mismatch' });
    status = 503;
    assert.deepEqual(await check(), { ok: false, reason: 'status 503' });
    assert.deepEqual(await check({ expectStatus: '200,503' }), { ok: true, reason: 'status 503' });
    status = 301;
    assert.deepEqual(await check({ expectStatus: '200,301-302' }), { ok: true, reason: 'status 301' });
    hang = true;
    const t0 = Date.now();
    assert.deepEqual(await check({ timeoutMs: 200 }), { ok: false, reason: 'timeout' });
    // The server never answers: without the timeout this would hang until the test runner's.
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
  }
  assert.deepEqual(await check(), { ok: false, reason: 'connect refused' });
});

/** A fake capture handle: records what the prober sends; the test plays the real server. */
class FakeProbePort {
  sent: Buffer[] = [];
  onFrame: ((buf: Buffer, len: number) => void) | null = null;
  filter = '';
  closed = false;
  start(fn: (buf: Buffer, len: number) => void) {
    this.onFrame = fn;
  }
  send(buf: Buffer, len: number) {
    this.sent.push(Buffer.from(buf.subarray(0, len)));
    return true;
  }
  close() {
    this.closed = true;
  }
}

test("vip probe: SYN to VIP:port in a frame to the real server's MAC; SYN-ACK = up, then a RST tidies up", async () => {
  const fake = new FakeProbePort();
  const balancerMac = macFromString(MAC.balancer);
  const prober = new VipProber({
    iface: 'veth-test',
    egressMac: balancerMac,
    egressIp: ipToInt('10.0.10.30'),
    openPort: (_i, filter) => ((fake.filter = filter), fake),
  });
  const vip = ipToInt('10.0.10.100');
  const checker = new VipChecker(prober, () => macFromString(MAC.rs111), vip, 80, 1000);
  const pending = checker.run();
  assert.equal(fake.sent.length, 1);
  const s = fake.sent[0];
  assert.equal(macToString(s, 0), MAC.rs111, 'addressed to the real server');
  assert.equal(macToString(s, 6), MAC.balancer);
  assert.equal(intToIp(s.readUInt32BE(26)), '10.0.10.30');
  assert.equal(intToIp(s.readUInt32BE(30)), '10.0.10.100', 'to the VIP');
  const sport = s.readUInt16BE(34);
  assert.ok(sport >= PROBE_PORT_MIN && sport <= PROBE_PORT_MAX);
  assert.equal(s.readUInt16BE(36), 80);
  assert.equal(s[47], 0x02, 'SYN');
  assert.equal(checksum(s, 14, 20, 0), 0, 'IP checksum valid');
  assert.match(fake.filter, /inbound and tcp and dst host 10\.0\.10\.30 and dst portrange 61000-61999/);
  // A TCP checksum check over the pseudo-header.
  const tcpLen = s.readUInt16BE(16) - 20;
  const pseudo = 0x0a00 + 0x0a1e + 0x0a00 + 0x0a64 + 6 + tcpLen;
  assert.equal(checksum(s, 34, tcpLen, pseudo), 0, 'TCP checksum valid');
  const seq = s.readUInt32BE(38);
  // Noise first: a SYN-ACK acknowledging something else, from another address.
  const reply = (o: { src?: string; flags: number; ack: number }) => {
    const f = buildTcpFrame({
      dstMac: balancerMac,
      srcMac: macFromString(MAC.rs111),
      srcIp: ipToInt(o.src ?? '10.0.10.100'),
      dstIp: ipToInt('10.0.10.30'),
      sport: 80,
      dport: sport,
      seq: 777,
      ack: o.ack,
      flags: o.flags,
    });
    fake.onFrame!(f, f.length);
  };
  reply({ flags: 0x12, ack: (seq + 5) >>> 0 });
  reply({ src: '10.0.10.99', flags: 0x12, ack: (seq + 1) >>> 0 });
  assert.equal(fake.sent.length, 1, 'no reaction to frames that are not the answer');
  reply({ flags: 0x12, ack: (seq + 1) >>> 0 });
  assert.deepEqual(await pending, { ok: true, reason: 'vip path: SYN-ACK' });
  assert.equal(fake.sent.length, 2);
  const rst = fake.sent[1];
  assert.equal(rst[47], 0x04, 'RST');
  assert.equal(rst.readUInt32BE(38), (seq + 1) >>> 0, "seq = the SYN-ACK's ack");
  assert.equal(macToString(rst, 0), MAC.rs111);

  // No answer: the reason names the VIP path. (The prober's timers are unref'd: hold the loop.)
  const hold = setTimeout(() => {}, 5000);
  const quiet = new VipChecker(prober, () => macFromString(MAC.rs111), vip, 80, 50);
  const quietRun = quiet.run();
  const qSyn = fake.sent.at(-1)!;
  assert.deepEqual(await quietRun, { ok: false, reason: 'vip path: no SYN-ACK' });
  // The timed-out probe is reset blindly (seq + 1), and a late SYN-ACK gets its own RST.
  const qRst = fake.sent.at(-1)!;
  assert.equal(qRst[47], 0x04);
  assert.equal(qRst.readUInt32BE(38), (qSyn.readUInt32BE(38) + 1) >>> 0);
  const lateAck = buildTcpFrame({
    dstMac: balancerMac,
    srcMac: macFromString(MAC.rs111),
    srcIp: vip,
    dstIp: ipToInt('10.0.10.30'),
    sport: 80,
    dport: qSyn.readUInt16BE(34),
    seq: 5,
    ack: (qSyn.readUInt32BE(38) + 1) >>> 0,
    flags: 0x12,
  });
  const n = fake.sent.length;
  fake.onFrame!(lateAck, lateAck.length);
  assert.equal(fake.sent.length, n + 1);
  assert.equal(fake.sent.at(-1)![47], 0x04, 'late SYN-ACK reset');
  // A RST from the VIP: the VIP is there but nothing listens.
  const refused = new VipChecker(prober, () => macFromString(MAC.rs111), vip, 80, 1000);
  const p = refused.run();
  const s3 = fake.sent.at(-1)!;
  const f = buildTcpFrame({
    dstMac: balancerMac,
    srcMac: macFromString(MAC.rs111),
    srcIp: vip,
    dstIp: ipToInt('10.0.10.30'),
    sport: 80,
    dport: s3.readUInt16BE(34),
    seq: 0,
    ack: (s3.readUInt32BE(38) + 1) >>> 0,
    flags: 0x14,
  });
  fake.onFrame!(f, f.length);
  assert.deepEqual(await p, { ok: false, reason: 'vip path: RST (nothing listening on the VIP)' });
  // An unresolved MAC: no probe at all.
  assert.deepEqual(await new VipChecker(prober, () => null, vip, 80, 50).run(), { ok: false, reason: 'vip path: MAC unresolved' });
  clearTimeout(hold);
  await prober.close();
  assert.ok(fake.closed);
  assert.deepEqual(probeTableSpec('lbd_eth0_probe', 'eth0', ipToInt('10.0.10.30')).rules, ['ip saddr @vips ip daddr 10.0.10.30 tcp dport 61000-61999 drop']);
});

test('announce: a VIP whose service loses its quorum (no sorry server) is withdrawn, and announced again when it regains it', async () => {
  const host = new FakeAnnounceHost();
  const t = await healthDaemon(`${healthConfig(['quorum: 2'])}announce:\n  withdraw_delay: 0s\n`, host);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  try {
    await t.clock.advance(0);
    await sleep(150);
    assert.deepEqual([...host.routes], ['10.0.10.100/32']);
    t.set(RS111, REFUSED);
    await t.clock.advance(2000);
    assert.equal(t.rs(RS111).health, 'down');
    await sleep(250);
    assert.deepEqual([...host.routes], [], 'one server up, quorum 2, no sorry server: withdrawn');
    t.set(RS111, OK);
    await t.clock.advance(2000);
    await sleep(250);
    assert.deepEqual([...host.routes], ['10.0.10.100/32'], 'quorum regained: announced');
  } finally {
    await t.daemon.stop('failed-start');
  }
});
