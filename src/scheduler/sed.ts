/**
 * Shortest expected delay scheduling, as IPVS's ip_vs_sed.c: a new flow goes where it would
 * be served soonest, taken as (active connections + 1) / weight, the +1 being the new flow
 * itself. Unlike wlc, inactive connections are ignored, and the +1 makes a heavy server win
 * over a light idle one: weights 10 and 1, both idle: 1/10 < 1/1.
 */
import { isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

/** The expected delay's numerator: the connections the server would have with this flow. */
export function sedOverhead(d: Dest): number {
  return d.activeConns + 1;
}

class ShortestExpectedDelay implements Scheduler {
  readonly name = 'sed';

  schedule(dests: readonly Dest[], _flow: FlowInfo): Dest | null {
    let least: Dest | null = null;
    let loh = 0;
    for (let i = 0; i < dests.length; i++) {
      const d = dests[i];
      if (!isAvailable(d)) continue;
      const doh = sedOverhead(d);
      // doh/d.weight < loh/least.weight, multiplied out over the two positive weights to
      // stay in integers; strictly, so that ties keep the earlier dest.
      if (least === null || loh * d.weight > doh * least.weight) {
        least = d;
        loh = doh;
      }
    }
    return least;
  }
}

export const sed: SchedulerInfo = {
  name: 'sed',
  description: 'shortest expected delay: the least (active connections + 1) / weight',
  create: () => new ShortestExpectedDelay(),
};
