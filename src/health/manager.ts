import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Config, HealthCheckConfig, OnDown, RealServerConfig, ServiceConfig } from '../config/types';
import { HEALTH_DEFAULTS, serviceKey } from '../config/types';
import type { Forwarder } from '../dataplane/forwarder';
import { intToIp, ipToInt, macFromString } from '../dataplane/packet';
import { DOWN_DROP, DOWN_KEEP, DOWN_RESCHEDULE, RealServer, VirtualService } from '../dataplane/services';
import { DEST_F_DOWN, type Dest } from '../scheduler/index';
import { interfaceAddress } from '../host/interfaces';
import { HttpChecker } from './http';
import { HealthState, HealthSupervisor } from './supervisor';
import { TcpChecker } from './tcp';
import { Checker, Clock, realClock } from './types';
import type { LeasedTable } from '../host/leased-table';
import { ProbePort, VipChecker, VipProber } from './vip';

/**
 * Up and weighted: what quorum counts. Unlike the schedulers' isAvailable, an overloaded server
 * (u_threshold) still counts: overload is a moment's load, not a reason for the sorry server.
 */
const inService = (d: Dest): boolean => d.weight > 0 && (d.flags & DEST_F_DOWN) === 0;

/** A real server in logs and metric labels: ADDRESS:PORT, as lbd list and the data-plane metrics name it. */
const realLabel = (rs: RealServer): string => `${intToIp(rs.addr)}:${rs.port}`;

/** The check a real server runs: the service's health_check with the server's overrides. */
export function effectiveCheck(s: ServiceConfig, r: RealServerConfig): HealthCheckConfig | undefined {
  if (!s.health_check && !r.health_check) return undefined;
  const base: HealthCheckConfig = s.health_check ?? {
    type: r.health_check!.type!,
    interval: HEALTH_DEFAULTS.interval,
    timeout: Math.min(HEALTH_DEFAULTS.timeout, r.health_check?.interval ?? HEALTH_DEFAULTS.interval),
    rise: HEALTH_DEFAULTS.rise,
    fall: HEALTH_DEFAULTS.fall,
    path: HEALTH_DEFAULTS.path,
    expect_status: HEALTH_DEFAULTS.expectStatus,
    port: s.port,
  };
  return { ...base, ...(r.health_check ?? {}) };
}

interface Policy {
  name: string;
  onDown: OnDown;
  inhibit: boolean;
  quorum: number;
  initial: HealthState;
  belowQuorum: boolean;
  /** Any real server of the service is health-checked. */
  checked: boolean;
}

interface Entry {
  key: string;
  svc: VirtualService;
  type: string;
  sup: HealthSupervisor;
}

export interface ArpTracker {
  track(rs: RealServer): void;
  untrack(rs: RealServer): void;
  resolve(force: boolean): void;
  /** The server's check failed: ask for its MAC again (it may have changed without a gratuitous ARP). */
  reresolve(rs: RealServer): void;
}

export interface HealthManagerOptions {
  forwarder: Forwarder;
  log: Logger;
  arp: ArpTracker;
  /** The egress interface: vip probes leave here. */
  egress: { iface: string; mac: Uint8Array };
  /** The vip probe's nftables table for an egress address (probeTableSpec); none in tests without a host. */
  probeTable?: (egressIp: number) => LeasedTable | null;
  clock?: Clock;
  random?: () => number;
  /** Replaces checker construction (tests). */
  makeChecker?: (rs: RealServer, check: HealthCheckConfig) => Checker;
  openProbePort?: (iface: string, filter: string) => ProbePort;
}

const ON_DOWN_CODE: Record<OnDown, number> = { keep: DOWN_KEEP, reschedule: DOWN_RESCHEDULE, drop: DOWN_DROP };

/**
 * Runs one supervisor per health-checked real server and turns its verdicts into data-plane
 * state at once: DEST_F_DOWN (or weight 0 with inhibit_on_failure), the on_down action for
 * existing flows, the quorum / sorry-server switch, svc.changed() for the schedulers.
 * sync() is idempotent: called after start and after every reload, it restarts only the
 * checks whose effective configuration changed.
 */
export class HealthManager {
  private readonly entries = new Map<RealServer, Entry>();
  private readonly policies = new Map<VirtualService, Policy>();
  /** Weights saved while inhibit_on_failure holds a down server at weight 0. */
  private readonly savedWeight = new Map<RealServer, number>();
  private readonly transitions = new Map<string, { labels: Record<string, string>; n: number }>();
  private prober: VipProber | null = null;
  private readonly clock: Clock;
  readonly duration = new Histogram({
    name: 'lbd_health_check_duration_seconds',
    help: 'How long health checks took, by service, real server and check type.',
    labelNames: ['service', 'real', 'type'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [],
  });

  constructor(private readonly o: HealthManagerOptions) {
    this.clock = o.clock ?? realClock;
  }

  private get log(): Logger {
    return this.o.log;
  }

  /** Brings the checks in line with `cfg` (start, reload). */
  sync(cfg: Config, services: Map<string, VirtualService>): void {
    const seen = new Set<RealServer>();
    const vips = new Set<number>();
    const live = new Set<VirtualService>();
    for (const s of cfg.services) {
      const svc = services.get(serviceKey(s));
      if (!svc || svc.removed) continue;
      live.add(svc);
      const prev = this.policies.get(svc);
      const policy: Policy = {
        name: s.name,
        onDown: s.on_down ?? HEALTH_DEFAULTS.onDown,
        inhibit: s.inhibit_on_failure ?? HEALTH_DEFAULTS.inhibitOnFailure,
        quorum: s.quorum ?? HEALTH_DEFAULTS.quorum,
        initial: s.initial_state ?? HEALTH_DEFAULTS.initialState,
        belowQuorum: prev?.belowQuorum ?? false,
        checked: false,
      };
      this.policies.set(svc, policy);
      this.syncSorry(svc, s);
      for (const r of s.real_servers) {
        const rs = svc.dests.find((x) => x.addr === ipToInt(r.address));
        const check = rs && effectiveCheck(s, r);
        if (!rs || !check) continue;
        policy.checked = true;
        seen.add(rs);
        if (check.type === 'vip') vips.add(svc.vip);
        const key = JSON.stringify(check);
        const existing = this.entries.get(rs);
        if (existing && existing.key === key) continue;
        existing?.sup.stop();
        // A changed check keeps the server's current verdict; a new one starts at initial_state.
        if (rs.health === 'unchecked') {
          rs.health = policy.initial;
          rs.healthReason = 'initial state';
        }
        const entry: Entry = { key, svc, type: check.type, sup: null as unknown as HealthSupervisor };
        entry.sup = new HealthSupervisor({
          checker: this.makeChecker(rs, svc, check),
          interval: check.interval,
          rise: check.rise,
          fall: check.fall,
          initial: rs.health,
          clock: this.clock,
          random: this.o.random,
          onTransition: (to, reason) => this.transition(rs, entry, to, reason),
          onResult: (r, seconds) => {
            this.duration.observe({ service: svc.name, real: realLabel(rs), type: check.type }, seconds);
            // At every failed check, not only after `fall` of them: a changed MAC is re-learnt
            // before the server is taken down (the ARP agent limits it to a request a second).
            if (!r.ok) this.o.arp.reresolve(rs);
          },
        });
        this.entries.set(rs, entry);
        entry.sup.start();
        this.log.info(
          {
            service: s.name,
            real: realLabel(rs),
            check: check.type,
            interval: check.interval,
            rise: check.rise,
            fall: check.fall,
            state: rs.health,
          },
          existing ? 'health check changed: restarted' : 'health check started',
        );
      }
    }
    for (const [rs, e] of this.entries) {
      if (seen.has(rs)) continue;
      e.sup.stop();
      this.entries.delete(rs);
      rs.health = 'unchecked';
      rs.healthReason = '';
      this.log.info({ service: e.svc.name, real: realLabel(rs) }, 'health check stopped');
    }
    for (const svc of [...this.policies.keys()]) if (!live.has(svc)) this.policies.delete(svc);
    this.syncProber(vips);
    for (const [svc, policy] of this.policies) {
      for (const rs of svc.reals) this.applyState(rs, policy);
      svc.changed();
      this.evalQuorum(svc, policy);
    }
  }

  private makeChecker(rs: RealServer, svc: VirtualService, c: HealthCheckConfig): Checker {
    if (this.o.makeChecker) return this.o.makeChecker(rs, c);
    const address = intToIp(rs.addr);
    const timeoutMs = Math.max(1, Math.round(c.timeout * 1000));
    switch (c.type) {
      case 'tcp':
        return new TcpChecker(address, c.port, timeoutMs);
      case 'http':
        return new HttpChecker({ address, port: c.port, path: c.path, host: c.host, expectStatus: c.expect_status, expectBody: c.expect_body, timeoutMs });
      case 'vip': {
        const dests = this.o.forwarder.dests;
        const mac = () => (dests.macKnown[rs.index] ? dests.mac.subarray(rs.index * 6, rs.index * 6 + 6) : null);
        return {
          type: 'vip',
          run: () => {
            const prober = this.ensureProber();
            if (!prober) return Promise.resolve({ ok: false, reason: 'vip path: egress has no IPv4 address' });
            return new VipChecker(prober, mac, svc.vip, svc.port, timeoutMs).run();
          },
        };
      }
    }
  }

  private ensureProber(): VipProber | null {
    if (this.prober) return this.prober;
    const ip = interfaceAddress(this.o.egress.iface);
    if (!ip) return null;
    this.prober = new VipProber({
      iface: this.o.egress.iface,
      egressMac: this.o.egress.mac,
      egressIp: ipToInt(ip),
      openPort: this.o.openProbePort,
      table: this.o.probeTable?.(ipToInt(ip)) ?? null,
    });
    return this.prober;
  }

  private syncProber(vips: Set<number>): void {
    if (vips.size === 0) {
      this.prober?.close().catch((e: Error) => this.log.error({ err: e.message }, 'vip check: cannot remove the nftables rule for probe replies'));
      this.prober = null;
      return;
    }
    const prober = this.ensureProber();
    prober?.setVips([...vips]).catch((e: Error) => this.log.error({ err: e.message }, 'vip check: cannot install the nftables rule for probe replies'));
  }

  /**
   * The service's sorry server as the config says (made, changed or let go). Public for the
   * daemon's adoption of a previous lbd's table: flows on the sorry server go on to it.
   */
  syncSorry(svc: VirtualService, s: ServiceConfig): void {
    const want = s.sorry_server;
    const cur = svc.sorry;
    if (cur && (!want || ipToInt(want.address) !== cur.addr)) {
      cur.removed = true; // drains like a removed real server; the daemon lets it go
      svc.sorry = null;
      svc.sorryActive = false;
    }
    if (!want) return;
    const dests = this.o.forwarder.dests;
    if (!svc.sorry) {
      const rs = dests.add(svc, ipToInt(want.address), s.port, 1);
      svc.reals.push(rs);
      svc.sorry = rs;
      if (!want.mac) {
        this.o.arp.track(rs);
        this.o.arp.resolve(false);
      }
    }
    if (want.mac) dests.setMac(svc.sorry.index, macFromString(want.mac));
  }

  /** Data-plane state of one real server from its verdict and the service's policy. */
  private applyState(rs: RealServer, policy: Policy): void {
    const down = rs.health === 'down';
    if (down && !policy.inhibit) rs.flags |= DEST_F_DOWN;
    else rs.flags &= ~DEST_F_DOWN;
    if (down && policy.inhibit) {
      // Whoever set a non-zero weight meanwhile (a reload) set the weight to come back to.
      if (rs.weight !== 0 || !this.savedWeight.has(rs)) this.savedWeight.set(rs, rs.weight);
      rs.weight = 0;
    } else if (this.savedWeight.has(rs)) {
      rs.weight = this.savedWeight.get(rs)!;
      this.savedWeight.delete(rs);
    }
    this.o.forwarder.dests.downAction[rs.index] = down ? ON_DOWN_CODE[policy.onDown] : DOWN_KEEP;
  }

  private transition(rs: RealServer, e: Entry, to: HealthState, reason: string): void {
    const policy = this.policies.get(e.svc);
    rs.health = to;
    rs.healthReason = reason;
    if (policy) this.applyState(rs, policy);
    e.svc.changed();
    const real = realLabel(rs);
    const labels = { service: e.svc.name, real, to, reason };
    const k = JSON.stringify(labels);
    const t = this.transitions.get(k) ?? { labels, n: 0 };
    t.n++;
    this.transitions.set(k, t);
    const fields = {
      service: e.svc.name,
      real,
      check: e.type,
      to,
      reason,
      weight: rs.weight,
      on_down: to === 'down' ? policy?.onDown : undefined,
      activeConns: rs.activeConns,
      inactConns: rs.inactConns,
    };
    if (to === 'down') this.log.warn(fields, `real server down: ${reason}`);
    else this.log.info(fields, `real server up: ${reason}`);
    if (policy) this.evalQuorum(e.svc, policy);
  }

  private evalQuorum(svc: VirtualService, policy: Policy): void {
    const up = svc.dests.filter(inService).length;
    const below = up < policy.quorum;
    svc.sorryActive = below && svc.sorry !== null;
    svc.belowQuorum = below;
    if (below === policy.belowQuorum) return;
    policy.belowQuorum = below;
    const fields = { service: svc.name, up, quorum: policy.quorum, sorry_server: svc.sorry ? intToIp(svc.sorry.addr) : null };
    if (below)
      this.log.warn(
        fields,
        svc.sorry ? 'quorum lost: new flows go to the sorry server' : 'quorum lost (no sorry_server: new flows go to the servers still up)',
      );
    else this.log.info(fields, 'quorum regained: new flows go to the real servers again');
  }

  /** Every check's state, for logs, tests and the admin tooling. */
  status(): { service: string; real: string; type: string; health: string; reason: string; okRun: number; failRun: number; checks: number }[] {
    return [...this.entries].map(([rs, e]) => ({
      service: e.svc.name,
      real: realLabel(rs),
      type: e.type,
      health: rs.health,
      reason: rs.healthReason,
      okRun: e.sup.okRun,
      failRun: e.sup.failRun,
      checks: e.sup.checks,
    }));
  }

  /** The supervisor of one real server (tests). */
  supervisor(rs: RealServer): HealthSupervisor | undefined {
    return this.entries.get(rs)?.sup;
  }

  /** Stops every check; with `removeTable`, resolves once the vip probe's nftables table is gone (else its lease lapses by itself). */
  async stop(removeTable = true): Promise<void> {
    for (const e of this.entries.values()) e.sup.stop();
    this.entries.clear();
    const prober = this.prober;
    this.prober = null;
    await prober?.close(removeTable);
  }

  /** Adds the health metrics to a registry; values are read at scrape time. */
  register(registry: Registry): void {
    registry.registerMetric(this.duration);
    const fw = this.o.forwarder;
    const policies = this.policies;
    const transitions = this.transitions;
    new Gauge({
      name: 'lbd_real_server_up',
      help: 'Health verdict of the real server: 1 up (or not health-checked), 0 down.',
      labelNames: ['service', 'real'],
      registers: [registry],
      collect() {
        this.reset();
        for (const rs of fw.dests.views) {
          if (rs.gone || rs.removed) continue;
          this.set({ service: rs.service.name, real: realLabel(rs) }, rs.health === 'down' ? 0 : 1);
        }
      },
    });
    new Counter({
      name: 'lbd_health_transitions_total',
      help: 'Health state changes of real servers, by new state and reason.',
      labelNames: ['service', 'real', 'to', 'reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const t of transitions.values()) this.inc(t.labels, t.n);
      },
    });
    const perService = (name: string, help: string, read: (svc: VirtualService, p: Policy) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['service'],
        registers: [registry],
        collect() {
          this.reset();
          for (const [svc, p] of policies) if (!svc.gone) this.set({ service: svc.name }, read(svc, p));
        },
      });
    perService(
      'lbd_service_real_servers_up',
      'Real servers of the service that are up with weight > 0 (what quorum counts).',
      (svc) => svc.dests.filter(inService).length,
    );
    perService('lbd_service_quorum_up', '1 while at least quorum real servers are up, 0 when quorum is lost.', (_s, p) => (p.belowQuorum ? 0 : 1));
    perService('lbd_service_sorry_server_active', '1 while new flows go to the sorry server.', (svc) => (svc.sorryActive ? 1 : 0));
    new Counter({
      name: 'lbd_health_rescheduled_flows_total',
      help: 'Existing flows of down real servers moved to a live server (on_down: reschedule).',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(fw.downFlowsRescheduled);
      },
    });
    new Counter({
      name: 'lbd_health_dropped_flows_total',
      help: 'Existing flows of down real servers dropped and forgotten (on_down: drop).',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(fw.downFlowsDropped);
      },
    });
  }
}
