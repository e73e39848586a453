/**
 * Least-connection scheduling, as IPVS's ip_vs_lc.c: the available real server with the
 * smallest connection overhead gets the new flow. Weights only matter as 0 = quiesced.
 */
import { isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

/**
 * IPVS's ip_vs_dest_conn_overhead: an established connection costs 256 times an inactive
 * one (a closing TCP connection or a UDP flow entry waiting to expire costs the server
 * little), so active connections dominate and inactive ones break ties.
 */
export function connOverhead(d: Dest): number {
  // Written as a product, not `<< 8`, so that it cannot wrap at 2^31.
  return d.activeConns * 256 + d.inactConns;
}

class LeastConnection implements Scheduler {
  readonly name = 'lc';

  schedule(dests: readonly Dest[], _flow: FlowInfo): Dest | null {
    let least: Dest | null = null;
    let loh = 0;
    for (let i = 0; i < dests.length; i++) {
      const d = dests[i];
      if (!isAvailable(d)) continue;
      const doh = connOverhead(d);
      // Strictly less: on a tie the first dest in the list keeps the flow, as in IPVS.
      if (least === null || doh < loh) {
        least = d;
        loh = doh;
      }
    }
    return least;
  }
}

export const lc: SchedulerInfo = {
  name: 'lc',
  description: 'least connection: the real server with the fewest connections',
  create: () => new LeastConnection(),
};
