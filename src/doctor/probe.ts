/**
 * Doctor's wire probes, through the native binding's capture port (RingPort), like the daemon's:
 *  - ARP: who answers for an address on an interface (VIP conflicts, real servers' MACs);
 *  - VIP path: a TCP SYN to VIP:port in a frame addressed to a real server's MAC, as lbd
 *    forwards it (the health checks' VipProber); a SYN-ACK from the VIP proves the real server
 *    accepts traffic for the VIP (VIP on lo or a REDIRECT rule), a RST that the VIP is there
 *    but nothing listens.
 *
 * Each probe opens its own capture handle with an `inbound` filter (a second handle on the
 * interface would otherwise see our own frames) and closes it before returning. Bounded by
 * timeouts.
 */
import { ARP_REPLY, arpRequest, parseArp } from '../dataplane/arp';
import { RingPort, interfaceMac } from '../dataplane/io';
import { VipProber } from '../health/vip';
import { intToIp, ipToInt, macFromString, macToString } from '../dataplane/packet';

export interface ArpAnswer {
  ip: string;
  mac: string;
}

export type VipProbeResult = 'syn-ack' | 'rst' | 'timeout';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Asks "who has target?" on `iface` (sender `sourceIp`; '0.0.0.0' makes it an RFC 5227 probe)
 * up to `tries` times, `intervalMs` apart; returns every distinct answer per target.
 * Stops early once every target has answered (unless `waitAll`, used to catch several answerers).
 */
export async function arpAsk(
  iface: string,
  targets: string[],
  sourceIp: string,
  opts: { tries?: number; intervalMs?: number; waitAll?: boolean } = {},
): Promise<Map<string, ArpAnswer[]>> {
  const out = new Map<string, ArpAnswer[]>(targets.map((t) => [t, []]));
  if (!targets.length) return out;
  const port = new RingPort(iface, 'inbound and arp', 1 << 20);
  const wanted = new Set(targets.map(ipToInt));
  try {
    port.start((buf, len) => {
      const a = parseArp(buf, len);
      if (!a || a.op !== ARP_REPLY || !wanted.has(a.senderIp)) return;
      const list = out.get(intToIp(a.senderIp))!;
      const mac = macToString(a.senderMac);
      if (!list.some((x) => x.mac === mac)) list.push({ ip: intToIp(a.senderIp), mac });
    });
    const tries = opts.tries ?? 3;
    for (let i = 0; i < tries; i++) {
      for (const t of targets) {
        if (!opts.waitAll && out.get(t)!.length) continue;
        const req = arpRequest(port.mac, ipToInt(sourceIp), ipToInt(t));
        port.send(req, req.length);
      }
      await sleep(opts.intervalMs ?? 400);
      if (!opts.waitAll && [...out.values()].every((l) => l.length)) break;
    }
    // A last short wait for answers that were on their way.
    await sleep(100);
  } finally {
    port.close();
  }
  return out;
}

/**
 * Sends a SYN for vip:port from sourceIp to the real server's MAC (exactly what lbd forwards)
 * and waits for its answer, through the health checks' VipProber (src/health/vip.ts), which
 * also resets a half-open connection on the real server. Doctor does not install the
 * prober's nftables table (no table): a running lbd may own it, and deleting it on close
 * would pull it from under lbd's own vip health checks. The balancer's kernel may then answer
 * the SYN-ACK with a RST of its own, which is harmless.
 */
export async function probeVip(
  iface: string,
  rsMac: string,
  vip: string,
  port: number,
  sourceIp: string,
  opts: { timeoutMs?: number; tries?: number } = {},
): Promise<VipProbeResult> {
  const prober = new VipProber({ iface, egressMac: interfaceMac(iface), egressIp: ipToInt(sourceIp) });
  try {
    const tries = opts.tries ?? 2;
    for (let i = 0; i < tries; i++) {
      const resets = prober.stats.resets;
      const r = await prober.probe(macFromString(rsMac), ipToInt(vip), port, Math.floor((opts.timeoutMs ?? 2000) / tries));
      if (r.ok) return 'syn-ack';
      if (prober.stats.resets > resets) return 'rst';
      if (/cannot capture|send failed/.test(r.reason ?? '')) throw new Error(`${iface}: ${r.reason}`);
    }
    return 'timeout';
  } finally {
    prober.close();
  }
}
