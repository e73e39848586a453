/**
 * lbd's benchmark: `npm run bench [-- --quick]`. See bench/README.md.
 *
 * Builds one namespace lab, then runs every scenario (direct, lbd-native, lbd-ts, nftables,
 * haproxy, and the packet baseline) in rounds: each round visits every scenario once, in a
 * rotated order, so slow drift of the host's speed spreads over all of them. In a visit: set up,
 * wrk c32 and c1 (if the scenario serves HTTP), the packet tests (if it forwards), tear down.
 * Medians over rounds are reported. The lab is always torn down (also on errors and signals);
 * every process is started through the lab and stopped by PID.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLab, listNamespaces, type Lab } from '../lab/lab';
import { runSync, type ProgramName } from '../src/host/programs';
import {
  buildGenerator,
  diagDelta,
  ifaceCounters,
  ksoftirqdPids,
  machineCpu,
  procNetDevRx,
  runGenerator,
  runtimeSnapshot,
  runWrk,
  sleep,
  type RuntimeSnapshot,
} from './measure';
import { svgChart } from './chart';
import { mdReport, summarize, textReport, type Machine, type PacketRun, type PacketTest, type Results } from './report';
import { baseline, direct, haproxy, lbd, nftables, rsDrop, scrubBalancer, Unavailable, type Scenario } from './scenarios';
import { runBulk, startSinks, type BulkRun, type Sinks } from './bulk';
import { runRestartBench } from './restart';
import { runMhBench } from './mh';
import { runFloodBench } from './flood';
import { runWorkload, WORKLOAD_IDS, WORKLOADS } from './workloads';

interface Options {
  quick: boolean;
  reps: number;
  wrkSeconds: number;
  warmupSeconds: number;
  genSeconds: number;
  rate: number;
  flows: number;
  only: string[] | null;
  http: boolean;
  /** the HTTP workloads (workloads.ts) run at 32 connections in every visit */
  workloads: string[];
  packets: boolean;
  /** the bulk upload (client → target → real server sink) */
  bulk: boolean;
  bulkMB: number;
  /** bound of one bulk transfer, s (it also gives up after 10 s without progress) */
  bulkMaxS: number;
  outDir: string;
  /** stop starting new rounds after this many seconds; the hard limit kills the run */
  budgetS: number;
}

const ALL = ['direct', 'lbd-native', 'lbd-native-bp', 'lbd-ts', 'nftables', 'haproxy', 'baseline'];

function usage(): never {
  process.stderr.write(
    `usage: npm run bench -- [--quick] [--reps N] [--wrk-seconds S] [--gen-seconds S] [--rate PPS]
                        [--only ${ALL.join(',')}] [--no-http] [--no-packets] [--no-bulk]
                        [--workloads ${WORKLOAD_IDS.join(',')}] [--http-only]
                        [--bulk-mb N] [--bulk-only] [--restart-only] [--mh-only] [--flood-only] [--out DIR]
  --quick         smoke run (~4 min): 3 rounds, wrk 2 s, generator 1 s, no warm-up
  --workloads L   the HTTP workloads (default all): stock-ka (keep-alive as Apache ships it),
                  close (Connection: close), ab-http10 (ApacheBench, HTTP/1.0), mixed, tuned-ka
  --http-only     only the HTTP workloads (no packet tests, no bulk upload)
  --bulk-mb N     size of the bulk upload (default 256 MiB); --no-bulk skips it
  --bulk-only     only the bulk upload, for direct, lbd-native, lbd-ts and nftables (unless --only)
  --restart-only  only the restart gap: lbd ended (SIGTERM, SIGKILL) and started again under a
                  1000/s UDP stream, both paths, --reps rounds (bench/restart.ts)
  --mh-only       only the mh scheduler's costs, in-process (no lab, no root): ns per new flow
                  beside sh and wlc, table build time (bench/mh.ts)
  --flood-only    only SYN floods (one source cycling its ports, random sources; 100k/s and max)
                  against a 16384-entry table with wrk alongside, defense auto and off (bench/flood.ts)
  --reps N        rounds (default 5); medians over rounds are reported
  --rate PPS      the paced packet rate (default 80000)
`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    quick: false,
    reps: 5,
    wrkSeconds: 5,
    warmupSeconds: 1,
    genSeconds: 2,
    rate: 80000,
    flows: 1024,
    only: null,
    http: true,
    workloads: WORKLOAD_IDS,
    packets: true,
    bulk: true,
    bulkMB: 256,
    bulkMaxS: 60,
    outDir: path.resolve(__dirname, '../../bench/results'),
    budgetS: 3000,
  };
  const explicit = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) usage();
      explicit.add(a);
      return v;
    };
    const num = (): number => {
      const n = Number(val());
      if (!Number.isFinite(n) || n < 0) usage();
      return n;
    };
    switch (a) {
      case '--quick':
        o.quick = true;
        break;
      case '--reps':
        o.reps = Math.max(1, Math.floor(num()));
        break;
      case '--wrk-seconds':
        o.wrkSeconds = Math.max(1, Math.floor(num()));
        break;
      case '--gen-seconds':
        o.genSeconds = Math.min(30, Math.max(0.2, num()));
        break;
      case '--rate':
        o.rate = Math.max(1000, Math.floor(num()));
        break;
      case '--only':
        o.only = val()
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        for (const s of o.only) if (!ALL.includes(s)) usage();
        break;
      case '--workloads':
        o.workloads = val()
          .split(',')
          .map((x) => x.trim())
          .filter(Boolean);
        for (const w of o.workloads) if (!WORKLOAD_IDS.includes(w)) usage();
        break;
      case '--http-only':
        o.packets = false;
        o.bulk = false;
        break;
      case '--no-http':
        o.http = false;
        break;
      case '--no-packets':
        o.packets = false;
        break;
      case '--no-bulk':
        o.bulk = false;
        break;
      case '--bulk-mb':
        o.bulkMB = Math.max(1, Math.floor(num()));
        break;
      case '--bulk-only':
      case '--restart-only':
      case '--mh-only':
      case '--flood-only':
        explicit.add(a);
        break;
      case '--out':
        o.outDir = path.resolve(val());
        break;
      case '-h':
      case '--help':
        usage();
      // falls through (usage exits)
      default:
        usage();
    }
  }
  if (explicit.has('--bulk-only')) {
    o.http = false;
    o.packets = false;
    o.bulk = true;
    o.only ??= ['direct', 'lbd-native', 'lbd-ts', 'nftables'];
  }
  if (o.quick) {
    if (!explicit.has('--reps')) o.reps = 3;
    if (!explicit.has('--wrk-seconds')) o.wrkSeconds = 2;
    if (!explicit.has('--gen-seconds')) o.genSeconds = 1;
    o.warmupSeconds = 0;
    o.budgetS = 420;
  }
  return o;
}

/** a tool's version output: stdout; after a failure whatever it printed; '' if it is not installed */
function cmdOut(file: ProgramName, args: string[]): string {
  try {
    const r = runSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'], timeoutMs: 5000 });
    return (r.status === 0 ? r.stdout : r.stdout || r.stderr).trim();
  } catch {
    return '';
  }
}

function machine(): Machine {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const first = (re: RegExp, s: string): string => re.exec(s)?.[1]?.trim() ?? '?';
  const repo = path.resolve(__dirname, '../..');
  const head = cmdOut('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']);
  const dirty = cmdOut('git', ['-C', repo, 'status', '--porcelain']) ? '+dirty' : '';
  return {
    date: new Date().toISOString(),
    nproc: os.cpus().length,
    cpuModel: first(/^model name\s*:\s*(.*)$/m, cpuinfo),
    kernel: os.release(),
    node: process.version,
    tools: {
      wrk: first(/^wrk (\S+)/m, cmdOut('wrk', ['-v'])),
      haproxy: first(/version (\S+)/, cmdOut('haproxy', ['-v'])),
      nft: first(/v(\S+)/, cmdOut('nft', ['--version'])),
      gcc: first(/\) (\S+)/, cmdOut('gcc', ['--version'])),
      apache: first(/Apache\/(\S+)/, cmdOut('apache2', ['-v'])),
    },
    git: `${head}${dirty}`,
    loadavgAtStart: os.loadavg(),
    otherNamespacesAtStart: 0,
  };
}

const log = (msg: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

// ───────────────────────────── one packet run ─────────────────────────────

/** frames received by the real servers' interfaces, summed; read via Apache's /proc/PID/net/dev (no spawn) */
function rsRx(lab: Lab): number {
  let sum = 0;
  lab.ns.rs.forEach((ns, i) => {
    const pid = lab.apachePid(i);
    const v = pid ? procNetDevRx(pid, lab.ifaces.rs) : NaN;
    sum += Number.isFinite(v) ? v : ifaceCounters(lab, ns, lab.ifaces.rs).rx;
  });
  return sum;
}

/** make the bridge learn every host's MAC, so no counter includes flooded frames */
function learnMacs(lab: Lab): void {
  for (const a of [...lab.addr.rs, lab.addr.client]) lab.tryExec(lab.ns.balancer, ['ping', '-c1', '-W1', '-q', a], { timeoutMs: 3000 });
  lab.tryExec(lab.ns.client, ['ping', '-c1', '-W1', '-q', lab.addr.balancer], { timeoutMs: 3000 });
}

let flowSeq = 0;

async function packetRun(lab: Lab, sc: Scenario, t: PacketTest, rep: number, o: Options, ks: number[]): Promise<PacketRun> {
  let rs0 = 0;
  let lb0 = 0;
  let rt0: RuntimeSnapshot = { procs: 0, ksoftirqd: 0 };
  let d0: Record<string, number> = {};
  let m0 = { busyNs: 0, stealNs: 0 };
  let w0 = 0n;
  const pids = sc.pids();
  const count = t.rate > 0 ? Math.ceil(t.rate * o.genSeconds) : Math.ceil(3_000_000 * o.genSeconds);
  const g = await runGenerator(
    lab,
    {
      mode: t.mode,
      rate: t.rate,
      seconds: o.genSeconds,
      count,
      flows: o.flows,
      flowOffset: ++flowSeq * (1 << 24),
      batch: t.rate > 0 ? 16 : 64,
    },
    () => {
      d0 = sc.diag?.() ?? {};
      rs0 = rsRx(lab);
      lb0 = ifaceCounters(lab, lab.ns.balancer, lab.ifaces.balancerCapture).rx;
      m0 = machineCpu();
      w0 = process.hrtime.bigint();
      rt0 = runtimeSnapshot(pids, ks); // last: right before the generator is released
    },
  );
  // let the balancer drain what it has queued: until the real servers' counters stand still
  const t0 = Date.now();
  let last = rsRx(lab);
  for (;;) {
    await sleep(150);
    const now = rsRx(lab);
    if (now === last || Date.now() - t0 > 3000) {
      last = now;
      break;
    }
    last = now;
  }
  const settleMs = Date.now() - t0;
  const rt1 = runtimeSnapshot(pids, ks);
  const m1 = machineCpu();
  const windowNs = Number(process.hrtime.bigint() - w0);
  const lb1 = ifaceCounters(lab, lab.ns.balancer, lab.ifaces.balancerCapture).rx;
  const d1 = sc.diag?.() ?? {};
  const diag = diagDelta(d0, d1);
  const forwarded = last - rs0;
  const secs = g.elapsed_ns / 1e9;
  const procCpuNs = rt1.procs - rt0.procs;
  const ksoftirqdNs = rt1.ksoftirqd - rt0.ksoftirqd;
  const totalNs = g.cpu_ns + procCpuNs + ksoftirqdNs;
  const denom = sc.baseline ? g.sent : forwarded;
  return {
    scenario: sc.name,
    test: t.id,
    rep,
    rate: t.rate,
    sent: g.sent,
    attempted: g.attempted,
    sendErrors: g.send_errors,
    elapsedNs: g.elapsed_ns,
    offeredPps: g.sent / secs,
    balancerRx: lb1 - lb0,
    forwarded,
    forwardedPps: forwarded / secs,
    loss: g.sent - forwarded,
    lossPct: g.sent > 0 ? (100 * (g.sent - forwarded)) / g.sent : NaN,
    genCpuNs: g.cpu_ns,
    procCpuNs,
    ksoftirqdNs,
    totalNs,
    nsPerPkt: denom > 0 ? totalNs / denom : NaN,
    settleMs,
    windowNs,
    otherBusyNs: m1.busyNs - m0.busyNs - totalNs,
    stealNs: m1.stealNs - m0.stealNs,
    diag,
  };
}

// ───────────────────────────── main ─────────────────────────────

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (process.argv.includes('--mh-only')) {
    runMhBench(o.outDir, log);
    return 0;
  }
  if (process.getuid?.() !== 0) {
    log('needs root (network namespaces, AF_PACKET)');
    return 2;
  }
  if (process.argv.includes('--restart-only')) {
    await runRestartBench(o.reps, o.outDir, log);
    return 0;
  }
  if (process.argv.includes('--flood-only')) {
    await runFloodBench(o.outDir, log);
    return 0;
  }
  const started = Date.now();
  // the hard limit: whatever happens, the process ends (the lab's exit handler tears it down)
  const hardLimitS = o.budgetS + 240;
  setTimeout(() => {
    log(`hard time limit (${hardLimitS} s) reached: aborting`);
    process.exit(3);
  }, hardLimitS * 1000).unref();

  buildGenerator();
  const mach = machine();
  const tests: PacketTest[] = [
    { id: 'syn-paced', mode: 'syn', rate: o.rate },
    { id: 'syn-max', mode: 'syn', rate: 0 },
    { id: 'steady-paced', mode: 'steady', rate: o.rate },
    { id: 'steady-max', mode: 'steady', rate: 0 },
  ];
  log(`building the lab (${o.quick ? 'quick' : 'full'}: ${o.reps} rounds, wrk ${o.wrkSeconds} s, generator ${o.genSeconds} s per test)`);
  const nsBefore = listNamespaces();
  const lab = createLab({ shape: 'one-nic' });
  mach.otherNamespacesAtStart = nsBefore.length;
  const results: Results & { bulk: BulkRun[] } = {
    version: 1,
    machine: mach,
    options: { ...o, outDir: undefined, tests },
    scenarios: [],
    unavailable: {},
    errors: [],
    http: [],
    packets: [],
    bulk: [],
    tests,
    durationS: 0,
    complete: false,
  };
  let exitCode = 0;
  try {
    // One client address makes every short connection from 28k ephemeral ports, and wrk closing
    // first leaves thousands in TIME_WAIT for 60 s: past ~14k, connect() searches so long for a
    // free port (2–5 ms of CPU a request, measured) that whichever scenario comes next loses
    // three quarters of its rate. Real clients are many; a load generator reuses TIME_WAIT ports.
    lab.exec(lab.ns.client, ['sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1']);
    const all: Scenario[] = [direct(lab), lbd(lab, 'native'), lbd(lab, 'native', '200us'), lbd(lab, 'ts'), nftables(lab), haproxy(lab), baseline(lab)];
    const scenarios = all.filter((s) => !o.only || o.only.includes(s.name));
    results.scenarios = scenarios.map((s) => ({ name: s.name, what: s.what }));
    const ks = ksoftirqdPids();
    log(`lab ${lab.prefix} up; ksoftirqd PIDs ${ks.join(' ')}`);
    const sinks: Sinks | null = o.bulk && scenarios.some((s) => s.bulk) ? await startSinks(lab) : null;
    let budgetHit = false;
    for (let rep = 0; rep < o.reps && !budgetHit; rep++) {
      const order = scenarios.map((_, i) => scenarios[(i + rep) % scenarios.length]);
      for (const sc of order) {
        if (results.unavailable[sc.name]) continue;
        if ((Date.now() - started) / 1000 > o.budgetS) {
          log(`time budget (${o.budgetS} s) used up: stopping early`);
          budgetHit = true;
          break;
        }
        const doHttp = o.http && sc.url !== null;
        const doPackets = o.packets && sc.packets;
        const doBulk = sinks !== null && sc.bulk !== null;
        if (!doHttp && !doPackets && !doBulk) continue;
        log(`round ${rep + 1}/${o.reps}: ${sc.name}`);
        let phase = 'setup';
        try {
          await sc.setup();
          if (doHttp) {
            phase = 'wrk';
            if (o.warmupSeconds > 0) await runWrk(lab, sc.url!, 32, o.warmupSeconds);
            const host = new URL(sc.url!).hostname;
            for (const wl of WORKLOADS.filter((x) => o.workloads.includes(x.id))) {
              const d0 = sc.diag?.() ?? {};
              const w = await runWorkload(lab, wl, host, 32, o.wrkSeconds);
              const d1 = sc.diag?.() ?? {};
              const diag = diagDelta(d0, d1);
              results.http.push({ scenario: sc.name, rep, conns: 32, workload: wl.id, ...w, diag });
              log(
                `  ${wl.id} c32: ${Math.round(w.rps)} req/s, p50 ${Math.round(w.p50us)} µs, p99 ${Math.round(w.p99us)} µs${w.clientRetrans ? `, ${w.clientRetrans} client retransmissions` : ''}${w.socketErrors + w.non2xx ? `, ${w.socketErrors} socket errors, ${w.non2xx} non-2xx` : ''}`,
              );
            }
            // latency: one connection, keep-alive to the tuned port
            const w = await runWrk(lab, sc.url!, 1, o.wrkSeconds);
            results.http.push({ scenario: sc.name, rep, conns: 1, workload: 'tuned-ka', ...w });
            log(`  tuned-ka c1: ${Math.round(w.rps)} req/s, p50 ${Math.round(w.p50us)} µs, p99 ${Math.round(w.p99us)} µs`);
          }
          if (doBulk) {
            phase = 'bulk';
            // warm-up, not measured: the sinks' and the balancer's first connection, slow start
            const w = await runBulk(lab, sc, sc.bulk!, sinks!, rep, { bytes: 16 * 1024 * 1024, maxS: o.bulkMaxS, stallS: 10 });
            if (!w.ok) log(`  bulk warm-up (16 MiB) failed: ${w.error}; the sink got ${w.received} bytes`);
            const b = await runBulk(lab, sc, sc.bulk!, sinks!, rep, { bytes: o.bulkMB * 1024 * 1024, maxS: o.bulkMaxS, stallS: 10 });
            results.bulk.push(b);
            const d = Object.entries(b.diag)
              .filter(([, v]) => v)
              .map(([k, v]) => `${k}=${v}`)
              .join(' ');
            log(
              `  bulk ${o.bulkMB} MiB → ${b.target}:${b.ok ? '' : ` FAILED (${b.error}; the sink got ${b.received} bytes)`} ${b.ok ? b.mbps.toFixed(0) : '–'} MB/s in ${b.ms} ms, ` +
                `CPU ${(b.tasksCpuNs / 1e6).toFixed(0)} ms (sender ${(b.senderCpuNs / 1e6).toFixed(0)}, sinks ${(b.sinkCpuNs / 1e6).toFixed(0)}, ` +
                `balancer ${(b.balancerCpuNs / 1e6).toFixed(0)}, ksoftirqd ${(b.ksoftirqdNs / 1e6).toFixed(0)}), machine ${(b.machineCpuNs / 1e6).toFixed(0)} ms` +
                `${b.clientRetrans ? `, ${b.clientRetrans} client retransmissions` : ''}${d ? ` [${d}]` : ''}`,
            );
          }
          if (doPackets) {
            phase = 'packets';
            learnMacs(lab);
            rsDrop(lab, true);
            try {
              for (const [i, t] of tests.entries()) {
                if (i > 0 && sc.freshForEachPacketTest) {
                  phase = `packets ${t.id}: restart`;
                  // setup() checks that the service answers, which the real servers' drop would stop.
                  rsDrop(lab, false);
                  await sc.teardown();
                  await sc.setup();
                  learnMacs(lab);
                  rsDrop(lab, true);
                }
                phase = `packets ${t.id}`;
                const p = await packetRun(lab, sc, t, rep, o, ks);
                results.packets.push(p);
                const d = Object.entries(p.diag)
                  .filter(([, v]) => v)
                  .map(([k, v]) => `${k}=${v}`)
                  .join(' ');
                log(
                  `  ${t.id}: sent ${Math.round(p.offeredPps / 1000)}k/s, forwarded ${Math.round(p.forwardedPps / 1000)}k/s, ` +
                    `loss ${Math.max(0, p.lossPct).toFixed(1)}%, ${p.nsPerPkt.toFixed(0)} ns/pkt (gen ${(p.genCpuNs / 1e6).toFixed(0)} ms, ` +
                    `balancer ${(p.procCpuNs / 1e6).toFixed(0)} ms, ksoftirqd ${(p.ksoftirqdNs / 1e6).toFixed(0)} ms)${d ? ` [${d}]` : ''}`,
                );
              }
            } finally {
              rsDrop(lab, false);
            }
          }
        } catch (e) {
          const measured =
            results.http.some((h) => h.scenario === sc.name) ||
            results.packets.some((p) => p.scenario === sc.name) ||
            results.bulk.some((b) => b.scenario === sc.name);
          if (e instanceof Unavailable && !measured) {
            results.unavailable[sc.name] = e.message;
            log(`  ${sc.name} unavailable: ${e.message}`);
          } else {
            const msg = (e as Error).message;
            results.errors.push({ scenario: sc.name, rep, phase, message: msg });
            log(`  ${sc.name} ${phase} failed: ${msg}`);
            exitCode = 1;
          }
        } finally {
          try {
            await sc.teardown();
          } catch (e) {
            results.errors.push({ scenario: sc.name, rep, phase: 'teardown', message: (e as Error).message });
            exitCode = 1;
          }
          scrubBalancer(lab);
        }
      }
    }
    results.complete = !budgetHit && results.errors.length === 0;
  } finally {
    try {
      lab.teardown();
    } catch (e) {
      log(`teardown: ${(e as Error).message}`);
      exitCode = 1;
    }
  }
  results.durationS = (Date.now() - started) / 1000;
  results.summary = summarize(results);
  fs.mkdirSync(o.outDir, { recursive: true });
  const json = JSON.stringify(results, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2);
  fs.writeFileSync(path.join(o.outDir, 'latest.json'), json + '\n');
  fs.writeFileSync(path.join(o.outDir, 'latest.md'), mdReport(results));
  fs.writeFileSync(path.join(o.outDir, 'latest.svg'), svgChart(results));
  process.stdout.write(textReport(results) + '\n');
  log(`wrote ${path.relative(process.cwd(), path.join(o.outDir, 'latest.{json,md,svg}'))} in ${Math.round(results.durationS)} s`);
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    log(`failed: ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
