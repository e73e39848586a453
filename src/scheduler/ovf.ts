/**
 * Weighted overflow scheduling, as IPVS's ip_vs_ovf.c: new flows go to the available real
 * server with the highest weight until its active connections exceed its weight, then
 * overflow to the next highest, and so on. The weight is used as a connection budget.
 * Only active (established) connections count, so it suits TCP, not UDP.
 */
import { isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

class WeightedOverflow implements Scheduler {
  readonly name = 'ovf';

  schedule(dests: readonly Dest[], _flow: FlowInfo): Dest | null {
    let best: Dest | null = null;
    let bw = 0;
    for (let i = 0; i < dests.length; i++) {
      const d = dests[i];
      // Full only once active connections *exceed* the weight, exactly as the kernel's
      // `activeconns > w` test: a dest at activeConns == weight still takes one more flow,
      // so weight w ends up holding w + 1 established connections before the overflow.
      if (!isAvailable(d) || d.activeConns > d.weight) continue;
      // Strictly greater: on equal weights the earlier dest is filled first.
      if (d.weight > bw) {
        best = d;
        bw = d.weight;
      }
    }
    return best;
  }
}

export const ovf: SchedulerInfo = {
  name: 'ovf',
  description: 'weighted overflow: the highest-weight real server until its active connections exceed its weight',
  create: () => new WeightedOverflow(),
};
