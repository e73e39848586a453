/**
 * ICMP errors and path MTU discovery through lbd, both ways (IPVS's ip_vs_in_icmp and its DR
 * transmit's MTU check):
 *   - routed lab: a router between the client and the balancer's segment has a 1400-byte link
 *     toward the client (the client keeps 1500, so it advertises a full MSS). The real server's
 *     1500-byte replies (DF) stop at the router, whose "fragmentation needed" goes to the VIP,
 *     i.e. to lbd, which must hand it to the real server holding the flow. With it the download
 *     completes and the real server's route cache shows mtu 1400; with that ICMP dropped (at the
 *     router) the same download stalls.
 *   - two-nic lab with a 1400-byte real-server segment: the client's 1500-byte upload frames
 *     (DF) do not fit the egress; lbd drops them (too_big) and sends the client "fragmentation
 *     needed, mtu 1400" from the VIP; the client learns it (its route cache) and the upload
 *     completes. With that ICMP dropped (at the client) the upload stalls.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, Lab, sleepMs } from '../../lab/lab';
import { LbdProcess, lbdConfig, startLbd } from '../helpers/lbd-process';

const DATAPLANES = ['ts', 'native'] as const;
const MTU = 1400;

/** curl's outcome: exit status, HTTP code, bytes received/sent, seconds. */
interface Transfer {
  status: number | null;
  code: number;
  down: number;
  up: number;
  seconds: number;
  body: string;
}

function transfer(lab: Lab, args: string[], maxTime: number): Transfer {
  const r = lab.tryExec(
    lab.ns.client,
    [
      'curl',
      '-sS',
      '-o',
      path.join(lab.dir, 'body.out'),
      '-w',
      '%{http_code} %{size_download} %{size_upload} %{time_total}',
      '--max-time',
      String(maxTime),
      ...args,
    ],
    { timeoutMs: (maxTime + 10) * 1000 },
  );
  const [code, down, up, seconds] = r.stdout.trim().split(' ').map(Number);
  let body = '';
  try {
    body = fs.readFileSync(path.join(lab.dir, 'body.out'), 'utf8');
  } catch {
    /* nothing received */
  }
  return { status: r.status, code, down, up, seconds, body };
}

/** The route cache entry of `dst` in a namespace, e.g. "192.168.13.50 via 10.0.10.1 dev eth0 \n cache expires 599sec mtu 1400". */
function routeCache(lab: Lab, ns: string, dst: string): string {
  return lab.exec(ns, ['ip', 'route', 'show', 'cache', dst]).trim();
}

const icmpForwarded = (lbd: LbdProcess) => lbd.metric('lbd_icmp_errors_total', { type: 'frag_needed', result: 'forwarded' });

describe('routed: the real servers learn the path MTU from the router’s ICMP, which lbd forwards', () => {
  let lab: Lab;
  before(() => {
    lab = createLab({ shape: 'routed', routerClientMtu: MTU, bigFileMB: 4, udpEcho: false });
  });
  after(() => lab?.teardown());

  const bytes = () => lab.describe().bigFile.bytes;
  const url = () => `http://${lab.addr.vip}/big.bin`;
  /** Every real server forgets what it learnt about the client's path. */
  const forget = () => lab.addr.rs.forEach((_, i) => lab.exec(lab.ns.rs[i], ['ip', 'route', 'flush', 'cache']));
  const learnt = () => lab.addr.rs.map((_, i) => routeCache(lab, lab.ns.rs[i], lab.addr.client)).filter((c) => c.includes(`mtu ${MTU}`));

  test('control: with the router’s ICMP to the VIP dropped, the download through the VIP stalls', async () => {
    forget();
    const router = lab.ns.router!;
    lab.exec(router, ['nft', '-f', '-'], {
      input: `table ip pmtu_control {\n  chain out {\n    type filter hook output priority 0; policy accept;\n    ip daddr ${lab.addr.vip} icmp type destination-unreachable counter drop\n  }\n}\n`,
    });
    const lbd = await startLbd(lab, lbdConfig(lab, { top: 'dataplane: ts' }));
    try {
      const t = transfer(lab, [url()], 3);
      assert.equal(t.status, 28, `curl timed out (exit 28), not ${t.status}: ${JSON.stringify(t)}`);
      assert.ok(t.down < bytes() / 2, `stalled: ${t.down} of ${bytes()} bytes`);
      assert.match(lab.exec(router, ['nft', 'list', 'table', 'ip', 'pmtu_control']), /counter packets [1-9]/, 'the router did send fragmentation needed');
      assert.deepEqual(learnt(), [], 'no real server learnt the path MTU');
      assert.equal(icmpForwarded(lbd), 0);
    } finally {
      await lbd.stop();
      lab.exec(router, ['nft', 'delete', 'table', 'ip', 'pmtu_control']);
    }
  });

  for (const dataplane of DATAPLANES) {
    test(`${dataplane}: a large download through the VIP completes; the real server learns mtu ${MTU}; lbd counts the ICMP it forwarded`, async (ctx) => {
      forget();
      const lbd = await startLbd(lab, lbdConfig(lab, { top: `dataplane: ${dataplane}` }));
      try {
        assert.equal(lbd.metric('lbd_dataplane_info', { path: dataplane }), 1);
        const t = transfer(lab, [url()], 10);
        assert.equal(t.status, 0, JSON.stringify(t));
        assert.deepEqual([t.code, t.down], [200, bytes()]);
        const caches = learnt();
        assert.equal(caches.length, 1, `the serving real server's route cache: ${caches.join(' | ')}`);
        assert.match(caches[0], new RegExp(`^${lab.addr.client.replace(/\./g, '\\.')} via 10\\.0\\.10\\.1 dev eth0`));
        assert.ok(icmpForwarded(lbd) >= 1, 'lbd_icmp_errors_total{type="frag_needed",result="forwarded"}');
        // The control's stalled connection may still be retransmitting: its errors are unknown flows to this lbd.
        assert.equal(
          lbd.metric('lbd_icmp_errors_total', { type: 'frag_needed', result: 'unknown_flow' }),
          lbd.metric('lbd_dropped_packets_total', { reason: 'icmp_unknown_flow' }),
        );
        ctx.diagnostic(`${t.down} bytes in ${t.seconds} s; ICMP forwarded: ${icmpForwarded(lbd)}; ${caches[0].replace(/\s+/g, ' ')}`);
      } finally {
        await lbd.stop();
      }
    });
  }
});

/** An HTTP sink on every real server's port 80: answers a request with the number of body bytes it read. */
const SINK = `
require('node:http').createServer((req, res) => {
  let n = 0;
  req.on('data', (d) => (n += d.length));
  req.on('end', () => res.end(String(n)));
}).listen(80, () => console.log('listening'));
`;

describe('two-nic with a smaller egress MTU: the client learns it from lbd’s ICMP', () => {
  let lab: Lab;
  let upload: string;
  const SIZE = 4 << 20;
  before(() => {
    lab = createLab({ shape: 'two-nic', egressMtu: MTU, apache: false, udpEcho: false });
    for (const ns of lab.ns.rs) lab.spawn(ns, ['node', '-e', SINK], { name: `sink-${ns}` });
    upload = path.join(lab.dir, 'upload.bin');
    const chunk = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i++) chunk[i] = (i * 131 + 7) & 0xff;
    fs.writeFileSync(upload, chunk, { mode: 0o644 });
    // The sinks are up when each answers on its own address.
    for (const a of lab.addr.rs) {
      for (let i = 0; ; i++) {
        if (lab.tryExec(lab.ns.client, ['curl', '-sf', '--max-time', '1', '--data-binary', 'x', `http://${a}/`]).stdout === '1') break;
        if (i > 100) throw new Error(`sink on ${a} did not come up`);
        sleepMs(50);
      }
    }
  });
  after(() => lab?.teardown());

  const send = (maxTime: number) => transfer(lab, ['--data-binary', `@${upload}`, '-H', 'Expect:', `http://${lab.addr.vip}/`], maxTime);
  const forget = () => lab.exec(lab.ns.client, ['ip', 'route', 'flush', 'cache']);

  test('control: with lbd’s ICMP dropped at the client, the upload through the VIP stalls', async () => {
    forget();
    lab.exec(lab.ns.client, ['nft', '-f', '-'], {
      input: `table ip pmtu_control {\n  chain in {\n    type filter hook input priority 0; policy accept;\n    ip saddr ${lab.addr.vip} icmp type destination-unreachable counter drop\n  }\n}\n`,
    });
    const lbd = await startLbd(lab, lbdConfig(lab, { top: 'dataplane: ts' }));
    try {
      const t = send(3);
      assert.equal(t.status, 28, `curl timed out (exit 28), not ${t.status}: ${JSON.stringify(t)}`);
      assert.notEqual(t.body, String(SIZE));
      assert.ok(lbd.metric('lbd_icmp_too_big_sent_total') >= 1, 'lbd sent fragmentation needed');
      assert.match(lab.exec(lab.ns.client, ['nft', 'list', 'table', 'ip', 'pmtu_control']), /counter packets [1-9]/, 'and the client dropped it');
      assert.doesNotMatch(routeCache(lab, lab.ns.client, lab.addr.vip), /mtu/);
    } finally {
      await lbd.stop();
      lab.exec(lab.ns.client, ['nft', 'delete', 'table', 'ip', 'pmtu_control']);
    }
  });

  for (const dataplane of DATAPLANES) {
    test(`${dataplane}: a large upload through the VIP completes; the client learns mtu ${MTU} from lbd`, async (ctx) => {
      forget();
      const lbd = await startLbd(lab, lbdConfig(lab, { top: `dataplane: ${dataplane}` }));
      try {
        assert.equal(lbd.metric('lbd_dataplane_info', { path: dataplane }), 1);
        const t = send(10);
        assert.equal(t.status, 0, JSON.stringify(t));
        assert.deepEqual([t.code, t.body], [200, String(SIZE)], 'the real server read every byte');
        assert.match(routeCache(lab, lab.ns.client, lab.addr.vip), new RegExp(`cache .*mtu ${MTU}`));
        assert.ok(lbd.metric('lbd_icmp_too_big_sent_total') >= 1);
        assert.ok(lbd.metric('lbd_dropped_packets_total', { reason: 'too_big' }) >= 1);
        ctx.diagnostic(
          `${t.up} bytes in ${t.seconds} s; too_big ${lbd.metric('lbd_dropped_packets_total', { reason: 'too_big' })}, ICMP sent ${lbd.metric('lbd_icmp_too_big_sent_total')}; ${routeCache(lab, lab.ns.client, lab.addr.vip).replace(/\s+/g, ' ')}`,
        );
      } finally {
        await lbd.stop();
      }
    });
  }
});
