/**
 * The restart gap: how long VIP traffic goes unforwarded when lbd is restarted, and how many
 * frames that costs. A client streams numbered UDP datagrams (1000/s) through the VIP to the real
 * servers' echo; lbd is ended (SIGTERM, then SIGKILL: a crash) and started again with the same
 * config and state file; the echoes tell which datagrams got through and when.
 *
 *   gap   from the signal to the first datagram the new lbd forwarded (the first that came back
 *         after the last one lost; within a millisecond, the stream's spacing). The old lbd
 *         forwards for a moment after the signal, so the window with nothing forwarded is
 *   dark  shorter: from the first datagram lost to that one
 *   lost  datagrams that never came back (TCP would retransmit them; UDP shows every one)
 *   start how long the new lbd took from spawn to its "lbd started" line
 *
 * The state files are on tmpfs (the lab's memory directory), as /run is on a host: on a disk
 * every page of a new table is a block to write.
 *
 * Run by `npm run bench -- --restart-only`; results go to bench/results/restart-latest.json and the
 * README's table. Bounded: each round streams 5 s; rounds × 2 paths × 3 ways (SIGTERM, SIGKILL,
 * and a hand-over: lbd --take-over started while the old one runs).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, type Lab } from '../lab/lab';
import { lbdConfig, startLbd, udpEchoService, type LbdProcess } from '../test/helpers/lbd-process';
import { sleep } from './measure';

const RATE = 1000;
const STREAM_S = 5;
const SIGNAL_AT_MS = 2000;
const UDP_ECHO = path.resolve(__dirname, '../lab/udp-echo.js');

export interface RestartRun {
  dataplane: 'native' | 'ts';
  /** How the old lbd ends: SIGTERM or SIGKILL then a new start, or a hand-over (lbd --take-over while it runs). */
  signal: 'SIGTERM' | 'SIGKILL' | 'handover';
  gapMs: number;
  darkMs: number;
  /** The longest a datagram that came back took (a hand-over holds frames in the new lbd's ring: they arrive late, not never). */
  maxDelayMs: number;
  lost: number;
  /** Runs of lost datagrams: [first sent, first sent after], ms after the signal. */
  lossWindows: [number, number][];
  /** The new lbd's drop counters that are not zero. */
  newLbdDrops: string[];
  startMs: number;
  adopted: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : NaN;
};

async function round(lab: Lab, dataplane: RestartRun['dataplane'], signal: RestartRun['signal'], stateFile: string): Promise<RestartRun> {
  // One admin socket for both lbds: the one taking over asks the running one there.
  const yaml = `${lbdConfig(lab, { top: `dataplane: ${dataplane}`, extraServices: udpEchoService(lab) })}\nstate_file: ${stateFile}\nadmin:\n  socket: ${stateFile}.sock\n`;
  const first = await startLbd(lab, yaml);
  let second: LbdProcess | undefined;
  let out = '';
  const probe = lab.spawn(
    lab.ns.client,
    ['node', UDP_ECHO, 'stream', '--host', lab.addr.vip, '--port', String(lab.ports.udp), '--rate', String(RATE), '--seconds', String(STREAM_S)],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      ref: true,
    },
  );
  probe.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const probeDone = new Promise<void>((resolve) => probe.once('exit', () => resolve()));
  try {
    await sleep(SIGNAL_AT_MS);
    const signalAt = performance.timeOrigin + performance.now();
    let startMs: number;
    if (signal === 'handover') {
      // The new lbd starts while the old one runs, and takes over (the "signal" is its spawn).
      const gone = new Promise<void>((resolve) => first.proc.once('exit', () => resolve()));
      const t = Date.now();
      second = await startLbd(lab, yaml, { args: ['--take-over'] });
      startMs = Date.now() - t;
      await gone;
    } else {
      if (signal === 'SIGTERM') await first.stop();
      else {
        const gone = new Promise<void>((resolve) => first.proc.once('exit', () => resolve()));
        first.proc.kill('SIGKILL');
        await gone;
      }
      const t = Date.now();
      second = await startLbd(lab, yaml);
      startMs = Date.now() - t;
    }
    await Promise.race([probeDone, sleep((STREAM_S + 5) * 1000)]);
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { sentAt: number[]; answeredAt: (number | null)[] };
    if (!r.sentAt) throw new Error(`the stream printed nothing: ${out}`);
    let firstLost = -1;
    let lastLost = -1;
    for (let i = 0; i < r.sentAt.length; i++) {
      if (r.answeredAt[i] !== null) continue;
      if (firstLost < 0) firstLost = i;
      lastLost = i;
    }
    let firstAfter = lastLost + 1;
    while (firstAfter < r.sentAt.length && r.answeredAt[firstAfter] === null) firstAfter++;
    if (firstAfter >= r.sentAt.length) throw new Error(`nothing forwarded after the gap (lost ${firstLost}..${lastLost})`);
    // No datagram lost (a hand-over): no gap; the first sent after the signal came back.
    if (lastLost < 0) {
      firstAfter = r.sentAt.findIndex((t) => t >= signalAt);
      if (firstAfter < 0) throw new Error('the stream ended before the signal');
      firstLost = firstAfter;
    }
    const lost = r.answeredAt.filter((a) => a === null).length;
    let maxDelayMs = 0;
    r.answeredAt.forEach((a, i) => {
      if (a !== null) maxDelayMs = Math.max(maxDelayMs, a - r.sentAt[i]);
    });
    const lossWindows: [number, number][] = [];
    for (let i = 0; i < r.sentAt.length; i++) {
      if (r.answeredAt[i] !== null || (i > 0 && r.answeredAt[i - 1] === null)) continue;
      let j = i;
      while (j < r.sentAt.length && r.answeredAt[j] === null) j++;
      lossWindows.push([Math.round(r.sentAt[i] - signalAt), Math.round((r.sentAt[j] ?? r.sentAt[j - 1]) - signalAt)]);
    }
    const line = second.logs().find((l) => typeof l.msg === 'string' && l.msg.startsWith('adopted the connection table'));
    return {
      dataplane,
      signal,
      gapMs: r.sentAt[firstAfter] - signalAt,
      darkMs: r.sentAt[firstAfter] - r.sentAt[firstLost],
      lost,
      maxDelayMs,
      lossWindows,
      startMs,
      adopted: line?.flows ?? 0,
      newLbdDrops: second
        .metrics()
        .split('\n')
        .filter((l) => /^lbd_(dropped_packets_total|native_capture_dropped_packets_total)/.test(l) && !/ 0$/.test(l)),
    };
  } finally {
    if (probe.exitCode === null) lab.kill(probe);
    await second?.stop();
    await first.stop();
  }
}

/** Every round, then a table of medians; returns the runs. */
export async function runRestartBench(reps: number, outDir: string, log: (s: string) => void): Promise<RestartRun[]> {
  const lab = createLab({ shape: 'one-nic' });
  const runs: RestartRun[] = [];
  try {
    for (let rep = 0; rep < reps; rep++) {
      for (const dataplane of ['native', 'ts'] as const) {
        for (const signal of ['SIGTERM', 'SIGKILL', 'handover'] as const) {
          const r = await round(lab, dataplane, signal, path.join(lab.memDir, `restart-${dataplane}-${signal}-${rep}.state`));
          log(
            `restart ${rep + 1}/${reps} ${dataplane} ${signal}: gap ${r.gapMs.toFixed(0)} ms (dark ${r.darkMs.toFixed(0)} ms), ${r.lost} datagrams lost (longest delay ${r.maxDelayMs.toFixed(0)} ms) in ${JSON.stringify(r.lossWindows)}, start ${r.startMs} ms, ${r.adopted} flows adopted; new lbd's drops: ${r.newLbdDrops.join(', ') || 'none'}`,
          );
          runs.push(r);
        }
      }
    }
  } finally {
    lab.teardown();
  }
  // Medians over the rounds.
  const rows = [
    '| path | how | signal → first forwarded (ms) | nothing forwarded (ms) | lost at 1000/s | longest delay (ms) | new lbd "started" (ms) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const dataplane of ['native', 'ts'] as const) {
    for (const signal of ['SIGTERM', 'SIGKILL', 'handover'] as const) {
      const rs = runs.filter((r) => r.dataplane === dataplane && r.signal === signal);
      const m = (f: (r: RestartRun) => number) => median(rs.map(f)).toFixed(0);
      rows.push(
        `| lbd-${dataplane} | ${signal} | ${m((r) => r.gapMs)} | ${m((r) => r.darkMs)} | ${m((r) => r.lost)} | ${m((r) => r.maxDelayMs)} | ${m((r) => r.startMs)} |`,
      );
    }
  }
  log(`\n${rows.join('\n')}\n`);
  fs.mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, 'restart-latest.json');
  fs.writeFileSync(file, JSON.stringify({ at: new Date().toISOString(), rate: RATE, runs }, null, 2));
  log(`results: ${file}`);
  return runs;
}
