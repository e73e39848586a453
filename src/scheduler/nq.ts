/**
 * Never-queue scheduling, as IPVS's ip_vs_nq.c: an idle real server (no active connection)
 * gets the new flow at once, whatever its weight, so that no flow waits behind another
 * while a server sits idle. With no idle server it is sed: the least (active + 1) / weight.
 */
import { isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';
import { sedOverhead } from './sed';

class NeverQueue implements Scheduler {
  readonly name = 'nq';

  schedule(dests: readonly Dest[], _flow: FlowInfo): Dest | null {
    let least: Dest | null = null;
    let loh = 0;
    for (let i = 0; i < dests.length; i++) {
      const d = dests[i];
      if (!isAvailable(d)) continue;
      // The first idle dest in list order wins, even over a better ratio seen before it.
      if (d.activeConns === 0) return d;
      const doh = sedOverhead(d);
      // As sed: doh/d.weight < loh/least.weight, multiplied out to stay in integers.
      if (least === null || loh * d.weight > doh * least.weight) {
        least = d;
        loh = doh;
      }
    }
    return least;
  }
}

export const nq: SchedulerInfo = {
  name: 'nq',
  description: 'never queue: an idle real server if there is one, else shortest expected delay',
  create: () => new NeverQueue(),
};
