import { netdevIngressTable, nftApply } from './nftables';

export interface GuardedService {
  vip: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

/**
 * Keeps the host's own kernel away from balanced traffic: without it the kernel answers a
 * local VIP's SYNs itself (RST, or a local listener) or, with ip_forward=1, routes the frames
 * a second time. One netdev-ingress rule per service on the capture interface drops exactly
 * VIP + port + protocol; it runs after packet taps, so lbd's capture ring still sees every frame, and
 * SSH, the metrics port and everything else stay untouched.
 */
export class HostGuard {
  /** The table's name: `nft list table netdev lbd` (lbd doctor looks for it). */
  static readonly TABLE = 'lbd';
  installed = false;

  constructor(private readonly captureInterface: string) {}

  /** The rule for one service, as written and as `nft list table` prints it back (lbd doctor looks for it). */
  static rule(s: GuardedService): string {
    return `ip daddr ${s.vip} ${s.protocol} dport ${s.port} drop`;
  }

  script(services: GuardedService[]): string {
    const rules = services.map(HostGuard.rule);
    return netdevIngressTable(HostGuard.TABLE, 'capture_ingress', this.captureInterface, 'accept', rules);
  }

  install(services: GuardedService[]): void {
    nftApply(this.script(services));
    this.installed = true;
  }

  remove(): void {
    if (!this.installed) return;
    nftApply(`delete table netdev ${HostGuard.TABLE}\n`);
    this.installed = false;
  }
}
