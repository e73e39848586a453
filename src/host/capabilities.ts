/**
 * The capabilities lbd needs, checked at start against the effective set of this process (the
 * `CapEff:` mask of /proc/self/status), so that an lbd run as an unprivileged user without them
 * stops at once with a message naming each missing one, why lbd needs it and how to give it,
 * instead of failing later on the first socket or nft command with a bare EPERM.
 *
 * lbd runs as root (every capability), or as a system user with exactly these two, e.g. from
 * systemd: User=lbd, AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN (the programs lbd runs, nft
 * and ip, inherit ambient capabilities).
 */
import * as fs from 'node:fs';
import { CapabilityError } from '../errors';

export interface Capability {
  /** As capabilities(7) and systemd spell it. */
  name: string;
  /** Its bit in the capability masks of /proc/PID/status (linux/capability.h). */
  bit: number;
  /** What lbd does with it. */
  why: string;
}

export const CAP_NET_ADMIN: Capability = {
  name: 'CAP_NET_ADMIN',
  bit: 12,
  why: 'the nftables guard table, the routes and TAP interfaces of local_access and announce, promiscuous mode and interface settings',
};

export const CAP_NET_RAW: Capability = {
  name: 'CAP_NET_RAW',
  bit: 13,
  why: 'AF_PACKET sockets: capturing the frames for the VIPs and sending the rewritten frames (and ARP)',
};

/** What lbd needs, in the order messages list them. */
export const NEEDED_CAPABILITIES: readonly Capability[] = [CAP_NET_RAW, CAP_NET_ADMIN];

/** The effective capability mask of a status file's text (/proc/PID/status), or undefined when it has none. */
export function capEffOf(statusText: string): string | undefined {
  return /^CapEff:\s*([0-9a-fA-F]+)\s*$/m.exec(statusText)?.[1];
}

/** This process's effective capability mask as hex, or undefined when /proc/self/status cannot tell. */
export function readCapEff(file = '/proc/self/status'): string | undefined {
  try {
    return capEffOf(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

/** A CapEff hex mask as a BigInt (64 bits and more); throws on text that is no hex mask. */
export function parseCapMask(hex: string): bigint {
  const h = hex.trim();
  if (!/^[0-9a-fA-F]+$/.test(h)) throw new Error(`not a capability mask: ${JSON.stringify(hex)}`);
  return BigInt(`0x${h}`);
}

/**
 * The capabilities of `needed` missing from the effective mask `capEffHex` (default: this
 * process's). Pure given the mask. When the mask cannot be read (no /proc), nothing is reported
 * missing: lbd cannot tell, and the first operation that needs one fails with its own error.
 */
export function missingCapabilities(needed: readonly Capability[] = NEEDED_CAPABILITIES, capEffHex: string | undefined = readCapEff()): Capability[] {
  if (capEffHex === undefined) return [];
  const mask = parseCapMask(capEffHex);
  return needed.filter((c) => (mask & (1n << BigInt(c.bit))) === 0n);
}

/** The message of a start refused for `missing` capabilities (euid: who lbd runs as, for the hint). */
export function capabilityMessage(missing: readonly Capability[], euid?: number): string {
  const names = missing.map((c) => c.name);
  const one = names.length === 1;
  const lines = [
    `lbd lacks ${one ? 'the capability' : 'the capabilities'} ${names.join(' and ')}:`,
    ...missing.map((c) => `  ${c.name}: ${c.why}`),
    ...(euid === 0 ? [`lbd runs as root here, but without ${one ? 'it' : 'them'}: a container, or a bounding set that dropped ${one ? 'it' : 'them'}?`] : []),
    'Give them by one of:',
    '  - running lbd as root;',
    `  - systemd: AmbientCapabilities=${NEEDED_CAPABILITIES.map((c) => c.name).join(' ')} (with User=lbd; CapabilityBoundingSet= must keep them);`,
    '  - by hand, as root: setpriv --reuid lbd --regid lbd --init-groups --inh-caps +net_raw,+net_admin --ambient-caps +net_raw,+net_admin lbd --config FILE',
    '    (or capsh --caps="cap_net_raw,cap_net_admin+eip cap_setpcap,cap_setuid,cap_setgid+ep" --keep=1 --user=lbd --addamb=cap_net_raw,cap_net_admin -- -c "lbd --config FILE");',
    '  - a container: --cap-add NET_RAW --cap-add NET_ADMIN.',
  ];
  return lines.join('\n');
}

/**
 * Throws a CapabilityError (E_CAPABILITY) naming every capability of NEEDED_CAPABILITIES missing
 * from this process's effective set (or from `capEffHex` when given). Root with its full set,
 * or a user with both as ambient capabilities, passes.
 */
export function checkCapabilities(capEffHex: string | undefined = readCapEff()): void {
  const missing = missingCapabilities(NEEDED_CAPABILITIES, capEffHex);
  if (missing.length === 0) return;
  throw new CapabilityError(
    capabilityMessage(missing, process.geteuid?.()),
    missing.map((c) => c.name),
  );
}
