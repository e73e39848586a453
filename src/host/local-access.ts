import { hostChange, quietly } from './commands';
import { netdevIngressTable, nftApply, nftDeleteTable } from './nftables';

/**
 * Makes the VIPs reachable from the balancer itself, which IPVS-DR cannot do: a veth pair
 * (lbd0, lbd0p) takes a /32 route per VIP, the host's own connections to a VIP leave through
 * lbd0 (ARP off: frames go out addressed to lbd0's own MAC), lbd captures them there
 * (outbound) and forwards them like any client's, and the real server answers the
 * balancer's own address directly. Whatever reaches the peer end is dropped by nftables, so
 * the kernel never routes it a second time. Offloads are off on lbd0 so that frames carry
 * full checksums and are no larger than the egress MTU. (A dummy interface would do, but
 * not every kernel has the dummy driver.)
 */
export class LocalAccess {
  static readonly IFACE = 'lbd0';
  static readonly PEER = 'lbd0p';
  static readonly TABLE = 'lbd_local';
  active = false;

  setup(vips: string[], sourceAddress: string, mtu: number): void {
    const dev = LocalAccess.IFACE;
    const peer = LocalAccess.PEER;
    this.teardown(true);
    hostChange('ip', ['link', 'add', dev, 'type', 'veth', 'peer', 'name', peer]);
    this.active = true;
    hostChange('ip', ['link', 'set', peer, 'mtu', String(mtu), 'up']);
    hostChange('ip', ['link', 'set', dev, 'arp', 'off', 'mtu', String(mtu), 'up']);
    hostChange('ethtool', ['-K', dev, 'tx', 'off', 'sg', 'off', 'tso', 'off', 'gso', 'off']);
    nftApply(netdevIngressTable(LocalAccess.TABLE, 'peer_ingress', peer, 'drop', []));
    this.routes(vips, sourceAddress);
  }

  /** One /32 route per VIP through lbd0, and no other. */
  routes(vips: string[], sourceAddress: string): void {
    hostChange('ip', ['route', 'flush', 'dev', LocalAccess.IFACE]);
    for (const vip of vips) hostChange('ip', ['route', 'replace', `${vip}/32`, 'dev', LocalAccess.IFACE, 'src', sourceAddress]);
  }

  /** Deleting the pair removes its routes too. */
  teardown(quiet = false): void {
    if (!this.active && !quiet) return;
    nftDeleteTable(LocalAccess.TABLE);
    quietly('ip', ['link', 'del', LocalAccess.IFACE]);
    this.active = false;
  }
}
