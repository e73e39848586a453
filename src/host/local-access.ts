import { requireBinding } from '../dataplane/binding';
import { HostSetupError } from '../errors';
import { hostChange } from './commands';

/**
 * Makes the VIPs reachable from the balancer itself, which IPVS-DR cannot do: a TAP interface
 * takes a /32 route per VIP, the host's own connections to a VIP leave through it (ARP off:
 * frames go out addressed to the interface's own MAC), lbd captures them there (outbound) and
 * forwards them like any client's, and the real server answers the balancer's own address
 * directly. The TAP is not persistent: it exists while lbd holds its descriptor, so when lbd
 * ends, however it ends, the kernel deletes it with its routes and the host's connections to
 * the VIPs fall back to its other routes. Nothing reads the TAP: what the host sends into it
 * is captured, and the kernel drops it from the device's queue. A TAP without offloads
 * enabled gets full checksums and frames no larger than its MTU (the egress MTU).
 */
export class LocalAccess {
  private fd = -1;

  constructor(readonly iface: string) {}

  get active(): boolean {
    return this.fd >= 0;
  }

  async setup(vips: string[], sourceAddress: string, mtu: number): Promise<void> {
    const dev = this.iface;
    try {
      this.fd = requireBinding().openTap(dev);
    } catch (e) {
      throw new HostSetupError(`local_access: ${(e as Error).message}`);
    }
    try {
      await hostChange('ip', ['link', 'set', dev, 'arp', 'off', 'mtu', String(mtu), 'up']);
      await this.routes(vips, sourceAddress);
    } catch (e) {
      this.teardown();
      throw e;
    }
  }

  /** One /32 route per VIP through the TAP, and no other. */
  async routes(vips: string[], sourceAddress: string): Promise<void> {
    await hostChange('ip', ['route', 'flush', 'dev', this.iface]);
    for (const vip of vips) await hostChange('ip', ['route', 'replace', `${vip}/32`, 'dev', this.iface, 'src', sourceAddress]);
  }

  /** Closing the descriptor deletes the interface and its routes. */
  teardown(): void {
    if (this.fd < 0) return;
    requireBinding().closeTap(this.fd);
    this.fd = -1;
  }
}
