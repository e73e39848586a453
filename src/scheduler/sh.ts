/**
 * Source hashing scheduling, as IPVS's ip_vs_sh.c: the client's source address picks one of
 * 256 buckets, and each bucket is statically assigned a real server, so that a client keeps
 * going to the same server for as long as the list and weights do not change (no per-client
 * state). Without IPVS's sh-fallback flag, a bucket whose server cannot take the flow is
 * not moved elsewhere: the flow gets no server. With sh-port, the source port is hashed too,
 * so one client's connections spread over the servers.
 */
import type { SchedulerOptions } from './options';
import { canTake, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

const SH_TAB_BITS = 8;
export const SH_TAB_SIZE = 1 << SH_TAB_BITS;

/**
 * The bucket a source address (unsigned 32-bit, host order) falls in, as ip_vs_sh_hashkey:
 * (offset + hash_32(port + addr, 8)) mod 256. hash_32 is a multiplication by the 32-bit
 * golden ratio keeping the top 8 bits, which are the best mixed. Math.imul takes its operands
 * modulo 2^32 and gives the low 32 bits of the product, as u32 arithmetic does in C; >>> keeps
 * it unsigned. The port is 0 unless sh-port, and the offset 0 except in sh-fallback's walk:
 * with neither, this is hash_32(addr, 8), the bucket sh has always used.
 */
export function shBucket(addr: number, port = 0, offset = 0): number {
  return (offset + (Math.imul(port + addr, 0x61c88647) >>> (32 - SH_TAB_BITS))) & (SH_TAB_SIZE - 1);
}

class SourceHashing implements Scheduler {
  readonly name = 'sh';
  readonly options: SchedulerOptions;
  private readonly fallback: boolean;
  private readonly hashPort: boolean;
  /** Bucket → dest; allocated once, refilled in place by update(). */
  private readonly table: (Dest | null)[] = new Array<Dest | null>(SH_TAB_SIZE).fill(null);
  private list: readonly Dest[] | null = null;
  private listLen = -1;

  constructor(options: SchedulerOptions = {}) {
    this.options = options;
    this.fallback = options.fallback === true;
    this.hashPort = options.port === true;
  }

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
    const addr = flow.srcAddr;
    const port = this.hashPort ? flow.srcPort : 0;
    const ihash = shBucket(addr, port);
    const d = this.table[ihash];
    // The table is built from weights only, so availability is checked here, per flow: a
    // server that is down, overloaded or quiesced keeps its buckets (its clients come back
    // to it once it recovers) but takes no new flow meanwhile. A flow under way elsewhere
    // (on_miss: hash) still reaches its server when quiesced or overloaded, unless a fallback
    // sent the connections opened since elsewhere (canTake).
    if (d === null) return null;
    if (canTake(d, flow.continuing && !this.fallback)) return d;
    if (!this.fallback) return null;
    // ip_vs_sh_get_fallback: walk the buckets from the client's, offset by 0..255, and take
    // the first server that can take the flow. (The walk visits every bucket once: the
    // offset adds to the hash modulo 256.)
    for (let offset = 0; offset < SH_TAB_SIZE; offset++) {
      const e = this.table[shBucket(addr, port, (offset + ihash) & (SH_TAB_SIZE - 1))];
      if (e === null) return null;
      if (canTake(e, false)) return e;
    }
    return null;
  }
}

export const sh: SchedulerInfo = {
  name: 'sh',
  description: 'source hashing: a static map of client source address to real server',
  create: (options?: SchedulerOptions) => new SourceHashing(options),
};
