/**
 * What each admin request does on the daemon: builds the list/connections/save answers from the
 * data plane's counters, runs reloads and runtime changes one at a time through Daemon.apply(),
 * remembers the runtime changes not in the file, and samples the rate estimator.
 */
import type { Logger } from 'pino';
import { formatConfig, loadConfig } from '../../config/load';
import { serviceKey, type Config } from '../../config/types';
import { ConfigError, formatConfigIssue } from '../../errors';
import { CONN_STATE_NAMES, ConnState, SLOT_EMPTY } from '../../dataplane/contract';
import { intToIp, macToString } from '../../dataplane/packet';
import { type RealServer, type VirtualService, protocolName } from '../../dataplane/services';
import { DEST_F_OVERLOAD, MH_TABLE_SIZE_DEFAULT, schedulerFlagNames } from '../../scheduler/index';
import { VERSION } from '../../version';
import type { Daemon } from '../daemon';
import { ipvsadmOmissions, toIpvsadmRules } from '../ipvsadm';
import type { Action } from '../reconcile';
import { applyChange, describeChanges } from './apply';
import { AdminError, Change, ChangeResult, ConnEntry, HandoverResult, ListResult, PingResult, RealView, SaveResult, ServiceView, StopResult } from './protocol';
import { RATE_INTERVAL_MS, RateEstimator } from './rate';
import { parseRequest } from './schema';

export interface ControlOptions {
  log?: Logger;
  /** Reads the config file on reload (tests may pass their own). */
  load?: (file: string) => Config;
  /** Arms a hand-over (lbd --take-over): the owner answers who this process is; undefined: not offered. */
  handover?: () => HandoverResult;
  /** Stops the daemon the way `lbd stop` asks (lbd run's own stop: the reply is sent first); clean: remove every host change. */
  stop?: (clean: boolean) => void;
  /** Told when a reload of the config file begins and ends, whatever its outcome (the service manager: RELOADING=1, READY=1). */
  reloadHooks?: { begin(): void; end(): void };
}

export class Control {
  /** Runtime changes applied since the config file was last (re)loaded. */
  runtimeChanges: string[] = [];
  readonly rates = new RateEstimator();
  private queue: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  /** The first `stop` request's clean flag, once one was answered: the daemon is stopping. */
  private stopping: boolean | null = null;

  constructor(
    readonly daemon: Daemon,
    private readonly opts: ControlOptions = {},
  ) {}

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

  ping(): PingResult {
    return { version: VERSION, pid: process.pid, file: this.daemon.running.file };
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
        const sched = svc.scheduler;
        return {
          name: svc.name,
          key,
          protocol: protocolName(svc.proto),
          vip: intToIp(svc.vip),
          port: svc.port,
          scheduler: sched.name,
          // What the running scheduler was created with, as ipvsadm -L shows it.
          scheduler_flags: schedulerFlagNames(sched.name, sched.options ?? {}),
          ...(sched.name === 'mh' ? { mh_table_size: sched.options?.tableSize ?? MH_TABLE_SIZE_DEFAULT } : {}),
          on_miss: cfg?.on_miss ?? 'drop',
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
    for (const [table, template] of [
      [fw.conns, false],
      [fw.templates, true],
    ] as const) {
      for (let i = 0; i < table.slots && out.length < limit; i++) {
        const dest = table.dest[i];
        if (dest === SLOT_EMPTY) continue;
        const svc = fw.services.all[table.keyPort[i] >>> 16];
        const rs = fw.dests.views[dest];
        if (!svc || !rs) continue;
        const state = table.state[i];
        const e: ConnEntry = {
          protocol: protocolName(svc.proto),
          expires: Math.max(0, table.expires[i] - now),
          state: state === ConnState.Template ? 'NONE' : (CONN_STATE_NAMES[state] ?? String(state)),
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
    return {
      yaml: formatConfig(running),
      ipvsadm: toIpvsadmRules(running),
      ipvsadm_omitted: ipvsadmOmissions(running),
      file: running.file,
      runtime_changes: [...this.runtimeChanges],
    };
  }

  /**
   * Re-reads the config file and applies the differences. A file with errors changes nothing
   * and is answered with the same errors as `lbd check`.
   */
  reload(source = 'lbd reload'): Promise<ChangeResult> {
    return this.serialize(async () => {
      this.opts.reloadHooks?.begin();
      try {
        return await this.reloadFile(source);
      } finally {
        this.opts.reloadHooks?.end();
      }
    });
  }

  /** reload()'s work, between the hooks. */
  private async reloadFile(source: string): Promise<ChangeResult> {
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

  /**
   * lbd stop: answers first, then stops the daemon through ControlOptions.stop (lbd run's own
   * stop, like SIGTERM; clean: every host change goes too). Queued behind a reload or runtime
   * change in flight, like them. The stop starts on a later turn of the event loop than the
   * answer's write (AdminServer writes it as soon as this resolves), so the answer reaches the
   * client before the admin socket closes. A second request while stopping is answered with the
   * first one's flag and stops nothing more.
   */
  requestStop(clean: boolean): Promise<StopResult> {
    return this.serialize(async () => {
      const stop = this.opts.stop;
      if (!stop) throw new AdminError('E_ADMIN', 'this daemon cannot be stopped over its admin socket: stop it with SIGTERM');
      if (this.stopping !== null) return { stopping: true, clean: this.stopping, pid: process.pid };
      this.stopping = clean;
      this.log.info({ source: 'lbd stop', clean }, 'stop requested on the admin socket');
      setImmediate(() => stop(clean));
      return { stopping: true, clean, pid: process.pid, withdraw_delay_ms: this.daemon.withdrawDelayMs(clean ? 'clean' : 'keep') };
    });
  }

  /** lbd --take-over asks: this daemon hands over at the new lbd's SIGUSR2 (run.ts) while armed. */
  requestHandover(): Promise<HandoverResult> {
    return this.serialize(async () => {
      const handover = this.opts.handover;
      if (!handover || this.stopping !== null) throw new AdminError('E_ADMIN', 'this daemon cannot hand over (it is stopping, or was not started by lbd run)');
      const r = handover();
      this.log.info({ source: 'lbd --take-over', pid: r.pid, armedMs: r.armedMs }, 'hand-over asked for: waiting for the new lbd');
      return r;
    });
  }

  /**
   * One request → its result (throws LbdError for an error answer). The value came from the
   * socket, so nothing in it is trusted: parseRequest checks it against the schema first (E_USAGE
   * naming the wrong field) and everything after works on the typed request.
   */
  async handle(value: unknown): Promise<unknown> {
    const req = parseRequest(value);
    switch (req.cmd) {
      case 'ping':
        return this.ping();
      case 'list':
        return this.list();
      case 'connections':
        return this.connections(req.args.limit ?? Infinity);
      case 'save':
        return this.save();
      case 'reload':
        return this.reload();
      case 'stop':
        return this.requestStop(req.args.clean === true);
      case 'handover':
        return this.requestHandover();
      case 'change':
        return this.change(req.args);
    }
  }
}
