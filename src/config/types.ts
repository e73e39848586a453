/**
 * The normalized, validated configuration: what `lbd check` prints and what the daemon runs.
 * Durations are seconds (numbers, may be fractional); addresses are dotted-quad strings.
 */
import { runtimeDir } from '../runtime-dir';

// The choices of each enumerated key, in the order messages list them; the types follow from them.
export const PROTOCOLS = ['tcp', 'udp'] as const;
export type Protocol = (typeof PROTOCOLS)[number];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const DATAPLANE_MODES = ['auto', 'native', 'ts'] as const;
/** SYN-flood defense (dataplane/syn-flood.ts): auto while the table is over the threshold, on, off. */
export const DEFENSE_MODES = ['auto', 'on', 'off'] as const;
export type DefenseModeName = (typeof DEFENSE_MODES)[number];
export type DataplaneMode = (typeof DATAPLANE_MODES)[number];

export interface RealServerConfig {
  address: string;
  /** Always equal to the service port: Direct Routing cannot change the destination port. */
  port: number;
  /** 0 = quiesced: no new connections, existing ones continue. */
  weight: number;
  /** Lower-case aa:bb:cc:dd:ee:ff, or undefined to resolve by ARP on the egress interface. */
  mac?: string;
  /**
   * Connection thresholds, as `ipvsadm -x/-y` (keepalived uthreshold/lthreshold); absent = 0 =
   * none. At u_threshold connections (active + inactive) the server is overloaded: no new
   * flows until it falls below l_threshold (or 3/4 of u_threshold when l_threshold is 0).
   */
  u_threshold?: number;
  l_threshold?: number;
  /** Overrides of the service's health_check for this server (absent = the service's as is). */
  health_check?: Partial<HealthCheckConfig>;
}

/** Health checks (docs/health.md). Durations in seconds. */
export const HEALTH_CHECK_TYPES = ['tcp', 'http', 'vip'] as const;
export type HealthCheckType = (typeof HEALTH_CHECK_TYPES)[number];
export interface HealthCheckConfig {
  type: HealthCheckType;
  interval: number;
  timeout: number;
  /** Consecutive successes that bring a down server up. */
  rise: number;
  /** Consecutive failures that take an up server down. */
  fall: number;
  /** http: request path. */
  path: string;
  /** http: Host header (default: the real server's address). */
  host?: string;
  /** http: accepted status codes as written, normalized: "200-299", "200", "200,301-302". */
  expect_status: string;
  /** http: a regular expression the body must match. */
  expect_body?: string;
  /** Port checked; default the service port. */
  port: number;
}
export const ON_DOWN_ACTIONS = ['reschedule', 'drop', 'keep'] as const;
export type OnDown = (typeof ON_DOWN_ACTIONS)[number];
/** A TCP segment without SYN and without an entry: drop (IPVS's sloppy_tcp=0), or hash (sloppy_tcp=1, consistent schedulers only). */
export const ON_MISS_ACTIONS = ['drop', 'hash'] as const;
export type OnMiss = (typeof ON_MISS_ACTIONS)[number];
export const INITIAL_STATES = ['up', 'down'] as const;
export type InitialState = (typeof INITIAL_STATES)[number];

export interface ServiceConfig {
  name: string;
  vip: string;
  port: number;
  protocol: Protocol;
  scheduler: string;
  /** Seconds; 0 = off. Like `ipvsadm -p`. */
  persistence: number;
  /** Client addresses are grouped by this netmask for persistence, like `ipvsadm -M`. */
  persistence_netmask: string;
  real_servers: RealServerConfig[];
  // --- Health checks (docs/health.md): absent when not written; defaults in HEALTH_DEFAULTS. ---
  health_check?: HealthCheckConfig;
  /** What happens to the existing flows of a server that goes down (default reschedule). */
  on_down?: OnDown;
  /** Down = weight 0 instead of the DOWN flag (keepalived's inhibit_on_failure). */
  inhibit_on_failure?: boolean;
  /** Fewer servers up than this: new flows go to the sorry server (default 1). */
  quorum?: number;
  sorry_server?: { address: string; mac?: string };
  /** State of a server before its first check verdict (default up, like keepalived without alpha). */
  initial_state?: InitialState;
  /** What removing a real server does to its flows (lbd server remove, a reload); absent = Config.on_remove. */
  on_remove?: OnRemove;
  /** conn_reuse_mode of this service (0, 1, 2); absent = Config.conn_reuse_mode. */
  conn_reuse_mode?: number;
  // --- Scheduler options (IPVS's -b flags), each valid with its scheduler only; absent = off. ---
  /** mh: the Maglev lookup table's size (MH_TABLE_SIZES); absent = 65537. */
  mh_table_size?: number;
  mh_fallback?: boolean;
  mh_port?: boolean;
  sh_fallback?: boolean;
  sh_port?: boolean;
  /** A TCP segment without SYN and without an entry (absent = drop); hash only with mh or sh. */
  on_miss?: OnMiss;
}

/**
 * A service's identity, VIP:port/protocol: what the data plane matches frames on, and so what
 * the config, the daemon, the admin socket, health checks and metrics key services by.
 */
export function serviceKey(s: { vip: string; port: number; protocol: string }): string {
  return `${s.vip}:${s.port}/${s.protocol}`;
}

export interface Config {
  /** Path the config was read from, as given. */
  file: string;
  interfaces: { capture: string; egress: string };
  metrics: { listen: string; host: string; port: number };
  log: { level: LogLevel };
  dataplane: DataplaneMode;
  /**
   * Seconds the native path keeps polling its capture ring after it ran dry, before sleeping
   * in epoll again (like net.core.busy_poll): lower latency at low load for CPU. 0 = off.
   */
  busy_poll: number;
  connection_table: {
    size: number;
    syn_flood_defense: DefenseModeName;
    /** Percent of the table's capacity from which auto turns the defense on. */
    defense_threshold: number;
    /** Seconds a SYN_RECV entry lives while the defense is on. */
    defense_syn_recv_timeout: number;
  };
  /** Seconds, like `ipvsadm --set tcp tcpfin udp`. */
  timeouts: { tcp: number; tcpfin: number; udp: number };
  services: ServiceConfig[];
  /** Make the VIPs reachable from the balancer itself (a TAP interface lbd-<capture> + /32 routes). */
  local_access: boolean;
  /**
   * The admin socket the CLI talks to (docs/operations.md), mode 0660, and its group: a name
   * (looked up in /etc/group when the socket is made) or a gid; absent = lbd's primary group.
   */
  admin: { socket: string; group?: string | number };
  /** Default for every service: removing a real server drains it (default) or drops its flows. Absent = drain. */
  on_remove?: OnRemove;
  /**
   * Like IPVS's net.ipv4.vs.conn_reuse_mode, for every service without its own: 0 = a SYN on a
   * client port whose entry is still in the table reuses it; 1 = one in TIME_WAIT or CLOSE is
   * rescheduled; 2 (lbd's default, IPVS's is 1) = also one in FIN_WAIT.
   */
  conn_reuse_mode: number;
  /** Like IPVS's expire_nodest_conn: the on_remove of services that set none is drop. Absent = false. */
  expire_nodest_conn?: boolean;
  /** The memory-mapped state file the connection table lives in (adopted by the next lbd). Absent = /run/lbd/lbd_<capture>.state. */
  state_file?: string;
  /** Announcing the VIPs to a routing daemon (BIRD) through kernel routes that die with lbd; absent = none. */
  announce?: AnnounceConfig;
}

/** Durations in seconds. */
export interface AnnounceConfig {
  /** The TAP interface the VIP routes go through (exists while lbd lives); default lbdv-<capture>. */
  interface: string;
  /** The kernel routing table the routes go into, where the routing daemon learns them. */
  table: number;
  /** A stop that keeps the state (SIGTERM, lbd stop): the routes stay this long for the next lbd; 0 = withdraw. */
  hold_on_restart: number;
  /** A stop that withdraws: withdraw, keep forwarding this long while the routers move away, then stop. */
  withdraw_delay: number;
  /** lbd's event loop stalled this long (a hang, SIGSTOP): the keeper lets go and the routes go. */
  hang_timeout: number;
}

/** drain: flows of a removed real server continue until they end; drop: they are cut (IPVS expire_nodest_conn). */
export const ON_REMOVE_ACTIONS = ['drain', 'drop'] as const;
export type OnRemove = (typeof ON_REMOVE_ACTIONS)[number];

export const DEFAULTS = {
  metricsListen: '127.0.0.1:9469',
  logLevel: 'info' as LogLevel,
  dataplane: 'auto' as DataplaneMode,
  connTableSize: 1 << 20,
  synFloodDefense: 'auto' as DefenseModeName,
  defenseThreshold: 75,
  defenseSynRecvTimeout: 5,
  timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
  scheduler: 'wlc',
  protocol: 'tcp' as Protocol,
  weight: 1,
  persistence: 0,
  persistenceNetmask: '255.255.255.255',
  adminSocket: `${runtimeDir()}/lbd.sock`,
  onRemove: 'drain' as OnRemove,
  connReuseMode: 2,
  announceTable: 4242,
  announceHold: 0,
  announceWithdrawDelay: 2,
  announceHangTimeout: 1,
};

export const HEALTH_DEFAULTS = {
  interval: 2,
  timeout: 1,
  rise: 2,
  fall: 2,
  path: '/',
  expectStatus: '200-299',
  onDown: 'reschedule' as OnDown,
  inhibitOnFailure: false,
  quorum: 1,
  initialState: 'up' as InitialState,
};
