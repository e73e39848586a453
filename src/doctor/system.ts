/** The real HostView: reads /proc, /sys, ethtool, nft, and probes the wire through the native binding. */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, realpathSync, statSync, statfsSync } from 'node:fs';
import http from 'node:http';
import { dirname } from 'node:path';
import { ipv4Addresses } from '../host/interfaces';
import { processStart } from '../host/owner';
import { ProgramNotFoundError, runSyncOk } from '../host/programs';
import { loadNative } from '../dataplane/binding';
import { HEADER_BYTES, bootId, readHeader } from '../dataplane/state-file';
import type { FileSystemInfo, HostView, InterfaceInfo, StateFileView } from './checks';
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

/** statfs f_type of the file systems that live in memory. */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
/** USER_HZ: the unit of /proc/PID/stat's start time (100 on every Linux architecture lbd runs on). */
const CLK_TCK = 100;

/** The mount point holding `path` (an absolute, resolved path) and its type, from /proc/self/mountinfo text. */
export function mountOf(mountinfo: string, path: string): { mount: string; type: string } | null {
  let best: { mount: string; type: string } | null = null;
  for (const line of mountinfo.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!right) continue;
    const mount = (left.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const inside = mount === '/' || path === mount || path.startsWith(`${mount}/`);
    // The last mount on a point is the one that is visible, hence >= (mountinfo lists in mount order).
    if (mount && inside && (!best || mount.length >= best.mount.length)) best = { mount, type: right.split(' ')[0] };
  }
  return best;
}

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

  fileSystem(path: string): FileSystemInfo | null {
    // The state file's directory may not exist yet (lbd makes it): the nearest one that does.
    for (let dir = dirname(path); ; dir = dirname(dir)) {
      try {
        const s = statfsSync(dir);
        let m: { mount: string; type: string } | null = null;
        try {
          m = mountOf(readFileSync('/proc/self/mountinfo', 'utf8'), realpathSync(dir));
        } catch {
          // No mountinfo: the magic number says enough.
        }
        const tmpfs = s.type === TMPFS_MAGIC || s.type === RAMFS_MAGIC;
        return {
          tmpfs,
          freeBytes: s.bavail * s.bsize,
          totalBytes: s.blocks * s.bsize,
          type: m?.type ?? (tmpfs ? 'tmpfs' : `0x${s.type.toString(16)}`),
          ...(m ? { mount: m.mount } : {}),
        };
      } catch {
        if (dir === '/' || dir === '.') return null;
      }
    }
  }

  stateFile(path: string): StateFileView | null {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return code === 'ENOENT' || code === 'ENOTDIR' ? null : { error: code ?? (e as Error).message };
    }
    try {
      const bytes = fstatSync(fd).size;
      // readHeader() looks at the header page and the length: a buffer of the file's length (its
      // pages untouched, never really allocated) with only the header read in says what a whole read would.
      let buf: Uint8Array;
      try {
        buf = new Uint8Array(bytes);
      } catch {
        return { bytes, header: `${bytes} bytes, larger than any state file` };
      }
      readSync(fd, buf, 0, Math.min(bytes, HEADER_BYTES), 0);
      return { bytes, header: readHeader(buf, bootId()) };
    } catch (e) {
      return { error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
    } finally {
      closeSync(fd);
    }
  }

  fileStat(path: string): { bytes: number; mtimeMs: number } | null {
    try {
      const s = statSync(path);
      return { bytes: s.size, mtimeMs: s.mtimeMs };
    } catch {
      return null;
    }
  }

  processAlive(pid: number, startedMs: number): boolean {
    const start = processStart(pid);
    if (start === null) return false;
    // A process that started after the header was written is another one that got the PID.
    const btime = /^btime (\d+)$/m.exec(read('/proc/stat') ?? '');
    return !btime || Number(btime[1]) * 1000 + (start / CLK_TCK) * 1000 <= startedMs + 2000;
  }
}
