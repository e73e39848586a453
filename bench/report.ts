/**
 * Results: the summary (medians over repetitions, ratios against nftables) and the text/Markdown
 * tables (the SVG chart is chart.ts). Past ~500 lines because the three measurements (HTTP,
 * packets, bulk) each have their summary and their two renderings, which read the same rows and
 * must stay in step with one another.
 */
import type { BulkRun } from './bulk';
import { median, ratio, spread, type WrkResult } from './measure';
import { summarizeWorkloads, WORKLOADS, type WorkloadSummary } from './workloads';

export interface Machine {
  date: string;
  nproc: number;
  cpuModel: string;
  kernel: string;
  node: string;
  tools: Record<string, string>;
  git: string;
  loadavgAtStart: number[];
  otherNamespacesAtStart: number;
}

/** One wrk run of one scenario, as latest.json keeps it: wrk's own figures and where they come from. */
export interface HttpRun extends WrkResult {
  scenario: string;
  rep: number;
  conns: number;
  /** workloads.ts's id (absent in results written before workloads: the tuned keep-alive) */
  workload?: string;
  /** the scenario's counters over the run (lbd's: forwarded, drops, the native loop's times) */
  diag?: Record<string, number>;
}

export interface PacketRun {
  scenario: string;
  test: string;
  rep: number;
  rate: number;
  sent: number;
  attempted: number;
  sendErrors: number;
  elapsedNs: number;
  offeredPps: number;
  /** frames counted by the balancer's capture interface */
  balancerRx: number;
  /** frames counted by the real servers' interfaces, summed */
  forwarded: number;
  forwardedPps: number;
  loss: number;
  lossPct: number;
  genCpuNs: number;
  procCpuNs: number;
  ksoftirqdNs: number;
  totalNs: number;
  /** totalNs ÷ forwarded (÷ sent for the baseline) */
  nsPerPkt: number;
  settleMs: number;
  /** wall time from the before-snapshot to the after-snapshot (generator run + drain) */
  windowNs: number;
  /** machine-wide busy time (/proc/stat, tick-sampled) over the run, minus what we accounted: other load */
  otherBusyNs: number;
  /** machine-wide steal time over the run (/proc/stat) */
  stealNs: number;
  diag: Record<string, number>;
}

export interface PacketTest {
  id: string;
  mode: 'syn' | 'steady';
  rate: number;
}

export interface Results {
  version: 1;
  machine: Machine;
  options: Record<string, unknown>;
  scenarios: { name: string; what: string }[];
  unavailable: Record<string, string>;
  errors: { scenario: string; rep: number; phase: string; message: string }[];
  http: HttpRun[];
  packets: PacketRun[];
  /** bulk uploads (absent in results written before they existed) */
  bulk?: BulkRun[];
  tests: PacketTest[];
  durationS: number;
  complete: boolean;
  summary?: Summary;
}

export interface HttpSummary {
  rpsC32: number;
  rpsC32Spread: { min: number; max: number };
  rpsC1: number;
  p50C1us: number;
  p99C1us: number;
  p50C32us: number;
  p99C32us: number;
  errors: number;
  /** client TCP retransmissions, summed over all runs of the scenario */
  retrans: number;
  reps: number;
  rpsC32VsNft: number;
  rpsC32VsHaproxy: number;
  p99C1VsNft: number;
}

export interface PacketSummary {
  offeredPps: number;
  forwardedPps: number;
  forwardedPpsSpread: { min: number; max: number };
  lossPct: number;
  nsPerPkt: number;
  /** nsPerPkt − the baseline's nsPerPkt for the same test */
  addedNsPerPkt: number;
  addedSpread: { min: number; max: number };
  addedVsNft: number;
  forwardedVsNft: number;
  /** other machine load during the runs (tick-sampled), % of all CPUs */
  otherLoadPct: number;
  reps: number;
}

export interface BulkSummary {
  /** MB/s (10^6 B/s), median over the successful runs */
  mbps: number;
  mbpsSpread: { min: number; max: number };
  /** CPU ns per byte the sink counted: sender + sinks + balancer + ksoftirqd (schedstat/cpuUsage) */
  tasksNsPerByte: number;
  /** the same from /proc/stat (the whole machine, tick-sampled) */
  machineNsPerByte: number;
  /** the balancer process alone (lbd); NaN without one */
  balancerNsPerByte: number;
  /** tasksNsPerByte − direct's: what the balancer adds per byte */
  addedNsPerByte: number;
  mbpsVsNft: number;
  /** tasksNsPerByte ÷ nftables' */
  cpuVsNft: number;
  ok: number;
  reps: number;
  /** the failures' reasons and what the sink got, e.g. "stalled … (12.3 MB received)" */
  failures: string[];
  retrans: number;
  /** drop counters summed over the runs (lbd) */
  drops: Record<string, number>;
}

export interface Summary {
  /** workload → scenario → figures (workloads.ts) */
  workloads?: Record<string, Record<string, WorkloadSummary>>;
  http: Record<string, HttpSummary>;
  bulk?: Record<string, BulkSummary>;
  /** scenario → test id → figures */
  packets: Record<string, Record<string, PacketSummary>>;
  baselineNsPerPkt: Record<string, number>;
}

export function summarize(r: Results): Summary {
  const names = r.scenarios.map((s) => s.name);
  const http: Record<string, HttpSummary> = {};
  for (const n of names) {
    const tuned = r.http.filter((h) => h.scenario === n && (h.workload ?? 'tuned-ka') === 'tuned-ka');
    const c32 = tuned.filter((h) => h.conns > 1);
    const c1 = tuned.filter((h) => h.conns === 1);
    if (!c32.length && !c1.length) continue;
    http[n] = {
      rpsC32: median(c32.map((h) => h.rps)),
      rpsC32Spread: spread(c32.map((h) => h.rps)),
      rpsC1: median(c1.map((h) => h.rps)),
      p50C1us: median(c1.map((h) => h.p50us)),
      p99C1us: median(c1.map((h) => h.p99us)),
      p50C32us: median(c32.map((h) => h.p50us)),
      p99C32us: median(c32.map((h) => h.p99us)),
      errors: [...c32, ...c1].reduce((a, h) => a + h.socketErrors + h.non2xx, 0),
      retrans: [...c32, ...c1].reduce((a, h) => a + (Number.isFinite(h.clientRetrans) ? h.clientRetrans : 0), 0),
      reps: c32.length,
      rpsC32VsNft: NaN,
      rpsC32VsHaproxy: NaN,
      p99C1VsNft: NaN,
    };
  }
  for (const h of Object.values(http)) {
    h.rpsC32VsNft = ratio(h.rpsC32, http.nftables?.rpsC32);
    h.rpsC32VsHaproxy = ratio(h.rpsC32, http.haproxy?.rpsC32);
    h.p99C1VsNft = ratio(h.p99C1us, http.nftables?.p99C1us);
  }
  const baselineNsPerPkt: Record<string, number> = {};
  for (const t of r.tests) {
    baselineNsPerPkt[t.id] = median(r.packets.filter((p) => p.scenario === 'baseline' && p.test === t.id).map((p) => p.nsPerPkt));
  }
  const packets: Record<string, Record<string, PacketSummary>> = {};
  for (const n of names) {
    for (const t of r.tests) {
      const runs = r.packets.filter((p) => p.scenario === n && p.test === t.id);
      if (!runs.length) continue;
      const base = n === 'baseline' ? 0 : baselineNsPerPkt[t.id];
      const added = runs.map((p) => p.nsPerPkt - base);
      (packets[n] ??= {})[t.id] = {
        offeredPps: median(runs.map((p) => p.offeredPps)),
        forwardedPps: median(runs.map((p) => p.forwardedPps)),
        forwardedPpsSpread: spread(runs.map((p) => p.forwardedPps)),
        lossPct: median(runs.map((p) => p.lossPct)),
        nsPerPkt: median(runs.map((p) => p.nsPerPkt)),
        addedNsPerPkt: median(runs.map((p) => p.nsPerPkt)) - base,
        addedSpread: spread(added),
        addedVsNft: NaN,
        forwardedVsNft: NaN,
        otherLoadPct: median(runs.map((p) => (100 * p.otherBusyNs) / (p.windowNs * r.machine.nproc))),
        reps: runs.length,
      };
    }
  }
  for (const [n, tests] of Object.entries(packets)) {
    if (n === 'baseline') continue;
    for (const [id, s] of Object.entries(tests)) {
      const nft = packets.nftables?.[id];
      s.addedVsNft = ratio(s.addedNsPerPkt, nft?.addedNsPerPkt);
      s.forwardedVsNft = ratio(s.forwardedPps, nft?.forwardedPps);
    }
  }
  const bulk: Record<string, BulkSummary> = {};
  for (const n of names) {
    const runs = (r.bulk ?? []).filter((b) => b.scenario === n);
    if (!runs.length) continue;
    const good = runs.filter((b) => b.ok);
    const drops: Record<string, number> = {};
    for (const b of runs)
      for (const [k, v] of Object.entries(b.diag)) if (k.startsWith('lbd_dropped_') && v) drops[k.slice(12)] = (drops[k.slice(12)] ?? 0) + v;
    bulk[n] = {
      mbps: median(good.map((b) => b.mbps)),
      mbpsSpread: spread(good.map((b) => b.mbps)),
      tasksNsPerByte: median(good.map((b) => b.tasksNsPerByte)),
      machineNsPerByte: median(good.map((b) => b.machineNsPerByte)),
      balancerNsPerByte: median(good.map((b) => b.balancerNsPerByte)),
      addedNsPerByte: NaN,
      mbpsVsNft: NaN,
      cpuVsNft: NaN,
      ok: good.length,
      reps: runs.length,
      failures: runs
        .filter((b) => !b.ok)
        .map((b) => `${b.error ?? 'failed'} (${Number.isFinite(b.received) ? `${(b.received / 1e6).toFixed(1)} MB` : 'unknown'} received)`),
      retrans: runs.reduce((a, b) => a + (Number.isFinite(b.clientRetrans) ? b.clientRetrans : 0), 0),
      drops,
    };
  }
  for (const b of Object.values(bulk)) {
    b.addedNsPerByte = b.tasksNsPerByte - (bulk.direct?.tasksNsPerByte ?? NaN);
    b.mbpsVsNft = ratio(b.mbps, bulk.nftables?.mbps);
    b.cpuVsNft = ratio(b.tasksNsPerByte, bulk.nftables?.tasksNsPerByte);
  }
  return { workloads: summarizeWorkloads(r.http, names), http, packets, baselineNsPerPkt, bulk };
}

// ───────────────────────────── formatting ─────────────────────────────

const fmtInt = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const fmtK = (x: number): string => (Number.isFinite(x) ? `${(x / 1000).toFixed(1)}k` : '–');
const fmt1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '–');
const fmt2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');
const fmtUs = (x: number): string => (Number.isFinite(x) ? `${Math.round(x)}` : '–');
const fmtX = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');
const fmtPct = (x: number): string => (Number.isFinite(x) ? `${x < 0.05 && x > -0.05 ? '0' : x.toFixed(1)}%` : '–');

type Table = { head: string[]; rows: string[][]; align: ('l' | 'r')[] };

export function tables(r: Results): { title: string; table: Table; note?: string }[] {
  const s = r.summary ?? summarize(r);
  const out: { title: string; table: Table; note?: string }[] = [];
  const names = r.scenarios.map((x) => x.name).filter((n) => n !== 'baseline');

  // the workloads users run, first
  const wt: Table = {
    head: ['workload', 'scenario', 'req/s (min–max)', '× nft', '× haproxy', 'p99 ms', 'errors', 'rounds in order', 'last ÷ first'],
    rows: [],
    align: ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'l', 'r'],
  };
  for (const wl of WORKLOADS) {
    const byScenario = s.workloads?.[wl.id];
    if (!byScenario) continue;
    for (const n of names) {
      const w = byScenario[n];
      if (!w) continue;
      wt.rows.push([
        wl.id,
        n,
        `${fmtInt(w.rps)} (${fmtInt(w.rpsSpread.min)}–${fmtInt(w.rpsSpread.max)})`,
        fmtX(w.vsNft),
        fmtX(w.vsHaproxy),
        fmt1(w.p99us / 1000),
        String(w.errors),
        w.rounds.map((x) => fmtInt(x)).join(' → '),
        fmt2(w.trend),
      ]);
    }
  }
  if (wt.rows.length)
    out.push({
      title: 'HTTP workloads (32 connections, index.html; medians over rounds)',
      table: wt,
      note: WORKLOADS.map((w) => `${w.id}: ${w.label}`).join('; ') + '. errors = socket errors + non-2xx (ab: failed requests).',
    });

  const lt: Table = {
    head: ['workload', 'scenario', 'ring wait µs/frame', 'frames/wake-up', 'upcall µs', 'upcalls/request', 'process ns/frame', 'sendmmsg µs/frame'],
    rows: [],
    align: ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r'],
  };
  for (const wl of WORKLOADS) {
    for (const n of names) {
      const l = s.workloads?.[wl.id]?.[n]?.loop;
      if (!l) continue;
      lt.rows.push([wl.id, n, fmt1(l.ringWaitUs), fmt1(l.framesPerWakeup), fmt2(l.upcallUs), fmt2(l.upcallsPerRequest), fmtInt(l.processNs), fmt1(l.sendUs)]);
    }
  }
  if (lt.rows.length)
    out.push({
      title: "Where the native path's time goes (lbd_native_* counters over each run, medians)",
      table: lt,
      note: "ring wait = from the kernel's receive time to the wake-up that took the frame (lbd's scheduling latency); sendmmsg's time includes the kernel's delivery, which in the lab runs the real server's TCP inside lbd's call and wakes its Apache, which may take the CPU from lbd before the batch is out.",
    });

  // headline
  const head: Table = {
    head: [
      'scenario',
      'req/s tuned-ka c32',
      '× nft',
      '× haproxy',
      'p50/p99 c1 µs',
      'fwd pps steady max',
      'added ns/pkt steady max',
      '× nft',
      'added ns/pkt SYN max',
      '× nft',
    ],
    rows: [],
    align: ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  };
  for (const n of names) {
    if (r.unavailable[n]) {
      head.rows.push([n, 'unavailable', '', '', '', '', '', '', '', '']);
      continue;
    }
    const h = s.http[n];
    const st = s.packets[n]?.['steady-max'];
    const sy = s.packets[n]?.['syn-max'];
    head.rows.push([
      n,
      h ? fmtInt(h.rpsC32) : '–',
      h ? fmtX(h.rpsC32VsNft) : '–',
      h ? fmtX(h.rpsC32VsHaproxy) : '–',
      h ? `${fmtUs(h.p50C1us)} / ${fmtUs(h.p99C1us)}` : '–',
      st ? fmtK(st.forwardedPps) : '–',
      st ? fmt1(st.addedNsPerPkt) : '–',
      st ? fmtX(st.addedVsNft) : '–',
      sy ? fmt1(sy.addedNsPerPkt) : '–',
      sy ? fmtX(sy.addedVsNft) : '–',
    ]);
  }
  // a bulk-only run (--bulk-only) has neither HTTP nor packet figures: no empty tables then
  const any = Object.keys(s.http).length > 0 || Object.keys(s.packets).length > 0;
  if (any) out.push({ title: 'Summary (medians)', table: head });

  // HTTP detail
  const ht: Table = {
    head: [
      'scenario',
      'req/s c32 (min–max)',
      'req/s c1',
      'p50 c1 µs',
      'p99 c1 µs',
      'p99 c1 × nft',
      'p50 c32 µs',
      'p99 c32 µs',
      'errors',
      'client retrans',
      'reps',
    ],
    rows: [],
    align: ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  };
  for (const n of names) {
    const h = s.http[n];
    if (!h) continue;
    ht.rows.push([
      n,
      `${fmtInt(h.rpsC32)} (${fmtInt(h.rpsC32Spread.min)}–${fmtInt(h.rpsC32Spread.max)})`,
      fmtInt(h.rpsC1),
      fmtUs(h.p50C1us),
      fmtUs(h.p99C1us),
      fmtX(h.p99C1VsNft),
      fmtUs(h.p50C32us),
      fmtUs(h.p99C32us),
      String(h.errors),
      String(h.retrans),
      String(h.reps),
    ]);
  }
  if (ht.rows.length) out.push({ title: 'HTTP, tuned keep-alive (wrk -t1, index.html)', table: ht });

  // packets detail
  const pt: Table = {
    head: [
      'scenario',
      'test',
      'offered pps',
      'forwarded pps (min–max)',
      'fwd × nft',
      'loss',
      'CPU ns/pkt',
      'added ns/pkt (min–max)',
      'added × nft',
      'other load',
      'reps',
    ],
    rows: [],
    align: ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
  };
  for (const n of [...names, 'baseline']) {
    for (const t of r.tests) {
      const p = s.packets[n]?.[t.id];
      if (!p) continue;
      const base = n === 'baseline';
      pt.rows.push([
        n,
        t.id,
        fmtK(p.offeredPps),
        base ? '(dropped at the balancer)' : `${fmtK(p.forwardedPps)} (${fmtK(p.forwardedPpsSpread.min)}–${fmtK(p.forwardedPpsSpread.max)})`,
        base ? '' : fmtX(p.forwardedVsNft),
        base ? '' : fmtPct(p.lossPct),
        fmt1(p.nsPerPkt),
        base ? '(the baseline)' : `${fmt1(p.addedNsPerPkt)} (${fmt1(p.addedSpread.min)}–${fmt1(p.addedSpread.max)})`,
        base ? '' : fmtX(p.addedVsNft),
        fmtPct(p.otherLoadPct),
        String(p.reps),
      ]);
    }
  }
  if (pt.rows.length)
    out.push({
      title: 'Packets (54-byte TCP frames to the VIP; real servers drop them at ingress)',
      table: pt,
      note:
        'CPU ns/pkt = run time of generator + balancer tasks + ksoftirqd ÷ frames forwarded (÷ frames sent for the baseline); ' +
        "added = that minus the baseline (generator alone, frames dropped at the balancer's ingress) for the same test. " +
        'other load = machine-wide busy time not accounted to the measured tasks (/proc/stat, tick-sampled), % of all CPUs: ' +
        'a noise indicator (other processes on the machine), not part of any figure.',
    });

  // bulk upload
  const bulk = s.bulk ?? {};
  const bn = names.filter((n) => bulk[n]);
  if (bn.length) {
    const mb = (r.bulk ?? [])[0] ? Math.round(r.bulk![0].total / 1024 / 1024) : 0;
    const bt: Table = {
      head: [
        'scenario',
        'MB/s (min–max)',
        '× nft',
        'CPU ns/B',
        '× nft',
        'added ns/B',
        'lbd ns/B',
        'machine ns/B',
        'ok',
        'client retrans',
        'lbd drops',
        'failures',
      ],
      rows: [],
      align: ['l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'l', 'l'],
    };
    for (const n of bn) {
      const b = bulk[n];
      bt.rows.push([
        n,
        b.ok ? `${fmtInt(b.mbps)} (${fmtInt(b.mbpsSpread.min)}–${fmtInt(b.mbpsSpread.max)})` : 'failed',
        fmtX(b.mbpsVsNft),
        fmt2(b.tasksNsPerByte),
        fmtX(b.cpuVsNft),
        n === 'direct' ? '(reference)' : fmt2(b.addedNsPerByte),
        fmt2(b.balancerNsPerByte),
        fmt2(b.machineNsPerByte),
        `${b.ok}/${b.reps}`,
        String(b.retrans),
        Object.entries(b.drops)
          .map(([k, v]) => `${k} ${v}`)
          .join(', '),
        [...new Set(b.failures)].join('; '),
      ]);
    }
    out.push({
      title: `Bulk upload (${mb} MiB client → target → real server sink, one TCP connection, offloads at their defaults)`,
      table: bt,
      note:
        "MB/s = bytes the sink counted ÷ time from the sender's start to the sink's answer (10^6 B/s). " +
        'CPU ns/B = CPU of the sender (its own cpuUsage), the sinks, the balancer process (schedstat) and every ksoftirqd over the transfer ÷ bytes; ' +
        "on veth the receive side runs as softirq in the sender's context, so this is nearly all of it. × nft = ratio to nftables (MB/s: higher is better; CPU: lower is better). added = CPU ns/B minus direct's (no balancer; at these rates within the noise of nftables'). " +
        'lbd ns/B = lbd alone. machine ns/B = /proc/stat busy time of the whole machine (tick-sampled; includes other load). ' +
        'Medians over the successful runs; a failed run (timed out, or no progress for 10 s) counts in ok and failures only.',
    });
  }
  return out;
}

function pad(s: string, w: number, a: 'l' | 'r'): string {
  const n = [...s].length;
  return a === 'l' ? s + ' '.repeat(Math.max(0, w - n)) : ' '.repeat(Math.max(0, w - n)) + s;
}

export function textTable(t: Table): string {
  const w = t.head.map((h, i) => Math.max([...h].length, ...t.rows.map((r) => [...(r[i] ?? '')].length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => pad(c ?? '', w[i], t.align[i]))
      .join('  ')
      .trimEnd();
  return [line(t.head), w.map((x) => '-'.repeat(x)).join('  '), ...t.rows.map(line)].join('\n');
}

export function mdTable(t: Table): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [
    `| ${t.head.map(esc).join(' | ')} |`,
    `|${t.align.map((a) => (a === 'r' ? '---:' : ':---')).join('|')}|`,
    ...t.rows.map((r) => `| ${r.map((c) => esc(c ?? '')).join(' | ')} |`),
  ].join('\n');
}

export function machineLine(m: Machine): string {
  return `${m.nproc} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node}, ${Object.entries(m.tools)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}; git ${m.git}; ${m.date}`;
}

/** median machine load not accounted to the measured tasks during the packet runs, % of all CPUs */
export function otherLoad(r: Results): number {
  // max-rate runs only: with the generator sleeping between small batches (paced), tick sampling
  // misses much of the busy time and the figure is biased low (even negative)
  return median(r.packets.filter((p) => p.rate === 0).map((p) => (100 * p.otherBusyNs) / (p.windowNs * r.machine.nproc)));
}

function noiseNote(r: Results): string | null {
  const o = otherLoad(r);
  if (!(o > 15)) return null;
  return `Note: other processes used ~${Math.round(o)}% of the machine during the max-rate packet runs (median, tick-sampled): absolute figures are noisy, compare ratios within this run.`;
}

export function textReport(r: Results): string {
  const parts = [`lbd bench — ${machineLine(r.machine)}`, `${r.complete ? 'complete' : 'INCOMPLETE'} in ${Math.round(r.durationS)} s`];
  const nn = noiseNote(r);
  if (nn) parts.push(nn);
  for (const [n, why] of Object.entries(r.unavailable)) parts.push(`${n}: unavailable: ${why}`);
  for (const t of tables(r)) {
    parts.push('', `${t.title}`, textTable(t.table));
    if (t.note) parts.push(t.note);
  }
  if (r.errors.length) {
    parts.push('', 'Errors:');
    for (const e of r.errors) parts.push(`  ${e.scenario} rep ${e.rep} ${e.phase}: ${e.message.split('\n')[0]}`);
  }
  return parts.join('\n');
}

export function mdReport(r: Results): string {
  const parts = [
    '# lbd benchmark — latest run',
    '',
    `Machine: ${machineLine(r.machine)}.`,
    `Options: ${JSON.stringify(r.options)}. ${r.complete ? 'Complete' : '**Incomplete**'} in ${Math.round(r.durationS)} s. ` +
      `Load average at start ${r.machine.loadavgAtStart.map((x) => x.toFixed(2)).join(' ')}; ` +
      `${r.machine.otherNamespacesAtStart} network namespaces of other runs present at start.`,
    '',
    'Scenarios:',
    ...r.scenarios.map((s) => `- **${s.name}**: ${r.unavailable[s.name] ? `unavailable: ${r.unavailable[s.name]}` : s.what}`),
  ];
  const nn = noiseNote(r);
  if (nn) parts.push('', `**${nn}**`);
  for (const t of tables(r)) {
    parts.push('', `## ${t.title}`, '', mdTable(t.table));
    if (t.note) parts.push('', t.note);
  }
  if (r.errors.length) {
    parts.push('', '## Errors', '');
    for (const e of r.errors) parts.push(`- ${e.scenario} rep ${e.rep} ${e.phase}: ${e.message.split('\n')[0]}`);
  }
  parts.push('', '![chart](latest.svg)', '');
  return parts.join('\n');
}
