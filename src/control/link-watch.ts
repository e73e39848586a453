/**
 * The daemon's interfaces, watched on its one-second timer (nothing per packet): whether each is
 * up, down, or gone (deleted, or deleted and made again under the same name, which leaves lbd's
 * sockets bound to the old one). Both data paths ride out a link going down and up by themselves
 * (native/src/ring_poll.cc clears the socket error and polls again; sends fail meanwhile and
 * count as send_failed); what the daemon adds on top is announcing its VIPs again when the
 * capture link comes back (neighbours may have flushed or kept a stale entry), a log line per
 * change, and a clean exit when an interface is gone for good.
 *
 * Read from sysfs: two small reads per interface per second. sysfs shows the network namespace
 * it was mounted in, which is not always the process's own (a daemon moved into a namespace
 * without remounting /sys): a watch whose sysfs view does not show the MAC its capture opened is
 * not started, rather than trusted to say "gone".
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { CaptureError, type LbdError } from '../errors';
import { RingPort, interfaceMac, type Port } from '../dataplane/io';
import { NativePort } from '../dataplane/native';

export type LinkState = 'up' | 'down' | 'gone';

/** The first line of /sys/class/net/IFACE/FILE, or null when it cannot be read. */
function sysfs(iface: string, file: string): string | null {
  try {
    return readFileSync(`/sys/class/net/${iface}/${file}`, 'utf8').trim();
  } catch {
    return null;
  }
}

/**
 * The link's state as the kernel says: operstate "up", or "unknown" (what lo, tun and dummy
 * interfaces report while up), is up; any other (down, lowerlayerdown, dormant, …) is down;
 * no such interface, or one with another ifindex than the one watched, is gone.
 */
export function linkState(iface: string, ifindex: number): LinkState {
  const index = sysfs(iface, 'ifindex');
  if (index === null || Number(index) !== ifindex) return 'gone';
  const op = sysfs(iface, 'operstate');
  return op === 'up' || op === 'unknown' ? 'up' : 'down';
}

/** One interface's link, as last seen. */
export class LinkWatch {
  private last: LinkState;

  private constructor(
    readonly iface: string,
    readonly ifindex: number,
  ) {
    this.last = linkState(iface, ifindex);
  }

  /**
   * A watch on the interface a port of `mac` was opened on; null when sysfs does not show that
   * interface (another namespace's sysfs, no sysfs): then nothing is watched.
   */
  static open(iface: string, mac: Buffer): LinkWatch | null {
    const index = Number(sysfs(iface, 'ifindex'));
    if (!(index > 0)) return null;
    try {
      if (!interfaceMac(iface).equals(mac)) return null;
    } catch {
      return null;
    }
    return new LinkWatch(iface, index);
  }

  get state(): LinkState {
    return this.last;
  }

  /** Looks again: the new state when it changed, else null. Once gone, it stays gone. */
  check(): LinkState | null {
    if (this.last === 'gone') return null;
    const now = linkState(this.iface, this.ifindex);
    if (now === this.last) return null;
    this.last = now;
    return now;
  }
}

/** What a capture port says of its polling: socket errors seen, and whether it still polls. */
export interface PollStats {
  pollErrors: number;
  polling: boolean;
}

/** The port's poll statistics (the binding's ports); null for a port without any (in-memory). */
export function pollStats(port: Port): PollStats | null {
  if (!(port instanceof RingPort) && !(port instanceof NativePort)) return null;
  const s = port.stats();
  return { pollErrors: s.pollErrors, polling: s.polling };
}

/** What the link monitor needs of the daemon. */
export interface LinkMonitorHost {
  log: Logger;
  dataplane: () => string;
  interfaces: () => { capture: string; egress: string };
  /** The daemon's ports now (a reload swaps the capture's). */
  ports: () => { capture: Port; egress: Port; local: Port | null };
  /** Gratuitous ARP for the VIPs. */
  announce: () => void;
  /** Ask for every real server's MAC. */
  resolveMacs: () => void;
  /** lbd cannot go on: the daemon's owner stops it and exits non-zero. */
  fail: (e: LbdError) => void;
  stopped: () => boolean;
  /** Watch links in sysfs (false with in-memory ports: tests). */
  watched: boolean;
}

/**
 * The daemon's links, looked at once a second (Daemon.tick): a link that went down or came back
 * is logged; the capture link back up (or a flap too short for the timer to see, which the
 * capture's poll errors show) announces the VIPs again, since neighbours may have dropped or
 * kept a stale entry while it was down; the egress link back up asks for the real servers' MACs
 * again; an interface gone, or a capture that stopped polling, is fatal: lbd cannot forward
 * any more. Also keeps the captures' poll errors over the daemon's life
 * (lbd_capture_poll_errors_total).
 */
export class LinkMonitor {
  private links: LinkWatch[] = [];
  /** The capture port's poll errors at the last look: more since then is a flap (or a link going down). */
  private captureErrors = { port: null as Port | null, n: 0 };
  /** Poll errors of ports closed since (a reload reopens the capture), by interface. */
  private readonly retired = new Map<string, number>();

  constructor(private readonly d: LinkMonitorHost) {}

  /** Watches the capture interface and, when it is another one, the egress interface. */
  watch(): void {
    const { capture, egress } = this.d.interfaces();
    const p = this.d.ports();
    const ports: [string, Port][] =
      capture === egress
        ? [[capture, p.capture]]
        : [
            [capture, p.capture],
            [egress, p.egress],
          ];
    this.links = [];
    for (const [iface, port] of ports) {
      const w = LinkWatch.open(iface, port.mac);
      if (w) this.links.push(w);
      else if (this.d.watched) this.d.log.warn({ interface: iface }, 'link state not watched: /sys/class/net does not show this interface');
    }
  }

  check(): void {
    const capture = this.d.interfaces().capture;
    const ports = this.d.ports();
    let announce = false;
    for (const w of this.links) {
      const change = w.check();
      if (change === null) continue;
      const fields = { interface: w.iface, role: w.iface === capture ? 'capture' : 'egress', dataplane: this.d.dataplane() };
      if (change === 'gone')
        return this.d.fail(new CaptureError(`interface ${w.iface} (${fields.role}) is gone: deleted, or replaced by another of the same name`));
      if (change === 'down') {
        this.d.log.warn(fields, 'link down: its frames are lost until it comes back');
      } else {
        this.d.log.info(fields, w.iface === capture ? 'link up again: VIPs announced' : 'link up again: real-server MACs asked again');
        if (w.iface === capture) announce = true;
        else this.d.resolveMacs();
      }
    }
    for (const port of new Set([ports.capture, ports.egress])) {
      if (pollStats(port)?.polling === false) return this.d.fail(new CaptureError(`the capture on ${port.name} stopped: a socket error it could not clear`));
    }
    const errors = pollStats(ports.capture)?.pollErrors ?? 0;
    const flapped = this.captureErrors.port === ports.capture && errors > this.captureErrors.n;
    this.captureErrors = { port: ports.capture, n: errors };
    const link = this.links.find((w) => w.iface === capture);
    if (flapped && !announce && (link === undefined || link.state === 'up')) {
      this.d.log.info({ interface: capture, pollErrors: errors }, 'capture socket error (a link flap): VIPs announced');
      announce = true;
    }
    if (!announce) return;
    this.d.announce();
    // And once more a moment later, for a neighbour whose port was not forwarding yet.
    setTimeout(() => this.d.stopped() || this.d.announce(), 1000).unref?.();
  }

  /** Socket errors seen by each capture ring (capture, egress, local access), over the daemon's life, by interface. */
  pollErrors(): Map<string, number> {
    const out = new Map(this.retired);
    const p = this.d.ports();
    for (const port of new Set([p.capture, p.egress, p.local])) {
      const s = port && pollStats(port);
      if (s) out.set(port.name, (out.get(port.name) ?? 0) + s.pollErrors);
    }
    return out;
  }

  /** A port about to close: its poll errors are kept. */
  retire(port: Port): void {
    const s = pollStats(port);
    if (s) this.retired.set(port.name, (this.retired.get(port.name) ?? 0) + s.pollErrors);
  }
}
