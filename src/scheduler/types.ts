/**
 * What every scheduler shares: the interface the data plane calls, the view of a real server it
 * may read, and the availability rule. Kept apart from the registry (index.ts) so that each
 * scheduler file imports only this, and the registry imports every scheduler without a cycle.
 */
import type { SchedulerOptions } from './options';

/** Dest flags (bit set), as IPVS's IP_VS_DEST_F_*. */
export const DEST_F_OVERLOAD = 1; // over its connection threshold: skip for new flows
export const DEST_F_DOWN = 2; // failed its health check

/** What a scheduler may read about a real server. Counters are kept by the data plane. */
export interface Dest {
  /** IPv4 address as an unsigned 32-bit integer (host order). */
  readonly addr: number;
  /** Its port: with the address, who it is (mh places servers in this order and hashes both). */
  readonly port: number;
  /** Configured weight; 0 = quiesced (no new flows). */
  readonly weight: number;
  /**
   * IPVS's last_weight: the last positive weight it had (0 if it never had one). mh builds its
   * table from these, so that quiescing a server moves nobody else's clients; kept by the
   * server, not the scheduler, so that a new scheduler (other flags) builds the same table.
   */
  readonly lastWeight: number;
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
  /**
   * A TCP segment of a connection this balancer has no entry for (on_miss: hash): another
   * balancer started it, or this one lost it. Consistent schedulers (mh, sh) let its hashed
   * server take it even when quiesced (weight 0) or overloaded, which stop new connections
   * only; a server that is down still cannot.
   */
  continuing: boolean;
}

export interface Scheduler {
  readonly name: string;
  /** The options it was created with (flags, table size), as the service lists them. */
  readonly options?: SchedulerOptions;
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
  create(options?: SchedulerOptions): Scheduler;
}

/** Weight 0 (quiesced), a failed health check or overload all mean: no new flows. */
export function isAvailable(d: Dest): boolean {
  return d.weight > 0 && (d.flags & (DEST_F_OVERLOAD | DEST_F_DOWN)) === 0;
}

/**
 * May `d` take a flow? A new one: isAvailable(). One under way elsewhere (`continuing`: a
 * segment picked up by on_miss: hash, hashed to `d`): any server that is not down, since
 * quiescing (weight 0) and overload stop new connections, not existing ones. Schedulers with a
 * fallback do not ask this way: under a fallback, connections opened after a quiesce went
 * elsewhere, and a continuing flow must follow the rule a new one did (IPVS's).
 */
export function canTake(d: Dest, continuing: boolean): boolean {
  return continuing ? (d.flags & DEST_F_DOWN) === 0 : isAvailable(d);
}

/** Greatest common divisor of two positive integers (Euclid): wrr's and mh's weight steps. */
export function gcd(a: number, b: number): number {
  while (b !== 0) {
    const t = a % b;
    a = b;
    b = t;
  }
  return a;
}
