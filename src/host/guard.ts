import { LeasedTable } from './leased-table';
import type { Owner } from './owner';

export interface GuardedService {
  vip: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

/** The guard's set: the VIP:port pairs of every service, with their protocol. */
const SET = 'services';

/**
 * Keeps the host's own kernel away from balanced traffic: without it the kernel answers a
 * local VIP's SYNs itself (RST, or a local listener) or, with ip_forward=1, routes the frames
 * a second time. A netdev-ingress rule on the capture interface drops exactly the VIP + port +
 * protocol of each service (elements of one set); it runs after packet taps, so lbd's capture
 * ring still sees every frame, and SSH, the metrics port and everything else stay untouched.
 * The table is leased (leased-table.ts): a dead lbd's guard lapses by itself.
 */
export class HostGuard {
  readonly table: LeasedTable;

  constructor(tableName: string, captureInterface: string, owner: Owner, leaseS: number) {
    this.table = new LeasedTable(
      {
        name: tableName,
        role: 'guard',
        device: captureInterface,
        chain: 'capture_ingress',
        set: SET,
        type: 'ipv4_addr . inet_proto . inet_service',
        rules: [`ip daddr . ip protocol . th dport @${SET} drop`],
      },
      owner,
      leaseS,
    );
  }

  /** A service as an element of the guard's set, as written and as `nft -j` reads back (lbd doctor looks for it). */
  static element(s: GuardedService): string {
    return `${s.vip} . ${s.protocol} . ${s.port}`;
  }

  /** True when a gone lbd's guard (or `handingOver`'s) is there to be taken over; E_INSTANCE when a live lbd owns it. */
  async claim(handingOver?: Owner): Promise<boolean> {
    return (await this.table.claim(handingOver)) !== null;
  }

  install(services: GuardedService[], takeOver: boolean): Promise<void> {
    return this.table.install(services.map(HostGuard.element), takeOver);
  }

  /** Leaves the guard to the next lbd: nothing this lbd has queued touches it any more. */
  abandon(): void {
    this.table.abandon();
  }

  update(services: GuardedService[]): Promise<void> {
    return this.table.setElements(services.map(HostGuard.element));
  }

  remove(): Promise<void> {
    return this.table.remove();
  }
}
