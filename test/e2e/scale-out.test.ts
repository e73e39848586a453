import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { bigFileSha256, createLab, Lab } from '../../lab/lab';
import type { ChildProcess } from '../../src/host/programs';
import { lbdConfig, LbdProcess, sampleValue, startLbd } from '../helpers/lbd-process';

// Scale-out: two balancers with the same config on one segment, the client's next hop for the
// VIP moved from the first to the second in the middle of long downloads (what an ECMP re-hash
// or the first balancer's death does to a flow).
//
//   client 10.0.10.50 ── br0 ── lb 10.0.10.30 (lbd 1), lb31 10.0.10.31 (lbd 2), rs40, rs111, rs140
//   client: ip route VIP/32 via 10.0.10.30, then `ip route replace VIP/32 via 10.0.10.31`
//
// The fault: with on_miss: drop (the default, IPVS with sloppy_tcp=0) the second balancer has no
// entry for the flows and drops every ACK as no_connection: the downloads stall and die. With
// `scheduler: mh` and `on_miss: hash` it schedules the first segment it sees of each flow by the
// Maglev hash, which picks the server the first balancer picked, and the downloads complete
// byte-identical (a different server would have answered the flow's segments with a RST).
//
// ARP: lbd answers "who has the VIP?" on its capture interface, so two lbds on one segment would
// both answer. Nobody asks here: the client reaches the VIP through a route via a balancer's own
// address (as a router doing ECMP does), so it only resolves 10.0.10.30 and 10.0.10.31, which the
// balancers' kernels answer; the real servers hold the VIP on lo with arp_ignore/arp_announce. The
// test checks that the client never learned a MAC for the VIP.
//
// Each download is curl --limit-rate from the client with a small receive buffer (as in
// restart.test.ts), so every one is under way when the next hop moves. curl gives up on a
// download that moves less than 1 KiB/s for STALL_S seconds (exit 28): that bounds the broken
// case. Measured in the lab (2 cores): a download takes ~4.3 s (8 MiB at 2 MB/s); with on_miss:
// hash the last one ends ~2.9 s after the move, what the remaining bytes take at that rate (the
// move costs no visible pause). A case runs ~7 s with on_miss: hash and ~14 s with on_miss: drop
// (curl averages its speed over ~5 s before STALL_S starts counting); the file ~46 s.

const MIB = 1024 * 1024;
const FILE_MB = 8;
const RATE = '2M';
const DOWNLOADS = 8;
/** curl aborts a download slower than 1 KiB/s for this long. */
const STALL_S = 3;
/** curl's bound for a whole download (~4.3 s measured). */
const DOWNLOAD_BOUND_S = 30;
/** when the next hop moves, after the downloads started: a quarter of the way in */
const MOVE_AFTER_MS = 1200;

const SECOND = 31;

let lab: Lab;
let expectedSha: string;
before(() => {
  lab = createLab({ shape: 'one-nic', rsOctets: [40, 111, 140], extraBalancers: [SECOND], bigFileMB: FILE_MB, udpEcho: false });
  // A receive buffer of 256 KiB at most on the client: the server cannot push the rest of the file
  // into it ahead of curl's rate; every ACK until the end must reach the server through a balancer.
  lab.exec(lab.ns.client, ['sysctl', '-qw', 'net.ipv4.tcp_rmem=4096 131072 262144']);
  expectedSha = bigFileSha256(FILE_MB);
});
after(() => lab?.teardown());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const sizeOf = (file: string) => (existsSync(file) ? statSync(file).size : 0);
let seq = 0;

/** The client's next hop for the VIP: one of the balancers' own addresses. */
function routeVia(addr: string): void {
  lab.exec(lab.ns.client, ['ip', 'route', 'replace', `${lab.addr.vip}/32`, 'via', addr]);
}

interface Download {
  proc: ChildProcess;
  file: string;
  /** curl's exit code once it ends. */
  done: Promise<number | null>;
}

function download(): Download {
  const file = path.join(lab.dir, `scale-out-${process.pid}-${++seq}.bin`);
  const proc = lab.spawn(
    lab.ns.client,
    [
      'curl',
      '-sS',
      '--limit-rate',
      RATE,
      '--speed-limit',
      '1024',
      '--speed-time',
      String(STALL_S),
      '--max-time',
      String(DOWNLOAD_BOUND_S),
      '-o',
      file,
      `http://${lab.addr.vip}/big.bin`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], ref: true },
  );
  const done = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, file, done };
}

/** One sample of lbd's /metrics, 0 when absent. */
const value = (text: string, name: string, labels: Record<string, string> = {}) => sampleValue(text, name, labels) || 0;

/** lbd_real_server_connections_total of every real server, e.g. { '10.0.10.40': 3, ... }. */
function connsByServer(text: string): Record<string, number> {
  return Object.fromEntries(lab.addr.rs.map((a) => [a, value(text, 'lbd_real_server_connections_total', { service: 'web', real: `${a}:80` })]));
}

interface Outcome {
  codes: (number | null)[];
  complete: number;
  identical: number;
  /** ms from the move of the next hop to the end of the last download */
  lastEndMs: number;
  first: string;
  second: string;
}

/**
 * Both lbds with the same config; DOWNLOADS downloads through the first; the next hop moves to
 * the second; returns how they ended and both lbds' metrics.
 */
async function scaleOut(t: TestContext, dataplane: 'native' | 'ts', onMiss: 'drop' | 'hash'): Promise<Outcome> {
  const yaml = lbdConfig(lab, {
    top: `dataplane: ${dataplane}`,
    scheduler: 'mh',
    // on_miss: drop is the default: the drop cases leave the key out, as a config that never heard of it does
    serviceLines: ['mh_port: true', ...(onMiss === 'hash' ? ['on_miss: hash'] : [])],
  });
  const second = lab.ns.extraBalancers![0];
  const started: LbdProcess[] = [];
  const dls: Download[] = [];
  try {
    started.push(await startLbd(lab, yaml));
    started.push(await startLbd(lab, yaml, { ns: second }));
    const [lb1, lb2] = started;
    routeVia(lab.addr.balancer);
    const t0 = Date.now();
    for (let i = 0; i < DOWNLOADS; i++) dls.push(download());
    // Every download under way (bytes arrived) and none finished when the next hop moves.
    for (const deadline = Date.now() + 10000; !dls.every((d) => sizeOf(d.file) > 0);) {
      assert.ok(Date.now() < deadline, `every download started within 10 s: ${dls.map((d) => sizeOf(d.file)).join(' ')}`);
      await sleep(50);
    }
    await sleep(Math.max(0, t0 + MOVE_AFTER_MS - Date.now()));
    const sizes = dls.map((d) => sizeOf(d.file));
    assert.ok(
      sizes.every((s) => s > 0 && s < FILE_MB * MIB),
      `every download under way at the move: ${sizes.join(' ')}`,
    );
    const before1 = lb1.metrics();
    assert.equal(value(before1, 'lbd_service_connections_total', { service: 'web' }), DOWNLOADS, 'the first balancer scheduled the downloads');
    routeVia(lab.addr.extraBalancers![0]);
    const moved = Date.now();
    const codes = await Promise.all(dls.map((d) => d.done));
    const lastEndMs = Date.now() - moved;
    const complete = dls.filter((d, i) => codes[i] === 0 && sizeOf(d.file) === FILE_MB * MIB).length;
    const identical = dls.filter((d, i) => codes[i] === 0 && sha(d.file) === expectedSha).length;
    // The client reached the VIP only through the balancers' own addresses: no balancer's ARP
    // answer for the VIP ever mattered.
    const neigh = lab.exec(lab.ns.client, ['ip', 'neigh', 'show', 'to', lab.addr.vip]).trim();
    assert.equal(neigh, '', `the client never resolved the VIP: ${neigh}`);
    const out: Outcome = { codes, complete, identical, lastEndMs, first: lb1.metrics(), second: lb2.metrics() };
    t.diagnostic(
      `${dataplane} on_miss: ${onMiss}: ${complete}/${DOWNLOADS} complete (${identical} byte-identical), curl exits ${codes.join(' ')}, ` +
        `last ended ${lastEndMs} ms after the move; flows per real server: first ${JSON.stringify(connsByServer(before1))}, ` +
        `second ${JSON.stringify(connsByServer(out.second))}; second: no_connection drops ${value(out.second, 'lbd_dropped_packets_total', { reason: 'no_connection' })}, ` +
        `forwarded ${value(out.second, 'lbd_forwarded_packets_total')}`,
    );
    return out;
  } finally {
    for (const d of dls) if (d.proc.exitCode === null && d.proc.signalCode === null) lab.kill(d.proc);
    for (const p of started.reverse()) await p.stop();
    for (const d of dls) rmSync(d.file, { force: true });
  }
}

// The on_miss: hash cases first: their downloads end cleanly. A broken download leaves the
// client's FIN and the server's data retransmitting for minutes, segments without SYN that the
// next case's balancers would see; under on_miss: drop they are only dropped, which the drop
// cases' assertions allow, while under on_miss: hash they would be picked up as connections.
for (const dataplane of ['native', 'ts'] as const) {
  test(`${dataplane}: mh with on_miss: hash: ${DOWNLOADS} downloads started through one balancer complete byte-identical after the next hop moves to the other, which picks each flow up on the server the first chose`, async (t) => {
    const o = await scaleOut(t, dataplane, 'hash');
    assert.equal(o.complete, DOWNLOADS, `every download completes: curl exits ${o.codes.join(' ')}`);
    assert.equal(o.identical, DOWNLOADS, 'byte-identical');
    assert.equal(value(o.second, 'lbd_service_on_miss_scheduled_total', { service: 'web' }), DOWNLOADS, 'the second balancer picked up each flow once');
    assert.equal(value(o.second, 'lbd_dropped_packets_total', { reason: 'no_connection' }), 0, 'and dropped none of their segments');
    assert.ok(value(o.second, 'lbd_forwarded_packets_total') > 0);
    // Each flow on the same real server on both balancers (else the server would have reset it).
    assert.deepEqual(connsByServer(o.second), connsByServer(o.first), 'the same real server per flow on both balancers');
  });
}

for (const dataplane of ['native', 'ts'] as const) {
  test(`${dataplane}: mh without on_miss (the default, drop): ${DOWNLOADS} downloads started through one balancer die when the next hop moves to the other, which drops their segments as no_connection`, async (t) => {
    const o = await scaleOut(t, dataplane, 'drop');
    assert.equal(o.complete, 0, `no download completes: curl exits ${o.codes.join(' ')}`);
    assert.ok(
      o.codes.every((c) => c !== 0),
      `every curl fails (28: stalled for ${STALL_S} s): ${o.codes.join(' ')}`,
    );
    assert.ok(value(o.second, 'lbd_dropped_packets_total', { reason: 'no_connection' }) >= DOWNLOADS, 'the second balancer dropped them as no_connection');
    assert.equal(value(o.second, 'lbd_forwarded_packets_total'), 0, 'and forwarded nothing');
    assert.equal(value(o.second, 'lbd_service_connections_total', { service: 'web' }), 0);
  });
}
