/**
 * The names of what one lbd makes on its host, derived from its capture interface: one lbd
 * balances one capture interface, so two lbds on one host (on two interfaces) never share a
 * name, and a second lbd started on the same interface finds the first one's guard by name.
 */
import { createHash } from 'node:crypto';
import { runtimeDir } from '../runtime-dir';

export interface InstanceNames {
  /** The capture interface the names derive from. */
  capture: string;
  /** `netdev lbd_<capture>`: the host guard on the capture interface. */
  guardTable: string;
  /** `netdev lbd_<capture>_probe`: keeps the kernel away from vip-check replies on the egress interface. */
  probeTable: string;
  /** The local_access interface (a TAP): `lbd-<capture>`, shortened with a hash past 15 characters. */
  localInterface: string;
  /** The announce interface (a TAP the VIP routes go through): `lbdv-<capture>`, shortened the same way. */
  announceInterface: string;
  /** The default state file (config state_file): `<runtime dir>/lbd_<capture>.state` (runtime-dir.ts: /run/lbd). */
  stateFile: string;
}

/** nftables identifiers: letters, digits and '_' here (interface names may hold '-', '.' or '@'). */
function slug(name: string): string {
  return name.replace(/[^A-Za-z0-9_]/g, '_');
}

/** Linux interface names are at most 15 characters (IFNAMSIZ - 1). */
const IFNAME_MAX = 15;

export function instanceNames(capture: string): InstanceNames {
  const hash = createHash('sha256').update(capture).digest('hex').slice(0, 4);
  const short = (prefix: string) => {
    const name = `${prefix}${capture}`;
    return name.length <= IFNAME_MAX ? name : `${prefix}${capture.slice(0, IFNAME_MAX - prefix.length - 5)}-${hash}`;
  };
  // A name the slug changed gets the hash too: eth0.100 and eth0_100 must not share a table.
  const base = slug(capture) === capture ? capture : `${slug(capture)}_${hash}`;
  return {
    capture,
    guardTable: `lbd_${base}`,
    probeTable: `lbd_${base}_probe`,
    localInterface: short('lbd-'),
    announceInterface: short('lbdv-'),
    stateFile: `${runtimeDir()}/lbd_${base}.state`,
  };
}

/** The state file an lbd with this config uses: config state_file, else the instance's default. */
export function stateFilePath(cfg: { state_file?: string; interfaces: { capture: string } }): string {
  return cfg.state_file ?? instanceNames(cfg.interfaces.capture).stateFile;
}
