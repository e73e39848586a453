/** The real HostView: reads /proc, /sys, ethtool, nft, and probes the wire through the native binding. */
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { ipv4Addresses } from '../host/interfaces';
import { ProgramNotFoundError, runSyncOk } from '../host/programs';
import { loadNative } from '../dataplane/binding';
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

/** What the native binding dlopen()s, in its order (native/src/libpcap.h). */
const LIBPCAP_SONAMES = ['libpcap.so.0.8', 'libpcap.so.1', 'libpcap.so'];
const LIBPCAP_DIRS = [
  '/usr/lib/x86_64-linux-gnu',
  '/lib/x86_64-linux-gnu',
  '/usr/lib/aarch64-linux-gnu',
  '/lib/aarch64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/lib',
  '/usr/local/lib',
];

export class SystemHost implements HostView {
  capEff(): bigint | null {
    const s = read('/proc/self/status');
    return s ? parseCapEff(s) : null;
  }

  iface(name: string): InterfaceInfo {
    const base = `/sys/class/net/${name}`;
    if (!/^[\w.:@-]+$/.test(name) || !existsSync(base)) return { exists: false, up: false, operstate: 'absent', addresses: [] };
    const flags = parseInt(read(`${base}/flags`) ?? '0', 16);
    const addresses = ipv4Addresses()
      .filter((a) => a.iface === name)
      .map((a) => a.cidr);
    return { exists: true, up: (flags & 1) === 1, operstate: read(`${base}/operstate`) ?? 'unknown', addresses, mac: read(`${base}/address`) ?? undefined };
  }

  sysctl(key: string): string | null {
    return read(`/proc/sys/${key.replace(/\./g, '/')}`);
  }

  localAddresses(): { address: string; iface: string }[] {
    return ipv4Addresses().map(({ address, iface }) => ({ address, iface }));
  }

  ethtoolFeatures(iface: string): Record<string, string> | null {
    try {
      return parseEthtoolFeatures(runSyncOk('ethtool', ['-k', iface], { stdio: ['ignore', 'pipe', 'pipe'], timeoutMs: 5000 }));
    } catch (e) {
      if (e instanceof ProgramNotFoundError) return null;
      return {};
    }
  }

  nftGuardTable(name: string): string | null {
    try {
      return runSyncOk('nft', ['list', 'table', 'netdev', name], { stdio: ['ignore', 'pipe', 'pipe'], timeoutMs: 5000 });
    } catch (e) {
      if (e instanceof ProgramNotFoundError) return null;
      return '';
    }
  }

  libpcapLibrary(): string | null {
    for (const so of LIBPCAP_SONAMES) for (const d of LIBPCAP_DIRS) if (existsSync(`${d}/${so}`)) return `${d}/${so}`;
    try {
      const cache = runSyncOk('ldconfig', ['-p'], { stdio: ['ignore', 'pipe', 'ignore'], timeoutMs: 5000 });
      for (const so of LIBPCAP_SONAMES) {
        const m = new RegExp(`^\\s*${so.replace(/\./g, '\\.')} \\(.*\\) => (\\S+)`, 'm').exec(cache);
        if (m) return m[1];
      }
      return null;
    } catch {
      return null;
    }
  }

  binding(): { loaded: string } | { error: string } {
    const l = loadNative();
    return l.ok ? { loaded: l.path } : { error: l.reason };
  }

  lbdMetrics(host: string, port: number): Promise<string | null> {
    return new Promise((resolve) => {
      const req = http.get({ host: host === '0.0.0.0' ? '127.0.0.1' : host, port, path: '/metrics', timeout: 1000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve(res.statusCode === 200 && body.includes('lbd_build_info') ? body : null));
        res.on('error', () => resolve(null));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(null));
    });
  }

  arp(iface: string, targets: string[], sourceIp: string, opts?: { waitAll?: boolean }) {
    return arpAsk(iface, targets, sourceIp, opts);
  }

  probeVip(iface: string, rsMac: string, vip: string, port: number, sourceIp: string) {
    return probeVip(iface, rsMac, vip, port, sourceIp);
  }
}
