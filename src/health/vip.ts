import { randomBytes } from 'node:crypto';
import {
  ETH_HLEN,
  ETH_TYPE,
  ETHERTYPE_IPV4,
  IP_DST,
  IP_MIN_HLEN,
  IP_PROTO,
  IP_SRC,
  IP_VER_IHL,
  IPPROTO_TCP,
  L4_DST_PORT,
  L4_SRC_PORT,
  TCP_ACK,
  TCP_FLAGS,
  TCP_MIN_HLEN,
  TCP_RST,
  TCP_SYN,
} from '../dataplane/contract';
import { RingPort } from '../dataplane/io';
import { intToIp } from '../dataplane/packet';
import { inetChecksum } from '../dataplane/checksum';
import type { LeasedTable, LeasedTableSpec } from '../host/leased-table';
import { Checker, CheckResult } from './types';

/**
 * The VIP path probe: a TCP SYN to VIP:port in a frame addressed to one real server's MAC,
 * exactly as the data plane forwards a client's SYN, answered by that server's SYN-ACK from
 * the VIP. It proves what tcp/http checks cannot: the VIP is on the server's loopback, its
 * ARP/rp_filter/iptables setup lets VIP traffic in, and its reply leaves from the VIP.
 *
 * How it stays tidy:
 *  - Source: the egress interface's own address and a port from PROBE_PORTS (61000-61999),
 *    which lies outside Linux's default ephemeral range (32768-60999): no local socket ever
 *    uses these ports, so a probe reply can never be mistaken for anything else.
 *  - The SYN-ACK comes back to the balancer's address. The balancer's kernel has no socket
 *    for it and would answer with its own RST (harmless for the real server, but it needs a
 *    neighbour entry for the VIP, which nobody answers — a FAILED entry left behind — and it
 *    races our capture). A netdev-ingress nftables rule (table `netdev lbd_<capture>_probe`) drops
 *    exactly "ip saddr {VIPs} ip daddr <egress address> tcp dport 61000-61999" on the egress
 *    interface. Netdev ingress runs after packet taps, so the capture still sees the SYN-ACK;
 *    the kernel never does (no RST, no conntrack entry, no neighbour entry). The table is
 *    deleted on close().
 *  - One capture handle per egress interface (BPF: inbound TCP to the egress address on the
 *    probe ports) serves every probe; each reply is matched on its exact 4-tuple and on
 *    ack = our sequence number + 1.
 *  - After a SYN-ACK the prober sends a RST (seq = the SYN-ACK's ack) so the real server
 *    drops the half-open connection at once instead of retransmitting its SYN-ACK.
 */
export const PROBE_PORT_MIN = 61000;
export const PROBE_PORT_MAX = 61999;

/**
 * The probe table: the VIPs probed are leased elements of its set (leased-table.ts), so the
 * rule lapses by itself when lbd is gone; the daemon makes the table and keeps it.
 */
export function probeTableSpec(name: string, iface: string, egressIp: number): LeasedTableSpec {
  return {
    name,
    role: 'probe',
    device: iface,
    chain: 'probe_ingress',
    set: 'vips',
    type: 'ipv4_addr',
    rules: [`ip saddr @vips ip daddr ${intToIp(egressIp)} tcp dport ${PROBE_PORT_MIN}-${PROBE_PORT_MAX} drop`],
  };
}

/** What the prober needs of a capture handle (RingPort in production, a fake in tests). */
export interface ProbePort {
  start(onFrame: (buf: Buffer, len: number) => void): void;
  send(buf: Buffer, len: number): boolean;
  close(): void;
}

interface Pending {
  vip: number;
  vport: number;
  seq: number;
  dstMac: Uint8Array;
  resolve(r: CheckResult): void;
  timer: NodeJS.Timeout;
}

export interface VipProberOptions {
  iface: string;
  egressMac: Uint8Array;
  /** The egress interface's IPv4 address (host order). */
  egressIp: number;
  /** Opens the capture handle; default a RingPort with a small ring. */
  openPort?: (iface: string, filter: string) => ProbePort;
  /** The nftables table keeping the kernel away from probe replies (probeTableSpec); none in tests without a host. */
  table?: LeasedTable | null;
}

export class VipProber {
  private port: ProbePort | null = null;
  private readonly pending = new Map<number, Pending>();
  /** Probes that timed out, kept a while so that a late SYN-ACK still gets its RST. */
  private readonly late = new Map<number, { vip: number; vport: number; seq: number; dstMac: Uint8Array; until: number }>();
  private nextPort = PROBE_PORT_MIN + Math.floor(Math.random() * (PROBE_PORT_MAX - PROBE_PORT_MIN + 1));
  private vips = new Set<number>();
  /** While the nftables rule for the current VIPs goes in: resolves when it is in (or failed to go in). */
  private ready: Promise<void> | null = null;
  /** Probes sent, replies matched, RSTs sent: for tests and debugging. */
  readonly stats = { probes: 0, synAcks: 0, resets: 0, rstsSent: 0 };

  constructor(private readonly o: VipProberOptions) {}

  filter(): string {
    return `inbound and tcp and dst host ${intToIp(this.o.egressIp)} and dst portrange ${PROBE_PORT_MIN}-${PROBE_PORT_MAX}`;
  }

  /** The VIPs probed: the nftables rule covers exactly these sources. A failed install is tried again on the next call. */
  setVips(vips: number[]): Promise<void> {
    const next = new Set(vips);
    if (next.size === this.vips.size && [...next].every((v) => this.vips.has(v))) return this.ready ?? Promise.resolve();
    this.vips = next;
    const t = this.o.table;
    if (!t) return Promise.resolve();
    const elements = [...next].map(intToIp);
    const install = t.installed ? t.setElements(elements) : t.install(elements, true);
    // Probes wait for the rule: a SYN-ACK the kernel sees before it is in gets the kernel's RST.
    const ready = install.then(
      () => undefined,
      () => {
        this.vips = new Set();
      },
    );
    this.ready = ready;
    void ready.then(() => {
      if (this.ready === ready) this.ready = null;
    });
    return install;
  }

  private open(): ProbePort {
    if (this.port) return this.port;
    const open = this.o.openPort ?? ((iface: string, filter: string) => new RingPort(iface, filter, 1 << 20));
    const port = open(this.o.iface, this.filter());
    port.start((buf, len) => this.onFrame(buf, len));
    this.port = port;
    return port;
  }

  probe(dstMac: Uint8Array, vip: number, vport: number, timeoutMs: number): Promise<CheckResult> {
    if (this.ready) return this.ready.then(() => this.probeNow(dstMac, vip, vport, timeoutMs));
    return this.probeNow(dstMac, vip, vport, timeoutMs);
  }

  private probeNow(dstMac: Uint8Array, vip: number, vport: number, timeoutMs: number): Promise<CheckResult> {
    return new Promise((resolve) => {
      let port: ProbePort;
      try {
        port = this.open();
      } catch (e) {
        resolve({ ok: false, reason: 'vip path: cannot capture' });
        return;
      }
      const sport = this.allocPort();
      if (sport < 0) {
        resolve({ ok: false, reason: 'vip path: too many probes' });
        return;
      }
      const seq = randomBytes(4).readUInt32BE(0);
      const p: Pending = {
        vip,
        vport,
        seq,
        dstMac,
        resolve,
        timer: setTimeout(() => this.timedOut(sport), timeoutMs),
      };
      p.timer.unref?.();
      this.pending.set(sport, p);
      const syn = this.probeFrame(dstMac, vip, vport, sport, seq, TCP_SYN);
      this.stats.probes++;
      if (!port.send(syn, syn.length)) this.finish(sport, { ok: false, reason: 'vip path: send failed' });
    });
  }

  private allocPort(): number {
    const n = PROBE_PORT_MAX - PROBE_PORT_MIN + 1;
    for (let i = 0; i < n; i++) {
      const p = this.nextPort;
      this.nextPort = p >= PROBE_PORT_MAX ? PROBE_PORT_MIN : p + 1;
      if (!this.pending.has(p)) {
        this.late.delete(p);
        return p;
      }
    }
    return -1;
  }

  /**
   * No answer in time. The SYN may still be answered (a slow server): reset blindly (seq + 1 is
   * what a SYN_RECV socket expects) and remember the probe a while to reset a late SYN-ACK too.
   */
  private timedOut(sport: number): void {
    const p = this.pending.get(sport);
    if (!p) return;
    this.sendRst(p.dstMac, p.vip, p.vport, sport, (p.seq + 1) >>> 0);
    const now = Date.now();
    for (const [port, l] of this.late) if (l.until < now) this.late.delete(port);
    this.late.set(sport, { vip: p.vip, vport: p.vport, seq: p.seq, dstMac: p.dstMac, until: now + 5000 });
    this.finish(sport, { ok: false, reason: 'vip path: no SYN-ACK' });
  }

  /** A probe's segment: from the egress address and a probe port to VIP:port, at the real server's MAC. */
  private probeFrame(dstMac: Uint8Array, vip: number, vport: number, sport: number, seq: number, flags: number): Buffer {
    return buildTcpFrame({
      dstMac,
      srcMac: this.o.egressMac,
      srcIp: this.o.egressIp,
      dstIp: vip,
      sport,
      dport: vport,
      seq,
      ack: 0,
      flags,
      ...(flags === TCP_SYN ? { mss: 1460 } : {}),
    });
  }

  private sendRst(dstMac: Uint8Array, vip: number, vport: number, sport: number, seq: number): void {
    const rst = this.probeFrame(dstMac, vip, vport, sport, seq, TCP_RST);
    if (this.port?.send(rst, rst.length)) this.stats.rstsSent++;
  }

  private finish(sport: number, r: CheckResult): void {
    const p = this.pending.get(sport);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(sport);
    p.resolve(r);
  }

  /** A frame from the capture handle (shared buffer: read it now). */
  onFrame(buf: Buffer, len: number): void {
    if (len < ETH_HLEN + IP_MIN_HLEN + TCP_MIN_HLEN || buf.readUInt16BE(ETH_TYPE) !== ETHERTYPE_IPV4) return;
    const ihl = (buf[IP_VER_IHL] & 0x0f) * 4;
    if (buf[IP_PROTO] !== IPPROTO_TCP || len < ETH_HLEN + ihl + TCP_MIN_HLEN) return;
    const l4 = ETH_HLEN + ihl;
    const src = buf.readUInt32BE(IP_SRC);
    const dst = buf.readUInt32BE(IP_DST);
    const sport = buf.readUInt16BE(l4 + L4_SRC_PORT);
    const dport = buf.readUInt16BE(l4 + L4_DST_PORT);
    const flags = buf[l4 + TCP_FLAGS];
    const ack = buf.readUInt32BE(l4 + 8);
    const p = this.pending.get(dport);
    if (!p) {
      // A SYN-ACK for a probe that already timed out: reset it so no half-open connection stays.
      const l = this.late.get(dport);
      if (l && src === l.vip >>> 0 && sport === l.vport && (flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK) && ack === (l.seq + 1) >>> 0) {
        this.late.delete(dport);
        this.sendRst(l.dstMac, l.vip, l.vport, dport, ack);
      }
      return;
    }
    if (dst !== this.o.egressIp >>> 0 || src !== p.vip >>> 0 || sport !== p.vport) return;
    const expectAck = (p.seq + 1) >>> 0;
    if ((flags & TCP_RST) !== 0) {
      // A RST from the VIP answers our SYN only when it acknowledges it.
      if ((flags & TCP_ACK) !== 0 && ack !== expectAck) return;
      this.stats.resets++;
      this.finish(dport, { ok: false, reason: 'vip path: RST (nothing listening on the VIP)' });
      return;
    }
    if ((flags & (TCP_SYN | TCP_ACK)) !== (TCP_SYN | TCP_ACK) || ack !== expectAck) return;
    this.stats.synAcks++;
    // Tidy: reset the half-open connection on the real server.
    this.sendRst(p.dstMac, p.vip, p.vport, dport, ack);
    this.finish(dport, { ok: true, reason: 'vip path: SYN-ACK' });
  }

  /** Stops probing; resolves once the nftables table is gone. */
  /** Resets the probes in flight and stops capturing; with `removeTable` (default), the probe table goes too. */
  close(removeTable = true): Promise<void> {
    // Probes in flight: reset them before the capture (and the nftables rule) go away.
    for (const [sport, p] of [...this.pending]) {
      this.sendRst(p.dstMac, p.vip, p.vport, sport, (p.seq + 1) >>> 0);
      this.finish(sport, { ok: false, reason: 'stopped' });
    }
    this.late.clear();
    this.port?.close();
    this.port = null;
    this.vips = new Set();
    return (removeTable ? this.o.table?.remove() : undefined) ?? Promise.resolve();
  }
}

/** A vip check of one real server through the shared prober. */
export class VipChecker implements Checker {
  readonly type = 'vip';
  constructor(
    private readonly prober: VipProber,
    /** The real server's MAC, or null while it is unresolved. */
    private readonly mac: () => Uint8Array | null,
    private readonly vip: number,
    private readonly port: number,
    private readonly timeoutMs: number,
  ) {}

  run(): Promise<CheckResult> {
    const mac = this.mac();
    if (!mac) return Promise.resolve({ ok: false, reason: 'vip path: MAC unresolved' });
    return this.prober.probe(mac, this.vip, this.port, this.timeoutMs);
  }
}

// ---- frames -------------------------------------------------------------------------------
export interface TcpFrameSpec {
  dstMac: Uint8Array;
  srcMac: Uint8Array;
  srcIp: number;
  dstIp: number;
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  flags: number;
  /** Adds an MSS option (SYNs). */
  mss?: number;
}

/** An Ethernet/IPv4/TCP frame with both checksums computed (nothing is offloaded here). */
export function buildTcpFrame(s: TcpFrameSpec): Buffer {
  const tcpLen = s.mss !== undefined ? 24 : 20;
  const total = 20 + tcpLen;
  const f = Buffer.alloc(Math.max(60, 14 + total));
  f.set(s.dstMac.subarray(0, 6), 0);
  f.set(s.srcMac.subarray(0, 6), 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(total, 16);
  f.writeUInt16BE(randomBytes(2).readUInt16BE(0), 18);
  f.writeUInt16BE(0x4000, 20); // DF
  f[22] = 64;
  f[23] = 6;
  f.writeUInt32BE(s.srcIp >>> 0, 26);
  f.writeUInt32BE(s.dstIp >>> 0, 30);
  f.writeUInt16BE(inetChecksum(f, 14, 20), 24);
  const t = 34;
  f.writeUInt16BE(s.sport, t);
  f.writeUInt16BE(s.dport, t + 2);
  f.writeUInt32BE(s.seq >>> 0, t + 4);
  f.writeUInt32BE(s.ack >>> 0, t + 8);
  f[t + 12] = (tcpLen / 4) << 4;
  f[t + 13] = s.flags;
  f.writeUInt16BE((s.flags & TCP_RST) !== 0 ? 0 : 64240, t + 14);
  if (s.mss !== undefined) {
    f[t + 20] = 2;
    f[t + 21] = 4;
    f.writeUInt16BE(s.mss, t + 22);
  }
  // Pseudo-header: src, dst, zero, protocol, TCP length.
  let pseudo = 0;
  pseudo += (s.srcIp >>> 16) + (s.srcIp & 0xffff) + (s.dstIp >>> 16) + (s.dstIp & 0xffff) + 6 + tcpLen;
  f.writeUInt16BE(inetChecksum(f, t, tcpLen, pseudo), t + 16);
  return f;
}
