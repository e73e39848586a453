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
 * loadNative() never throws: it says why the addon is not usable, and the daemon falls back to
 * the TypeScript path (dataplane: auto) or refuses to start (dataplane: native).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config/types';
import { LbdError } from '../errors';
import {
  COUNTER_COUNT, CONN_F_INACTIVE, ConnState, DROP_REASONS, Drop, SLOT_EMPTY, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, flowHash,
} from './contract';
import type { Forwarder } from './forwarder';
import { CapPort, Port } from './io';
import { ParsedFrame } from './packet';
import { MAX_SERVICES, VirtualService } from './services';
import { nextTcpState } from './tcpstate';

/** The addon's file, relative to the repository root. */
export const ADDON_RELATIVE_PATH = 'native/build/Release/lbd_native.node';

/** Verdicts as processFrames reports them (contract.ts Verdict). */
export interface ProcessResult {
  verdicts: Uint8Array;
  /** Copies of the frames sent, in order (null with collect: false). */
  sent: Buffer[] | null;
}

export interface ProcessOptions {
  /** Per-frame tpacket status bits (e.g. 1 << 3 = TP_STATUS_CSUMNOTREADY), as the live ring gives them. */
  status?: Uint32Array;
  /** Keep copies of the sent frames (default true). */
  collect?: boolean;
  /** The sink refuses every frame (send_failed accounting). */
  refuse?: boolean;
}

export interface NativeStats {
  frames: number;
  upcalls: number;
  slowPath: number;
  csumFixed: number;
  flushes: number;
  sendFailed: number;
  wakeups: number;
  liveFrames: number;
  ringPackets: number;
  ringDrops: number;
  /** Socket errors on the capture (e.g. the interface went down); the capture goes on. */
  pollErrors: number;
  sendSyscalls: number;
  lastSendErrno: number;
  live: boolean;
  polling: boolean;
}

/** The addon's Dataplane object (native/src/addon.cc). */
interface AddonDataplane {
  attach(tables: object): void;
  processFrames(frames: Uint8Array, lengths: Uint32Array, opts?: ProcessOptions): ProcessResult;
  openLive(capture: string, egress: string, filter: string, ringBytes?: number): {
    captureMac: Buffer;
    egressMac: Buffer;
    captureMtu: number;
    frameSize: number;
    frames: number;
  };
  start(): void;
  stop(): void;
  close(): void;
  send(buf: Uint8Array, len: number): boolean;
  setFilter(filter: string): void;
  /** Busy-poll after the ring runs dry, in microseconds (0 = off, at most 1000). */
  setBusyPoll(microseconds: number): void;
  stats(): NativeStats;
}

export interface NativeAddon {
  Dataplane: new () => AddonDataplane;
  contract: {
    verdict: { forward: number; drop: number; arp: number };
    dropReasons: string[];
    counterCount: number;
    slotEmpty: number;
    connFInactive: number;
    stateNone: number;
    stateEstablished: number;
    stateUdp: number;
    tcpNextStates: number;
    tcpNextFlags: number;
    undefinedState: number;
    timeoutsLen: number;
    upcallArgs: number;
    batch: number;
    flowHashSamples: number[];
  };
  abiVersion: number;
}

export type NativeLoad = { ok: true; addon: NativeAddon; path: string } | { ok: false; reason: string; path: string };

/**
 * Where the addon should be: $LBD_NATIVE_ADDON when set (another build, e.g. for a benchmark),
 * else under the first native/ found walking up from this file (dist/src/dataplane or src/dataplane).
 */
export function addonPath(): string {
  if (process.env.LBD_NATIVE_ADDON) return path.resolve(process.env.LBD_NATIVE_ADDON);
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    if (fs.existsSync(path.join(dir, 'native', 'binding.gyp'))) return path.join(dir, ADDON_RELATIVE_PATH);
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..', '..', ADDON_RELATIVE_PATH);
}

let cached: NativeLoad | null = null;

/** Loads the addon once; never throws. */
export function loadNative(): NativeLoad {
  if (cached) return cached;
  const file = addonPath();
  const fail = (reason: string): NativeLoad => (cached = { ok: false, reason, path: file });
  if (process.platform !== 'linux') return fail(`the native fast path needs Linux (AF_PACKET), not ${process.platform}`);
  if (!fs.existsSync(file)) return fail(`the addon is not built (${file} missing: npm run build:native)`);
  let addon: NativeAddon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    addon = require(file) as NativeAddon;
  } catch (e) {
    return fail(`the addon does not load: ${(e as Error).message.split('\n')[0]}`);
  }
  const mismatch = contractMismatch(addon);
  if (mismatch) return fail(`the addon was built against another contract (${mismatch}): rebuild it (npm run build:native)`);
  return (cached = { ok: true, addon, path: file });
}

/** Compares the numbers the addon was compiled with against contract.ts; null when they agree. */
export function contractMismatch(addon: NativeAddon): string | null {
  const c = addon.contract;
  if (!c || addon.abiVersion !== 1) return 'ABI version';
  if (c.verdict.forward !== 0 || c.verdict.drop !== 1 || c.verdict.arp !== 2) return 'verdicts';
  if (c.dropReasons.length !== DROP_REASONS.length || c.dropReasons.some((r, i) => r !== DROP_REASONS[i])) return 'drop reasons';
  if (c.counterCount !== COUNTER_COUNT) return 'counters';
  if (c.slotEmpty !== SLOT_EMPTY || c.connFInactive !== CONN_F_INACTIVE) return 'connection entry';
  if (c.stateNone !== ConnState.None || c.stateEstablished !== ConnState.Established || c.stateUdp !== ConnState.Udp) return 'states';
  if (c.tcpNextStates !== 256 || c.tcpNextFlags !== 16 || c.undefinedState !== 0xffff) return 'state table layout';
  if (c.timeoutsLen !== TIMEOUTS_LEN || c.upcallArgs !== UPCALL_ARGS) return 'shared array layout';
  const samples = [flowHash(0, 0), flowHash(0x0a000a32, (3 << 16) | 40000), flowHash(0xffffffff, 0xffffffff)];
  if (c.flowHashSamples.some((h, i) => h !== samples[i])) return 'flowHash';
  return null;
}

// ---- The mirror: what the addon needs beyond the Forwarder's own typed arrays ----------------

const TIMEOUTS_LEN = 14; // [0..12] TCP per state (tcpTimeouts), [13] UDP
// service index, table slot, src addr, src port, proto, flags, dst addr, dst port, conn slot
const UPCALL_ARGS = 9;
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
    Object.defineProperty(fw, 'captureMac', { get: () => captureMac, set: (v: Uint8Array) => ((captureMac = v), syncMacs()), enumerable: true, configurable: true });
    Object.defineProperty(fw, 'egressMac', { get: () => egressMac, set: (v: Uint8Array) => ((egressMac = v), syncMacs()), enumerable: true, configurable: true });
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

function requireAddon(): NativeAddon {
  const l = loadNative();
  if (!l.ok) throw new LbdError('E_NATIVE', `native fast path unavailable: ${l.reason}`);
  return l.addon;
}

/**
 * The fast path on frames from memory: the same C++ per-frame code and batching as live
 * traffic, with sends captured instead of put on a wire. For tests and benchmarks.
 */
export class NativeDataplane {
  private readonly dp: AddonDataplane;

  /** slowPath: where ARP frames go (default: the Forwarder's own process()). */
  constructor(readonly forwarder: Forwarder, slowPath?: (buf: Buffer, len: number) => void) {
    this.dp = new (requireAddon().Dataplane)();
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

/** Size of the capture ring (PACKET_RX_RING), like the 16 MB libpcap buffer of the TS path. */
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

  constructor(readonly name: string, readonly egressName: string, filter: string, private readonly forwarder: () => Forwarder) {
    this.dp = new (requireAddon().Dataplane)();
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
  /** Opens ports for the daemon: the native capture port on the capture interface, CapPort elsewhere. */
  openPort: ((iface: string, filter: string) => Port) | null;
}

/**
 * Picks the data-plane path for the daemon: `ts` → the TypeScript path; `native` → the addon or
 * an error saying why not; `auto` → the addon when it loads and the capture interface opens,
 * else the TypeScript path with a warning. In-memory ports (tests) always run the TypeScript path.
 */
export function selectDataplane(
  cfg: Config,
  o: { inMemory: boolean; log: Logger; forwarder: () => Forwarder; filter: string },
): DataplaneSelection {
  const mode = cfg.dataplane;
  if (mode === 'ts' || o.inMemory) return { path: 'ts', fallbackReason: null, openPort: null };
  const { capture, egress } = cfg.interfaces;
  let first: NativePort | null = null;
  try {
    first = new NativePort(capture, egress, o.filter, o.forwarder);
  } catch (e) {
    const reason = (e as Error).message.replace(/^native fast path unavailable: /, '');
    if (mode === 'native') {
      throw new LbdError('E_NATIVE', `dataplane: native, but the native fast path cannot run: ${reason} (use dataplane: auto or ts to run the TypeScript path)`);
    }
    o.log.warn({ reason }, 'native fast path unavailable: running the TypeScript data plane');
    return { path: 'ts', fallbackReason: reason, openPort: null };
  }
  return {
    path: 'native',
    fallbackReason: null,
    openPort: (iface, filter) => {
      if (iface !== capture) return new CapPort(iface, filter); // the egress interface: ARP only
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
