/**
 * `lbd list` output in `ipvsadm -L -n` layout (the same printf widths as ipvsadm.c), plus lbd's
 * Health column and service names. Pure functions of the admin socket's answers.
 */
import type { ConnEntry, ListResult, RealView, ServiceView } from '../control/admin/protocol';

export type ListMode = 'plain' | 'stats' | 'rate' | 'thresholds' | 'persistent';

function padEnd(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}
function padStart(s: string, n: number): string {
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

/** ipvsadm's print_largenum: 9 columns, K/M/G/T above 100 million unless exact. */
export function largeNum(n: number, exact = false): string {
  const i = Math.max(0, Math.floor(n));
  if (exact) {
    const t = String(i);
    return padStart(t, t.length <= 8 ? 9 : t.length + 1);
  }
  if (i < 1e8) return padStart(String(i), 9);
  if (i < 1e9) return padStart(String(Math.floor(i / 1e3)), 8) + 'K';
  if (i < 1e11) return padStart(String(Math.floor(i / 1e6)), 8) + 'M';
  if (i < 1e14) return padStart(String(Math.floor(i / 1e9)), 8) + 'G';
  return padStart(String(Math.floor(i / 1e12)), 8) + 'T';
}

function ipNum(ip: string): number {
  return ip.split('.').reduce((n, p) => n * 256 + Number(p), 0);
}

/** ipvsadm sorts services by protocol, address, port and real servers by address, port. */
export function sortServices(services: ServiceView[]): ServiceView[] {
  const proto = (p: string) => (p === 'tcp' ? 6 : 17);
  return [...services]
    .sort((a, b) => proto(a.protocol) - proto(b.protocol) || ipNum(a.vip) - ipNum(b.vip) || a.port - b.port)
    .map((s) => ({ ...s, reals: [...s.reals].sort((a, b) => ipNum(a.address) - ipNum(b.address) || a.port - b.port) }));
}

function serviceName(s: ServiceView): string {
  return `${s.protocol.toUpperCase()}  ${s.vip}:${s.port}`.slice(0, 33);
}

function realName(r: RealView): string {
  return `${r.address}:${r.port}`.slice(0, 28);
}

/** lbd's Health column: up, down (reason), unchecked; removed servers say they drain. */
export function healthText(r: RealView): string {
  let h = r.health === 'down' && r.health_reason ? `down (${r.health_reason})` : r.health;
  if (r.sorry) h = `sorry server, ${h}`;
  if (r.removed) h = 'removed, draining';
  return h;
}

export interface ListOptions {
  mode?: ListMode;
  exact?: boolean;
  /** Keep the daemon's order (config order) instead of ipvsadm's sort. */
  nosort?: boolean;
}

/** The whole `lbd list` text. */
export function formatList(r: ListResult, o: ListOptions = {}): string {
  const mode = o.mode ?? 'plain';
  const exact = o.exact ?? false;
  const lines: string[] = [`lbd Virtual Server version ${r.version} (size=${r.size})`];
  if (mode === 'plain') {
    lines.push('Prot LocalAddress:Port Scheduler Flags');
    lines.push('  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn Health');
  } else if (mode === 'persistent') {
    // ipvsadm -L -n --persistent-conn: PersistConn = persistence templates (client networks) per server.
    lines.push('Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn');
    lines.push('  -> RemoteAddress:Port');
  } else if (mode === 'thresholds') {
    // ipvsadm -L -n --thresholds, plus lbd's Overload column (is the server over its threshold now).
    lines.push('Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn Overload');
    lines.push('  -> RemoteAddress:Port');
  } else {
    const cols = mode === 'stats' ? ['Conns', 'InPkts', 'OutPkts', 'InBytes', 'OutBytes'] : ['CPS', 'InPPS', 'OutPPS', 'InBPS', 'OutBPS'];
    lines.push(`${padEnd('Prot LocalAddress:Port', 33)} ${cols.map((c) => padStart(c, 8)).join(' ')}`);
    lines.push('  -> RemoteAddress:Port');
  }
  const services = o.nosort ? r.services : sortServices(r.services);
  for (const s of services) {
    if (mode === 'plain' || mode === 'thresholds' || mode === 'persistent') {
      let line = `${serviceName(s)} ${s.scheduler}`;
      // As ipvsadm -L: the scheduler's flags in parentheses; then lbd's on_miss when it is not drop.
      if (s.scheduler_flags?.length) line += ` (${s.scheduler_flags.join(',')})`;
      if (s.on_miss === 'hash') line += ' on_miss hash';
      if (s.persistence > 0) {
        line += ` persistent ${Math.ceil(s.persistence)}`;
        if (s.persistence_netmask !== '255.255.255.255') line += ` mask ${s.persistence_netmask}`;
      }
      line += s.removed ? ` (${s.name}, removed: draining)` : ` (${s.name})`;
      lines.push(line);
      if (mode === 'persistent') {
        for (const d of s.reals) {
          lines.push(
            `  -> ${padEnd(realName(d), 28)} ${padEnd(String(d.weight), 9)} ${padEnd(String(d.persistent), 11)} ${padEnd(String(d.active), 10)} ${padEnd(String(d.inactive), 10)}`.trimEnd(),
          );
        }
        continue;
      }
      if (mode === 'thresholds') {
        for (const d of s.reals) {
          const cols = [d.u_threshold, d.l_threshold, d.active, d.inactive].map((n) => padEnd(String(n), 10)).join(' ');
          lines.push(`  -> ${padEnd(realName(d), 28)} ${cols} ${d.overloaded ? 'yes' : 'no'}`);
        }
        continue;
      }
      for (const d of s.reals) {
        lines.push(
          `  -> ${padEnd(realName(d), 28)} ${padEnd(d.forward, 7)} ${padEnd(String(d.weight), 6)} ${padEnd(String(d.active), 10)} ${padEnd(String(d.inactive), 10)} ${healthText(d)}`,
        );
      }
    } else {
      const nums = (v: ServiceView | RealView) =>
        (mode === 'stats'
          ? [v.stats.conns, v.stats.inpkts, v.stats.outpkts, v.stats.inbytes, v.stats.outbytes]
          : [v.rate.cps, v.rate.inpps, v.rate.outpps, v.rate.inbps, v.rate.outbps]
        )
          .map((n) => largeNum(n, exact))
          .join('');
      lines.push(padEnd(serviceName(s), 33) + nums(s));
      for (const d of s.reals) lines.push(`  -> ${padEnd(realName(d), 28)}` + nums(d));
    }
  }
  return lines.join('\n') + '\n';
}

/** `lbd list -c`: `ipvsadm -L -n -c` layout. */
export function formatConnections(entries: ConnEntry[]): string {
  const lines = ['lbd connection entries', `pro expire ${padEnd('state', 11)} ${padEnd('source', 18)} ${padEnd('virtual', 18)} destination`];
  for (const e of entries) {
    const mm = String(Math.floor(e.expires / 60)).padStart(2, '0');
    const ss = String(e.expires % 60).padStart(2, '0');
    lines.push(
      `${padEnd(e.protocol.toUpperCase(), 3)} ${padEnd(`${mm}:${ss}`, 6)} ${padEnd(e.state, 11)} ${padEnd(e.client, 18)} ${padEnd(e.virtual, 18)} ${e.destination}`,
    );
  }
  return lines.join('\n') + '\n';
}
