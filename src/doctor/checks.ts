/**
 * lbd doctor's checks. Every read of the host goes through HostView (src/doctor/system.ts is
 * the real one; unit tests pass a fake), so each check is a plain function of what it sees.
 * One file, a little over 500 lines: the checks share HostView, the Finding vocabulary and a
 * few helpers, and read top to bottom in the order runDoctor reports them.
 */
import { serviceKey, type Config } from '../config/types';
import { ipToInt } from '../dataplane/packet';
import { HostGuard } from '../host/guard';
import { instanceNames } from '../host/instance';
import { HOST_LEASE_S } from '../host/leased-table';
import type { StateHeader } from '../dataplane/state-file';
import type { ArpAnswer, VipProbeResult } from './probe';
import { checkStateFile } from './state';

export type Severity = 'ok' | 'skip' | 'warn' | 'error';

export interface Finding {
  /** Stable identifier, e.g. "interface.capture", "realserver.vip:web:10.0.10.40". */
  check: string;
  severity: Severity;
  /** What was found, one sentence. */
  what: string;
  /** The command (or step) that fixes it; absent when nothing is to be done. */
  fix?: string;
}

export interface InterfaceInfo {
  exists: boolean;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** /sys/class/net/IF/operstate: up, down, lowerlayerdown, unknown, … */
  operstate: string;
  /** IPv4 addresses as a.b.c.d/len. */
  addresses: string[];
  mac?: string;
}

export interface HostView {
  /** CapEff of this process (/proc/self/status), or null when unreadable. */
  capEff(): bigint | null;
  iface(name: string): InterfaceInfo;
  /** A /proc/sys value (e.g. "net.ipv4.ip_forward"), trimmed; null when absent. */
  sysctl(key: string): string | null;
  /** Every local IPv4 address with the interface it is on. */
  localAddresses(): { address: string; iface: string }[];
  /** `ethtool -k IF` features (name → "on", "off", "on [fixed]"…); null when ethtool is missing. */
  ethtoolFeatures(iface: string): Record<string, string> | null;
  /** `nft list table netdev NAME` (the guard), '' when there is none, null when nft is missing. */
  nftGuardTable(name: string): string | null;
  /** Path of the libpcap the native binding loads (libpcap.so.0.8, .so.1 or .so), or null. */
  libpcapLibrary(): string | null;
  /** The native binding: the file that loaded, or what was tried and how to get one. */
  binding(): { loaded: string } | { error: string };
  /** The running lbd's /metrics text on the metrics address; null when no lbd answers there. */
  lbdMetrics(host: string, port: number): Promise<string | null>;
  /** ARP requests from sourceIp ('0.0.0.0' = probe) on iface; every answer per target. */
  arp(iface: string, targets: string[], sourceIp: string, opts?: { waitAll?: boolean }): Promise<Map<string, ArpAnswer[]>>;
  /** SYN to vip:port in a frame to rsMac, from sourceIp, on iface. */
  probeVip(iface: string, rsMac: string, vip: string, port: number, sourceIp: string): Promise<VipProbeResult>;
  /** The file system a file at `path` would be on (its nearest existing directory); null when none can be looked at. */
  fileSystem(path: string): FileSystemInfo | null;
  /** The state file at `path`: its size and header (or why the next lbd sets it aside); null when there is none. */
  stateFile(path: string): StateFileView | null;
  /** Size and modification time of a file; null when absent (or it cannot be looked at). */
  fileStat(path: string): { bytes: number; mtimeMs: number } | null;
  /** Whether `pid` runs and is the process that wrote a state file header at `startedMs` (not a later one with its PID). */
  processAlive(pid: number, startedMs: number): boolean;
}

export interface FileSystemInfo {
  /** tmpfs (or ramfs): in memory, gone at reboot. */
  tmpfs: boolean;
  /** Bytes an unprivileged writer may still allocate (f_bavail × f_bsize). */
  freeBytes: number;
  /** Its size (f_blocks × f_bsize), when known. */
  totalBytes?: number;
  /** Its type: "tmpfs", "ext4", … (or the statfs magic in hex). */
  type: string;
  /** Where it is mounted, when known. */
  mount?: string;
}

/** A state file as `lbd doctor` sees it: its size and header (readHeader's reason when it is not sound), or why it could not be read. */
export type StateFileView = { bytes: number; header: StateHeader | string } | { error: string };

export interface DoctorOptions {
  /** Skip the wire probes (ARP, SYN); default false. */
  noProbes?: boolean;
}

export interface DoctorReport {
  config: string;
  lbdRunning: boolean;
  findings: Finding[];
  /** true when no finding is an error (exit status 0). */
  ok: boolean;
}

const CAP_NET_ADMIN = 12n;
const CAP_NET_RAW = 13n;

function inSubnet(ip: string, cidr: string): boolean {
  const [net, lenS] = cidr.split('/');
  const len = Number(lenS);
  if (!(len >= 0 && len <= 32)) return false;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return (ipToInt(ip) & mask) >>> 0 === (ipToInt(net) & mask) >>> 0;
}

const bare = (cidr: string) => cidr.split('/')[0];

function uniqueVips(cfg: Config): string[] {
  return [...new Set(cfg.services.map((s) => s.vip))];
}

export function checkInterfaces(cfg: Config, h: HostView): Finding[] {
  const out: Finding[] = [];
  const roles: [string, string][] =
    cfg.interfaces.capture === cfg.interfaces.egress
      ? [['capture/egress', cfg.interfaces.capture]]
      : [
          ['capture', cfg.interfaces.capture],
          ['egress', cfg.interfaces.egress],
        ];
  for (const [role, name] of roles) {
    const check = `interface.${role === 'egress' ? 'egress' : 'capture'}`;
    const i = h.iface(name);
    if (!i.exists) {
      out.push({
        check,
        severity: 'error',
        what: `${role} interface ${name} does not exist (in this network namespace)`,
        fix: `ip link show; set interfaces.${role === 'egress' ? 'egress' : 'capture'} in the config`,
      });
    } else if (!i.up) {
      out.push({ check, severity: 'error', what: `${role} interface ${name} is down`, fix: `ip link set ${name} up` });
    } else if (i.operstate !== 'up' && i.operstate !== 'unknown') {
      out.push({
        check,
        severity: 'error',
        what: `${role} interface ${name} is up but has no carrier (operstate ${i.operstate})`,
        fix: `check the cable/peer of ${name} (ip link show ${name})`,
      });
    } else {
      out.push({ check, severity: 'ok', what: `${role} interface ${name} exists and is up${i.addresses.length ? ` (${i.addresses.join(', ')})` : ''}` });
    }
  }
  return out;
}

export function checkPrivileges(h: HostView): Finding[] {
  const eff = h.capEff();
  if (eff === null) return [{ check: 'privileges', severity: 'warn', what: 'cannot read CapEff from /proc/self/status' }];
  const missing: string[] = [];
  if (!((eff >> CAP_NET_RAW) & 1n)) missing.push('CAP_NET_RAW (capture and send frames)');
  if (!((eff >> CAP_NET_ADMIN) & 1n)) missing.push('CAP_NET_ADMIN (install the nftables guard)');
  if (!missing.length) return [{ check: 'privileges', severity: 'ok', what: 'CAP_NET_RAW and CAP_NET_ADMIN are effective' }];
  return [
    {
      check: 'privileges',
      severity: 'error',
      what: `missing ${missing.join(', ')}`,
      fix: 'run lbd as root, or with AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN in its systemd unit (or setcap cap_net_raw,cap_net_admin+ep on the node binary)',
    },
  ];
}

/** The native binding (capture and send on both data paths) and the libpcap it compiles filters with. */
export function checkBinding(h: HostView): Finding[] {
  const out: Finding[] = [];
  const b = h.binding();
  if ('loaded' in b) out.push({ check: 'binding', severity: 'ok', what: `the native binding loads (${b.loaded})` });
  else
    out.push({
      check: 'binding',
      severity: 'error',
      what: b.error,
      fix: 'npm run build:native (apt-get install g++ first), or install lbd from a package with its prebuilds/ (scripts/prebuild.sh makes them)',
    });
  const so = h.libpcapLibrary();
  if (so) out.push({ check: 'libpcap', severity: 'ok', what: `libpcap present (${so}): the binding compiles the capture filters with it` });
  else
    out.push({
      check: 'libpcap',
      severity: 'error',
      what: 'libpcap is not installed (libpcap.so.0.8): the binding compiles the capture filters with it, so lbd cannot capture',
      fix: 'apt-get install libpcap0.8',
    });
  return out;
}

/** Effective value of a per-interface sysctl where the kernel takes max(all, iface). */
function effectiveMax(h: HostView, name: string, iface: string): number {
  const all = Number(h.sysctl(`net.ipv4.conf.all.${name}`) ?? 0);
  const dev = Number(h.sysctl(`net.ipv4.conf.${iface}.${name}`) ?? 0);
  return Math.max(all, dev);
}

export function checkForwarding(cfg: Config, h: HostView, running: boolean): Finding[] {
  const out: Finding[] = [];
  const { capture, egress } = cfg.interfaces;
  const twoNic = capture !== egress;
  const fwd = h.sysctl('net.ipv4.ip_forward');
  const local = new Set(h.localAddresses().map((a) => a.address));
  const localVips = uniqueVips(cfg).filter((v) => local.has(v));

  // ip_forward: in the two-NIC shape the real servers' replies often route back through this host.
  if (twoNic && fwd === '0') {
    out.push({
      check: 'ip_forward',
      severity: 'warn',
      what: `ip_forward=0 with two interfaces: if the real servers' replies route through this host (default route via ${egress}'s address), they are dropped`,
      fix: 'sysctl -w net.ipv4.ip_forward=1',
    });
  } else {
    out.push({
      check: 'ip_forward',
      severity: 'ok',
      what: `ip_forward=${fwd ?? '?'}${fwd === '1' ? ": the kernel would route VIP frames too; lbd's nftables guard keeps it out of the services' traffic" : ''}`,
    });
  }

  // The guard: an nftables netdev table that keeps the kernel away from the services' traffic.
  const guardTable = instanceNames(cfg.interfaces.capture).guardTable;
  const table = h.nftGuardTable(guardTable);
  const needsGuard = fwd === '1' || localVips.length > 0;
  if (table === null) {
    out.push({
      check: 'guard',
      severity: 'error',
      what: 'nft not found: lbd cannot install its nftables guard and will not start',
      fix: 'apt-get install nftables',
    });
  } else if (running) {
    const missing = cfg.services.filter((s) => !table.includes(HostGuard.element(s)));
    if (!table) {
      out.push({
        check: 'guard',
        severity: needsGuard ? 'error' : 'warn',
        what: `lbd runs but the nftables table "netdev ${guardTable}" is missing: ${needsGuard ? 'the kernel also handles VIP traffic (answers or routes it) next to lbd' : 'nothing keeps the kernel away from VIP traffic'}`,
        fix: 'restart lbd (it installs the guard at start); check its log for nftables errors',
      });
    } else if (missing.length) {
      out.push({
        check: 'guard',
        severity: needsGuard ? 'error' : 'warn',
        what: `the nftables guard has no element for ${missing.map(serviceKey).join(', ')} (running config differs from ${cfg.file}?)`,
        fix: 'lbd reload (or restart lbd)',
      });
    } else {
      out.push({ check: 'guard', severity: 'ok', what: `nftables guard "netdev ${guardTable}" is installed with an element for every service` });
    }
  } else if (table) {
    // Leased elements: a guard whose lbd is gone drops traffic for at most a lease, then matches nothing.
    const live = cfg.services.filter((s) => table.includes(HostGuard.element(s)));
    out.push(
      live.length
        ? {
            check: 'guard',
            severity: 'warn',
            what: `the nftables guard "netdev ${guardTable}" still drops ${live.map(serviceKey).join(', ')} but no lbd answers on the metrics address: an lbd that just ended (its elements lapse ${HOST_LEASE_S} s after its last renewal), or one with another metrics address`,
            fix: `wait ${HOST_LEASE_S} s, or start lbd (it takes the table over), or nft delete table netdev ${guardTable}`,
          }
        : {
            check: 'guard',
            severity: 'ok',
            what: `the nftables table "netdev ${guardTable}" of an lbd that ended is inert (its elements lapsed); lbd takes it over at start`,
          },
    );
  } else {
    out.push({ check: 'guard', severity: 'ok', what: `lbd is not running: it installs its nftables guard (table netdev ${guardTable}) at start` });
  }

  // A local VIP: the kernel owns it (answers ARP), lbd does not announce it.
  for (const vip of localVips) {
    const where = h
      .localAddresses()
      .filter((a) => a.address === vip)
      .map((a) => a.iface);
    if (where.includes(capture)) {
      out.push({
        check: `vip.local:${vip}`,
        severity: 'ok',
        what: `VIP ${vip} is an address of ${capture}: the kernel answers ARP for it, lbd's guard keeps the kernel off the service ports`,
      });
      continue;
    }
    const ai = effectiveMax(h, 'arp_ignore', capture);
    out.push({
      check: `vip.local:${vip}`,
      severity: ai >= 1 ? 'error' : 'warn',
      what:
        `VIP ${vip} is local but on ${where.join(', ')}, not on ${capture}: lbd does not answer ARP for local VIPs` +
        (ai >= 1
          ? ` and arp_ignore=${ai} on ${capture} stops the kernel from answering: nobody answers ARP for the VIP`
          : ', the kernel answers for it (arp_ignore=0)'),
      fix: `ip addr del ${vip}/32 dev ${where[0]} (lbd answers ARP for a VIP that is not local)`,
    });
  }
  return out;
}

export function checkRpFilter(cfg: Config, h: HostView): Finding[] {
  const { capture, egress } = cfg.interfaces;
  if (capture === egress) {
    const v = effectiveMax(h, 'rp_filter', capture);
    return [{ check: 'rp_filter', severity: 'ok', what: `rp_filter=${v} on ${capture} (one interface: no reply with a VIP source arrives here)` }];
  }
  const out: Finding[] = [];
  const v = effectiveMax(h, 'rp_filter', egress);
  if (v === 1) {
    out.push({
      check: 'rp_filter',
      severity: 'error',
      what: `strict rp_filter on ${egress} (two interfaces): replies from the real servers with source VIP arrive on ${egress} while the VIP routes via ${capture}, and the kernel drops them`,
      fix: `sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.${egress}.rp_filter=2 (or 0)`,
    });
  } else {
    out.push({ check: 'rp_filter', severity: 'ok', what: `rp_filter=${v} on ${egress} (${v === 0 ? 'off' : 'loose'}): replies with source VIP are accepted` });
  }
  return out;
}

export function checkOffloads(cfg: Config, h: HostView): Finding[] {
  const iface = cfg.interfaces.capture;
  if (!h.iface(iface).exists) return [];
  const f = h.ethtoolFeatures(iface);
  if (!f) return [{ check: 'offload', severity: 'skip', what: `ethtool not found: cannot check offloads on ${iface}`, fix: 'apt-get install ethtool' }];
  const out: Finding[] = [];
  const isOn = (k: string) => (f[k] ?? '').startsWith('on');
  const fixed = (k: string) => ((f[k] ?? '').includes('[fixed]') ? ' (fixed by the driver: cannot be changed here)' : '');
  // Both data paths take frames with their virtio-net header: partial checksums and GRO's
  // super-frames are carried through (or completed and segmented by lbd). LRO is another matter:
  // a NIC's merged frame does not always say how to split it again.
  out.push({
    check: 'offload.tx',
    severity: 'ok',
    what: isOn('tx-checksumming')
      ? `tx checksum offload is on on ${iface}: partial checksums arrive marked and are completed on the way out`
      : `tx checksum offload is off on ${iface}`,
  });
  out.push({
    check: 'offload.gro',
    severity: 'ok',
    what: isOn('generic-receive-offload')
      ? `GRO is on on ${iface}: merged super-frames are forwarded whole with their virtio-net header and segmented on the way out`
      : `GRO is off on ${iface}`,
  });
  if (isOn('large-receive-offload')) {
    out.push({
      check: 'offload.lro',
      severity: 'warn',
      what: `LRO is on on ${iface}: the NIC merges frames without always saying how to split them again; such frames are dropped (too_big, gso_unsupported)${fixed('large-receive-offload')}`,
      fix: `ethtool -K ${iface} lro off (GRO does the same job and keeps what is needed)`,
    });
  }
  return out;
}

/** Drop reasons of a running lbd that an operator should hear about: why, and what to do. */
const DROP_EXPLANATIONS: Record<string, { severity: Severity; why: string; fix?: string }> = {
  truncated: {
    severity: 'warn',
    why: 'frames arrived cut short: larger than the capture could take whole (a super-frame while the socket receive buffer was full, or a frame larger than 64 KiB)',
    fix: 'check lbd_native_capture_dropped_packets_total and the CPU; BIG TCP (gso_max_size above 65536) on a sender sends frames lbd cannot take',
  },
  gso_unsupported: {
    severity: 'warn',
    why: 'super-frames lbd can neither pass on whole nor segment (IPv6 segmentation on an IPv4 frame, UFO, offsets outside the frame)',
    fix: 'turn the odd offload off on the sender, e.g. ethtool -K IF tx-udp-fragmentation off',
  },
  send_failed: {
    severity: 'warn',
    why: 'the egress interface refused frames (link down, queue full, or a frame larger than it takes)',
    fix: 'ip -s link show on the egress interface; check its MTU against the capture side',
  },
  too_big: {
    severity: 'ok',
    why: 'frames with DF set were larger than the egress MTU: the clients were sent ICMP "fragmentation needed" and send smaller ones (path MTU discovery, as IPVS does)',
    fix: 'nothing, unless the egress MTU is smaller than intended (ip link show on the egress interface)',
  },
  icmp_unknown_flow: {
    severity: 'ok',
    why: "ICMP errors to a VIP quoted flows lbd has no entry for (expired ones, or the host's own connections on a VIP that is its address)",
  },
};

/** A running lbd's drops, explained (lbd_dropped_packets_total by reason). */
export function checkDrops(metrics: string | null): Finding[] {
  if (metrics === null) return [];
  const out: Finding[] = [];
  for (const m of metrics.matchAll(/^lbd_dropped_packets_total\{reason="([a-z_]+)"\} (\S+)$/gm)) {
    const n = Number(m[2]);
    const e = DROP_EXPLANATIONS[m[1]];
    if (!e || !(n > 0)) continue;
    out.push({ check: `drops.${m[1]}`, severity: e.severity, what: `${n} frames dropped as ${m[1]}: ${e.why}`, ...(e.fix ? { fix: e.fix } : {}) });
  }
  return out;
}

/** The balancer's address to send ARP requests and probes from on iface: not a VIP. */
function sourceAddress(cfg: Config, h: HostView, iface: string): string | undefined {
  const vips = new Set(uniqueVips(cfg));
  return h
    .iface(iface)
    .addresses.map(bare)
    .find((a) => !vips.has(a));
}

export async function checkWire(cfg: Config, h: HostView, opts: DoctorOptions): Promise<Finding[]> {
  const out: Finding[] = [];
  const { capture, egress } = cfg.interfaces;
  const realIps = [...new Set(cfg.services.flatMap((s) => s.real_servers.map((r) => r.address)))];
  const configured = new Map<string, string>();
  for (const s of cfg.services) for (const r of s.real_servers) if (r.mac) configured.set(r.address, r.mac);

  const capOk = h.capEff() === null || ((h.capEff()! >> CAP_NET_RAW) & 1n) === 1n;
  const bindingOk = 'loaded' in h.binding() && h.libpcapLibrary() !== null;
  const probesPossible = !opts.noProbes && capOk && bindingOk && h.iface(capture).exists && h.iface(egress).exists;
  const why = opts.noProbes ? '--no-probes' : !capOk ? 'no CAP_NET_RAW' : !bindingOk ? 'no native binding or no libpcap to capture with' : 'interface missing';

  // Real servers must sit on the egress interface's segment: DR only rewrites MACs.
  const egressNets = h.iface(egress).addresses;
  for (const ip of realIps) {
    if (egressNets.length && !egressNets.some((n) => inSubnet(ip, n))) {
      out.push({
        check: `realserver.subnet:${ip}`,
        severity: 'warn',
        what: `real server ${ip} is not in a subnet of ${egress} (${egressNets.join(', ')}): Direct Routing needs it on the same layer-2 segment`,
        fix: `put ${ip} on ${egress}'s segment, or use the interface that reaches it as interfaces.egress`,
      });
    }
  }

  if (!probesPossible) {
    out.push({ check: 'arp.vip', severity: 'skip', what: `ARP and VIP-path probes not run (${why})` });
    return out;
  }

  // 1. Real servers' MACs, on the egress interface (like the daemon: never from a VIP).
  const egressSrc = sourceAddress(cfg, h, egress) ?? '0.0.0.0';
  const macs = new Map<string, string>();
  const toAsk = realIps;
  const answers = await h.arp(egress, toAsk, egressSrc);
  for (const ip of realIps) {
    const a = answers.get(ip) ?? [];
    const want = configured.get(ip);
    if (!a.length) {
      if (want) {
        macs.set(ip, want);
        out.push({
          check: `realserver.arp:${ip}`,
          severity: 'warn',
          what: `real server ${ip} does not answer ARP on ${egress}; using the configured mac ${want}`,
          fix: `check that ${ip} is up and on ${egress}'s segment`,
        });
      } else {
        out.push({
          check: `realserver.arp:${ip}`,
          severity: 'error',
          what: `real server ${ip} does not answer ARP on ${egress}: lbd cannot resolve its MAC and drops its flows`,
          fix: `check that ${ip} is up and on ${egress}'s segment (ip neigh; arping -I ${egress} ${ip})`,
        });
      }
      continue;
    }
    const mac = a[0].mac;
    macs.set(ip, want ?? mac);
    if (want && want !== mac) {
      out.push({
        check: `realserver.arp:${ip}`,
        severity: 'error',
        what: `real server ${ip} answers ARP with ${mac} but the config says mac: ${want}: frames go to the wrong host`,
        fix: `set mac: ${mac} for ${ip} (or remove mac: to resolve by ARP)`,
      });
    } else {
      out.push({ check: `realserver.arp:${ip}`, severity: 'ok', what: `real server ${ip} is at ${mac} on ${egress}` });
    }
  }

  // 2. Who answers ARP for each VIP on the capture interface (an RFC 5227 probe, sender 0.0.0.0):
  //    our own frames are not seen (inbound filter), so any answer is another host.
  const byMac = new Map<string, string>();
  for (const [ip, mac] of macs) byMac.set(mac, ip);
  const vips = uniqueVips(cfg);
  const vipAnswers = await h.arp(capture, vips, '0.0.0.0', { waitAll: true });
  for (const vip of vips) {
    const others = vipAnswers.get(vip) ?? [];
    if (!others.length) {
      out.push({ check: `arp.vip:${vip}`, severity: 'ok', what: `no other host answers ARP for VIP ${vip} on ${capture}` });
      continue;
    }
    for (const o of others) {
      const rs = byMac.get(o.mac);
      out.push(
        rs
          ? {
              check: `arp.vip:${vip}`,
              severity: 'error',
              what: `real server ${rs} (${o.mac}) answers ARP for VIP ${vip}: clients may send VIP traffic straight to it, around lbd`,
              fix: `on ${rs}: sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 (or: lbd realserver-setup --vip ${vip} --apply)`,
            }
          : {
              check: `arp.vip:${vip}`,
              severity: 'error',
              what: `another host (${o.mac}) answers ARP for VIP ${vip} on ${capture}: VIP traffic may go there instead of to lbd`,
              fix: `find the host with MAC ${o.mac} and remove ${vip} from it (or give it arp_ignore=1)`,
            },
      );
    }
  }

  // 3. The VIP path: does each real server accept a frame for VIP:port addressed to its MAC?
  const src = sourceAddress(cfg, h, egress);
  for (const s of cfg.services) {
    for (const r of s.real_servers) {
      const check = `realserver.vip:${s.name}:${r.address}`;
      const mac = macs.get(r.address);
      if (!mac) continue; // already an error above
      if (s.protocol !== 'tcp') {
        out.push({
          check,
          severity: 'skip',
          what: `${s.name}: VIP path of ${r.address} not probed (UDP has no handshake to observe)`,
          fix: `on ${r.address}: ip addr show dev lo | grep ${s.vip}`,
        });
        continue;
      }
      if (!src) {
        out.push({
          check,
          severity: 'skip',
          what: `${s.name}: VIP path of ${r.address} not probed: ${egress} has no address that is not a VIP to receive the SYN-ACK on`,
          fix: `on ${r.address}: ip addr show dev lo | grep ${s.vip}`,
        });
        continue;
      }
      const res = await h.probeVip(egress, mac, s.vip, s.port, src);
      if (res === 'syn-ack') out.push({ check, severity: 'ok', what: `${s.name}: real server ${r.address} accepts traffic for ${s.vip}:${s.port} (SYN-ACK)` });
      else if (res === 'rst')
        out.push({
          check,
          severity: 'error',
          what: `${s.name}: real server ${r.address} has the VIP ${s.vip} but nothing listens on port ${s.port} (RST)`,
          fix: `on ${r.address}: start the service on port ${s.port} (listening on 0.0.0.0 or ${s.vip})`,
        });
      else
        out.push({
          check,
          severity: 'error',
          what: `${s.name}: real server ${r.address} does not accept traffic for VIP ${s.vip} (no answer to a SYN for ${s.vip}:${s.port} at its MAC): the VIP is not on its lo and no REDIRECT rule catches it`,
          fix: `on ${r.address}: lbd realserver-setup --vip ${s.vip} --apply --persist (VIP on lo + arp_ignore=1/arp_announce=2)`,
        });
    }
  }
  return out;
}

export async function runDoctor(cfg: Config, h: HostView, opts: DoctorOptions = {}): Promise<DoctorReport> {
  const { host, port } = cfg.metrics;
  const metrics = await h.lbdMetrics(host, port);
  const running = metrics !== null;
  const findings: Finding[] = [
    {
      check: 'lbd',
      severity: 'ok',
      what: running
        ? `an lbd answers on ${cfg.metrics.listen}: checking the running host`
        : `no lbd answers on ${cfg.metrics.listen}: checking the host before start`,
    },
    ...checkInterfaces(cfg, h),
    ...checkPrivileges(h),
    ...checkBinding(h),
    ...checkForwarding(cfg, h, running),
    ...checkStateFile(cfg, h, running),
    ...checkRpFilter(cfg, h),
    ...checkOffloads(cfg, h),
    ...checkDrops(metrics),
    ...(await checkWire(cfg, h, opts)),
  ];
  return { config: cfg.file, lbdRunning: running, findings, ok: !findings.some((f) => f.severity === 'error') };
}

const LABEL: Record<Severity, string> = { ok: 'ok', skip: 'skip', warn: 'WARN', error: 'ERROR' };

export function formatReport(r: DoctorReport): string {
  const lines = [`lbd doctor: ${r.config}`];
  for (const f of r.findings) {
    lines.push(`  ${LABEL[f.severity].padEnd(6)} ${f.what}`);
    if (f.fix && f.severity !== 'ok') lines.push(`         fix: ${f.fix}`);
  }
  const n = (s: Severity) => r.findings.filter((f) => f.severity === s).length;
  lines.push(
    `${n('ok')} ok, ${n('warn')} warning${n('warn') === 1 ? '' : 's'}, ${n('error')} error${n('error') === 1 ? '' : 's'}${n('skip') ? `, ${n('skip')} skipped` : ''}`,
  );
  return lines.join('\n') + '\n';
}
