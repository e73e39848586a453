/**
 * The native fast path (native/, a Node-API addon) as the rest of lbd sees it.
 *
 * The addon runs parse → lookup → track → rewrite → batched send in C++ on the Forwarder's shared
 * state (state.ts: the connection table, the real-server and service tables, the counters, the
 * clock, the timeouts and the MACs, all views of one region), handed to it by attach() and
 * nothing else. JavaScript is entered only for:
 *   - a table miss that may open a connection (SYN / UDP): Forwarder.scheduleNew() runs the
 *     scheduler and persistence and inserts the entry; the addon then continues with the slot;
 *   - a SYN on a finished entry that conn_reuse_mode reschedules: Forwarder.rescheduleReuse();
 *   - a flow whose real server is down: Forwarder.rescheduleDown();
 *   - ARP frames, ICMP frames, and frames too big for the egress MTU with DF set (the egressMtu
 *     shared cell; a super-frame by its segments' size): handed whole, with their virtio-net
 *     header, to the TypeScript path (Forwarder.process), which decides and counts them.
 *
 * The addon is loaded by binding.ts, which never throws: it says what it tried.
 */
import { LbdError } from '../errors';
import {
  type AddonDataplane,
  MAX_FRAME,
  type NativeStats,
  type ProcessOptions,
  type ProcessResult,
  UPCALL_ARGS,
  VNET_HDR_LEN,
  requireBinding,
} from './binding';
import { Drop, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from './contract';
import type { Forwarder } from './forwarder';
import type { Port } from './io';
import { ParsedFrame } from './packet';
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

/** upcallArgs[8] of a table miss; otherwise the slot of the hit (upcallArgs[9] = 1: a conn_reuse_mode reschedule, else its real server is down). */
const MISS = 0xffffffff;

/** nextTcpState() for every (state, FIN/SYN/RST/ACK) pair; 0xffff where it gives undefined (also the native fuzz target's table: scripts/fuzz-native-gen.mjs). */
export function tcpNextTable(): Uint16Array {
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

let tcpNext: Uint16Array | null = null;

/**
 * What the addon's attach() takes: the Forwarder's shared state as it is (every array both paths
 * read or write, by the names of contract.ts's StateArrays), the TCP transition table, and this
 * attachment's own call buffers: the upcall's arguments (no JS values created per call) and the
 * scratch buffer the frames for `slowPath` are copied into (a whole frame, up to 64 KiB) with their
 * virtio-net header (`slowVnet`, zeros for an ordinary frame). slowPath's result, when it is a
 * Verdict (Forwarder.process's), is the frame's verdict in processFrames().
 */
function attachment(fw: Forwarder, slowPath: SlowPath): object {
  const args = new Uint32Array(UPCALL_ARGS);
  const scratch = Buffer.alloc(MAX_FRAME);
  const slowVnet = new Uint8Array(VNET_HDR_LEN);
  const f = new ParsedFrame();
  const schedule = (): number => {
    const svc = fw.services.atSlot(args[1]);
    if (svc === null || svc.index !== args[0]) return ~Drop.Unsupported;
    f.srcAddr = args[2];
    f.srcPort = args[3];
    f.proto = args[4];
    f.tcpFlags = args[5];
    f.dstAddr = args[6];
    f.dstPort = args[7];
    if (args[8] === MISS) return fw.scheduleNew(svc, f);
    return args[9] === 1 ? fw.rescheduleReuse(svc, f, args[8]) : fw.rescheduleDown(svc, f, args[8]);
  };
  return {
    ...fw.state.arrays,
    tcpNext: (tcpNext ??= tcpNextTable()),
    upcallArgs: args,
    scratch,
    slowVnet,
    schedule,
    slowPath: (len: number) => slowPath(scratch, len, slowVnet),
  };
}

/** Where the frames for the TypeScript path go: the frame (len bytes of buf) and its virtio-net header (valid during the call). */
export type SlowPath = (buf: Buffer, len: number, vnet: Uint8Array) => unknown;

/**
 * The fast path on frames from memory: the same C++ per-frame code and batching as live
 * traffic, with sends captured instead of put on a wire. For tests and benchmarks.
 */
export class NativeDataplane {
  private readonly dp: AddonDataplane;

  /** slowPath: where ARP, ICMP and too-big frames go (default: the Forwarder's own process(), whose verdict is theirs). */
  constructor(
    readonly forwarder: Forwarder,
    slowPath?: SlowPath,
  ) {
    this.dp = new (requireBinding().Dataplane)();
    this.dp.attach(attachment(forwarder, slowPath ?? ((buf: Buffer, len: number, vnet: Uint8Array) => forwarder.process(buf, len, undefined, vnet))));
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

  private forwarder: Forwarder | null = null;

  constructor(
    readonly name: string,
    readonly egressName: string,
    filter: string,
  ) {
    this.dp = new (requireBinding().Dataplane)();
    try {
      this.mac = this.dp.openLive(name, egressName, filter, RING_BYTES).captureMac;
    } catch (e) {
      throw new LbdError('E_NATIVE', (e as Error).message.replace(/^lbd_native: /, ''));
    }
  }

  /** The Forwarder whose shared state this port forwards on; before start(). */
  attach(forwarder: Forwarder): void {
    this.forwarder = forwarder;
  }

  /** Starts forwarding on the attached Forwarder's state; onFrame gets the frames for the TypeScript path (ARP, ICMP, too big) with their virtio-net header. */
  start(onFrame: (buf: Buffer, len: number, vnet?: Uint8Array) => void): void {
    if (this.forwarder === null) throw new LbdError('E_NATIVE', 'NativePort.start() before attach(forwarder)');
    this.dp.attach(attachment(this.forwarder, onFrame));
    this.dp.start();
  }

  /** vnet: the frame's virtio-net header (absent: an ordinary frame, sent with a zero header). */
  send(buf: Buffer, len: number, vnet?: Uint8Array): boolean {
    return !this.closed && this.dp.send(buf, len, vnet);
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
