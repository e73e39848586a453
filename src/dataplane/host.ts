import { execFileSync } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { HostSetupError } from '../errors';

/** Every IPv4 address configured on this host (in lbd's network namespace). */
export function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4') out.add(a.address);
  }
  return out;
}

/** The first IPv4 address of an interface, or undefined when it has none. */
export function interfaceAddress(name: string): string | undefined {
  return networkInterfaces()[name]?.find((a) => a.family === 'IPv4')?.address;
}

export interface GuardedService {
  vip: string;
  port: number;
  protocol: 'tcp' | 'udp';
}

/**
 * Keeps the host's own kernel away from balanced traffic: without it the kernel answers a
 * local VIP's SYNs itself (RST, or a local listener) or, with ip_forward=1, routes the frames
 * a second time. One netdev-ingress rule per service on the capture interface drops exactly
 * VIP + port + protocol; it runs after packet taps, so libpcap still sees every frame, and
 * SSH, the metrics port and everything else stay untouched.
 */
export class HostGuard {
  static readonly TABLE = 'lbd';
  installed = false;

  constructor(private readonly captureInterface: string) {}

  script(services: GuardedService[]): string {
    const t = HostGuard.TABLE;
    // "add" then "delete" clears a table a crashed lbd may have left, without failing if none.
    const lines = [
      `add table netdev ${t}`,
      `delete table netdev ${t}`,
      `table netdev ${t} {`,
      `  chain capture_ingress {`,
      `    type filter hook ingress device "${this.captureInterface}" priority 0; policy accept;`,
    ];
    // nft 1.0.6 rejects a rule and a closing brace on one line: one rule per line.
    for (const s of services) lines.push(`    ip daddr ${s.vip} ${s.protocol} dport ${s.port} drop`);
    lines.push('  }', '}', '');
    return lines.join('\n');
  }

  install(services: GuardedService[]): void {
    this.nft(this.script(services));
    this.installed = true;
  }

  remove(): void {
    if (!this.installed) return;
    this.nft(`delete table netdev ${HostGuard.TABLE}\n`);
    this.installed = false;
  }

  private nft(script: string): void {
    try {
      execFileSync('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
    } catch (e) {
      const err = e as { stderr?: Buffer; message: string; code?: string };
      if (err.code === 'ENOENT') throw new HostSetupError('nft not found: install the nftables package');
      throw new HostSetupError(`nftables: ${err.stderr?.toString().trim() || err.message}`);
    }
  }
}
