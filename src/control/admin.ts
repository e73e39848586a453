/**
 * The admin socket (issue 5, docs/operations.md): the daemon's side of `lbd list`, `lbd server …`,
 * `lbd service …`, `lbd reload` and `lbd save`, and the client the CLI uses to reach it.
 *
 * Protocol: a unix stream socket, one JSON object per line each way. A request is
 * `{"cmd": "list", "args": {…}}`; the answer is `{"ok": true, "result": …}` or
 * `{"ok": false, "error": {"code": "E_…", "message": "…"}}`. A connection may carry any number
 * of requests; answers come back in order.
 *
 * Every change — reload or runtime — goes through Daemon.apply() with a complete desired
 * Config (the running one plus the change), validated like a file, so `lbd save` is always
 * formatConfig(daemon.running).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { formatConfig, loadConfig, parseConfig, parseDuration, parseIPv4, parseMac, THRESHOLD_MAX, WEIGHT_MAX } from '../config/load';
import { didYouMean } from '../config/suggest';
import { Config, DEFAULTS, OnRemove, RealServerConfig, ServiceConfig } from '../config/types';
import { ConfigError, LbdError, formatConfigIssue } from '../errors';
import { CONN_STATE_NAMES, ConnState, SLOT_EMPTY } from '../dataplane/contract';
import { intToIp, macToString } from '../dataplane/packet';
import type { RealServer, VirtualService } from '../dataplane/services';
import { DEST_F_OVERLOAD, SCHEDULER_NAMES } from '../scheduler/index';
import { VERSION } from '../version';
import type { Daemon } from './daemon';
import { Action, describeAction, serviceKey } from './reconcile';
import { toIpvsadmRules } from './ipvsadm';

// ---------------------------------------------------------------------------------------------
// What the admin socket answers (the CLI formats it; `--json` prints it as is).

export interface Counters {
  conns: number;
  inpkts: number;
  outpkts: number;
  inbytes: number;
  outbytes: number;
}
export interface Rates {
  cps: number;
  inpps: number;
  outpps: number;
  inbps: number;
  outbps: number;
}
export interface RealView {
  address: string;
  port: number;
  /** Always Route: lbd does Direct Routing only (ipvsadm -g). */
  forward: 'Route';
  weight: number;
  active: number;
  inactive: number;
  /** Persistence templates pointing at this server. */
  persistent: number;
  /** Connection thresholds (ipvsadm -x/-y), 0 = none. */
  u_threshold: number;
  l_threshold: number;
  /** At its upper threshold: no new flows until it falls below the lower one. */
  overloaded: boolean;
  health: string;
  health_reason: string;
  /** Removed from the config and still draining its flows. */
  removed: boolean;
  /** The sorry server of its service (health checks), not scheduled normally. */
  sorry?: boolean;
  mac: string | null;
  stats: Counters;
  rate: Rates;
}
export interface ServiceView {
  name: string;
  key: string;
  protocol: 'tcp' | 'udp';
  vip: string;
  port: number;
  scheduler: string;
  /** Seconds, 0 = off. */
  persistence: number;
  persistence_netmask: string;
  /** Removed from the config and still draining its flows. */
  removed: boolean;
  active: number;
  inactive: number;
  stats: Counters;
  rate: Rates;
  reals: RealView[];
}
export interface ListResult {
  version: string;
  /** connection_table.size */
  size: number;
  dataplane: string;
  /** Entries in the connection table now. */
  connections: number;
  /** The config file the daemon reads on reload. */
  file: string;
  /** Runtime changes (lbd server/service …) not in the config file. */
  runtime_changes: string[];
  services: ServiceView[];
}
export interface ConnEntry {
  protocol: 'tcp' | 'udp';
  /** Seconds until the entry expires. */
  expires: number;
  state: string;
  client: string;
  virtual: string;
  destination: string;
  /** A persistence template (client network → real server), shown like IPVS's with port 0. */
  template?: boolean;
}
export interface ChangeResult {
  /** One line per applied change (describeAction), empty when nothing changed. */
  changes: string[];
  /** reload: runtime changes that the file did not have and that are gone now. */
  discarded?: string[];
  /** The config file, for "write it back" hints. */
  file: string;
  runtime_changes: string[];
}
export interface SaveResult {
  yaml: string;
  ipvsadm: string;
  file: string;
  runtime_changes: string[];
}

/** A runtime change, as the CLI sends it. */
export type Change =
  | { op: 'server-add'; service: string; address: string; weight?: number; mac?: string; u_threshold?: number; l_threshold?: number }
  | { op: 'server-edit'; service: string; address: string; weight?: number; mac?: string; u_threshold?: number; l_threshold?: number }
  | { op: 'server-remove'; service: string; address: string }
  | { op: 'server-drain'; service: string; address: string }
  | {
      op: 'service-add';
      name: string;
      vip: string;
      port: number;
      protocol?: string;
      scheduler?: string;
      persistence?: string | number;
      netmask?: string;
      on_remove?: string;
      servers: string[];
    }
  | { op: 'service-edit'; service: string; name?: string; scheduler?: string; persistence?: string | number; netmask?: string; on_remove?: string; vip?: string; port?: number; protocol?: string }
  | { op: 'service-remove'; service: string };

export class AdminError extends LbdError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

const ZERO_RATES: Rates = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };

// ---------------------------------------------------------------------------------------------
// Resolving SERVICE and ADDRESS arguments against a config.

function serviceLabel(s: ServiceConfig): string {
  return `${s.name} (${serviceKey(s)})`;
}

/**
 * SERVICE is a name, or VIP:PORT[/PROTO] (PROTO tcp when omitted, unless only a udp service
 * has that VIP:PORT). Throws with the list of services and a suggestion.
 */
export function resolveService(cfg: Config, ref: string): ServiceConfig {
  const byName = cfg.services.find((s) => s.name === ref);
  if (byName) return byName;
  const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)(?:\/(tcp|udp))?$/i.exec(ref);
  if (m) {
    const [, vip, port, proto] = m;
    const matches = cfg.services.filter((s) => s.vip === vip && s.port === Number(port) && (!proto || s.protocol === proto.toLowerCase()));
    const pick = matches.find((s) => s.protocol === (proto?.toLowerCase() ?? 'tcp')) ?? (matches.length === 1 ? matches[0] : undefined);
    if (pick) return pick;
  }
  const names = cfg.services.map((s) => s.name);
  const guess = didYouMean(ref, [...names, ...cfg.services.map((s) => serviceKey(s))]);
  const hint = guess !== undefined ? `; did you mean "${guess}"?` : '';
  const list = cfg.services.map(serviceLabel).join(', ');
  throw new AdminError('E_NO_SERVICE', `unknown service "${ref}"${hint} (services: ${list || 'none'})`);
}

/** ADDRESS is IPv4 or IPv4:PORT; Direct Routing needs PORT = the service port. */
function parseAddress(text: string, servicePort: number | undefined, what = 'real server'): string {
  const m = /^([^:]+)(?::(\d+))?$/.exec(text.trim());
  const n = m ? parseIPv4(m[1]) : undefined;
  if (!m || n === undefined) throw new AdminError('E_USAGE', `invalid ${what} address "${text}": expected an IPv4 address such as 10.0.10.40 (or 10.0.10.40:PORT)`);
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
  if (!Number.isInteger(n) || n < 0 || n > WEIGHT_MAX) throw new AdminError('E_USAGE', `invalid weight ${JSON.stringify(w)}: expected an integer 0-${WEIGHT_MAX}`);
  return n;
}

function thresholdArg(v: unknown, name: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > THRESHOLD_MAX) throw new AdminError('E_USAGE', `invalid ${name} ${JSON.stringify(v)}: expected an integer 0-${THRESHOLD_MAX} (0 = none)`);
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

function persistenceArg(p: string | number): number {
  const v = parseDuration(p);
  if (v === undefined) throw new AdminError('E_USAGE', `invalid persistence ${JSON.stringify(p)}: expected a duration (e.g. 300, 5m) or 0 for off`);
  return v;
}

function onRemoveArg(v: string): OnRemove {
  if (v === 'drain' || v === 'drop') return v;
  throw new AdminError('E_USAGE', `invalid on_remove "${v}" (drain, drop)`);
}

function netmaskArg(m: string): string {
  const n = parseIPv4(m);
  const inv = n === undefined ? -1 : ~n >>> 0;
  if (n === undefined || (inv & (inv + 1)) !== 0) throw new AdminError('E_USAGE', `invalid netmask "${m}": expected a contiguous IPv4 netmask such as 255.255.255.0`);
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
        throw new AdminError('E_EXISTS', `${address} is already a real server of ${serviceLabel(s)} (change it with: lbd server edit ${s.name} ${address} --weight N)`);
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
      if (c.name === undefined && c.scheduler === undefined && c.persistence === undefined && c.netmask === undefined && c.on_remove === undefined) {
        throw new AdminError('E_USAGE', 'lbd service edit: nothing to change (give --scheduler, --persistence, --netmask, --on-remove or --name)');
      }
      if (c.name !== undefined && c.name !== s.name && cfg.services.some((x) => x.name === c.name)) {
        throw new AdminError('E_EXISTS', `a service named "${c.name}" already exists`);
      }
      if (c.name !== undefined) s.name = c.name;
      if (c.scheduler !== undefined) s.scheduler = schedulerArg(c.scheduler);
      if (c.persistence !== undefined) s.persistence = persistenceArg(c.persistence);
      if (c.netmask !== undefined) s.persistence_netmask = netmaskArg(c.netmask);
      if (c.on_remove !== undefined) s.on_remove = onRemoveArg(c.on_remove);
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
      throw new AdminError('E_CONFIG', `the change would make an invalid config: ${e.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`);
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
      if ((s?.on_remove ?? after.on_remove ?? 'drain') === 'drop') return text.replace(/\(drain\)$/, '(drop: its flows are cut)');
    }
    if (a.kind === 'service-remove') {
      const s = before.services.find((x) => serviceKey(x) === a.key);
      return `${text} (${(s?.on_remove ?? after.on_remove ?? 'drain') === 'drop' ? 'drop: its flows are cut' : 'drain'})`;
    }
    return text;
  });
}

// ---------------------------------------------------------------------------------------------
// Rates: like IPVS's estimator, from two samples the daemon keeps, taken every 2 seconds.

export const RATE_INTERVAL_MS = 2000;

interface Sample {
  t: number;
  conns: number;
  pkts: number;
  bytes: number;
}

export class RateEstimator {
  private readonly prev = new Map<string, Sample>();
  private readonly rates = new Map<string, Rates>();

  /** Records one sample for `key` and updates its rates (per second over the last interval). */
  sample(key: string, t: number, conns: number, pkts: number, bytes: number): void {
    const p = this.prev.get(key);
    if (p && t > p.t) {
      const dt = (t - p.t) / 1000;
      this.rates.set(key, {
        cps: Math.round(Math.max(0, conns - p.conns) / dt),
        inpps: Math.round(Math.max(0, pkts - p.pkts) / dt),
        outpps: 0,
        inbps: Math.round(Math.max(0, bytes - p.bytes) / dt),
        outbps: 0,
      });
    }
    this.prev.set(key, { t, conns, pkts, bytes });
  }

  rate(key: string): Rates {
    return this.rates.get(key) ?? { ...ZERO_RATES };
  }
}

// ---------------------------------------------------------------------------------------------
// The daemon side: answers requests, serializes changes, keeps rates.

export interface ControlOptions {
  log?: Logger;
  /** Reads the config file on reload (tests may pass their own). */
  load?: (file: string) => Config;
}

export class Control {
  /** Runtime changes applied since the config file was last (re)loaded. */
  runtimeChanges: string[] = [];
  readonly rates = new RateEstimator();
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;

  constructor(readonly daemon: Daemon, private readonly opts: ControlOptions = {}) {}

  private get log(): Logger {
    return this.opts.log ?? this.daemon.log;
  }

  /** Starts the rate estimator's timer. */
  start(): void {
    this.sampleRates();
    this.timer = setInterval(() => this.sampleRates(), RATE_INTERVAL_MS);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  sampleRates(now = Date.now()): void {
    const d = this.daemon.forwarder.dests;
    for (const svc of this.daemon.services.values()) {
      this.rates.sample(`s${svc.index}`, now, svc.conns, svc.packets, svc.bytes);
      for (const rs of this.realsOf(svc)) this.rates.sample(`d${rs.index}`, now, d.conns[rs.index], d.packets[rs.index], d.bytes[rs.index]);
    }
  }

  private realsOf(svc: VirtualService): RealServer[] {
    const sorry = (svc as { sorry?: RealServer | null }).sorry;
    return sorry && !svc.reals.includes(sorry) ? [...svc.reals, sorry] : svc.reals;
  }

  /** Runs mutations one at a time, in arrival order. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  list(): ListResult {
    const daemon = this.daemon;
    const fw = daemon.forwarder;
    const d = fw.dests;
    const order = new Map(daemon.running.services.map((s, i) => [serviceKey(s), i]));
    const services = [...daemon.services.entries()]
      .filter(([, svc]) => !svc.gone)
      .sort(([a, sa], [b, sb]) => (order.get(a) ?? 1e9 + sa.index) - (order.get(b) ?? 1e9 + sb.index))
      .map(([key, svc]): ServiceView => {
        const cfg = daemon.running.services.find((s) => serviceKey(s) === key);
        const reals = this.realsOf(svc)
          .filter((rs) => !rs.gone)
          .map((rs): RealView => {
            const v: RealView = {
              address: intToIp(rs.addr),
              port: rs.port,
              forward: 'Route',
              weight: rs.weight,
              active: d.active[rs.index],
              inactive: d.inactive[rs.index],
              persistent: d.persistent[rs.index],
              u_threshold: rs.uThreshold,
              l_threshold: rs.lThreshold,
              overloaded: (rs.flags & DEST_F_OVERLOAD) !== 0,
              health: rs.health,
              health_reason: rs.healthReason,
              removed: rs.removed,
              mac: d.macKnown[rs.index] ? macToString(d.mac, rs.index * 6) : null,
              stats: { conns: d.conns[rs.index], inpkts: d.packets[rs.index], outpkts: 0, inbytes: d.bytes[rs.index], outbytes: 0 },
              rate: this.rates.rate(`d${rs.index}`),
            };
            if ((svc as { sorry?: RealServer | null }).sorry === rs) v.sorry = true;
            return v;
          });
        return {
          name: svc.name,
          key,
          protocol: svc.proto === 17 ? 'udp' : 'tcp',
          vip: intToIp(svc.vip),
          port: svc.port,
          scheduler: svc.scheduler.name,
          persistence: cfg?.persistence ?? svc.persistence,
          persistence_netmask: cfg?.persistence_netmask ?? intToIp(svc.persistenceMask),
          removed: svc.removed,
          active: reals.reduce((n, r) => n + r.active, 0),
          inactive: reals.reduce((n, r) => n + r.inactive, 0),
          stats: { conns: svc.conns, inpkts: svc.packets, outpkts: 0, inbytes: svc.bytes, outbytes: 0 },
          rate: this.rates.rate(`s${svc.index}`),
          reals,
        };
      });
    return {
      version: VERSION,
      size: daemon.running.connection_table.size,
      dataplane: daemon.dataplanePath,
      connections: fw.conns.size,
      file: daemon.running.file,
      runtime_changes: [...this.runtimeChanges],
      services,
    };
  }

  /** The connection table (and persistence templates), like `ipvsadm -L -n -c`. */
  connections(limit = Infinity): ConnEntry[] {
    const fw = this.daemon.forwarder;
    const out: ConnEntry[] = [];
    const now = fw.now;
    for (const [table, template] of [[fw.conns, false], [fw.templates, true]] as const) {
      for (let i = 0; i < table.slots && out.length < limit; i++) {
        const dest = table.dest[i];
        if (dest === SLOT_EMPTY) continue;
        const svc = fw.services.all[table.keyPort[i] >>> 16];
        const rs = fw.dests.views[dest];
        if (!svc || !rs) continue;
        const state = table.state[i];
        const e: ConnEntry = {
          protocol: svc.proto === 17 ? 'udp' : 'tcp',
          expires: Math.max(0, table.expires[i] - now),
          state: state === ConnState.Template ? 'NONE' : CONN_STATE_NAMES[state] ?? String(state),
          client: `${intToIp(table.keyAddr[i])}:${table.keyPort[i] & 0xffff}`,
          virtual: `${intToIp(svc.vip)}:${svc.port}`,
          destination: `${intToIp(rs.addr)}:${rs.port}`,
        };
        if (template) e.template = true;
        out.push(e);
      }
    }
    return out;
  }

  save(): SaveResult {
    const running = this.daemon.running;
    return { yaml: formatConfig(running), ipvsadm: toIpvsadmRules(running), file: running.file, runtime_changes: [...this.runtimeChanges] };
  }

  /**
   * Re-reads the config file and applies the differences. A file with errors changes nothing
   * and is answered with the same errors as `lbd check`.
   */
  reload(source = 'lbd reload'): Promise<ChangeResult> {
    return this.serialize(async () => {
      const file = this.daemon.running.file;
      let desired: Config;
      try {
        desired = (this.opts.load ?? loadConfig)(file);
      } catch (e) {
        if (e instanceof ConfigError) {
          const n = e.issues.length;
          this.log.error({ source, file, errors: e.issues.map(formatConfigIssue) }, 'reload refused: the config file has errors; the running config stays');
          throw new AdminError('E_CONFIG', `${e.message}\n${file}: ${n} error${n === 1 ? '' : 's'}; not reloaded, the running config stays`);
        }
        throw e;
      }
      const before = this.daemon.running;
      let actions: Action[];
      try {
        actions = await this.daemon.apply(desired);
      } catch (e) {
        this.log.error({ source, file, err: (e as Error).message }, 'reload refused');
        throw e;
      }
      const changes = describeChanges(actions, before, desired);
      const discarded = this.runtimeChanges;
      this.runtimeChanges = [];
      this.log.info({ source, file, changes, discarded }, changes.length ? 'config reloaded' : 'config reloaded: no changes');
      return { changes, discarded, file, runtime_changes: [] };
    });
  }

  /** A runtime change (lbd server … / lbd service …), applied like a reload of the changed config. */
  change(c: Change): Promise<ChangeResult> {
    return this.serialize(async () => {
      const before = this.daemon.running;
      const desired = applyChange(before, c);
      const actions = await this.daemon.apply(desired);
      const changes = describeChanges(actions, before, desired);
      this.runtimeChanges.push(...changes);
      if (changes.length) this.log.info({ op: c.op, changes }, 'runtime change applied (not in the config file until written back: lbd save)');
      return { changes, file: before.file, runtime_changes: [...this.runtimeChanges] };
    });
  }

  /** One request → its result (throws LbdError for an error answer). */
  async handle(req: { cmd?: unknown; args?: unknown }): Promise<unknown> {
    const args = (req.args && typeof req.args === 'object' ? req.args : {}) as Record<string, unknown>;
    switch (req.cmd) {
      case 'ping':
        return { version: VERSION, pid: process.pid, file: this.daemon.running.file };
      case 'list':
        return this.list();
      case 'connections':
        return this.connections(typeof args.limit === 'number' ? args.limit : Infinity);
      case 'save':
        return this.save();
      case 'reload':
        return this.reload();
      case 'change':
        return this.change(args as unknown as Change);
      default:
        throw new AdminError('E_USAGE', `unknown admin request ${JSON.stringify(req.cmd)} (ping, list, connections, save, reload, change)`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The socket.

/** The longest request line accepted (a request is a few hundred bytes). */
const MAX_LINE = 1 << 20;

export class AdminServer {
  private server: net.Server | null = null;
  private ino = -1;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly control: Control, readonly socketPath: string, private readonly log?: Logger) {}

  /**
   * Listens on the socket: creates its directory (0700) when missing, replaces a stale socket
   * left by a dead daemon, refuses to take over one a live daemon answers on; the socket is
   * 0600 (root only when lbd runs as root).
   */
  async listen(): Promise<void> {
    const p = this.socketPath;
    const dir = path.dirname(p);
    if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(p);
    } catch {
      st = undefined;
    }
    if (st) {
      if (!st.isSocket()) throw new AdminError('E_ADMIN', `admin socket ${p} exists and is not a socket: remove it or set admin.socket to another path`);
      if (await isListening(p)) {
        throw new AdminError('E_ADMIN', `another lbd is already listening on ${p}: stop it first, or give this one its own admin.socket`);
      }
      fs.unlinkSync(p); // stale: its daemon is gone
    }
    const server = net.createServer((sock) => this.serve(sock));
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(p, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      throw new AdminError('E_ADMIN', `cannot listen on the admin socket ${p}: ${(e as Error).message}`);
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(p, 0o600);
    this.ino = fs.statSync(p).ino;
    this.server = server;
    this.control.start();
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    let chain = Promise.resolve();
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE && !buf.includes('\n')) {
        sock.end(JSON.stringify({ ok: false, error: { code: 'E_USAGE', message: 'request too long' } }) + '\n');
        return;
      }
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        chain = chain.then(() => this.answer(line)).then((out) => {
          if (!sock.destroyed) sock.write(out + '\n');
        });
      }
    });
  }

  private async answer(line: string): Promise<string> {
    let req: { cmd?: unknown; args?: unknown };
    try {
      req = JSON.parse(line);
    } catch {
      return JSON.stringify({ ok: false, error: { code: 'E_USAGE', message: 'a request is one JSON object per line' } });
    }
    try {
      const result = await this.control.handle(req);
      return JSON.stringify({ ok: true, result });
    } catch (e) {
      const err = e as LbdError;
      if (!(e instanceof LbdError)) this.log?.error({ err: err?.stack ?? String(e), cmd: req.cmd }, 'admin request failed');
      return JSON.stringify({ ok: false, error: { code: err.code ?? 'E_INTERNAL', message: err.message ?? String(e) } });
    }
  }

  /** Stops listening and removes the socket file (if it is still ours). */
  async close(): Promise<void> {
    this.control.stop();
    const server = this.server;
    if (!server) return;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    try {
      if (fs.statSync(this.socketPath).ino === this.ino) fs.unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}

/** True when something accepts connections on the unix socket at `p`. */
export function isListening(p: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(p);
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(true), timeoutMs); // alive but slow: do not steal it
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

// ---------------------------------------------------------------------------------------------
// The client side (the CLI).

export class NoDaemonError extends LbdError {
  constructor(readonly socketPath: string, detail?: string) {
    super('E_NO_DAEMON', `no daemon is listening on ${socketPath} (is lbd running? start it with: lbd --config FILE)${detail ? ` [${detail}]` : ''}`);
  }
}

/** Sends one request and returns its result; throws the daemon's error as an LbdError. */
export function adminRequest<T = unknown>(socketPath: string, cmd: string, args?: unknown, timeoutMs = 30000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let buf = '';
    let settled = false;
    const finish = (err: Error | null, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value as T);
    };
    const timer = setTimeout(() => finish(new LbdError('E_TIMEOUT', `no answer from the daemon on ${socketPath} within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify({ cmd, args }) + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      let res: { ok: boolean; result?: T; error?: { code: string; message: string } };
      try {
        res = JSON.parse(buf.slice(0, i));
      } catch {
        return finish(new LbdError('E_PROTOCOL', `the daemon on ${socketPath} sent something that is not JSON`));
      }
      if (res.ok) finish(null, res.result as T);
      else finish(new LbdError(res.error?.code ?? 'E_INTERNAL', res.error?.message ?? 'the daemon reported an error'));
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') finish(new NoDaemonError(socketPath));
      else if (e.code === 'EACCES' || e.code === 'EPERM') finish(new LbdError('E_PERMISSION', `permission denied on ${socketPath}: the admin socket is root-only (run the command as root)`));
      else finish(new LbdError('E_ADMIN', `cannot talk to the daemon on ${socketPath}: ${e.message}`));
    });
    sock.on('close', () => finish(new LbdError('E_PROTOCOL', `the daemon on ${socketPath} closed the connection without answering`)));
  });
}
