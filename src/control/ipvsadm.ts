/**
 * ipvsadm interop, so that operators can move between IPVS and lbd either way: `lbd save
 * --ipvsadm` prints the running config as `ipvsadm -S -n` rules, and `lbd import-ipvsadm` turns
 * `ipvsadm-save` / `ipvsadm -S -n` output (or a script of ipvsadm commands) into an lb.yaml. lbd
 * does Direct Routing only: NAT (-m) and tunnel (-i) rules are refused with the reason.
 */
import { stringify } from 'yaml';
import { parseIPv4, THRESHOLD_MAX, WEIGHT_MAX } from '../config/values';
import { didYouMean } from '../config/suggest';
import { serviceKey, type Config, type Protocol } from '../config/types';
import { LbdError } from '../errors';
import { MH_TABLE_SIZE_DEFAULT, SCHEDULER_NAMES, schedulerFlagNames, schedulerOptions } from '../scheduler/index';

// Scheduler flags (ipvsadm -b): IPVS's three flag bits, named after the scheduler for sh and mh.

/** The schedulers that take -b flags, as the config prefixes their keys (sh_port, mh_fallback). */
const FLAGGED_SCHEDULERS = ['sh', 'mh'] as const;
/** Every name ipvsadm's -b takes, as its parse_sched_flags. */
export const SCHED_FLAG_NAMES = ['sh-fallback', 'sh-port', 'mh-fallback', 'mh-port', 'flag-1', 'flag-2', 'flag-3'] as const;

/** What a scheduler's -b takes, for messages. */
export function flagsOf(scheduler: string): string {
  return (FLAGGED_SCHEDULERS as readonly string[]).includes(scheduler)
    ? `${scheduler}-fallback, ${scheduler}-port (or their numbers flag-1, flag-2)`
    : `none: only sh and mh take scheduler flags`;
}

export interface SchedFlags {
  /** The options the flags set: fallback (flag-1), port (flag-2). */
  options: { fallback?: true; port?: true };
  /** Names that mean nothing for this scheduler (flag-3, any flag-N of a scheduler without flags), as given. */
  ignored: string[];
  /** Names ipvsadm refuses here (another scheduler's, unknown ones): one message each. */
  problems: string[];
}

/**
 * The flags of `ipvsadm -b LIST` for `scheduler`, as ipvsadm reads them: sh-fallback / sh-port
 * with sh, mh-fallback / mh-port with mh, flag-1 / flag-2 as their numbers, flag-3 (no meaning
 * for either); another scheduler's names and unknown names are refused.
 */
export function parseSchedFlags(list: string, scheduler: string): SchedFlags {
  const out: SchedFlags = { options: {}, ignored: [], problems: [] };
  const flagged = (FLAGGED_SCHEDULERS as readonly string[]).includes(scheduler);
  const names = list.split(',').filter((n) => n !== '');
  if (!names.length) out.problems.push(`no flag names given (${scheduler} takes ${flagsOf(scheduler)})`);
  for (const name of names) {
    const m = /^(sh|mh)-(fallback|port)$/.exec(name);
    const generic = /^flag-([123])$/.exec(name);
    if (m) {
      if (m[1] === scheduler) out.options[m[2] as 'fallback' | 'port'] = true;
      else out.problems.push(`scheduler flag "${name}" is for scheduler ${m[1]}, not ${scheduler} (${scheduler} takes ${flagsOf(scheduler)})`);
    } else if (generic) {
      if (flagged && generic[1] === '1') out.options.fallback = true;
      else if (flagged && generic[1] === '2') out.options.port = true;
      else out.ignored.push(name);
    } else {
      const guess = didYouMean(name, SCHED_FLAG_NAMES);
      out.problems.push(
        `unknown scheduler flag "${name}"${guess ? `; did you mean "${guess}"?` : ''} (${scheduler} takes ${flagsOf(scheduler)}; -b knows ${SCHED_FLAG_NAMES.join(', ')})`,
      );
    }
  }
  return out;
}

/** The config keys of a scheduler's flags (sh_fallback, mh_port, …), for setting or clearing them. */
export const SCHED_FLAG_KEYS = ['mh_fallback', 'mh_port', 'sh_fallback', 'sh_port'] as const;

/**
 * What `ipvsadm -S -n` cannot say about a config, one line per service and setting: the Maglev
 * table's size (a kernel build option in IPVS) and on_miss: hash (IPVS's sysctl sloppy_tcp).
 * `lbd save --ipvsadm` prints them on stderr, so that its stdout stays rules ipvsadm -R takes.
 */
export function ipvsadmOmissions(cfg: Pick<Config, 'services'>): string[] {
  const out: string[] = [];
  for (const s of cfg.services) {
    const who = `service ${s.name} (${serviceKey(s)})`;
    if (s.scheduler === 'mh' && s.mh_table_size !== undefined && s.mh_table_size !== MH_TABLE_SIZE_DEFAULT) {
      out.push(
        `${who}: mh_table_size ${s.mh_table_size} is not in the rules: IPVS's Maglev table size is chosen when the kernel is built (CONFIG_IP_VS_MH_TAB_INDEX)`,
      );
    }
    if (s.on_miss === 'hash') {
      out.push(`${who}: on_miss: hash is not in the rules: IPVS's equivalent is the sysctl net.ipv4.vs.sloppy_tcp=1 (for every service)`);
    }
  }
  return out;
}

/** `ipvsadm -S -n` for a config: one -A line per service, one -a line per real server. */
export function toIpvsadmRules(cfg: Pick<Config, 'services'>): string {
  const lines: string[] = [];
  for (const s of cfg.services) {
    const svc = `${s.protocol === 'udp' ? '-u' : '-t'} ${s.vip}:${s.port}`;
    let a = `-A ${svc} -s ${s.scheduler}`;
    if (s.persistence > 0) {
      a += ` -p ${Math.ceil(s.persistence)}`;
      if (s.persistence_netmask !== '255.255.255.255') a += ` -M ${s.persistence_netmask}`;
    }
    // As ipvsadm -S: the flags after -p/-M, by the scheduler's names.
    const flags = schedulerFlagNames(s.scheduler, schedulerOptions(s));
    if (flags.length) a += ` -b ${flags.join(',')}`;
    lines.push(a);
    for (const r of s.real_servers) {
      // ipvsadm -R takes -x/-y on -a lines; they are written only when set, so a config without
      // thresholds saves exactly as ipvsadm -S -n does.
      let line = `-a ${svc} -r ${r.address}:${r.port} -g -w ${r.weight}`;
      if (r.u_threshold) line += ` -x ${r.u_threshold}`;
      if (r.l_threshold) line += ` -y ${r.l_threshold}`;
      lines.push(line);
    }
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

export class ImportError extends LbdError {
  constructor(readonly problems: string[]) {
    super('E_IMPORT', problems.join('\n'));
  }
}

export interface ImportedReal {
  address: string;
  port: number;
  weight: number;
  /** -x / -y when given (0 = none). */
  u_threshold?: number;
  l_threshold?: number;
}
export interface ImportedService {
  protocol: Protocol;
  vip: string;
  port: number;
  scheduler: string;
  /** Seconds, 0 = off. */
  persistence: number;
  netmask: string;
  /** -b: the scheduler's flags that are set (absent when none). */
  flags?: { fallback?: true; port?: true };
  reals: ImportedReal[];
}
export interface ImportResult {
  services: ImportedService[];
  /** Things that were ignored or adjusted, one line each with its line number. */
  warnings: string[];
}

/** Well-known port names ipvsadm prints without -n (from /etc/services). */
const PORT_NAMES: Record<string, number> = {
  ftp: 21,
  ssh: 22,
  smtp: 25,
  domain: 53,
  http: 80,
  www: 80,
  pop3: 110,
  ntp: 123,
  imap: 143,
  snmp: 161,
  ldap: 389,
  https: 443,
  submission: 587,
  ldaps: 636,
  imaps: 993,
  pop3s: 995,
  mysql: 3306,
  postgresql: 5432,
  'http-alt': 8080,
};

/** IPVS's default persistence timeout when -p is given without a value. */
const DEFAULT_PERSISTENCE = 300;

type Opt =
  | 'add-service'
  | 'edit-service'
  | 'delete-service'
  | 'add-server'
  | 'edit-server'
  | 'delete-server'
  | 'clear'
  | 'tcp'
  | 'udp'
  | 'sctp'
  | 'fwmark'
  | 'scheduler'
  | 'persistent'
  | 'netmask'
  | 'real-server'
  | 'gatewaying'
  | 'masquerading'
  | 'ipip'
  | 'weight'
  | 'u-threshold'
  | 'l-threshold'
  | 'sched-flags'
  | 'pe'
  | 'ops'
  | 'numeric'
  | 'ipv6'
  | 'tun';

const SHORT: Record<string, Opt> = {
  '-A': 'add-service',
  '-E': 'edit-service',
  '-D': 'delete-service',
  '-a': 'add-server',
  '-e': 'edit-server',
  '-d': 'delete-server',
  '-C': 'clear',
  '-t': 'tcp',
  '-u': 'udp',
  '-f': 'fwmark',
  '-s': 'scheduler',
  '-p': 'persistent',
  '-M': 'netmask',
  '-r': 'real-server',
  '-g': 'gatewaying',
  '-m': 'masquerading',
  '-i': 'ipip',
  '-w': 'weight',
  '-x': 'u-threshold',
  '-y': 'l-threshold',
  '-b': 'sched-flags',
  '-o': 'ops',
  '-n': 'numeric',
  '-6': 'ipv6',
};
const LONG: Record<string, Opt> = {
  '--add-service': 'add-service',
  '--edit-service': 'edit-service',
  '--delete-service': 'delete-service',
  '--add-server': 'add-server',
  '--edit-server': 'edit-server',
  '--delete-server': 'delete-server',
  '--clear': 'clear',
  '--tcp-service': 'tcp',
  '--udp-service': 'udp',
  '--sctp-service': 'sctp',
  '--fwmark-service': 'fwmark',
  '--scheduler': 'scheduler',
  '--persistent': 'persistent',
  '--netmask': 'netmask',
  '--real-server': 'real-server',
  '--gatewaying': 'gatewaying',
  '--masquerading': 'masquerading',
  '--ipip': 'ipip',
  '--weight': 'weight',
  '--u-threshold': 'u-threshold',
  '--l-threshold': 'l-threshold',
  '--sched-flags': 'sched-flags',
  '--pe': 'pe',
  '--ops': 'ops',
  '--numeric': 'numeric',
  '--tun-type': 'tun',
  '--tun-port': 'tun',
  '--tun-nocsum': 'tun',
  '--tun-csum': 'tun',
  '--tun-remcsum': 'tun',
};
const TAKES_VALUE = new Set<Opt>([
  'tcp',
  'udp',
  'sctp',
  'fwmark',
  'scheduler',
  'netmask',
  'real-server',
  'weight',
  'u-threshold',
  'l-threshold',
  'sched-flags',
  'pe',
]);

/**
 * Parses ipvsadm rules: `ipvsadm-save [-n]` / `ipvsadm -S -n` output, or lines of ipvsadm
 * commands (a leading `ipvsadm` is allowed), applied in order like ipvsadm-restore would.
 * Throws ImportError listing every problem, each with its line number.
 */
export function parseIpvsadmRules(text: string, source = 'rules'): ImportResult {
  const problems: string[] = [];
  const warnings: string[] = [];
  const services = new Map<string, ImportedService>();
  const lines = text.split('\n');
  lines.forEach((raw, idx) => {
    const where = `${source}:${idx + 1}`;
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const words = line.split(/\s+/);
    if (words[0] === 'ipvsadm' || words[0].endsWith('/ipvsadm')) words.shift();
    const opts = new Map<Opt, string>();
    let command: Opt | undefined;
    const bad = (msg: string) => problems.push(`${where}: ${msg}`);
    for (let i = 0; i < words.length; i++) {
      let w = words[i];
      let inline: string | undefined;
      if (w.startsWith('--') && w.includes('=')) {
        inline = w.slice(w.indexOf('=') + 1);
        w = w.slice(0, w.indexOf('='));
      }
      const opt = w.startsWith('--') ? LONG[w] : SHORT[w];
      if (!opt) {
        const known = [...Object.keys(SHORT), ...Object.keys(LONG)];
        const guess = w.startsWith('-') ? didYouMean(w, known) : undefined;
        bad(`unknown ipvsadm option "${w}"${guess ? `; did you mean "${guess}"?` : ''}`);
        return;
      }
      if (['add-service', 'edit-service', 'delete-service', 'add-server', 'edit-server', 'delete-server', 'clear'].includes(opt)) {
        if (command) return bad(`two commands on one line (${command}, ${opt})`);
        command = opt;
        continue;
      }
      let value: string | undefined;
      if (TAKES_VALUE.has(opt)) {
        value = inline ?? words[++i];
        if (value === undefined) return bad(`${w} needs a value`);
      } else if (opt === 'persistent') {
        // -p takes an optional timeout.
        value = inline ?? (words[i + 1] !== undefined && /^\d+$/.test(words[i + 1]) ? words[++i] : String(DEFAULT_PERSISTENCE));
      }
      opts.set(opt, value ?? '');
    }
    if (!command) {
      return bad(`not an ipvsadm rule (expected -A, -a, -E, -e, -D, -d or -C; the output of "ipvsadm-save -n" or "ipvsadm -S -n" works)`);
    }
    if (command === 'clear') {
      services.clear();
      return;
    }
    if (opts.has('ipv6')) return bad('IPv6 services (-6) are not supported: lbd balances IPv4');
    if (opts.has('fwmark')) return bad('firewall-mark services (-f) are not supported: lbd matches VIP:port; write one service per VIP:port');
    if (opts.has('sctp')) return bad('SCTP services are not supported: lbd balances TCP and UDP');
    const protocol: Protocol | undefined = opts.has('tcp') ? 'tcp' : opts.has('udp') ? 'udp' : undefined;
    if (!protocol) return bad('no service given (-t VIP:PORT or -u VIP:PORT)');
    const ep = parseEndpoint(opts.get(protocol)!, 'virtual service');
    if (typeof ep === 'string') return bad(ep);
    const key = `${protocol}:${ep.addr}:${ep.port}`;
    const label = `${protocol === 'udp' ? '-u' : '-t'} ${ep.addr}:${ep.port}`;

    if (command === 'add-service' || command === 'edit-service') {
      let svc = services.get(key);
      if (command === 'add-service' && svc) return bad(`service ${label} is added twice`);
      if (command === 'edit-service' && !svc) return bad(`-E ${label}: no such service (add it with -A first)`);
      if (!svc) {
        svc = { protocol, vip: ep.addr, port: ep.port, scheduler: 'wlc', persistence: 0, netmask: '255.255.255.255', reals: [] };
        services.set(key, svc);
      }
      let schedulerOk = true;
      if (opts.has('scheduler')) {
        const s = opts.get('scheduler')!;
        if ((SCHEDULER_NAMES as readonly string[]).includes(s)) {
          // A new scheduler does not inherit the old one's flags (ipvsadm -E sends them anew).
          if (s !== svc.scheduler) delete svc.flags;
          svc.scheduler = s;
        } else {
          schedulerOk = false;
          const guess = didYouMean(s, SCHEDULER_NAMES);
          bad(`scheduler "${s}" is not supported by lbd${guess ? ` (closest: ${guess})` : ''} (supported: ${SCHEDULER_NAMES.join(', ')})`);
        }
      }
      if (opts.has('sched-flags') && schedulerOk) {
        const given = opts.get('sched-flags')!;
        const f = parseSchedFlags(given, svc.scheduler);
        for (const p of f.problems) bad(`-b ${given}: ${p}`);
        if (f.ignored.length) {
          const one = f.ignored.length === 1;
          const only = (FLAGGED_SCHEDULERS as readonly string[]).includes(svc.scheduler) ? '' : ' (only sh and mh take flags)';
          warnings.push(
            `${where}: scheduler flag${one ? '' : 's'} ${f.ignored.join(',')} (-b ${given}) mean${one ? 's' : ''} nothing for scheduler ${svc.scheduler}${only}: ignored`,
          );
        }
        // -b gives the whole set, as ipvsadm sends it.
        if (Object.keys(f.options).length) svc.flags = f.options;
        else delete svc.flags;
      }
      if (opts.has('persistent')) {
        const p = Number(opts.get('persistent'));
        if (!Number.isInteger(p) || p < 1) bad(`invalid persistence timeout "${opts.get('persistent')}"`);
        else svc.persistence = p;
      }
      if (opts.has('netmask')) {
        const m = opts.get('netmask')!;
        const n = parseIPv4(m);
        const inv = n === undefined ? -1 : ~n >>> 0;
        if (n === undefined || (inv & (inv + 1)) !== 0) bad(`invalid netmask "${m}"`);
        else svc.netmask = m;
      }
      if (opts.has('ops')) warnings.push(`${where}: one-packet scheduling (-o) is ignored: lbd schedules each UDP flow`);
      if (opts.has('pe')) warnings.push(`${where}: persistence engine (--pe ${opts.get('pe')}) is ignored`);
      for (const o of ['real-server', 'weight', 'gatewaying'] as const) if (opts.has(o)) warnings.push(`${where}: ${o} on a service line is ignored`);
      return;
    }
    if (command === 'delete-service') {
      if (!services.delete(key)) bad(`-D ${label}: no such service`);
      return;
    }

    // Real servers: -a / -e / -d.
    const svc = services.get(key);
    if (!svc) return bad(`${label}: no such service (a -A line must come first)`);
    if (!opts.has('real-server')) return bad('no real server given (-r ADDRESS[:PORT])');
    const rs = parseEndpoint(opts.get('real-server')!, 'real server', ep.port);
    if (typeof rs === 'string') return bad(rs);
    if (opts.has('masquerading')) {
      return bad(
        `${rs.addr}: masquerading (-m, NAT) is not supported: lbd does Direct Routing only (-g); the real servers need the VIP on lo and answer clients directly`,
      );
    }
    if (opts.has('ipip') || opts.has('tun')) {
      return bad(`${rs.addr}: tunneling (-i, IPIP) is not supported: lbd does Direct Routing only (-g), the real servers must be on the balancer's L2 segment`);
    }
    if (rs.port !== ep.port) {
      warnings.push(
        `${where}: real server port ${rs.port} differs from the service port ${ep.port}: Direct Routing keeps the destination port, so ${rs.addr}:${ep.port} is used`,
      );
    }
    const existing = svc.reals.find((r) => r.address === rs.addr);
    if (command === 'delete-server') {
      if (!existing) return bad(`-d ${label} -r ${rs.addr}: no such real server`);
      svc.reals = svc.reals.filter((r) => r !== existing);
      return;
    }
    let weight = 1;
    if (opts.has('weight')) {
      const w = opts.get('weight')!;
      weight = /^\d+$/.test(w) ? Number(w) : NaN;
      if (!(weight >= 0 && weight <= WEIGHT_MAX)) return bad(`invalid weight "${w}": lbd takes 0-${WEIGHT_MAX}`);
    }
    const thresholds: { u_threshold?: number; l_threshold?: number } = {};
    for (const [opt, key] of [
      ['u-threshold', 'u_threshold'],
      ['l-threshold', 'l_threshold'],
    ] as const) {
      if (!opts.has(opt)) continue;
      const t = opts.get(opt)!;
      const v = /^\d+$/.test(t) ? Number(t) : NaN;
      if (!(v >= 0 && v <= THRESHOLD_MAX)) return bad(`invalid ${opt} "${t}": expected a number of connections 0-${THRESHOLD_MAX}`);
      thresholds[key] = v;
    }
    // As the kernel's ip_vs_add_dest/ip_vs_edit_dest: a lower threshold above the upper one is
    // refused (with no upper threshold, any lower one is).
    const upper = thresholds.u_threshold ?? 0;
    const lower = thresholds.l_threshold ?? 0;
    if (lower > upper) {
      return bad(
        upper
          ? `-y ${lower} is above -x ${upper}: the lower threshold must not exceed the upper one`
          : `-y ${lower} without -x: a lower threshold needs an upper one`,
      );
    }
    // ipvsadm sends a whole real server on -a and -e alike: what a line does not give is the
    // default (weight 1, no thresholds), so -e replaces, as ipvsadm-restore would.
    const real: ImportedReal = { address: rs.addr, port: ep.port, weight };
    if (upper) real.u_threshold = upper;
    if (lower) real.l_threshold = lower;
    if (command === 'add-server') {
      if (existing) return bad(`real server ${rs.addr} is added twice to ${label}`);
      svc.reals.push(real);
    } else {
      if (!existing) return bad(`-e ${label} -r ${rs.addr}: no such real server`);
      svc.reals[svc.reals.indexOf(existing)] = real;
    }
  });
  for (const s of services.values()) {
    if (s.reals.length === 0) {
      problems.push(`${source}: service ${s.protocol === 'udp' ? '-u' : '-t'} ${s.vip}:${s.port} has no real servers: lbd needs at least one (add an -a line)`);
    }
  }
  if (services.size === 0 && problems.length === 0) problems.push(`${source}: no ipvsadm rules found (feed it the output of: ipvsadm-save -n)`);
  if (problems.length) throw new ImportError(problems);
  return { services: [...services.values()], warnings };
}

function parseEndpoint(text: string, what: string, defaultPort?: number): { addr: string; port: number } | string {
  if (text.startsWith('[')) return `${what} ${text}: IPv6 is not supported`;
  const m = /^([^:]+)(?::([^:]+))?$/.exec(text);
  if (!m) return `invalid ${what} "${text}": expected ADDRESS:PORT`;
  if (parseIPv4(m[1]) === undefined) {
    return `${what} "${text}": "${m[1]}" is not an IPv4 address (feed numeric rules: ipvsadm-save -n, or ipvsadm -S -n)`;
  }
  let port: number;
  if (m[2] === undefined) {
    if (defaultPort === undefined) return `${what} "${text}" has no port`;
    port = defaultPort;
  } else if (/^\d+$/.test(m[2])) {
    port = Number(m[2]);
  } else if (PORT_NAMES[m[2]] !== undefined) {
    port = PORT_NAMES[m[2]];
  } else {
    return `${what} "${text}": unknown port name "${m[2]}" (feed numeric rules: ipvsadm-save -n)`;
  }
  if (!(port >= 1 && port <= 65535)) {
    // ipvsadm prints port 0 for a persistent "all ports" service.
    return port === 0 ? `${what} "${text}": port 0 (all ports) services are not supported: write one service per port` : `${what} "${text}": port out of range`;
  }
  return { addr: m[1], port };
}

/** The service names import-ipvsadm gives: tcp-10.0.10.30-80. */
export function importedName(s: { protocol: string; vip: string; port: number }): string {
  return `${s.protocol}-${s.vip}-${s.port}`;
}

/**
 * An lb.yaml for imported rules: interfaces, and the services with only the keys that differ
 * from lbd's defaults spelled out where it helps (scheduler and protocol always).
 */
export function importIpvsadm(text: string, opts: { interface?: string; egress?: string; source?: string } = {}): { yaml: string; warnings: string[] } {
  const { services, warnings } = parseIpvsadmRules(text, opts.source);
  const doc: Record<string, unknown> = {
    interfaces: opts.egress ? { capture: opts.interface ?? 'eth0', egress: opts.egress } : { capture: opts.interface ?? 'eth0' },
    services: services.map((s) => {
      const out: Record<string, unknown> = { name: importedName(s), vip: s.vip, port: s.port, protocol: s.protocol, scheduler: s.scheduler };
      // -b: the config keys of the scheduler's flags (sh_port, mh_fallback, …).
      if (s.flags?.fallback) out[`${s.scheduler}_fallback`] = true;
      if (s.flags?.port) out[`${s.scheduler}_port`] = true;
      if (s.persistence > 0) {
        out.persistence = s.persistence;
        if (s.netmask !== '255.255.255.255') out.persistence_netmask = s.netmask;
      }
      out.real_servers = s.reals.map((r) => ({
        address: r.address,
        weight: r.weight,
        ...(r.u_threshold ? { u_threshold: r.u_threshold } : {}),
        ...(r.l_threshold ? { l_threshold: r.l_threshold } : {}),
      }));
      return out;
    }),
  };
  let yaml = stringify(doc, { lineWidth: 0 });
  const note = opts.interface
    ? '# the interface VIP traffic arrives on'
    : '# FILL IN: the interface VIP traffic arrives on (or run: lbd import-ipvsadm --interface IF)';
  yaml = yaml.replace(/^( {2}capture: .*)$/m, `$1  ${note}`);
  const header = [
    '# lb.yaml generated by `lbd import-ipvsadm` from ipvsadm rules (Direct Routing, like ipvsadm -g).',
    '# Check it with: lbd check --config lb.yaml   Run it with: lbd --config lb.yaml',
    '# Real-server MACs are resolved by ARP on the egress interface; health checks: see docs/health.md.',
    '',
  ].join('\n');
  if (!opts.interface) warnings.unshift('interfaces.capture is a placeholder (eth0): set it to the interface VIP traffic arrives on, or pass --interface IF');
  return { yaml: header + yaml, warnings };
}
