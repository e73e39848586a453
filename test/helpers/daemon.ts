import pino from 'pino';
import { parseConfig } from '../../src/config/load';
import { Daemon } from '../../src/control/daemon';
import type { AnnounceHost } from '../../src/host/announce';
import { MemoryPort } from '../../src/dataplane/io';
import { macFromString } from '../../src/dataplane/packet';
import { MAC } from './frames';

export interface TestDaemon {
  daemon: Daemon;
  capture: MemoryPort;
  egress: MemoryPort;
  /** Injects a frame on the capture port and returns the frames sent by it (new ones only). */
  send(frame: Buffer): Buffer[];
}

/** A whole daemon on in-memory ports: no capture, no nftables, no metrics server. */
export async function testDaemon(
  yaml: string,
  opts: {
    twoPorts?: boolean;
    stateFile?: string;
    fresh?: boolean;
    announceHost?: AnnounceHost;
    keepForRestart?: (name: string, fd: number) => boolean;
  } = {},
): Promise<TestDaemon> {
  const config = parseConfig(yaml, 'test.yaml');
  const capture = new MemoryPort(config.interfaces.capture, macFromString(MAC.balancer));
  const egress = opts.twoPorts ? new MemoryPort(config.interfaces.egress, macFromString('02:00:00:00:0e:01')) : capture;
  const daemon = new Daemon({
    config,
    log: pino({ level: 'silent' }),
    openPort: (iface) => (iface === config.interfaces.capture ? capture : egress),
    hostGuard: false,
    metrics: false,
    localAddresses: new Set(['10.0.10.30']),
    stateFile: opts.stateFile,
    fresh: opts.fresh,
    announceHost: opts.announceHost,
    keepForRestart: opts.keepForRestart,
  });
  await daemon.start();
  return {
    daemon,
    capture,
    egress,
    send(frame: Buffer) {
      const before = egress.sent.length;
      capture.inject(frame);
      return egress.sent.slice(before);
    },
  };
}

export const BASE_CONFIG = (
  extra: { scheduler?: string; persistence?: string; weights?: [number, number]; protocol?: string; port?: number; size?: number } = {},
) => `
interfaces:
  capture: veth-test
log:
  level: silent
connection_table:
  size: ${extra.size ?? 1024}
services:
  - name: web
    vip: 10.0.10.100
    port: ${extra.port ?? 80}
    protocol: ${extra.protocol ?? 'tcp'}
    scheduler: ${extra.scheduler ?? 'rr'}
    persistence: ${extra.persistence ?? '0'}
    real_servers:
      - address: 10.0.10.40
        weight: ${extra.weights?.[0] ?? 1}
        mac: ${MAC.rs40}
      - address: 10.0.10.111
        weight: ${extra.weights?.[1] ?? 1}
        mac: ${MAC.rs111}
`;

/** The start of a config with one tcp service "web" on 10.0.10.100:80 (rr): real servers and service keys follow. */
export const WEB_SERVICE_HEAD = `
interfaces:
  capture: veth-test
log:
  level: silent
services:
  - name: web
    vip: 10.0.10.100
    port: 80
    scheduler: rr
`;
