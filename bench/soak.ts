/**
 * lbd's soak run: `npm run soak -- --minutes N` (root). See README.md ("Soak run").
 *
 * One lab (one-NIC shape, three Apache real servers, the UDP echo), one lbd (native data plane,
 * an http health check every second, a TCP and a UDP service, connection_table.size 65536,
 * metrics on), and for N minutes mixed traffic, every part bounded in count and time:
 *
 * - wrk through the VIP without a break, in back-to-back segments (--wrk-seconds, default 20 s):
 *   one wrk with keep-alive (-c8) and one with `Connection: close` (-c8: a new flow per request);
 * - held downloads of the lab's /big.bin (3 at a time, each held 20–60 s, then read to the end);
 * - a UDP stream of 500 datagrams/s to the echo service (60 s runs, back to back);
 * - `lbd reload` every minute, after rewriting the config (the first real server's weight
 *   alternates 1 ↔ 2);
 * - the last real server's Apache stopped and, 30 s later, started again every 150 s (health
 *   checks take it down and up);
 * - a SYN flood every 10 minutes, 20 s at 20k frames/s (bench/gen), alternately `--cycle` and
 *   `--random` when the generator has those options, plain syn mode otherwise.
 *
 * Every 10 s a sample: lbd's RSS (/proc/PID/status) and its metrics (RSS, connection table,
 * event-loop lag, counters, health). At the end (or on SIGINT) bench/results/soak-<date>/ gets
 * samples.json, summary.json and plot.svg, copied to bench/results/soak-latest.{json,svg}.
 * Exit 0 when the targets hold (RSS at the end ≤ 1.05 × RSS after warm-up, the counters add up
 * at every sample, no wrk error outside the flaps' and floods' windows, lbd alive), else 1.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, type Command, type Lab } from '../lab/lab';
import { heldDownload, lbdConfig, LBD_BIN, startLbd, udpEchoService, type HeldDownload, type LbdProcess } from '../test/helpers/lbd-process';
import { svgDocument, svgText, type TextStyle } from './chart';
import { buildGenerator, GEN_BIN, GEN_SRC, genToVip, runInLab, sleep } from './measure';

// ───────────────────────────── options ─────────────────────────────

interface Options {
  minutes: number;
  wrkSeconds: number;
  conns: number;
  downloads: number;
  udpRate: number;
  reloadEveryS: number;
  flapEveryS: number;
  flapDownS: number;
  floodEveryS: number;
  floodSeconds: number;
  floodRate: number;
  sampleEveryS: number;
  tableSize: number;
  outDir: string;
}

function usage(): never {
  process.stderr.write(`usage: npm run soak -- [--minutes N] [--wrk-seconds S] [--conns C] [--flood-rate PPS] [--out DIR]
  --minutes N        run time (default 60; at most 720)
  --wrk-seconds S    length of one wrk segment (default 20; errors are attributed per segment)
  --conns C          wrk connections in all, half keep-alive, half Connection: close (default 16)
  --flood-rate PPS   the SYN flood's rate (default 20000, at most 100000)
  --flood-every S    seconds between SYN floods (default 600); --flood-seconds S (20)
  --flap-every S     seconds between flaps (default 150); --flap-down S (30); --reload-every S (60)
  --table N          connection_table.size (default 65536)
  --out DIR          results directory (default bench/results)
`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    minutes: 60,
    wrkSeconds: 20,
    conns: 16,
    downloads: 3,
    udpRate: 500,
    reloadEveryS: 60,
    flapEveryS: 150,
    flapDownS: 30,
    floodEveryS: 600,
    floodSeconds: 20,
    floodRate: 20000,
    sampleEveryS: 10,
    tableSize: 65536,
    outDir: path.resolve(__dirname, '../../bench/results'),
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (min: number, max: number): number => {
      const n = Number(argv[++i]);
      if (!Number.isFinite(n) || n < min || n > max) usage();
      return n;
    };
    switch (a) {
      case '--minutes':
        o.minutes = num(0.5, 720);
        break;
      case '--wrk-seconds':
        o.wrkSeconds = Math.floor(num(5, 120));
        break;
      case '--conns':
        o.conns = Math.floor(num(2, 256));
        break;
      case '--flood-rate':
        o.floodRate = Math.floor(num(1000, 100000));
        break;
      case '--flood-every':
        o.floodEveryS = num(30, 7200);
        break;
      case '--flood-seconds':
        o.floodSeconds = num(1, 60);
        break;
      case '--flap-down':
        o.flapDownS = num(5, 600);
        break;
      case '--flap-every':
        o.flapEveryS = num(40, 7200);
        break;
      case '--reload-every':
        o.reloadEveryS = num(5, 7200);
        break;
      case '--table':
        o.tableSize = Math.floor(num(1024, 16777216));
        break;
      case '--out': {
        const v = argv[++i];
        if (!v) usage();
        o.outDir = path.resolve(v);
        break;
      }
      default:
        usage();
    }
  }
  return o;
}

const log = (msg: string): void => {
  process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

// ───────────────────────────── records ─────────────────────────────

interface Sample {
  /** s since the start of the traffic */
  t: number;
  at: string;
  rssMB: number;
  metricsRssMB: number;
  heapUsedMB: number;
  tableEntries: number;
  tableCapacity: number;
  byState: Record<string, number>;
  lagMeanMs: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** samples of lbd_event_loop_delay_seconds over 100 ms since the last sample */
  delaysOver100ms: number;
  received: number;
  forwarded: number;
  arp: number;
  drops: Record<string, number>;
  icmpRateLimited: number;
  softwareSegments: number;
  ringDrops: number;
  /** received − (forwarded + drops + arp + icmp rate-limited) */
  counterGap: number;
  healthTransitions: number;
  up: Record<string, number>;
}

interface WrkSegment {
  kind: 'keepalive' | 'close';
  start: number;
  end: number;
  requests: number;
  rps: number;
  p50us: number;
  p99us: number;
  maxUs: number;
  errors: { connect: number; read: number; write: number; timeout: number };
  non2xx: number;
  failed?: string;
  explainedBy?: string | null;
}

interface Event {
  kind: 'flap' | 'flood' | 'reload';
  start: number;
  end: number;
  detail: Record<string, unknown>;
}

interface Download {
  start: number;
  end: number;
  result: string;
  ok: boolean;
  explainedBy?: string | null;
}

interface UdpRun {
  start: number;
  end: number;
  sent: number;
  answered: number;
  lost: number;
  failed?: string;
  explainedBy?: string | null;
}

// ───────────────────────────── metrics ─────────────────────────────

/** Prometheus text → 'name{labels}' → value (labels as printed). */
function parseProm(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}

function sumOf(m: Map<string, number>, name: string, filter?: (labels: string) => boolean): number {
  let s = 0;
  for (const [k, v] of m) {
    const b = k.indexOf('{');
    const n = b < 0 ? k : k.slice(0, b);
    if (n !== name) continue;
    if (filter && !filter(b < 0 ? '' : k.slice(b))) continue;
    s += v;
  }
  return s;
}

function byLabel(m: Map<string, number>, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const re = new RegExp(`${label}="([^"]*)"`);
  for (const [k, v] of m) {
    if (!k.startsWith(`${name}{`)) continue;
    const l = re.exec(k)?.[1];
    if (l !== undefined) out[l] = (out[l] ?? 0) + v;
  }
  return out;
}

function vmRssMB(pid: number): number {
  try {
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

// ───────────────────────────── the run ─────────────────────────────

const UDP_ECHO = path.resolve(__dirname, '../lab/udp-echo.js');
const HEALTH = 'health_check: { type: http, path: /, interval: 1s, timeout: 1s, rise: 2, fall: 2 }';
/** frames of slack in the counter check: a scrape reads the counters one after the other */
const COUNTER_SLACK = 64;
/** how long after a flood its SYN_RECV entries (60 s) keep the table full, plus the sweep */
const FLOOD_AFTERMATH_S = 75;

function config(lab: Lab, o: Options, weight0: number): string {
  return lbdConfig(lab, {
    top: `dataplane: native\nconnection_table:\n  size: ${o.tableSize}\n`,
    scheduler: 'wlc',
    weights: lab.addr.rs.map((_, i) => (i === 0 ? weight0 : 1)),
    serviceLines: [HEALTH],
    extraServices: udpEchoService(lab),
  });
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (process.getuid?.() !== 0) {
    log('needs root (network namespaces, AF_PACKET)');
    return 2;
  }
  const runS = o.minutes * 60;
  const warmupS = o.minutes < 20 ? runS / 6 : 600;
  // whatever happens, the process ends (the lab's exit handler tears it down)
  const hardLimitS = runS + 300;
  setTimeout(() => {
    log(`hard time limit (${hardLimitS} s) reached: aborting`);
    process.exit(3);
  }, hardLimitS * 1000).unref();

  // the flood options of the generator (--cycle N: one source cycling N ports; --random: random
  // sources), used alternately when its source has them; plain syn mode otherwise
  const floodModes: string[][] = [];
  try {
    buildGenerator();
    const genSrc = fs.readFileSync(GEN_SRC, 'utf8');
    if (/--cycle\b/.test(genSrc)) floodModes.push(['--cycle', '1024']);
    if (/--random\b/.test(genSrc)) floodModes.push(['--random']);
  } catch (e) {
    // a generator source in the middle of a change: the binary built before it, plain syn mode
    if (!fs.existsSync(GEN_BIN)) throw e;
    log(`building the generator failed, using the binary there is (plain syn mode): ${(e as Error).message.split('\n')[0]}`);
  }
  if (floodModes.length === 0) floodModes.push([]);

  let stopping = false;
  let interrupted = false;
  const onSig = (sig: string): void => {
    if (stopping) {
      log(`${sig} again: exiting now`);
      process.exit(130);
    }
    log(`${sig}: stopping (the lab is torn down by its own handler), writing what was collected`);
    stopping = true;
    interrupted = true;
  };
  process.on('SIGINT', () => onSig('SIGINT'));
  process.on('SIGTERM', () => onSig('SIGTERM'));

  log(`building the lab (3 real servers); ${o.minutes} min, warm-up ${Math.round(warmupS)} s, flood modes ${JSON.stringify(floodModes)}`);
  const lab = createLab({ shape: 'one-nic', rsOctets: [40, 111, 112] });
  const flapIdx = lab.addr.rs.length - 1;
  const flapReal = `${lab.addr.rs[flapIdx]}:80`;
  const samples: Sample[] = [];
  const segments: WrkSegment[] = [];
  const events: Event[] = [];
  const downloads: Download[] = [];
  const udpRuns: UdpRun[] = [];
  const problems: string[] = [];
  let lbd: LbdProcess | null = null;
  let lbdAliveAtEnd = false;
  let t0 = Date.now();
  const now = (): number => (Date.now() - t0) / 1000;
  const alive = (): boolean => lab.alive && !stopping;
  let dataplanePath = '?';

  try {
    let weight0 = 1;
    lbd = await startLbd(lab, config(lab, o, weight0), { timeoutMs: 30000 });
    const lbdPid = lbd.proc.pid!;
    const m0 = parseProm(lbd.metrics());
    dataplanePath = Object.keys(byLabel(m0, 'lbd_dataplane_info', 'path'))[0] ?? '?';
    if (dataplanePath !== 'native') throw new Error(`lbd runs the ${dataplanePath} path, not native`);
    log(`lab ${lab.prefix} up; lbd PID ${lbdPid} (native); flapping ${flapReal}`);
    // let the health checks see every server up before the traffic starts
    await sleep(3000);
    t0 = Date.now();
    const endS = runS;
    const left = (): number => endS - now();

    // ── wrk, back to back ──
    const wrkLoop = async (kind: WrkSegment['kind'], conns: number): Promise<void> => {
      while (alive() && left() > 3) {
        const secs = Math.max(2, Math.min(o.wrkSeconds, Math.floor(left())));
        const start = now();
        const args: Command = ['wrk', '-t1', `-c${conns}`, `-d${secs}s`, '--timeout', '2s', '--latency'];
        if (kind === 'close') args.push('-H', 'Connection: close');
        args.push(`http://${lab.addr.vip}/`);
        try {
          const r = await runInLab(lab, lab.ns.client, args, { timeoutMs: (secs + 15) * 1000, name: `wrk-${kind}` });
          const out = r.stdout;
          const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
          const pct = (p: string): number => {
            const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
            return m ? Number(m[1]) * (m[2] === 'us' ? 1 : m[2] === 'ms' ? 1e3 : 1e6) : NaN;
          };
          const max = /^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)/m.exec(out);
          segments.push({
            kind,
            start,
            end: now(),
            requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN),
            rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
            p50us: pct('50'),
            p99us: pct('99'),
            maxUs: max ? Number(max[1]) * (max[2] === 'us' ? 1 : max[2] === 'ms' ? 1e3 : 1e6) : NaN,
            errors: {
              connect: Number(se?.[1] ?? 0),
              read: Number(se?.[2] ?? 0),
              write: Number(se?.[3] ?? 0),
              timeout: Number(se?.[4] ?? 0),
            },
            non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
            failed: r.timedOut || r.code !== 0 ? `${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${r.stderr.slice(0, 300)}` : undefined,
          });
        } catch (e) {
          if (!alive()) return;
          segments.push({
            kind,
            start,
            end: now(),
            requests: 0,
            rps: 0,
            p50us: NaN,
            p99us: NaN,
            maxUs: NaN,
            errors: { connect: 0, read: 0, write: 0, timeout: 0 },
            non2xx: 0,
            failed: (e as Error).message,
          });
          await sleep(1000);
        }
      }
    };

    // ── held downloads ──
    const dlLoop = async (slot: number): Promise<void> => {
      await sleep(slot * 2000);
      let n = 0;
      while (alive() && left() > 40 && n++ < 1000) {
        const start = now();
        const holdS = 20 + Math.random() * 40;
        let d: HeldDownload;
        try {
          d = heldDownload(lab, lab.addr.vip, '/big.bin', 80, { maxMs: 120000 });
        } catch (e) {
          if (!alive()) return;
          downloads.push({ start, end: now(), result: `spawn: ${(e as Error).message}`, ok: false });
          await sleep(2000);
          continue;
        }
        const holdUntil = Date.now() + Math.min(holdS, Math.max(1, left() - 30)) * 1000;
        while (d.running() && alive() && Date.now() < holdUntil) await sleep(500);
        d.release();
        const result = await Promise.race([d.done, sleep(90000).then(() => 'error: no end 90 s after go')]);
        if (d.running()) {
          try {
            lab.kill(d.proc, { graceMs: 500 });
          } catch {
            /* gone */
          }
        }
        if (!lab.alive) return;
        downloads.push({ start, end: now(), result, ok: /^done 200 \d+/.test(result) });
      }
    };

    // ── the UDP stream ──
    const udpLoop = async (): Promise<void> => {
      while (alive() && left() > 5) {
        const secs = Math.min(60, Math.floor(left() - 2));
        const start = now();
        try {
          const r = await runInLab(
            lab,
            lab.ns.client,
            ['node', UDP_ECHO, 'stream', '--host', lab.addr.vip, '--port', String(lab.ports.udp), '--rate', String(o.udpRate), '--seconds', String(secs)],
            { timeoutMs: (secs + 20) * 1000, name: 'udp-stream' },
          );
          const line = r.stdout.trim().split('\n').pop() ?? '';
          const j = line.startsWith('{') ? (JSON.parse(line) as { sentAt: number[]; answeredAt: (number | null)[] }) : null;
          if (!j) throw new Error(`no result (${r.timedOut ? 'timed out' : `exit ${r.code}`}): ${r.stderr.slice(0, 200)}`);
          const answered = j.answeredAt.filter((a) => a !== null).length;
          udpRuns.push({ start, end: now(), sent: j.sentAt.length, answered, lost: j.sentAt.length - answered });
        } catch (e) {
          if (!alive()) return;
          udpRuns.push({ start, end: now(), sent: 0, answered: 0, lost: 0, failed: (e as Error).message });
          await sleep(1000);
        }
      }
    };

    // ── the SYN flood ──
    let floods = 0;
    const flood = async (): Promise<void> => {
      const mode = floodModes[floods % floodModes.length];
      const k = ++floods;
      const start = now();
      const ev: Event = { kind: 'flood', start, end: start + o.floodSeconds, detail: { mode: mode.join(' ') || 'syn', rate: o.floodRate } };
      events.push(ev);
      log(`flood ${k}: ${o.floodSeconds} s at ${o.floodRate}/s ${mode.join(' ') || '(plain syn)'}`);
      const res: { out: Record<string, number> | null } = { out: null };
      const r = await runInLab(
        lab,
        lab.ns.client,
        [
          ...genToVip(lab),
          '--mode',
          'syn',
          '--flows',
          '1024',
          '--flow-offset',
          String(k * (1 << 24)),
          '--rate',
          String(o.floodRate),
          '--count',
          String(o.floodRate * o.floodSeconds),
          '--duration',
          String(o.floodSeconds),
          '--batch',
          '16',
          ...mode,
          '--wait-go',
        ],
        {
          timeoutMs: (o.floodSeconds + 20) * 1000,
          name: 'gen',
          onLine: (line, proc) => {
            if (line === 'ready') proc.stdin!.write('go\n');
            else if (line.startsWith('{')) res.out = JSON.parse(line) as Record<string, number>;
          },
        },
      );
      ev.end = now();
      const out = res.out;
      ev.detail.sent = out ? out.sent : null;
      ev.detail.sendErrors = out ? out.send_errors : null;
      if (!out) ev.detail.error = `${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${r.stderr.slice(0, 300)}`;
      log(`flood ${k} done: ${out ? `${out.sent} frames` : `failed (${String(ev.detail.error)})`}`);
    };

    // ── a sample ──
    let lastDelayOver = 0;
    const sample = (): void => {
      const text = lbd!.metrics();
      const m = parseProm(text);
      const drops = byLabel(m, 'lbd_dropped_packets_total', 'reason');
      const received = sumOf(m, 'lbd_received_packets_total');
      const forwarded = sumOf(m, 'lbd_forwarded_packets_total');
      const arp = sumOf(m, 'lbd_arp_packets_total');
      const icmpRateLimited = sumOf(m, 'lbd_icmp_errors_total', (l) => l.includes('result="rate_limited"'));
      const dropSum = Object.values(drops).reduce((a, b) => a + b, 0);
      const delayCount = sumOf(m, 'lbd_event_loop_delay_seconds_count');
      const delayLe100 = sumOf(m, 'lbd_event_loop_delay_seconds_bucket', (l) => l.includes('le="0.1"'));
      const over = delayCount - delayLe100;
      const s: Sample = {
        t: Math.round(now() * 10) / 10,
        at: new Date().toISOString(),
        rssMB: vmRssMB(lbdPid),
        metricsRssMB: sumOf(m, 'process_resident_memory_bytes') / 1048576,
        heapUsedMB: sumOf(m, 'nodejs_heap_size_used_bytes') / 1048576,
        tableEntries: sumOf(m, 'lbd_conn_table_entries'),
        tableCapacity: sumOf(m, 'lbd_conn_table_capacity'),
        byState: byLabel(m, 'lbd_connections_by_state', 'state'),
        lagMeanMs: sumOf(m, 'nodejs_eventloop_lag_mean_seconds') * 1000,
        lagP99Ms: sumOf(m, 'nodejs_eventloop_lag_p99_seconds') * 1000,
        lagMaxMs: sumOf(m, 'nodejs_eventloop_lag_max_seconds') * 1000,
        delaysOver100ms: over - lastDelayOver,
        received,
        forwarded,
        arp,
        drops: Object.fromEntries(Object.entries(drops).filter(([, v]) => v !== 0)),
        icmpRateLimited,
        softwareSegments: sumOf(m, 'lbd_software_segments_total'),
        ringDrops: sumOf(m, 'lbd_native_capture_dropped_packets_total'),
        counterGap: received - (forwarded + dropSum + arp + icmpRateLimited),
        healthTransitions: sumOf(m, 'lbd_health_transitions_total'),
        up: byLabel(m, 'lbd_real_server_up', 'real'),
      };
      lastDelayOver = over;
      samples.push(s);
      log(
        `t=${Math.round(s.t)} s RSS ${s.rssMB.toFixed(1)} MB (metrics ${s.metricsRssMB.toFixed(1)}), table ${s.tableEntries}, lag p99 ${s.lagP99Ms.toFixed(1)} ms, ` +
          `rx ${s.received} fwd ${s.forwarded} arp ${s.arp} drops ${JSON.stringify(s.drops)} gap ${s.counterGap}`,
      );
    };

    // ── the schedule ──
    const reloadAt = (i: number): number => Math.min(30, o.reloadEveryS / 2) + i * o.reloadEveryS;
    const flapAt = (i: number): number => Math.min(60, runS / 4) + i * o.flapEveryS;
    // the first flood in the middle of the warm-up (5 min of 10): the table's pages it touches are
    // in the RSS the end is compared with
    const floodAt = (i: number): number => warmupS / 2 + i * o.floodEveryS;
    let nextSample = 0;
    let nReload = 0;
    let nFlap = 0;
    let nFlood = 0;
    let flap: Event | null = null;
    const floodRuns: Promise<void>[] = [];

    log(`traffic for ${o.minutes} min: wrk ${o.conns / 2}+${o.conns / 2} (keep-alive, close), ${o.downloads} held downloads, UDP ${o.udpRate}/s`);
    const loops = [
      wrkLoop('keepalive', Math.ceil(o.conns / 2)),
      wrkLoop('close', Math.floor(o.conns / 2)),
      udpLoop(),
      ...Array.from({ length: o.downloads }, (_, i) => dlLoop(i)),
    ];
    while (alive() && left() > 0) {
      const t = now();
      try {
        if (t >= nextSample) {
          nextSample += o.sampleEveryS;
          if (lbd.proc.exitCode !== null || lbd.proc.signalCode !== null) throw new Error(`lbd exited (${lbd.proc.exitCode ?? lbd.proc.signalCode})`);
          sample();
        }
        if (t >= reloadAt(nReload)) {
          nReload++;
          weight0 = weight0 === 1 ? 2 : 1;
          lbd.rewrite(config(lab, o, weight0));
          const r = lab.tryExec(lab.ns.balancer, ['node', LBD_BIN, 'reload', '--socket', lbd.socket], { timeoutMs: 60000 });
          const ok = r.status === 0;
          events.push({ kind: 'reload', start: t, end: now(), detail: { weight0, ok, out: (r.stdout + r.stderr).trim().slice(0, 200) } });
          if (!ok) problems.push(`reload at ${Math.round(t)} s failed: ${r.stderr.trim().slice(0, 200)}`);
        }
        // a flap waits until a flood's window is over (and does not start right before one), so
        // that the errors of each are told apart
        const floodNear = events.some((e) => e.kind === 'flood' && t < e.end + FLOOD_AFTERMATH_S) || floodAt(nFlood) - t < o.flapDownS + 15;
        if (flap === null && t >= flapAt(nFlap) && !floodNear && left() > o.flapDownS + 20) {
          nFlap++;
          log(`flap ${nFlap}: stopping Apache on ${flapReal}`);
          lab.stopApache(flapIdx);
          flap = { kind: 'flap', start: t, end: NaN, detail: { real: flapReal } };
          events.push(flap);
        } else if (flap !== null && t >= flap.start + o.flapDownS) {
          lab.startApache(flapIdx);
          flap.end = now();
          log(`flap ${nFlap}: Apache on ${flapReal} started again`);
          flap = null;
        }
        if (t >= floodAt(nFlood) && left() > o.floodSeconds + 10) {
          nFlood++;
          floodRuns.push(flood().catch((e: Error) => void problems.push(`flood: ${e.message}`)));
        }
      } catch (e) {
        if (!alive()) break;
        problems.push(`at ${Math.round(t)} s: ${(e as Error).message}`);
        log(`problem: ${(e as Error).message}`);
        if (lbd.proc.exitCode !== null || lbd.proc.signalCode !== null) break;
      }
      await sleep(250);
    }
    if (flap !== null && lab.alive) {
      lab.startApache(flapIdx);
      (flap as Event).end = now();
    }
    if (lab.alive && !stopping) {
      log('traffic ends: waiting for the loops');
      stopping = true; // the loops start nothing new; what runs ends within its bounds
    }
    await Promise.race([Promise.all([...loops, ...floodRuns]), sleep(120000)]);
    if (lab.alive && lbd.proc.exitCode === null && lbd.proc.signalCode === null) {
      lbdAliveAtEnd = true;
      try {
        sample();
      } catch (e) {
        problems.push(`last sample: ${(e as Error).message}`);
      }
    }
    if (lab.alive) {
      const st = await lbd.stop();
      if (st.code !== 0) problems.push(`lbd exited ${st.code} on SIGTERM`);
    }
  } catch (e) {
    problems.push((e as Error).message);
    log(`failed: ${(e as Error).stack ?? String(e)}`);
  } finally {
    try {
      lab.teardown();
    } catch (e) {
      problems.push(`teardown: ${(e as Error).message}`);
    }
  }

  // ───────────────────────────── the report ─────────────────────────────
  const logTime = (v: unknown): number => (typeof v === 'number' ? v : Date.parse(String(v)));
  const healthLog = (lbd?.logs() ?? [])
    .filter((l) => typeof l.msg === 'string' && /^real server (up|down)/.test(l.msg))
    .map((l) => ({ t: Math.round((logTime(l.time) - t0) / 100) / 10, real: l.real as string, to: l.to as string, reason: l.reason as string }));
  const warnings = (lbd?.logs() ?? []).filter((l) => typeof l.level === 'number' && l.level >= 40 && !/^real server (up|down)/.test(l.msg ?? ''));
  // windows in which errors are expected: a flap (from the stop to 10 s after the server is up
  // again), a flood (to FLOOD_AFTERMATH_S after it: its SYN_RECV entries fill the table)
  const windows: { kind: string; from: number; to: number }[] = [];
  for (const e of events) {
    if (e.kind === 'flap') {
      const up = healthLog.find((h) => h.real === flapReal && h.to === 'up' && h.t >= (Number.isFinite(e.end) ? e.end : e.start));
      const end = up ? up.t : Number.isFinite(e.end) ? e.end + 5 : e.start + o.flapDownS + 5;
      e.detail.downAt = healthLog.find((h) => h.real === flapReal && h.to === 'down' && h.t >= e.start)?.t ?? null;
      e.detail.upAt = up?.t ?? null;
      windows.push({ kind: 'flap', from: e.start - 2, to: end + 10 });
    } else if (e.kind === 'flood') windows.push({ kind: 'flood', from: e.start - 1, to: e.end + FLOOD_AFTERMATH_S });
  }
  const explain = (from: number, to: number): string | null => {
    const w = windows.filter((x) => x.from < to && x.to > from).map((x) => x.kind);
    return w.length ? [...new Set(w)].join('+') : null;
  };
  const errs = (s: WrkSegment): number => s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.non2xx + (s.failed ? 1 : 0);
  for (const s of segments) s.explainedBy = errs(s) > 0 ? explain(s.start, s.end) : null;
  for (const d of downloads) d.explainedBy = d.ok ? null : explain(d.start, d.end);
  for (const u of udpRuns) u.explainedBy = u.lost > 0 || u.failed ? explain(u.start, u.end) : null;

  const sum = (xs: number[]): number => xs.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const durationS = samples.length ? samples[samples.length - 1].t : 0;
  const atOrAfter = (t: number): Sample | undefined => samples.find((s) => s.t >= t);
  const warm = atOrAfter(warmupS);
  const last = samples[samples.length - 1];
  const rssRatio = warm && last && last !== warm ? last.rssMB / warm.rssMB : NaN;
  const afterWarm = samples.filter((s) => s.t >= warmupS);
  const badCounters = samples.filter((s) => Math.abs(s.counterGap) > COUNTER_SLACK);
  const kinds = ['connect', 'read', 'write', 'timeout'] as const;
  const wrkTotals = (ss: WrkSegment[]) => ({
    segments: ss.length,
    requests: sum(ss.map((s) => s.requests)),
    socketErrors: Object.fromEntries(kinds.map((k) => [k, sum(ss.map((s) => s.errors[k]))])) as Record<(typeof kinds)[number], number>,
    non2xx: sum(ss.map((s) => s.non2xx)),
    failedSegments: ss.filter((s) => s.failed).length,
  });
  const allErr = sum(segments.map(errs));
  const explainedFlap = sum(segments.filter((s) => s.explainedBy === 'flap').map(errs));
  const explainedFlood = sum(segments.filter((s) => s.explainedBy === 'flood').map(errs));
  const explainedBoth = sum(segments.filter((s) => s.explainedBy?.includes('+')).map(errs));
  const unexplained = sum(segments.filter((s) => !s.explainedBy).map(errs));
  const flaps = events.filter((e) => e.kind === 'flap');
  const reloads = events.filter((e) => e.kind === 'reload');
  const unexpectedTransitions = healthLog.filter((h) => h.real !== flapReal);
  const targets = {
    rss: Number.isFinite(rssRatio) ? rssRatio <= 1.05 : false,
    counters: samples.length > 0 && badCounters.length === 0,
    wrkUnexplainedErrors: unexplained === 0,
    lbdAlive: lbdAliveAtEnd,
    complete: !interrupted && problems.length === 0,
  };
  const pass = Object.values(targets).every(Boolean);
  const summary = {
    version: 1,
    startedAt: new Date(t0).toISOString(),
    pass,
    targets,
    interrupted,
    problems,
    options: { ...o, outDir: undefined },
    dataplane: dataplanePath,
    durationS,
    warmupS,
    rss: {
      atWarmupMB: warm?.rssMB ?? null,
      atWarmupT: warm?.t ?? null,
      atEndMB: last?.rssMB ?? null,
      ratio: rssRatio,
      target: '≤ 1.05',
      pass: targets.rss,
      metricsAtWarmupMB: warm?.metricsRssMB ?? null,
      metricsAtEndMB: last?.metricsRssMB ?? null,
      maxMB: Math.max(...samples.map((s) => s.rssMB)),
    },
    table: {
      capacity: last?.tableCapacity ?? null,
      minAfterWarmup: afterWarm.length ? Math.min(...afterWarm.map((s) => s.tableEntries)) : null,
      maxAfterWarmup: afterWarm.length ? Math.max(...afterWarm.map((s) => s.tableEntries)) : null,
      maxOverall: samples.length ? Math.max(...samples.map((s) => s.tableEntries)) : null,
      atEnd: last?.tableEntries ?? null,
    },
    eventLoop: {
      lagP99MaxMs: samples.length ? Math.max(...samples.map((s) => s.lagP99Ms)) : null,
      lagMaxMs: samples.length ? Math.max(...samples.map((s) => s.lagMaxMs)) : null,
      delaysOver100ms: sum(samples.map((s) => s.delaysOver100ms)),
    },
    wrk: {
      all: wrkTotals(segments),
      keepalive: wrkTotals(segments.filter((s) => s.kind === 'keepalive')),
      close: wrkTotals(segments.filter((s) => s.kind === 'close')),
      errors: { total: allErr, explainedByFlap: explainedFlap, explainedByFlood: explainedFlood, explainedByBoth: explainedBoth, unexplained },
      unexplainedSegments: segments
        .filter((s) => !s.explainedBy && errs(s) > 0)
        .map((s) => ({ kind: s.kind, start: s.start, end: s.end, errors: s.errors, non2xx: s.non2xx, failed: s.failed })),
    },
    downloads: {
      total: downloads.length,
      ok: downloads.filter((d) => d.ok).length,
      failedExplained: downloads.filter((d) => !d.ok && d.explainedBy).length,
      failedUnexplained: downloads.filter((d) => !d.ok && !d.explainedBy).map((d) => ({ start: d.start, end: d.end, result: d.result })),
    },
    udp: {
      runs: udpRuns.length,
      sent: sum(udpRuns.map((u) => u.sent)),
      lost: sum(udpRuns.map((u) => u.lost)),
      lostExplained: sum(udpRuns.filter((u) => u.explainedBy).map((u) => u.lost)),
      lostUnexplained: sum(udpRuns.filter((u) => !u.explainedBy).map((u) => u.lost)),
      failedRuns: udpRuns.filter((u) => u.failed).map((u) => u.failed),
    },
    counters: {
      check: 'received == forwarded + Σ dropped{reason} + arp + icmp rate_limited, at every sample',
      slack: COUNTER_SLACK,
      samples: samples.length,
      inconsistent: badCounters.map((s) => ({ t: s.t, gap: s.counterGap })),
      maxAbsGap: samples.length ? Math.max(...samples.map((s) => Math.abs(s.counterGap))) : null,
      final: last ? { received: last.received, forwarded: last.forwarded, arp: last.arp, drops: last.drops, ringDrops: last.ringDrops } : null,
    },
    reloads: { count: reloads.length, failed: reloads.filter((r) => !r.detail.ok).length },
    flaps: flaps.map((f) => ({ stop: f.start, start: f.end, downAt: f.detail.downAt, upAt: f.detail.upAt })),
    floods: events.filter((e) => e.kind === 'flood').map((f) => ({ start: f.start, end: f.end, ...f.detail })),
    health: { transitions: healthLog, unexpected: unexpectedTransitions },
    lbdWarnings: warnings.slice(0, 30).map((l) => ({ t: Math.round((logTime(l.time) - t0) / 100) / 10, level: l.level, msg: l.msg })),
  };

  const stamp = new Date(t0).toISOString().slice(0, 19).replace(/:/g, '-');
  const dir = path.join(o.outDir, `soak-${stamp}`);
  fs.mkdirSync(dir, { recursive: true });
  const json = (v: unknown): string => JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x), 2) + '\n';
  fs.writeFileSync(path.join(dir, 'samples.json'), json({ samples, segments, downloads, udpRuns, events }));
  fs.writeFileSync(path.join(dir, 'summary.json'), json(summary));
  const svg = plot(samples, events, warmupS, `lbd soak ${new Date(t0).toISOString().slice(0, 16)}Z, ${o.minutes} min`);
  fs.writeFileSync(path.join(dir, 'plot.svg'), svg);
  fs.copyFileSync(path.join(dir, 'summary.json'), path.join(o.outDir, 'soak-latest.json'));
  fs.copyFileSync(path.join(dir, 'plot.svg'), path.join(o.outDir, 'soak-latest.svg'));

  const f1 = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(1));
  process.stdout.write(
    [
      `soak ${pass ? 'PASS' : 'FAIL'}: ${f1(durationS)} s${interrupted ? ' (interrupted)' : ''}, dataplane ${dataplanePath}`,
      `  RSS ${f1(summary.rss.atWarmupMB)} MB at ${f1(summary.rss.atWarmupT)} s → ${f1(summary.rss.atEndMB)} MB at the end: ×${Number.isFinite(rssRatio) ? rssRatio.toFixed(3) : '–'} (target ≤ 1.05: ${targets.rss ? 'pass' : 'FAIL'})`,
      `  table after warm-up: ${summary.table.minAfterWarmup}–${summary.table.maxAfterWarmup} of ${summary.table.capacity} (max overall ${summary.table.maxOverall})`,
      `  wrk: ${summary.wrk.all.requests} requests in ${segments.length} segments; socket errors ${JSON.stringify(summary.wrk.all.socketErrors)}, non-2xx ${summary.wrk.all.non2xx}; ` +
        `errors: flap ${explainedFlap}, flood ${explainedFlood}, both ${explainedBoth}, unexplained ${unexplained} (${targets.wrkUnexplainedErrors ? 'pass' : 'FAIL'})`,
      `  downloads ${summary.downloads.ok}/${summary.downloads.total} ok (${summary.downloads.failedExplained} failed in a flap/flood window, ${summary.downloads.failedUnexplained.length} outside)`,
      `  UDP ${summary.udp.sent} sent, ${summary.udp.lost} lost (${summary.udp.lostUnexplained} outside flood windows)`,
      `  counters: ${samples.length} samples, ${badCounters.length} inconsistent (max |gap| ${summary.counters.maxAbsGap}) (${targets.counters ? 'pass' : 'FAIL'})`,
      `  event loop: p99 lag max ${f1(summary.eventLoop.lagP99MaxMs)} ms, max ${f1(summary.eventLoop.lagMaxMs)} ms, ${summary.eventLoop.delaysOver100ms} delays > 100 ms`,
      `  reloads ${reloads.length} (${summary.reloads.failed} failed), flaps ${flaps.length}, floods ${summary.floods.length}, health transitions ${healthLog.length} (${unexpectedTransitions.length} of other servers)`,
      ...problems.map((p) => `  problem: ${p}`),
      `  report: ${dir}/ (summary.json, samples.json, plot.svg); ${path.join(o.outDir, 'soak-latest.{json,svg}')}`,
      '',
    ].join('\n'),
  );
  return pass ? 0 : 1;
}

// ───────────────────────────── the plot ─────────────────────────────

/** Two panels over time: lbd's RSS (MB) and the connection table's entries; warm-up, flaps and floods marked. */
export function plot(samples: Sample[], events: Event[], warmupS: number, title: string): string {
  const W = 760;
  const L = 70;
  const R = 20;
  const PH = 170;
  const out: string[] = [];
  const tMax = Math.max(60, ...samples.map((s) => s.t), ...events.map((e) => (Number.isFinite(e.end) ? e.end : e.start)));
  const x = (t: number): number => L + (t / tMax) * (W - L - R);
  const text = (xx: number, yy: number, t: string, o: TextStyle = {}) => out.push(svgText(xx, yy, t, { size: 11, ...o }));
  text(10, 20, title, { size: 14, weight: 'bold' });
  const panel = (top: number, label: string, vals: number[], color: string, fmt: (v: number) => string): void => {
    const fin = vals.filter(Number.isFinite);
    const vMax = fin.length ? Math.max(...fin) : 1;
    const vMin = 0;
    const span = vMax - vMin || 1;
    const y = (v: number): number => top + PH - ((v - vMin) / (span * 1.1)) * PH;
    text(10, top - 6, label, { weight: 'bold' });
    // events first, under the line
    for (const e of events) {
      if (e.kind === 'reload') continue;
      const end = Number.isFinite(e.end) ? e.end : e.start + 1;
      const fill = e.kind === 'flap' ? '#ff7f0e' : '#d62728';
      out.push(
        `<rect x="${x(e.start).toFixed(1)}" y="${top}" width="${Math.max(1, x(end) - x(e.start)).toFixed(1)}" height="${PH}" fill="${fill}" fill-opacity="0.18"/>`,
      );
    }
    out.push(`<line x1="${x(warmupS).toFixed(1)}" y1="${top}" x2="${x(warmupS).toFixed(1)}" y2="${top + PH}" stroke="#555" stroke-dasharray="4 3"/>`);
    out.push(`<rect x="${L}" y="${top}" width="${W - L - R}" height="${PH}" fill="none" stroke="#999"/>`);
    for (let i = 0; i <= 4; i++) {
      const v = vMin + (span * 1.1 * i) / 4;
      text(L - 4, y(v) + 4, fmt(v), { anchor: 'end', size: 10, fill: '#666' });
      out.push(`<line x1="${L}" y1="${y(v).toFixed(1)}" x2="${W - R}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`);
    }
    const pts = samples.map((s, i) => (Number.isFinite(vals[i]) ? `${x(s.t).toFixed(1)},${y(vals[i]).toFixed(1)}` : '')).filter(Boolean);
    if (pts.length) out.push(`<polyline points="${pts.join(' ')}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
  };
  panel(
    50,
    'lbd RSS, MB (/proc/PID/status VmRSS)',
    samples.map((s) => s.rssMB),
    '#2ca02c',
    (v) => v.toFixed(0),
  );
  panel(
    50 + PH + 40,
    'connection table entries',
    samples.map((s) => s.tableEntries),
    '#1f77b4',
    (v) => (v >= 1000 ? `${(v / 1000).toFixed(0)}k` : v.toFixed(0)),
  );
  const axisY = 50 + 2 * PH + 40;
  const step = tMax > 1800 ? 600 : tMax > 600 ? 120 : 30;
  for (let t = 0; t <= tMax; t += step) text(x(t), axisY + 14, t >= 120 ? `${Math.round(t / 60)} min` : `${t} s`, { anchor: 'middle', size: 10, fill: '#666' });
  const ly = axisY + 34;
  out.push(`<rect x="${L}" y="${ly - 9}" width="12" height="10" fill="#ff7f0e" fill-opacity="0.35"/>`);
  text(L + 16, ly, 'real server flapping (Apache stopped)', { size: 10 });
  out.push(`<rect x="${L + 230}" y="${ly - 9}" width="12" height="10" fill="#d62728" fill-opacity="0.35"/>`);
  text(L + 246, ly, 'SYN flood', { size: 10 });
  out.push(`<line x1="${L + 320}" y1="${ly - 4}" x2="${L + 340}" y2="${ly - 4}" stroke="#555" stroke-dasharray="4 3"/>`);
  text(L + 344, ly, `end of warm-up (${Math.round(warmupS)} s)`, { size: 10 });
  const H = ly + 12;
  return svgDocument(W, H, out);
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      log(`failed: ${(e as Error).stack ?? e}`);
      process.exit(1);
    },
  );
}
