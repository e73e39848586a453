/**
 * The native fast path (native/, a Node-API addon) as the rest of lbd sees it.
 *
 * The addon runs parse → lookup → track → rewrite → batched send in C++ on the SAME typed arrays
 * the TypeScript Forwarder owns (connection table, dest table, service table, counters), so the
 * control plane, sweep() and metrics keep working unchanged. JavaScript is entered only for:
 *   - a table miss that may open a connection (SYN / UDP): Forwarder.scheduleNew() runs the
 *     scheduler and persistence and inserts the entry; the addon then continues with the slot;
 *   - ARP frames: handed whole to the TypeScript path (Forwarder.process → onArp).
 * What the addon cannot read from those arrays (the clock, the timeouts, the MACs, which
 * service sits in which table slot, per-service packet/byte counts) is mirrored here into small
 * shared arrays, kept in step by accessors and wrappers installed on the Forwarder instance.
 *
 * The addon is loaded by binding.ts, which never throws: it says what it tried. Both data paths
 * need it (the TypeScript path captures through its Capture), so without it lbd does not start;
 * with it, a capture interface the fast path cannot open makes dataplane: auto run the
 * TypeScript path and dataplane: native refuse to start.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/types';
import { BindingError, LbdError } from '../errors';
import {
  type AddonDataplane,
  type NativeLoad,
  type NativeStats,
  type ProcessOptions,
  type ProcessResult,
  TIMEOUTS_LEN,
  UPCALL_ARGS,
  loadNative,
  requireBinding,
} from './binding';
import { Drop, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from './contract';
import type { Forwarder } from './forwarder';
import { Port, RingPort } from './io';
import { ParsedFrame } from './packet';
import { MAX_SERVICES, VirtualService } from './services';
import { nextTcpState } from './tcpstate';

export {
  ADDON_RELATIVE_PATH,
  type NativeAddon,
  type NativeLoad,
  type NativeStats,
  type ProcessOptions,
  type ProcessResult,
  contractMismatch,
  loadNative,
} from './binding';

// ---- The mirror: what the addon needs beyond the Forwarder's own typed arrays ----------------

/** upcallArgs[8] of a table miss; otherwise the slot of a flow whose real server is down. */
const MISS = 0xffffffff;
/** Per-service packets/bytes live here, indexed by VirtualService.index (16 bits in the conn key). */
const SERVICE_STATS = 1 << 16;

/** nextTcpState() for every (state, FIN/SYN/RST/ACK) pair; 0xffff where it gives undefined. */
function tcpNextTable(): Uint16Array {
  const t = new Uint16Array(256 * 16);
  for (let s = 0; s < 256; s++) {
    for (let b = 0; b < 16; b++) {
      const flags = (b & 1 ? TCP_FIN : 0) | (b & 2 ? TCP_SYN : 0) | (b & 4 ? TCP_RST : 0) | (b & 8 ? TCP_ACK : 0);
      const n = nextTcpState(s, flags) as number | undefined;
      t[s * 16 + b] = n === undefined ? 0xffff : n;
    }
  }
  return t;
}

/** ServiceTable's private arrays: the addon scans them as ServiceTable.lookup() does. */
interface ServiceTableInternals {
  vip: Uint32Array;
  portProto: Uint32Array;
  slots: (VirtualService | null)[];
  count: number;
}

/**
 * One per Forwarder, shared by every addon object attached to it (a capture handle reopened
 * on reload overlaps the old one for a moment).
 */
class ForwarderMirror {
  readonly meta = new Int32Array(MAX_SERVICES + 1);
  readonly svcStats = new Float64Array(SERVICE_STATS * 2);
  readonly clock = new Float64Array(1);
  readonly timeouts = new Uint32Array(TIMEOUTS_LEN);
  readonly macs = new Uint8Array(12);
  readonly tcpNext = tcpNextTable();
  readonly upcallArgs = new Uint32Array(UPCALL_ARGS);
  /** ARP frames are copied here for the TypeScript path. */
  readonly scratch = Buffer.alloc(65536);
  readonly schedule: () => number;
  private readonly st: ServiceTableInternals;

  constructor(private readonly fw: Forwarder) {
    const st = fw.services as unknown as ServiceTableInternals;
    if (!(st.vip instanceof Uint32Array) || !(st.portProto instanceof Uint32Array) || !Array.isArray(st.slots) || typeof st.count !== 'number') {
      throw new Error('ServiceTable internals changed (vip, portProto, slots, count): update native.ts');
    }
    this.st = st;

    // The clock: Forwarder.now becomes an accessor over the shared cell.
    const clock = this.clock;
    clock[0] = fw.now;
    Object.defineProperty(fw, 'now', { get: () => clock[0], set: (v: number) => void (clock[0] = v), enumerable: true, configurable: true });

    // The MACs: re-mirrored whenever the Forwarder is given new ones.
    let captureMac = fw.captureMac;
    let egressMac = fw.egressMac;
    const syncMacs = () => {
      this.macs.set(captureMac.subarray(0, 6), 0);
      this.macs.set(egressMac.subarray(0, 6), 6);
    };
    Object.defineProperty(fw, 'captureMac', {
      get: () => captureMac,
      set: (v: Uint8Array) => ((captureMac = v), syncMacs()),
      enumerable: true,
      configurable: true,
    });
    Object.defineProperty(fw, 'egressMac', {
      get: () => egressMac,
      set: (v: Uint8Array) => ((egressMac = v), syncMacs()),
      enumerable: true,
      configurable: true,
    });
    syncMacs();

    // The timeouts: mirrored after every setTimeouts().
    const setTimeouts = fw.setTimeouts;
    fw.setTimeouts = (t) => {
      setTimeouts.call(fw, t);
      this.syncTimeouts();
    };
    this.syncTimeouts();

    // The service table: mirrored after every change (add, remove, whatever comes next).
    const proto = Object.getPrototypeOf(st) as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const orig = proto[name];
      if (name === 'constructor' || name === 'lookup' || typeof orig !== 'function') continue;
      (st as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
        const r = (orig as (...a: unknown[]) => unknown).apply(st, args);
        this.syncServices();
        return r;
      };
    }
    this.syncServices();

    // The upcall: the arguments come in upcallArgs (no JS values created per call).
    const a = this.upcallArgs;
    const f = new ParsedFrame();
    this.schedule = () => {
      const svc = st.slots[a[1]];
      if (!svc || svc.index !== a[0]) return ~Drop.Unsupported;
      f.srcAddr = a[2];
      f.srcPort = a[3];
      f.proto = a[4];
      f.tcpFlags = a[5];
      f.dstAddr = a[6];
      f.dstPort = a[7];
      return a[8] === MISS ? fw.scheduleNew(svc, f) : fw.rescheduleDown(svc, f, a[8]);
    };
  }

  syncTimeouts(): void {
    const { tcp, udp } = this.fw.timeoutsInEffect();
    this.timeouts.fill(0);
    this.timeouts.set(tcp.subarray(0, 13), 0);
    this.timeouts[13] = udp;
  }

  syncServices(): void {
    const st = this.st;
    const n = Math.min(st.count, MAX_SERVICES);
    for (let i = 0; i < n; i++) {
      const svc = st.slots[i];
      this.meta[1 + i] = svc ? svc.index : -1;
      if (svc) this.adoptStats(svc);
    }
    this.meta[0] = n;
  }

  /** A service's packets/bytes become accessors over svcStats, which the addon adds to. */
  private adoptStats(svc: VirtualService): void {
    if (svc.index < 0 || svc.index >= SERVICE_STATS) return;
    const d = Object.getOwnPropertyDescriptor(svc, 'packets');
    if (d && d.get) return;
    const s = this.svcStats;
    const i = svc.index * 2;
    s[i] = svc.packets;
    s[i + 1] = svc.bytes;
    Object.defineProperty(svc, 'packets', { get: () => s[i], set: (v: number) => void (s[i] = v), enumerable: true, configurable: true });
    Object.defineProperty(svc, 'bytes', { get: () => s[i + 1], set: (v: number) => void (s[i + 1] = v), enumerable: true, configurable: true });
  }

  /** What addon attach() takes. */
  tables(slowPath: (len: number) => void): object {
    const fw = this.fw;
    const c = fw.conns;
    const d = fw.dests;
    return {
      keyAddr: c.keyAddr,
      keyPort: c.keyPort,
      dest: c.dest,
      state: c.state,
      flags: c.flags,
      expires: c.expires,
      mac: d.mac,
      macKnown: d.macKnown,
      active: d.active,
      inactive: d.inactive,
      destPackets: d.packets,
      destBytes: d.bytes,
      downAction: d.downAction,
      svcVip: this.st.vip,
      svcPortProto: this.st.portProto,
      svcMeta: this.meta,
      svcStats: this.svcStats,
      counters: fw.counters,
      drops: fw.drops,
      clock: this.clock,
      timeouts: this.timeouts,
      macs: this.macs,
      tcpNext: this.tcpNext,
      upcallArgs: this.upcallArgs,
      scratch: this.scratch,
      schedule: this.schedule,
      slowPath,
    };
  }
}

const mirrors = new WeakMap<Forwarder, ForwarderMirror>();

function mirrorOf(fw: Forwarder): ForwarderMirror {
  let m = mirrors.get(fw);
  if (!m) {
    m = new ForwarderMirror(fw);
    mirrors.set(fw, m);
  }
  return m;
}

/**
 * The fast path on frames from memory: the same C++ per-frame code and batching as live
 * traffic, with sends captured instead of put on a wire. For tests and benchmarks.
 */
export class NativeDataplane {
  private readonly dp: AddonDataplane;

  /** slowPath: where ARP frames go (default: the Forwarder's own process()). */
  constructor(
    readonly forwarder: Forwarder,
    slowPath?: (buf: Buffer, len: number) => void,
  ) {
    this.dp = new (requireBinding().Dataplane)();
    const m = mirrorOf(forwarder);
    const slow = slowPath ?? ((buf: Buffer, len: number) => void forwarder.process(buf, len));
    this.dp.attach(m.tables((len) => slow(m.scratch, len)));
  }

  /** Frames back to back in `frames`, one length each; rewritten in place like a ring's. */
  processFrames(frames: Uint8Array, lengths: Uint32Array, opts?: ProcessOptions): ProcessResult {
    return this.dp.processFrames(frames, lengths, opts);
  }

  stats(): NativeStats {
    return this.dp.stats();
  }

  close(): void {
    this.dp.close();
  }
}

/** Size of the capture ring (PACKET_RX_RING), as the TypeScript path's RingPort has. */
const RING_BYTES = 16 << 20;

/**
 * The capture interface for the native path, as a Port: frames never surface per packet in
 * JavaScript (the addon forwards them from its uv_poll callback); only ARP reaches onFrame.
 * send() (ARP from the control plane) goes out on the capture interface right away.
 */
export class NativePort implements Port {
  readonly mac: Buffer;
  private readonly dp: AddonDataplane;
  private closed = false;

  constructor(
    readonly name: string,
    readonly egressName: string,
    filter: string,
    private readonly forwarder: () => Forwarder,
  ) {
    this.dp = new (requireBinding().Dataplane)();
    try {
      this.mac = this.dp.openLive(name, egressName, filter, RING_BYTES).captureMac;
    } catch (e) {
      throw new LbdError('E_NATIVE', (e as Error).message.replace(/^lbd_native: /, ''));
    }
  }

  start(onFrame: (buf: Buffer, len: number) => void): void {
    const m = mirrorOf(this.forwarder());
    this.dp.attach(m.tables((len) => onFrame(m.scratch, len)));
    this.dp.start();
  }

  send(buf: Buffer, len: number): boolean {
    return !this.closed && this.dp.send(buf, len);
  }

  setFilter(filter: string): void {
    this.dp.setFilter(filter);
  }

  /** Config busy_poll, in seconds. */
  setBusyPoll(seconds: number): void {
    this.dp.setBusyPoll(Math.round(seconds * 1e6));
  }

  stats(): NativeStats {
    return this.dp.stats();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.dp.close();
  }
}

export interface DataplaneSelection {
  path: 'native' | 'ts';
  /** Why the TypeScript path runs although native was possible in principle (auto); null otherwise. */
  fallbackReason: string | null;
  /**
   * Opens ports for the daemon: on the native path the fast path's port on the capture interface
   * and RingPorts elsewhere (egress ARP, local access); on the TypeScript path RingPorts only.
   */
  openPort: (iface: string, filter: string) => Port;
}

/** The selection's opener under in-memory ports: the caller opens every port itself. */
const callerOpensPorts = (): Port => {
  throw new LbdError('E_NATIVE', 'in-memory ports: the caller opens them');
};

/**
 * Picks the data-plane path for the daemon: `ts` → the TypeScript path; `native` → the addon's
 * fast path or an error saying why not; `auto` → the fast path when the capture interface opens
 * for it, else the TypeScript path with a warning. Either path captures through the binding:
 * when none loads, a BindingError says what was tried and how to build one, whatever the mode.
 * In-memory ports (tests) always run the TypeScript path and need no binding.
 */
export function selectDataplane(
  cfg: Config,
  o: { inMemory: boolean; log: Logger; forwarder: () => Forwarder; filter: string; load?: NativeLoad },
): DataplaneSelection {
  const mode = cfg.dataplane;
  if (o.inMemory) return { path: 'ts', fallbackReason: null, openPort: callerOpensPorts };
  const load = o.load ?? loadNative();
  if (!load.ok) throw new BindingError(load.reason);
  const ring = (iface: string, filter: string): Port => new RingPort(iface, filter);
  if (mode === 'ts') return { path: 'ts', fallbackReason: null, openPort: ring };
  const { capture, egress } = cfg.interfaces;
  let first: NativePort | null = null;
  try {
    first = new NativePort(capture, egress, o.filter, o.forwarder);
  } catch (e) {
    const reason = (e as Error).message;
    if (mode === 'native') {
      throw new LbdError(
        'E_NATIVE',
        `dataplane: native, but the native fast path cannot run: ${reason} (use dataplane: auto or ts to run the TypeScript path)`,
      );
    }
    o.log.warn({ reason }, 'native fast path unavailable: running the TypeScript data plane');
    return { path: 'ts', fallbackReason: reason, openPort: ring };
  }
  return {
    path: 'native',
    fallbackReason: null,
    openPort: (iface, filter) => {
      if (iface !== capture) return ring(iface, filter); // the egress interface: ARP only; lbd0
      if (first) {
        // The port opened to find out whether native works is the daemon's first capture port.
        const p = first;
        first = null;
        if (filter !== o.filter) p.setFilter(filter);
        return p;
      }
      return new NativePort(capture, egress, filter, o.forwarder);
    },
  };
}
