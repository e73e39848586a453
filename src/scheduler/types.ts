/**
 * What every scheduler shares: the interface the data plane calls, the view of a real server it
 * may read, and the availability rule. Kept apart from the registry (index.ts) so that each
 * scheduler file imports only this, and the registry imports every scheduler without a cycle.
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

/** Weight 0 (quiesced), a failed health check or overload all mean: no new flows. */
export function isAvailable(d: Dest): boolean {
  return d.weight > 0 && (d.flags & (DEST_F_OVERLOAD | DEST_F_DOWN)) === 0;
}
