/**
 * SYN floods into a small connection table with wrk opening a new connection for every request
 * alongside (Connection: close): the floods the defense is for — one spoofed address cycling
 * its ports (its repeated SYNs refresh its own half-open entries, so none ever ages out) and
 * random spoofed sources — at about 20k SYN/s each, from bench/gen/gen.c in the client's
 * namespace. With the defense (the default, auto) wrk sees no socket error; with it off, the
 * cycling flood keeps the table full and wrk's new connections are dropped as table_full.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLab, Lab } from '../../lab/lab';
import { parseWrk, type WrkSummary } from '../../lab/wrk';
import { buildGenerator, genToVip } from '../../bench/measure';
import type { ChildProcess } from '../../src/host/programs';
import { lbdConfig, startLbd, type LbdProcess } from '../helpers/lbd-process';

let lab: Lab;
before(() => {
  buildGenerator();
  lab = createLab({ shape: 'one-nic', udpEcho: false });
});
after(() => lab?.teardown());

const RATE = 20_000;
const TABLE = 8192;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A bounded SYN flood toward the VIP from the client's namespace (gen: --count and --duration bound it). */
function flood(kind: 'cycle' | 'random', seconds: number): { proc: ChildProcess; done: Promise<string> } {
  const proc = lab.spawn(
    lab.ns.client,
    [
      ...genToVip(lab),
      '--mode',
      'syn',
      ...(kind === 'cycle' ? ['--cycle', '64000'] : ['--random']),
      '--rate',
      String(RATE),
      '--count',
      String(RATE * seconds),
      '--duration',
      String(seconds),
      '--batch',
      '64',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], ref: true },
  );
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, done: new Promise((resolve) => proc.once('close', () => resolve(out))) };
}

/**
 * wrk opening a new connection per request, for `seconds`. A wrk whose connections never get
 * through does not end by itself (it waits on connect): bounded, it counts as no request done.
 */
function wrk(seconds: number): WrkSummary & { out: string } {
  const r = lab.tryExec(lab.ns.client, ['wrk', '-t1', '-c8', `-d${seconds}s`, '--timeout', '2s', '-H', 'Connection: close', `http://${lab.addr.vip}/`], {
    timeoutMs: (seconds + 5) * 1000,
  });
  const out = `${r.stdout}${r.stderr}`;
  return { ...parseWrk(out), out };
}

async function underFlood(kind: 'cycle' | 'random', defense: string, t: { diagnostic(s: string): void }) {
  const lbd: LbdProcess = await startLbd(lab, lbdConfig(lab, { top: `connection_table:\n  size: ${TABLE}\n  syn_flood_defense: ${defense}\n` }));
  try {
    const f = flood(kind, 9);
    await sleep(2000); // the table fills
    const fill = lbd.metric('lbd_conn_table_entries');
    const w = wrk(5);
    const genOut = await f.done;
    const sent = /"sent":(\d+)/.exec(genOut)?.[1];
    const m = (name: string) => lbd.metric(name);
    t.diagnostic(
      `${kind} flood, defense ${defense}: ${sent} SYNs in 9 s; table ${fill}/${TABLE} after 2 s; wrk ${w.requests} requests, ${w.socketErrors} socket errors, ${w.non2xx} non-2xx; ` +
        `defense on ${m('lbd_syn_flood_defense')}, evictions ${m('lbd_syn_flood_evictions_total')}, table_full ${lbd.metric('lbd_dropped_packets_total', { reason: 'table_full' })}, ` +
        `no_connection ${lbd.metric('lbd_dropped_packets_total', { reason: 'no_connection' })}, ring drops ${m('lbd_native_capture_dropped_packets_total')}, upcalls ${m('lbd_native_upcalls_total')}`,
    );
    return { w, fill, sent: Number(sent), tableFull: lbd.metric('lbd_dropped_packets_total', { reason: 'table_full' }) };
  } finally {
    await lbd.stopClean();
  }
}

test('one address cycling its ports at 20k SYN/s into a full table: with the defense, wrk opens every connection', async (t) => {
  const { w, fill, sent } = await underFlood('cycle', 'auto', t);
  assert.ok(sent > RATE * 4, `the flood ran (${sent} SYNs)`);
  assert.ok(fill >= TABLE * 0.9, `the flood filled the table (${fill}/${TABLE})`);
  assert.ok(w.requests > 0, `wrk completed requests (${w.requests})`);
  assert.equal(w.socketErrors, 0);
  assert.equal(w.non2xx, 0);
});

test('random spoofed sources at 20k SYN/s: with the defense, wrk opens every connection', async (t) => {
  const { w, fill } = await underFlood('random', 'auto', t);
  assert.ok(fill >= TABLE * 0.9, `the flood filled the table (${fill}/${TABLE})`);
  assert.ok(w.requests > 0, `wrk completed requests (${w.requests})`);
  assert.equal(w.socketErrors, 0);
  assert.equal(w.non2xx, 0);
});

test('the same cycling flood with the defense off: the table stays full and wrk cannot connect (the fault the defense mends)', async (t) => {
  const { w, tableFull } = await underFlood('cycle', 'off', t);
  assert.ok(w.socketErrors > 0 || !(w.requests > 0), `wrk: ${w.requests} requests, ${w.socketErrors} socket errors`);
  assert.ok(tableFull > 0, 'new connections dropped as table_full');
});
