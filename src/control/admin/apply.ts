/**
 * Runtime changes (`lbd server …`, `lbd service …`) turned into config: the desired config is the
 * running one with the change made, validated exactly like a file, so that every change goes
 * through Daemon.apply() like a reload and `lbd save` is always formatConfig(daemon.running).
 * Also the words of the answer: one line per reconcile action.
 */
import { formatConfig, parseConfig } from '../../config/load';
import { parseDuration, parseIPv4, parseMac, THRESHOLD_MAX, WEIGHT_MAX } from '../../config/values';
import { didYouMean } from '../../config/suggest';
import { Config, DEFAULTS, OnMiss, OnRemove, RealServerConfig, ServiceConfig, serviceKey } from '../../config/types';
import { ConfigError } from '../../errors';
import { SCHEDULER_NAMES } from '../../scheduler/index';
import { flagsOf, parseSchedFlags, SCHED_FLAG_KEYS } from '../ipvsadm';
import { Action, describeAction } from '../reconcile';
import { AdminError, Change } from './protocol';
import { resolveServiceRef } from './service-ref';

// Resolving SERVICE and ADDRESS arguments against a config.

function serviceLabel(s: ServiceConfig): string {
  return `${s.name} (${serviceKey(s)})`;
}

/** SERVICE against the running config (see resolveServiceRef). */
function resolveService(cfg: Config, ref: string): ServiceConfig {
  return resolveServiceRef(cfg.services, ref, serviceKey);
}

/** ADDRESS is IPv4 or IPv4:PORT; Direct Routing needs PORT = the service port. */
function parseAddress(text: string, servicePort: number | undefined, what = 'real server'): string {
  const m = /^([^:]+)(?::(\d+))?$/.exec(text.trim());
  const n = m ? parseIPv4(m[1]) : undefined;
  if (!m || n === undefined)
    throw new AdminError('E_USAGE', `invalid ${what} address "${text}": expected an IPv4 address such as 10.0.10.40 (or 10.0.10.40:PORT)`);
  if (m[2] !== undefined && servicePort !== undefined && Number(m[2]) !== servicePort) {
    throw new AdminError('E_USAGE', `Direct Routing cannot change the destination port: ${text} must use the service port ${servicePort}`);
  }
  return m[1];
}

function findReal(s: ServiceConfig, text: string): RealServerConfig {
  const address = parseAddress(text, s.port);
  const r = s.real_servers.find((x) => x.address === address);
  if (r) return r;
  const list = s.real_servers.map((x) => x.address);
  const guess = didYouMean(address, list);
  const hint = guess !== undefined ? `; did you mean ${guess}?` : '';
  throw new AdminError('E_NO_REAL', `${address} is not a real server of ${serviceLabel(s)}${hint} (real servers: ${list.join(', ')})`);
}

function parseWeight(w: unknown): number {
  const n = typeof w === 'number' ? w : typeof w === 'string' && /^\d+$/.test(w) ? Number(w) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > WEIGHT_MAX)
    throw new AdminError('E_USAGE', `invalid weight ${JSON.stringify(w)}: expected an integer 0-${WEIGHT_MAX}`);
  return n;
}

function thresholdArg(v: unknown, name: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > THRESHOLD_MAX)
    throw new AdminError('E_USAGE', `invalid ${name} ${JSON.stringify(v)}: expected an integer 0-${THRESHOLD_MAX} (0 = none)`);
  return n;
}

/**
 * Sets (or with 0 removes) a real server's connection thresholds; absent keys stay as they are,
 * except that removing the upper threshold removes the lower one with it (alone it means nothing).
 */
function setThresholds(r: RealServerConfig, c: { u_threshold?: number; l_threshold?: number }): void {
  for (const k of ['u_threshold', 'l_threshold'] as const) {
    if (c[k] === undefined) continue;
    const v = thresholdArg(c[k], k);
    if (v) r[k] = v;
    else delete r[k];
  }
  if (c.u_threshold !== undefined && !r.u_threshold && c.l_threshold === undefined) delete r.l_threshold;
  if (c.u_threshold !== undefined && c.l_threshold === undefined && r.u_threshold && (r.l_threshold ?? 0) > r.u_threshold) {
    throw new AdminError(
      'E_USAGE',
      `the real server's l_threshold ${r.l_threshold} is above the new u_threshold ${r.u_threshold}: give --l-threshold too (at most ${r.u_threshold}, or 0 for ¾ of it)`,
    );
  }
}

function macArg(m: string): string | undefined {
  if (m === 'auto' || m === 'arp' || m === '') return undefined;
  const mac = parseMac(m);
  if (!mac) throw new AdminError('E_USAGE', `invalid MAC address "${m}": expected six hex bytes like 02:00:00:00:01:11 (or "auto" to resolve it by ARP)`);
  return mac;
}

function schedulerArg(s: string): string {
  if ((SCHEDULER_NAMES as readonly string[]).includes(s)) return s;
  const guess = didYouMean(s, SCHEDULER_NAMES);
  throw new AdminError('E_USAGE', `unknown scheduler "${s}"${guess ? `; did you mean "${guess}"?` : ''} (${SCHEDULER_NAMES.join(', ')})`);
}

/**
 * ipvsadm's -b for the service's scheduler: sets the config keys of the flags given (sh_port,
 * mh_fallback, …) and clears the others; "" (or "none") clears them all. Refused with E_USAGE,
 * naming what the scheduler takes: another scheduler's flag, an unknown name, and a flag that
 * means nothing for it (flag-3, any flag of a scheduler other than sh and mh).
 */
function setSchedFlags(s: ServiceConfig, list: string): void {
  for (const k of SCHED_FLAG_KEYS) delete s[k];
  if (list.trim() === '' || list.trim() === 'none') return;
  const f = parseSchedFlags(list.trim(), s.scheduler);
  const problems = [
    ...f.problems,
    ...f.ignored.map((n) => `scheduler flag "${n}" means nothing for scheduler ${s.scheduler} (${s.scheduler} takes ${flagsOf(s.scheduler)})`),
  ];
  if (problems.length) throw new AdminError('E_USAGE', `invalid --sched-flags "${list}": ${problems.join('; ')}`);
  const scheduler = s.scheduler as 'mh' | 'sh';
  if (f.options.fallback) s[`${scheduler}_fallback`] = true;
  if (f.options.port) s[`${scheduler}_port`] = true;
}

/** A new scheduler does not keep the old one's options (its flags, mh's table size), as ipvsadm -E sends them anew. */
function setScheduler(s: ServiceConfig, scheduler: string): void {
  if (scheduler === s.scheduler) return;
  for (const k of [...SCHED_FLAG_KEYS, 'mh_table_size'] as const) if (k.startsWith(`${s.scheduler}_`)) delete s[k];
  s.scheduler = scheduler;
}

function persistenceArg(p: string | number): number {
  const v = parseDuration(p);
  if (v === undefined) throw new AdminError('E_USAGE', `invalid persistence ${JSON.stringify(p)}: expected a duration (e.g. 300, 5m) or 0 for off`);
  return v;
}

function onMissArg(v: string): OnMiss {
  if (v === 'drop' || v === 'hash') return v;
  throw new AdminError('E_USAGE', `invalid on_miss "${v}" (drop, hash)`);
}

function onRemoveArg(v: string): OnRemove {
  if (v === 'drain' || v === 'drop') return v;
  throw new AdminError('E_USAGE', `invalid on_remove "${v}" (drain, drop)`);
}

function netmaskArg(m: string): string {
  const n = parseIPv4(m);
  const inv = n === undefined ? -1 : ~n >>> 0;
  if (n === undefined || (inv & (inv + 1)) !== 0)
    throw new AdminError('E_USAGE', `invalid netmask "${m}": expected a contiguous IPv4 netmask such as 255.255.255.0`);
  return m;
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/**
 * The desired config after one runtime change: the running config with the change made,
 * validated exactly like a file (a change that `lbd check` would refuse is refused).
 * Pure: does not touch the daemon.
 */
export function applyChange(running: Config, c: Change): Config {
  const cfg = clone(running);
  cfg.file = running.file;
  switch (c.op) {
    case 'server-add': {
      const s = resolveService(cfg, c.service);
      const address = parseAddress(c.address, s.port);
      if (s.real_servers.some((r) => r.address === address)) {
        throw new AdminError(
          'E_EXISTS',
          `${address} is already a real server of ${serviceLabel(s)} (change it with: lbd server edit ${s.name} ${address} --weight N)`,
        );
      }
      const r: RealServerConfig = { address, port: s.port, weight: c.weight === undefined ? DEFAULTS.weight : parseWeight(c.weight) };
      const mac = c.mac === undefined ? undefined : macArg(c.mac);
      if (mac) r.mac = mac;
      setThresholds(r, c);
      s.real_servers.push(r);
      break;
    }
    case 'server-edit': {
      const s = resolveService(cfg, c.service);
      const r = findReal(s, c.address);
      if (c.weight === undefined && c.mac === undefined && c.u_threshold === undefined && c.l_threshold === undefined) {
        throw new AdminError('E_USAGE', 'lbd server edit: nothing to change (give --weight N, --mac MAC, --u-threshold N and/or --l-threshold N)');
      }
      if (c.weight !== undefined) r.weight = parseWeight(c.weight);
      setThresholds(r, c);
      if (c.mac !== undefined) {
        const mac = macArg(c.mac);
        if (mac) r.mac = mac;
        else delete r.mac;
      }
      break;
    }
    case 'server-drain': {
      const s = resolveService(cfg, c.service);
      findReal(s, c.address).weight = 0;
      break;
    }
    case 'server-remove': {
      const s = resolveService(cfg, c.service);
      const r = findReal(s, c.address);
      if (s.real_servers.length === 1) {
        throw new AdminError(
          'E_LAST_REAL',
          `${r.address} is the only real server of ${serviceLabel(s)}: a service needs at least one (drain it with: lbd server drain ${s.name} ${r.address}, or remove the service with: lbd service remove ${s.name})`,
        );
      }
      s.real_servers = s.real_servers.filter((x) => x !== r);
      break;
    }
    case 'service-add': {
      const vip = parseAddress(c.vip, undefined, 'VIP');
      const port = Number(c.port);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new AdminError('E_USAGE', `invalid port ${JSON.stringify(c.port)}: expected 1-65535`);
      const protocol = (c.protocol ?? DEFAULTS.protocol).toLowerCase();
      if (protocol !== 'tcp' && protocol !== 'udp') throw new AdminError('E_USAGE', `invalid protocol "${c.protocol}" (tcp, udp)`);
      if (!c.servers?.length) {
        throw new AdminError('E_USAGE', `a service needs at least one real server: give --server ADDRESS (repeat it for more)`);
      }
      const key = serviceKey({ vip, port, protocol });
      const dup = cfg.services.find((s) => serviceKey(s) === key);
      if (dup) throw new AdminError('E_EXISTS', `${key} is already the service ${dup.name} (change it with: lbd service edit ${dup.name} …)`);
      const same = cfg.services.find((s) => s.name === c.name);
      if (same) throw new AdminError('E_EXISTS', `a service named "${c.name}" already exists (${serviceKey(same)}): choose another --name`);
      const s: ServiceConfig = {
        name: c.name,
        vip,
        port,
        protocol,
        scheduler: c.scheduler === undefined ? DEFAULTS.scheduler : schedulerArg(c.scheduler),
        persistence: c.persistence === undefined ? DEFAULTS.persistence : persistenceArg(c.persistence),
        persistence_netmask: c.netmask === undefined ? DEFAULTS.persistenceNetmask : netmaskArg(c.netmask),
        real_servers: [],
      };
      if (c.on_remove !== undefined) s.on_remove = onRemoveArg(c.on_remove);
      if (c.on_miss !== undefined) s.on_miss = onMissArg(c.on_miss);
      if (c.sched_flags !== undefined) setSchedFlags(s, c.sched_flags);
      for (const text of c.servers) {
        const [addr, w] = text.split(/[=@]/);
        const address = parseAddress(addr, port);
        if (s.real_servers.some((r) => r.address === address)) throw new AdminError('E_USAGE', `--server ${address} given twice`);
        s.real_servers.push({ address, port, weight: w === undefined ? DEFAULTS.weight : parseWeight(w) });
      }
      cfg.services.push(s);
      break;
    }
    case 'service-edit': {
      const s = resolveService(cfg, c.service);
      if (c.vip !== undefined || c.port !== undefined || c.protocol !== undefined) {
        throw new AdminError(
          'E_USAGE',
          `the VIP, port and protocol identify a service and cannot be edited: add the new service (lbd service add …) and remove ${s.name} (its flows drain)`,
        );
      }
      if (
        c.name === undefined &&
        c.scheduler === undefined &&
        c.sched_flags === undefined &&
        c.persistence === undefined &&
        c.netmask === undefined &&
        c.on_remove === undefined &&
        c.on_miss === undefined
      ) {
        throw new AdminError(
          'E_USAGE',
          'lbd service edit: nothing to change (give --scheduler, --sched-flags, --persistence, --netmask, --on-remove, --on-miss or --name)',
        );
      }
      if (c.name !== undefined && c.name !== s.name && cfg.services.some((x) => x.name === c.name)) {
        throw new AdminError('E_EXISTS', `a service named "${c.name}" already exists`);
      }
      if (c.name !== undefined) s.name = c.name;
      if (c.scheduler !== undefined) setScheduler(s, schedulerArg(c.scheduler));
      if (c.sched_flags !== undefined) setSchedFlags(s, c.sched_flags);
      if (c.persistence !== undefined) s.persistence = persistenceArg(c.persistence);
      if (c.netmask !== undefined) s.persistence_netmask = netmaskArg(c.netmask);
      if (c.on_remove !== undefined) s.on_remove = onRemoveArg(c.on_remove);
      if (c.on_miss !== undefined) s.on_miss = onMissArg(c.on_miss);
      break;
    }
    case 'service-remove': {
      const s = resolveService(cfg, c.service);
      if (cfg.services.length === 1) {
        throw new AdminError('E_LAST_SERVICE', `${serviceLabel(s)} is the only service: a config needs at least one (stop lbd instead)`);
      }
      cfg.services = cfg.services.filter((x) => x !== s);
      break;
    }
    default:
      throw new AdminError('E_USAGE', `unknown change ${JSON.stringify((c as { op?: unknown }).op)}`);
  }
  validate(cfg);
  return cfg;
}

/** Validates a config built in memory exactly like a file; the issues name config paths. */
export function validate(cfg: Config): void {
  try {
    parseConfig(formatConfig(cfg), cfg.file);
  } catch (e) {
    if (e instanceof ConfigError) {
      throw new AdminError(
        'E_CONFIG',
        `the change would make an invalid config: ${e.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`,
      );
    }
    throw e;
  }
}

/** describeAction, with the on_remove policy spelled out for removals. */
export function describeChanges(actions: Action[], before: Config, after: Config): string[] {
  return actions.map((a) => {
    const text = describeAction(a);
    if (a.kind === 'real-remove') {
      const s = after.services.find((x) => serviceKey(x) === a.key);
      if ((s?.on_remove ?? after.on_remove ?? (after.expire_nodest_conn === true ? 'drop' : 'drain')) === 'drop')
        return text.replace(/\(drain\)$/, '(drop: its flows are cut)');
    }
    if (a.kind === 'service-remove') {
      const s = before.services.find((x) => serviceKey(x) === a.key);
      return `${text} (${(s?.on_remove ?? after.on_remove ?? (after.expire_nodest_conn === true ? 'drop' : 'drain')) === 'drop' ? 'drop: its flows are cut' : 'drain'})`;
    }
    return text;
  });
}
