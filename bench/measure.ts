/**
 * Measuring instruments for the benchmark: precise run time (/proc/PID/schedstat), interface
 * counters inside the lab's namespaces, wrk runs and the packet generator. Everything that runs
 * for a while (wrk, the generator) is spawned through the lab (own process group, tracked, killed
 * by PID on timeout or teardown) and awaited asynchronously, so this process keeps draining lbd's
 * log pipe meanwhile.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Lab } from '../lab/lab';
import { parseWrk, type WrkSummary } from '../lab/wrk';
import { declaredPath, program, ProgramNotFoundError, REPO_ROOT, runSync, type ChildProcess, type Command } from '../src/host/programs';

// ───────────────────────────── run time ─────────────────────────────

/** First field of /proc/<pid>/schedstat: the task's run time in ns (0 if it is gone). */
export function taskRuntimeNs(pid: number, tid?: number): number {
  const p = tid === undefined ? `/proc/${pid}/schedstat` : `/proc/${pid}/task/${tid}/schedstat`;
  try {
    return Number(fs.readFileSync(p, 'utf8').split(' ')[0]) || 0;
  } catch {
    return 0;
  }
}

/** Sum of the run time of every task (thread) of a process, ns. */
export function processRuntimeNs(pid: number): number {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let sum = 0;
  for (const t of tids) sum += taskRuntimeNs(pid, Number(t));
  return sum;
}

/** PIDs of the ksoftirqd/N kernel threads. */
export function ksoftirqdPids(): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/comm`, 'utf8').startsWith('ksoftirqd/')) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out.sort((a, b) => a - b);
}

export interface RuntimeSnapshot {
  /** per watched process (lbd, haproxy …): sum over its tasks */
  procs: number;
  ksoftirqd: number;
}

export function runtimeSnapshot(pids: number[], softirqPids: number[]): RuntimeSnapshot {
  let procs = 0;
  for (const p of pids) procs += processRuntimeNs(p);
  let ks = 0;
  for (const p of softirqPids) ks += taskRuntimeNs(p);
  return { procs, ksoftirqd: ks };
}

/** machine-wide busy (not idle/iowait) and steal time from /proc/stat, ns (tick-sampled: a noise indicator only) */
export function machineCpu(): { busyNs: number; stealNs: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const tick = 1e9 / 100; // USER_HZ
  const [user, nice, system, , , irq, softirq, steal] = f; // idle and iowait are not busy time
  return { busyNs: (user + nice + system + irq + softirq) * tick, stealNs: (steal || 0) * tick };
}

// ───────────────────────────── counters ─────────────────────────────

/** rx/tx packet counters of eth0 (or ifname) inside a namespace; one `ip` call. */
export function ifaceCounters(lab: Lab, ns: string, ifname = 'eth0'): { rx: number; tx: number; rxDropped: number } {
  const j = JSON.parse(lab.exec(ns, ['ip', '-j', '-s', 'link', 'show', 'dev', ifname])) as {
    stats64: { rx: { packets: number; dropped: number }; tx: { packets: number } };
  }[];
  const s = j[0].stats64;
  return { rx: s.rx.packets, tx: s.tx.packets, rxDropped: s.rx.dropped };
}

/**
 * rx packets of an interface read through /proc/<pid>/net/dev of a process living in the
 * namespace: no process spawned (used while measuring). NaN if the process is gone.
 */
export function procNetDevRx(pid: number, ifname: string): number {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8');
  } catch {
    return NaN;
  }
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i < 0 || line.slice(0, i).trim() !== ifname) continue;
    return Number(
      line
        .slice(i + 1)
        .trim()
        .split(/\s+/)[1],
    );
  }
  return NaN;
}

// ───────────────────────────── processes ─────────────────────────────

export interface ProcResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Run a command in a lab namespace to completion, asynchronously, bounded by timeoutMs (then
 * the lab kills it by PID). onLine sees each stdout line as it arrives.
 */
export function runInLab(
  lab: Lab,
  ns: string,
  cmd: Command,
  opts: { timeoutMs: number; name?: string; onLine?: (line: string, proc: ChildProcess) => void; onSpawn?: (proc: ChildProcess) => void },
): Promise<ProcResult> {
  const proc = lab.spawn(ns, cmd, { stdio: ['pipe', 'pipe', 'pipe'], ref: true, name: opts.name });
  opts.onSpawn?.(proc);
  let stdout = '';
  let stderr = '';
  let buf = '';
  let timedOut = false;
  proc.stdout!.on('data', (d: Buffer) => {
    const s = d.toString();
    stdout += s;
    if (!opts.onLine) return;
    buf += s;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      opts.onLine(line, proc);
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  proc.stdin!.on('error', () => undefined);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        lab.kill(proc, { graceMs: 1000 });
      } catch {
        /* already gone */
      }
    }, opts.timeoutMs);
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      try {
        lab.kill(proc, { graceMs: 500 }); // untracks it (a no-op if the group is gone)
      } catch {
        /* fine */
      }
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

// ───────────────────────────── wrk ─────────────────────────────

/** A wrk run as the benchmark keeps it: wrk's summary and the client's retransmissions. */
export interface WrkResult extends WrkSummary {
  /** TCP segments the client retransmitted during the run */
  clientRetrans: number;
}

/** the client namespace's TCP RetransSegs (/proc/net/snmp as seen inside the namespace) */
export function clientRetrans(lab: Lab): number {
  const lines = lab
    .exec(lab.ns.client, ['cat', '/proc/net/snmp'])
    .split('\n')
    .filter((l) => l.startsWith('Tcp:'));
  if (lines.length < 2) return NaN;
  const keys = lines[0].split(/\s+/);
  const vals = lines[1].split(/\s+/);
  return Number(vals[keys.indexOf('RetransSegs')]);
}

/**
 * A load tool's run of about `seconds` from the lab's client (wrk, ab): its figures by `parse`,
 * with the client's TCP retransmissions meanwhile; throws when the tool fails or says nothing.
 */
export async function runLoad(lab: Lab, cmd: Command, what: string, seconds: number, parse: (out: string) => WrkSummary): Promise<WrkResult> {
  const re0 = clientRetrans(lab);
  const r = await runInLab(lab, lab.ns.client, cmd, { timeoutMs: (seconds + 20) * 1000, name: cmd[0] });
  if (r.timedOut || r.code !== 0) throw new Error(`${what}: ${r.timedOut ? 'timed out' : `exit ${r.code}`}\n${r.stderr}${r.stdout}`);
  const w: WrkResult = { ...parse(r.stdout), clientRetrans: clientRetrans(lab) - re0 };
  if (!Number.isFinite(w.rps)) throw new Error(`${what}: output not understood:\n${r.stdout}`);
  return w;
}

/** wrk from the lab's client, one thread, `extra` options (e.g. -H, -s) before the URL. */
export function runWrk(lab: Lab, url: string, conns: number, seconds: number, extra: string[] = []): Promise<WrkResult> {
  const cmd: Command = ['wrk', '-t1', `-c${conns}`, `-d${seconds}s`, '--timeout', '2s', '--latency', ...extra, url];
  return runLoad(lab, cmd, `wrk ${url} c${conns}`, seconds, parseWrk);
}

// ───────────────────────────── packet generator ─────────────────────────────

// the generator is a declared program ('gen', built from its source): where both are comes from there
export const GEN_SRC = path.resolve(REPO_ROOT, program('gen').built!);
export const GEN_BIN = declaredPath('gen')!;

/** The generator's first arguments: from the client's interface, in frames addressed to the balancer, to the VIP's HTTP port. */
export function genToVip(lab: Lab): Command {
  return [
    'gen',
    '--ifname',
    lab.ifaces.client,
    '--src-mac',
    lab.macs.client,
    '--dst-mac',
    lab.macs.balancerCapture,
    '--dst-ip',
    lab.addr.vip,
    '--dport',
    String(lab.ports.http),
  ];
}

/** Compile bench/gen/gen.c with gcc when the binary is missing or older than the source. */
export function buildGenerator(): string {
  const stale = !fs.existsSync(GEN_BIN) || fs.statSync(GEN_BIN).mtimeMs < fs.statSync(GEN_SRC).mtimeMs;
  if (stale) {
    fs.mkdirSync(path.dirname(GEN_BIN), { recursive: true });
    let r;
    try {
      r = runSync('gcc', ['-O2', '-Wall', '-Wextra', '-o', GEN_BIN, GEN_SRC], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      if (e instanceof ProgramNotFoundError) throw new Error(`${e.message}, or: bash bench/setup.sh`, { cause: e });
      throw e;
    }
    if (r.status !== 0) throw new Error(`building the packet generator failed:\n${r.stderr || `exit ${r.status ?? r.signal}`}`);
  }
  return GEN_BIN;
}

export interface GenOutput {
  sent: number;
  attempted: number;
  elapsed_ns: number;
  cpu_ns: number;
  pps: number;
  send_calls: number;
  send_errors: number;
  last_errno: number;
  warm_errors: number;
}

export interface GenArgs {
  mode: 'syn' | 'steady';
  /** frames/s, 0 = as fast as it goes */
  rate: number;
  seconds: number;
  count: number;
  flows: number;
  flowOffset: number;
  batch: number;
}

/**
 * Run the generator in the client namespace with --wait-go: `before` runs when it is ready (after
 * the steady-state SYNs), then it is released; returns its own report.
 */
export async function runGenerator(lab: Lab, a: GenArgs, before: () => void): Promise<GenOutput> {
  let out: GenOutput | null = null;
  let readyErr: Error | null = null;
  const r = await runInLab(
    lab,
    lab.ns.client,
    [
      ...genToVip(lab),
      '--mode',
      a.mode,
      '--flows',
      String(a.flows),
      '--flow-offset',
      String(a.flowOffset),
      '--rate',
      String(a.rate),
      '--count',
      String(a.count),
      '--duration',
      String(a.seconds),
      '--batch',
      String(a.batch),
      '--wait-go',
    ],
    {
      timeoutMs: (a.seconds + 20) * 1000,
      name: 'gen',
      onLine: (line, proc) => {
        if (line === 'ready') {
          try {
            before();
          } catch (e) {
            readyErr = e as Error;
          }
          proc.stdin!.write('go\n');
        } else if (line.startsWith('{')) {
          out = JSON.parse(line) as GenOutput;
        }
      },
    },
  );
  if (readyErr) throw readyErr;
  if (r.timedOut || r.code !== 0 || !out) throw new Error(`generator failed (${r.timedOut ? 'timed out' : `exit ${r.code}`}): ${r.stderr}${r.stdout}`);
  return out;
}

// ───────────────────────────── statistics ─────────────────────────────

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length & 1 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function spread(xs: number[]): { min: number; max: number } {
  const v = xs.filter((x) => Number.isFinite(x));
  return v.length ? { min: Math.min(...v), max: Math.max(...v) } : { min: NaN, max: NaN };
}

/** a ÷ b, NaN when either is missing or b is 0 */
export const ratio = (a: number, b: number): number => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : NaN);

/** A scenario's counters over a run: each of the later snapshot less the earlier one. */
export function diagDelta(d0: Record<string, number>, d1: Record<string, number>): Record<string, number> {
  const diag: Record<string, number> = {};
  for (const k of Object.keys(d1)) diag[k] = d1[k] - (d0[k] ?? 0);
  return diag;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
