/**
 * The Maglev hashing scheduler's costs, in-process (no lab, no root): `node dist/bench/bench.js
 * --mh-only`. Two numbers an operator weighs against sh and wlc:
 *
 *   per new flow  ns per schedule() call for 10, 100 and 1000 real servers, mh beside sh and
 *                 wlc in the same run (ratios to them), over a reused flow and 64 Ki client
 *                 addresses; mh with its default table (65537 entries)
 *   rebuild       ms for update() to build the lookup table from scratch, for 10, 100 and 1000
 *                 servers, at 65537 entries (the paper's size, lbd's default) and 4093 (IPVS's)
 *
 * Each figure is the median of REPS repetitions; a per-flow repetition runs calls in batches
 * until it has taken TIME_MS. Bounded: some 20 s in all on a slow machine. Results go to
 * bench/results/mh-latest.json and a table on stderr.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createScheduler, type Dest, type FlowInfo, type Scheduler } from '../src/scheduler/index';
import { MaglevHashing } from '../src/scheduler/mh';

const REPS = 9;
const TIME_MS = 150;
const SERVERS = [10, 100, 1000];
const TABLE_SIZES = [65537, 4093];
const SCHEDULERS = ['mh', 'sh', 'wlc'];

export interface MhFlowCost {
  scheduler: string;
  servers: number;
  /** median ns per schedule() */
  ns: number;
  /** every repetition's ns per call */
  reps: number[];
}

export interface MhRebuild {
  servers: number;
  tableSize: number;
  /** median ms per table build */
  ms: number;
  reps: number[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

/** n servers 10.x.y.z:80, weight 1, idle. */
function dests(n: number): Dest[] {
  return Array.from({ length: n }, (_, i) => ({
    addr: (0x0a000000 + i * 257 + 1) >>> 0,
    port: 80,
    weight: 1,
    lastWeight: 1,
    flags: 0,
    activeConns: 0,
    inactConns: 0,
  }));
}

/** 64 Ki client addresses from a fixed xorshift32 sequence. */
function clients(): Uint32Array {
  const out = new Uint32Array(1 << 16);
  let x = 2463534242;
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x >>> 0;
  }
  return out;
}

/** ns per call of one repetition: batches of the client list until TIME_MS has passed. */
function flowRep(s: Scheduler, list: Dest[], addrs: Uint32Array, flow: FlowInfo): number {
  let calls = 0;
  let sink = 0;
  const t0 = process.hrtime.bigint();
  let elapsed = 0n;
  const limit = BigInt(TIME_MS) * 1_000_000n;
  while (elapsed < limit) {
    for (let i = 0; i < 4096; i++) {
      flow.srcAddr = addrs[(calls + i) & 0xffff];
      flow.srcPort = 1024 + i;
      const d = s.schedule(list, flow);
      if (d !== null) sink ^= d.addr;
    }
    calls += 4096;
    elapsed = process.hrtime.bigint() - t0;
  }
  // Keeps the calls from being optimised away.
  if (sink === 0x7fffffff) process.stderr.write('');
  return Number(elapsed) / calls;
}

export function runMhBench(outDir: string, log: (s: string) => void): { flows: MhFlowCost[]; rebuilds: MhRebuild[] } {
  const started = Date.now();
  const addrs = clients();
  const flow: FlowInfo = { srcAddr: 0, srcPort: 0, continuing: false };
  const flows: MhFlowCost[] = [];
  for (const n of SERVERS) {
    const list = dests(n);
    const scheds = SCHEDULERS.map((name) => {
      const s = createScheduler(name);
      s.update?.(list);
      flowRep(s, list, addrs, flow); // warm-up: JIT, caches
      return s;
    });
    const reps: number[][] = scheds.map(() => []);
    // Interleaved, so that a drift of the machine's speed touches all three alike.
    for (let r = 0; r < REPS; r++) scheds.forEach((s, k) => reps[k].push(flowRep(s, list, addrs, flow)));
    scheds.forEach((s, k) => {
      flows.push({ scheduler: s.name, servers: n, ns: median(reps[k]), reps: reps[k] });
      log(`mh bench: ${s.name}, ${n} servers: ${median(reps[k]).toFixed(0)} ns per new flow`);
    });
  }

  const rebuilds: MhRebuild[] = [];
  for (const m of TABLE_SIZES) {
    for (const n of SERVERS) {
      const list = dests(n);
      const reps: number[] = [];
      for (let r = 0; r < REPS + 1; r++) {
        // A fresh instance each time: update() builds the whole table (the first run is warm-up).
        const s = new MaglevHashing({ tableSize: m });
        const t0 = process.hrtime.bigint();
        s.update(list);
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        if (s.rebuilds !== 1) throw new Error('the table was not built');
        if (r > 0) reps.push(ms);
      }
      rebuilds.push({ servers: n, tableSize: m, ms: median(reps), reps });
      log(`mh bench: table of ${m} entries, ${n} servers: built in ${median(reps).toFixed(2)} ms`);
    }
  }

  const ns = (name: string, n: number) => flows.find((f) => f.scheduler === name && f.servers === n)!.ns;
  const rows = [
    '| real servers | mh ns/flow | sh ns/flow | wlc ns/flow | mh ÷ sh | mh ÷ wlc | mh table build, 65537 (ms) | mh table build, 4093 (ms) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const n of SERVERS) {
    const build = (m: number) => rebuilds.find((b) => b.servers === n && b.tableSize === m)!.ms.toFixed(2);
    rows.push(
      `| ${n} | ${ns('mh', n).toFixed(0)} | ${ns('sh', n).toFixed(0)} | ${ns('wlc', n).toFixed(0)} | ${(ns('mh', n) / ns('sh', n)).toFixed(1)} | ${(ns('mh', n) / ns('wlc', n)).toFixed(2)} | ${build(65537)} | ${build(4093)} |`,
    );
  }
  const table = rows.join('\n');
  const cpu = /^model name\s*:\s*(.*)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? '?';
  const result = {
    at: new Date().toISOString(),
    machine: { cpuModel: cpu, nproc: os.cpus().length, kernel: os.release(), node: process.version },
    reps: REPS,
    repMs: TIME_MS,
    flows,
    rebuilds,
    table,
    durationS: (Date.now() - started) / 1000,
  };
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, 'mh-latest.json');
  fs.writeFileSync(file, JSON.stringify(result, null, 2) + '\n');
  log(`\n${table}\n`);
  log(`results: ${file} (${result.durationS.toFixed(1)} s)`);
  return { flows, rebuilds };
}
