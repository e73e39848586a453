/**
 * The network-namespace lab: a classic LVS-DR setup (a client, a balancer, two real servers)
 * rebuilt from network namespaces, veth pairs and Linux bridges, with one Apache httpd and one
 * UDP echo server per real server.
 *
 *   one-nic (default)                         two-nic
 *   ┌──────── <prefix>-br: br0 ────────┐      <prefix>-br: br-front            br-back
 *   client   balancer   rs40   rs111         client ── balancer eth0 | eth1 ── rs40, rs111
 *   .50      .30        .40    .111          192.168.11.50   .30   10.0.10.30    .40  .111
 *   (10.0.10.0/24, VIP 10.0.10.100)          VIP 192.168.11.100, ip_forward=1 on the balancer
 *
 * Everything is synchronous (runSync) so that teardown can also run from a process 'exit'
 * handler. createLab() returns when every Apache answers on its own address and every UDP echo
 * server is bound.
 *
 * Naming: every namespace is `<prefix>-<role>` (`-br`, `-client`, `-lb`, `-rs40`, `-rs111`);
 * interfaces live only inside those namespaces (hosts: eth0/eth1; bridge ports
 * `<host>-<ifname>`), so nothing is created in the root namespace. Files go to
 * `os.tmpdir()/<prefix>/`. MACs are fixed and readable: 02:00:00:<segment>:<octet as 4 decimal
 * digits>, segment 00 = 10.0.10.0/24, 01 = 192.168.11.0/24 (10.0.10.111 → 02:00:00:00:01:11).
 *
 * Teardown kills by PID only the processes the lab started (and, as a last resort, any process
 * still living inside the lab's own namespaces), deletes the namespaces (which destroys every
 * veth and bridge in them) and the temp dir. It is idempotent and registered on process
 * exit/SIGINT/SIGTERM/SIGHUP while the lab is alive.
 *
 * Every program it runs is a declared one (src/host/programs.json): commands are typed
 * `[ProgramName, ...args]` and resolved through src/host/programs.ts, also inside namespaces.
 *
 * One file of about a thousand lines on purpose: whatever the lab creates (namespaces, veths,
 * processes, files) is recorded in one object, and the one teardown that must undo all of it,
 * also from an exit handler, reads that record; split, every part would have to share it.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  declaredPath,
  exitText,
  netnsArgs,
  programPath,
  runSync,
  spawnProgram,
  type ChildProcess,
  type Command,
  type ProgramName,
  type RunResult,
  type StdioOptions,
} from '../src/host/programs';
import { startBgp, type BgpLab } from './bgp';

export type { Command, ProgramName };

/**
 * routed: one-nic plus a router between the client and the balancer's segment:
 *   client 192.168.13.50 ── <prefix>-router (eth0 .1, MTU routerClientMtu | eth1 10.0.10.1) ── br0
 *   (balancer, real servers; the real servers' and the balancer's route to 192.168.13.0/24 is via 10.0.10.1)
 */
export type LabShape = 'one-nic' | 'two-nic' | 'routed';

export interface LabOptions {
  /** default 'one-nic' */
  shape?: LabShape;
  /** default 'lbd' + 6 random hex chars; [A-Za-z0-9_]{2,40} */
  prefix?: string;
  /**
   * default true = the kernel's defaults on the client's eth0 (tx checksum offload and TSO on, as on
   * any real sender: partial checksums and TSO super-frames); false turns tx checksum offload and
   * TSO OFF there (only for a test that needs fully checksummed, MTU-sized frames from the client)
   */
  clientTxOffload?: boolean;
  /** default true = kernel defaults; false turns tx checksum offload/TSO off on the balancer's interfaces */
  balancerTxOffload?: boolean;
  /**
   * default true = GRO turned ON on the balancer's capture interface (as on a real NIC; veth has it
   * off by default), so lbd's capture sees merged super-frames; false leaves veth's default (off)
   */
  balancerGro?: boolean;
  /**
   * two-nic only, default false. true = the VIP is routed to the balancer, not ARPed: the VIP is
   * 192.168.12.100 (outside every lab subnet), the client has a route VIP/32 via the balancer's
   * capture address, and the VIP is on the balancer's own lo (lbd's nftables guard keeps the
   * kernel away from it; lbd does not announce a VIP on lo). The real servers have it on lo as
   * always. accept_local=1 on the balancer lets the kernel forward the real servers' replies,
   * whose source (the VIP) is one of its own addresses.
   */
  routedVip?: boolean;
  /** routed only: MTU of the router's link toward the client (the client keeps 1500); default 1400 */
  routerClientMtu?: number;
  /**
   * two-nic only: MTU of the balancer's egress interface (eth1), default the kernel's (1500). The
   * real servers keep 1500 and advertise a full MSS, so the client's full-sized frames do not fit
   * lbd's egress (lbd answers them with ICMP "fragmentation needed"); their own replies larger
   * than this would not reach the balancer either (veth drops them), so keep tests to uploads.
   */
  egressMtu?: number;
  /** last octets of the real servers on 10.0.10.0/24; default [40, 111] */
  rsOctets?: number[];
  /**
   * not with two-nic: last octets of more balancers on 10.0.10.0/24, beside the first (e.g. [31]):
   * namespaces `<prefix>-lb<octet>`, each with eth0 on br0, set up as the first balancer's (no VIP,
   * GRO as balancerGro says); ns.extraBalancers / addr.extraBalancers name them. Default none.
   */
  extraBalancers?: number[];
  /**
   * routed with extraBalancers only, default false. true = the router learns the VIP by BGP from
   * every balancer (BIRD 2 with BFD, running contrib/bird/*.conf) and routes it by ECMP with an L4
   * hash: lab/bgp.ts. createLab returns when every BGP session is up; lab.bgp is the handle.
   */
  bgp?: boolean;
  /** UDP echo port on the VIP; default 5353 */
  udpPort?: number;
  /** start Apache on every real server; default true */
  apache?: boolean;
  /** start the UDP echo server on every real server; default true */
  udpEcho?: boolean;
  /** size of /big.bin in MiB; default 20 */
  bigFileMB?: number;
  /** let the kernel pick random MACs instead of the readable fixed ones; default false */
  randomMacs?: boolean;
  /** keep os.tmpdir()/<prefix> (configs, logs) after teardown; default false (or LAB_KEEP_FILES=1) */
  keepFiles?: boolean;
  /** how long to wait for Apache/UDP echo to come up; default 15000 ms */
  readyTimeoutMs?: number;
  /** progress log; default silent unless LAB_DEBUG=1 (then stderr) */
  log?: (msg: string) => void;
}

export interface ExecOptions {
  input?: string | Buffer;
  timeoutMs?: number; // default 30000
  env?: NodeJS.ProcessEnv;
}

/** status is null when killed by a signal (e.g. the timeout) */
export type ExecResult = RunResult;

export interface LabSpawnOptions {
  /** default: stdout+stderr appended to <dir>/logs/<name>.log, stdin ignored */
  stdio?: StdioOptions;
  /** log file name (without .log) when stdio is not given; default the command's basename + counter */
  name?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** keep the event loop alive while the child runs; default false (child.unref()) */
  ref?: boolean;
}

export interface KillOptions {
  /** first signal, default SIGTERM */
  signal?: NodeJS.Signals;
  /** how long to wait after the first signal before SIGKILL; default 3000 ms */
  graceMs?: number;
}

export interface LabDescription {
  prefix: string;
  shape: LabShape;
  dir: string;
  ns: Lab['ns'];
  addr: Lab['addr'];
  ifaces: Lab['ifaces'];
  macs: Lab['macs'];
  names: string[];
  ports: { http: number; httpStock: number; udp: number };
  pids: { apache: (number | null)[]; udpEcho: (number | null)[] };
  bigFile: { path: string; bytes: number };
}

export interface Lab {
  readonly prefix: string;
  readonly shape: LabShape;
  /** os.tmpdir()/<prefix>: per-RS Apache config/htdocs/logs in rs<octet>/, process logs in logs/ */
  readonly dir: string;
  /**
   * A directory in memory (/dev/shm/<prefix>; \`dir\` where /dev/shm is no tmpfs) for what lbd
   * keeps on a balancer's /run: its state file. A disk-backed one is slower to write (writeback
   * makes written pages fault again), which is not what a balancer runs with.
   */
  readonly memDir: string;
  /** router: the routed shape's router namespace (else undefined) */
  readonly ns: {
    client: string;
    balancer: string;
    rs: string[];
    bridge: string;
    router?: string;
    /** LabOptions.extraBalancers' namespaces */
    extraBalancers?: string[];
  };
  readonly addr: {
    client: string;
    /** the balancer's address on the capture side (eth0) */
    balancer: string;
    /** the balancer's address on the real servers' segment (same as balancer in one-nic) */
    balancerEgress: string;
    rs: string[];
    /** LabOptions.extraBalancers' addresses (eth0), in the same order as ns.extraBalancers */
    extraBalancers?: string[];
    vip: string;
    /** gateway the client would use (two-nic: balancer eth0), null in one-nic */
    clientGateway: string | null;
  };
  /** interface names INSIDE the namespaces */
  readonly ifaces: { client: string; balancerCapture: string; balancerEgress: string; rs: string };
  /** MACs read back from the interfaces after setup */
  readonly macs: { client: string; balancerCapture: string; balancerEgress: string; rs: string[] };
  /** what each real server's index.html says, without the newline: 'server40', 'server111' */
  readonly names: string[];
  readonly ports: { http: number; httpStock: number; udp: number };
  readonly alive: boolean;
  /** LabOptions.bgp: the BIRDs and the router's route to the VIP (lab/bgp.ts) */
  readonly bgp?: BgpLab;

  /** run a command in a namespace (ip netns exec); returns stdout, throws LabExecError on failure */
  exec(ns: string, cmd: Command, opts?: ExecOptions): string;
  /** same, never throws on a non-zero exit */
  tryExec(ns: string, cmd: Command, opts?: ExecOptions): ExecResult;
  /** start a long-running process in a namespace, in its own session/process group; tracked for teardown */
  spawn(ns: string, cmd: Command, opts?: LabSpawnOptions): ChildProcess;
  /** stop a process started with spawn() (its whole process group), waits until it is gone */
  kill(proc: ChildProcess | number, opts?: KillOptions): void;

  apachePid(i: number): number | null;
  /** stop real server i's Apache (by the PID in its PidFile); graceful = SIGWINCH (graceful-stop) */
  stopApache(i: number, opts?: { graceful?: boolean; timeoutMs?: number }): void;
  /** start it again (no-op if running); returns when it answers on its own address */
  startApache(i: number): void;
  stopUdpEcho(i: number): void;
  startUdpEcho(i: number): void;

  describe(): LabDescription;
  /** idempotent; throws an aggregated error if something could not be removed (after trying everything) */
  teardown(): void;
}

export class LabExecError extends Error {
  constructor(
    readonly cmd: string[],
    readonly result: ExecResult,
  ) {
    super(`command failed (${exitText(result)}): ${cmd.join(' ')}${result.stderr.trim() ? `\n${result.stderr.trim()}` : ''}`);
    this.name = 'LabExecError';
  }
}

export const APACHE_BIN = declaredPath('apache2')!;
export const APACHE_MODULES = '/usr/lib/apache2/modules';
const UDP_ECHO_JS = path.join(__dirname, 'udp-echo.js');
const PREFIX_RE = /^[A-Za-z0-9_]{2,40}$/;

// ───────────────────────────── small synchronous helpers ─────────────────────────────

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
export function sleepMs(ms: number): void {
  if (ms > 0) Atomics.wait(sleepCell, 0, 0, ms);
}

/** run a program (no shell); never throws on a non-zero exit; a missing one throws, naming its package */
export function run(file: ProgramName, args: string[], opts: ExecOptions = {}): ExecResult {
  return runSync(file, args, { input: opts.input, timeoutMs: opts.timeoutMs ?? 30000, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** run a program, throw LabExecError on a non-zero exit, return stdout */
export function runOk(file: ProgramName, args: string[], opts: ExecOptions = {}): string {
  const r = run(file, args, opts);
  if (r.status !== 0) throw new LabExecError([file, ...args], r);
  return r.stdout;
}

/** names of all network namespaces (ip netns list) */
export function listNamespaces(): string[] {
  const out = runOk('ip', ['-j', 'netns', 'list']).trim();
  if (!out) return [];
  return (JSON.parse(out) as { name: string }[]).map((n) => n.name);
}

/** PIDs of processes living in a named network namespace (ip netns pids), [] if it is gone */
export function namespacePids(ns: string): number[] {
  const r = run('ip', ['netns', 'pids', ns]);
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 1 && n !== process.pid);
}

interface ProcStat {
  pid: number;
  state: string;
  pgrp: number;
  start: number; // starttime, clock ticks since boot
}

export function procStat(pid: number): ProcStat | null {
  let s: string;
  try {
    s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { pid, state: f[0], pgrp: Number(f[2]), start: Number(f[19]) };
}

/** true when the process exists and is not a zombie */
export function isLive(pid: number, start?: number): boolean {
  const st = procStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  return start === undefined || st.start === start;
}

/**
 * Live (non-zombie) members of the process group led by `leader`, a process we started with its
 * own session. If the leader's PID now belongs to a different process (PID reuse), nothing.
 */
export function groupMembers(leader: number, leaderStart: number): number[] {
  const lst = procStat(leader);
  if (lst && lst.start !== leaderStart) return [];
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    const c = d.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const st = procStat(Number(d));
    if (!st || st.pgrp !== leader || st.state === 'Z' || st.state === 'X') continue;
    if (st.start < leaderStart) continue;
    out.push(st.pid);
  }
  return out;
}

function signalPids(pids: number[], sig: NodeJS.Signals): void {
  for (const p of pids) {
    if (!(p > 1) || p === process.pid) continue;
    try {
      process.kill(p, sig);
    } catch {
      /* gone already */
    }
  }
}

function waitUntil(pred: () => boolean, timeoutMs: number, stepMs = 20): boolean {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (pred()) return true;
    if (Date.now() >= end) return false;
    sleepMs(stepMs);
  }
}

/** SIGTERM (or sig) each PID, wait, SIGKILL what is left; by PID only */
export function killPids(pids: number[], graceMs = 2000, sig: NodeJS.Signals = 'SIGTERM'): number[] {
  const starts = new Map<number, number>();
  for (const p of pids) {
    const st = procStat(p);
    if (st && st.state !== 'Z') starts.set(p, st.start);
  }
  const alive = (): number[] => [...starts].filter(([p, s]) => isLive(p, s)).map(([p]) => p);
  signalPids(alive(), sig);
  if (!waitUntil(() => alive().length === 0, graceMs)) {
    signalPids(alive(), 'SIGKILL');
    waitUntil(() => alive().length === 0, 2000);
  }
  return alive();
}

function macFor(segment: number, octet: number): string {
  const d = String(octet).padStart(4, '0');
  return `02:00:00:${String(segment).padStart(2, '0')}:${d.slice(0, 2)}:${d.slice(2)}`;
}

function defaultLog(): (msg: string) => void {
  return process.env.LAB_DEBUG ? (m) => process.stderr.write(`[lab] ${m}\n`) : () => undefined;
}

// ───────────────────────────── teardown on exit / signals ─────────────────────────────

const liveLabs = new Set<LabImpl>();
let handlersInstalled = false;

function teardownAll(): void {
  for (const l of [...liveLabs]) {
    try {
      l.teardown();
    } catch (e) {
      process.stderr.write(`[lab] teardown of ${l.prefix}: ${(e as Error).message}\n`);
    }
  }
}

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
function onSignal(sig: NodeJS.Signals): void {
  teardownAll();
  uninstallHandlers();
  // Die of the signal as if we had never caught it, unless the host program handles it itself.
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}
const signalHandlers = new Map<NodeJS.Signals, () => void>(SIGNALS.map((s) => [s, () => onSignal(s)]));

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', teardownAll);
  for (const [s, h] of signalHandlers) process.on(s, h);
}
function uninstallHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.removeListener('exit', teardownAll);
  for (const [s, h] of signalHandlers) process.removeListener(s, h);
}

// ───────────────────────────── the lab ─────────────────────────────

interface Tracked {
  pid: number;
  start: number;
  ns: string;
  cmd: Command;
  child: ChildProcess;
}

interface HostIface {
  name: string; // inside the host namespace
  port: string; // bridge port name inside the bridge namespace
  bridge: string;
  addr: string; // a.b.c.d
  segment: number; // 0 = 10.0.10.0/24, 1 = 192.168.11.0/24, 3 = 192.168.13.0/24 (routed: the client's)
  mac: string;
  mtu?: number;
}

interface Host {
  ns: string;
  ifaces: HostIface[];
  sysctls: string[];
  batch: string[]; // extra ip -batch lines after addresses/links are up
}

interface RealServer {
  octet: number;
  name: string;
  ns: string;
  addr: string;
  dir: string;
  conf: string;
  pidFile: string;
  apache: Tracked | null;
  udp: Tracked | null;
}

class LabImpl implements Lab {
  readonly prefix: string;
  readonly shape: LabShape;
  readonly dir: string;
  readonly memDir: string;
  readonly ns: Lab['ns'];
  readonly addr: Lab['addr'];
  readonly ifaces: Lab['ifaces'];
  macs: Lab['macs'];
  readonly names: string[];
  readonly ports: Lab['ports'];
  private readonly opts: LabOptions;
  private readonly log: (msg: string) => void;
  private readonly tracked = new Map<number, Tracked>();
  /** PIDs we started and already stopped (kill() on them again is a no-op) */
  private readonly retired = new Set<number>();
  private readonly servers: RealServer[];
  private readonly createdNs: string[] = [];
  private spawnCounter = 0;
  private state: 'alive' | 'down' = 'alive';
  private readonly bigFileBytes: number;
  bgp?: BgpLab;

  constructor(prefix: string, opts: LabOptions) {
    this.opts = opts;
    this.prefix = prefix;
    this.shape = opts.shape ?? 'one-nic';
    this.log = opts.log ?? defaultLog();
    this.dir = path.join(os.tmpdir(), prefix);
    this.memDir = labMemDir(prefix) ?? this.dir;
    const octets = opts.rsOctets ?? [40, 111];
    const two = this.shape === 'two-nic';
    if (opts.routedVip && !two) throw new Error("routedVip: only with shape 'two-nic'");
    const routed = this.shape === 'routed';
    this.ns = {
      bridge: `${prefix}-br`,
      client: `${prefix}-client`,
      balancer: `${prefix}-lb`,
      rs: octets.map((o) => `${prefix}-rs${o}`),
      ...(routed ? { router: `${prefix}-router` } : {}),
      ...(opts.extraBalancers?.length ? { extraBalancers: opts.extraBalancers.map((o) => `${prefix}-lb${o}`) } : {}),
    };
    this.addr = {
      client: two ? '192.168.11.50' : routed ? '192.168.13.50' : '10.0.10.50',
      balancer: two ? '192.168.11.30' : '10.0.10.30',
      balancerEgress: '10.0.10.30',
      rs: octets.map((o) => `10.0.10.${o}`),
      ...(opts.extraBalancers?.length ? { extraBalancers: opts.extraBalancers.map((o) => `10.0.10.${o}`) } : {}),
      vip: two ? (opts.routedVip ? '192.168.12.100' : '192.168.11.100') : '10.0.10.100',
      clientGateway: two ? '192.168.11.30' : routed ? '192.168.13.1' : null,
    };
    this.ifaces = { client: 'eth0', balancerCapture: 'eth0', balancerEgress: two ? 'eth1' : 'eth0', rs: 'eth0' };
    this.macs = { client: '', balancerCapture: '', balancerEgress: '', rs: [] };
    this.names = octets.map((o) => `server${o}`);
    this.ports = { http: 80, httpStock: 8080, udp: opts.udpPort ?? 5353 };
    this.bigFileBytes = Math.round((opts.bigFileMB ?? 20) * 1024 * 1024);
    this.servers = octets.map((o, i) => {
      const d = path.join(this.dir, `rs${o}`);
      return {
        octet: o,
        name: `server${o}`,
        ns: this.ns.rs[i],
        addr: this.addr.rs[i],
        dir: d,
        conf: path.join(d, 'httpd.conf'),
        pidFile: path.join(d, 'run', 'httpd.pid'),
        apache: null,
        udp: null,
      };
    });
  }

  get alive(): boolean {
    return this.state === 'alive';
  }

  // ── build ──

  build(): void {
    const t0 = Date.now();
    const two = this.shape === 'two-nic';
    const octets = this.servers.map((s) => s.octet);
    for (const o of octets) {
      if (!Number.isInteger(o) || o < 1 || o > 254 || [30, 50, 100].includes(o)) {
        throw new Error(`rsOctets: ${o} is not usable (1..254, not 30/50/100)`);
      }
    }
    if (new Set(octets).size !== octets.length) throw new Error('rsOctets: duplicates');
    const extraLbs = this.opts.extraBalancers ?? [];
    if (extraLbs.length && two) throw new Error("extraBalancers: not with shape 'two-nic'");
    for (const o of extraLbs) {
      if (!Number.isInteger(o) || o < 2 || o > 254 || [30, 50, 100, ...octets].includes(o)) {
        throw new Error(`extraBalancers: ${o} is not usable (2..254, not 30/50/100 nor a real server's)`);
      }
    }
    if (new Set(extraLbs).size !== extraLbs.length) throw new Error('extraBalancers: duplicates');

    fs.mkdirSync(path.join(this.dir, 'logs'), { recursive: true, mode: 0o755 });
    // Not recursive: /dev/shm is everyone's, and a directory (or link) someone made there first is not ours.
    if (this.memDir !== this.dir) fs.mkdirSync(this.memDir, { mode: 0o755 });
    fs.chmodSync(this.dir, 0o755);

    // hosts and their interfaces
    const front = two ? 'br-front' : 'br0';
    const back = two ? 'br-back' : 'br0';
    const frontSeg = two ? 1 : 0;
    const routed = this.shape === 'routed';
    const iface = (host: string, name: string, bridge: string, addr: string, segment: number, mtu?: number): HostIface => ({
      name,
      port: `${host}-${name}`,
      bridge,
      addr,
      segment,
      mac: macFor(segment, Number(addr.split('.')[3])),
      mtu,
    });
    // routed: the client's segment, behind the router; everything else as one-nic
    const clientNet = '192.168.13.0/24';
    const viaRouter = routed ? [`route add ${clientNet} via 10.0.10.1`] : [];
    const egressMtu = two ? this.opts.egressMtu : undefined;
    const noV6 = ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
    const hosts: Host[] = [];
    hosts.push({
      ns: this.ns.client,
      ifaces: [iface('client', 'eth0', routed ? 'br-client' : front, this.addr.client, routed ? 3 : frontSeg)],
      sysctls: [...noV6],
      batch: two
        ? [`route add default via ${this.addr.clientGateway}`, ...(this.opts.routedVip ? [`route add ${this.addr.vip}/32 via ${this.addr.balancer}`] : [])]
        : routed
          ? [`route add default via ${this.addr.clientGateway}`]
          : [],
    });
    if (routed) {
      hosts.push({
        ns: this.ns.router!,
        ifaces: [
          iface('router', 'eth0', 'br-client', this.addr.clientGateway!, 3, this.opts.routerClientMtu ?? 1400),
          iface('router', 'eth1', 'br0', '10.0.10.1', 0),
        ],
        sysctls: [...noV6, 'net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'],
        batch: [],
      });
    }
    const lbIfaces = [iface('lb', 'eth0', front, this.addr.balancer, frontSeg)];
    if (two) lbIfaces.push(iface('lb', 'eth1', back, this.addr.balancerEgress, 0, egressMtu));
    hosts.push({
      ns: this.ns.balancer,
      ifaces: lbIfaces,
      sysctls: two
        ? [
            ...noV6,
            'net.ipv4.ip_forward=1',
            // replies from the real servers (source = VIP) arrive on eth1 while the VIP's subnet is on eth0
            'net.ipv4.conf.all.rp_filter=0',
            'net.ipv4.conf.default.rp_filter=0',
            'net.ipv4.conf.eth0.rp_filter=0',
            'net.ipv4.conf.eth1.rp_filter=0',
            // routedVip: the replies' source (the VIP) is a local address of the balancer
            ...(this.opts.routedVip ? ['net.ipv4.conf.all.accept_local=1', 'net.ipv4.conf.default.accept_local=1'] : []),
          ]
        : [...noV6, 'net.ipv4.ip_forward=0'],
      batch: [...(this.opts.routedVip ? [`address add ${this.addr.vip}/32 dev lo`] : []), ...viaRouter],
    });
    for (const [i, o] of extraLbs.entries()) {
      hosts.push({
        ns: this.ns.extraBalancers![i],
        ifaces: [iface(`lb${o}`, 'eth0', front, `10.0.10.${o}`, 0)],
        sysctls: [...noV6, 'net.ipv4.ip_forward=0'],
        batch: [...viaRouter],
      });
    }
    for (const s of this.servers) {
      hosts.push({
        ns: s.ns,
        ifaces: [iface(`rs${s.octet}`, 'eth0', back, s.addr, 0)],
        sysctls: [
          ...noV6,
          // the VIP lives on lo: never answer ARP for it, never use it as ARP source
          'net.ipv4.conf.all.arp_ignore=1',
          'net.ipv4.conf.all.arp_announce=2',
          'net.ipv4.conf.eth0.arp_ignore=1',
          'net.ipv4.conf.eth0.arp_announce=2',
          'net.ipv4.conf.lo.arp_ignore=1',
          'net.ipv4.conf.lo.arp_announce=2',
        ],
        batch: [`address add ${this.addr.vip}/32 dev lo`, ...(two ? [`route add default via ${this.addr.balancerEgress}`] : []), ...viaRouter],
      });
    }

    // namespaces (bridge first; registered before creation so a failure half-way is cleaned up)
    for (const ns of [this.ns.bridge, ...hosts.map((h) => h.ns)]) {
      this.createdNs.push(ns);
      runOk('ip', ['netns', 'add', ns]);
    }
    this.log(`namespaces created (${Date.now() - t0} ms)`);

    // bridges, inside the bridge namespace
    const bridges = two ? ['br-front', 'br-back'] : routed ? ['br0', 'br-client'] : ['br0'];
    runOk('ip', netnsArgs(this.ns.bridge, ['sysctl', '-q', '-w', ...noV6]));
    this.ipBatch(this.ns.bridge, ['link set lo up', ...bridges.flatMap((b) => [`link add ${b} type bridge stp_state 0 mcast_snooping 0`, `link set ${b} up`])]);

    // veth pairs, created directly in their namespaces (nothing ever appears in the root namespace)
    const all = hosts.flatMap((h) => h.ifaces.map((i) => ({ h, i })));
    this.ipBatch(
      null,
      all.map(({ h, i }) => `link add ${i.port} netns ${this.ns.bridge} type veth peer name ${i.name} netns ${h.ns}`),
    );
    this.ipBatch(
      this.ns.bridge,
      all.flatMap(({ i }) => [`link set ${i.port} master ${i.bridge}`, `link set ${i.port} up`]),
    );

    // hosts: sysctls before anything is up, then MACs, addresses, links, routes
    for (const h of hosts) {
      runOk('ip', netnsArgs(h.ns, ['sysctl', '-q', '-w', ...h.sysctls]));
      this.ipBatch(h.ns, [
        'link set lo up',
        ...h.ifaces.flatMap((i) => [
          ...(this.opts.randomMacs ? [] : [`link set dev ${i.name} address ${i.mac}`]),
          ...(i.mtu ? [`link set dev ${i.name} mtu ${i.mtu}`] : []),
          `address add ${i.addr}/24 dev ${i.name}`,
          `link set dev ${i.name} up`,
        ]),
        ...h.batch,
      ]);
    }
    if (this.opts.clientTxOffload === false) this.txOffloadOff(this.ns.client, ['eth0']);
    if (this.opts.balancerGro !== false) {
      for (const [ns, cap] of [[this.ns.balancer, this.ifaces.balancerCapture], ...(this.ns.extraBalancers ?? []).map((n) => [n, 'eth0'])]) {
        runOk('ip', netnsArgs(ns, ['ethtool', '-K', cap, 'gro', 'on']));
        const k = runOk('ip', netnsArgs(ns, ['ethtool', '-k', cap]));
        if (!/^generic-receive-offload: on/m.test(k)) throw new Error(`${ns} ${cap}: could not turn GRO on`);
      }
    }
    if (this.opts.balancerTxOffload === false)
      this.txOffloadOff(
        this.ns.balancer,
        lbIfaces.map((i) => i.name),
      );
    this.log(`network configured (${Date.now() - t0} ms)`);

    // read the MACs back
    this.macs = {
      client: this.readMac(this.ns.client, 'eth0'),
      balancerCapture: this.readMac(this.ns.balancer, 'eth0'),
      balancerEgress: this.readMac(this.ns.balancer, this.ifaces.balancerEgress),
      rs: this.servers.map((s) => this.readMac(s.ns, 'eth0')),
    };

    // real-server services
    for (const s of this.servers) this.writeServerFiles(s);
    if (this.opts.apache !== false) {
      for (const s of this.servers) this.spawnApache(s);
    }
    if (this.opts.udpEcho !== false) {
      for (const s of this.servers) this.spawnUdpEcho(s);
    }
    const timeout = this.opts.readyTimeoutMs ?? 15000;
    for (const s of this.servers) {
      if (s.apache) this.waitApache(s, timeout);
      if (s.udp) this.waitUdpEcho(s, timeout);
    }
    fs.writeFileSync(path.join(this.dir, 'lab.json'), JSON.stringify(this.describe(), null, 2) + '\n');
    this.log(`lab ${this.prefix} (${this.shape}) ready in ${Date.now() - t0} ms`);
  }

  private ipBatch(ns: string | null, lines: string[]): void {
    if (lines.length === 0) return;
    const args = ns ? ['-n', ns, '-batch', '-'] : ['-batch', '-'];
    runOk('ip', args, { input: lines.join('\n') + '\n' });
  }

  private txOffloadOff(ns: string, ifnames: string[]): void {
    for (const ifn of ifnames) {
      runOk('ip', netnsArgs(ns, ['ethtool', '-K', ifn, 'tx', 'off', 'tso', 'off']));
      // Newer kernels keep tx-tcp-accecn-segmentation on (ethtool's "tcp-segmentation-offload"
      // summary then still says on); harmless without tx checksumming, but turn it off if known.
      run('ip', netnsArgs(ns, ['ethtool', '-K', ifn, 'tx-tcp-accecn-segmentation', 'off']));
      const k = runOk('ip', netnsArgs(ns, ['ethtool', '-k', ifn]));
      for (const feat of ['tx-checksumming', 'tx-tcp-segmentation', 'tx-checksum-ip-generic']) {
        const m = new RegExp(`^\\s*${feat}: (\\w+)`, 'm').exec(k);
        if (m && m[1] !== 'off') throw new Error(`${ns} ${ifn}: could not turn ${feat} off (${m[1]})`);
      }
    }
  }

  private readMac(ns: string, ifn: string): string {
    const j = JSON.parse(runOk('ip', ['-j', '-n', ns, 'link', 'show', 'dev', ifn])) as { address: string }[];
    return j[0].address;
  }

  // ── real servers ──

  private writeServerFiles(s: RealServer): void {
    const htdocs = path.join(s.dir, 'htdocs');
    for (const d of [s.dir, htdocs, path.join(s.dir, 'run'), path.join(s.dir, 'logs')]) {
      fs.mkdirSync(d, { recursive: true });
      fs.chmodSync(d, 0o755);
    }
    fs.writeFileSync(path.join(htdocs, 'index.html'), `${s.name}\n`, { mode: 0o644 });
    // a large file for slow/long downloads (drain tests): deterministic content, not compressible away
    const big = path.join(htdocs, 'big.bin');
    const fd = fs.openSync(big, 'w', 0o644);
    try {
      const chunk = bigFileChunk();
      let left = this.bigFileBytes;
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        fs.writeSync(fd, chunk, 0, n);
        left -= n;
      }
    } finally {
      fs.closeSync(fd);
    }
    const mods = ['mpm_event', 'authz_core', 'dir', 'mime'];
    for (const m of mods) {
      const f = path.join(APACHE_MODULES, `mod_${m}.so`);
      if (!fs.existsSync(f)) throw new Error(`Apache module missing: ${f}`);
    }
    const hasMimeTypes = fs.existsSync('/etc/mime.types');
    const run_ = path.join(s.dir, 'run');
    const conf = [
      `# generated by lbd lab ${this.prefix} for ${s.name} (${s.addr}) — runs in namespace ${s.ns}`,
      `ServerRoot "${s.dir}"`,
      `ServerName ${s.name}.lab`,
      `PidFile "${s.pidFile}"`,
      `DefaultRuntimeDir "${run_}"`,
      `Mutex file:${run_} default`,
      `ErrorLog "${path.join(s.dir, 'logs', 'error.log')}"`,
      'LogLevel warn',
      'Listen 80',
      ...mods.map((m) => `LoadModule ${m}_module ${APACHE_MODULES}/mod_${m}.so`),
      'User www-data',
      'Group www-data',
      hasMimeTypes ? 'TypesConfig /etc/mime.types' : '',
      // event MPM sized for wrk -c32 on 2 cores: 4 × 32 threads, all started up front,
      // keep-alive connections parked in the event loop, never recycled
      '<IfModule mpm_event_module>',
      '  StartServers 4',
      '  ServerLimit 4',
      '  ThreadLimit 32',
      '  ThreadsPerChild 32',
      '  MaxRequestWorkers 128',
      '  MinSpareThreads 32',
      '  MaxSpareThreads 128',
      '  MaxConnectionsPerChild 0',
      '  AsyncRequestWorkerFactor 4',
      '</IfModule>',
      'KeepAlive On',
      'MaxKeepAliveRequests 0',
      'KeepAliveTimeout 15',
      // a held or slow reader (lab/held-download.ts) may keep /big.bin open for minutes
      'Timeout 600',
      'ListenBacklog 1024',
      'EnableSendfile On',
      'TraceEnable Off',
      'ServerTokens Prod',
      `DocumentRoot "${htdocs}"`,
      '<Directory />',
      '  AllowOverride None',
      '  Require all denied',
      '</Directory>',
      `<Directory "${htdocs}">`,
      '  AllowOverride None',
      '  Require all granted',
      '</Directory>',
      'DirectoryIndex index.html',
      // Port 8080 keeps connections as Apache ships (Debian's apache2.conf): at most 100 requests
      // per connection, 5 s idle. The benchmark's "stock" workloads use it, so that every
      // hundredth request is a new flow, as a real client meets it.
      `Listen ${this.ports.httpStock}`,
      `<VirtualHost *:${this.ports.httpStock}>`,
      '  KeepAlive On',
      '  MaxKeepAliveRequests 100',
      '  KeepAliveTimeout 5',
      '</VirtualHost>',
      '',
    ].join('\n');
    fs.writeFileSync(s.conf, conf, { mode: 0o644 });
  }

  private spawnApache(s: RealServer): void {
    try {
      fs.unlinkSync(s.pidFile);
    } catch {
      /* not there */
    }
    // -DFOREGROUND: the process we spawn IS the Apache parent (its PID is in the PidFile too)
    const child = this.spawn(s.ns, ['apache2', '-f', s.conf, '-DFOREGROUND'], { name: `apache-rs${s.octet}` });
    s.apache = this.tracked.get(child.pid!) ?? null;
  }

  private waitApache(s: RealServer, timeoutMs: number): void {
    const t = s.apache;
    if (!t) throw new Error(`${s.name}: Apache not started`);
    const url = `http://${s.addr}/`;
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (!isLive(t.pid, t.start)) {
        throw new Error(
          `${s.name}: Apache exited during startup\n${this.tail(path.join(s.dir, 'logs', 'error.log'))}${this.tail(this.logPath(`apache-rs${s.octet}`))}`,
        );
      }
      const r = run('ip', netnsArgs(s.ns, ['curl', '-s', '--max-time', '1', url]));
      if (r.status === 0 && r.stdout === `${s.name}\n`) break;
      if (Date.now() > end) throw new Error(`${s.name}: Apache did not answer on ${url} within ${timeoutMs} ms`);
      sleepMs(50);
    }
    // the PidFile must name the process we started
    let pidFromFile = NaN;
    waitUntil(() => {
      try {
        pidFromFile = Number(fs.readFileSync(s.pidFile, 'utf8').trim());
      } catch {
        /* not yet */
      }
      return pidFromFile === t.pid;
    }, 2000);
    if (pidFromFile !== t.pid) throw new Error(`${s.name}: PidFile says ${pidFromFile}, we started ${t.pid}`);
  }

  private spawnUdpEcho(s: RealServer): void {
    const name = `udp-echo-rs${s.octet}`;
    try {
      fs.unlinkSync(this.logPath(name));
    } catch {
      /* first time */
    }
    const child = this.spawn(s.ns, ['node', UDP_ECHO_JS, 'serve', '--bind', this.addr.vip, '--port', String(this.ports.udp), '--name', s.name], { name });
    s.udp = this.tracked.get(child.pid!) ?? null;
  }

  private waitUdpEcho(s: RealServer, timeoutMs: number): void {
    const t = s.udp!;
    const log = this.logPath(`udp-echo-rs${s.octet}`);
    const ok = waitUntil(() => {
      let txt = '';
      try {
        txt = fs.readFileSync(log, 'utf8');
      } catch {
        /* not yet */
      }
      if (txt.includes('listening ')) return true;
      if (!isLive(t.pid, t.start)) throw new Error(`${s.name}: UDP echo exited\n${txt}`);
      return false;
    }, timeoutMs);
    if (!ok) throw new Error(`${s.name}: UDP echo did not start within ${timeoutMs} ms`);
  }

  private server(i: number): RealServer {
    const s = this.servers[i];
    if (!s) throw new RangeError(`no real server ${i} (have ${this.servers.length})`);
    return s;
  }

  private assertAlive(): void {
    if (this.state !== 'alive') throw new Error(`lab ${this.prefix} is torn down`);
  }

  apachePid(i: number): number | null {
    const t = this.server(i).apache;
    return t && isLive(t.pid, t.start) ? t.pid : null;
  }

  stopApache(i: number, opts: { graceful?: boolean; timeoutMs?: number } = {}): void {
    this.assertAlive();
    const s = this.server(i);
    const t = s.apache;
    if (!t) return;
    let pid = t.pid;
    try {
      pid = Number(fs.readFileSync(s.pidFile, 'utf8').trim()) || t.pid;
    } catch {
      /* no PidFile: use what we spawned */
    }
    if (pid !== t.pid) throw new Error(`${s.name}: PidFile says ${pid}, we started ${t.pid}; not killing`);
    this.killTracked(t, { signal: opts.graceful ? 'SIGWINCH' : 'SIGTERM', graceMs: opts.timeoutMs ?? (opts.graceful ? 30000 : 5000) });
    s.apache = null;
  }

  startApache(i: number): void {
    this.assertAlive();
    const s = this.server(i);
    if (s.apache && isLive(s.apache.pid, s.apache.start)) return;
    this.spawnApache(s);
    this.waitApache(s, this.opts.readyTimeoutMs ?? 15000);
  }

  stopUdpEcho(i: number): void {
    this.assertAlive();
    const s = this.server(i);
    if (s.udp) this.killTracked(s.udp, { graceMs: 2000 });
    s.udp = null;
  }

  startUdpEcho(i: number): void {
    this.assertAlive();
    const s = this.server(i);
    if (s.udp && isLive(s.udp.pid, s.udp.start)) return;
    this.spawnUdpEcho(s);
    this.waitUdpEcho(s, this.opts.readyTimeoutMs ?? 15000);
  }

  // ── processes ──

  private checkNs(ns: string): void {
    if (!this.createdNs.includes(ns)) throw new Error(`${ns} is not a namespace of lab ${this.prefix}`);
  }

  tryExec(ns: string, cmd: Command, opts: ExecOptions = {}): ExecResult {
    this.assertAlive();
    this.checkNs(ns);
    if (cmd.length === 0) throw new Error('empty command');
    return run('ip', netnsArgs(ns, cmd), opts);
  }

  exec(ns: string, cmd: Command, opts: ExecOptions = {}): string {
    const r = this.tryExec(ns, cmd, opts);
    if (r.status !== 0) throw new LabExecError(['ip', 'netns', 'exec', ns, ...cmd], r);
    return r.stdout;
  }

  private logPath(name: string): string {
    return path.join(this.dir, 'logs', `${name}.log`);
  }

  private tail(file: string, n = 20): string {
    try {
      return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
    } catch {
      return '';
    }
  }

  spawn(ns: string, cmd: Command, opts: LabSpawnOptions = {}): ChildProcess {
    this.assertAlive();
    this.checkNs(ns);
    if (cmd.length === 0) throw new Error('empty command');
    let stdio: StdioOptions = opts.stdio ?? 'ignore';
    let fd: number | null = null;
    if (!opts.stdio) {
      const name = (opts.name ?? `${path.basename(cmd[0])}-${++this.spawnCounter}`).replace(/[^A-Za-z0-9_.-]/g, '_');
      fd = fs.openSync(this.logPath(name), 'a', 0o644);
      stdio = ['ignore', fd, fd];
    }
    let child: ChildProcess;
    try {
      // `ip netns exec` execs the command: the PID we get is the command's. detached = setsid().
      child = spawnProgram('ip', netnsArgs(ns, cmd), { detached: true, stdio, env: opts.env, cwd: opts.cwd });
    } finally {
      if (fd !== null) fs.closeSync(fd);
    }
    if (child.pid === undefined) throw new Error(`could not start ${cmd.join(' ')} in ${ns}`);
    const st = procStat(child.pid);
    const t: Tracked = { pid: child.pid, start: st ? st.start : 0, ns, cmd, child };
    this.tracked.set(child.pid, t);
    child.on('error', () => undefined);
    if (!opts.ref) child.unref();
    this.log(`spawned ${child.pid} in ${ns}: ${cmd.join(' ')}`);
    return child;
  }

  kill(proc: ChildProcess | number, opts: KillOptions = {}): void {
    const pid = typeof proc === 'number' ? proc : proc.pid;
    const t = pid === undefined ? undefined : this.tracked.get(pid);
    if (!t) {
      if (pid !== undefined && this.retired.has(pid)) return; // already stopped (or the lab is down)
      throw new Error(`process ${pid} was not started by lab ${this.prefix}`);
    }
    this.killTracked(t, opts);
  }

  private killTracked(t: Tracked, opts: KillOptions = {}): void {
    const members = (): number[] => groupMembers(t.pid, t.start);
    if (members().length > 0) {
      // first signal to the leader (Apache's parent stops its own children), or to the
      // leftovers if the leader is already gone
      signalPids(isLive(t.pid, t.start) ? [t.pid] : members(), opts.signal ?? 'SIGTERM');
      if (!waitUntil(() => members().length === 0, opts.graceMs ?? 3000)) {
        signalPids(members(), 'SIGTERM');
        if (!waitUntil(() => members().length === 0, 300)) {
          signalPids(members(), 'SIGKILL');
          waitUntil(() => members().length === 0, 2000);
        }
      }
    }
    const left = members();
    if (left.length > 0) throw new Error(`could not stop process group ${t.pid} (${t.cmd.join(' ')}): ${left.join(' ')} left`);
    this.tracked.delete(t.pid);
    this.retired.add(t.pid);
    this.log(`stopped ${t.pid}: ${t.cmd.join(' ')}`);
  }

  describe(): LabDescription {
    return {
      prefix: this.prefix,
      shape: this.shape,
      dir: this.dir,
      ns: this.ns,
      addr: this.addr,
      ifaces: this.ifaces,
      macs: this.macs,
      names: this.names,
      ports: this.ports,
      pids: {
        apache: this.servers.map((_, i) => this.apachePid(i)),
        udpEcho: this.servers.map((s) => (s.udp && isLive(s.udp.pid, s.udp.start) ? s.udp.pid : null)),
      },
      bigFile: { path: '/big.bin', bytes: this.bigFileBytes },
    };
  }

  // ── teardown ──

  teardown(): void {
    if (this.state === 'down') return;
    this.state = 'down';
    const problems: string[] = [];
    // 1. processes we started: SIGTERM to every group at once, then wait, then SIGKILL
    const ts = [...this.tracked.values()];
    const groups = (): number[] => ts.flatMap((t) => groupMembers(t.pid, t.start));
    signalPids(
      ts.filter((t) => isLive(t.pid, t.start)).map((t) => t.pid),
      'SIGTERM',
    );
    if (!waitUntil(() => groups().length === 0, 3000)) {
      signalPids(groups(), 'SIGKILL');
      if (!waitUntil(() => groups().length === 0, 2000)) problems.push(`processes survived SIGKILL: ${groups().join(' ')}`);
    }
    for (const t of ts) this.retired.add(t.pid);
    this.tracked.clear();
    // 2. anything else still living in our namespaces (e.g. a daemon a test started itself):
    //    a process keeps a deleted namespace — and its interfaces — alive
    const strays = this.createdNs.flatMap((ns) => namespacePids(ns));
    if (strays.length > 0) {
      this.log(`killing processes left in the lab's namespaces: ${strays.join(' ')}`);
      const left = killPids(strays, 2000);
      if (left.length > 0) problems.push(`processes left in lab namespaces: ${left.join(' ')}`);
    }
    // 3. namespaces (deleting a namespace destroys its veth ends, their peers and the bridges)
    const existing = new Set(listNamespacesSafe());
    for (const ns of [...this.createdNs].reverse()) {
      if (!existing.has(ns)) continue;
      const r = run('ip', ['netns', 'del', ns]);
      if (r.status !== 0) problems.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
    }
    // 4. files
    if (!(this.opts.keepFiles || process.env.LAB_KEEP_FILES)) {
      try {
        fs.rmSync(this.dir, { recursive: true, force: true });
      } catch (e) {
        problems.push(`rm ${this.dir}: ${(e as Error).message}`);
      }
      try {
        if (this.memDir !== this.dir) fs.rmSync(this.memDir, { recursive: true, force: true });
      } catch (e) {
        problems.push(`rm ${this.memDir}: ${(e as Error).message}`);
      }
    }
    liveLabs.delete(this);
    if (liveLabs.size === 0) uninstallHandlers();
    this.log(`lab ${this.prefix} torn down`);
    if (problems.length > 0) throw new Error(`teardown of lab ${this.prefix}: ${problems.join('; ')}`);
  }

  register(): void {
    liveLabs.add(this);
    installHandlers();
  }
}

function listNamespacesSafe(): string[] {
  try {
    return listNamespaces();
  } catch {
    return [];
  }
}

export function randomPrefix(): string {
  return `lbd${randomBytes(3).toString('hex')}`;
}

function preflight(): void {
  if (process.getuid && process.getuid() !== 0) throw new Error('the lab needs root (network namespaces)');
  if (!fs.existsSync(UDP_ECHO_JS)) throw new Error(`${UDP_ECHO_JS} not found`);
  // what building a lab runs: a missing one fails here, naming its Debian package
  for (const p of ['apache2', 'ip', 'ethtool', 'curl', 'sysctl'] as const) programPath(p);
}

function preflightBgp(opts: LabOptions): void {
  if (!opts.bgp) return;
  if (opts.shape !== 'routed' || !opts.extraBalancers?.length) throw new Error("bgp: only with shape 'routed' and extraBalancers");
  for (const p of ['bird', 'birdc'] as const) programPath(p);
}

/**
 * Build a lab. Synchronous: returns when every real server's Apache answers and every UDP echo
 * server is bound. On failure, whatever was built is torn down before the error is thrown.
 */
export function createLab(opts: LabOptions = {}): Lab {
  preflight();
  preflightBgp(opts);
  const prefix = opts.prefix ?? randomPrefix();
  if (!PREFIX_RE.test(prefix)) throw new Error(`bad lab prefix "${prefix}" (want [A-Za-z0-9_]{2,40})`);
  if (listNamespaces().some((n) => n.startsWith(`${prefix}-`))) {
    throw new Error(`namespaces with prefix ${prefix}- already exist (leftovers? node dist/lab/cli.js down ${prefix})`);
  }
  for (const dir of [path.join(os.tmpdir(), prefix), labMemDir(prefix)]) {
    if (dir !== null && fs.existsSync(dir)) throw new Error(`${dir} already exists (leftovers? node dist/lab/cli.js down ${prefix})`);
  }
  const lab = new LabImpl(prefix, opts);
  lab.register();
  try {
    lab.build();
    if (opts.bgp) lab.bgp = startBgp(lab, { log: opts.log ?? defaultLog() });
  } catch (e) {
    try {
      lab.teardown();
    } catch (e2) {
      process.stderr.write(`[lab] ${(e2 as Error).message}\n`);
    }
    throw e;
  }
  return lab;
}

/** createLab, run fn, always tear down (also when fn throws or rejects) */
export async function withLab<T>(opts: LabOptions, fn: (lab: Lab) => T | Promise<T>): Promise<T> {
  const lab = createLab(opts);
  let result: T;
  try {
    result = await fn(lab);
  } catch (e) {
    // The test's own error stays the one thrown; a teardown failure is only reported beside it.
    try {
      lab.teardown();
    } catch (te) {
      process.stderr.write(`[lab] ${(te as Error).message}\n`);
    }
    throw e;
  }
  lab.teardown();
  return result;
}

/** One MiB of the real servers' big.bin, which repeats it: deterministic, not compressible away. */
function bigFileChunk(): Buffer {
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 131 + 7) & 0xff;
  return chunk;
}

/** The sha256 of a real server's big.bin of `mb` MiB: what a download of it must match. */
export function bigFileSha256(mb: number): string {
  const chunk = bigFileChunk();
  const h = createHash('sha256');
  for (let i = 0; i < mb; i++) h.update(chunk);
  return h.digest('hex');
}

/** /dev/shm/<prefix> when /dev/shm is a tmpfs (Debian mounts one), else null. Not created here. */
export function labMemDir(prefix: string): string | null {
  try {
    // statfs f_type of tmpfs
    return fs.statfsSync('/dev/shm').type === 0x01021994 ? path.join('/dev/shm', prefix) : null;
  } catch {
    return null;
  }
}
