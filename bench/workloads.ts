/**
 * The HTTP workloads the benchmark leads with: what users' clients do to a stock Apache, not
 * only the long keep-alive that hides a balancer's new-flow path. Each runs against one
 * scenario's target (the VIP, or a real server's own address for direct) with 32 connections:
 *
 *   stock-ka   wrk, keep-alive as Apache ships it (port 8080: 100 requests a connection, 5 s
 *              idle): every hundredth request opens a new flow
 *   close      wrk with `Connection: close`: every request a new flow (SYN … FIN through the
 *              balancer), what non-keep-alive clients and health probes do
 *   ab-http10  ApacheBench, HTTP/1.0 without keep-alive: a new connection per request, as
 *              operators measure a web farm
 *   mixed      wrk on port 8080, every fourth request with `Connection: close`: long and short
 *              connections through the same balancer at once
 *   tuned-ka   wrk keep-alive against port 80, the lab's Apache tuned for it (connections never
 *              closed): the earlier headline, kept as one scenario among the others, labelled
 *
 * Results are HttpRun rows (report.ts) with their workload; summarizeWorkloads() gives medians
 * over rounds, ratios to nftables and HAProxy, and each scenario's rounds in order (a balancer
 * that slows down from round to round shows there).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Lab } from '../lab/lab';
import type { WrkSummary } from '../lab/wrk';
import { median, ratio, runLoad, runWrk, spread, type WrkResult } from './measure';
import type { HttpRun } from './report';

export interface Workload {
  id: string;
  /** one line for the report */
  label: string;
  /** the lab's stock Apache port (8080) or its tuned one (80) */
  stock: boolean;
  tool: 'wrk' | 'ab';
  /** wrk only: a request header */
  header?: string;
  /** wrk only: a Lua script (written to the lab's directory) */
  lua?: string;
}

// wrk's request() hook: a quarter of the requests ask the server to close afterwards.
const MIXED_LUA = `-- lbd bench: every fourth request closes its connection
local n = 0
request = function()
  n = n + 1
  if n % 4 == 0 then
    return wrk.format(nil, nil, { ["Connection"] = "close" })
  end
  return wrk.format()
end
`;

export const WORKLOADS: Workload[] = [
  { id: 'stock-ka', label: 'keep-alive, stock Apache (100 requests a connection)', stock: true, tool: 'wrk' },
  { id: 'close', label: 'short connections: `Connection: close`, a new flow per request', stock: true, tool: 'wrk', header: 'Connection: close' },
  { id: 'ab-http10', label: 'short connections: ab (HTTP/1.0, no keep-alive)', stock: true, tool: 'ab' },
  { id: 'mixed', label: 'mixed: stock keep-alive, every 4th request closes', stock: true, tool: 'wrk', lua: MIXED_LUA },
  { id: 'tuned-ka', label: 'keep-alive, Apache tuned for it (never closes): the earlier headline', stock: false, tool: 'wrk' },
];

export const WORKLOAD_IDS = WORKLOADS.map((w) => w.id);

/** http://host:port/ for a workload against a scenario's target host */
function workloadUrl(lab: Lab, w: Workload, host: string): string {
  return `http://${host}:${w.stock ? lab.ports.httpStock : lab.ports.http}/`;
}

/** ab's report, in wrk's terms (its percentiles are whole milliseconds) */
function parseAb(out: string): WrkSummary {
  const num = (re: RegExp): number => Number(re.exec(out)?.[1] ?? NaN);
  const pct = (p: number): number => num(new RegExp(`^\\s+${p}%\\s+(\\d+)`, 'm')) * 1000;
  return {
    rps: num(/^Requests per second:\s+([\d.]+)/m),
    requests: num(/^Complete requests:\s+(\d+)/m),
    p50us: pct(50),
    p90us: pct(90),
    p99us: pct(99),
    // Failed requests include "Length": a body whose length differs from the first one's, which
    // is every other real server's (their pages name them); only connect, receive and exceptions count.
    socketErrors: failures(out),
    non2xx: Number(/^Non-2xx responses:\s+(\d+)/m.exec(out)?.[1] ?? 0),
  };
}

function failures(out: string): number {
  const m = /^Failed requests:\s+(\d+)\s*\n\s*\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)/m.exec(out);
  if (m) return Number(m[2]) + Number(m[3]) + Number(m[4]);
  return Number(/^Failed requests:\s+(\d+)/m.exec(out)?.[1] ?? NaN);
}

/** One run of a workload from the lab's client; throws when the tool fails or says nothing. */
export async function runWorkload(lab: Lab, w: Workload, host: string, conns: number, seconds: number): Promise<WrkResult> {
  const url = workloadUrl(lab, w, host);
  if (w.tool === 'ab') {
    // -t before -n: -t alone caps the run at 50,000 requests. -r: a reset is counted, not fatal.
    const cmd: ['ab', ...string[]] = ['ab', '-q', '-r', '-s', '2', '-c', String(conns), '-t', String(seconds), '-n', String(seconds * 200_000), url];
    return runLoad(lab, cmd, `ab ${url} (${w.id})`, seconds, parseAb);
  }
  const extra: string[] = w.header ? ['-H', w.header] : [];
  if (w.lua) {
    const file = path.join(lab.dir, `wrk-${w.id}.lua`);
    if (!fs.existsSync(file)) fs.writeFileSync(file, w.lua, { mode: 0o644 });
    extra.push('-s', file);
  }
  return runWrk(lab, url, conns, seconds, extra);
}

/**
 * Where the native loop's time went over a run (lbd_native_* counters), medians over rounds:
 * the frames' wait in the ring before lbd ran (its scheduling latency), and its work.
 */
export interface LoopTimes {
  ringWaitUs: number;
  framesPerWakeup: number;
  /** one new flow's upcall into TypeScript */
  upcallUs: number;
  /** sendmmsg, per forwarded frame (with the kernel's delivery inside it) */
  sendUs: number;
  /** parse, lookup, track, rewrite and the loop itself, per forwarded frame */
  processNs: number;
  upcallsPerRequest: number;
}

function loopTimes(rs: HttpRun[]): LoopTimes | undefined {
  const per = rs.map((h) => h.diag ?? {}).filter((d) => (d.lbd_native_wakeups ?? 0) > 0 && (d.lbd_forwarded ?? 0) > 0);
  if (!per.length) return undefined;
  const m = (f: (d: Record<string, number>) => number): number => median(per.map(f));
  return {
    ringWaitUs: m((d) => (d.lbd_native_ring_wait_seconds / d.lbd_native_ring_wait_frames) * 1e6),
    framesPerWakeup: m((d) => d.lbd_forwarded / d.lbd_native_wakeups),
    upcallUs: m((d) => (d.lbd_native_upcall_seconds / d.lbd_native_upcalls) * 1e6),
    sendUs: m((d) => (d.lbd_native_send_seconds / d.lbd_forwarded) * 1e6),
    processNs: m((d) => ((d.lbd_native_busy_seconds - d.lbd_native_upcall_seconds - d.lbd_native_send_seconds) / d.lbd_forwarded) * 1e9),
    upcallsPerRequest: median(rs.filter((h) => h.diag?.lbd_native_upcalls !== undefined).map((h) => h.diag!.lbd_native_upcalls / h.requests)),
  };
}

export interface WorkloadSummary {
  rps: number;
  rpsSpread: { min: number; max: number };
  vsNft: number;
  vsHaproxy: number;
  p99us: number;
  errors: number;
  /** req/s of each round, in order */
  rounds: number[];
  /** the last round's req/s ÷ the first's: below ~0.85 the balancer slowed down (the spread is ±10–15%) */
  trend: number;
  /** the native path's loop (lbd-native scenarios) */
  loop?: LoopTimes;
}

/** workload → scenario → figures (32-connection runs) */
export function summarizeWorkloads(runs: HttpRun[], scenarios: string[]): Record<string, Record<string, WorkloadSummary>> {
  const out: Record<string, Record<string, WorkloadSummary>> = {};
  for (const w of WORKLOAD_IDS) {
    for (const n of scenarios) {
      const rs = runs.filter((h) => h.scenario === n && h.conns > 1 && (h.workload ?? 'tuned-ka') === w).sort((a, b) => a.rep - b.rep);
      if (!rs.length) continue;
      const rps = rs.map((h) => h.rps);
      (out[w] ??= {})[n] = {
        rps: median(rps),
        rpsSpread: spread(rps),
        vsNft: NaN,
        vsHaproxy: NaN,
        p99us: median(rs.map((h) => h.p99us)),
        errors: rs.reduce((a, h) => a + h.socketErrors + h.non2xx, 0),
        rounds: rps,
        trend: rps.length > 1 ? rps[rps.length - 1] / rps[0] : NaN,
        loop: loopTimes(rs),
      };
    }
    const byScenario = out[w];
    if (!byScenario) continue;
    for (const s of Object.values(byScenario)) {
      s.vsNft = ratio(s.rps, byScenario.nftables?.rps);
      s.vsHaproxy = ratio(s.rps, byScenario.haproxy?.rps);
    }
  }
  return out;
}
