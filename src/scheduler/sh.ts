/**
 * Source hashing scheduling, as IPVS's ip_vs_sh.c: the client's source address picks one of
 * 256 buckets, and each bucket is statically assigned a real server, so that a client keeps
 * going to the same server for as long as the list and weights do not change (no per-client
 * state). Without IPVS's sh-fallback flag, a bucket whose server cannot take the flow is
 * not moved elsewhere: the flow gets no server.
 */
import { isAvailable, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

const SH_TAB_BITS = 8;
export const SH_TAB_SIZE = 1 << SH_TAB_BITS;

/**
 * The bucket a source address (unsigned 32-bit, host order) falls in: the kernel's
 * hash_32(addr, 8), a multiplication by the 32-bit golden ratio keeping the top 8 bits,
 * which are the best mixed. Math.imul gives the low 32 bits of the product, as u32 overflow
 * does in C; >>> keeps it unsigned. (IPVS adds the source port first only with sh-port.)
 */
export function shBucket(addr: number): number {
  return Math.imul(addr, 0x61c88647) >>> (32 - SH_TAB_BITS);
}

class SourceHashing implements Scheduler {
  readonly name = 'sh';
  /** Bucket → dest; allocated once, refilled in place by update(). */
  private readonly table: (Dest | null)[] = new Array<Dest | null>(SH_TAB_SIZE).fill(null);
  private list: readonly Dest[] | null = null;
  private listLen = -1;

  update(dests: readonly Dest[]): void {
    // IPVS's ip_vs_sh_reassign: walk the buckets in order, giving each dest `weight`
    // consecutive buckets before moving to the next one, and wrapping around the list
    // until all 256 are filled. Weights 2:1 give a a b a a b ...; a weight-0 dest still gets
    // one bucket per round (the count reaches 1 >= 0), which then gets no server. Weights
    // are not normalised: a dest of weight >= 256 takes the whole table.
    const n = dests.length;
    let p = 0;
    let count = 0;
    for (let b = 0; b < SH_TAB_SIZE; b++) {
      if (n === 0) {
        this.table[b] = null;
        continue;
      }
      const d = dests[p];
      this.table[b] = d;
      if (++count >= d.weight) {
        p = p + 1 === n ? 0 : p + 1;
        count = 0;
      }
    }
    this.list = dests;
    this.listLen = n;
  }

  schedule(dests: readonly Dest[], flow: FlowInfo): Dest | null {
    if (dests !== this.list || dests.length !== this.listLen) this.update(dests);
    const d = this.table[shBucket(flow.srcAddr)];
    // The table is built from weights only, so availability is checked here, per flow: a
    // server that is down, overloaded or quiesced keeps its buckets (its clients come back
    // to it once it recovers) but takes no new flow meanwhile.
    return d !== null && isAvailable(d) ? d : null;
  }
}

export const sh: SchedulerInfo = {
  name: 'sh',
  description: 'source hashing: a static map of client source address to real server',
  create: () => new SourceHashing(),
};
