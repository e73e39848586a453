import { serviceKey, type Config, type RealServerConfig, type ServiceConfig } from '../config/types';

/**
 * Reconciling desired against running state, like Seesaw: plan() compares two configs and
 * lists the smallest set of actions that turns one into the other. Unchanged → no action.
 * The daemon applies the plan; the connection table is never touched, so established
 * flows survive every reload.
 */
export type Action =
  | { kind: 'restart-required'; field: string; from: unknown; to: unknown }
  | { kind: 'log-level'; level: Config['log']['level'] }
  | { kind: 'timeouts'; timeouts: Config['timeouts'] }
  | { kind: 'defense'; table: Config['connection_table'] }
  | { kind: 'busy-poll'; busyPoll: number }
  | { kind: 'metrics-listen'; listen: string }
  | { kind: 'conn-reuse-mode'; mode: number }
  | { kind: 'expire-nodest-conn'; on: boolean }
  | { kind: 'service-add'; service: ServiceConfig }
  | { kind: 'service-remove'; key: string; name: string }
  | { kind: 'service-update'; key: string; service: ServiceConfig; fields: string[] }
  | { kind: 'real-add'; key: string; real: RealServerConfig }
  | { kind: 'real-remove'; key: string; address: string }
  | { kind: 'real-update'; key: string; real: RealServerConfig; fields: string[] };

/** Fields that cannot change under a running capture: a reload that changes them is refused. */
const RESTART_FIELDS: [string, (c: Config) => unknown][] = [
  ['interfaces.capture', (c) => c.interfaces.capture],
  ['interfaces.egress', (c) => c.interfaces.egress],
  ['connection_table.size', (c) => c.connection_table.size],
  ['dataplane', (c) => c.dataplane],
  ['admin.socket', (c) => c.admin?.socket],
  // The socket's group is set when it is made (chown), at start.
  ['admin.group', (c) => c.admin?.group],
  ['state_file', (c) => c.state_file],
  // Which interface and table the announced routes use (and whether there are any): the
  // routing daemon's config names them; the hang timeout is its keeper's, given at its start.
  // The stop's delays are read when they are used.
  ['announce', (c) => (c.announce ? `${c.announce.interface}, table ${c.announce.table}, hang_timeout ${c.announce.hang_timeout}s` : 'none')],
];

/** The key paths a reload cannot change (lb.yaml(5) says so of each). */
export const RESTART_KEY_PATHS: readonly string[] = [
  ...RESTART_FIELDS.map(([k]) => k).filter((k) => k !== 'announce'),
  'announce',
  'announce.interface',
  'announce.table',
  'announce.hang_timeout',
];

/** Service fields compared for 'service-update' (identity and real servers are handled apart). */
const SERVICE_FIELDS = ['name', 'scheduler', 'persistence', 'persistence_netmask'] as const;
const REAL_FIELDS = ['weight', 'mac'] as const;

export function plan(running: Config, desired: Config): Action[] {
  const actions: Action[] = [];
  for (const [field, get] of RESTART_FIELDS) {
    if (get(running) !== get(desired)) actions.push({ kind: 'restart-required', field, from: get(running), to: get(desired) });
  }
  if (running.log.level !== desired.log.level) actions.push({ kind: 'log-level', level: desired.log.level });
  const t0 = running.timeouts;
  const t1 = desired.timeouts;
  if (t0.tcp !== t1.tcp || t0.tcpfin !== t1.tcpfin || t0.udp !== t1.udp) actions.push({ kind: 'timeouts', timeouts: t1 });
  const d0 = running.connection_table;
  const d1 = desired.connection_table;
  if (
    d0.syn_flood_defense !== d1.syn_flood_defense ||
    d0.defense_threshold !== d1.defense_threshold ||
    d0.defense_syn_recv_timeout !== d1.defense_syn_recv_timeout
  ) {
    actions.push({ kind: 'defense', table: d1 });
  }
  if ((running.busy_poll ?? 0) !== (desired.busy_poll ?? 0)) actions.push({ kind: 'busy-poll', busyPoll: desired.busy_poll ?? 0 });
  if (running.metrics.listen !== desired.metrics.listen) actions.push({ kind: 'metrics-listen', listen: desired.metrics.listen });
  // The daemon sets every service's effective mode again (a service's own conn_reuse_mode wins).
  if (running.conn_reuse_mode !== desired.conn_reuse_mode) actions.push({ kind: 'conn-reuse-mode', mode: desired.conn_reuse_mode });
  if ((running.expire_nodest_conn ?? false) !== (desired.expire_nodest_conn ?? false)) {
    actions.push({ kind: 'expire-nodest-conn', on: desired.expire_nodest_conn ?? false });
  }

  const before = new Map(running.services.map((s) => [serviceKey(s), s]));
  const after = new Map(desired.services.map((s) => [serviceKey(s), s]));
  for (const [key, s] of before) if (!after.has(key)) actions.push({ kind: 'service-remove', key, name: s.name });
  for (const [key, s] of after) {
    const old = before.get(key);
    if (!old) {
      actions.push({ kind: 'service-add', service: s });
      continue;
    }
    const fields = SERVICE_FIELDS.filter((f) => !sameValue(old[f], s[f]));
    const extra = serviceExtraChanges(old, s);
    if (fields.length || extra.length) actions.push({ kind: 'service-update', key, service: s, fields: [...fields, ...extra] });
    const oldReals = new Map(old.real_servers.map((r) => [r.address, r]));
    const newReals = new Map(s.real_servers.map((r) => [r.address, r]));
    for (const [addr] of oldReals) if (!newReals.has(addr)) actions.push({ kind: 'real-remove', key, address: addr });
    for (const [addr, r] of newReals) {
      const o = oldReals.get(addr);
      if (!o) actions.push({ kind: 'real-add', key, real: r });
      else {
        const changed = REAL_FIELDS.filter((f) => !sameValue(o[f], r[f]));
        const more = realExtraChanges(o, r);
        if (changed.length || more.length) actions.push({ kind: 'real-update', key, real: r, fields: [...changed, ...more] });
      }
    }
  }
  return actions;
}

/**
 * Other service-level keys (added by later features such as health checks) compared as
 * JSON: any difference is a 'service-update' naming the key.
 */
function serviceExtraChanges(a: ServiceConfig, b: ServiceConfig): string[] {
  const known = new Set<string>(['vip', 'port', 'protocol', 'real_servers', ...SERVICE_FIELDS]);
  return diffKeys(a as unknown as Record<string, unknown>, b as unknown as Record<string, unknown>, known);
}

function realExtraChanges(a: RealServerConfig, b: RealServerConfig): string[] {
  const known = new Set<string>(['address', 'port', ...REAL_FIELDS]);
  return diffKeys(a as unknown as Record<string, unknown>, b as unknown as Record<string, unknown>, known);
}

function diffKeys(a: Record<string, unknown>, b: Record<string, unknown>, skip: Set<string>): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].filter((k) => !skip.has(k) && !sameValue(a[k], b[k])).sort();
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** One line per action, for logs and for `lbd reload`'s answer. */
export function describeAction(a: Action): string {
  switch (a.kind) {
    case 'restart-required':
      return `${a.field} changed (${String(a.from)} → ${String(a.to)}): needs a restart`;
    case 'log-level':
      return `log level → ${a.level}`;
    case 'timeouts':
      return `timeouts → tcp ${a.timeouts.tcp}s tcpfin ${a.timeouts.tcpfin}s udp ${a.timeouts.udp}s`;
    case 'defense':
      return `SYN-flood defense → ${a.table.syn_flood_defense}, threshold ${a.table.defense_threshold}%, SYN_RECV ${a.table.defense_syn_recv_timeout}s`;
    case 'busy-poll':
      return `busy_poll → ${Math.round(a.busyPoll * 1e6)}us`;
    case 'metrics-listen':
      return `metrics listen → ${a.listen}`;
    case 'conn-reuse-mode':
      return `conn_reuse_mode → ${a.mode} (services without their own)`;
    case 'expire-nodest-conn':
      return `expire_nodest_conn → ${a.on} (on_remove of services without their own: ${a.on ? 'drop' : 'drain'})`;
    case 'service-add':
      return `add service ${a.service.name} ${serviceKey(a.service)}`;
    case 'service-remove':
      return `remove service ${a.name} ${a.key}`;
    case 'service-update':
      return `update service ${a.service.name} ${a.key}: ${a.fields.join(', ')}`;
    case 'real-add':
      return `add real server ${a.real.address}:${a.real.port} to ${a.key} (weight ${a.real.weight})`;
    case 'real-remove':
      return `remove real server ${a.address} from ${a.key} (drain)`;
    case 'real-update':
      return `update real server ${a.real.address} of ${a.key}: ${a.fields.join(', ')}`;
  }
}
