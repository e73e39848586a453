/**
 * The native fast path on live traffic, in the namespace lab: lbd with `dataplane: native` and
 * the client's tx checksum offload ON (veth then hands over partial TCP checksums, which the
 * addon completes before sending). Needs root and the built addon (scripts/setup.sh builds it).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLab, Lab } from '../../lab/lab';
import { loadNative } from '../../src/dataplane/native';
import { curl, lbdConfig, parseWrk, startLbd, udpEchoService } from '../helpers/lbd-process';

const load = loadNative();
let lab: Lab;
before(() => {
  if (!load.ok) return;
  lab = createLab({ shape: 'one-nic', clientTxOffload: true });
});
after(() => lab?.teardown());

/** dataplane: native, and an admin socket of this lab's own (other lbds may run on the machine). */
const top = () => `dataplane: native\nadmin:\n  socket: ${lab.dir}/admin.sock\n`;

/** The real servers' count of TCP segments that arrived with a bad checksum. */
function csumErrors(): number {
  return lab.ns.rs
    .map((ns) => {
      const snmp = lab
        .exec(ns, ['cat', '/proc/net/snmp'])
        .split('\n')
        .filter((l) => l.startsWith('Tcp:'));
      const keys = snmp[0].split(/\s+/);
      const vals = snmp[1].split(/\s+/);
      return Number(vals[keys.indexOf('InCsumErrors')] ?? 0);
    })
    .reduce((a, b) => a + b, 0);
}

test("dataplane: native forwards live traffic with the client's tx offload on", async () => {
  if (!load.ok) assert.fail(`the native addon must be built (bash scripts/setup.sh): ${load.reason}`);
  const offload = lab.exec(lab.ns.client, ['ethtool', '-k', lab.ifaces.client]);
  assert.match(offload, /tx-checksum-ip-generic: on/, 'the client checksums in "hardware" (partial checksums on veth)');
  const udp = udpEchoService(lab);
  const errorsBefore = csumErrors();
  const startedAt = Date.now();
  const lbd = await startLbd(lab, lbdConfig(lab, { top: top(), scheduler: 'rr', extraServices: udp }));
  try {
    const started = lbd.logs().find((l) => l.msg === 'lbd started');
    assert.equal(started?.dataplane, 'native', 'the startup line names the native path');
    assert.equal(lbd.metric('lbd_dataplane_info', { path: 'native' }), 1);

    const bodies: string[] = [];
    for (let i = 0; i < 10; i++) bodies.push(curl(lab, `http://${lab.addr.vip}/`));
    for (let i = 1; i < 10; i++) assert.notEqual(bodies[i], bodies[i - 1], `rr alternates: ${bodies.join(' ')}`);
    assert.deepEqual(new Set(bodies), new Set(lab.names));

    // A request with a body: more segments, each with a partial checksum to complete.
    const post = lab.exec(lab.ns.client, [
      'curl',
      '-sS',
      '--max-time',
      '5',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--data-binary',
      'x'.repeat(1200),
      `http://${lab.addr.vip}/`,
    ]);
    assert.match(post, /^(200|405|413)$/, 'the POST got an HTTP answer');

    // UDP through the fast path.
    const ask = () =>
      lab
        .exec(lab.ns.client, [
          'node',
          '-e',
          `
        const s = require('dgram').createSocket('udp4');
        const t = setTimeout(() => { console.log('TIMEOUT'); process.exit(1); }, 3000);
        s.on('message', (m) => { console.log(m.toString()); clearTimeout(t); s.close(); });
        s.send('ping', ${lab.ports.udp}, '${lab.addr.vip}');`,
        ])
        .trim();
    assert.deepEqual([ask(), ask()].map((a) => a.split(':')[0]).sort(), [...lab.names].sort());

    const out = lab.exec(lab.ns.client, ['wrk', '-t1', '-c8', '-d3s', '--timeout', '2s', `http://${lab.addr.vip}/`], { timeoutMs: 20000 });
    const w = parseWrk(out);
    assert.ok(w.requests > 0, out);
    assert.equal(w.socketErrors, 0, out);
    assert.equal(w.non2xx, 0, out);

    assert.equal(csumErrors() - errorsBefore, 0, 'no segment reached a real server with a bad checksum');
    assert.ok(lbd.metric('lbd_real_server_packets_total', { real: `${lab.addr.rs[0]}:80` }) > 50);
    assert.ok(lbd.metric('lbd_real_server_packets_total', { real: `${lab.addr.rs[1]}:80` }) > 50);
    for (const reason of ['no_connection', 'send_failed', 'truncated']) {
      assert.equal(lbd.metric('lbd_dropped_packets_total', { reason }), 0, `no ${reason} drops`);
    }
    // The native path's own counters: batches (frames per wake-up and per sendmmsg) and no
    // frame lost before lbd saw it.
    const forwarded = lbd.metric('lbd_forwarded_packets_total');
    const wakeups = lbd.metric('lbd_native_wakeups_total');
    const sends = lbd.metric('lbd_native_send_syscalls_total');
    assert.ok(wakeups > 0 && sends > 0 && sends <= forwarded, `wakeups ${wakeups}, sendmmsg ${sends}, forwarded ${forwarded}`);
    assert.ok(lbd.metric('lbd_native_upcalls_total') >= 10 + 2 + 8, 'one upcall per new flow at least');
    assert.equal(lbd.metric('lbd_native_capture_dropped_packets_total'), 0);
    // Where the time went: every received frame's wait in the ring is timed (a veth frame's
    // kernel receive time is plausible), and the loop's work splits into upcalls, sends and the rest.
    const waited = lbd.metric('lbd_native_ring_wait_frames_total');
    const waitS = lbd.metric('lbd_native_ring_wait_seconds_total');
    const busy = lbd.metric('lbd_native_busy_seconds_total');
    const upcallS = lbd.metric('lbd_native_upcall_seconds_total');
    const sendS = lbd.metric('lbd_native_send_seconds_total');
    assert.ok(waited >= forwarded * 0.99 && waitS > 0, `ring wait ${waitS} s over ${waited} frames, forwarded ${forwarded}`);
    assert.ok(
      upcallS > 0 && sendS > 0 && busy >= upcallS + sendS && busy <= (Date.now() - startedAt) / 1000,
      `busy ${busy} s, upcalls ${upcallS} s, sends ${sendS} s`,
    );

    // The capture interface goes down and up again (the socket reports ENETDOWN): the capture
    // carries on.
    lab.exec(lab.ns.balancer, ['ip', 'link', 'set', lab.ifaces.balancerCapture, 'down']);
    lab.exec(lab.ns.balancer, ['ip', 'link', 'set', lab.ifaces.balancerCapture, 'up']);
    let body = '';
    for (let i = 0; i < 20 && !lab.names.includes(body); i++) {
      await new Promise((r) => setTimeout(r, 250));
      body = lab.tryExec(lab.ns.client, ['curl', '-s', '--max-time', '2', `http://${lab.addr.vip}/`]).stdout.trim();
    }
    assert.ok(lab.names.includes(body), `forwarding again after the link flapped (got "${body}")`);
  } finally {
    const { code } = await lbd.stop();
    assert.equal(code, 0);
  }
});

test('dataplane: native refuses to start when the capture interface cannot be opened natively', async () => {
  if (!load.ok) assert.fail(`the native addon must be built (bash scripts/setup.sh): ${load.reason}`);
  const yaml = lbdConfig(lab, { top: top() }).replace(`capture: ${lab.ifaces.balancerCapture}`, 'capture: lo');
  await assert.rejects(startLbd(lab, yaml), /dataplane: native.*not Ethernet/s);
});

test('busy_poll: lbd keeps polling its ring between the frames of a closed-loop client instead of sleeping; reload switches it', async () => {
  if (!load.ok) assert.fail(`the native addon must be built (bash scripts/setup.sh): ${load.reason}`);
  const lbd = await startLbd(lab, lbdConfig(lab, { top: top(), scheduler: 'rr' }));
  try {
    /** wrk -c1 for 2 s (a request/response loop: the next frame comes soon after the last); what the spin caught. */
    const caughtBySpin = () => {
      const before = lbd.metric('lbd_native_busy_poll_catches_total');
      const w = parseWrk(lab.exec(lab.ns.client, ['wrk', '-t1', '-c1', '-d2s', '--timeout', '2s', `http://${lab.addr.vip}/`], { timeoutMs: 20000 }));
      assert.ok(w.requests > 0 && w.socketErrors === 0 && w.non2xx === 0, JSON.stringify(w));
      return lbd.metric('lbd_native_busy_poll_catches_total') - before;
    };
    assert.equal(lbd.logs().find((l) => l.msg === 'lbd started')?.busyPollUs, 0);
    assert.equal(caughtBySpin(), 0, 'without busy_poll the loop never spins: every frame waits in epoll');
    lbd.rewrite(lbdConfig(lab, { top: `${top()}busy_poll: 1ms\n`, scheduler: 'rr' }));
    lbd.proc.kill('SIGHUP');
    for (const deadline = Date.now() + 5000; !lbd.logs().some((l) => l.change === 'busy_poll → 1000us');) {
      if (Date.now() > deadline)
        throw new Error(
          `reload not applied:\n${lbd
            .logs()
            .slice(-5)
            .map((l) => JSON.stringify(l))
            .join('\n')}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
    // Each wake-up now keeps looking at the dry ring for up to 1 ms: frames of the request/response
    // loop that arrive meanwhile are taken there, without a sleep and a wake-up. How many is a
    // matter of this machine's speed (npm run bench has the numbers); that it happens is not.
    assert.ok(caughtBySpin() > 0, 'with busy_poll the spin catches frames');
    assert.deepEqual(new Set([0, 1].map(() => curl(lab, `http://${lab.addr.vip}/`))), new Set(lab.names));
  } finally {
    await lbd.stop();
  }
});
