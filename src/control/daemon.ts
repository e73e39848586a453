/**
 * The daemon: one object that owns the running state every part of it changes together (the
 * Forwarder, the capture and egress ports, ARP, the host guard, local access, health, metrics,
 * the timers) and applies config changes to all of them by reconciling. It is longer than ~500
 * lines because apply() must see all of that state at once to change it consistently (a VIP
 * added means new guard rules, ARP announcements and a reopened capture together); what can
 * stand alone has its own file: path selection (dataplane-select.ts), the plan (reconcile.ts),
 * ARP (arp-agent.ts), health (health/), host changes (host/), the admin socket (admin/).
 */
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { serviceKey, type Config, type RealServerConfig, type ServiceConfig } from '../config/types';
import { LbdError } from '../errors';
import { Forwarder } from '../dataplane/forwarder';
import { CONN_REUSE_DEFAULT } from '../dataplane/contract';
import type { DefenseConfig } from '../dataplane/syn-flood';
import { HostGuard } from '../host/guard';
import { HostKeeper } from '../host/host-keeper';
import { instanceNames, stateFilePath, type InstanceNames } from '../host/instance';
import { interfaceAddress, interfaceMtu, localAddresses } from '../host/interfaces';
import { HOST_LEASE_S, LeasedTable } from '../host/leased-table';
import { ANNOUNCE_FD_NAME, Announcer, type AnnounceHost } from '../host/announce';
import { LocalAccess } from '../host/local-access';
import { type Owner, ownerAlive, selfOwner, waitGone } from '../host/owner';
import { probeTableSpec } from '../health/vip';
import { EventLoopDelay } from '../metrics/event-loop';
import type { Port } from '../dataplane/io';
import { NativePort } from '../dataplane/native';
import { selectDataplane } from './dataplane-select';
import { intToIp, ipToInt, macFromString } from '../dataplane/packet';
import { MAX_DESTS, MAX_SERVICES, RealServer, VirtualService, protoNumber, protocolName } from '../dataplane/services';
import { parseListen } from '../config/values';
import { createScheduler, sameSchedulerOptions, schedulerOptions } from '../scheduler/index';
import { NativeCounters, createRegistry, serveMetrics } from '../metrics/metrics';
import { ArpAgent } from './arp-agent';
import { LinkMonitor } from './link-watch';
import { HealthManager, HealthManagerOptions } from '../health/manager';
import { Action, describeAction, plan } from './reconcile';
import { VERSION } from '../version';
import { SingleFlight } from '../single-flight';
import { ADOPT_REJECTS, type AdoptReject, PreviousTables } from '../dataplane/adopt';
import { type PreviousState, type Previous, StateFile, type StateFileIo, monotonicSeconds } from '../dataplane/state-file';
import { requireBinding, type NativeStats } from '../dataplane/binding';
import { effectiveCheck } from '../health/manager';
import { DEST_HEALTH_DOWN, DEST_HEALTH_UP } from '../dataplane/contract';

/** How long an lbd taking over waits for the old one to let go of the state file. */
const HANDOVER_WAIT_MS = 5000;
/** A hand-over holds the announced routes at least this long for the new lbd (seconds). */
const HANDOVER_HOLD_S = 5;

/** The addon's state-file calls. */
function addonStateIo(): StateFileIo {
  const b = requireBinding();
  return {
    map: (p, n) => b.mapStateFile(p, n),
    mapExisting: (p) => b.mapExistingFile(p),
    lock: (p) => b.lockFile(p),
    unlock: (fd) => b.unlockFile(fd),
  };
}

export interface DaemonOptions {
  config: Config;
  log: Logger;
  /** Opens a port on an interface with a BPF filter; tests pass in-memory ports. */
  openPort?: (iface: string, filter: string) => Port;
  /** Install the nftables guard (default true). */
  hostGuard?: boolean;
  /** What announcing does to the host (tests); default the real TAP, keeper and routes. */
  announceHost?: AnnounceHost;
  /** Serve /metrics (default true). */
  metrics?: boolean;
  /** Health-check test hooks: fake checkers, clock and initial spread. */
  health?: Pick<HealthManagerOptions, 'makeChecker' | 'clock' | 'random'>;
  /** Addresses treated as local (default: the host's); a local VIP is not announced by ARP. */
  localAddresses?: Set<string>;
  /** The daemon cannot go on (its capture or egress interface is gone): the owner stops it and exits non-zero. */
  onFatal?: (e: LbdError) => void;
  /**
   * The state file the connection table lives in (state-file.ts), adopted by the next lbd.
   * Default: config state_file, else /run/lbd/lbd_<capture>.state; with in-memory ports (tests)
   * none unless given. null: none, the table ends with the process.
   */
  stateFile?: string | null;
  /** Start with an empty table even when the state file holds one (lbd --fresh). */
  fresh?: boolean;
  /** Maps and locks the state file (default: the native addon's). */
  stateIo?: StateFileIo;
  /**
   * lbd --take-over: the running lbd that hands over (it answered the admin `handover` request):
   * this one opens its capture first, then signals it (SIGUSR2) and takes over its state file and
   * its guard while it ends.
   */
  handoverFrom?: Owner;
  /** Called on every tick of the data plane's clock (the service manager's watchdog: sd-notify.ts). */
  keepAlive?: (nowMs: number) => void;
  /**
   * Keeps a duplicate of `fd` in the service manager under `name` across a restart (systemd's
   * descriptor store): the announce interface, held over a restart (announce.hold_on_restart).
   */
  keepForRestart?: (name: string, fd: number) => boolean;
}

/** What a start found of the previous lbd's table and made of it (metrics, the start log line). */
export interface Adoption {
  previous: Previous['kind'];
  /** Why the previous state file was not adopted (set aside). */
  reason?: string;
  flows: number;
  templates: number;
  rejected: Record<AdoptReject, number>;
  /** lbds that adopted this table before this one. */
  restarts: number;
  /** The previous lbd stopped on a signal (false: it crashed or was killed). */
  previousStopped?: boolean;
  previousPid?: number;
}

export class ReloadError extends LbdError {
  constructor(message: string) {
    super('E_RELOAD', message);
  }
}

/** Service indices share a 32-bit key with the client port: 16 bits (contract.ts). */
const MAX_SERVICE_INDEX = 1 << 16;

/**
 * How often the coarse clock advances and a slice of the connection table is swept: often, so
 * that each slice is short (the event loop, and the frames, wait while it runs); a whole pass
 * of the table takes a second.
 */
const TICK_MS = 10;
/** Unresolved real-server MACs are asked for every second; resolved ones re-checked this often. */
const ARP_REFRESH_S = 30;

type ServiceAddress = { vip: string; port: number; protocol: string };

/** "(dst host VIP and tcp dst port P) or …" for every service; '' when there is none. */
function vipTerms(services: ServiceAddress[]): string {
  return services.map((s) => `(dst host ${s.vip} and ${s.protocol} dst port ${s.port})`).join(' or ');
}

/**
 * "(dst host VIP and icmp and (icmp[0] == 3 or icmp[0] == 11))" once per VIP: the ICMP errors
 * (destination unreachable, time exceeded) about replies, which come to the VIP (forwardIcmp).
 */
function icmpTerms(services: ServiceAddress[]): string {
  return [...new Set(services.map((s) => s.vip))].map((vip) => `(dst host ${vip} and icmp and (icmp[0] == 3 or icmp[0] == 11))`).join(' or ');
}

/** The capture filter: inbound VIP traffic of every service, ICMP errors to the VIPs, and ARP. */
export function captureFilter(services: ServiceAddress[]): string {
  const terms = vipTerms(services);
  return terms ? `inbound and (arp or ${terms} or ${icmpTerms(services)})` : 'inbound and arp';
}

/** The local-access filter: the host's own frames to a VIP, leaving through the local-access TAP. */
export function localAccessFilter(services: ServiceAddress[]): string {
  const terms = vipTerms(services);
  return terms ? `outbound and (${terms})` : 'outbound and not ip';
}

/**
 * The daemon: wires the config to a forwarder, the capture and egress ports, ARP, the
 * host guard and metrics; owns the timers; applies config changes by reconciling; undoes
 * every host change on stop().
 */
export class Daemon {
  readonly forwarder: Forwarder;
  capture: Port;
  egress: Port;
  readonly arp: ArpAgent;
  /** Health checks: supervisors per real server, verdicts applied to the data plane. */
  readonly health: HealthManager;
  /** Which data plane forwards: the native fast path or the TypeScript one (config `dataplane`). */
  readonly dataplanePath: 'native' | 'ts';
  /** The config the daemon runs now (after every applied change). */
  running: Config;
  /** Live services by VIP:port/protocol, including removed ones still draining. */
  readonly services = new Map<string, VirtualService>();
  /** What this lbd names its host changes (from its capture interface). */
  readonly names: InstanceNames;
  private readonly guard: HostGuard | null;
  /** Renews and watches the nftables tables; null without host changes (tests). */
  private readonly keeper: HostKeeper | null;
  private readonly eventLoop = new EventLoopDelay();
  /** The vip checks' probe table, per egress address (one while the address stays). */
  private readonly probeTables = new Map<number, LeasedTable>();
  private readonly refresh = new SingleFlight(
    () => this.refreshHostOnce(),
    () => this.stopped,
  );
  private readonly openPort: (iface: string, filter: string) => Port;
  private metricsServer: Server | null = null;
  private timers: NodeJS.Timeout[] = [];
  /** Sweeps and once-a-second work are paced from here, on the monotonic clock (an NTP step must not matter). */
  private readonly startedAt = performance.now();
  private lastSweepMs = 0;
  private lastSecond = 0;
  private nextServiceIndex = 0;
  private stopped = false;
  private readonly local: Set<string>;
  private readonly localAccess: LocalAccess;
  /** VIP routes for a routing daemon to announce (config announce); null without. */
  private readonly announcer: Announcer | null;
  private localPort: Port | null = null;
  private readonly retiredNative: NativeCounters = {
    ringDrops: 0,
    wakeups: 0,
    sendSyscalls: 0,
    upcalls: 0,
    busyPollCatches: 0,
    upcallSeconds: 0,
    sendSeconds: 0,
    busySeconds: 0,
    ringWaitSeconds: 0,
    ringWaitFrames: 0,
  };
  /** The capture and egress links and the captures' poll errors (link-watch.ts), looked at every second. */
  private readonly links: LinkMonitor;
  private failed = false;
  /** The state file the table lives in; null: none (tests). */
  readonly stateFile: StateFile | null;
  /** What this start adopted from the previous lbd. */
  readonly adoption: Adoption;
  /** The guard was a dead lbd's, taken over (not made) by this start. */
  private guardTakenOver = false;

  constructor(private readonly opts: DaemonOptions) {
    const cfg = opts.config;
    this.running = cfg;
    this.names = instanceNames(cfg.interfaces.capture);
    // The state file's lock first: a second lbd with this state file stops here, before it opens
    // anything (E_INSTANCE).
    const statePath = opts.stateFile !== undefined ? opts.stateFile : opts.openPort ? null : stateFilePath(cfg);
    const handover = opts.handoverFrom;
    // A hand-over takes the lock later: once this lbd's capture is open, the old one is told to let go.
    let stateFile = statePath && !handover ? StateFile.open(statePath, opts.stateIo ?? addonStateIo()) : null;
    this.stateFile = stateFile;
    try {
      this.links = new LinkMonitor({
        log: opts.log,
        dataplane: () => this.dataplanePath,
        interfaces: () => this.running.interfaces,
        ports: () => ({ capture: this.capture, egress: this.egress, local: this.localPort }),
        announce: () => this.arp.announce(),
        resolveMacs: () => this.arp.resolve(true),
        fail: (e) => this.fail(e),
        stopped: () => this.stopped,
        watched: opts.openPort === undefined,
      });
      this.localAccess = new LocalAccess(this.names.localInterface);
      this.announcer = cfg.announce
        ? new Announcer(
            () => this.running.announce!,
            () => this.announceableVips(),
            opts.log,
            opts.announceHost,
          )
        : null;
      const owner = selfOwner();
      this.keeper = opts.hostGuard === false ? null : new HostKeeper({ log: opts.log, renewMs: (HOST_LEASE_S * 1000) / 3 });
      this.guard = opts.hostGuard === false ? null : new HostGuard(this.names.guardTable, cfg.interfaces.capture, owner, HOST_LEASE_S);
      if (this.guard) this.keeper?.add(this.guard.table);
      // ---- data-plane path (src/dataplane/native.ts): auto | native | ts ----
      // native: the capture interface's port is the addon's AF_PACKET ring; it forwards in C++
      // and calls up only for new flows and ARP. auto falls back to TypeScript with a warning.
      // Both capture through the native binding: without one lbd does not start (BindingError).
      const dataplane = selectDataplane(cfg, {
        inMemory: opts.openPort !== undefined,
        log: opts.log,
        filter: captureFilter(cfg.services),
      });
      this.dataplanePath = dataplane.path;
      this.openPort = opts.openPort ?? dataplane.openPort;
      // ---- end data-plane path ----
      this.capture = this.openPort(cfg.interfaces.capture, captureFilter(cfg.services));
      try {
        this.egress = cfg.interfaces.egress === cfg.interfaces.capture ? this.capture : this.openPort(cfg.interfaces.egress, 'inbound and arp');
      } catch (e) {
        this.capture.close();
        throw e;
      }
      // A hand-over makes its new table (and everything over it) while the old lbd still
      // forwards, and takes the lock only then: frames wait in this lbd's ring for the adoption alone.
      if (statePath && handover) {
        stateFile = StateFile.unlocked(statePath, opts.stateIo ?? addonStateIo());
        this.stateFile = stateFile;
      }
      this.forwarder = new Forwarder({
        connTableSize: cfg.connection_table.size,
        timeouts: cfg.timeouts,
        defense: defenseConfig(cfg.connection_table),
        captureMac: this.capture.mac,
        egressMac: this.egress.mac,
        egress: this.egress,
        reply: this.capture,
        state: stateFile?.create(cfg.connection_table.size),
      });
      // Expiry times are on the monotonic clock, which every lbd of this boot shares: an adopted
      // entry keeps its time to live.
      this.forwarder.now = monotonicSeconds();
      // A frame with DF set larger than this is not forwarded: the client gets ICMP "fragmentation needed" (too_big).
      if (opts.openPort === undefined) this.forwarder.egressMtu = interfaceMtu(cfg.interfaces.egress);
      this.local = opts.localAddresses ?? localAddresses();
      // Real servers with the VIP on lo treat an ARP request from the VIP as a martian and stay
      // silent, so when the egress address is itself a VIP, ask with an ARP probe (0.0.0.0) instead.
      const egressIp = interfaceAddress(cfg.interfaces.egress);
      const arpSource = egressIp && !cfg.services.some((s) => s.vip === egressIp) ? ipToInt(egressIp) : 0;
      this.arp = new ArpAgent(this.forwarder, this.capture, this.egress, this.announcedVips(cfg.services), arpSource, opts.log);
      this.forwarder.onArp = (buf, len) => this.arp.handle(buf, len, this.capture);
      this.health = new HealthManager({
        forwarder: this.forwarder,
        log: opts.log,
        arp: this.arp,
        egress: { iface: cfg.interfaces.egress, mac: this.egress.mac },
        probeTable: (egressIp) => {
          if (!this.keeper) return null;
          let t = this.probeTables.get(egressIp);
          if (!t) {
            t = new LeasedTable(probeTableSpec(this.names.probeTable, cfg.interfaces.egress, egressIp), owner, HOST_LEASE_S);
            this.probeTables.set(egressIp, t);
            this.keeper.add(t);
          }
          return t;
        },
        ...opts.health,
      });
      for (const s of cfg.services) this.addService(s);
      if (stateFile && handover) {
        // Hand-over (lbd --take-over): from here on this lbd's capture holds every frame for the
        // VIPs while the old lbd still forwards them. The old one, told by SIGUSR2, stops
        // forwarding and lets go of the state file's lock; this one takes it, adopts the table as
        // the old one left it, and forwards what its ring held meanwhile: no frame is lost while
        // the ring holds them (a frame both saw is forwarded twice), and only one process writes
        // the table at any moment. Still the process that answered (a PID reused since, or one of
        // another PID namespace, is not signalled: a gone lbd's table is simply adopted).
        if (ownerAlive(handover)) process.kill(handover.pid, 'SIGUSR2');
        stateFile.lock(HANDOVER_WAIT_MS, 1);
      }
      const previous: Previous = stateFile?.previous(opts.fresh === true) ?? { kind: 'none' };
      const restarts = previous.kind === 'adoptable' ? previous.state.header.restarts + 1 : 0;
      stateFile?.setRestarts(restarts);
      const adoption: Adoption = { previous: previous.kind, flows: 0, templates: 0, rejected: this.noRejects(), restarts };
      if (previous.kind === 'set-aside') adoption.reason = previous.reason;
      if (previous.kind === 'adoptable') {
        try {
          Object.assign(adoption, this.adopt(previous.state));
          adoption.previousStopped = previous.state.header.stopped;
          adoption.previousPid = previous.state.header.pid;
        } catch (e) {
          // Whatever the previous table holds must not keep lbd from starting: start empty.
          this.forgetAdopted();
          adoption.previous = 'set-aside';
          adoption.reason = `adopting it failed: ${(e as Error).message}`;
          this.stateFile?.setAsidePrevious();
        }
      }
      this.stateFile?.commit();
      this.adoption = adoption;
    } catch (e) {
      this.stateFile?.release();
      throw e;
    }
  }

  /** An adoption that failed half-way: the tables empty again, and the counts that follow from them. */
  private forgetAdopted(): void {
    const fw = this.forwarder;
    fw.conns.clear();
    fw.templates.clear();
    const d = fw.dests;
    d.active.fill(0);
    d.inactive.fill(0);
    d.persistent.fill(0);
  }

  private noRejects(): Record<AdoptReject, number> {
    return Object.fromEntries(ADOPT_REJECTS.map((r) => [r, 0])) as Record<AdoptReject, number>;
  }

  /**
   * The previous lbd's table, entry by entry, into this one's. Its services and real servers are
   * matched to this config's by VIP:port/protocol and address; one the config no longer has is
   * treated as a reload removing it would: on_remove drain keeps it, draining (no new flows, it
   * goes once its flows end), drop leaves its flows behind. What the previous lbd knew of a
   * server (its MAC, its health verdict) is kept: no ARP wait, and a server that was down is not
   * handed new flows before its checks say it is up again.
   */
  private adopt(prev: PreviousState): { flows: number; templates: number; rejected: Record<AdoptReject, number> } {
    const tables = new PreviousTables(prev, this.forwarder.now);
    const cfg = this.running;
    const fw = this.forwarder;
    const dests = fw.dests;
    return tables.adoptInto(fw, {
      service: (old) => {
        const key = serviceKey({ vip: intToIp(old.vip), port: old.port, protocol: protocolName(old.proto) });
        const svc = this.services.get(key);
        if (svc) return svc;
        if (this.onRemove(undefined, cfg) === 'drop') return null;
        // No room to keep it draining (lbd numbers services and tracks at most MAX_SERVICES): its flows go (table_full).
        if (fw.services.count >= MAX_SERVICES || this.nextServiceIndex >= MAX_SERVICE_INDEX) return undefined;
        const gone = new VirtualService(
          this.nextServiceIndex++,
          key,
          old.vip,
          old.port,
          old.proto,
          createScheduler('rr'),
          old.persistence,
          old.persistenceMask,
        );
        gone.removed = true;
        fw.services.add(gone);
        this.services.set(key, gone);
        return gone;
      },
      dest: (old, svc) => {
        const s = cfg.services.find((x) => serviceKey(x) === serviceKey({ vip: intToIp(svc.vip), port: svc.port, protocol: protocolName(svc.proto) }));
        let rs = svc.reals.find((x) => x.addr === old.addr);
        if (!rs && s?.sorry_server && ipToInt(s.sorry_server.address) === old.addr) {
          // The sorry server: made now, as health's sync would make it, so its flows go on to it.
          this.health.syncSorry(svc, s);
          rs = svc.sorry ?? undefined;
        }
        if (!rs) {
          if (this.onRemove(s, cfg) === 'drop') return null;
          if (dests.views.length >= MAX_DESTS) return undefined;
          rs = dests.add(svc, old.addr, old.port, 0);
          rs.removed = true;
          svc.reals.push(rs);
          this.arp.track(rs);
        }
        if (old.mac && dests.macKnown[rs.index] === 0) dests.setMac(rs.index, old.mac);
        const r = s?.real_servers.find((x) => ipToInt(x.address) === old.addr);
        if (s && r && effectiveCheck(s, r) && rs.health === 'unchecked' && (old.health === DEST_HEALTH_UP || old.health === DEST_HEALTH_DOWN)) {
          rs.health = old.health === DEST_HEALTH_UP ? 'up' : 'down';
          rs.healthReason = 'adopted from the previous lbd';
        }
        return rs;
      },
    });
  }

  get log(): Logger {
    return this.opts.log;
  }

  /**
   * The VIPs to announce: those with a service that can serve, one whose real servers are up to
   * its quorum, or below it with a sorry server to take the flows. A VIP none of whose services
   * can serve is withdrawn, so that the routers send its clients to a balancer that can.
   */
  private announceableVips(): string[] {
    const out = new Set<string>();
    for (const svc of this.services.values()) {
      if (svc.removed || svc.gone) continue;
      if (!svc.belowQuorum || svc.sorry !== null) out.add(intToIp(svc.vip));
    }
    return [...out];
  }

  /**
   * A stop and the announcement: a restart (keep, hand-over) may hold the routes for the next
   * lbd (announce.hold_on_restart; a hand-over always does, briefly); otherwise, when there is
   * time for it (keep, clean), the VIPs are withdrawn first and lbd goes on forwarding for
   * announce.withdraw_delay while the routers move the flows away. A failed start or a lost
   * interface lets go at once.
   */
  private async stopAnnouncing(mode: 'keep' | 'clean' | 'failed-start' | 'interface-gone' | 'handover'): Promise<void> {
    const a = this.running.announce;
    if (!this.announcer || !a) return;
    const hold = mode === 'keep' ? a.hold_on_restart : mode === 'handover' ? Math.max(a.hold_on_restart, HANDOVER_HOLD_S) : 0;
    if (hold > 0) {
      this.log.info({ holdS: hold, interface: a.interface }, 'the VIPs stay announced for the next lbd');
      const keep = this.opts.keepForRestart;
      await this.announcer.stop(hold * 1000, keep && mode === 'keep' ? (fd) => keep(ANNOUNCE_FD_NAME, fd) : undefined);
      return;
    }
    const delayMs = this.withdrawDelayMs(mode);
    if (delayMs > 0) {
      await this.announcer.withdraw();
      this.log.info({ withdrawDelayS: a.withdraw_delay }, 'VIPs withdrawn: forwarding on while the routers move the flows away');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delayMs);
        this.hurryStop = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.hurryStop = null;
    }
    await this.announcer.stop();
  }

  /** How long a stop of this kind forwards on after withdrawing the VIPs (0: it withdraws nothing, or holds). */
  withdrawDelayMs(mode: 'keep' | 'clean' | 'failed-start' | 'interface-gone' | 'handover'): number {
    const a = this.running.announce;
    if (!this.announcer || !a || (mode !== 'keep' && mode !== 'clean') || (mode === 'keep' && a.hold_on_restart > 0)) return 0;
    return Math.round(a.withdraw_delay * 1000);
  }

  /** A second stop signal: cut the withdraw delay short. */
  hurry(): void {
    this.hurryStop?.();
  }
  private hurryStop: (() => void) | null = null;

  private announcedVips(services: ServiceConfig[]): number[] {
    return [...new Set(services.map((s) => s.vip))].filter((v) => !this.local.has(v)).map(ipToInt);
  }

  private addService(s: ServiceConfig, cfg: Config = this.running): VirtualService {
    const svc = new VirtualService(
      this.nextServiceIndex++,
      s.name,
      ipToInt(s.vip),
      s.port,
      protoNumber(s.protocol),
      createScheduler(s.scheduler, schedulerOptions(s)),
      Math.ceil(s.persistence),
      ipToInt(s.persistence_netmask),
    );
    svc.connReuseMode = this.connReuseMode(s, cfg);
    svc.onMissHash = s.on_miss === 'hash';
    for (const r of s.real_servers) this.addReal(svc, r);
    svc.changed();
    this.forwarder.services.add(svc);
    this.services.set(serviceKey(s), svc);
    return svc;
  }

  private addReal(svc: VirtualService, r: RealServerConfig): RealServer {
    const addr = ipToInt(r.address);
    // A server removed a moment ago and still draining comes back as it was, like IPVS's trash.
    // A server removed a moment ago and still draining comes back as it was (IPVS's trash);
    // one that is already there is updated, never listed twice.
    let rs = svc.reals.find((x) => x.addr === addr);
    if (rs) {
      rs.removed = false;
      this.configureReal(rs, r);
      if (svc.dests.includes(rs)) {
        if (r.mac) this.forwarder.dests.setMac(rs.index, macFromString(r.mac));
        return rs;
      }
    } else {
      rs = this.forwarder.dests.add(svc, addr, r.port, r.weight);
      this.configureReal(rs, r);
      svc.reals.push(rs);
      if (!r.mac) this.arp.track(rs);
    }
    if (r.mac) this.forwarder.dests.setMac(rs.index, macFromString(r.mac));
    svc.dests.push(rs);
    return rs;
  }

  /** What the config says about a real server's scheduling: its weight and connection thresholds. */
  private configureReal(rs: RealServer, r: RealServerConfig): void {
    rs.weight = r.weight;
    rs.setThresholds(r.u_threshold ?? 0, r.l_threshold ?? 0);
  }

  /** on_remove, what removing a real server does to its flows: the service's own, else the config's, else drain. */
  private onRemove(s: ServiceConfig | undefined, cfg: Config): 'drain' | 'drop' {
    return s?.on_remove ?? cfg.on_remove ?? (cfg.expire_nodest_conn === true ? 'drop' : 'drain');
  }

  /** conn_reuse_mode: the service's own, else the config's (default 2); the data plane reads it from the shared state. */
  private connReuseMode(s: ServiceConfig, cfg: Config): number {
    return s.conn_reuse_mode ?? cfg.conn_reuse_mode ?? CONN_REUSE_DEFAULT;
  }

  /** Takes a real server out of scheduling; its flows continue until they end (drain). */
  private removeReal(svc: VirtualService, rs: RealServer): void {
    rs.removed = true;
    svc.dests = svc.dests.filter((d) => d !== rs);
    svc.changed();
  }

  findService(key: string): VirtualService | undefined {
    const svc = this.services.get(key);
    return svc && !svc.removed ? svc : undefined;
  }

  async start(): Promise<void> {
    const { config: cfg, log } = this.opts;
    const handover = this.opts.handoverFrom !== undefined;
    if (handover) {
      // The frames that waited in the ring since the old lbd stopped go first: the guard it left
      // (leased) keeps the kernel out meanwhile, and is taken over next.
      this.health.sync(this.running, this.services);
      this.startCapture(this.capture);
    }
    // Before any change to the host: is this interface another live lbd's? (E_INSTANCE, nothing touched)
    if (this.guard) {
      const takeOver = await this.guard.claim(this.opts.handoverFrom);
      this.guardTakenOver = takeOver;
      if (takeOver && this.opts.handoverFrom) log.info({ table: `netdev ${this.names.guardTable}` }, 'the guard handed over: taking it over');
      else if (takeOver) log.warn({ table: `netdev ${this.names.guardTable}` }, 'found the guard of an lbd that is gone: taking it over');
      await this.guard.install(this.liveServices(), takeOver);
    }
    if (!handover) {
      // Health verdicts (adopted ones among them) in the data plane before the first frame.
      this.health.sync(this.running, this.services);
      this.startCapture(this.capture);
    }
    this.logAdoption();
    // Services adopted only to drain (the config no longer has them): the capture filter was
    // made from the config; capture their frames too.
    if (this.liveServices().length !== cfg.services.length) await this.refreshHost();
    if (cfg.busy_poll > 0 && this.dataplanePath !== 'native')
      log.warn({ busy_poll: cfg.busy_poll }, 'busy_poll applies to the native data plane only: ignored');
    // The local-access TAP has one name: the lbd handing over holds it until its process ends.
    if (this.opts.handoverFrom && this.running.local_access) await waitGone(this.opts.handoverFrom, HANDOVER_WAIT_MS);
    await this.setupLocalAccess();
    this.keeper?.start();
    if (this.egress !== this.capture) this.egress.start((buf, len) => this.arp.handle(buf, len, this.egress));
    this.links.watch();
    this.arp.announce();
    this.arp.resolve(true);
    await this.waitForMacs(2000);
    for (const rs of this.arp.unresolved()) {
      log.warn(
        { service: rs.service.name, real: intToIp(rs.addr), interface: cfg.interfaces.egress },
        'real server MAC not resolved yet: its flows are dropped until it answers ARP',
      );
    }
    // The lbd handing over lets go of the metrics port as it stops (first thing): wait for that.
    if (this.opts.handoverFrom) await waitGone(this.opts.handoverFrom, HANDOVER_WAIT_MS);
    if (this.opts.metrics !== false) await this.listenMetrics(cfg.metrics.listen);
    this.timers.push(setInterval(() => this.tick(), TICK_MS));
    // Last: the routers send traffic here only once every part above is ready for it.
    await this.announcer?.start();
    // A second announcement a moment later covers a neighbour that missed the first.
    this.timers.push(setTimeout(() => this.arp.announce(), 1000));
    for (const t of this.timers) t.unref?.();
    log.info(
      {
        version: VERSION,
        capture: cfg.interfaces.capture,
        egress: cfg.interfaces.egress,
        dataplane: this.dataplanePath,
        busyPollUs: this.dataplanePath === 'native' ? Math.round(cfg.busy_poll * 1e6) : 0,
        metrics: this.opts.metrics === false ? null : cfg.metrics.listen,
        connTableSize: cfg.connection_table.size,
        services: cfg.services.map((s) => ({
          name: s.name,
          vip: serviceKey(s),
          scheduler: s.scheduler,
          persistence: s.persistence,
          real_servers: s.real_servers.map((r) => `${r.address}:${r.port} w${r.weight}`),
        })),
      },
      'lbd started',
    );
  }

  /** One log line: what the previous lbd's state file gave this one. */
  private logAdoption(): void {
    const a = this.adoption;
    const file = this.stateFile?.path;
    if (!file) return;
    const rejected = Object.fromEntries(Object.entries(a.rejected).filter(([, n]) => n > 0));
    if (a.previous === 'adoptable') {
      this.log.info(
        {
          stateFile: file,
          flows: a.flows,
          templates: a.templates,
          rejected,
          restarts: a.restarts,
          previousPid: a.previousPid,
          previousStopped: a.previousStopped,
        },
        `adopted the connection table of the previous lbd (pid ${a.previousPid}, ${a.previousStopped ? 'stopped' : 'ended without stopping'}): ${a.flows} flows go on`,
      );
    } else if (a.previous === 'set-aside') {
      this.log.warn(
        { stateFile: file, setAsideAs: `${file}.rejected`, reason: a.reason },
        `state file not adopted (${a.reason}): set aside as ${file}.rejected; starting with an empty connection table`,
      );
    } else if (a.previous === 'fresh') {
      this.log.info({ stateFile: file }, '--fresh: starting with an empty connection table (the previous state file replaced)');
    } else {
      this.log.info({ stateFile: file }, 'no state file yet: starting with an empty connection table');
    }
  }

  private startCapture(port: Port): void {
    if (port instanceof NativePort) port.attach(this.forwarder);
    port.start((buf, len, vnet) => this.forwarder.process(buf, len, undefined, vnet));
    if (port instanceof NativePort) port.setBusyPoll(this.running.busy_poll);
  }

  private async listenMetrics(listen: string): Promise<void> {
    // The config validated it: parseListen cannot fail here.
    const { host, port } = parseListen(listen)!;
    const registry = createRegistry({
      forwarder: this.forwarder,
      dataplanePath: this.dataplanePath,
      version: VERSION,
      health: this.health,
      arp: this.arp,
      nativeStats: () => this.nativeStats(),
      hostRestores: this.keeper ? () => this.keeper!.restores : undefined,
      eventLoop: this.eventLoop,
      pollErrors: () => this.links.pollErrors(),
      adoption: this.stateFile ? this.adoption : undefined,
      announce: this.announcer
        ? {
            vips: () => [...new Set(this.running.services.map((s) => s.vip))],
            announced: () => this.announcer!.announced,
            lapses: () => this.announcer!.lapses,
          }
        : undefined,
    });
    try {
      this.metricsServer = await serveMetrics(registry, host, port);
    } catch (e) {
      throw new LbdError('E_METRICS', `cannot serve metrics on ${listen}: ${(e as Error).message}`);
    }
  }

  private waitForMacs(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const deadline = Date.now() + ms;
      const check = () => {
        if (this.stopped || this.arp.unresolved().length === 0 || Date.now() >= deadline) return resolve();
        this.arp.resolve(false);
        setTimeout(check, 50);
      };
      check();
    });
  }

  /**
   * Advances the coarse clock, sweeps a slice of the table, keeps MACs fresh, finishes drains.
   * Paced by elapsed time, not by tick count: a late timer (a busy event loop) sweeps a bigger
   * slice, up to a tenth of the table, so that a whole pass still takes about a second.
   */
  tick(): void {
    const fw = this.forwarder;
    const nowMs = performance.now();
    if (fw.updateDefense()) this.logDefense();
    this.opts.keepAlive?.(nowMs);
    const elapsedMs = nowMs - this.startedAt;
    fw.now = monotonicSeconds();
    const sinceMs = Math.min(Math.max(elapsedMs - this.lastSweepMs, TICK_MS), 100);
    this.lastSweepMs = elapsedMs;
    fw.sweep(Math.ceil((fw.conns.slots * sinceMs) / 1000));
    const second = Math.floor(elapsedMs / 1000);
    if (second !== this.lastSecond) {
      this.lastSecond = second;
      // Control-plane work on a timer: a failure (an interface gone, nft refusing) is logged
      // and tried again next second; it must not kill the daemon with host changes left behind.
      try {
        this.arp.resolve(second % ARP_REFRESH_S === 0);
        this.finishDrains();
        this.links.check();
        if (this.opts.openPort === undefined) this.forwarder.egressMtu = interfaceMtu(this.running.interfaces.egress);
      } catch (e) {
        this.log.error({ code: (e as LbdError).code, err: (e as Error).message }, 'periodic control-plane work failed');
      }
    }
  }

  /** One line when the SYN-flood defense turns on or off (never per frame). */
  private logDefense(): void {
    const fw = this.forwarder;
    const d = fw.defense;
    const table = { entries: fw.conns.size, capacity: fw.conns.capacity, evictions: d.evictions };
    if (d.active) {
      this.log.warn(
        { ...table, mode: d.config.mode, thresholdPercent: d.config.thresholdPercent, synRecvTimeoutS: d.config.synRecvTimeout },
        'SYN-flood defense on: half-open entries live shorter and give way to new connections',
      );
    } else {
      this.log.info(table, 'SYN-flood defense off');
    }
  }

  /** Removed real servers and services with no flow left are let go. */
  private finishDrains(): void {
    let servicesGone = false;
    for (const [key, svc] of this.services) {
      for (const rs of svc.reals) {
        if (rs.removed && !rs.gone && rs.references === 0) {
          rs.gone = true;
          this.arp.untrack(rs);
          svc.reals = svc.reals.filter((x) => x !== rs);
          this.log.info({ service: svc.name, real: intToIp(rs.addr) }, 'real server drained and removed');
        }
      }
      if (svc.removed && svc.reals.length === 0) {
        svc.gone = true;
        this.forwarder.services.remove(svc);
        this.services.delete(key);
        servicesGone = true;
        this.log.info({ service: svc.name, vip: key }, 'service drained and removed');
      }
    }
    if (servicesGone)
      this.refreshHost().catch((e: Error) => this.log.error({ code: (e as LbdError).code, err: e.message }, 'host refresh after a drain failed'));
  }

  /**
   * Applies a new config by reconciliation: only the differences change, the connection
   * table and every established flow survive. Throws ReloadError (and changes nothing)
   * when the change needs a restart.
   */
  async apply(desired: Config): Promise<Action[]> {
    const actions = plan(this.running, desired);
    const restart = actions.filter((a) => a.kind === 'restart-required');
    if (restart.length) throw new ReloadError(`not applied, restart lbd for: ${restart.map(describeAction).join('; ')}`);
    this.checkCapacity(actions);
    let servicesChanged = false;
    for (const a of actions) {
      switch (a.kind) {
        case 'log-level':
          this.log.level = a.level;
          break;
        case 'timeouts':
          this.forwarder.setTimeouts(a.timeouts);
          break;
        case 'defense':
          this.forwarder.setDefense(defenseConfig(a.table));
          break;
        case 'busy-poll':
          if (this.capture instanceof NativePort) this.capture.setBusyPoll(a.busyPoll);
          else if (a.busyPoll > 0) this.log.warn({ busy_poll: a.busyPoll }, 'busy_poll applies to the native data plane only: ignored');
          break;
        case 'metrics-listen':
          if (this.metricsServer) {
            const old = this.metricsServer;
            await this.listenMetrics(a.listen);
            old.closeAllConnections?.();
            old.close();
          }
          break;
        case 'service-add': {
          const existing = this.services.get(serviceKey(a.service));
          if (existing) {
            // Re-added while still draining: it comes back with the new settings.
            existing.removed = false;
            this.updateService(existing, a.service, desired);
            for (const r of a.service.real_servers) {
              const rs = existing.reals.find((x) => x.addr === ipToInt(r.address));
              if (!rs || rs.removed) this.addReal(existing, r);
            }
            existing.changed();
          } else {
            this.addService(a.service, desired);
          }
          servicesChanged = true;
          break;
        }
        case 'service-remove': {
          const svc = this.services.get(a.key);
          if (svc) {
            svc.removed = true;
            const drop =
              this.onRemove(
                this.running.services.find((x) => serviceKey(x) === a.key),
                desired,
              ) === 'drop';
            for (const rs of [...svc.dests]) {
              this.removeReal(svc, rs);
              if (drop) this.forwarder.expireDest(rs.index);
            }
          }
          break;
        }
        case 'service-update':
          this.updateService(this.services.get(a.key)!, a.service, desired);
          break;
        case 'conn-reuse-mode':
          for (const s of desired.services) {
            const svc = this.services.get(serviceKey(s));
            if (svc) svc.connReuseMode = this.connReuseMode(s, desired);
          }
          break;
        case 'expire-nodest-conn':
          break; // read when a real server is removed (onRemove)
        case 'real-add': {
          const svc = this.services.get(a.key)!;
          this.addReal(svc, a.real);
          svc.changed();
          break;
        }
        case 'real-remove': {
          const svc = this.services.get(a.key)!;
          const rs = svc.dests.find((x) => x.addr === ipToInt(a.address));
          if (rs) this.removeReal(svc, rs);
          if (
            rs &&
            this.onRemove(
              desired.services.find((x) => serviceKey(x) === a.key),
              desired,
            ) === 'drop'
          ) {
            const cut = this.forwarder.expireDest(rs.index);
            this.log.info({ service: svc.name, real: a.address, flows: cut }, 'on_remove: drop: flows of the removed real server cut');
          }
          break;
        }
        case 'real-update': {
          const svc = this.services.get(a.key)!;
          const rs = svc.dests.find((x) => x.addr === ipToInt(a.real.address))!;
          this.configureReal(rs, a.real);
          if (a.fields.includes('mac')) {
            if (a.real.mac) {
              this.arp.untrack(rs);
              this.forwarder.dests.setMac(rs.index, macFromString(a.real.mac));
            } else {
              this.arp.track(rs);
              this.arp.resolve(false);
            }
          }
          svc.changed();
          break;
        }
      }
      this.log.info({ change: describeAction(a) }, 'config change applied');
    }
    this.running = desired;
    if (servicesChanged) await this.refreshHost();
    // Stopped meanwhile (a hand-over, a signal): the host is the next lbd's now.
    if (this.stopped) return actions;
    // Health: restarts only the checks whose effective config changed, applies policy changes.
    this.health.sync(desired, this.services);
    return actions;
  }

  /**
   * Real-server and service indices are never reused while flows may point at them, so a
   * long-lived daemon can run out: refuse such a change whole, before anything is applied.
   */
  private checkCapacity(actions: Action[]): void {
    let dests = 0;
    let services = 0;
    for (const a of actions) {
      if (a.kind === 'real-add') dests++;
      if (a.kind === 'service-add' && !this.services.has(serviceKey(a.service))) {
        services++;
        dests += a.service.real_servers.length;
      }
    }
    if (this.forwarder.dests.views.length + dests > MAX_DESTS) {
      throw new ReloadError(`not applied: lbd tracks at most ${MAX_DESTS} real servers over its lifetime and this change needs ${dests} more; restart lbd`);
    }
    if (this.nextServiceIndex + services > MAX_SERVICE_INDEX) {
      throw new ReloadError(`not applied: lbd numbers at most ${MAX_SERVICE_INDEX} services over its lifetime; restart lbd`);
    }
  }

  private updateService(svc: VirtualService, s: ServiceConfig, cfg: Config): void {
    svc.name = s.name;
    svc.connReuseMode = this.connReuseMode(s, cfg);
    svc.onMissHash = s.on_miss === 'hash';
    // A new scheduler only when its name or options changed: an mh table rebuilt for nothing
    // costs milliseconds, and a new wrr or rr would restart its cycle.
    const options = schedulerOptions(s);
    if (svc.scheduler.name !== s.scheduler || !sameSchedulerOptions(svc.scheduler.options, options)) {
      svc.scheduler = createScheduler(s.scheduler, options);
    }
    const persistence = Math.ceil(s.persistence);
    const mask = ipToInt(s.persistence_netmask);
    if (persistence !== svc.persistence || mask !== svc.persistenceMask) {
      // Templates made under the old settings would be looked up under the new ones: drop them.
      this.forwarder.resetPersistence(svc);
      svc.persistence = persistence;
      svc.persistenceMask = mask;
      this.forwarder.services.identify(svc);
    }
    svc.changed();
  }

  /** Every service whose frames lbd must still see: configured ones and those still draining. */
  private liveServices(): { vip: string; port: number; protocol: 'tcp' | 'udp' }[] {
    return [...this.services.values()].map((s) => ({ vip: intToIp(s.vip), port: s.port, protocol: protocolName(s.proto) }));
  }

  /**
   * The set of VIPs changed: new capture filter, ARP announcements, guard elements and local
   * routes. One refresh at a time: one asked for while another runs runs again after it, from
   * the state of then (a drain and a reload may ask at once).
   */
  private refreshHost(): Promise<void> {
    return this.refresh.request();
  }

  /**
   * The capture first: the new handle opens before the old one closes, so no frame is missed (a
   * frame seen by both is forwarded twice, which TCP and UDP applications tolerate). Then the
   * host: a failed nft or ip call is logged, not thrown: the guard already holds the new
   * elements and its renewal writes them within a third of a lease; routes are rewritten by the
   * next refresh.
   */
  private async refreshHostOnce(): Promise<void> {
    if (this.stopped) return;
    const live = this.liveServices();
    this.arp.setAnnounced(this.announcedVips(this.running.services));
    const old = this.capture;
    const next = this.openPort(this.running.interfaces.capture, captureFilter(live));
    this.startCapture(next);
    this.capture = next;
    this.forwarder.reply = next;
    if (old === this.egress) {
      this.egress = next;
      this.forwarder.egress = next;
    }
    this.arp.setPorts(this.capture, this.egress);
    if (old !== next) {
      this.retireNativeStats(old);
      this.links.retire(old);
      old.close();
    }
    this.arp.announce();
    try {
      await this.guard?.update(live);
    } catch (e) {
      this.log.error({ code: (e as LbdError).code, err: (e as Error).message }, 'guard update failed: its renewal writes the new services');
    }
    if (this.stopped) return;
    try {
      await this.refreshLocalAccess(live);
    } catch (e) {
      this.log.error({ code: (e as LbdError).code, err: (e as Error).message }, 'local access routes not updated: tried again at the next change');
    }
  }

  /** VIPs the host's own connections can reach through lbd: every VIP that is not local. */
  private localAccessVips(services: { vip: string }[]): string[] {
    return [...new Set(services.map((s) => s.vip))].filter((v) => !this.local.has(v));
  }

  private async setupLocalAccess(): Promise<void> {
    if (!this.running.local_access) return;
    const egress = this.running.interfaces.egress;
    const source = interfaceAddress(egress);
    if (!source)
      throw new LbdError(
        'E_HOST',
        `local_access needs an IPv4 address on the egress interface ${egress}: the real servers answer the host's own connections there`,
      );
    await this.localAccess.setup(this.localAccessVips(this.running.services), source, interfaceMtu(egress));
    this.openLocalPort(this.liveServices());
    this.log.info(
      { interface: this.localAccess.iface, vips: this.localAccessVips(this.running.services) },
      'local access: the VIPs are reachable from this host',
    );
  }

  private openLocalPort(services: ServiceAddress[]): void {
    const port = this.openPort(this.localAccess.iface, localAccessFilter(services));
    port.start((buf, len, vnet) => this.forwarder.process(buf, len, port.mac, vnet));
    const old = this.localPort;
    this.localPort = port;
    if (old && old !== port) {
      this.links.retire(old);
      old.close();
    }
  }

  private async refreshLocalAccess(live: ServiceAddress[]): Promise<void> {
    if (!this.localAccess.active) return;
    await this.localAccess.routes(this.localAccessVips(live), interfaceAddress(this.running.interfaces.egress)!);
    if (!this.stopped) this.openLocalPort(live);
  }

  /** The native capture's counters over the daemon's life (a reload reopens the capture). */
  nativeStats(): NativeCounters | null {
    if (!(this.capture instanceof NativePort)) return null;
    const now = nativeCounters(this.capture.stats());
    const r = this.retiredNative;
    const out = { ...r };
    for (const k of Object.keys(r) as (keyof NativeCounters)[]) out[k] = r[k] + now[k];
    return out;
  }

  private retireNativeStats(port: Port): void {
    if (!(port instanceof NativePort)) return;
    const s = nativeCounters(port.stats());
    for (const k of Object.keys(s) as (keyof NativeCounters)[]) this.retiredNative[k] += s[k];
  }

  private closeMetrics(): Promise<void> {
    const srv = this.metricsServer;
    if (!srv) return Promise.resolve();
    this.metricsServer = null;
    srv.closeAllConnections?.();
    return new Promise<void>((r) => srv.close(() => r()));
  }

  /**
   * Lets go of the state file's lock, which the end of the process does anyway: for a daemon
   * stopped in a process that goes on (tests) before another one starts on the same file.
   */
  releaseStateFile(): void {
    this.stateFile?.release();
  }

  /** Fatal: logged, then the owner (lbd run) stops the daemon, undoing its host changes, and exits non-zero. */
  private fail(e: LbdError): void {
    if (this.failed || this.stopped) return;
    this.failed = true;
    this.log.error({ code: e.code, err: e.message }, 'lbd cannot go on');
    this.opts.onFatal?.(e);
  }

  /**
   * Stops capturing. What stays on the host depends on `mode`:
   *  - 'keep' (SIGTERM, SIGINT, a fatal error: every stop that may be a restart): the state file
   *    stays, marked stopped, for the next lbd to adopt, and the nftables tables stay with their
   *    leases, which lapse by themselves HOST_LEASE_S after the last renewal; a restart within
   *    that finds the VIP still guarded;
   *  - 'clean' (lbd stop --clean): every change goes at once: the guard, the probe table, the
   *    state file;
   *  - 'failed-start': start() threw: what this start made goes (the probe table, a guard it
   *    created), the state file stays (it may hold adopted flows);
   *  - 'interface-gone' (fatal): the tables go (their interface is gone), the state file stays;
   *  - 'handover' (SIGUSR2 from an lbd --take-over): as 'keep', but the state file's lock is let
   *    go at once, for the new lbd that waits for it.
   * The local-access TAP goes either way (it lives as long as the process's descriptor).
   * Safe to call twice.
   */
  async stop(mode: 'keep' | 'clean' | 'failed-start' | 'interface-gone' | 'handover' = 'keep'): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const clean = mode === 'clean';
    await this.stopAnnouncing(mode);
    this.keeper?.stop();
    if (!clean) this.guard?.abandon();
    this.eventLoop.stop();
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.capture.close();
    if (this.egress !== this.capture) this.egress.close();
    this.localPort?.close();
    this.localAccess.teardown();
    // Nothing writes the table any more: it is left as it is now. The lock stays until the
    // process ends, so that the next lbd (which waits for it) never meets this one's guard alive;
    // but a hand-over's new lbd waits for it now, and knows this one hands over.
    if (clean) this.stateFile?.remove();
    else this.stateFile?.markStopped();
    if (mode === 'handover') this.stateFile?.release();
    // A start that failed takes back what it made (a guard taken over from a dead lbd stays, leased).
    const removeGuard = clean || mode === 'interface-gone' || (mode === 'failed-start' && !this.guardTakenOver);
    // The metrics port first: a new lbd (a hand-over) binds the same one as soon as it can.
    const metricsClosed = this.closeMetrics();
    await Promise.all([
      this.health.stop(mode !== 'keep' && mode !== 'handover').catch((e: Error) => this.log.error({ err: e.message }, 'could not remove the vip probe table')),
      removeGuard ? this.guard?.remove().catch((e: Error) => this.log.error({ err: e.message }, 'could not remove the nftables guard')) : undefined,
    ]);
    await metricsClosed;
    this.log.info(
      clean
        ? { left: 'nothing' }
        : { left: { stateFile: this.stateFile?.path ?? null, guard: this.guard ? `netdev ${this.names.guardTable}` : null, leaseS: HOST_LEASE_S } },
      'lbd stopped',
    );
  }
}

/** connection_table's defense keys as the data plane takes them (syn-flood.ts). */
function defenseConfig(t: Config['connection_table']): DefenseConfig {
  return { mode: t.syn_flood_defense, thresholdPercent: t.defense_threshold, synRecvTimeout: t.defense_syn_recv_timeout };
}

/** The addon's stats as the metrics' native counters (times in seconds). */
function nativeCounters(s: NativeStats): NativeCounters {
  return {
    ringDrops: s.ringDrops,
    wakeups: s.wakeups,
    sendSyscalls: s.sendSyscalls,
    upcalls: s.upcalls,
    busyPollCatches: s.busyPollCatches,
    upcallSeconds: s.upcallNs / 1e9,
    sendSeconds: s.sendNs / 1e9,
    busySeconds: s.busyNs / 1e9,
    ringWaitSeconds: s.ringWaitNs / 1e9,
    ringWaitFrames: s.ringWaitFrames,
  };
}
