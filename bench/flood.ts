/**
 * SYN floods against a small connection table (16384, as when the fault was found), with wrk
 * through the same VIP: what the SYN-flood defense keeps working. For each flood — none, one
 * spoofed address cycling its 64000 ports, random spoofed sources; at 100k SYN/s and at the
 * generator's maximum — and each defense setting (auto, off), wrk runs twice: keep-alive (-c32,
 * connections made before the flood) and one connection per request (Connection: close, -c8),
 * which is what a full table refuses. The table's fill is sampled every 250 ms. In-kernel
 * nftables DSR (scenarios.ts) meets the same floods, side by side: it keeps no table.
 *
 * Run by `npm run bench -- --flood-only`; results in bench/results/flood-latest.json and the
 * README's reliability table. Bounded: each cell floods for WRK_S + 3 s.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, type Lab } from '../lab/lab';
import { parseWrk } from '../lab/wrk';
import { lbdConfig, startLbd } from '../test/helpers/lbd-process';
import { buildGenerator, genToVip, runInLab, sleep } from './measure';
import { nftables, scrubBalancer } from './scenarios';

const TABLE = 16384;
const WRK_S = 6;

export interface FloodCell {
  balancer: 'lbd' | 'nftables';
  flood: 'none' | 'cycle' | 'random';
  /** SYN/s asked of the generator; 0 = its maximum. */
  rate: number;
  /** lbd's connection_table.syn_flood_defense ('n/a' for nftables) */
  defense: 'auto' | 'off' | 'n/a';
  wrk: 'keepalive' | 'close';
  /** SYNs the generator sent per second, measured. */
  synPerS: number;
  rps: number;
  requests: number;
  socketErrors: number;
  non2xx: number;
  /** Table entries over time: [ms after the flood started, entries]. */
  fill: [number, number][];
  evictions: number;
  tableFullDrops: number;
}

async function cell(lab: Lab, flood: FloodCell['flood'], rate: number, defense: FloodCell['defense'], wrkMode: FloodCell['wrk']): Promise<FloodCell> {
  const nft = defense === 'n/a' ? nftables(lab) : null;
  if (nft) await nft.setup();
  const lbd = nft ? null : await startLbd(lab, lbdConfig(lab, { top: `connection_table:\n  size: ${TABLE}\n  syn_flood_defense: ${defense}\n` }));
  const fill: [number, number][] = [];
  let genOut = '';
  let gen: ReturnType<Lab['spawn']> | null = null;
  const t0 = Date.now();
  const sampler = setInterval(() => {
    try {
      if (lbd) fill.push([Date.now() - t0, lbd.metric('lbd_conn_table_entries')]);
    } catch {
      /* a scrape that failed: no sample */
    }
  }, 250);
  try {
    const seconds = WRK_S + 3;
    if (flood !== 'none') {
      gen = lab.spawn(
        lab.ns.client,
        [
          ...genToVip(lab),
          '--mode',
          'syn',
          ...(flood === 'cycle' ? ['--cycle', '64000'] : ['--random']),
          '--rate',
          String(rate),
          '--count',
          String(rate > 0 ? rate * seconds : 100_000_000),
          '--duration',
          String(seconds),
          '--batch',
          '64',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'], ref: true },
      );
      gen.stdout!.on('data', (d: Buffer) => (genOut += d.toString()));
    }
    const genDone = gen ? new Promise<void>((r) => gen!.once('close', () => r())) : Promise.resolve();
    // wrk's keep-alive connections are made before the flood fills the table: start it at once;
    // the per-request connections must get through a full table: start them once it is.
    if (wrkMode === 'close') await sleep(2000);
    const args = wrkMode === 'close' ? ['-t1', '-c8', '-H', 'Connection: close'] : ['-t2', '-c32'];
    // Asynchronous (the table is sampled meanwhile) and bounded: a wrk whose connections never
    // get through waits on connect forever; cut, it counts as no request done.
    const r = await runInLab(lab, lab.ns.client, ['wrk', ...args, `-d${WRK_S}s`, '--timeout', '2s', `http://${lab.addr.vip}/`], {
      timeoutMs: (WRK_S + 5) * 1000,
      name: 'wrk',
    });
    const out = `${r.stdout}${r.stderr}`;
    await genDone;
    const w = parseWrk(out);
    const g = /"sent":(\d+).*"elapsed_ns":(\d+)/.exec(genOut);
    return {
      balancer: nft ? 'nftables' : 'lbd',
      flood,
      rate,
      defense,
      wrk: wrkMode,
      synPerS: g ? Math.round(Number(g[1]) / (Number(g[2]) / 1e9)) : 0,
      rps: Number.isFinite(w.rps) ? w.rps : 0,
      requests: Number.isFinite(w.requests) ? w.requests : 0,
      socketErrors: w.socketErrors,
      non2xx: w.non2xx,
      fill,
      evictions: lbd ? lbd.metric('lbd_syn_flood_evictions_total') : 0,
      tableFullDrops: lbd ? lbd.metric('lbd_dropped_packets_total', { reason: 'table_full' }) : 0,
    };
  } finally {
    clearInterval(sampler);
    if (gen && gen.exitCode === null) lab.kill(gen);
    if (lbd) await lbd.stopClean();
    if (nft) {
      await nft.teardown();
      scrubBalancer(lab);
    }
  }
}

export async function runFloodBench(outDir: string, log: (s: string) => void): Promise<FloodCell[]> {
  buildGenerator();
  const lab = createLab({ shape: 'one-nic', udpEcho: false });
  const cells: FloodCell[] = [];
  try {
    const plan: [FloodCell['flood'], number][] = [
      ['none', 0],
      ['cycle', 100_000],
      ['random', 100_000],
      ['cycle', 0],
      ['random', 0],
    ];
    for (const [flood, rate] of plan) {
      for (const defense of ['auto', 'off', 'n/a'] as const) {
        if (flood === 'none' && defense === 'off') continue;
        for (const wrk of ['keepalive', 'close'] as const) {
          const c = await cell(lab, flood, rate, defense, wrk);
          cells.push(c);
          const peak = Math.max(0, ...c.fill.map(([, n]) => n));
          log(
            `${c.balancer} flood ${flood}${flood === 'none' ? '' : ` ${rate ? `${rate / 1000}k/s` : 'max'} (${Math.round(c.synPerS / 1000)}k SYN/s)`}, defense ${defense}, wrk ${wrk}: ` +
              `${c.rps.toFixed(0)} req/s, ${c.socketErrors} socket errors${c.balancer === 'lbd' ? `; table peak ${peak}/${TABLE}, evictions ${c.evictions}, table_full ${c.tableFullDrops}` : ''}`,
          );
        }
      }
    }
  } finally {
    lab.teardown();
  }
  fs.mkdirSync(outDir, { recursive: true });
  fs.writeFileSync(
    path.join(outDir, 'flood-latest.json'),
    JSON.stringify({ date: new Date().toISOString(), table: TABLE, wrkSeconds: WRK_S, cells }, null, 2) + '\n',
  );
  return cells;
}
