/**
 * The bulk-upload measurement: N MiB (default 256) from the client through the scenario's target
 * (the VIP, or a real server's own address for direct) to a sink on the real servers
 * (bench/bulk-peer.ts), with the client's offloads at their defaults (TSO: super-frames into the
 * balancer) and GRO on on the balancer's capture interface. Every data segment crosses the
 * balancer: this is the direction DSR does not spare it.
 *
 * Measured over the transfer (from the sender's `go` to the sink's answer that it counted
 * everything):
 *   - throughput: bytes ÷ that time;
 *   - CPU of the tasks involved, precise: the sender's own (process.cpuUsage), the sinks' and the
 *     balancer process's (lbd: every task's /proc/PID/schedstat) and every ksoftirqd/N — on veth
 *     the receive side (bridge, netdev hook, nftables' fwd, the real server's TCP stack) runs as
 *     softirq in the sending task's context, so this is nearly all of it, as in the packet tests;
 *   - CPU of the whole machine from /proc/stat (tick-sampled; includes whatever else runs);
 *   - the balancer process's own CPU.
 * Each ÷ bytes the sink counted = ns per forwarded byte.
 */
import * as path from 'node:path';
import type { Lab } from '../lab/lab';
import type { ChildProcess } from '../src/host/programs';
import { labService } from '../test/helpers/lbd-process';
import { clientRetrans, diagDelta, ksoftirqdPids, machineCpu, processRuntimeNs, runInLab, runtimeSnapshot, sleep } from './measure';
import type { Scenario } from './scenarios';

export const BULK_PORT = 9000;
const PEER_JS = path.join(__dirname, 'bulk-peer.js');

export interface BulkRun {
  scenario: string;
  rep: number;
  target: string;
  /** bytes the sender was to send */
  total: number;
  ok: boolean;
  error?: string;
  /** bytes the sink counted (from its answer, or from its log line when the transfer failed) */
  received: number;
  ms: number;
  /** MB/s (10^6 bytes) = received ÷ ms */
  mbps: number;
  senderCpuNs: number;
  sinkCpuNs: number;
  /** the scenario's balancer process (lbd), every task; 0 without one */
  balancerCpuNs: number;
  ksoftirqdNs: number;
  /** sender + sinks + balancer + ksoftirqd */
  tasksCpuNs: number;
  /** /proc/stat busy time over the window (tick-sampled) */
  machineCpuNs: number;
  tasksNsPerByte: number;
  machineNsPerByte: number;
  balancerNsPerByte: number;
  clientRetrans: number;
  diag: Record<string, number>;
}

export interface Sinks {
  pids: number[];
  /** JSON lines the sinks printed about finished connections */
  lines: { from: string; bytes: number; how: string }[];
}

/** The bulk service on the VIP for lbd's config (lbdConfig's extraServices). */
export function bulkService(lab: Lab): string {
  return labService(lab, 'bulk', BULK_PORT);
}

/** Start a sink on every real server; returns when every one listens. */
export async function startSinks(lab: Lab): Promise<Sinks> {
  const sinks: Sinks = { pids: [], lines: [] };
  const procs: ChildProcess[] = lab.ns.rs.map((ns) =>
    lab.spawn(ns, ['node', PEER_JS, 'sink', '--port', String(BULK_PORT)], { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  let listening = 0;
  let stderr = '';
  for (const p of procs) {
    sinks.pids.push(p.pid!);
    let buf = '';
    p.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.startsWith('listening ')) listening++;
        else if (line.startsWith('{')) sinks.lines.push(JSON.parse(line) as Sinks['lines'][number]);
      }
    });
    p.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  }
  for (const end = Date.now() + 10000; listening < procs.length; await sleep(50)) {
    if (Date.now() > end) throw new Error(`bulk sinks did not start: ${stderr}`);
  }
  return sinks;
}

export async function runBulk(
  lab: Lab,
  sc: Scenario,
  target: string,
  sinks: Sinks,
  rep: number,
  o: { bytes: number; maxS: number; stallS: number },
): Promise<BulkRun> {
  const ks = ksoftirqdPids();
  const pids = sc.pids();
  const re0 = clientRetrans(lab);
  const d0 = sc.diag?.() ?? {};
  let before = { procs: 0, ksoftirqd: 0, sinks: 0, machine: 0 };
  let after = { ...before };
  const snap = () => {
    const rt = runtimeSnapshot(pids, ks);
    return { procs: rt.procs, ksoftirqd: rt.ksoftirqd, sinks: sinks.pids.reduce((a, p) => a + processRuntimeNs(p), 0), machine: machineCpu().busyNs };
  };
  interface SendOut {
    ok: boolean;
    error?: string;
    bytes?: number;
    ms: number;
    localPort: number | null;
    cpuUs?: number;
  }
  const got: { out: SendOut | null } = { out: null };
  const r = await runInLab(
    lab,
    lab.ns.client,
    [
      'node',
      PEER_JS,
      'send',
      '--host',
      target,
      '--port',
      String(BULK_PORT),
      '--bytes',
      String(o.bytes),
      '--max-ms',
      String(o.maxS * 1000),
      '--stall-ms',
      String(o.stallS * 1000),
    ],
    {
      timeoutMs: (o.maxS + 15) * 1000,
      name: 'bulk-send',
      onLine: (line, proc) => {
        if (line === 'ready') {
          before = snap(); // right before the sender is released
          proc.stdin!.write('go\n');
        } else if (line.startsWith('{')) {
          after = snap(); // the sink has counted everything (or the sender gave up)
          got.out = JSON.parse(line) as SendOut;
        }
      },
    },
  );
  const res = got.out;
  if (!res) throw new Error(`bulk sender failed (${r.timedOut ? 'timed out' : `exit ${r.code}`}): ${r.stderr}${r.stdout}`);
  let received = res.bytes ?? NaN;
  if (!res.ok && res.localPort !== null) {
    // what the sink got before the sender gave up (its reset reaches the sink through the balancer)
    const from = `:${res.localPort}`;
    for (const end = Date.now() + 3000; Date.now() < end; await sleep(100)) {
      const l = sinks.lines.find((x) => x.from.endsWith(from));
      if (l) {
        received = l.bytes;
        break;
      }
    }
  }
  const d1 = sc.diag?.() ?? {};
  const diag = diagDelta(d0, d1);
  // the sender reports its own CPU; the rest from the snapshots
  const senderCpuNs = (res.cpuUs ?? NaN) * 1000;
  const sinkCpuNs = after.sinks - before.sinks;
  const balancerCpuNs = after.procs - before.procs;
  const ksoftirqdNs = after.ksoftirqd - before.ksoftirqd;
  const tasksCpuNs = senderCpuNs + sinkCpuNs + balancerCpuNs + ksoftirqdNs;
  const machineCpuNs = after.machine - before.machine;
  const per = (ns: number) => (res.ok && received > 0 ? ns / received : NaN);
  return {
    scenario: sc.name,
    rep,
    target,
    total: o.bytes,
    ok: res.ok,
    error: res.error,
    received,
    ms: res.ms,
    mbps: res.ok ? received / 1e6 / (res.ms / 1000) : NaN,
    senderCpuNs,
    sinkCpuNs,
    balancerCpuNs,
    ksoftirqdNs,
    tasksCpuNs,
    machineCpuNs,
    tasksNsPerByte: per(tasksCpuNs),
    machineNsPerByte: per(machineCpuNs),
    balancerNsPerByte: pids.length ? per(balancerCpuNs) : NaN,
    clientRetrans: clientRetrans(lab) - re0,
    diag,
  };
}
