import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { HostSetupError } from '../errors';
import { ProgramFailedError, ProgramNotFoundError, runSync, type ProgramName, type RunOptions, type RunResult } from '../host/programs';

/** Every IPv4 address configured on this host (in lbd's network namespace). */
export function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4') out.add(a.address);
  }
  return out;
}

/** The first IPv4 address of an interface, or undefined when it has none. */
export function interfaceAddress(name: string): string | undefined {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address;
}

export interface GuardedService {
  vip: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

/**
 * The script for one of lbd's own nftables tables: a netdev table with a single ingress
 * chain on `device`. "add" then "delete" first clears a table a crashed lbd may have left,
 * without failing if there is none, so applying the script replaces the table atomically.
 * nft 1.0.6 rejects a rule and a closing brace on one line: one rule per line.
 */
export function netdevIngressTable(table: string, chain: string, device: string, policy: 'accept' | 'drop', rules: string[]): string {
  return [
    `add table netdev ${table}`,
    `delete table netdev ${table}`,
    `table netdev ${table} {`,
    `  chain ${chain} {`,
    `    type filter hook ingress device "${device}" priority 0; policy ${policy};`,
    ...rules.map((r) => `    ${r}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Runs an nft script; a failure is a HostSetupError with nft's own message. */
export function nftApply(script: string): void {
  const r = hostRun('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new HostSetupError(`nftables: ${r.stderr.trim() || exitText(r)}`);
}

/** Removes one of lbd's tables; one that is already gone is fine. */
export function nftDeleteTable(table: string): void {
  quietly('nft', ['delete', 'table', 'netdev', table]);
}

/**
 * Keeps the host's own kernel away from balanced traffic: without it the kernel answers a
 * local VIP's SYNs itself (RST, or a local listener) or, with ip_forward=1, routes the frames
 * a second time. One netdev-ingress rule per service on the capture interface drops exactly
 * VIP + port + protocol; it runs after packet taps, so libpcap still sees every frame, and
 * SSH, the metrics port and everything else stay untouched.
 */
export class HostGuard {
  static readonly TABLE = 'lbd';
  installed = false;

  constructor(private readonly captureInterface: string) {}

  script(services: GuardedService[]): string {
    const rules = services.map((s) => `ip daddr ${s.vip} ${s.protocol} dport ${s.port} drop`);
    return netdevIngressTable(HostGuard.TABLE, 'capture_ingress', this.captureInterface, 'accept', rules);
  }

  install(services: GuardedService[]): void {
    nftApply(this.script(services));
    this.installed = true;
  }

  remove(): void {
    if (!this.installed) return;
    nftApply(`delete table netdev ${HostGuard.TABLE}\n`);
    this.installed = false;
  }
}

/**
 * Makes the VIPs reachable from the balancer itself, which IPVS-DR cannot do: a veth pair
 * (lbd0, lbd0p) takes a /32 route per VIP, the host's own connections to a VIP leave through
 * lbd0 (ARP off: frames go out addressed to lbd0's own MAC), lbd captures them there
 * (outbound) and forwards them like any client's, and the real server answers the
 * balancer's own address directly. Whatever reaches the peer end is dropped by nftables, so
 * the kernel never routes it a second time. Offloads are off on lbd0 so that frames carry
 * full checksums and are no larger than the egress MTU. (A dummy interface would do, but
 * not every kernel has the dummy driver.)
 */
export class LocalAccess {
  static readonly IFACE = 'lbd0';
  static readonly PEER = 'lbd0p';
  static readonly TABLE = 'lbd_local';
  active = false;

  setup(vips: string[], sourceAddress: string, mtu: number): void {
    const dev = LocalAccess.IFACE;
    const peer = LocalAccess.PEER;
    this.teardown(true);
    run('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', peer]);
    this.active = true;
    run('ip', ['link', 'set', peer, 'mtu', String(mtu), 'up']);
    run('ip', ['link', 'set', dev, 'arp', 'off', 'mtu', String(mtu), 'up']);
    run('ethtool', ['-K', dev, 'tx', 'off', 'sg', 'off', 'tso', 'off', 'gso', 'off']);
    nftApply(netdevIngressTable(LocalAccess.TABLE, 'peer_ingress', peer, 'drop', []));
    this.routes(vips, sourceAddress);
  }

  /** One /32 route per VIP through lbd0, and no other. */
  routes(vips: string[], sourceAddress: string): void {
    run('ip', ['route', 'flush', 'dev', LocalAccess.IFACE]);
    for (const vip of vips) run('ip', ['route', 'replace', `${vip}/32`, 'dev', LocalAccess.IFACE, 'src', sourceAddress]);
  }

  /** Deleting the pair removes its routes too. */
  teardown(quiet = false): void {
    if (!this.active && !quiet) return;
    nftDeleteTable(LocalAccess.TABLE);
    quietly('ip', ['link', 'del', LocalAccess.IFACE]);
    this.active = false;
  }
}

function run(cmd: ProgramName, args: string[]): void {
  const r = hostRun(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new HostSetupError(`${cmd} ${args.join(' ')}: ${r.stderr.trim() || exitText(r)}`);
}

/** runSync; a program that is missing (the message names its package) or cannot start is a HostSetupError. */
function hostRun(cmd: ProgramName, args: string[], opts: RunOptions): RunResult {
  try {
    return runSync(cmd, args, opts);
  } catch (e) {
    if (e instanceof ProgramNotFoundError || e instanceof ProgramFailedError) throw new HostSetupError(e.message);
    throw e;
  }
}

/** Cleanup that may find nothing to clean (nor the program, on a host lbd never ran on). */
function quietly(cmd: ProgramName, args: string[]): void {
  try {
    runSync(cmd, args, { stdio: 'ignore' });
  } catch {
    /* not there */
  }
}

function exitText(r: { status: number | null; signal: string | null }): string {
  return r.status !== null ? `exit ${r.status}` : `signal ${r.signal}`;
}

/** The MTU of an interface, from sysfs. */
export function interfaceMtu(name: string): number {
  try {
    return Number(readFileSync(`/sys/class/net/${name}/mtu`, 'utf8').trim()) || 1500;
  } catch {
    return 1500;
  }
}
