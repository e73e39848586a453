/**
 * Round-robin scheduling, as IPVS's ip_vs_rr.c: each new flow goes to the next available
 * real server after the one picked last, whatever the weights (weight 0 still means
 * quiesced) and whatever the load.
 */
import { isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

class RoundRobin implements Scheduler {
  readonly name = 'rr';
  /** Index of the last pick; -1 is IPVS's "list head", i.e. start at the first dest. */
  private last = -1;
  /** The dest picked last, so that a change in the list does not shift the rotation. */
  private lastDest: Dest | null = null;

  schedule(dests: readonly Dest[], _flow: FlowInfo): Dest | null {
    const n = dests.length;
    if (n === 0) return null;
    let last = this.last;
    if (last >= 0 && (last >= n || dests[last] !== this.lastDest)) {
      // The list changed (rr needs no update(): this check is all it takes). Continue after
      // the same dest if it is still there; if it was removed, the dest that slid into its
      // slot comes next (IPVS's rr_del_dest steps its cursor back by one for this reason).
      const at = this.lastDest === null ? -1 : dests.indexOf(this.lastDest);
      last = at >= 0 ? at : Math.min(last, n) - 1;
    }
    // n steps from the one after `last`, wrapping, the last step being `last` itself: a lone
    // available dest keeps getting flows.
    for (let k = 1; k <= n; k++) {
      const i = (last + k) % n;
      const d = dests[i];
      if (isAvailable(d)) {
        this.last = i;
        this.lastDest = d;
        return d;
      }
    }
    return null;
  }
}

export const rr: SchedulerInfo = {
  name: 'rr',
  description: 'round robin: each new flow to the next available real server',
  create: () => new RoundRobin(),
};
