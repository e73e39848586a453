/**
 * The native binding (native/, a Node-API addon): where it is and loading it. lbd captures and
 * sends through it on both data paths (the TypeScript path through its Capture, the native fast
 * path through its Dataplane), so there is no running without one.
 *
 * Tried in order, the first that loads and agrees with contract.ts wins:
 *   1. $LBD_NATIVE_ADDON, when set, and then nothing else (a benchmark of another build must not
 *      quietly measure this one);
 *   2. the local build, native/build/Release/lbd_native.node (npm run build:native);
 *   3. the package's prebuilt binary, prebuilds/linux-ARCH/lbd_native.node (scripts/prebuild.sh).
 * Node-API keeps one binary good for every Node major, so none is tied to the Node that built it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { BindingError } from '../errors';
import { PACKAGE_ROOT } from '../package-root';
import {
  COUNTER_COUNT,
  CONN_F_INACTIVE,
  CONN_REUSE_MODES,
  ConnState,
  DROP_REASONS,
  SLOT_EMPTY,
  SVC_F_ON_MISS_HASH,
  SVC_F_REUSE_MASK,
  TIMEOUTS_LEN,
  flowHash,
  opensOnMiss,
  reuseReschedules,
} from './contract';

/** The addon's API version (addon.cc abiVersion): 2 added Capture and libpcap(), 4 openTap()/closeTap(), 5 virtio-net headers (super-frames), 6 mapStateFile()/lockFile(), 7 mapExistingFile(), 8 svcFlags (on_miss) and openTap's multiQueue, 9 sdNotify() and its test listener, 10 the live loop's timings in stats(). */
const ABI_VERSION = 10;

/** Bytes of a virtio-net header (struct virtio_net_hdr, PACKET_VNET_HDR) as the addon takes and gives them. */
export const VNET_HDR_LEN = 10;

/** The largest frame (IPv4's 65535 bytes, Ethernet header, a VLAN tag, rounded): a capture buffer of this size takes every frame whole. */
export const MAX_FRAME = 65536 + 64;

/** The local build, relative to the package root. */
export const ADDON_RELATIVE_PATH = 'native/build/Release/lbd_native.node';

/** The upcall's argument cells (native.ts), compared with what the addon was compiled with: service index, table slot, src addr, src port, proto, flags, dst addr, dst port, conn slot. */
export const UPCALL_ARGS = 10;

/** Verdicts as processFrames reports them (contract.ts Verdict). */
export interface ProcessResult {
  verdicts: Uint8Array;
  /** Copies of the frames sent, in order (null with collect: false). */
  sent: Buffer[] | null;
  /** The virtio-net header each sent frame left with (VNET_HDR_LEN bytes each, zeros for an ordinary frame; null with collect: false). */
  sentVnet: Buffer[] | null;
}

export interface ProcessOptions {
  /** Per-frame tpacket status bits (e.g. 1 << 3 = TP_STATUS_CSUMNOTREADY), as the live ring gives them. */
  status?: Uint32Array;
  /**
   * Per-frame virtio-net headers, VNET_HDR_LEN bytes each back to back, as a vnet ring gives them (gso_type/gso_size of a
   * super-frame, NEEDS_CSUM with csum_start/offset of a partial checksum). Given, the frames are handled as the live path with
   * PACKET_VNET_HDR handles them: a partial checksum is left to the kernel (the header goes out with the frame) instead of
   * completed by the status bit. Absent: a ring without headers.
   */
  vnet?: Uint8Array;
  /** Keep copies of the sent frames (default true). */
  collect?: boolean;
  /** The sink refuses every frame (send_failed accounting). */
  refuse?: boolean;
}

export interface NativeStats {
  frames: number;
  upcalls: number;
  /** Nanoseconds in the upcalls (CLOCK_MONOTONIC). */
  upcallNs: number;
  /** Nanoseconds in sendmmsg (with the kernel's delivery it runs). */
  sendNs: number;
  /** Nanoseconds the live loop's wake-ups worked (process + upcalls + sends, and busy-poll spins). */
  busyNs: number;
  /** Nanoseconds frames sat in the ring before the wake-up that took them, summed over ringWaitFrames frames. */
  ringWaitNs: number;
  ringWaitFrames: number;
  slowPath: number;
  csumFixed: number;
  flushes: number;
  sendFailed: number;
  /** Frames larger than a ring slot, taken whole from the socket (PACKET_COPY_THRESH). */
  copied: number;
  /** Frames cut short with no whole copy (the socket's receive buffer was full): dropped as truncated. */
  truncated: number;
  /** The ring gives virtio-net headers and the send sockets take them: super-frames pass whole. */
  vnet: boolean;
  wakeups: number;
  liveFrames: number;
  /** Times the busy-poll spin caught the next frame after the ring had run dry (busy_poll). */
  busyPollCatches: number;
  ringPackets: number;
  ringDrops: number;
  /** Socket errors on the capture (e.g. the interface went down); the capture goes on. */
  pollErrors: number;
  sendSyscalls: number;
  lastSendErrno: number;
  live: boolean;
  polling: boolean;
}

/** The addon's Dataplane object: the native fast path (native/src/addon.cc). */
export interface AddonDataplane {
  attach(tables: object): void;
  processFrames(frames: Uint8Array, lengths: Uint32Array, opts?: ProcessOptions): ProcessResult;
  openLive(
    capture: string,
    egress: string,
    filter: string,
    ringBytes?: number,
  ): {
    captureMac: Buffer;
    egressMac: Buffer;
    captureMtu: number;
    frameSize: number;
    frames: number;
    /** Super-frames pass whole (PACKET_VNET_HDR on the ring and the send sockets). */
    vnet: boolean;
  };
  start(): void;
  stop(): void;
  close(): void;
  /** One frame now on the capture interface (ARP); vnet: its virtio-net header (absent: an ordinary frame). */
  send(buf: Uint8Array, len: number, vnet?: Uint8Array): boolean;
  setFilter(filter: string): void;
  /** Busy-poll after the ring runs dry, in microseconds (0 = off, at most 1000). */
  setBusyPoll(microseconds: number): void;
  stats(): NativeStats;
}

export interface CaptureStats {
  /** Frames handed to the callback (truncated ones included, with length 0). */
  frames: number;
  /** Frames delivered cut (length 0): larger than the buffer, cut by the ring with no whole copy, or a super-frame without a vnet array. */
  truncated: number;
  /** Super-frames (gso_type set) received. */
  superFrames: number;
  /** Frames larger than a ring slot, taken whole from the socket (PACKET_COPY_THRESH). */
  copied: number;
  /** Partial checksums completed (only when start() got no vnet array). */
  csumFixed: number;
  wakeups: number;
  ringPackets: number;
  ringDrops: number;
  pollErrors: number;
  sendFailed: number;
  sendSyscalls: number;
  lastSendErrno: number;
  live: boolean;
  polling: boolean;
}

/** The addon's Capture object: the TypeScript path's port (native/src/capture.cc). */
export interface AddonCapture {
  /** vnet: the ring gives virtio-net headers and the send socket takes them (PACKET_VNET_HDR). */
  open(iface: string, filter: string, ringBytes?: number): { mac: Buffer; mtu: number; frameSize: number; frames: number; loopback: boolean; vnet: boolean };
  /**
   * Every frame is copied into `buffer` (MAX_FRAME bytes take every frame whole), then onFrame(length) runs: 0 for a frame cut
   * short (never to be forwarded). With `vnet` (VNET_HDR_LEN bytes), the frame's virtio-net header is copied there first (zeros for
   * an ordinary frame); without it, a super-frame is delivered cut (0) and a partial checksum is completed.
   */
  start(buffer: Uint8Array, onFrame: (len: number) => void, vnet?: Uint8Array): void;
  stop(): void;
  close(): void;
  /** One frame now; vnet: the virtio-net header it leaves with (zeros or absent: an ordinary frame; a super-frame is segmented by the kernel). */
  send(buf: Uint8Array, len: number, vnet?: Uint8Array): boolean;
  setFilter(filter: string): void;
  stats(): CaptureStats;
}

export interface NativeAddon {
  Dataplane: new () => AddonDataplane;
  Capture: new () => AddonCapture;
  /** The libpcap soname the filter compiler loaded; throws what to install when none loads. */
  libpcap(): string;
  /** A TAP interface that exists while the returned descriptor is open (tap.cc); throws why not. */
  openTap(name: string, multiQueue?: boolean): number;
  /** Closes openTap's descriptor: the kernel deletes the interface and its routes. */
  closeTap(fd: number): void;
  /** A new file of `bytes` zero bytes mapped shared (statefile.cc): the shared state that outlives the process. */
  mapStateFile(path: string, bytes: number): ArrayBuffer;
  /** An existing file mapped copy-on-write (the previous lbd's state file, read in place); throws code ENOENT when there is none. */
  mapExistingFile(path: string): ArrayBuffer;
  /** An exclusive flock on `path`, held by the returned descriptor; throws code EWOULDBLOCK when another process holds it. */
  lockFile(path: string): number;
  /** Closes lockFile's descriptor, releasing the lock. */
  unlockFile(fd: number): void;
  /** Sends one sd_notify datagram (notify.cc) to NOTIFY_SOCKET's value, descriptors attached (SCM_RIGHTS); 0 or the errno. */
  sdNotify(socket: string, message: string, fds?: number[]): number;
  /** A test's stand-in for systemd: a bound, non-blocking Unix datagram socket at `path`; its descriptor. */
  listenNotify(path: string): number;
  /** Every datagram waiting on listenNotify's socket, oldest first, with the descriptors it carried (open: the caller's to keep or close). */
  receiveNotify(fd: number): { message: string; fds: number[] }[];
  /** Closes listenNotify's socket. */
  closeNotify(fd: number): void;
  contract: {
    verdict: { forward: number; drop: number; arp: number };
    dropReasons: string[];
    counterCount: number;
    slotEmpty: number;
    connFInactive: number;
    stateNone: number;
    stateEstablished: number;
    stateUdp: number;
    /** Per conn_reuse_mode 0..2: bit s set when an entry in state s is rescheduled. */
    reuseStates: number[];
    /** opensOnMiss() for svcFlags 0 and SVC_F_ON_MISS_HASH: bit f set when TCP flags f (0..31) open an entry. */
    missOpens: number[];
    svcFReuseMask: number;
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

/** One place a binding may be. */
export interface BindingCandidate {
  file: string;
  /** How it got there: "LBD_NATIVE_ADDON", "local build", "prebuilt". */
  what: string;
}

export type NativeLoad =
  | { ok: true; addon: NativeAddon; path: string }
  /** path: the first place tried; tried: every place with why it was passed over. */
  | { ok: false; reason: string; path: string; tried: string[] };

/** Where a binding may be, in the order tried. */
export function bindingCandidates(env: NodeJS.ProcessEnv = process.env, root = PACKAGE_ROOT, arch: string = process.arch): BindingCandidate[] {
  if (env.LBD_NATIVE_ADDON) return [{ file: path.resolve(env.LBD_NATIVE_ADDON), what: 'LBD_NATIVE_ADDON' }];
  return [
    { file: path.join(root, ADDON_RELATIVE_PATH), what: 'local build' },
    { file: path.join(root, 'prebuilds', `linux-${arch}`, 'lbd_native.node'), what: 'prebuilt' },
  ];
}

/** What to do when nothing loads: build one, or get the prebuilt one. */
export function howToGetBinding(arch: string = process.arch): string {
  return `build it with "npm run build:native" (needs g++), or install lbd from a package that ships prebuilds/linux-${arch}/lbd_native.node (scripts/prebuild.sh makes them)`;
}

/** Tries one file: the addon, or why it cannot be used. */
function tryBinding(c: BindingCandidate): NativeAddon | string {
  if (!fs.existsSync(c.file)) return c.what === 'local build' ? 'not built' : 'missing';
  let addon: NativeAddon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- a .node file found at run time
    addon = require(c.file) as NativeAddon;
  } catch (e) {
    return `does not load: ${(e as Error).message.split('\n')[0]}`;
  }
  const mismatch = contractMismatch(addon);
  if (mismatch) return `built against another contract (${mismatch})`;
  return addon;
}

/** Tries every candidate in order; never throws. */
export function loadBinding(candidates: BindingCandidate[], platform: string = process.platform, arch: string = process.arch): NativeLoad {
  const first = candidates[0]?.file ?? '';
  if (platform !== 'linux') {
    const reason = `the native binding needs Linux (AF_PACKET), not ${platform}`;
    return { ok: false, reason, path: first, tried: [] };
  }
  const tried: string[] = [];
  for (const c of candidates) {
    const r = tryBinding(c);
    if (typeof r !== 'string') return { ok: true, addon: r, path: c.file };
    tried.push(`${c.what} ${c.file}: ${r}`);
  }
  const reason = `no native binding loads (lbd captures and sends through it); tried: ${tried.join('; ')}. To fix: ${howToGetBinding(arch)}`;
  return { ok: false, reason, path: first, tried };
}

let cached: NativeLoad | null = null;

/** Loads the binding once; never throws. */
export function loadNative(): NativeLoad {
  if (!cached) cached = loadBinding(bindingCandidates());
  return cached;
}

/** The binding, or a BindingError saying what was tried and how to get one. */
export function requireBinding(): NativeAddon {
  const l = loadNative();
  if (!l.ok) throw new BindingError(l.reason);
  return l.addon;
}

/** The states (bit per state 0..31) reuseReschedules() reschedules under `mode`, as the addon exports them. */
function reuseStateBits(mode: number): number {
  let bits = 0;
  for (let s = 0; s < 32; s++) if (reuseReschedules(mode, s)) bits |= 1 << s;
  return bits >>> 0;
}

/** opensOnMiss() for svcFlags `flags`, as a bit per TCP flags value 0..31. */
function missOpenBits(flags: number): number {
  let bits = 0;
  for (let f = 0; f < 32; f++) if (opensOnMiss(flags, f)) bits |= 1 << f;
  return bits >>> 0;
}

/** Compares the numbers the addon was compiled with against contract.ts; null when they agree. */
export function contractMismatch(addon: NativeAddon): string | null {
  const c = addon.contract;
  if (!c || addon.abiVersion !== ABI_VERSION) return 'ABI version';
  if (
    typeof addon.Capture !== 'function' ||
    typeof addon.Dataplane !== 'function' ||
    typeof addon.openTap !== 'function' ||
    typeof addon.sdNotify !== 'function' ||
    typeof addon.mapStateFile !== 'function' ||
    typeof addon.mapExistingFile !== 'function'
  )
    return 'exports';
  if (c.verdict.forward !== 0 || c.verdict.drop !== 1 || c.verdict.arp !== 2) return 'verdicts';
  if (c.dropReasons.length !== DROP_REASONS.length || c.dropReasons.some((r, i) => r !== DROP_REASONS[i])) return 'drop reasons';
  if (c.counterCount !== COUNTER_COUNT) return 'counters';
  if (c.slotEmpty !== SLOT_EMPTY || c.connFInactive !== CONN_F_INACTIVE) return 'connection entry';
  if (c.stateNone !== ConnState.None || c.stateEstablished !== ConnState.Established || c.stateUdp !== ConnState.Udp) return 'states';
  if (!Array.isArray(c.reuseStates) || CONN_REUSE_MODES.some((m) => c.reuseStates[m] !== reuseStateBits(m))) return 'conn_reuse_mode states';
  if (
    !Array.isArray(c.missOpens) ||
    [0, SVC_F_ON_MISS_HASH].some((flags, i) => c.missOpens[i] !== missOpenBits(flags)) ||
    c.svcFReuseMask !== SVC_F_REUSE_MASK
  ) {
    return 'on_miss and service flags';
  }
  if (c.tcpNextStates !== 256 || c.tcpNextFlags !== 16 || c.undefinedState !== 0xffff) return 'state table layout';
  if (c.timeoutsLen !== TIMEOUTS_LEN || c.upcallArgs !== UPCALL_ARGS) return 'shared array layout';
  const samples = [flowHash(0, 0), flowHash(0x0a000a32, (3 << 16) | 40000), flowHash(0xffffffff, 0xffffffff)];
  if (c.flowHashSamples.some((h, i) => h !== samples[i])) return 'flowHash';
  return null;
}
