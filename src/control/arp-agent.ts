import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { ARP_REQUEST, arpReply, arpRequest, arpSourceConsistent, gratuitousArp, parseArp, type ArpPacket } from '../dataplane/arp';
import type { Forwarder } from '../dataplane/forwarder';
import type { Port } from '../dataplane/io';
import { intToIp, macEquals, macToString } from '../dataplane/packet';
import type { RealServer } from '../dataplane/services';

/**
 * ARP, the control plane's side of the wire:
 *  - answers "who has VIP?" on the capture interface for every VIP that is not already a
 *    local address (a local one the kernel answers itself), and announces them at start;
 *  - resolves real servers' MACs on the egress interface, keeps them fresh, and notices
 *    when one changes (a replaced server, a failed-over address): at once from any ARP frame
 *    the server sends (a gratuitous ARP, an unsolicited reply, its own questions), by asking
 *    again when its health check fails (reresolve), and by the periodic refresh.
 *
 * Frames are validated first (parseArp: Ethernet/IPv4, opcode 1 or 2, a station's sender MAC);
 * a MAC is learnt only from a frame whose sender is a tracked real server, sent on the egress
 * interface, with the Ethernet source equal to the ARP sender; questions are answered only for
 * announced VIPs. Every frame counts once in `frames`, by outcome (ARP_RESULTS).
 */
/** Outcomes of a received ARP frame, the `result` label of lbd_arp_received_packets_total. */
export const ARP_RESULTS = ['learned', 'unchanged', 'answered', 'ignored', 'invalid'] as const;
const enum ArpResult {
  Learned,
  Unchanged,
  Answered,
  Ignored,
  Invalid,
}
/** reresolve() asks for one address at most this often. */
const RERESOLVE_MIN_MS = 1000;

export class ArpAgent {
  /** Real servers whose MAC is learned from ARP, by address. */
  private readonly byAddr = new Map<number, RealServer[]>();
  private readonly announced: Set<number>;
  /** When reresolve() last asked for an address (performance.now() ms). */
  private readonly reresolvedAt = new Map<number, number>();
  requestsSent = 0;
  repliesSent = 0;
  announcementsSent = 0;
  /** ARP frames received, by outcome (index into ARP_RESULTS). */
  readonly frames = new Float64Array(ARP_RESULTS.length);

  constructor(
    private readonly fw: Forwarder,
    private capture: Port,
    private egress: Port,
    announcedVips: number[],
    private readonly egressIp: number,
    private readonly log: Logger,
  ) {
    this.announced = new Set(announcedVips);
  }

  /** Real servers whose MAC must come from ARP (no `mac:` in the config). */
  track(rs: RealServer): void {
    const list = this.byAddr.get(rs.addr) ?? [];
    list.push(rs);
    this.byAddr.set(rs.addr, list);
  }

  untrack(rs: RealServer): void {
    const list = this.byAddr.get(rs.addr);
    if (!list) return;
    const rest = list.filter((x) => x !== rs);
    if (rest.length) this.byAddr.set(rs.addr, rest);
    else {
      this.byAddr.delete(rs.addr);
      this.reresolvedAt.delete(rs.addr);
    }
  }

  /** The capture handle was reopened (new filter). */
  setPorts(capture: Port, egress: Port): void {
    this.capture = capture;
    this.egress = egress;
  }

  setAnnounced(vips: number[]): void {
    this.announced.clear();
    for (const v of vips) this.announced.add(v);
  }

  /** An ARP frame arrived on `from`. */
  handle(buf: Buffer, len: number, from: Port): void {
    this.frames[this.outcome(buf, len, from)]++;
  }

  private outcome(buf: Buffer, len: number, from: Port): ArpResult {
    const a = parseArp(buf, len);
    if (!a) return ArpResult.Invalid;
    let result = ArpResult.Ignored;
    if (from === this.egress && a.senderIp !== 0 && this.byAddr.has(a.senderIp)) {
      // A frame that claims a real server's address with a sender MAC its own Ethernet header
      // contradicts is no host's ARP: a mangled or forged frame must not re-point the server.
      if (!arpSourceConsistent(buf)) return ArpResult.Invalid;
      result = this.learn(a) ? ArpResult.Learned : ArpResult.Unchanged;
    }
    if (from === this.capture && a.op === ARP_REQUEST && this.announced.has(a.targetIp) && a.senderIp !== a.targetIp) {
      this.capture.send(arpReply(this.capture.mac, a.targetIp, a.senderMac, a.senderIp), 60);
      this.repliesSent++;
      if (result === ArpResult.Ignored) result = ArpResult.Answered;
    }
    return result;
  }

  /** Takes the sender's MAC for every real server at its address; true when one was new or changed. */
  private learn(a: ArpPacket): boolean {
    const list = this.byAddr.get(a.senderIp);
    if (!list) return false;
    const dt = this.fw.dests;
    const mac = a.senderMac;
    let changed = false;
    for (const rs of list) {
      const known = dt.macKnown[rs.index] === 1;
      if (known && macEquals(dt.mac, rs.index * 6, mac)) continue;
      changed = true;
      const before = known ? macToString(dt.mac, rs.index * 6) : null;
      dt.setMac(rs.index, mac);
      const fields = { real: intToIp(a.senderIp), service: rs.service.name, arp: a.op === ARP_REQUEST ? 'request' : 'reply' };
      if (before) this.log.warn({ ...fields, from: before, to: macToString(mac) }, 'real server MAC changed');
      else this.log.info({ ...fields, mac: macToString(mac) }, 'real server MAC resolved');
    }
    return changed;
  }

  /**
   * A real server's health check failed: ask for its address again at once, in case its MAC
   * changed without a gratuitous ARP (a replaced machine, a moved address). One request, at most
   * one a second per address; nothing for a server whose MAC the config gives.
   */
  reresolve(rs: RealServer): void {
    if (!this.byAddr.get(rs.addr)?.includes(rs)) return;
    const now = performance.now();
    const last = this.reresolvedAt.get(rs.addr);
    if (last !== undefined && now - last < RERESOLVE_MIN_MS) return;
    this.reresolvedAt.set(rs.addr, now);
    this.egress.send(arpRequest(this.egress.mac, this.egressIp, rs.addr), 60);
    this.requestsSent++;
  }

  /** Asks for every tracked real server (all = also the resolved ones, to notice changes). */
  resolve(all: boolean): void {
    const dt = this.fw.dests;
    for (const [ip, list] of this.byAddr) {
      if (!all && list.every((rs) => dt.macKnown[rs.index] === 1)) continue;
      this.egress.send(arpRequest(this.egress.mac, this.egressIp, ip), 60);
      this.requestsSent++;
    }
  }

  unresolved(): RealServer[] {
    const out: RealServer[] = [];
    for (const list of this.byAddr.values()) for (const rs of list) if (!this.fw.dests.macKnown[rs.index]) out.push(rs);
    return out;
  }

  /** Gratuitous ARP for every announced VIP, so neighbours update their caches at once. */
  announce(): void {
    for (const vip of this.announced) {
      this.capture.send(gratuitousArp(this.capture.mac, vip), 60);
      this.announcementsSent++;
    }
  }

  /** lbd_arp_received_packets_total{result} and lbd_arp_sent_packets_total{type}, read at scrape time. */
  register(registry: Registry): void {
    const frames = this.frames;
    new Counter({
      name: 'lbd_arp_received_packets_total',
      help: 'ARP frames received by the control plane (capture and egress), by outcome: learned (a real server MAC resolved or changed), unchanged, answered (a question for a VIP), ignored, invalid.',
      labelNames: ['result'],
      registers: [registry],
      collect() {
        this.reset();
        ARP_RESULTS.forEach((result, i) => this.inc({ result }, frames[i]));
      },
    });
    const sent = (): [string, number][] => [
      ['request', this.requestsSent],
      ['reply', this.repliesSent],
      ['announcement', this.announcementsSent],
    ];
    new Counter({
      name: 'lbd_arp_sent_packets_total',
      help: 'ARP frames sent: requests for real servers, replies for VIPs, gratuitous announcements of VIPs.',
      labelNames: ['type'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [type, n] of sent()) this.inc({ type }, n);
      },
    });
  }
}
