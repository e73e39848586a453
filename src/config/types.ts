/**
 * The normalized, validated configuration: what `lbd check` prints and what the daemon runs.
 * Durations are seconds (numbers, may be fractional); addresses are dotted-quad strings.
 */
export type Protocol = 'tcp' | 'udp';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export type DataplaneMode = 'auto' | 'native' | 'ts';

export interface RealServerConfig {
  address: string;
  /** Always equal to the service port: Direct Routing cannot change the destination port. */
  port: number;
  /** 0 = quiesced: no new connections, existing ones continue. */
  weight: number;
  /** Lower-case aa:bb:cc:dd:ee:ff, or undefined to resolve by ARP on the egress interface. */
  mac?: string;
}

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
}

export interface Config {
  /** Path the config was read from, as given. */
  file: string;
  interfaces: { capture: string; egress: string };
  metrics: { listen: string; host: string; port: number };
  log: { level: LogLevel };
  dataplane: DataplaneMode;
  connection_table: { size: number };
  /** Seconds, like `ipvsadm --set tcp tcpfin udp`. */
  timeouts: { tcp: number; tcpfin: number; udp: number };
  services: ServiceConfig[];
}

export const DEFAULTS = {
  metricsListen: '127.0.0.1:9469',
  logLevel: 'info' as LogLevel,
  dataplane: 'auto' as DataplaneMode,
  connTableSize: 1 << 20,
  timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
  scheduler: 'wlc',
  protocol: 'tcp' as Protocol,
  weight: 1,
  persistence: 0,
  persistenceNetmask: '255.255.255.255',
};
