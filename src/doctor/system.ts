/** The real HostView: reads /proc, /sys, ethtool, nft, and probes the wire through libpcap. */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { networkInterfaces } from 'node:os';
import type { HostView, InterfaceInfo } from './checks';
import { arpAsk, probeVip } from './probe';

function read(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** `ethtool -k` output → feature → value ("on", "off [fixed]", …). */
export function parseEthtoolFeatures(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([a-z0-9-]+): (.+)$/.exec(line);
    if (m) out[m[1]] = m[2].trim();
  }
  return out;
}

/** CapEff from /proc/PID/status text. */
export function parseCapEff(status: string): bigint | null {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : null;
}

const LIBPCAP_DIRS = ['/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib', '/usr/local/lib'];

export class SystemHost implements HostView {
  capEff(): bigint | null {
    const s = read('/proc/self/status');
    return s ? parseCapEff(s) : null;
  }

  iface(name: string): InterfaceInfo {
    const base = `/sys/class/net/${name}`;
    if (!/^[\w.:@-]+$/.test(name) || !existsSync(base)) return { exists: false, up: false, operstate: 'absent', addresses: [] };
    const flags = parseInt(read(`${base}/flags`) ?? '0', 16);
    const addresses = (networkInterfaces()[name] ?? []).filter((a) => a.family === 'IPv4').map((a) => a.cidr ?? `${a.address}/32`);
    return { exists: true, up: (flags & 1) === 1, operstate: read(`${base}/operstate`) ?? 'unknown', addresses, mac: read(`${base}/address`) ?? undefined };
  }

  sysctl(key: string): string | null {
    return read(`/proc/sys/${key.replace(/\./g, '/')}`);
  }

  localAddresses(): { address: string; iface: string }[] {
    const out: { address: string; iface: string }[] = [];
    for (const [iface, addrs] of Object.entries(networkInterfaces())) {
      for (const a of addrs ?? []) if (a.family === 'IPv4') out.push({ address: a.address, iface });
    }
    return out;
  }

  ethtoolFeatures(iface: string): Record<string, string> | null {
    try {
      return parseEthtoolFeatures(execFileSync('ethtool', ['-k', iface], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 }));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      return {};
    }
  }

  nftGuardTable(): string | null {
    try {
      return execFileSync('nft', ['list', 'table', 'netdev', 'lbd'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5000 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      return '';
    }
  }

  libpcapUnversioned(): string | null {
    for (const d of LIBPCAP_DIRS) if (existsSync(`${d}/libpcap.so`)) return `${d}/libpcap.so`;
    try {
      const m = /libpcap\.so \(.*\) => (\S+)/.exec(execFileSync('ldconfig', ['-p'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }));
      return m ? m[1] : null;
    } catch {
      return null;
    }
  }

  capModuleError(): string | null {
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      require('cap');
      return null;
    } catch (e) {
      return (e as Error).message.split('\n')[0];
    }
  }

  lbdRunning(host: string, port: number): Promise<boolean> {
    return new Promise((resolve) => {
      const req = http.get({ host: host === '0.0.0.0' ? '127.0.0.1' : host, port, path: '/metrics', timeout: 1000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(res.statusCode === 200 && body.includes('lbd_build_info')));
        res.on('error', () => resolve(false));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
    });
  }

  arp(iface: string, targets: string[], sourceIp: string, opts?: { waitAll?: boolean }) {
    return arpAsk(iface, targets, sourceIp, opts);
  }

  probeVip(iface: string, rsMac: string, vip: string, port: number, sourceIp: string) {
    return probeVip(iface, rsMac, vip, port, sourceIp);
  }
}
