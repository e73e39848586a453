import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Command, Lab } from '../../lab/lab';
import { parseWrk as parseWrkSummary } from '../../lab/wrk';
import type { ChildProcess } from '../../src/host/programs';

export const LBD_BIN = path.resolve(__dirname, '../../../bin/lbd');
let seq = 0;

export interface LbdProcess {
  proc: ChildProcess;
  configFile: string;
  /** The admin socket lbd list/server/reload talk to: lab.dir/lbd-PID-N.sock unless the config sets admin.socket. */
  socket: string;
  /** Every log line so far, parsed. */
  logs(): any[];
  /** /metrics, fetched inside the balancer namespace. */
  metrics(): string;
  /** The value of one sample, e.g. metric('lbd_service_connections_total', { service: 'web' }). */
  metric(name: string, labels?: Record<string, string>): number;
  /** SIGTERM (a restart's first half: the state file and the leased guard stay); resolves with the exit code and how long it took. */
  stop(): Promise<{ code: number | null; ms: number }>;
  /** `lbd stop --clean` on its admin socket: lbd removes every change it made to the host, then exits. */
  stopClean(): Promise<{ code: number | null; ms: number }>;
  /** The state file it runs with (the test's, or one of its own in the lab's directory). */
  stateFile: string;
  /** Writes `yaml` as its config file, with its admin socket and state file kept unless `yaml` sets them (a reload must not change them). */
  rewrite(yaml: string): void;
}

/** `lbd stop --clean --config FILE` for an lbd that is gone: removes what it left (guard, probe table, state file). */
export function cleanAfter(lab: Lab, configFile: string): string {
  return lab.exec(lab.ns.balancer, ['node', LBD_BIN, 'stop', '--clean', '--config', configFile]);
}

/** Starts `lbd --config` in the lab's balancer namespace and waits for its startup line. */
export async function startLbd(
  lab: Lab,
  yaml: string,
  opts: {
    args?: string[];
    timeoutMs?: number;
    env?: NodeJS.ProcessEnv;
    /** another build's bin/lbd (an upgrade) */ bin?: string;
    /** the namespace it runs in (and its metrics and admin commands), default lab.ns.balancer; e.g. one of lab.ns.extraBalancers */ ns?: string;
    /** the command that runs it, made from lbd's own (e.g. setpriv … -- node lbd …: another user, fewer capabilities) */ wrap?: (cmd: Command) => Command;
    /** descriptors it gets from fd 3 on (what systemd passes: LISTEN_FDS) */ fds?: number[];
  } = {},
): Promise<LbdProcess> {
  const ns = opts.ns ?? lab.ns.balancer;
  const configFile = path.join(lab.dir, `lb-${process.pid}-${++seq}.yaml`);
  // Each lbd gets its own admin socket in the lab's directory (unless the test sets one), so
  // that parallel runs never meet on the default /run/lbd/lbd.sock.
  const socket = /^admin:/m.test(yaml)
    ? (/^\s+socket:\s*(\S+)/m.exec(yaml.slice(yaml.search(/^admin:/m)))?.[1] ?? '/run/lbd/lbd.sock')
    : path.join(lab.dir, `lbd-${process.pid}-${seq}.sock`);
  if (!/^admin:/m.test(yaml)) yaml = `${yaml.replace(/\n*$/, '\n')}admin:\n  socket: ${socket}\n`;
  // And its own state file (the default /run/lbd/lbd_<capture>.state is shared by every namespace),
  // unless the test sets one: a restart test gives the same one to both lbds.
  const stateFile = /^state_file:\s*(\S+)/m.exec(yaml)?.[1] ?? path.join(lab.memDir, `lbd-${process.pid}-${seq}.state`);
  if (!/^state_file:/m.test(yaml)) yaml = `${yaml.replace(/\n*$/, '\n')}state_file: ${stateFile}\n`;
  writeFileSync(configFile, yaml);
  const cmd: Command = ['node', opts.bin ?? LBD_BIN, '--config', configFile, ...(opts.args ?? [])];
  const proc = lab.spawn(ns, opts.wrap ? opts.wrap(cmd) : cmd, {
    stdio: ['ignore', 'pipe', 'pipe', ...(opts.fds ?? [])],
    ref: true,
    env: opts.env,
  });
  const lines: any[] = [];
  let stderr = '';
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        lines.push(JSON.parse(line));
      } catch {
        lines.push({ msg: line });
      }
    }
  });
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  // 'close' comes after 'exit' once stdout and stderr are drained: only then are the logs complete.
  const closed = new Promise<void>((resolve) => proc.once('close', () => resolve()));
  const drained = () => Promise.race([closed, new Promise<void>((r) => setTimeout(r, 2000))]);
  const deadline = Date.now() + (opts.timeoutMs ?? 15000);
  while (!lines.some((l) => l.msg === 'lbd started')) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      if (proc.exitCode === null) lab.kill(proc);
      await drained();
      throw new Error(`lbd did not start (exit ${proc.exitCode}):\n${lines.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const metrics = () => lab.exec(ns, ['curl', '-sf', '--max-time', '5', 'http://127.0.0.1:9469/metrics']);
  return {
    proc,
    configFile,
    socket,
    logs: () => lines,
    metrics,
    metric: (name, labels = {}) => sampleValue(metrics(), name, labels),
    stateFile,
    rewrite(next: string) {
      let y = next.replace(/\n*$/, '\n');
      if (!/^admin:/m.test(y)) y += `admin:\n  socket: ${socket}\n`;
      if (!/^state_file:/m.test(y)) y += `state_file: ${stateFile}\n`;
      writeFileSync(configFile, y);
    },
    async stopClean() {
      const t0 = Date.now();
      if (proc.exitCode === null && proc.signalCode === null) lab.exec(ns, ['node', LBD_BIN, 'stop', '--clean', '--socket', socket]);
      const code = proc.exitCode !== null || proc.signalCode !== null ? proc.exitCode : await exited;
      await drained();
      return { code, ms: Date.now() - t0 };
    },
    async stop() {
      const t0 = Date.now();
      if (proc.exitCode !== null || proc.signalCode !== null) {
        await drained();
        return { code: proc.exitCode, ms: 0 };
      }
      proc.kill('SIGTERM');
      const timer = setTimeout(() => lab.kill(proc, { signal: 'SIGKILL', graceMs: 0 }), 5000);
      const code = await exited;
      clearTimeout(timer);
      const ms = Date.now() - t0;
      await drained();
      return { code, ms };
    },
  };
}

/** Finds one sample in Prometheus text; every given label must match. NaN when absent. */
export function sampleValue(text: string, name: string, labels: Record<string, string> = {}): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const kv of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[kv[1]] = kv[2];
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[4]);
  }
  return NaN;
}

/** curl from the lab's client; returns the body, or throws. */
export function curl(lab: Lab, url: string, maxTime = 5): string {
  return lab.exec(lab.ns.client, ['curl', '-sS', '--max-time', String(maxTime), url]).trim();
}

const HELD_DOWNLOAD_JS = path.resolve(__dirname, '../../lab/held-download.js');

export interface HeldDownload {
  proc: ChildProcess;
  /** Resolves with the HTTP status once the first bytes arrived and reading stopped. */
  started: Promise<number>;
  /** Let it read to the end. */
  release(): void;
  /** Resolves with the last line it printed: `done STATUS BYTES` (with `sha256`: `done STATUS BYTES SHA256`) or `error ...`. */
  done: Promise<string>;
  /** True while the process runs (the connection is still open). */
  running(): boolean;
}

/**
 * A download from the lab's client that holds its connection ESTABLISHED until release():
 * a long-lived flow whose length does not depend on how fast the machine is (see
 * lab/held-download.ts for why curl --limit-rate is not that).
 */
export function heldDownload(lab: Lab, host: string, urlPath = '/big.bin', port = 80, opts: { sha256?: boolean; maxMs?: number } = {}): HeldDownload {
  const extra = [...(opts.sha256 ? ['--sha256'] : []), ...(opts.maxMs !== undefined ? ['--max-ms', String(opts.maxMs)] : [])];
  const proc = lab.spawn(lab.ns.client, ['node', HELD_DOWNLOAD_JS, '--host', host, '--port', String(port), '--path', urlPath, ...extra], {
    stdio: ['pipe', 'pipe', 'pipe'],
    ref: true,
  });
  let out = '';
  let onStart: (status: number) => void = () => undefined;
  let onFail: (err: Error) => void = () => undefined;
  const started = new Promise<number>((resolve, reject) => {
    onStart = resolve;
    onFail = reject;
  });
  started.catch(() => undefined); // a test that never awaits it must not die of the rejection
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const m = /^started (\d+)$/m.exec(out);
    if (m) onStart(Number(m[1]));
  });
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  // Released after it ended on its own (an error, --max-ms): the write fails, and that is all.
  proc.stdin!.on('error', () => {});
  // 'close', not 'exit': the last line may still be in the pipe when the process has exited.
  const done = new Promise<string>((resolve) =>
    proc.once('close', () => {
      onFail(new Error(`held download ended before it started: ${out.trim()}`));
      resolve(out.trim().split('\n').pop() ?? '');
    }),
  );
  return {
    proc,
    started,
    release: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.stdin!.end('go\n');
    },
    done,
    running: () => proc.exitCode === null && proc.signalCode === null,
  };
}

/** The figures of wrk's summary the tests assert on (lab/wrk.ts parses it). */
export function parseWrk(out: string): { requests: number; socketErrors: number; non2xx: number; rps: number } {
  const { requests, socketErrors, non2xx, rps } = parseWrkSummary(out);
  return { requests, socketErrors, non2xx, rps };
}

/**
 * lbd config for the lab: one TCP service "web" on port 80 of the VIP over the real servers
 * `reals` (indices into lab.addr.rs, default all) with `weights` (default 1), plus
 * `serviceLines` (e.g. health_check keys) in the service and `top` before everything.
 */
export function lbdConfig(
  lab: Lab,
  o: {
    scheduler?: string;
    vip?: string;
    extraServices?: string;
    persistence?: string;
    egress?: string;
    top?: string;
    reals?: number[];
    weights?: number[];
    serviceLines?: string[];
  } = {},
): string {
  const reals = o.reals ?? lab.addr.rs.map((_, i) => i);
  const serviceLines = (o.serviceLines ?? []).map((l) => `    ${l}\n`).join('');
  return `${o.top ?? ''}
interfaces:
  capture: ${lab.ifaces.balancerCapture}
  egress: ${o.egress ?? lab.ifaces.balancerEgress}
metrics:
  listen: 127.0.0.1:9469
log:
  level: info
services:
  - name: web
    vip: ${o.vip ?? lab.addr.vip}
    port: 80
    protocol: tcp
    scheduler: ${o.scheduler ?? 'rr'}
    persistence: ${o.persistence ?? 0}
${serviceLines}    real_servers:
${reals.map((i, j) => `      - address: ${lab.addr.rs[i]}\n        weight: ${o.weights?.[j] ?? 1}`).join('\n')}
${o.extraServices ?? ''}`;
}

/** A service `name` on the VIP's `port`, rr over every real server (for lbdConfig's extraServices). */
export function labService(lab: Lab, name: string, port: number, protocol: 'tcp' | 'udp' = 'tcp'): string {
  return `
  - name: ${name}
    vip: ${lab.addr.vip}
    port: ${port}
    protocol: ${protocol}
    scheduler: rr
    real_servers:
${lab.addr.rs.map((a) => `      - ${a}`).join('\n')}`;
}

/** A UDP service "echo" on the VIP over every real server's UDP echo (for lbdConfig's extraServices). */
export function udpEchoService(lab: Lab): string {
  return labService(lab, 'echo', lab.ports.udp, 'udp');
}
