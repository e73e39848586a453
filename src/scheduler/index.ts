/**
 * The scheduler interface and registry. Like IPVS (net/netfilter/ipvs/ip_vs_*.c), each
 * scheduler is one small file that registers itself by name; the data plane calls
 * `schedule()` only for a new flow (a TCP SYN or a new UDP flow), never per packet.
 */

/** Dest flags (bit set), as IPVS's IP_VS_DEST_F_*. */
export const DEST_F_OVERLOAD = 1; // over its connection threshold: skip for new flows
export const DEST_F_DOWN = 2; // failed its health check

/** What a scheduler may read about a real server. Counters are kept by the data plane. */
export interface Dest {
  /** IPv4 address as an unsigned 32-bit integer (host order). */
  readonly addr: number;
  /** Configured weight; 0 = quiesced (no new flows). */
  readonly weight: number;
  readonly flags: number;
  /** ESTABLISHED TCP connections (ipvsadm ActiveConn). */
  readonly activeConns: number;
  /** Every other connection entry, UDP included (ipvsadm InActConn). */
  readonly inactConns: number;
}

/** The new flow being scheduled. Reused between calls: read it, do not keep it. */
export interface FlowInfo {
  srcAddr: number;
  srcPort: number;
}

export interface Scheduler {
  readonly name: string;
  /** Picks a real server for a new flow, or null when none can take one. */
  schedule(dests: readonly Dest[], flow: FlowInfo): Dest | null;
  /**
   * Called whenever the list, a weight or a flag changes (config, health, admin), so that
   * schedulers with precomputed state (wrr's gcd and max, sh's bucket table) can rebuild it.
   */
  update?(dests: readonly Dest[]): void;
}

export interface SchedulerInfo {
  name: string;
  description: string;
  create(): Scheduler;
}

const registry = new Map<string, SchedulerInfo>();

export function registerScheduler(info: SchedulerInfo): void {
  if (registry.has(info.name)) throw new Error(`scheduler "${info.name}" registered twice`);
  registry.set(info.name, info);
}

/** The scheduler names, in IPVS's documentation order. */
export const SCHEDULER_NAMES = ['rr', 'wrr', 'lc', 'wlc', 'sed', 'nq', 'sh', 'fo', 'ovf'] as const;

export function schedulerNames(): string[] {
  loadBuiltins();
  return [...registry.keys()];
}

export function getScheduler(name: string): SchedulerInfo | undefined {
  loadBuiltins();
  return registry.get(name);
}

export function createScheduler(name: string): Scheduler {
  const info = getScheduler(name);
  if (!info) throw new Error(`unknown scheduler "${name}" (${schedulerNames().join(', ')})`);
  return info.create();
}

/** Weight 0 (quiesced), a failed health check or overload all mean: no new flows. */
export function isAvailable(d: Dest): boolean {
  return d.weight > 0 && (d.flags & (DEST_F_OVERLOAD | DEST_F_DOWN)) === 0;
}

let builtinsLoaded = false;
function loadBuiltins(): void {
  if (builtinsLoaded) return;
  builtinsLoaded = true;
  for (const name of SCHEDULER_NAMES) require(`./${name}`);
}
