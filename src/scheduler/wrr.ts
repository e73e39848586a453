/**
 * Weighted round-robin scheduling, as IPVS's ip_vs_wrr.c: interleaved, not "w picks of A
 * then w picks of B". The list is walked in passes; a pass at level `cw` (current weight)
 * picks every dest whose weight >= cw, and cw steps down by the gcd of the weights from the
 * max weight to 1 before starting again. Weights 4:3:2 thus give a a b a b c a b c: per
 * cycle each dest is picked weight/gcd times, spread out instead of in bursts.
 */
import { gcd, isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

class WeightedRoundRobin implements Scheduler {
  readonly name = 'wrr';
  /** Index of the last pick; -1 = the list head (next pass starts at the first dest). */
  private cl = -1;
  /** Current weight level: dests with weight >= cw qualify in this pass. */
  private cw = 0;
  /** First level of a cycle: max weight - (di - 1). 0 = no dest with a weight. */
  private mw = 0;
  /** Step between levels: the gcd of the positive weights (1 when there are none). */
  private di = 1;
  /** The list (and its length) the state above was computed for. */
  private list: readonly Dest[] | null = null;
  private listLen = -1;

  update(dests: readonly Dest[]): void {
    // gcd and max are over the weights alone, not the flags, as in IPVS: a dest that is
    // down or overloaded only costs a skipped slot, so the proportions between the others
    // stay exact and a flag flapping does not need a recomputation to stay correct.
    let g = 0;
    let max = 0;
    for (let i = 0; i < dests.length; i++) {
      const w = dests[i].weight;
      if (w > 0) g = g > 0 ? gcd(w, g) : w;
      if (w > max) max = w;
    }
    this.di = g > 0 ? g : 1;
    // Weights are multiples of di, so levels mw, mw-di, ..., 1 (all ≡ 1 mod di) cross every
    // weight exactly weight/di times per cycle.
    this.mw = max - (this.di - 1);
    // Restart the walk from the head, and keep the current level if it still makes sense,
    // moved onto the new grid of levels (IPVS's ip_vs_wrr_dest_changed).
    this.cl = -1;
    if (this.cw > this.mw || this.cw === 0) this.cw = this.mw;
    else if (this.di > 1) this.cw = Math.trunc(this.cw / this.di) * this.di + 1;
    this.list = dests;
    this.listLen = dests.length;
  }

  schedule(dests: readonly Dest[], _flow: FlowInfo): Dest | null {
    // update() should have been called on every change; a different list is caught here.
    if (dests !== this.list || dests.length !== this.listLen) this.update(dests);
    if (this.mw === 0) return null; // every weight is 0: everything is quiesced
    const n = dests.length;
    const last = this.cl;
    // When no dest can be picked, give up once every dest has been tried at the lowest
    // level (cw <= di, where any positive weight qualifies): `stop` is the dest where that
    // full last pass ends when it has to wrap around the list.
    let stop = -2;
    let lastPass = false;
    let restarted = false;
    let i = last;
    for (;;) {
      for (i = i + 1; i < n; i++) {
        const d = dests[i];
        if (isAvailable(d) && d.weight >= this.cw) {
          this.cl = i;
          return d;
        }
        if (i === stop) {
          this.cl = i;
          return null;
        }
      }
      // End of the list: back to the head, one level down.
      i = -1;
      this.cw -= this.di;
      if (this.cw <= 0) {
        this.cw = this.mw;
        // The lowest-level pass just done found nothing, and it covered the whole list:
        // either it was the planned last pass, or we started at the head.
        if (lastPass || last === -1) {
          this.cl = -1;
          return null;
        }
        restarted = true;
      }
      lastPass = this.cw <= this.di;
      // We started mid-list, so the lowest-level pass before the restart only covered the
      // dests after `last`: the coming one must go on up to `last` and then give up.
      if (lastPass && restarted && last !== -1) stop = last;
    }
  }
}

export const wrr: SchedulerInfo = {
  name: 'wrr',
  description: 'weighted round robin: interleaved, each real server in proportion to its weight',
  create: () => new WeightedRoundRobin(),
};
