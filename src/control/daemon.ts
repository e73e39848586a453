import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Config, ServiceConfig } from '../config/types';
import { Forwarder } from '../dataplane/forwarder';
import { HostGuard, interfaceAddress, localAddresses } from '../dataplane/host';
import { CapPort, Port } from '../dataplane/io';
import { intToIp, ipToInt, macFromString } from '../dataplane/packet';
import { VirtualService, protoNumber } from '../dataplane/services';
import { createScheduler } from '../scheduler/index';
import { createRegistry, serveMetrics } from '../metrics/metrics';
import { ArpAgent } from './arp-agent';
import { VERSION } from '../version';

export interface DaemonOptions {
  config: Config;
  log: Logger;
  /** Opens a port on an interface with a BPF filter; tests pass in-memory ports. */
  openPort?: (iface: string, filter: string) => Port;
  /** Install the nftables guard (default true). */
  hostGuard?: boolean;
  /** Serve /metrics (default true). */
  metrics?: boolean;
  /** Addresses treated as local (default: the host's); a local VIP is not announced by ARP. */
  localAddresses?: Set<string>;
}

/** How often the coarse clock advances and a slice of the connection table is swept. */
const TICK_MS = 100;
/** A full sweep of the table takes this many ticks (one second). */
const SWEEP_TICKS = 10;
/** Unresolved real-server MACs are asked for every second; resolved ones re-checked this often. */
const ARP_REFRESH_S = 30;

/** The capture filter: inbound VIP traffic of every service, and ARP. */
export function captureFilter(services: ServiceConfig[]): string {
  const vipTerms = services.map((s) => `(dst host ${s.vip} and ${s.protocol} dst port ${s.port})`);
  return `inbound and (arp or ${vipTerms.join(' or ')})`;
}

/**
 * The daemon: wires the config to a forwarder, the capture and egress ports, ARP, the
 * host guard and metrics; owns the timers; undoes every host change on stop().
 */
export class Daemon {
  readonly forwarder: Forwarder;
  readonly capture: Port;
  readonly egress: Port;
  readonly arp: ArpAgent;
  readonly dataplanePath = 'ts';
  private readonly guard: HostGuard | null;
  private metricsServer: Server | null = null;
  private timers: NodeJS.Timeout[] = [];
  private readonly startedAt = Date.now();
  private ticks = 0;
  private stopped = false;

  constructor(private readonly opts: DaemonOptions) {
    const cfg = opts.config;
    const open = opts.openPort ?? ((iface: string, filter: string) => new CapPort(iface, filter));
    this.capture = open(cfg.interfaces.capture, captureFilter(cfg.services));
    try {
      this.egress = cfg.interfaces.egress === cfg.interfaces.capture ? this.capture : open(cfg.interfaces.egress, 'inbound and arp');
    } catch (e) {
      this.capture.close();
      throw e;
    }
    this.forwarder = new Forwarder({
      connTableSize: cfg.connection_table.size,
      timeouts: cfg.timeouts,
      captureMac: this.capture.mac,
      egressMac: this.egress.mac,
      egress: this.egress,
    });
    const local = opts.localAddresses ?? localAddresses();
    const announced = [...new Set(cfg.services.map((s) => s.vip))].filter((v) => !local.has(v)).map(ipToInt);
    // Real servers with the VIP on lo treat an ARP request from the VIP as a martian and stay
    // silent, so when the egress address is a VIP (the seed's setup) ask with an ARP probe (0.0.0.0).
    const egressIp = interfaceAddress(cfg.interfaces.egress);
    const arpSource = egressIp && !cfg.services.some((s) => s.vip === egressIp) ? ipToInt(egressIp) : 0;
    this.arp = new ArpAgent(this.forwarder, this.capture, this.egress, announced, arpSource, opts.log);
    this.forwarder.onArp = (buf, len) => this.arp.handle(buf, len, this.capture);
    cfg.services.forEach((s, i) => this.addService(i, s));
    this.guard = opts.hostGuard === false ? null : new HostGuard(cfg.interfaces.capture);
  }

  private addService(index: number, s: ServiceConfig): void {
    const svc = new VirtualService(
      index,
      s.name,
      ipToInt(s.vip),
      s.port,
      protoNumber(s.protocol),
      createScheduler(s.scheduler),
      Math.ceil(s.persistence),
      ipToInt(s.persistence_netmask),
    );
    for (const r of s.real_servers) {
      const rs = this.forwarder.dests.add(svc, ipToInt(r.address), r.port, r.weight);
      if (r.mac) this.forwarder.dests.setMac(rs.index, macFromString(r.mac));
      else this.arp.track(rs);
      svc.dests.push(rs);
    }
    svc.changed();
    this.forwarder.services.add(svc);
  }

  async start(): Promise<void> {
    const { config: cfg, log } = this.opts;
    this.guard?.install(cfg.services);
    this.capture.start((buf, len) => this.forwarder.process(buf, len));
    if (this.egress !== this.capture) this.egress.start((buf, len) => this.arp.handle(buf, len, this.egress));
    this.arp.announce();
    this.arp.resolve(true);
    await this.waitForMacs(2000);
    for (const rs of this.arp.unresolved()) {
      log.warn({ service: rs.service.name, real: intToIp(rs.addr), interface: cfg.interfaces.egress }, 'real server MAC not resolved yet: its flows are dropped until it answers ARP');
    }
    if (this.opts.metrics !== false) {
      const registry = createRegistry({ forwarder: this.forwarder, dataplanePath: this.dataplanePath, version: VERSION });
      this.metricsServer = await serveMetrics(registry, cfg.metrics.host, cfg.metrics.port);
    }
    this.timers.push(setInterval(() => this.tick(), TICK_MS));
    // A second announcement a moment later covers a neighbour that missed the first.
    this.timers.push(setTimeout(() => this.arp.announce(), 1000));
    for (const t of this.timers) t.unref?.();
    log.info(
      {
        version: VERSION,
        capture: cfg.interfaces.capture,
        egress: cfg.interfaces.egress,
        dataplane: this.dataplanePath,
        metrics: this.opts.metrics === false ? null : cfg.metrics.listen,
        connTableSize: cfg.connection_table.size,
        services: cfg.services.map((s) => ({
          name: s.name,
          vip: `${s.vip}:${s.port}/${s.protocol}`,
          scheduler: s.scheduler,
          persistence: s.persistence,
          real_servers: s.real_servers.map((r) => `${r.address}:${r.port} w${r.weight}`),
        })),
      },
      'lbd started',
    );
  }

  private waitForMacs(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const deadline = Date.now() + ms;
      const check = () => {
        if (this.arp.unresolved().length === 0 || Date.now() >= deadline) return resolve();
        this.arp.resolve(false);
        setTimeout(check, 50);
      };
      check();
    });
  }

  /** Advances the coarse clock, sweeps a slice of the table, keeps MACs fresh. */
  tick(): void {
    const fw = this.forwarder;
    fw.now = 1 + Math.floor((Date.now() - this.startedAt) / 1000);
    fw.sweep(Math.ceil(fw.conns.slots / SWEEP_TICKS));
    this.ticks++;
    if (this.ticks % SWEEP_TICKS === 0) this.arp.resolve(this.ticks % (SWEEP_TICKS * ARP_REFRESH_S) === 0);
  }

  /** Stops capturing and undoes every change made to the host. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.capture.close();
    if (this.egress !== this.capture) this.egress.close();
    try {
      this.guard?.remove();
    } catch (e) {
      this.opts.log.error({ err: (e as Error).message }, 'could not remove the nftables guard');
    }
    if (this.metricsServer) {
      const srv = this.metricsServer;
      this.metricsServer = null;
      srv.closeAllConnections?.();
      await new Promise<void>((r) => srv.close(() => r()));
    }
    this.opts.log.info('lbd stopped');
  }
}
