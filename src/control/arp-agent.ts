import type { Logger } from 'pino';
import { ARP_REQUEST, arpReply, arpRequest, gratuitousArp, parseArp } from '../dataplane/arp';
import type { Forwarder } from '../dataplane/forwarder';
import type { Port } from '../dataplane/io';
import { intToIp, macEquals, macToString } from '../dataplane/packet';
import type { RealServer } from '../dataplane/services';

/**
 * ARP, the control plane's side of the wire:
 *  - answers "who has VIP?" on the capture interface for every VIP that is not already a
 *    local address (a local one the kernel answers itself), and announces them at start;
 *  - resolves real servers' MACs on the egress interface, keeps them fresh, and notices
 *    when one changes (a replaced server, a failed-over address).
 */
export class ArpAgent {
  /** Real servers whose MAC is learned from ARP, by address. */
  private readonly byAddr = new Map<number, RealServer[]>();
  private readonly announced: Set<number>;
  requestsSent = 0;
  repliesSent = 0;

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
    else this.byAddr.delete(rs.addr);
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
    const a = parseArp(buf, len);
    if (!a) return;
    if (from === this.egress) this.learn(a.senderIp, a.senderMac);
    if (from === this.capture && a.op === ARP_REQUEST && this.announced.has(a.targetIp) && a.senderIp !== a.targetIp) {
      this.capture.send(arpReply(this.capture.mac, a.targetIp, a.senderMac, a.senderIp), 60);
      this.repliesSent++;
    }
  }

  private learn(ip: number, mac: Buffer): void {
    const list = this.byAddr.get(ip);
    if (!list || ip === 0) return;
    const dt = this.fw.dests;
    for (const rs of list) {
      const known = dt.macKnown[rs.index] === 1;
      if (known && macEquals(dt.mac, rs.index * 6, mac)) continue;
      const before = known ? macToString(dt.mac, rs.index * 6) : null;
      dt.setMac(rs.index, mac);
      if (before) this.log.warn({ real: intToIp(ip), service: rs.service.name, from: before, to: macToString(mac) }, 'real server MAC changed');
      else this.log.info({ real: intToIp(ip), service: rs.service.name, mac: macToString(mac) }, 'real server MAC resolved');
    }
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
    for (const vip of this.announced) this.capture.send(gratuitousArp(this.capture.mac, vip), 60);
  }
}
