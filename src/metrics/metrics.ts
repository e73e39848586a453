import http from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { serviceKey } from '../config/types';
import { CONN_STATE_NAMES, Counter as C, DROP_REASONS } from '../dataplane/contract';
import type { Forwarder } from '../dataplane/forwarder';
import { ICMP_KIND_NAMES, ICMP_RESULT_NAMES } from '../dataplane/icmp';
import { intToIp } from '../dataplane/packet';
import { protocolName } from '../dataplane/services';
import { DEST_F_OVERLOAD } from '../scheduler/index';

export interface MetricsSource {
  forwarder: Forwarder;
  /** 'ts' or 'native': which data-plane path forwards frames. */
  dataplanePath: string;
  version: string;
  /** Health metrics (src/health/manager.ts): registered into the same registry. */
  health?: { register(registry: Registry): void };
  /** ARP metrics (src/control/arp-agent.ts): frames received by outcome, frames sent. */
  arp?: { register(registry: Registry): void };
  /** The native capture's own counters, summed over its lifetime; null on the TypeScript path. */
  nativeStats?: () => NativeCounters | null;
  /** Socket errors of the capture rings (both paths), by interface, over the daemon's life. */
  pollErrors?: () => ReadonlyMap<string, number>;
  /** lbd's nftables tables put back after someone else changed them, by table role (host/host-keeper.ts). */
  hostRestores?: () => ReadonlyMap<string, number>;
  /** The event loop's delay histogram (event-loop.ts). */
  eventLoop?: { register(registry: Registry): void };
  /** VIP announcement (host/announce.ts): the VIPs that could be announced, those that are, and the keeper's lapses; absent without announce. */
  announce?: { vips: () => string[]; announced: () => ReadonlySet<string>; lapses: () => number };
  /** What this start adopted from the previous lbd's state file; absent without a state file. */
  adoption?: { flows: number; templates: number; rejected: Readonly<Record<string, number>>; restarts: number };
}

export interface NativeCounters {
  ringDrops: number;
  wakeups: number;
  sendSyscalls: number;
  upcalls: number;
  busyPollCatches: number;
  upcallSeconds: number;
  sendSeconds: number;
  busySeconds: number;
  ringWaitSeconds: number;
  ringWaitFrames: number;
}

/** Native-path counters, exported only while the native path runs. */
const NATIVE_COUNTERS: [keyof NativeCounters, string, string][] = [
  ['ringDrops', 'lbd_native_capture_dropped_packets_total', 'Frames the kernel could not queue to the native capture ring: lost before lbd saw them.'],
  ['wakeups', 'lbd_native_wakeups_total', 'Wake-ups of the native capture loop (frames per wake-up = received / wakeups).'],
  ['sendSyscalls', 'lbd_native_send_syscalls_total', 'sendmmsg system calls of the native path (frames per call = forwarded / calls).'],
  ['upcalls', 'lbd_native_upcalls_total', 'Calls from the native path up into TypeScript (new flows, flows of down servers).'],
  ['upcallSeconds', 'lbd_native_upcall_seconds_total', 'Time in those calls (seconds per upcall = this / lbd_native_upcalls_total).'],
  ['sendSeconds', 'lbd_native_send_seconds_total', "Time in the native path's sendmmsg calls, with the kernel's delivery of the frames that runs inside them."],
  [
    'busySeconds',
    'lbd_native_busy_seconds_total',
    "Time the native loop's wake-ups worked: parsing, lookups and rewrites, upcalls and sends (and busy_poll's spinning).",
  ],
  [
    'ringWaitSeconds',
    'lbd_native_ring_wait_seconds_total',
    'Time received frames waited in the capture ring until the wake-up that took them, summed (the mean = this / lbd_native_ring_wait_frames_total): how long lbd took to be scheduled.',
  ],
  ['ringWaitFrames', 'lbd_native_ring_wait_frames_total', 'Frames in lbd_native_ring_wait_seconds_total (those with a plausible kernel receive time).'],
  [
    'busyPollCatches',
    'lbd_native_busy_poll_catches_total',
    'Times the native loop, busy-polling its dry ring (busy_poll), caught the next frame: each a sleep and wake-up saved.',
  ],
];

/**
 * Prometheus metrics. Nothing here runs per packet: every value is read from the data
 * plane's plain counters inside collect(), at scrape time.
 */
export function createRegistry(src: MetricsSource): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // prom-client names three gauges *_total, which promtool (rightly) rejects for non-counters.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const f = () => src.forwarder;

  const realLabels = ['service', 'real'] as const;
  // Each per-real-server metric reads one typed array of the dest table.
  const perReal = (make: (cfg: any) => Counter<string> | Gauge<string>, name: string, help: string, read: (fw: Forwarder, index: number) => number) =>
    make({
      name,
      help,
      labelNames: realLabels,
      registers: [registry],
      collect(this: any) {
        this.reset();
        const fw = f();
        for (const rs of fw.dests.views) {
          if (rs.gone) continue;
          const labels = { service: rs.service.name, real: `${intToIp(rs.addr)}:${rs.port}` };
          if (this instanceof Counter) this.inc(labels, read(fw, rs.index));
          else this.set(labels, read(fw, rs.index));
        }
      },
    });
  const counter = (cfg: any) => new Counter(cfg);
  const gauge = (cfg: any) => new Gauge(cfg);

  perReal(counter, 'lbd_real_server_connections_total', 'Connections scheduled to the real server (ipvsadm --stats Conns).', (fw, i) => fw.dests.conns[i]);
  perReal(gauge, 'lbd_real_server_active_connections', 'ESTABLISHED connections on the real server (ipvsadm ActiveConn).', (fw, i) => fw.dests.active[i]);
  perReal(
    gauge,
    'lbd_real_server_inactive_connections',
    'Other connection entries on the real server, UDP included (ipvsadm InActConn).',
    (fw, i) => fw.dests.inactive[i],
  );
  perReal(gauge, 'lbd_real_server_persistent_clients', 'Persistence templates pointing at the real server.', (fw, i) => fw.dests.persistent[i]);
  perReal(counter, 'lbd_real_server_packets_total', 'Frames forwarded to the real server.', (fw, i) => fw.dests.packets[i]);
  perReal(counter, 'lbd_real_server_bytes_total', 'Bytes (Ethernet frames) forwarded to the real server.', (fw, i) => fw.dests.bytes[i]);
  perReal(gauge, 'lbd_real_server_weight', 'Current weight of the real server; 0 = quiesced.', (fw, i) => fw.dests.views[i].weight);
  perReal(
    gauge,
    'lbd_real_server_overloaded',
    '1 while the real server is at its u_threshold connections and takes no new ones (until below l_threshold).',
    (fw, i) => ((fw.dests.views[i].flags & DEST_F_OVERLOAD) !== 0 ? 1 : 0),
  );
  perReal(gauge, 'lbd_real_server_mac_resolved', "1 when the real server's MAC address is known.", (fw, i) => fw.dests.macKnown[i]);

  const perService = (name: string, help: string, read: (s: { conns: number; packets: number; bytes: number; missScheduled: number }) => number) =>
    new Counter({
      name,
      help,
      labelNames: ['service', 'vip'],
      registers: [registry],
      collect() {
        this.reset();
        for (const s of f().services.all) {
          if (!s || s.gone) continue;
          const vip = serviceKey({ vip: intToIp(s.vip), port: s.port, protocol: protocolName(s.proto) });
          this.inc({ service: s.name, vip }, read(s));
        }
      },
    });
  perService('lbd_service_connections_total', 'Connections scheduled for the virtual service.', (s) => s.conns);
  perService('lbd_service_packets_total', 'Frames forwarded for the virtual service.', (s) => s.packets);
  perService('lbd_service_bytes_total', 'Bytes forwarded for the virtual service.', (s) => s.bytes);
  perService(
    'lbd_service_on_miss_scheduled_total',
    'TCP connections picked up mid-stream (on_miss: hash): a segment without SYN found no entry and the hash chose its real server, as another balancer did. Also counted in lbd_service_connections_total.',
    (s) => s.missScheduled,
  );

  new Counter({
    name: 'lbd_dropped_packets_total',
    help: 'Frames dropped by the data plane, by reason.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      const drops = f().drops;
      DROP_REASONS.forEach((reason, i) => this.inc({ reason }, drops[i]));
    },
  });
  // A counter without labels, read at scrape time; undefined is no sample (the native counters on the TypeScript path).
  const scrapedCounter = (name: string, help: string, read: () => number | undefined) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        const v = read();
        if (v !== undefined) this.inc(v);
      },
    });
  const globalCounter = (name: string, help: string, index: C) => scrapedCounter(name, help, () => f().counters[index]);
  globalCounter('lbd_received_packets_total', 'Frames the capture delivered to the data plane.', C.RxFrames);
  globalCounter('lbd_received_bytes_total', 'Bytes the capture delivered to the data plane.', C.RxBytes);
  globalCounter('lbd_forwarded_packets_total', 'Frames forwarded to real servers.', C.TxFrames);
  globalCounter('lbd_forwarded_bytes_total', 'Bytes forwarded to real servers.', C.TxBytes);
  globalCounter('lbd_arp_packets_total', 'ARP frames handled by the control plane.', C.ArpFrames);
  globalCounter('lbd_expired_connections_total', 'Connection entries removed by timeout.', C.ExpiredConns);
  globalCounter('lbd_super_frames_total', 'Super-frames (GSO/GRO, up to 64 KiB, with a virtio-net header) received.', C.SuperFrames);
  globalCounter(
    'lbd_software_segments_total',
    'Segments lbd cut from super-frames itself, for an egress that could not take the virtio-net header (the TypeScript path).',
    C.SoftwareSegments,
  );
  new Counter({
    name: 'lbd_icmp_errors_total',
    help: 'ICMP errors to a VIP about a reply (type: frag_needed, dest_unreachable, time_exceeded), by result: forwarded to the real server holding the flow, unknown_flow (dropped), rate_limited (dropped).',
    labelNames: ['type', 'result'],
    registers: [registry],
    collect() {
      this.reset();
      const icmp = f().icmp.errors;
      ICMP_KIND_NAMES.forEach((type, k) => ICMP_RESULT_NAMES.forEach((result, r) => this.inc({ type, result }, icmp[k * ICMP_RESULT_NAMES.length + r])));
    },
  });
  globalCounter(
    'lbd_icmp_too_big_sent_total',
    'ICMP "fragmentation needed" sent to clients for frames with DF set larger than the egress MTU (too_big).',
    C.IcmpTooBigSent,
  );
  scrapedCounter(
    'lbd_icmp_too_big_rate_limited_total',
    'ICMP "fragmentation needed" not sent to a client because of the rate limit (the frame is dropped too_big all the same).',
    () => f().icmp.tooBigRateLimited,
  );

  new Gauge({
    name: 'lbd_conn_table_entries',
    help: 'Entries in the connection table.',
    registers: [registry],
    collect() {
      this.set(f().conns.size);
    },
  });
  new Gauge({
    name: 'lbd_syn_flood_defense',
    help: '1 while the SYN-flood defense is on (connection_table.syn_flood_defense): half-open entries live defense_syn_recv_timeout and give way to new connections.',
    registers: [registry],
    collect() {
      this.set(f().defense.active ? 1 : 0);
    },
  });
  scrapedCounter('lbd_syn_flood_defense_activations_total', 'Times the SYN-flood defense turned on.', () => f().defense.activations);
  scrapedCounter(
    'lbd_syn_flood_evictions_total',
    'Unestablished (NONE, SYN_RECV) entries evicted from a full connection table for a new connection.',
    () => f().defense.evictions,
  );
  new Gauge({
    name: 'lbd_conn_table_capacity',
    help: 'Capacity of the connection table (connection_table.size).',
    registers: [registry],
    collect() {
      this.set(f().conns.capacity);
    },
  });
  new Gauge({
    name: 'lbd_connections_by_state',
    help: 'Connection entries by IPVS state.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      const counts = new Array<number>(CONN_STATE_NAMES.length).fill(0);
      const t = f().conns;
      for (let i = 0; i < t.slots; i++) if (t.dest[i] >= 0) counts[t.state[i]]++;
      counts.forEach((n, s) => {
        if (n > 0) this.set({ state: CONN_STATE_NAMES[s] }, n);
      });
    },
  });
  for (const [key, name, help] of src.dataplanePath === 'native' ? NATIVE_COUNTERS : []) scrapedCounter(name, help, () => src.nativeStats?.()?.[key]);
  if (src.pollErrors) {
    const pollErrors = src.pollErrors;
    new Counter({
      name: 'lbd_capture_poll_errors_total',
      help: 'Socket errors on a capture ring, by interface: its link went down (or was deleted). Both data paths clear the error and capture on.',
      labelNames: ['interface'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [iface, n] of pollErrors()) this.inc({ interface: iface }, n);
      },
    });
  }
  new Gauge({
    name: 'lbd_dataplane_info',
    help: 'The data-plane path forwarding frames (ts or native); the value is always 1.',
    labelNames: ['path'],
    registers: [registry],
    collect() {
      this.reset();
      this.set({ path: src.dataplanePath }, 1);
    },
  });
  new Gauge({
    name: 'lbd_build_info',
    help: 'lbd version; the value is always 1.',
    labelNames: ['version'],
    registers: [registry],
    collect() {
      this.set({ version: src.version }, 1);
    },
  });
  if (src.hostRestores) {
    const restores = src.hostRestores;
    new Counter({
      name: 'lbd_host_table_restores_total',
      help: "Times one of lbd's nftables tables (table: guard, probe) was found changed or deleted by someone else and put back.",
      labelNames: ['table'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [table, n] of restores()) this.inc({ table }, n);
      },
    });
  }
  if (src.announce) {
    const an = src.announce;
    new Gauge({
      name: 'lbd_vip_announced',
      help: "1 while the VIP's route is in the announce table (a service on it can serve), 0 while withdrawn.",
      labelNames: ['vip'],
      registers: [registry],
      collect() {
        this.reset();
        const on = an.announced();
        for (const vip of an.vips()) this.set({ vip }, on.has(vip) ? 1 : 0);
      },
    });
    new Counter({
      name: 'lbd_announce_lapses_total',
      help: 'Times the announce keeper let go while lbd ran (its event loop stalled past announce.hang_timeout): the VIPs were withdrawn until lbd announced them again.',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(an.lapses());
      },
    });
  }
  if (src.adoption) {
    const a = src.adoption;
    new Gauge({
      name: 'lbd_state_adopted_entries',
      help: "Entries of the previous lbd's state file adopted at start (kind: connection, template): flows that went on across the restart.",
      labelNames: ['kind'],
      registers: [registry],
      collect() {
        this.set({ kind: 'connection' }, a.flows);
        this.set({ kind: 'template' }, a.templates);
      },
    });
    new Gauge({
      name: 'lbd_state_rejected_entries',
      help: "Entries of the previous lbd's state file not adopted at start, by reason (corrupt, misplaced, duplicate, expired, removed, persistence_changed, table_full).",
      labelNames: ['reason'],
      registers: [registry],
      collect() {
        for (const [reason, n] of Object.entries(a.rejected)) this.set({ reason }, n);
      },
    });
    new Counter({
      name: 'lbd_state_restarts_total',
      help: 'Restarts this connection table has lived through: lbds before this one that wrote it (from the state file; 0 for a new table).',
      registers: [registry],
      collect() {
        this.reset();
        this.inc(a.restarts);
      },
    });
  }
  src.eventLoop?.register(registry);
  src.health?.register(registry);
  src.arp?.register(registry);
  return registry;
}

/** Serves /metrics on host:port; resolves once listening. */
export function serveMetrics(registry: Registry, host: string, port: number): Promise<http.Server> {
  const server = http.createServer(async (req, res) => {
    if (req.url === '/metrics' || req.url?.startsWith('/metrics?')) {
      try {
        const body = await registry.metrics();
        res.writeHead(200, { 'Content-Type': registry.contentType });
        res.end(body);
      } catch (e) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end(String((e as Error).message));
      }
      return;
    }
    res.writeHead(req.url === '/' ? 200 : 404, { 'Content-Type': 'text/plain' });
    res.end(req.url === '/' ? 'lbd: metrics at /metrics\n' : 'not found\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
