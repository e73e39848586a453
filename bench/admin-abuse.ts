/**
 * What admin-socket abuse costs forwarding: request latency through the VIP (wrk -c1, p99) with
 * and without clients that pipeline 20,000 `list` requests and never read the answers. Runs
 * interleaved rounds so that drift in the lab hits both alike, and prints the p99 each round and
 * the difference of the medians. A measurement, not a test: run it as root on a quiet host:
 *
 *   node dist/bench/admin-abuse.js [--seconds 10] [--rounds 3]
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import { createLab } from '../lab/lab';
import { adminRequest } from '../src/control/admin/client';
import type { ListResult } from '../src/control/admin/protocol';
import { lbdConfig, startLbd } from '../test/helpers/lbd-process';
import { runWrk, type WrkResult } from './measure';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const SECONDS = arg('--seconds', 10);
const ROUNDS = arg('--rounds', 3);
/** The abuse of the report: 20,000 pipelined requests, never read. */
const PIPELINED = 20000;

/**
 * Abusive admin clients until stopped: every 500 ms one more connects, writes PIPELINED `list`
 * requests at once and never reads; each is dropped after 2 s (so a few are at it at any time,
 * and the daemon sees fresh backlogs throughout the run).
 */
function abuse(socket: string): { stop(): { connections: number } } {
  const socks = new Set<net.Socket>();
  const burst = '{"cmd":"list"}\n'.repeat(PIPELINED);
  let connections = 0;
  const open = () => {
    const s = net.createConnection(socket);
    connections++;
    socks.add(s);
    s.on('error', () => {});
    s.on('close', () => socks.delete(s));
    s.once('connect', () => {
      s.pause(); // never reads its answers
      s.write(burst);
    });
    setTimeout(() => s.destroy(), 2000).unref();
  };
  open();
  const timer = setInterval(open, 500);
  return {
    stop() {
      clearInterval(timer);
      for (const s of socks) s.destroy();
      return { connections };
    },
  };
}

function rssMiB(pid: number | undefined): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : NaN;
  } catch {
    return NaN;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run it as root: it builds network namespaces');
  const lab = createLab({ shape: 'one-nic' });
  try {
    const lbd = await startLbd(lab, lbdConfig(lab, { scheduler: 'rr' }));
    try {
      const list = await adminRequest<ListResult>(lbd.socket, 'list');
      const url = `http://${lab.addr.vip}/`;
      console.log(`lbd ${list.version}, dataplane ${list.dataplane}; wrk -t1 -c1 -d${SECONDS}s ${url}, ${ROUNDS} rounds`);
      await runWrk(lab, url, 1, 2); // warm-up: ARP, caches, JIT
      const base: WrkResult[] = [];
      const abused: WrkResult[] = [];
      let maxRss = rssMiB(lbd.proc.pid);
      const rss0 = maxRss;
      for (let r = 0; r < ROUNDS; r++) {
        const b = await runWrk(lab, url, 1, SECONDS);
        base.push(b);
        const a = abuse(lbd.socket);
        const sampler = setInterval(() => (maxRss = Math.max(maxRss, rssMiB(lbd.proc.pid))), 200);
        let w: WrkResult;
        try {
          w = await runWrk(lab, url, 1, SECONDS);
        } finally {
          clearInterval(sampler);
        }
        const { connections } = a.stop();
        abused.push(w);
        console.log(
          `round ${r + 1}: p99 ${b.p99us.toFixed(0)} us quiet, ${w.p99us.toFixed(0)} us under abuse (${connections} clients × ${PIPELINED} requests); ` +
            `p50 ${b.p50us.toFixed(0)} / ${w.p50us.toFixed(0)} us; ${b.rps.toFixed(0)} / ${w.rps.toFixed(0)} req/s; errors ${b.socketErrors} / ${w.socketErrors}`,
        );
        await new Promise((res) => setTimeout(res, 500));
      }
      const alive = lbd.proc.exitCode === null;
      const pong = alive
        ? await adminRequest(lbd.socket, 'ping').then(
            () => true,
            () => false,
          )
        : false;
      const d = median(abused.map((x) => x.p99us)) - median(base.map((x) => x.p99us));
      console.log(`p99 quiet (median of rounds): ${median(base.map((x) => x.p99us)).toFixed(0)} us`);
      console.log(`p99 under abuse (median of rounds): ${median(abused.map((x) => x.p99us)).toFixed(0)} us`);
      console.log(`p99 added by the abuse: ${d.toFixed(0)} us (${d <= 1000 ? 'within' : 'OVER'} the 1 ms budget)`);
      console.log(`lbd RSS: ${rss0} MiB before, at most ${maxRss} MiB under abuse; still running: ${alive}, answers ping: ${pong}`);
    } finally {
      await lbd.stop();
    }
  } finally {
    lab.teardown();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
