/**
 * What the field table (./fields.ts) cannot say by itself: rules that relate several fields
 * (duplicates, l_threshold ≤ u_threshold, real-server port = service port, timeout ≤ interval,
 * type-dependent health-check keys, nothing may be the VIP), the string shorthands of real and
 * sorry servers, and the assembly of each section into its normalized config type.
 *
 * Each rule reports at the node the original problem is best shown at and marks its section
 * failed (`ok = false`); values of invalid fields are undefined here (already reported).
 */
import type { Scalar } from 'yaml';
import type { ItemRule } from './fields';
import { ipv4 } from './readers';
import { DEFAULTS, serviceKey, type AnnounceConfig, type Config, type HealthCheckConfig, type RealServerConfig, type ServiceConfig } from './types';
import type { SectionResult, Validator, YNode } from './validate';
import { CONSISTENT_SCHEDULERS, MH_TABLE_SIZES } from '../scheduler/options';
import { instanceNames } from '../host/instance';
import { ANNOUNCE_TABLE_MAX, PORT_MAX, PORT_MIN, ipv4ToString, notUnicast, parseIPv4, parseListen } from './values';

type Values = Record<string, unknown>;

// --- top level ---------------------------------------------------------------------------------

export function buildInterfaces(_v: Validator, r: SectionResult): { capture?: string; egress?: string } {
  const capture = r.get('capture') as string | undefined;
  return { capture, egress: r.has('egress') ? (r.get('egress') as string | undefined) : capture };
}

export function buildMetrics(_v: Validator, r: SectionResult): unknown {
  return r.values.listen ?? parseListen(r.default('listen') as string);
}

/** The admin section; group only when written (unset: the daemon's own primary group). */
export function buildAdmin(_v: Validator, r: SectionResult): Config['admin'] {
  const group = r.values.group as string | number | undefined;
  return { socket: r.get('socket') as string, ...(group !== undefined ? { group } : {}) };
}

export function buildConfig(v: Validator, r: SectionResult): Config | undefined {
  const interfaces = r.values.interfaces as { capture?: string; egress?: string } | undefined;
  if (v.issues.length > 0 || interfaces?.capture === undefined || interfaces.egress === undefined) return undefined;
  // A section left out entirely has every default.
  const section = <T>(key: string): T => (r.values[key] ?? v.absent(r.spec.fields.find((f) => f.key === key)!.section!, r)) as T;
  const onRemove = r.values.on_remove as Config['on_remove'];
  const expireNodest = r.values.expire_nodest_conn as boolean | undefined;
  const stateFile = r.values.state_file as string | undefined;
  const announce = r.values.announce as Partial<AnnounceConfig> | undefined;
  return {
    local_access: r.get('local_access') as boolean,
    file: v.file,
    interfaces: { capture: interfaces.capture, egress: interfaces.egress },
    metrics: section('metrics'),
    log: section('log'),
    dataplane: r.get('dataplane') as Config['dataplane'],
    busy_poll: r.get('busy_poll') as number,
    connection_table: section('connection_table'),
    timeouts: section('timeouts'),
    services: r.values.services as ServiceConfig[],
    admin: section('admin'),
    ...(onRemove !== undefined ? { on_remove: onRemove } : {}),
    conn_reuse_mode: r.get('conn_reuse_mode') as number,
    ...(expireNodest !== undefined ? { expire_nodest_conn: expireNodest } : {}),
    ...(stateFile !== undefined ? { state_file: stateFile } : {}),
    ...(announce !== undefined
      ? { announce: { ...announce, interface: announce.interface ?? instanceNames(interfaces.capture).announceInterface } as AnnounceConfig }
      : {}),
  };
}

// --- services ----------------------------------------------------------------------------------

/** Service names are unique, and so are VIP:port/protocol endpoints (checked on the valid parts). */
export function uniqueServices(): ItemRule {
  const byName = new Map<string, number>();
  const byEndpoint = new Map<string, number>();
  return (v, s, i) => {
    const name = s.values.name as string | undefined;
    const nameNode = s.entries.get('name')?.value;
    if (name !== undefined && nameNode) {
      const prev = byName.get(name);
      if (prev !== undefined) v.report(nameNode, `${s.path}.name`, `duplicate service name "${name}" (also services[${prev}])`);
      else byName.set(name, i);
    }
    const vip = s.get('vip');
    const port = s.get('port');
    const protocol = s.get('protocol');
    const vipNode = s.entries.get('vip')?.value;
    if (vip !== undefined && port !== undefined && protocol !== undefined && vipNode) {
      const ep = serviceKey({ vip: vip as string, port: port as number, protocol: protocol as string });
      const prev = byEndpoint.get(ep);
      if (prev !== undefined) v.report(vipNode, s.path, `duplicates services[${prev}] (${ep})`);
      else byEndpoint.set(ep, i);
    }
  };
}

/**
 * Scheduler options belong to their scheduler (mh_* to mh, sh_* to sh, as ipvsadm's -b flags
 * do), the Maglev table's size is one of the primes, and on_miss: hash needs a scheduler whose
 * choice every balancer with the same config repeats.
 */
export function schedulerRules(v: Validator, r: SectionResult): void {
  if (r.invalid.has('scheduler')) return;
  const scheduler = r.get('scheduler') as string;
  for (const [prefix, owner] of [
    ['mh_', 'mh'],
    ['sh_', 'sh'],
  ] as const) {
    for (const key of r.entries.keys()) {
      if (!key.startsWith(prefix) || scheduler === owner) continue;
      v.report(r.entries.get(key)!.key, `${r.path}.${key}`, `"${key}" applies to scheduler ${owner} only (this service's scheduler is ${scheduler})`);
      r.ok = false;
    }
  }
  const size = r.values.mh_table_size as number | undefined;
  if (size !== undefined && !(MH_TABLE_SIZES as readonly number[]).includes(size)) {
    v.report(r.at('mh_table_size'), `${r.path}.mh_table_size`, `mh_table_size must be one of the primes ${MH_TABLE_SIZES.join(', ')}, got ${size}`);
    r.ok = false;
  }
  if (r.values.on_miss === 'hash' && !(CONSISTENT_SCHEDULERS as readonly string[]).includes(scheduler)) {
    v.report(
      r.at('on_miss'),
      `${r.path}.on_miss`,
      `on_miss: hash needs a consistent scheduler (${CONSISTENT_SCHEDULERS.join(' or ')}), so that every balancer picks the same real server for a flow; this service's scheduler is ${scheduler}`,
    );
    r.ok = false;
  }
}

/** The routing tables the kernel uses itself: routes to a VIP there would take the balancer's own traffic into the TAP. */
const RESERVED_TABLES: Record<number, string> = { 253: 'default', 254: 'main', 255: 'local' };

/** announce.hang_timeout's least: three of the keeper's 100 ms heartbeats. */
const HANG_TIMEOUT_MIN = 0.3;

export function announceRules(v: Validator, r: SectionResult): void {
  const hang = r.values.hang_timeout as number | undefined;
  if (hang !== undefined && hang < HANG_TIMEOUT_MIN) {
    v.report(
      r.at('hang_timeout'),
      `${r.path}.hang_timeout`,
      `hang_timeout must be at least 300ms (lbd sends its keeper a heartbeat every 100 ms), got ${Math.round(hang * 1000)}ms`,
    );
    r.ok = false;
  }
  const table = r.values.table as number | undefined;
  if (table !== undefined && RESERVED_TABLES[table] !== undefined) {
    v.report(
      r.at('table'),
      `${r.path}.table`,
      `table ${table} is the kernel's ${RESERVED_TABLES[table]} table: a route to a VIP there would send the balancer's own traffic into the announce interface; use a table of its own (1-252 or 256-${ANNOUNCE_TABLE_MAX}, default ${DEFAULTS.announceTable})`,
    );
    r.ok = false;
  }
}

export function buildService(_v: Validator, r: SectionResult): ServiceConfig | undefined {
  const { name, vip, port } = r.values as { name?: string; vip?: string; port?: number };
  const protocol = r.get('protocol') as ServiceConfig['protocol'] | undefined;
  if (!r.ok || name === undefined || vip === undefined || port === undefined || protocol === undefined) return undefined;
  const s: ServiceConfig = {
    name,
    vip,
    port,
    protocol,
    scheduler: r.get('scheduler') as string,
    persistence: r.get('persistence') as number,
    persistence_netmask: r.get('persistence_netmask') as string,
    real_servers: r.values.real_servers as RealServerConfig[],
  };
  // The keys without a default and not required (fields.ts): present only when written.
  for (const f of r.spec.fields) {
    if (f.default !== undefined || f.required !== undefined || r.values[f.key] === undefined) continue;
    (s as unknown as Values)[f.key] = r.values[f.key];
  }
  return s;
}

// --- real servers ------------------------------------------------------------------------------

/** "10.0.10.40" or "10.0.10.40:80" written instead of a real server mapping. */
export function realServerShorthand(v: Validator, r: SectionResult): void {
  const node = r.node as Scalar<string>;
  const m = /^([^:]*)(?::(.*))?$/.exec(node.value)!;
  r.entries.set('address', { key: node, value: node });
  r.record('address', shorthandAddress(v, node, m[1], `${r.path}.address`));
  if (m[2] !== undefined) {
    r.entries.set('port', { key: node, value: node });
    const p = /^\d+$/.test(m[2]) ? Number(m[2]) : NaN;
    if (p >= PORT_MIN && p <= PORT_MAX) {
      r.record('port', p);
    } else {
      v.report(node, `${r.path}.port`, `expected "address" or "address:port" with a port 1-65535, got ${JSON.stringify(node.value)}`);
      r.record('port', undefined);
    }
  }
}

function shorthandAddress(v: Validator, node: Scalar, text: string, path: string): string | undefined {
  const n = parseIPv4(text);
  if (n === undefined) {
    v.report(
      node,
      path,
      `invalid IPv4 address "${text}": expected a real server "address" or "address:port" with a dotted quad of four numbers 0-255 (e.g. 10.0.10.40 or 10.0.10.40:80)`,
    );
    return undefined;
  }
  const why = notUnicast(n);
  if (why) {
    v.report(node, path, `${text} is ${why}; a real server must be a unicast IPv4 address`);
    return undefined;
  }
  return ipv4ToString(n);
}

/**
 * After l_threshold (when the server's port, weight, mac and thresholds are valid): as the
 * kernel's ip_vs_add_dest, a lower threshold above the upper one is refused (with no upper
 * threshold, any lower one is: nothing would ever overload the server).
 */
export function thresholdRule(v: Validator, r: SectionResult): void {
  if (['port', 'weight', 'mac', 'u_threshold', 'l_threshold'].some((k) => r.invalid.has(k))) return;
  const l = (r.values.l_threshold as number | undefined) ?? 0;
  const u = r.values.u_threshold as number | undefined;
  if (l <= (u ?? 0)) return;
  v.report(
    r.at('l_threshold'),
    `${r.path}.l_threshold`,
    u
      ? `l_threshold (${l}) must not exceed u_threshold (${u}): the server takes new flows again once its connections fall below l_threshold`
      : `l_threshold (${l}) needs a u_threshold: without an upper threshold the server is never overloaded`,
  );
  r.ok = false;
}

/** A real server is not the VIP, and its port is the service port (Direct Routing keeps ports). */
export function realServerRules(v: Validator, r: SectionResult): void {
  const service = r.up('service');
  const vip = service?.get('vip');
  const servicePort = service?.get('port');
  const address = r.values.address;
  if (address !== undefined && vip !== undefined && address === vip) {
    v.report(
      r.entries.get('address')?.value,
      `${r.path}.address`,
      `the real server address must not be the VIP ${vip} (the VIP lives on the real servers' loopback; list their own addresses)`,
    );
    r.ok = false;
  }
  const port = r.values.port;
  if (port !== undefined && servicePort !== undefined && port !== servicePort) {
    v.report(
      r.at('port'),
      `${r.path}.port`,
      `Direct Routing cannot change the destination port: real server port ${port} must equal the service port ${servicePort}`,
    );
    r.ok = false;
  }
}

/** Real servers of a service are unique by address. */
export function uniqueRealServers(): ItemRule {
  const seen = new Map<string, number>();
  return (v, rs, j) => {
    const address = rs.values.address as string | undefined;
    const node = rs.entries.get('address')?.value;
    if (address === undefined || !node) return;
    const prev = seen.get(address);
    if (prev !== undefined) {
      v.report(node, `${rs.path}.address`, `duplicate real server ${address} (also real_servers[${prev}])`);
      rs.ok = false;
    } else {
      seen.set(address, j);
    }
  };
}

export function buildRealServer(_v: Validator, r: SectionResult): RealServerConfig | undefined {
  const address = r.values.address as string | undefined;
  if (!r.ok || address === undefined) return undefined;
  const servicePort = r.up('service')?.get('port') as number | undefined;
  const config: RealServerConfig = { address, port: servicePort ?? (r.values.port as number | undefined) ?? 0, weight: r.get('weight') as number };
  const { mac, u_threshold, l_threshold, health_check } = r.values as Partial<RealServerConfig>;
  if (mac !== undefined) config.mac = mac;
  if (u_threshold) config.u_threshold = u_threshold;
  if (l_threshold) config.l_threshold = l_threshold;
  if (health_check !== undefined) config.health_check = health_check;
  return config;
}

// --- health checks -----------------------------------------------------------------------------

/**
 * Type-dependent keys (http-only ones on another type; the vip check needs a tcp service and
 * the service port) and timeout ≤ interval, on the values in effect: the mapping's own, else
 * (for a real server's override) the service's check, else the defaults.
 */
export function healthCheckRules(v: Validator, r: SectionResult): void {
  const service = r.up('service');
  const servicePort = service?.get('port');
  const protocol = service?.get('protocol');
  const out = r.values as Partial<HealthCheckConfig>;
  const base = r.base as HealthCheckConfig | undefined;
  const type = out.type ?? base?.type;
  if (type !== undefined) {
    for (const f of r.spec.fields) {
      const w = r.entries.get(f.key);
      if (!f.onlyWhen || !w || type === f.onlyWhen.equals) continue;
      v.report(w.key, `${r.path}.${f.key}`, `"${f.key}" applies to ${f.onlyWhen.equals} checks only (this check is ${f.onlyWhen.key} ${type})`);
      r.ok = false;
    }
  }
  if (type === 'vip') {
    if (protocol === 'udp') {
      v.report(r.entries.get('type')?.value ?? r.here, `${r.path}.type`, 'the vip check probes with a TCP SYN: it needs a tcp service');
      r.ok = false;
    }
    const pt = r.entries.get('port');
    if (pt && servicePort !== undefined && out.port !== undefined && out.port !== servicePort) {
      v.report(
        pt.value,
        `${r.path}.port`,
        `the vip check probes the VIP on the service port ${servicePort} (Direct Routing cannot change it), got ${out.port}`,
        pt.key,
      );
      r.ok = false;
    }
  }
  const { interval, timeout } = timing(r, base);
  if (timeout > interval) {
    const at = r.entries.get('timeout') ?? r.entries.get('interval');
    v.report(
      at?.value ?? at?.key,
      `${r.path}.timeout`,
      `timeout (${timeout}s) must not exceed interval (${interval}s): a check must end before the next one starts`,
      r.here,
    );
    r.ok = false;
  }
}

/** Interval and timeout in effect; the default timeout is capped at the interval. */
function timing(r: SectionResult, base: HealthCheckConfig | undefined): { interval: number; timeout: number } {
  const out = r.values as Partial<HealthCheckConfig>;
  const interval = out.interval ?? base?.interval ?? (r.default('interval') as number);
  const timeout = out.timeout ?? base?.timeout ?? Math.min(r.default('timeout') as number, interval);
  return { interval, timeout };
}

/** A service's check with every default filled in; a real server's override as written. */
export function buildHealthCheck(_v: Validator, r: SectionResult): Partial<HealthCheckConfig> | undefined {
  if (!r.ok) return undefined;
  const out = r.values as Partial<HealthCheckConfig>;
  if (r.partial) return { ...out };
  const { interval, timeout } = timing(r, undefined);
  const full: HealthCheckConfig = {
    type: out.type!,
    interval,
    timeout,
    rise: out.rise ?? (r.default('rise') as number),
    fall: out.fall ?? (r.default('fall') as number),
    path: out.path ?? (r.default('path') as string),
    expect_status: out.expect_status ?? (r.default('expect_status') as string),
    port: out.port ?? (r.up('service')?.get('port') as number | undefined) ?? 0,
  };
  if (out.host !== undefined) full.host = out.host;
  if (out.expect_body !== undefined) full.expect_body = out.expect_body;
  return full;
}

// --- sorry server ------------------------------------------------------------------------------

/** An address written instead of the sorry_server mapping. */
export function sorryServerShorthand(v: Validator, r: SectionResult): void {
  const node = r.node as YNode;
  r.entries.set('address', { key: node, value: node });
  r.record('address', ipv4(v, node, `${r.path}.address`, 'a sorry server'));
}

export function sorryServerRules(v: Validator, r: SectionResult): void {
  const vip = r.up('service')?.get('vip');
  const address = r.values.address;
  if (address !== undefined && vip !== undefined && address === vip) {
    v.report(
      r.node,
      `${r.path}.address`,
      `the sorry server address must not be the VIP ${vip} (list its own address; it carries the VIP on its loopback like a real server)`,
      r.key,
    );
    r.ok = false;
  }
}

export function buildSorryServer(_v: Validator, r: SectionResult): ServiceConfig['sorry_server'] {
  const { address, mac } = r.values as { address?: string; mac?: string };
  if (!r.ok || address === undefined) return undefined;
  return mac !== undefined ? { address, mac } : { address };
}
