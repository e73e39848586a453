/**
 * SYN-flood defense: under table pressure, connections that never got established give way to
 * new ones; an established connection never does. IPVS's strategies are the model:
 *
 * - `secure_tcp`: while the defense is on, SYN_RECV entries live `defense_syn_recv_timeout`
 *   instead of 60 s (new ones when tracked; the sweeper shortens those already there), so the
 *   half-open entries of random spoofed sources age out in seconds.
 * - `drop_entry`: when the table is full, a new connection takes the place of an unestablished
 *   entry (NONE or SYN_RECV) instead of being dropped as table_full. That is what defeats a
 *   flood from one address cycling its ports, whose repeated SYNs keep refreshing their own
 *   entries so that none ever ages out. The victim is the entry due to expire soonest among a
 *   sample of the table (approximate LRU, as Redis evicts): the flood's entries, refreshed
 *   longest ago, go before a real client's, whose handshake completes in a round trip.
 *
 * SYN cookies, the kernel's answer, are impossible in Direct Routing: the real server, not the
 * balancer, answers the SYN. The defense's decisions are made here, in TypeScript, for both data
 * paths: the native path reads the same timeouts array and asks schedule() for every insert.
 *
 * Modes: `auto` (on while the table is at least `defense_threshold` percent full, off again
 * below three quarters of that), `on`, `off` (no shorter timeouts, no eviction: table_full).
 */
import { ConnState, SLOT_EMPTY } from './contract';
import type { ConnTable } from './conntable';

export type DefenseMode = 'auto' | 'on' | 'off';

export interface DefenseConfig {
  mode: DefenseMode;
  /** auto: on from this percentage of the table's capacity. */
  thresholdPercent: number;
  /** Seconds a SYN_RECV entry lives while the defense is on. */
  synRecvTimeout: number;
}

/** Entries looked at to choose a victim (the slots between them, empty, are passed over). */
const SAMPLE_ENTRIES = 32;

export class SynFloodDefense {
  /** On now (the shorter SYN_RECV timeout applies). */
  active = false;
  /** Times it turned on. */
  activations = 0;
  /** Unestablished entries evicted for a new connection. */
  evictions = 0;
  /** A full table offered no unestablished entry to evict (all established): the new flow was dropped. */
  noVictim = 0;
  /** xorshift32 state: where the next sample starts (deterministic: the differential test replays it). */
  private rng = 0x9e3779b9;

  constructor(public config: DefenseConfig) {}

  /**
   * The defense's state for a table `size`/`capacity` full; true when it changed. auto turns on
   * at the threshold and off below three quarters of it, so that a table hovering near the
   * threshold does not flap.
   */
  update(size: number, capacity: number): boolean {
    const c = this.config;
    let next: boolean;
    if (c.mode === 'on') next = true;
    else if (c.mode === 'off') next = false;
    else {
      // Integer arithmetic: size * 100 against threshold * capacity (no rounding at the edge).
      const percentTimesCapacity = size * 100;
      const on = c.thresholdPercent * capacity;
      next = this.active ? percentTimesCapacity * 4 >= on * 3 : percentTimesCapacity >= on;
    }
    if (next === this.active) return false;
    this.active = next;
    if (next) this.activations++;
    return true;
  }

  /** May a full table evict an unestablished entry for a new connection? */
  get evicts(): boolean {
    return this.config.mode !== 'off';
  }

  /**
   * The slot of the unestablished entry to evict for a new connection in a full table: among
   * SAMPLE_ENTRIES entries from a pseudo-random start, the NONE or SYN_RECV entry due to expire
   * first. -1 when the sample holds none (the table is full of established connections).
   */
  victim(conns: ConnTable): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    const mask = conns.mask;
    let i = this.rng & mask;
    let best = -1;
    let bestExpires = 0;
    // A full table is at most half the slots: the sample ends within about 2 × SAMPLE_ENTRIES
    // slots, and within one pass whatever the clusters.
    for (let seen = 0, n = 0; seen < SAMPLE_ENTRIES && n <= mask; n++, i = (i + 1) & mask) {
      if (conns.dest[i] === SLOT_EMPTY) continue;
      seen++;
      if (!unestablished(conns.state[i])) continue;
      // Unsigned: expiry times are u32 seconds.
      const e = conns.expires[i] >>> 0;
      if (best < 0 || e < bestExpires) {
        best = i;
        bestExpires = e;
      }
    }
    if (best < 0) this.noVictim++;
    return best;
  }
}

/** States of a connection that never completed its handshake: what the defense may evict. */
export function unestablished(state: number): boolean {
  return state === ConnState.None || state === ConnState.SynRecv;
}
