/**
 * Weighted least-connection scheduling, as IPVS's ip_vs_wlc.c: the available real server
 * with the smallest overhead/weight ratio gets the new flow, so that connections spread in
 * proportion to the weights. This is IPVS's (and lbd's) default scheduler.
 */
import { isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';
import { connOverhead } from './lc';

class WeightedLeastConnection implements Scheduler {
  readonly name = 'wlc';

  schedule(dests: readonly Dest[], _flow: FlowInfo): Dest | null {
    const n = dests.length;
    // The first available dest is the one to beat.
    let i = 0;
    while (i < n && !isAvailable(dests[i])) i++;
    if (i === n) return null;
    let least = dests[i];
    let loh = connOverhead(least);
    for (i++; i < n; i++) {
      const d = dests[i];
      if (!isAvailable(d)) continue;
      const doh = connOverhead(d);
      // d is less loaded when doh/d.weight < loh/least.weight. Both weights are > 0, so
      // multiplying out gives loh*d.weight > doh*least.weight: exact integer arithmetic,
      // no division and no rounding. A JS number holds integers exactly up to 2^53, and
      // with weights up to 65535 that allows overheads past 10^11 (some 500 million
      // active connections per server), so the products are exact, as the kernel's 64-bit
      // ones are. Strictly greater: ties keep the earlier dest.
      if (loh * d.weight > doh * least.weight) {
        least = d;
        loh = doh;
      }
    }
    return least;
  }
}

export const wlc: SchedulerInfo = {
  name: 'wlc',
  description: 'weighted least connection: the fewest connections per unit of weight',
  create: () => new WeightedLeastConnection(),
};
