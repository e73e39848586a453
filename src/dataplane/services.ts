import { DEST_F_OVERLOAD, type Dest, type Scheduler } from '../scheduler/index';
import type { Protocol } from '../config/types';
import {
  CONN_REUSE_DEFAULT,
  DEST_HEALTH_DOWN,
  DEST_HEALTH_UNCHECKED,
  DEST_HEALTH_UP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  MAX_DESTS,
  MAX_SERVICES,
  SERVICE_INDEXES,
  SVC_F_ON_MISS_HASH,
  SVC_F_REUSE_MASK,
  type StateArrays,
} from './contract';

export { MAX_DESTS, MAX_SERVICES } from './contract';

type DestArrays = Pick<
  StateArrays,
  | 'mac'
  | 'macKnown'
  | 'active'
  | 'inactive'
  | 'persistent'
  | 'destConns'
  | 'destPackets'
  | 'destBytes'
  | 'downAction'
  | 'destAddr'
  | 'destPort'
  | 'destSvc'
  | 'destHealth'
>;
type ServiceArrays = Pick<
  StateArrays,
  'svcVip' | 'svcPortProto' | 'svcMeta' | 'svcStats' | 'svcFlags' | 'svcKeyVip' | 'svcKeyPortProto' | 'svcPersist' | 'svcPersistMask'
>;

/** Health verdicts by their destHealth[] code (DEST_HEALTH_*). */
export type Health = 'up' | 'down' | 'unchecked';
const HEALTH_NAMES: readonly Health[] = ['unchecked', 'up', 'down'];
const HEALTH_CODES: Record<Health, number> = { unchecked: DEST_HEALTH_UNCHECKED, up: DEST_HEALTH_UP, down: DEST_HEALTH_DOWN };

/**
 * Per-real-server state the data plane reads and writes, as typed arrays indexed by the
 * global dest index: the shared state's (the native path works on the same arrays, metrics read
 * them at scrape time). MACs are 6 bytes per dest.
 */
export class DestTable {
  readonly mac: Uint8Array;
  readonly macKnown: Uint8Array;
  readonly active: Int32Array;
  readonly inactive: Int32Array;
  readonly persistent: Int32Array;
  readonly conns: Float64Array;
  readonly packets: Float64Array;
  readonly bytes: Float64Array;
  /**
   * What happens to an existing flow's next frame when its real server failed its health
   * check (on_down): DOWN_KEEP (0, forward as before), DOWN_RESCHEDULE or DOWN_DROP. Zero for
   * every server that is up, so the per-frame cost is one typed-array read.
   */
  readonly downAction: Uint8Array;
  /** Who each server is (address, port, service index + 1) and its health (DEST_HEALTH_*): what a state file's next reader matches by. */
  readonly addr: Uint32Array;
  readonly port: Uint32Array;
  readonly svc: Int32Array;
  readonly health: Uint8Array;
  readonly views: RealServer[] = [];

  constructor(a: DestArrays) {
    this.mac = a.mac;
    this.macKnown = a.macKnown;
    this.active = a.active;
    this.inactive = a.inactive;
    this.persistent = a.persistent;
    this.conns = a.destConns;
    this.packets = a.destPackets;
    this.bytes = a.destBytes;
    this.downAction = a.downAction;
    this.addr = a.destAddr;
    this.port = a.destPort;
    this.svc = a.destSvc;
    this.health = a.destHealth;
  }

  add(service: VirtualService, addr: number, port: number, weight: number): RealServer {
    if (this.views.length >= MAX_DESTS) throw new Error(`more than ${MAX_DESTS} real servers`);
    const rs = new RealServer(this, this.views.length, service, addr, port, weight);
    this.addr[rs.index] = addr;
    this.port[rs.index] = port;
    this.svc[rs.index] = service.index + 1;
    this.health[rs.index] = DEST_HEALTH_UNCHECKED;
    this.views.push(rs);
    return rs;
  }

  setMac(index: number, mac: Uint8Array): void {
    this.mac.set(mac.subarray(0, 6), index * 6);
    this.macKnown[index] = 1;
  }
}

/** DestTable.downAction values (on_down of a server that is down). */
export const DOWN_KEEP = 0;
export const DOWN_RESCHEDULE = 1;
export const DOWN_DROP = 2;

/** A real server as schedulers and the control plane see it. */
export class RealServer implements Dest {
  flags = 0;
  /** Removed from its service: existing flows finish (drain), no new ones. */
  removed = false;
  /** Removed and drained: no flow points at it any more; kept only so its index is never reused. */
  gone = false;
  /** Health-check verdict: 'unchecked' when the service has no health_check (kept in the shared state, which a restart adopts). */
  get health(): Health {
    return HEALTH_NAMES[this.table.health[this.index]] ?? 'unchecked';
  }
  set health(h: Health) {
    this.table.health[this.index] = HEALTH_CODES[h];
  }
  /** Why the last health transition happened ('connect refused', 'status 503', …). */
  healthReason = '';
  /** Connection thresholds (ipvsadm -x/-y); 0 = none. The forwarder sets and clears DEST_F_OVERLOAD. */
  uThreshold = 0;
  lThreshold = 0;
  constructor(
    private readonly table: DestTable,
    readonly index: number,
    readonly service: VirtualService,
    readonly addr: number,
    readonly port: number,
    weight: number,
  ) {
    this.w = weight;
    this.lastWeight = weight > 0 ? weight : 0;
  }
  private w: number;
  /** The last positive weight (IPVS's last_weight): what mh builds its table from. */
  lastWeight: number;
  /** Configured weight (0 = quiesced); the health manager sets 0 for inhibit_on_failure. */
  get weight(): number {
    return this.w;
  }
  set weight(w: number) {
    this.w = w;
    if (w > 0) this.lastWeight = w;
  }
  get activeConns(): number {
    return this.table.active[this.index];
  }
  get inactConns(): number {
    return this.table.inactive[this.index];
  }
  /**
   * New thresholds, with the kernel's rule for an edit (__ip_vs_update_dest): removing or
   * raising the upper threshold lifts an overload at once; lowering it takes effect at the
   * next connection, as in IPVS.
   */
  setThresholds(upper: number, lower: number): void {
    if (upper === 0 || upper > this.uThreshold) this.flags &= ~DEST_F_OVERLOAD;
    this.uThreshold = upper;
    this.lThreshold = lower;
  }
  /** Connection entries and persistence templates that still point at this server. */
  get references(): number {
    return this.table.active[this.index] + this.table.inactive[this.index] + this.table.persistent[this.index];
  }
}

export function protoNumber(p: Protocol): number {
  return p === 'udp' ? IPPROTO_UDP : IPPROTO_TCP;
}

export function protocolName(proto: number): Protocol {
  return proto === IPPROTO_UDP ? 'udp' : 'tcp';
}

/** A virtual service: VIP:port/protocol with its scheduler and real servers. */
export class VirtualService {
  /** The real servers offered to the scheduler (removed ones are not in it). */
  dests: RealServer[] = [];
  /** Every real server flows may still point at: dests plus removed ones still draining. */
  reals: RealServer[] = [];
  /** Removed from the config: existing flows finish, new ones are refused. */
  removed = false;
  /** Removed and drained: out of the lookup table. */
  gone = false;
  /** The sorry server (health: fewer than quorum servers up), not in dests; null when none. */
  sorry: RealServer | null = null;
  /** True while new flows go to the sorry server (set by the health manager). */
  sorryActive = false;
  /** True while fewer real servers are up than the quorum, sorry server or not (set by the health manager). */
  belowQuorum = false;
  conns = 0;
  /**
   * [packets, bytes] forwarded: the service table's cells for this service's index once it is
   * added (the path that forwards adds to them), a pair of its own before.
   */
  stats: Float64Array = new Float64Array(2);
  /**
   * [SVC_F_* bits: conn_reuse_mode, on_miss]: the service table's cell for this service's index
   * once it is added (both paths read it per frame), a cell of its own before.
   */
  flags: Uint8Array = Uint8Array.of(CONN_REUSE_DEFAULT);
  /** TCP segments without SYN that found no entry and were scheduled by the hash (on_miss: hash). */
  missScheduled = 0;
  constructor(
    readonly index: number,
    public name: string,
    readonly vip: number,
    readonly port: number,
    readonly proto: number,
    public scheduler: Scheduler,
    public persistence: number,
    public persistenceMask: number,
  ) {}

  get packets(): number {
    return this.stats[0];
  }
  get bytes(): number {
    return this.stats[1];
  }
  /** conn_reuse_mode (0, 1 or 2): what a SYN that finds its client port's entry still in the table does. */
  get connReuseMode(): number {
    return this.flags[0] & SVC_F_REUSE_MASK;
  }
  set connReuseMode(mode: number) {
    this.flags[0] = (this.flags[0] & ~SVC_F_REUSE_MASK) | (mode & SVC_F_REUSE_MASK);
  }
  /** on_miss: hash — a TCP segment without SYN and without an entry is scheduled by the (consistent) hash. */
  get onMissHash(): boolean {
    return (this.flags[0] & SVC_F_ON_MISS_HASH) !== 0;
  }
  set onMissHash(on: boolean) {
    this.flags[0] = on ? this.flags[0] | SVC_F_ON_MISS_HASH : this.flags[0] & ~SVC_F_ON_MISS_HASH;
  }

  /** Tells the scheduler that the list, a weight or a flag changed. */
  changed(): void {
    this.scheduler.update?.(this.dests);
  }
}

/**
 * VIP:port/protocol → service. A linear scan over typed arrays: a balancer has a handful
 * of services, and a scan of a few integers beats hashing without allocating a key. The arrays
 * are the shared state's: meta = [count, then each slot's service index], which the
 * native path scans the same way, and stats = [packets, bytes] per service index.
 */
export class ServiceTable {
  private readonly vip: Uint32Array;
  private readonly portProto: Uint32Array;
  private readonly meta: Int32Array;
  private readonly stats: Float64Array;
  private readonly flags: Uint8Array;
  private readonly keyVip: Uint32Array;
  private readonly keyPortProto: Uint32Array;
  private readonly persist: Uint32Array;
  private readonly persistMask: Uint32Array;
  private readonly slots: VirtualService[] = [];
  count = 0;
  readonly all: VirtualService[] = [];

  constructor(a: ServiceArrays) {
    this.vip = a.svcVip;
    this.portProto = a.svcPortProto;
    this.meta = a.svcMeta;
    this.stats = a.svcStats;
    this.flags = a.svcFlags;
    this.keyVip = a.svcKeyVip;
    this.keyPortProto = a.svcKeyPortProto;
    this.persist = a.svcPersist;
    this.persistMask = a.svcPersistMask;
  }

  /**
   * Writes who the service at its index is and its persistence settings into the shared state:
   * at add() and whenever its persistence changes, so that a state file's reader keys its
   * templates the same way.
   */
  identify(svc: VirtualService): void {
    this.keyVip[svc.index] = svc.vip;
    this.keyPortProto[svc.index] = (svc.port << 8) | svc.proto;
    this.persist[svc.index] = svc.persistence;
    this.persistMask[svc.index] = svc.persistenceMask;
  }

  add(svc: VirtualService): void {
    if (this.count >= MAX_SERVICES) throw new Error(`more than ${MAX_SERVICES} services`);
    if (svc.index < 0 || svc.index >= SERVICE_INDEXES) throw new Error(`service index ${svc.index} out of range`);
    // The service's counters move into the table's cells for its index (a service re-added
    // after a removal keeps counting where it was).
    const at = svc.index * 2 * Float64Array.BYTES_PER_ELEMENT;
    if (svc.stats.buffer !== this.stats.buffer || svc.stats.byteOffset !== this.stats.byteOffset + at) {
      const cells = this.stats.subarray(svc.index * 2, svc.index * 2 + 2);
      cells.set(svc.stats);
      svc.stats = cells;
    }
    if (svc.flags.buffer !== this.flags.buffer || svc.flags.byteOffset !== this.flags.byteOffset + svc.index) {
      const cell = this.flags.subarray(svc.index, svc.index + 1);
      cell[0] = svc.flags[0];
      svc.flags = cell;
    }
    this.identify(svc);
    this.setSlot(this.count, svc);
    this.count++;
    this.meta[0] = this.count;
    this.all[svc.index] = svc;
  }

  remove(svc: VirtualService): void {
    const i = this.slots.indexOf(svc);
    if (i < 0 || i >= this.count) return;
    // Keep the arrays dense: the last service moves into the hole.
    const last = this.count - 1;
    this.setSlot(i, this.slots[last]);
    this.slots.length = last;
    this.count = last;
    this.meta[0] = last;
  }

  private setSlot(i: number, svc: VirtualService): void {
    this.vip[i] = svc.vip;
    this.portProto[i] = (svc.port << 8) | svc.proto;
    this.meta[1 + i] = svc.index;
    this.slots[i] = svc;
  }

  /** The service in lookup slot `slot` (the native path's upcalls name services by slot), or null. */
  atSlot(slot: number): VirtualService | null {
    return slot < this.count ? this.slots[slot] : null;
  }

  lookup(addr: number, port: number, proto: number): VirtualService | null {
    const key = (port << 8) | proto;
    for (let i = 0; i < this.count; i++) {
      if (this.vip[i] === addr && this.portProto[i] === key) return this.slots[i];
    }
    return null;
  }
}
