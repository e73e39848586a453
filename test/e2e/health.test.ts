import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLab, Lab } from '../../lab/lab';
import { HeldDownload, heldDownload, lbdConfig, LbdProcess, parseWrk, startLbd } from '../helpers/lbd-process';

// One lab for the file, with a third real server (10.0.10.112) to serve as the sorry server.
let lab: Lab;
before(() => {
  lab = createLab({ shape: 'one-nic', rsOctets: [40, 111, 112] });
});
after(() => lab?.teardown());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const real = (i: number) => `${lab.addr.rs[i]}:80`;

/** lbd config: one service "web" on the VIP over real servers `reals` (indices; default the first two, the third is the sorry server), extra service-level lines. */
function config(o: { reals?: number[]; svc?: string[]; extraServices?: string; weights?: number[] } = {}): string {
  return lbdConfig(lab, { reals: o.reals ?? [0, 1], serviceLines: o.svc, weights: o.weights, extraServices: o.extraServices });
}

/** One curl from the client: the body, or null when it failed. */
function tryCurl(maxTime = 3): string | null {
  const r = lab.tryExec(lab.ns.client, ['curl', '-sS', '--max-time', String(maxTime), `http://${lab.addr.vip}/`]);
  return r.status === 0 ? r.stdout.trim() : null;
}

function curls(n: number): { bodies: (string | null)[]; failures: number } {
  const bodies = Array.from({ length: n }, () => tryCurl());
  return { bodies, failures: bodies.filter((b) => b === null).length };
}

function transitions(lbd: LbdProcess, realAddr: string, to: 'up' | 'down', service = 'web'): any[] {
  return lbd.logs().filter((l) => l.to === to && l.real === realAddr && l.service === service && /^real server (up|down)/.test(l.msg));
}

/** Waits (bounded) until a transition log line appears; returns when it was logged. */
async function waitTransition(lbd: LbdProcess, realAddr: string, to: 'up' | 'down', count = 1, timeoutMs = 5000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const t = transitions(lbd, realAddr, to);
    if (t.length >= count) return Date.parse(t[count - 1].time);
    if (Date.now() > deadline)
      throw new Error(
        `no transition of ${realAddr} to ${to} within ${timeoutMs} ms:\n${lbd
          .logs()
          .map((l) => JSON.stringify(l))
          .join('\n')}`,
      );
    await sleep(20);
  }
}

/** Waits for a log line: lines reach the test through a pipe, read only while the test awaits. */
async function waitLog(lbd: LbdProcess, match: (l: any) => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!lbd.logs().some(match)) {
    if (Date.now() > deadline)
      throw new Error(
        `no such log line within ${timeoutMs} ms:\n${lbd
          .logs()
          .map((l) => JSON.stringify(l))
          .join('\n')}`,
      );
    await sleep(20);
  }
}

// timeout = interval: a loaded CI machine must not make a healthy server40 look dead.
const TCP_CHECK = ['health_check:', '  type: tcp', '  interval: 300ms', '  timeout: 300ms', '  rise: 2', '  fall: 2'];

test("the seed's experiment: stop Apache on server111, after fall×interval + one interval 40 curls all reach server40; back after rise×interval + one interval", async (t) => {
  const lbd = await startLbd(lab, config({ svc: TCP_CHECK }));
  try {
    await sleep(400); // first checks (random spread within one interval)
    const warm = curls(4);
    assert.deepEqual(warm.bodies.slice().sort(), ['server111', 'server111', 'server40', 'server40'], 'rr over both');
    lab.stopApache(1);
    const stopped = Date.now();
    await sleep(2 * 300 + 300); // fall × interval + one interval
    // On an idle machine the transition is in by now; on a loaded CI machine the checks may
    // run late, so wait for it rather than race it (the time it took is reported below).
    const down = await waitTransition(lbd, real(1), 'down');
    const during = curls(40);
    assert.equal(transitions(lbd, real(0), 'down').length, 0, 'server40 was never taken for dead');
    assert.equal(during.failures, 0, `no curl fails once the check has seen it: ${during.bodies.join(' ')}`);
    assert.deepEqual(new Set(during.bodies), new Set(['server40']));
    const line = transitions(lbd, real(1), 'down')[0];
    assert.equal(line.reason, 'connect refused');
    assert.equal(line.msg, 'real server down: connect refused');
    assert.equal(lbd.metric('lbd_real_server_up', { service: 'web', real: real(1) }), 0);
    assert.equal(lbd.metric('lbd_real_server_up', { service: 'web', real: real(0) }), 1);
    assert.equal(lbd.metric('lbd_health_transitions_total', { real: real(1), to: 'down', reason: 'connect refused' }), 1);
    assert.ok(lbd.metric('lbd_health_check_duration_seconds_count', { real: real(0), type: 'tcp' }) >= 3);
    t.diagnostic(`detection: Apache stopped → marked down in ${down - stopped} ms (fall 2 × interval 300 ms)`);

    lab.startApache(1);
    const started = Date.now();
    await sleep(2 * 300 + 300); // rise × interval + one interval
    const upAt = await waitTransition(lbd, real(1), 'up');
    const back = curls(6);
    assert.equal(back.failures, 0);
    assert.ok(back.bodies.includes('server111'), `server111 gets traffic again: ${back.bodies.join(' ')}`);
    assert.equal(transitions(lbd, real(1), 'up')[0].reason, 'connected');
    assert.equal(lbd.metric('lbd_real_server_up', { service: 'web', real: real(1) }), 1);
    t.diagnostic(`recovery: Apache answering → marked up in ${upAt - started} ms (rise 2 × interval 300 ms)`);
  } finally {
    lab.startApache(1);
    await lbd.stop();
  }
});

test('wrk across a server stop: errors only inside the detection window, none after it', async (t) => {
  const check = ['health_check:', '  type: http', '  interval: 200ms', '  timeout: 200ms', '  rise: 2', '  fall: 2'];
  const lbd = await startLbd(lab, config({ svc: check }));
  try {
    await sleep(300);
    const wrk = lab.spawn(lab.ns.client, ['wrk', '-t1', '-c8', '-d6s', '--timeout', '2s', `http://${lab.addr.vip}/`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ref: true,
    });
    let out = '';
    wrk.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => wrk.once('exit', () => r()));
    await sleep(2000);
    lab.stopApache(1);
    const stopped = Date.now();
    const down = await waitTransition(lbd, real(1), 'down');
    // From the down verdict on, no new connection is scheduled to the stopped server: every
    // error wrk sees after it would be lbd's fault, not the detection window's.
    const connsAtDown = lbd.metric('lbd_real_server_connections_total', { real: real(1) });
    const timer = setTimeout(() => lab.kill(wrk), 15000);
    await exited;
    clearTimeout(timer);
    const across = parseWrk(out);
    assert.ok(across.requests > 0, out);
    assert.equal(lbd.metric('lbd_real_server_connections_total', { real: real(1) }), connsAtDown, 'no connection went to the down server after the verdict');
    t.diagnostic(
      `wrk -c8 6 s across the stop: ${across.requests} requests, ${across.socketErrors} socket errors, ${across.non2xx} non-2xx; detection ${down - stopped} ms (http check, fall 2 × 200 ms, timeout 200 ms)`,
    );
    t.diagnostic(
      out
        .split('\n')
        .filter((l) => /Socket errors|requests in|Requests\/sec/.test(l))
        .join(' | '),
    );
    // After detection, with the server still down: not a single error.
    const afterOut = lab.exec(lab.ns.client, ['wrk', '-t1', '-c8', '-d3s', '--timeout', '2s', `http://${lab.addr.vip}/`], { timeoutMs: 20000 });
    const afterRun = parseWrk(afterOut);
    assert.equal(transitions(lbd, real(0), 'down').length, 0, 'server40 was never taken for dead under load');
    assert.ok(afterRun.requests > 0, afterOut);
    assert.equal(afterRun.socketErrors, 0, afterOut);
    assert.equal(afterRun.non2xx, 0, afterOut);
    t.diagnostic(`wrk -c8 3 s after detection: ${afterRun.requests} requests, 0 errors`);
  } finally {
    lab.startApache(1);
    await lbd.stop();
  }
});

test('vip check: server111 without the VIP on lo stays up for tcp/http checks but the vip check marks it down; no request fails once detected', async (t) => {
  const vipCheck = ['health_check:', '  type: vip', '  interval: 300ms', '  timeout: 300ms', '  rise: 2', '  fall: 2'];
  // Two more services on other VIPs, same real servers, checked with http and tcp: they look at the
  // servers' own addresses and cannot see the broken VIP setup.
  const others = (name: string, vip: string, type: string) => `
  - name: ${name}
    vip: ${vip}
    port: 80
    health_check: { type: ${type}, interval: 300ms, timeout: 300ms, rise: 2, fall: 2 }
    real_servers:
      - ${lab.addr.rs[0]}
      - ${lab.addr.rs[1]}`;
  const lbd = await startLbd(
    lab,
    config({ svc: vipCheck, extraServices: others('web-http', '10.0.10.101', 'http') + others('web-tcp', '10.0.10.102', 'tcp') }),
  );
  const ns = lab.ns.rs[1];
  let removed = false;
  try {
    const vipChecks = () => lbd.metric('lbd_health_check_duration_seconds_count', { service: 'web', real: real(1), type: 'vip' });
    for (const deadline = Date.now() + 5000; !(vipChecks() >= 2) && Date.now() < deadline;) await sleep(100);
    assert.ok(vipChecks() >= 2, 'the vip probe runs');
    assert.equal(transitions(lbd, real(1), 'down').length, 0, 'a healthy server passes the vip probe');
    assert.deepEqual(new Set(curls(4).bodies), new Set(['server40', 'server111']));
    lab.exec(ns, ['ip', 'addr', 'del', `${lab.addr.vip}/32`, 'dev', 'lo']);
    removed = true;
    const broke = Date.now();
    const down = await waitTransition(lbd, real(1), 'down');
    const line = transitions(lbd, real(1), 'down')[0];
    assert.equal(line.reason, 'vip path: no SYN-ACK');
    assert.equal(line.check, 'vip');
    t.diagnostic(`vip check: VIP removed from lo → marked down in ${down - broke} ms (reason "${line.reason}")`);
    await sleep(700);
    assert.equal(lbd.metric('lbd_real_server_up', { service: 'web', real: real(1) }), 0);
    assert.equal(lbd.metric('lbd_real_server_up', { service: 'web-http', real: real(1) }), 1, 'http check still says up');
    assert.equal(lbd.metric('lbd_real_server_up', { service: 'web-tcp', real: real(1) }), 1, 'tcp check still says up');
    assert.equal(transitions(lbd, real(1), 'down', 'web-http').length + transitions(lbd, real(1), 'down', 'web-tcp').length, 0);
    const during = curls(20);
    assert.equal(during.failures, 0, during.bodies.join(' '));
    assert.deepEqual(new Set(during.bodies), new Set(['server40']));
    // No kernel side effects on the balancer: no neighbour entry for the VIP (the kernel never
    // saw a SYN-ACK, so it sent no RST), and the probe table exists only while lbd runs.
    assert.equal(lab.exec(lab.ns.balancer, ['ip', 'neigh', 'show', lab.addr.vip]).trim(), '');
    assert.match(lab.exec(lab.ns.balancer, ['nft', 'list', 'tables']), new RegExp(`netdev lbd_${lab.ifaces.balancerCapture}_probe`));
    // Restore: up again after rise.
    lab.exec(ns, ['ip', 'addr', 'add', `${lab.addr.vip}/32`, 'dev', 'lo']);
    removed = false;
    await waitTransition(lbd, real(1), 'up');
    assert.equal(transitions(lbd, real(1), 'up')[0].reason, 'vip path: SYN-ACK');
    assert.ok(curls(4).bodies.includes('server111'));
  } finally {
    if (removed) lab.exec(ns, ['ip', 'addr', 'add', `${lab.addr.vip}/32`, 'dev', 'lo']);
    await lbd.stopClean();
  }
  assert.doesNotMatch(
    lab.exec(lab.ns.balancer, ['nft', 'list', 'tables']),
    new RegExp(`netdev lbd_${lab.ifaces.balancerCapture}_probe`),
    'probe table removed by lbd stop --clean',
  );
  // The real server holds no half-open connection from the probes (each SYN-ACK got our RST).
  const synRecv = lab.exec(ns, ['ss', '-Htn', 'state', 'syn-recv']).trim();
  assert.equal(synRecv, '', synRecv);
});

test('quorum and sorry server: with quorum 2 and one of two servers down, every new flow goes to the sorry server', async () => {
  const lbd = await startLbd(lab, config({ svc: [...TCP_CHECK, 'quorum: 2', `sorry_server: ${lab.addr.rs[2]}`] }));
  try {
    await sleep(400);
    assert.deepEqual(new Set(curls(4).bodies), new Set(['server40', 'server111']));
    assert.equal(lbd.metric('lbd_service_quorum_up', { service: 'web' }), 1);
    lab.stopApache(1);
    await waitTransition(lbd, real(1), 'down');
    const during = curls(8);
    assert.deepEqual(during.bodies, Array(8).fill('server112'), 'the sorry server takes every new flow although server40 is up');
    assert.equal(lbd.metric('lbd_service_quorum_up', { service: 'web' }), 0);
    assert.equal(lbd.metric('lbd_service_sorry_server_active', { service: 'web' }), 1);
    await waitLog(lbd, (l) => l.msg === 'quorum lost: new flows go to the sorry server' && l.sorry_server === lab.addr.rs[2]);
    lab.startApache(1);
    await waitTransition(lbd, real(1), 'up');
    assert.deepEqual(new Set(curls(4).bodies), new Set(['server40', 'server111']));
    assert.equal(lbd.metric('lbd_service_sorry_server_active', { service: 'web' }), 0);
    await waitLog(lbd, (l) => l.msg === 'quorum regained: new flows go to the real servers again');
  } finally {
    lab.startApache(1);
    await lbd.stop();
  }
});

test('a flapping server (Apache up/down every second) is damped: down once, kept out until it is steady for rise checks', async (t) => {
  // fall 2 × 200 ms detects an outage fast; rise 30 × 200 ms = 6 s is far longer than an up phase
  // (~1.2 s measured on 2 idle cores: Apache's start, 4 curls, 500 ms, Apache's stop).
  const interval = 200;
  const rise = 30;
  const check = ['health_check:', '  type: tcp', `  interval: ${interval}ms`, `  timeout: ${interval}ms`, `  rise: ${rise}`, '  fall: 2'];
  const lbd = await startLbd(lab, config({ svc: check }));
  let failures = 0;
  let requests = 0;
  let longestUp = 0;
  let upSince = 0;
  try {
    await sleep(300);
    for (let cycle = 0; cycle < 3; cycle++) {
      lab.stopApache(1);
      if (cycle > 0) longestUp = Math.max(longestUp, Date.now() - upSince);
      await sleep(1000);
      if (cycle === 0) await waitTransition(lbd, real(1), 'down');
      // The up phase counts from before the start (Apache may listen before startApache returns)
      // to after the stop has returned.
      upSince = Date.now();
      lab.startApache(1);
      const c = curls(4);
      failures += c.failures;
      requests += 4;
      assert.deepEqual(new Set(c.bodies), new Set(['server40']), 'kept out while flapping');
      await sleep(500);
    }
    // If an up phase lasted rise checks, an up transition would be right: that is a slow machine,
    // not a damping bug, and the test says so.
    assert.ok(longestUp < (rise - 1) * interval, `an up phase took ${longestUp} ms, too long for this test to mean anything`);
    assert.equal(transitions(lbd, real(1), 'down').length, 1, 'one transition down');
    assert.equal(transitions(lbd, real(1), 'up').length, 0, 'no transition up while it flaps');
    assert.equal(failures, 0);
    const upAt = await waitTransition(lbd, real(1), 'up', 1, rise * interval + 5000);
    assert.ok(upAt - upSince >= (rise - 1) * interval, `up ${upAt - upSince} ms after Apache came back: only after rise consecutive successes`);
    assert.equal(lbd.metric('lbd_health_transitions_total', { real: real(1), to: 'down' }), 1);
    assert.equal(lbd.metric('lbd_health_transitions_total', { real: real(1), to: 'up' }), 1);
    t.diagnostic(
      `flapping: 3 cycles of 1 s down / ≤${longestUp} ms up → 1 down, 1 up transition (${upAt - upSince} ms after the last start); ${requests} curls during flapping, ${failures} failed`,
    );
  } finally {
    lab.startApache(1);
    await lbd.stop();
  }
});

test('drain: weight 0 by SIGHUP reload while a long download runs on server111: new flows avoid it, the download completes', async (t) => {
  const lbd = await startLbd(lab, config({ svc: TCP_CHECK }));
  let dl: HeldDownload | undefined;
  try {
    await sleep(400);
    assert.equal(tryCurl(), 'server40'); // rr: the next flow goes to server111
    // A download that holds its connection open until released: the long-lived flow.
    dl = heldDownload(lab, lab.addr.vip);
    assert.equal(await dl.started, 200);
    await sleep(500);
    const entries = (r: number) =>
      lbd.metric('lbd_real_server_active_connections', { real: real(r) }) + lbd.metric('lbd_real_server_inactive_connections', { real: real(r) });
    assert.equal(lbd.metric('lbd_real_server_connections_total', { real: real(1) }), 1, 'the download runs on server111');
    assert.equal(entries(1), 1);
    // Same admin socket as the helper gave it (a changed socket needs a restart).
    lbd.rewrite(config({ svc: TCP_CHECK, weights: [1, 0] }));
    lbd.proc.kill('SIGHUP');
    const deadline = Date.now() + 5000;
    while (lbd.metric('lbd_real_server_weight', { real: real(1) }) !== 0) {
      if (Date.now() > deadline)
        throw new Error(
          `reload not applied:\n${lbd
            .logs()
            .slice(-6)
            .map((l) => JSON.stringify(l))
            .join('\n')}`,
        );
      await sleep(50);
    }
    const during = curls(6);
    assert.deepEqual(during.bodies, Array(6).fill('server40'), 'new connections avoid the quiesced server');
    assert.equal(entries(1), 1, 'the open one is still there');
    assert.equal(lbd.metric('lbd_real_server_connections_total', { real: real(1) }), 1, 'and nothing new went to server111');
    assert.ok(dl.running(), 'still downloading after the reload');
    dl.release();
    assert.equal(await dl.done, `done 200 ${lab.describe().bigFile.bytes}`, 'the download completed on the drained server');
    const active = () => lbd.metric('lbd_real_server_active_connections', { real: real(1) });
    for (const deadline = Date.now() + 5000; active() !== 0 && Date.now() < deadline;) await sleep(100);
    assert.equal(active(), 0, 'active connections fell to zero');
    assert.equal(lbd.metric('lbd_real_server_up', { real: real(1) }), 1, 'drain is not a health verdict');
    t.diagnostic('drain: a 20 MiB download held open on server111 completed across a weight-0 reload; 6 new curls all to server40');
  } finally {
    if (dl?.running()) lab.kill(dl.proc);
    await lbd.stop();
  }
});
