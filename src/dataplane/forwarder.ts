import {
  ConnState,
  CONN_F_INACTIVE,
  CONN_F_PERSIST,
  Counter,
  Drop,
  ETH_DST,
  ETH_HLEN,
  IP_PROTO,
  IP_SRC,
  IP_TOTAL_LEN,
  IPPROTO_TCP,
  SLOT_EMPTY,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  TIMEOUT_UDP,
  Verdict,
  opensOnMiss,
  reuseReschedules,
} from './contract';
import { ConnTable, connPort } from './conntable';
import {
  ICMP_ERROR_MAX,
  ICMP_NOT_ERROR,
  ICMP_OK,
  ICMP_TRUNCATED,
  IPPROTO_ICMP,
  IcmpError,
  IcmpResult,
  IcmpStats,
  TokenBucket,
  HostBuckets,
  buildFragNeeded,
  dfSet,
  parseIcmpError,
} from './icmp';
import { PARSED_ARP, PARSED_L4, ParsedFrame, macEquals, parse, rewriteMacs } from './packet';
import { GSO_NONE, Segmenter, VNET_GSO_TYPE, completeChecksum, needsWork, segmentSize, validate } from './segment';
import { DOWN_DROP, DOWN_KEEP, DestTable, RealServer, ServiceTable, VirtualService } from './services';
import { type DefenseConfig, SynFloodDefense, unestablished } from './syn-flood';
import { SharedState } from './state';
import { nextTcpState, tcpTimeouts } from './tcpstate';
import { DEST_F_DOWN, DEST_F_OVERLOAD, FlowInfo } from '../scheduler/index';

/** Where forwarded frames go: the egress interface (or a test's memory). */
export interface FrameSink {
  /**
   * Sends len bytes of buf; false when the interface refused the frame. `vnet`, only given when
   * the sink says it carries one (below): the frame's struct virtio_net_hdr, passed on as it is.
   */
  send(buf: Buffer, len: number, vnet?: Uint8Array): boolean;
  /**
   * True when send() hands a virtio_net_hdr to the kernel (a ring opened with PACKET_VNET_HDR):
   * super-frames leave whole and partial checksums partial, and the kernel or NIC finishes them.
   * Otherwise the Forwarder segments and completes them in software (segment.ts).
   */
  readonly vnet?: boolean;
}

export interface ForwarderOptions {
  connTableSize: number;
  timeouts: { tcp: number; tcpfin: number; udp: number };
  /** MAC of the capture interface: frames addressed elsewhere are not ours. */
  captureMac: Uint8Array;
  /** MAC of the egress interface: the source MAC of every forwarded frame. */
  egressMac: Uint8Array;
  egress: FrameSink;
  /** ARP frames seen on the capture interface go to the control plane. */
  onArp?: (buf: Buffer, len: number) => void;
  /** The capture interface: where ICMP "fragmentation needed" for clients goes (too_big); none = not sent. */
  reply?: FrameSink;
  /** Milliseconds, for the ICMP rate limits (tests); default performance.now(). */
  icmpClock?: () => number;
  /** The region to lay the state over (a state file's, state-file.ts); default one of its own. */
  state?: SharedState;
  /** SYN-flood defense (syn-flood.ts); default auto at 75 %, SYN_RECV 5 s. */
  defense?: DefenseConfig;
}

/** connection_table's defaults for the SYN-flood defense (config/types.ts DEFAULTS mirrors them). */
export const DEFENSE_DEFAULT: DefenseConfig = { mode: 'auto', thresholdPercent: 75, synRecvTimeout: 5 };

/**
 * The TypeScript data plane: parse → lookup → schedule (new flows only) → track → rewrite →
 * send, one frame at a time, synchronously, on the capture's shared buffer. Nothing here
 * allocates per frame; counters are plain numbers read by metrics at scrape time.
 *
 * The Forwarder owns the shared state (state.ts): its tables, counters, clock, timeouts and MACs
 * are views over that one region, which the native fast path is handed whole (native.ts).
 *
 * Longer than ~500 lines because it is the reference the native path is held to, step for step:
 * the per-frame pipeline, the upcall's decisions (schedule, reuse, down flows) and the frames
 * handed over whole (ICMP, too big) read the same tables and counters and must stay side by side
 * with their native twins; what stands alone has its own file (segment.ts, icmp.ts, packet.ts,
 * conntable.ts, services.ts).
 */
export class Forwarder {
  readonly state: SharedState;
  readonly conns: ConnTable;
  /** Persistence templates (client network → real server), like IPVS's templates. */
  readonly templates: ConnTable;
  readonly dests: DestTable;
  readonly services: ServiceTable;
  readonly drops: Float64Array;
  readonly counters: Float64Array;
  /** The capture interface's MAC: frames addressed elsewhere are not ours (a view of the shared MACs). */
  readonly captureMac: Uint8Array;
  /** The egress interface's MAC, the source of every forwarded frame (a view of the shared MACs). */
  readonly egressMac: Uint8Array;
  egress: FrameSink;
  /** The capture interface, for ICMP to clients (too_big); null: the ICMP is not sent. */
  reply: FrameSink | null;
  onArp: (buf: Buffer, len: number) => void;
  /** ICMP errors to VIPs by kind and outcome, and the rate-limited "fragmentation needed" (metrics). */
  readonly icmp = new IcmpStats();

  /** [0..12] TCP timeouts by state, [13] UDP, in seconds (the shared state's). */
  private readonly timeouts: Uint32Array;
  /** The shared clock cell: now, in whole seconds. */
  private readonly clock: Float64Array;
  /** Existing flows of down servers moved (on_down reschedule) or forgotten (on_down drop). */
  downFlowsRescheduled = 0;
  downFlowsDropped = 0;
  /** SYNs that found their client port's finished entry and were scheduled afresh (conn_reuse_mode). */
  reuseRescheduled = 0;
  private readonly frame = new ParsedFrame();
  /** Super-frames cut in software for an egress that cannot take their header (one buffer for all). */
  private readonly segmenter = new Segmenter();
  private segBytes = 0;
  private readonly segSink = (b: Buffer, l: number): boolean => {
    if (!this.egress.send(b, l)) return false;
    this.segBytes += l;
    return true;
  };
  /** The egress interface's MTU, 0 = no check (a view of the shared state). */
  private readonly mtu: Uint32Array;
  private readonly icmpError = new IcmpError();
  /** Rate limits: ICMP errors forwarded to real servers, "fragmentation needed" sent to clients. */
  private readonly icmpForwardBucket: TokenBucket;
  private readonly icmpSendBucket: TokenBucket;
  private readonly icmpSendHosts: HostBuckets;
  private readonly icmpOut = Buffer.alloc(ETH_HLEN + ICMP_ERROR_MAX);
  private readonly flow: FlowInfo = { srcAddr: 0, srcPort: 0, continuing: false };
  private sweepCursor = 0;
  private templateCursor = 0;

  constructor(opts: ForwarderOptions) {
    const st = (this.state = opts.state ?? new SharedState(opts.connTableSize));
    const a = st.arrays;
    this.conns = new ConnTable(st.connCapacity, a);
    this.templates = new ConnTable(st.templateCapacity, {
      keyAddr: a.tplKeyAddr,
      keyPort: a.tplKeyPort,
      dest: a.tplDest,
      state: a.tplState,
      flags: a.tplFlags,
      expires: a.tplExpires,
      refs: a.tplRefs,
    });
    this.dests = new DestTable(a);
    this.services = new ServiceTable(a);
    this.drops = a.drops;
    this.counters = a.counters;
    this.clock = a.clock;
    this.timeouts = a.timeouts;
    this.captureMac = a.macs.subarray(0, 6);
    this.egressMac = a.macs.subarray(6, 12);
    this.captureMac.set(opts.captureMac.subarray(0, 6));
    this.egressMac.set(opts.egressMac.subarray(0, 6));
    this.now = 1;
    this.egress = opts.egress;
    this.onArp = opts.onArp ?? (() => {});
    this.reply = opts.reply ?? null;
    this.mtu = a.egressMtu;
    this.icmpForwardBucket = new TokenBucket(undefined, undefined, opts.icmpClock);
    this.icmpSendBucket = new TokenBucket(undefined, undefined, opts.icmpClock);
    this.icmpSendHosts = new HostBuckets(undefined, undefined, undefined, opts.icmpClock);
    this.defense = new SynFloodDefense(opts.defense ?? DEFENSE_DEFAULT);
    this.setTimeouts(opts.timeouts);
  }

  /** SYN-flood defense: its state, read by the control plane's tick and by metrics. */
  readonly defense: SynFloodDefense;
  /** SYN_RECV's timeout when the defense is off (IPVS's 60 s). */
  private synRecvTimeout = 60;

  /** A new defense config (a reload); the state follows at the next updateDefense(). */
  setDefense(c: DefenseConfig): void {
    this.defense.config = c;
    this.applyDefenseTimeout();
  }

  /**
   * The defense's state for the table's fill now (the control plane's tick); true when it
   * changed. On, SYN_RECV's timeout is the defense's; the sweep shortens the entries there.
   */
  updateDefense(): boolean {
    if (!this.defense.update(this.conns.size, this.conns.capacity)) return false;
    this.applyDefenseTimeout();
    return true;
  }

  private applyDefenseTimeout(): void {
    const short = Math.max(1, Math.ceil(this.defense.config.synRecvTimeout));
    this.timeouts[ConnState.SynRecv] = this.defense.active ? Math.min(short, this.synRecvTimeout) : this.synRecvTimeout;
  }

  /** The egress interface's MTU: larger frames with DF set are not forwarded (too_big); 0 = no check. */
  get egressMtu(): number {
    return this.mtu[0];
  }
  set egressMtu(mtu: number) {
    this.mtu[0] = mtu;
  }

  /** Coarse clock in whole seconds, advanced by the control plane. */
  get now(): number {
    return this.clock[0];
  }
  set now(seconds: number) {
    this.clock[0] = seconds;
  }

  setTimeouts(t: { tcp: number; tcpfin: number; udp: number }): void {
    // The clock ticks in whole seconds: round up so that no timeout becomes zero.
    this.timeouts.set(tcpTimeouts(Math.max(1, Math.ceil(t.tcp)), Math.max(1, Math.ceil(t.tcpfin))));
    this.timeouts[TIMEOUT_UDP] = Math.max(1, Math.ceil(t.udp));
    this.synRecvTimeout = this.timeouts[ConnState.SynRecv];
    if (this.defense) this.applyDefenseTimeout();
  }

  /**
   * The native fast path's upcall (native.ts): a table miss that may open a connection, handed
   * to schedule() below. Same contract: the new slot, or ~reason when the frame is dropped.
   */
  scheduleNew(svc: VirtualService, f: ParsedFrame): number {
    return this.schedule(svc, f);
  }

  /** The native path's upcall for a hit whose real server is down (downAction ≠ DOWN_KEEP): downFlow(). */
  rescheduleDown(svc: VirtualService, f: ParsedFrame, slot: number): number {
    return this.downFlow(svc, f, slot);
  }

  /** The native path's upcall for a SYN that hits an entry conn_reuse_mode reschedules: reuse(). */
  rescheduleReuse(svc: VirtualService, f: ParsedFrame, slot: number): number {
    return this.reuse(svc, f, slot);
  }

  /**
   * Handles one frame; the frame is rewritten in place when forwarded. `ourMac` is the MAC a
   * frame must be addressed to: the capture interface's, or the local-access interface's for
   * the host's own connections to a VIP. `vnet` is the frame's struct virtio_net_hdr when the
   * capture has one (PACKET_VNET_HDR; absent or all zeros: an ordinary frame): a super-frame
   * (gso_type ≠ NONE, counted in SuperFrames) or a partial checksum (NEEDS_CSUM) leaves with its
   * header on an egress that carries one, else cut (SoftwareSegments) or completed here. A header
   * lbd cannot follow is dropped as gso_unsupported (segment.ts validate()), never cut short.
   */
  process(buf: Buffer, len: number, ourMac: Uint8Array = this.captureMac, vnet?: Uint8Array): Verdict {
    const c = this.counters;
    c[Counter.RxFrames]++;
    c[Counter.RxBytes] += len;
    const work = vnet !== undefined && needsWork(vnet);
    const gso = work && vnet[VNET_GSO_TYPE] !== GSO_NONE;
    if (gso) c[Counter.SuperFrames]++;
    const f = this.frame;
    const parsed = parse(buf, len, f);
    if (parsed !== PARSED_L4) {
      if (parsed === PARSED_ARP) {
        c[Counter.ArpFrames]++;
        this.onArp(buf, len);
        return Verdict.Arp;
      }
      if (parsed === Drop.Unsupported && buf[IP_PROTO] === IPPROTO_ICMP) return this.forwardIcmp(buf, len, ourMac);
      return this.drop(parsed);
    }
    if (work) {
      // Before the MAC check, as the native path (fastpath.cc) does it.
      const bad = validate(buf, f, vnet);
      if (bad >= 0) return this.drop(bad);
    }
    if (!macEquals(buf, ETH_DST, ourMac)) return this.drop(Drop.NotOurMac);
    const svc = this.services.lookup(f.dstAddr, f.dstPort, f.proto);
    if (svc === null) return this.drop(Drop.Unsupported);

    let slot = this.lookup(svc, f);
    if (slot < 0) {
      slot = this.schedule(svc, f);
      if (slot < 0) return this.drop(~slot);
    } else if (this.reusable(svc, f, slot)) {
      // A new connection on the port of a finished one (conn_reuse_mode), before the down check as in IPVS.
      slot = this.reuse(svc, f, slot);
      if (slot < 0) return this.drop(~slot);
    } else if (this.dests.downAction[this.conns.dest[slot]] !== DOWN_KEEP) {
      // The flow's real server failed its health check (on_down reschedule | drop).
      slot = this.downFlow(svc, f, slot);
      if (slot < 0) return this.drop(~slot);
    }
    this.track(slot, f);
    const dest = this.conns.dest[slot];
    if (this.dests.macKnown[dest] === 0) return this.drop(Drop.NoMac);
    if (this.mtu[0] !== 0 && this.exceedsMtu(buf, gso ? segmentSize(buf, f, vnet) : 0)) return this.tooBig(buf, len, ourMac);
    rewriteMacs(buf, this.dests.mac, dest * 6, this.egressMac);
    if (work && this.egress.vnet !== true) {
      if (!this.sendSoftware(buf, len, f, vnet)) return this.drop(Drop.SendFailed);
    } else {
      // A header-carrying egress gets the header as it came (as the native path passes it on).
      if (!this.egress.send(buf, len, this.egress.vnet === true ? vnet : undefined)) return this.drop(Drop.SendFailed);
      c[Counter.TxFrames]++;
      c[Counter.TxBytes] += len;
    }
    // Per real server and service: frames as received (a super-frame is one), as IPVS counts skbs.
    this.dests.packets[dest]++;
    this.dests.bytes[dest] += len;
    svc.stats[0]++;
    svc.stats[1] += len;
    return Verdict.Forward;
  }

  /**
   * A super-frame or partial checksum for an egress that cannot take its header: the checksum
   * completed in place, or the frame cut into segments sent one by one (TxFrames/TxBytes count
   * what went out). False when the egress refused the frame or any of its segments.
   */
  private sendSoftware(buf: Buffer, len: number, f: ParsedFrame, vnet: Uint8Array): boolean {
    const c = this.counters;
    if (vnet[VNET_GSO_TYPE] === GSO_NONE) {
      completeChecksum(buf, vnet);
      if (!this.egress.send(buf, len)) return false;
      c[Counter.TxFrames]++;
      c[Counter.TxBytes] += len;
      return true;
    }
    const seg = this.segmenter;
    const made = seg.made;
    this.segBytes = 0;
    const took = seg.segment(buf, f, vnet, this.segSink);
    c[Counter.SoftwareSegments] += seg.made - made;
    c[Counter.TxFrames] += took;
    c[Counter.TxBytes] += this.segBytes;
    return took === seg.made - made;
  }

  /**
   * An ICMP error to a VIP (IPVS's ip_vs_in_icmp): destination unreachable (fragmentation
   * needed among them) or time exceeded about a reply, VIP:vport → client:cport, that a router
   * could not deliver. The real server that holds the flow gets it unchanged but for the MACs,
   * so that its path MTU discovery (or its connect error) works as without a balancer. An ICMP
   * about a flow without an entry is dropped (icmp_unknown_flow); other ICMP is unsupported.
   */
  private forwardIcmp(buf: Buffer, len: number, ourMac: Uint8Array): Verdict {
    const e = this.icmpError;
    const r = parseIcmpError(buf, len, e);
    if (r === ICMP_NOT_ERROR) return this.drop(Drop.Unsupported);
    if (r === ICMP_TRUNCATED) return this.drop(Drop.Truncated);
    if (!macEquals(buf, ETH_DST, ourMac)) return this.drop(Drop.NotOurMac);
    const svc = r === ICMP_OK && e.quotedSrc === e.outerDst ? this.services.lookup(e.quotedSrc, e.quotedSrcPort, e.quotedProto) : null;
    const slot = svc === null ? -1 : this.conns.find(e.quotedDst, connPort(svc.index, e.quotedDstPort));
    if (slot < 0) {
      this.icmp.count(e.kind, IcmpResult.UnknownFlow);
      return this.drop(Drop.IcmpUnknownFlow);
    }
    const dest = this.conns.dest[slot];
    if (this.dests.macKnown[dest] === 0) return this.drop(Drop.NoMac);
    if (!this.icmpForwardBucket.take()) {
      this.icmp.count(e.kind, IcmpResult.RateLimited);
      return Verdict.Drop;
    }
    rewriteMacs(buf, this.dests.mac, dest * 6, this.egressMac);
    if (!this.egress.send(buf, len)) return this.drop(Drop.SendFailed);
    this.icmp.count(e.kind, IcmpResult.Forwarded);
    this.counters[Counter.IcmpForwarded]++;
    this.counters[Counter.TxFrames]++;
    this.counters[Counter.TxBytes] += len;
    return Verdict.Forward;
  }

  /**
   * Would the frame, DF set, not fit the egress MTU? Its IP datagram, or, for a super-frame
   * (`segment` > 0: its headers plus one segment's payload, the virtio header's hdr_len +
   * gso_size), each segment it stands for.
   */
  exceedsMtu(buf: Buffer, segment: number): boolean {
    if (!dfSet(buf)) return false;
    const size = segment > 0 ? segment : (buf[IP_TOTAL_LEN] << 8) | buf[IP_TOTAL_LEN + 1];
    return size > this.mtu[0];
  }

  /**
   * A frame with DF set larger than the egress MTU (IPVS's DR transmit, ensure_mtu_is_adequate):
   * not forwarded (too_big); its sender gets ICMP "fragmentation needed" with the egress MTU,
   * from the VIP, out of the interface the frame came in by (rate-limited).
   */
  tooBig(buf: Buffer, len: number, ourMac: Uint8Array): Verdict {
    const reply = ourMac === this.captureMac ? this.reply : null;
    if (reply !== null) {
      // The client's own limit first, so that a limited client spends none of the global tokens.
      if (!this.icmpSendHosts.take(buf.readUInt32BE(IP_SRC)) || !this.icmpSendBucket.take()) this.icmp.tooBigRateLimited++;
      else {
        const n = buildFragNeeded(buf, len, ourMac, this.mtu[0], this.icmpOut);
        if (reply.send(this.icmpOut, n)) this.counters[Counter.IcmpTooBigSent]++;
      }
    }
    return this.drop(Drop.TooBig);
  }

  /**
   * An existing flow whose real server is down (health, on_down): `drop` forgets the entry
   * and drops the frame (IPVS expire_nodest_conn); `reschedule` moves the entry to a server
   * the scheduler picks now (or the sorry server), whose kernel answers the mid-stream
   * segment with a RST, so the client fails fast instead of timing out. The entry keeps its
   * state, so ActiveConn/InActConn move with it. Returns the slot, or ~reason.
   */
  private downFlow(svc: VirtualService, f: ParsedFrame, slot: number): number {
    const conns = this.conns;
    const d = this.dests;
    const old = conns.dest[slot];
    if (d.downAction[old] === DOWN_DROP) {
      this.expire(slot);
      this.downFlowsDropped++;
      return ~Drop.NoRealServer;
    }
    this.flow.srcAddr = f.srcAddr;
    this.flow.srcPort = f.srcPort;
    this.flow.continuing = false;
    const dest = svc.sorryActive && svc.sorry !== null ? svc.sorry : (svc.scheduler.schedule(svc.dests, this.flow) as RealServer | null);
    if (dest === null) return ~Drop.NoRealServer;
    if ((conns.flags[slot] & CONN_F_INACTIVE) !== 0) {
      d.inactive[old]--;
      d.inactive[dest.index]++;
    } else {
      d.active[old]--;
      d.active[dest.index]++;
    }
    conns.dest[slot] = dest.index;
    this.unbound(old);
    this.bound(dest.index);
    this.downFlowsRescheduled++;
    return slot;
  }

  /**
   * conn_reuse_mode: is this frame a SYN (without ACK or RST) that finds an entry IPVS's
   * is_new_conn_expected() calls finished? Mode 0 never; TIME_WAIT and CLOSE under 1 and 2;
   * FIN_WAIT under 2 (Direct Routing sees no replies, so a closed connection stays in FIN_WAIT).
   */
  private reusable(svc: VirtualService, f: ParsedFrame, slot: number): boolean {
    if (f.proto !== IPPROTO_TCP || (f.tcpFlags & (TCP_SYN | TCP_ACK | TCP_RST)) !== TCP_SYN) return false;
    return reuseReschedules(svc.connReuseMode, this.conns.state[slot]);
  }

  /**
   * The old entry is expired exactly as the sweep would (its accounting, thresholds and template
   * reference released) and the SYN scheduled like any new connection, counted as one. Returns
   * the new slot, or ~reason.
   */
  private reuse(svc: VirtualService, f: ParsedFrame, slot: number): number {
    this.expire(slot);
    this.counters[Counter.ExpiredConns]++;
    this.reuseRescheduled++;
    return this.schedule(svc, f);
  }

  private drop(reason: number): Verdict {
    this.drops[reason]++;
    return Verdict.Drop;
  }

  /** The flow's connection entry, or -1. */
  private lookup(svc: VirtualService, f: ParsedFrame): number {
    return this.conns.find(f.srcAddr, connPort(svc.index, f.srcPort));
  }

  /**
   * A table miss: a TCP SYN (no ACK, no RST) or a UDP datagram may open a connection (IPVS with
   * sloppy_tcp=0); under on_miss: hash, so may a segment with ACK and neither SYN nor RST
   * (contract.ts opensOnMiss): a connection another balancer started, whose server the
   * consistent hash finds again. Such a continuing flow may go to a quiesced or overloaded
   * server (types.ts canTake). Returns the new slot, or ~reason when the frame is dropped.
   */
  private schedule(svc: VirtualService, f: ParsedFrame): number {
    const continuing = f.proto === IPPROTO_TCP && (f.tcpFlags & (TCP_SYN | TCP_ACK | TCP_RST)) !== TCP_SYN;
    if (continuing && !opensOnMiss(svc.flags[0], f.tcpFlags)) return ~Drop.NoConnection;
    if (svc.removed) return ~Drop.NoRealServer;
    this.flow.srcAddr = f.srcAddr;
    this.flow.srcPort = f.srcPort;
    this.flow.continuing = continuing;
    let template = -1;
    let dest: RealServer | null;
    if (svc.sorryActive && svc.sorry !== null) {
      // Health: fewer than quorum servers up, the sorry server takes every new flow.
      dest = svc.sorry;
    } else if (svc.persistence > 0) {
      template = this.persistentDest(svc, f.srcAddr);
      if (template < 0) return template;
      dest = this.dests.views[this.templates.dest[template]];
    } else {
      dest = svc.scheduler.schedule(svc.dests, this.flow) as RealServer | null;
      if (dest === null) return ~Drop.NoRealServer;
    }
    const state = f.proto === IPPROTO_TCP ? ConnState.None : ConnState.Udp;
    const flags = template >= 0 ? CONN_F_INACTIVE | CONN_F_PERSIST : CONN_F_INACTIVE;
    const key = connPort(svc.index, f.srcPort);
    let slot = this.conns.insert(f.srcAddr, key, dest.index, state, flags, this.now + 2);
    if (slot < 0 && this.defense.evicts) {
      // Full: an unestablished entry gives way (syn-flood.ts), never an established one.
      const victim = this.defense.victim(this.conns);
      if (victim >= 0) {
        this.expire(victim);
        this.defense.evictions++;
        slot = this.conns.insert(f.srcAddr, key, dest.index, state, flags, this.now + 2);
      }
    }
    if (slot < 0) return ~Drop.TableFull;
    if (template >= 0) this.templates.refs[template]++;
    // IPVS counts a new connection as inactive until it reaches ESTABLISHED.
    const d = this.dests;
    d.inactive[dest.index]++;
    d.conns[dest.index]++;
    this.bound(dest.index);
    svc.conns++;
    if (continuing) svc.missScheduled++;
    this.counters[Counter.NewConns]++;
    return slot;
  }

  /**
   * Persistence: the client's network keeps its real server while its template lives, as long
   * as that server is still in the service and up. The scheduler is asked for the network, not
   * the one client (its address masked, no port), so that a consistent scheduler (sh, mh) gives
   * the whole network the same server on every balancer. Returns the template slot or ~reason.
   */
  private persistentDest(svc: VirtualService, srcAddr: number): number {
    const t = this.templates;
    const client = (srcAddr & svc.persistenceMask) >>> 0;
    this.flow.srcAddr = client;
    this.flow.srcPort = 0;
    const key = connPort(svc.index, 0);
    let slot = t.find(client, key);
    if (slot >= 0) {
      const current = this.dests.views[t.dest[slot]];
      if (current.removed || (current.flags & DEST_F_DOWN) !== 0 || current.health === 'down') {
        const dest = svc.scheduler.schedule(svc.dests, this.flow) as RealServer | null;
        if (dest === null) return ~Drop.NoRealServer;
        this.dests.persistent[current.index]--;
        this.dests.persistent[dest.index]++;
        t.dest[slot] = dest.index;
      }
    } else {
      const dest = svc.scheduler.schedule(svc.dests, this.flow) as RealServer | null;
      if (dest === null) return ~Drop.NoRealServer;
      slot = t.insert(client, key, dest.index, ConnState.Template, 0, 0);
      if (slot < 0) return ~Drop.TableFull;
      this.dests.persistent[dest.index]++;
    }
    t.expires[slot] = this.now + svc.persistence;
    return slot;
  }

  /** Input-only TCP state tracking and the entry's new expiry. */
  private track(slot: number, f: ParsedFrame): void {
    const conns = this.conns;
    if (f.proto !== IPPROTO_TCP) {
      conns.expires[slot] = this.now + this.timeouts[TIMEOUT_UDP];
      return;
    }
    const old = conns.state[slot];
    const next = nextTcpState(old, f.tcpFlags);
    if (next !== old) {
      conns.state[slot] = next;
      const dest = conns.dest[slot];
      const inactive = (conns.flags[slot] & CONN_F_INACTIVE) !== 0;
      // ActiveConn counts ESTABLISHED entries only; every move across that line is counted.
      if (inactive && next === ConnState.Established) {
        conns.flags[slot] &= ~CONN_F_INACTIVE;
        this.dests.active[dest]++;
        this.dests.inactive[dest]--;
      } else if (!inactive && next !== ConnState.Established) {
        conns.flags[slot] |= CONN_F_INACTIVE;
        this.dests.active[dest]--;
        this.dests.inactive[dest]++;
      }
    }
    conns.expires[slot] = this.now + this.timeouts[next];
  }

  /**
   * Expires entries in the next `budget` slots of the connection table, and the same share of
   * the template table. Called on a coarse timer; a whole pass takes slots/budget calls. The
   * slices are small because the event loop (and with it the native path's ring) waits while
   * one runs: ~1.7 ns a slot here, so a 1M-entry table (2M slots) swept a hundredth at a time
   * holds frames up ~32 µs, where a tenth held them ~350 µs and showed in the p99 latency.
   */
  sweep(budget: number): number {
    const conns = this.conns;
    const now = this.now;
    let expired = 0;
    let i = this.sweepCursor;
    // The budget counts slots passed, not looks: a removal that shifts a later entry into this
    // slot is looked at again for free (each such look follows a removal, so it ends), and a
    // budget of `slots` is a whole pass.
    // While the SYN-flood defense is on, half-open entries live no longer than its timeout.
    const shortest = this.defense.active ? now + this.timeouts[ConnState.SynRecv] : 0;
    for (let n = 0; n < budget;) {
      if (conns.dest[i] !== SLOT_EMPTY && conns.expires[i] <= now) {
        this.expire(i);
        expired++;
        if (conns.dest[i] !== SLOT_EMPTY) continue;
      }
      if (shortest > 0 && conns.dest[i] !== SLOT_EMPTY && conns.expires[i] > shortest && unestablished(conns.state[i])) conns.expires[i] = shortest;
      i = (i + 1) & conns.mask;
      n++;
    }
    this.sweepCursor = i;
    this.counters[Counter.ExpiredConns] += expired;
    // After the connections, so that a template whose last connection just expired can go too.
    this.sweepTemplates(Math.ceil((budget * this.templates.slots) / conns.slots));
    return expired;
  }

  /** Expires every entry whose time has come, in one pass of both tables (tests, benchmarks). */
  sweepAll(): number {
    return this.sweep(this.conns.slots);
  }

  /**
   * Cuts every flow of one real server at once (on_remove: drop, like IPVS's
   * expire_nodest_conn): its entries leave the table, later segments of those flows find no
   * entry and are dropped. Returns how many entries were removed. A full pass over the table.
   */
  expireDest(dest: number): number {
    const conns = this.conns;
    let n = 0;
    for (let i = 0; i < conns.slots;) {
      if (conns.dest[i] === dest) {
        this.expire(i);
        n++;
        // Removal may shift a later entry into this slot: look at it again.
        if (conns.dest[i] !== SLOT_EMPTY) continue;
      }
      i++;
    }
    this.counters[Counter.ExpiredConns] += n;
    return n;
  }

  /**
   * A connection was bound to `dest` (IPVS's ip_vs_bind_dest): at u_threshold connections,
   * active and inactive together, the server is overloaded and takes no new flows.
   */
  private bound(dest: number): void {
    const rs = this.dests.views[dest];
    if (rs.uThreshold !== 0 && this.dests.active[dest] + this.dests.inactive[dest] >= rs.uThreshold) rs.flags |= DEST_F_OVERLOAD;
  }

  /**
   * A connection left `dest` (ip_vs_unbind_dest): an overloaded server takes new flows again
   * below l_threshold, or, without one, below 3/4 of u_threshold (total * 4 < u * 3 keeps it
   * in integers). The gap between the two is the hysteresis that stops it flapping.
   */
  private unbound(dest: number): void {
    const rs = this.dests.views[dest];
    if ((rs.flags & DEST_F_OVERLOAD) === 0) return;
    const total = this.dests.active[dest] + this.dests.inactive[dest];
    const relieved = rs.lThreshold !== 0 ? total < rs.lThreshold : rs.uThreshold === 0 || total * 4 < rs.uThreshold * 3;
    if (relieved) rs.flags &= ~DEST_F_OVERLOAD;
  }

  private expire(slot: number): void {
    const conns = this.conns;
    const dest = conns.dest[slot];
    if ((conns.flags[slot] & CONN_F_INACTIVE) !== 0) this.dests.inactive[dest]--;
    else this.dests.active[dest]--;
    this.unbound(dest);
    const svc = this.services.all[conns.keyPort[slot] >>> 16];
    if (svc !== undefined && (conns.flags[slot] & CONN_F_PERSIST) !== 0) {
      const t = this.templates.find((conns.keyAddr[slot] & svc.persistenceMask) >>> 0, connPort(svc.index, 0));
      if (t >= 0 && this.templates.refs[t] > 0) this.templates.refs[t]--;
    }
    conns.remove(slot);
  }

  /**
   * The service's persistence settings changed: its templates go (their clients are scheduled
   * afresh) and its connections no longer hold references on them, so that no template is
   * kept alive by a count that can never reach zero.
   */
  resetPersistence(svc: VirtualService): void {
    const t = this.templates;
    for (let i = 0; i < t.slots;) {
      if (t.dest[i] !== SLOT_EMPTY && t.keyPort[i] >>> 16 === svc.index) {
        this.dests.persistent[t.dest[i]]--;
        if (t.remove(i)) continue;
      }
      i++;
    }
    const c = this.conns;
    for (let i = 0; i < c.slots; i++) {
      if (c.dest[i] !== SLOT_EMPTY && c.keyPort[i] >>> 16 === svc.index) c.flags[i] &= ~CONN_F_PERSIST;
    }
  }

  /**
   * The next `budget` slots of the template table. A template outlives its timeout while
   * connections still rely on it, as in IPVS.
   */
  private sweepTemplates(budget: number): void {
    const t = this.templates;
    const now = this.now;
    let i = this.templateCursor;
    for (let n = 0; n < budget;) {
      if (t.dest[i] !== SLOT_EMPTY && t.expires[i] <= now) {
        if (t.refs[i] > 0) {
          const svc = this.services.all[t.keyPort[i] >>> 16];
          t.expires[i] = now + (svc ? svc.persistence : 1);
        } else {
          this.dests.persistent[t.dest[i]]--;
          // Removal may shift a later template into this slot: look at it again (for free, as above).
          if (t.remove(i)) continue;
        }
      }
      i = (i + 1) & t.mask;
      n++;
    }
    this.templateCursor = i;
  }
}
