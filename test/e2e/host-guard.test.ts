import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLab, Lab, run, type Command } from '../../lab/lab';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { netnsArgs, programPath } from '../../src/host/programs';
import { cleanAfter, curl, lbdConfig, sampleValue, startLbd, type LbdProcess } from '../helpers/lbd-process';

// One lab for this file: client, balancer and two Apache real servers on one bridge. The VIP is
// the balancer's own address (the seed's setup), where only the guard keeps the kernel from
// answering the services' SYNs with RSTs: a missing guard shows at once as failed curls.
let lab: Lab;
before(() => {
  lab = createLab({ shape: 'one-nic' });
  for (const ns of lab.ns.rs) lab.exec(ns, ['ip', 'addr', 'add', `${lab.addr.balancer}/32`, 'dev', 'lo']);
});
after(() => lab?.teardown());

/** A command in a namespace, its failure included. */
const runIn = (ns: string, cmd: Command) => run('ip', netnsArgs(ns, cmd));

const guardTable = () => `lbd_${lab.ifaces.balancerCapture}`;
const config = (top = '') => lbdConfig(lab, { vip: lab.addr.balancer, top });

/** `nft list table netdev NAME` in the balancer, or '' when there is none. */
function listTable(name: string): string {
  const r = runIn(lab.ns.balancer, ['nft', 'list', 'table', 'netdev', name]);
  return r.status === 0 ? r.stdout : '';
}

const guardElement = () => new RegExp(`${lab.addr.balancer.replace(/\./g, '\\.')} \\. tcp \\. 80 timeout`);

/** The first log line that matches, waiting for it (the logs arrive while the test awaits). */
async function waitLog(lbd: LbdProcess, match: (l: any) => boolean, timeoutMs = 3000): Promise<any> {
  const t0 = Date.now();
  for (;;) {
    const line = lbd.logs().find(match);
    if (line) return line;
    if (Date.now() - t0 > timeoutMs) assert.fail(`no such log line in ${timeoutMs} ms; last: ${JSON.stringify(lbd.logs().slice(-5))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** n curls to the VIP from the client; how many got a body. */
function curlsOk(n: number): number {
  let ok = 0;
  for (let i = 0; i < n; i++) {
    try {
      if (/^server/.test(curl(lab, `http://${lab.addr.balancer}/`, 3))) ok++;
    } catch {
      /* counted as a failure */
    }
  }
  return ok;
}

for (const dataplane of ['native', 'ts'] as const) {
  test(`${dataplane}: a firewall reload's "nft flush ruleset" deleted the guard and every connection got the kernel's RST: restored within a second, logged, counted`, async (t) => {
    const lbd = await startLbd(lab, config(`dataplane: ${dataplane}`));
    try {
      assert.equal(curlsOk(4), 4);
      const t0 = Date.now();
      lab.exec(lab.ns.balancer, ['nft', 'flush', 'ruleset']);
      let back = -1;
      while (Date.now() - t0 < 3000) {
        if (guardElement().test(listTable(guardTable()))) {
          back = Date.now() - t0;
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      t.diagnostic(`guard seen back ${back} ms after the flush`);
      assert.ok(back >= 0, 'the guard is back');
      const restored = await waitLog(lbd, (l) => /changed by someone else: restored/.test(l.msg) && l.role === 'guard');
      const restoredMs = Date.parse(restored.time) - t0;
      t.diagnostic(`lbd logged the restore ${restoredMs} ms after the flush`);
      assert.ok(restoredMs < 1000, `restored within a second (${restoredMs} ms)`);
      assert.equal(curlsOk(20), 20, 'every connection answered by a real server');
      assert.ok(lbd.metric('lbd_host_table_restores_total', { table: 'guard' }) >= 1);
    } finally {
      assert.equal((await lbd.stop()).code, 0);
    }
    assert.match(listTable(guardTable()), guardElement(), 'SIGTERM leaves the guard, leased, for the next lbd');
    cleanAfter(lab, lbd.configFile);
    assert.equal(listTable(guardTable()), '', 'lbd stop --clean removes it');
  });
}

test("a second lbd on the same capture interface deleted the first one's guard: it now refuses, naming the first, and touches nothing", async () => {
  const first = await startLbd(lab, config());
  try {
    const second = config().replace('127.0.0.1:9469', '127.0.0.1:9470');
    await assert.rejects(startLbd(lab, second), (e: Error) => {
      assert.match(e.message, /E_INSTANCE/);
      assert.match(e.message, new RegExp(`another lbd \\(pid ${first.proc.pid}\\) runs on ${lab.ifaces.balancerCapture}`));
      return true;
    });
    assert.match(listTable(guardTable()), new RegExp(`comment "lbd pid ${first.proc.pid} `), "still the first one's");
    assert.match(listTable(guardTable()), guardElement());
    assert.equal(curlsOk(10), 10);
  } finally {
    await first.stop();
  }
});

test("a second lbd that fails to start (metrics port taken) deleted the first one's guard: now it removes only what it made", async () => {
  // Another interface in the balancer for the second lbd to capture on.
  const [x0, x1] = [`${lab.prefix}x0`, `${lab.prefix}x1`];
  lab.exec(lab.ns.balancer, ['ip', 'link', 'add', x0, 'type', 'veth', 'peer', 'name', x1]);
  lab.exec(lab.ns.balancer, ['ip', 'link', 'set', x0, 'up']);
  const first = await startLbd(lab, config());
  try {
    const second = config().replace(`capture: ${lab.ifaces.balancerCapture}`, `capture: ${x0}`);
    await assert.rejects(startLbd(lab, second), /E_METRICS/);
    assert.equal(listTable(`lbd_${x0}`), '', 'its own guard removed');
    assert.match(listTable(guardTable()), new RegExp(`comment "lbd pid ${first.proc.pid} `));
    assert.match(listTable(guardTable()), guardElement());
    assert.equal(curlsOk(10), 10);
  } finally {
    await first.stop();
    lab.exec(lab.ns.balancer, ['ip', 'link', 'del', x0]);
  }
});

test('a crashed lbd (SIGKILL) left its guard and local-access routes forever: the routes go with it, the guard lapses after its lease, a restart within the lease takes it over', async (t) => {
  const tap = `lbd-${lab.ifaces.balancerCapture}`;
  const kill = async (p: LbdProcess) => {
    p.proc.kill('SIGKILL');
    await p.stop();
  };
  const vipRoute = () => lab.exec(lab.ns.balancer, ['ip', 'route', 'show', `${lab.addr.vip}/32`]);
  // local_access routes the (non-local) VIP through the TAP; the guard covers the balancer's address.
  const yaml = lbdConfig(lab, {
    top: 'local_access: true',
    extraServices: `  - name: own\n    vip: ${lab.addr.balancer}\n    port: 80\n    protocol: tcp\n    scheduler: rr\n    real_servers:\n      - address: ${lab.addr.rs[0]}\n`,
  });
  let lbd = await startLbd(lab, yaml);
  const firstPid = lbd.proc.pid;
  assert.match(vipRoute(), new RegExp(`dev ${tap}`));
  await kill(lbd);
  assert.equal(vipRoute().trim(), '', 'the TAP and its route died with the process');
  assert.match(listTable(guardTable()), guardElement(), 'the guard outlives a crash by its lease');

  // A restart within the lease: the guard was never gone, the new lbd takes it over.
  lbd = await startLbd(lab, yaml);
  try {
    await waitLog(lbd, (l) => /guard of an lbd that is gone: taking it over/.test(l.msg));
    assert.match(listTable(guardTable()), new RegExp(`comment "lbd pid ${lbd.proc.pid} `));
    assert.notEqual(lbd.proc.pid, firstPid);
    assert.equal(curlsOk(4), 4);
    // The balancer's own connections: the real servers answer its address, so it must not be on their lo for a moment.
    for (const ns of lab.ns.rs) lab.exec(ns, ['ip', 'addr', 'del', `${lab.addr.balancer}/32`, 'dev', 'lo']);
    const local = runIn(lab.ns.balancer, ['curl', '-sS', '--max-time', '5', `http://${lab.addr.vip}/`]);
    for (const ns of lab.ns.rs) lab.exec(ns, ['ip', 'addr', 'add', `${lab.addr.balancer}/32`, 'dev', 'lo']);
    assert.match(local.stdout, /^server/, 'local access works again');
  } finally {
    await kill(lbd);
  }

  // No lbd any more: the lease (15 s) runs out and the guard matches nothing.
  const t0 = Date.now();
  while (guardElement().test(listTable(guardTable())) && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 250));
  t.diagnostic(`guard elements lapsed ${Date.now() - t0} ms after the crash`);
  assert.doesNotMatch(listTable(guardTable()), guardElement(), 'lapsed within 30 s');
  // The kernel has its address back: a connection is refused at once instead of black-holed.
  const r = runIn(lab.ns.client, ['curl', '-sS', '--max-time', '3', `http://${lab.addr.balancer}/`]);
  assert.match(r.stderr, /Connection refused|Couldn't connect to server/);
  lab.exec(lab.ns.balancer, ['nft', 'delete', 'table', 'netdev', guardTable()]);
});

test("host changes blocked the event loop, which is the data plane's (a synchronous nft per change): with nft taking a second, a reload waits for it while /metrics and forwarding go on", async (t) => {
  // An nft that takes a second for everything (the guard's claim, install, renewals, the monitor).
  const slowBin = `${lab.dir}/slow-nft-bin`;
  mkdirSync(slowBin, { recursive: true });
  writeFileSync(`${slowBin}/nft`, `#!/bin/sh\nsleep 1\nexec ${programPath('nft')} "$@"\n`, { mode: 0o755 });
  const env = { ...process.env, PATH: `${slowBin}:${process.env.PATH ?? ''}` };
  const lbd = await startLbd(lab, config(), { env, timeoutMs: 20_000 });
  try {
    assert.equal(curlsOk(2), 2);
    // A reload that adds a service: the guard gets a new element (one slow nft).
    const more = `${config()}  - name: more\n    vip: ${lab.addr.balancer}\n    port: 8080\n    protocol: tcp\n    scheduler: rr\n    real_servers:\n      - address: ${lab.addr.rs[0]}\n`;
    writeFileSync(
      lbd.configFile,
      more.replace(/^admin:[\s\S]*$/m, '') + readFileSync(lbd.configFile, 'utf8').slice(readFileSync(lbd.configFile, 'utf8').search(/^admin:/m)),
    );
    const t0 = Date.now();
    lbd.proc.kill('SIGHUP');
    // Scrapes (timed by curl itself, not by the process spawns around it) and requests until the
    // reload is done; a round that overlaps its end is not counted as one done meanwhile.
    let maxMetricsMs = 0;
    let served = 0;
    let forwarded = 0;
    const isReloaded = () => lbd.logs().some((l) => l.msg === 'config reloaded');
    for (const deadline = t0 + 10_000; !isReloaded();) {
      assert.ok(Date.now() < deadline, 'the reload ends within 10 s');
      const scrape = lab.tryExec(lab.ns.balancer, [
        'curl',
        '-sf',
        '--max-time',
        '5',
        '-o',
        '/dev/null',
        '-w',
        '%{time_total}',
        'http://127.0.0.1:9469/metrics',
      ]);
      const ok = curlsOk(1);
      // Every scrape's time counts: one that waited for nft ends after the reload has.
      maxMetricsMs = Math.max(maxMetricsMs, Number(scrape.stdout) * 1000);
      await new Promise((r) => setTimeout(r, 20)); // lets lbd's log lines in
      if (isReloaded()) break;
      if (scrape.status === 0) served++;
      forwarded += ok;
    }
    const reloaded = await waitLog(lbd, (l) => l.msg === 'config reloaded', 10_000);
    const reloadMs = Date.parse(reloaded.time) - t0;
    t.diagnostic(
      `reload done ${reloadMs} ms after SIGHUP; meanwhile ${served} scrapes (slowest ${Math.round(maxMetricsMs)} ms) and ${forwarded} forwarded requests`,
    );
    assert.ok(reloadMs >= 900, `the reload waited for the slow nft (${reloadMs} ms)`);
    assert.ok(served >= 1 && forwarded >= 1, 'scrapes and forwarding went on while nft ran');
    assert.ok(maxMetricsMs < 500, `no scrape waited for nft (slowest ${Math.round(maxMetricsMs)} ms)`);
    assert.match(listTable(guardTable()), new RegExp(`${lab.addr.balancer.replace(/\./g, '\\.')} \\. tcp \\. 8080 timeout`), 'the change is in');
    // The event loop's delay, as a histogram: many samples, none near a second.
    const text = lbd.metrics(); // one scrape: every sample below from the same fold
    const bucket = (le: string) => sampleValue(text, 'lbd_event_loop_delay_seconds_bucket', { le });
    const count = sampleValue(text, 'lbd_event_loop_delay_seconds_count');
    t.diagnostic(`event-loop delay samples: ${count}; at most 5 ms: ${bucket('0.005')}, 25 ms: ${bucket('0.025')}, 100 ms: ${bucket('0.1')}`);
    assert.ok(count > 100, `sampled every 10 ms (${count})`);
    assert.equal(bucket('+Inf'), count);
    assert.equal(bucket('0.5'), count, 'no half-second stall');
  } finally {
    await lbd.stop();
  }
});
