/**
 * Weighted failover scheduling, as IPVS's ip_vs_fo.c: every new flow goes to the available
 * real server with the highest weight; the others are standbys, taking flows only when it
 * is down, overloaded or quiesced. Equal weights: the first in the list is the primary.
 */
import { isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

class WeightedFailover implements Scheduler {
  readonly name = 'fo';

  schedule(dests: readonly Dest[], _flow: FlowInfo): Dest | null {
    let best: Dest | null = null;
    let bw = 0; // isAvailable means weight > 0, so anything available beats 0
    for (let i = 0; i < dests.length; i++) {
      const d = dests[i];
      // Strictly greater: on equal weights the earlier dest stays the choice.
      if (isAvailable(d) && d.weight > bw) {
        best = d;
        bw = d.weight;
      }
    }
    return best;
  }
}

export const fo: SchedulerInfo = {
  name: 'fo',
  description: 'weighted failover: the available real server with the highest weight',
  create: () => new WeightedFailover(),
};
