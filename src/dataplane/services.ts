import { DEST_F_OVERLOAD, type Dest, type Scheduler } from '../scheduler/index';
import type { Protocol } from '../config/types';
import { IPPROTO_TCP, IPPROTO_UDP } from './contract';

/** The most real servers lbd tracks over its lifetime (indices are never reused while flows may point at them). */
export const MAX_DESTS = 4096;
/** The most virtual services; the VIP lookup is a linear scan, so keep this small. */
export const MAX_SERVICES = 256;

/**
 * Per-real-server state the data plane reads and writes, as typed arrays indexed by the
 * global dest index so that the native path can share them and metrics read them at scrape
 * time. MACs are 6 bytes per dest.
 */
export class DestTable {
  readonly mac = new Uint8Array(MAX_DESTS * 6);
  readonly macKnown = new Uint8Array(MAX_DESTS);
  readonly active = new Int32Array(MAX_DESTS);
  readonly inactive = new Int32Array(MAX_DESTS);
  readonly persistent = new Int32Array(MAX_DESTS);
  readonly conns = new Float64Array(MAX_DESTS);
  readonly packets = new Float64Array(MAX_DESTS);
  readonly bytes = new Float64Array(MAX_DESTS);
  /**
   * What happens to an existing flow's next frame when its real server failed its health
   * check (on_down): DOWN_KEEP (0, forward as before), DOWN_RESCHEDULE or DOWN_DROP. Zero for
   * every server that is up, so the per-frame cost is one typed-array read.
   */
  readonly downAction = new Uint8Array(MAX_DESTS);
  readonly views: RealServer[] = [];

  add(service: VirtualService, addr: number, port: number, weight: number): RealServer {
    if (this.views.length >= MAX_DESTS) throw new Error(`more than ${MAX_DESTS} real servers`);
    const rs = new RealServer(this, this.views.length, service, addr, port, weight);
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
  /** Health-check verdict: 'unchecked' when the service has no health_check. */
  health: 'up' | 'down' | 'unchecked' = 'unchecked';
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
    public weight: number,
  ) {}
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
  conns = 0;
  packets = 0;
  bytes = 0;
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

  /** Tells the scheduler that the list, a weight or a flag changed. */
  changed(): void {
    this.scheduler.update?.(this.dests);
  }
}

/**
 * VIP:port/protocol → service. A linear scan over typed arrays: a balancer has a handful
 * of services, and a scan of a few integers beats hashing without allocating a key.
 */
export class ServiceTable {
  private readonly vip = new Uint32Array(MAX_SERVICES);
  private readonly portProto = new Uint32Array(MAX_SERVICES);
  private readonly slots: (VirtualService | null)[] = [];
  count = 0;
  readonly all: VirtualService[] = [];

  add(svc: VirtualService): void {
    if (this.count >= MAX_SERVICES) throw new Error(`more than ${MAX_SERVICES} services`);
    this.vip[this.count] = svc.vip;
    this.portProto[this.count] = (svc.port << 8) | svc.proto;
    this.slots[this.count] = svc;
    this.count++;
    this.all[svc.index] = svc;
  }

  remove(svc: VirtualService): void {
    const i = this.slots.indexOf(svc);
    if (i < 0) return;
    // Keep the arrays dense: the last service moves into the hole.
    const last = this.count - 1;
    this.vip[i] = this.vip[last];
    this.portProto[i] = this.portProto[last];
    this.slots[i] = this.slots[last];
    this.slots.length = last;
    this.count = last;
  }

  lookup(addr: number, port: number, proto: number): VirtualService | null {
    const key = (port << 8) | proto;
    for (let i = 0; i < this.count; i++) {
      if (this.vip[i] === addr && this.portProto[i] === key) return this.slots[i];
    }
    return null;
  }
}
