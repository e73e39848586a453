/**
 * Maglev hashing scheduling, as IPVS's ip_vs_mh.c (itself after the Maglev paper, NSDI'16 §3.4):
 * the client's source address (and port, with mh-port) is hashed into a lookup table of M
 * entries that the real servers claimed in turns (maglev.ts). Like sh, a client keeps its
 * server with no per-client state, on every balancer with the same servers; unlike sh, adding
 * or removing one of N servers moves only about 1/N of the clients, and weights are honoured
 * to within a fraction of a percent.
 *
 * Where lbd differs from the kernel, on purpose:
 * - servers are placed in the order of their address, then port, not in list order, so two
 *   configs listing the same servers differently (or two balancers) build the same table;
 * - the table size M is per service (options.tableSize), not fixed when the kernel is built;
 * - a server that is down (failed health check, a flag IPVS does not have) keeps its entries,
 *   like a quiesced one, and takes no flow meanwhile.
 */
import { MH_TABLE_SIZE_DEFAULT, MH_TABLE_SIZES, type SchedulerOptions } from './options';
import { mhPopulate, mhTurns, type MaglevSetup } from './maglev';
import { hsiphashKey, hsiphashU32, type HsiphashKey } from './siphash';
import { canTake, type Dest, type FlowInfo, type Scheduler, type SchedulerInfo } from './types';

/**
 * IPVS's fixed hash keys (generate_hash_secret): not secret, so that every balancer, and the
 * kernel, hashes alike. hash1 places clients and gives each server its offset, hash2 its skip.
 */
const HASH1 = hsiphashKey(2654435761, 2654435761);
const HASH2 = hsiphashKey(2654446892, 2654446892);

/**
 * ip_vs_mh_hashkey: hsiphash of the u32 offset + port + address (host order, wrapping as u32
 * arithmetic does; `>>> 0` of the exact sum is that modulo).
 */
export function mhHashkey(addr: number, port: number, key: HsiphashKey, offset: number): number {
  return hsiphashU32((offset + port + addr) >>> 0, key);
}

/** A server's offset and skip in a table of m entries (ip_vs_mh_permutate). */
export function mhOffsetSkip(addr: number, port: number, m: number): { offset: number; skip: number } {
  return { offset: mhHashkey(addr, port, HASH1, 0) % m, skip: (mhHashkey(addr, port, HASH2, 0) % (m - 1)) + 1 };
}

/** The order servers are placed in: address, then port, both unsigned. */
function byAddrPort(a: Dest, b: Dest): number {
  return (a.addr >>> 0) - (b.addr >>> 0) || (a.port >>> 0) - (b.port >>> 0);
}

export class MaglevHashing implements Scheduler {
  readonly name = 'mh';
  readonly options: SchedulerOptions;
  /** M, the lookup table's size. */
  readonly tableSize: number;
  private readonly fallback: boolean;
  private readonly hashPort: boolean;
  /** Entry → index into `servers`, -1 = none; allocated once, refilled by a rebuild. */
  private readonly table: Int32Array;
  /** The servers in placement order (address, port): what the table's indices point at. */
  private servers: readonly Dest[] = [];
  /** The inputs of the table built last: per server in placement order, address, port, last weight. */
  private built: number[] = [];
  /** Indices into `servers` of those that hold at least one entry. */
  private present = new Int32Array(0);
  private list: readonly Dest[] | null = null;
  private listLen = -1;
  private builds = 0;

  constructor(options: SchedulerOptions = {}) {
    const m = options.tableSize ?? MH_TABLE_SIZE_DEFAULT;
    // A size that is not one of the primes could leave a server's permutation unable to
    // reach the last free entries, and the construction would never end.
    if (!(MH_TABLE_SIZES as readonly number[]).includes(m)) {
      throw new RangeError(`mh table size ${m} is not one of ${MH_TABLE_SIZES.join(', ')}`);
    }
    this.options = options;
    this.tableSize = m;
    this.fallback = options.fallback === true;
    this.hashPort = options.port === true;
    this.table = new Int32Array(m).fill(-1);
  }

  update(dests: readonly Dest[]): void {
    this.list = dests;
    this.listLen = dests.length;
    const sorted = [...dests].sort(byAddrPort);
    const inputs: number[] = [];
    for (const d of sorted) {
      // IPVS's last_weight (Dest.lastWeight), not the weight: quiescing a server (weight 0) or its
      // failing health check leaves every entry in place, and its clients come back to it when
      // it returns; a server that never had a positive weight takes no entry.
      inputs.push(d.addr >>> 0, d.port >>> 0, d.lastWeight);
    }
    // The same servers, ports and last weights (only flags or a quiesce changed): same table.
    // The Dest objects may still be new ones for the same servers: point at those.
    this.servers = sorted;
    if (inputs.length === this.built.length && inputs.every((v, i) => v === this.built[i])) return;
    this.built = inputs;
    this.rebuild();
  }

  private rebuild(): void {
    this.builds++;
    const m = this.tableSize;
    const servers = this.servers;
    const lastWeights = servers.map((_, i) => this.built[3 * i + 2]);
    const turns = mhTurns(lastWeights, m);
    const setup: MaglevSetup[] = servers.map((d, i) => ({ ...mhOffsetSkip(d.addr >>> 0, d.port >>> 0, m), turns: turns[i] }));
    mhPopulate(setup, m, this.table);
    const has = new Uint8Array(servers.length);
    for (let e = 0; e < m; e++) if (this.table[e] >= 0) has[this.table[e]] = 1;
    const present: number[] = [];
    has.forEach((h, i) => h && present.push(i));
    this.present = Int32Array.from(present);
  }

  schedule(dests: readonly Dest[], flow: FlowInfo): Dest | null {
    if (dests !== this.list || dests.length !== this.listLen) this.update(dests);
    const m = this.tableSize;
    const addr = flow.srcAddr;
    const port = this.hashPort ? flow.srcPort : 0;
    const ihash = mhHashkey(addr, port, HASH1, 0) % m;
    const i = this.table[ihash];
    if (i < 0) return null; // an empty table: no server has ever had a positive weight
    const d = this.servers[i];
    // The table is built from last weights, so availability is checked here, per flow.
    if (canTake(d, flow.continuing && !this.fallback)) return d;
    if (!this.fallback) return null;
    return this.fallbackFor(addr, port, ihash);
  }

  /**
   * ip_vs_mh_get_fallback: the hashed server cannot take the flow, so walk the table from the
   * client's entry, rehashing the client with each offset in turn, and take the first server
   * that can. Each client walks its own sequence, so the flows of a failed server spread over
   * the others instead of all landing on one neighbour.
   */
  private fallbackFor(addr: number, port: number, ihash: number): Dest | null {
    // While no server in the table can take it, the walk below would cost M hashes per new
    // flow for nothing: under a SYN flood with every server down, a cheap amplifier. A scan
    // of the servers is far cheaper.
    const present = this.present;
    let any = false;
    for (let k = 0; k < present.length && !any; k++) any = canTake(this.servers[present[k]], false);
    if (!any) return null;
    const m = this.tableSize;
    for (let offset = 0; offset < m; offset++) {
      // offset + ihash < 2M: one subtraction is the modulo.
      let roffset = offset + ihash;
      if (roffset >= m) roffset -= m;
      const d = this.servers[this.table[mhHashkey(addr, port, HASH1, roffset) % m]];
      if (canTake(d, false)) return d;
    }
    return null;
  }

  /** How many times the table was built: a diagnostic (and what tests check to see none happened). */
  get rebuilds(): number {
    return this.builds;
  }

  /** The table as server indices into lookupServers() (-1 = none): for tests and diagnostics. */
  lookupTable(): Int32Array {
    return this.table;
  }

  /** The servers the table's indices point at, in placement order. */
  lookupServers(): readonly Dest[] {
    return this.servers;
  }
}

export const mh: SchedulerInfo = {
  name: 'mh',
  description: 'maglev hashing: a consistent map of client source address to real server',
  create: (options?: SchedulerOptions) => new MaglevHashing(options),
};
