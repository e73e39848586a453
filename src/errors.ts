/**
 * Every error lbd reports on purpose is an LbdError with a stable code, so that scripts and
 * tests can tell failures apart without matching message text. The codes are one closed set:
 * a new kind of failure adds its code here, with what it means.
 */
export const ERROR_CODES = [
  // The config and what it asks of the host.
  'E_CONFIG', // a config (a file, or the running one with a runtime change made) fails validation; every problem is located
  'E_SCHEDULER', // a scheduler name that is not one of lbd's
  'E_IMPORT', // ipvsadm rules lbd import-ipvsadm cannot turn into a config (NAT, tunnel, fwmark, IPv6, …)
  'E_RELOAD', // a reload or runtime change the running daemon cannot apply without a restart
  // Capture, forwarding and the host.
  'E_BINDING', // no native binding loads: lbd cannot capture or send at all
  'E_CAPTURE', // a capture or send handle cannot be opened on an interface (no such interface, bad filter, no privilege)
  'E_NATIVE', // the native fast path cannot run (dataplane: native) or refused an operation
  'E_CAPABILITY', // lbd lacks a capability it needs (CAP_NET_RAW, CAP_NET_ADMIN): the message names each one and how to give it
  'E_HOST', // a host change lbd needs failed: the nftables guard, local access (its TAP interface, routes), a program it runs for them
  'E_INSTANCE', // another running lbd already balances the capture interface (it owns the host guard there) or holds the state file
  'E_STATE_FILE',
  'E_HANDOVER', // lbd --take-over: the running lbd cannot hand over to this one (another state file, capture interface or table layout) // the state file (the connection table kept for the next lbd) cannot be made, mapped or put in place
  'E_METRICS', // the metrics address cannot be served
  // Programs lbd, its lab, tests and benchmark run (src/host/programs.ts).
  'E_PROGRAM_UNDECLARED', // a program src/host/programs.json does not declare
  'E_PROGRAM_NOT_FOUND', // a declared program that is not installed (the message names its Debian package) or not built
  'E_PROGRAM_FAILED', // a program could not start, or exited non-zero where success was required
  // The command line and the admin socket.
  'E_USAGE', // a malformed command line or admin request
  'E_NO_SERVICE', // SERVICE names no service of the running config
  'E_NO_REAL', // ADDRESS is not a real server of the service
  'E_EXISTS', // the service or real server to add is there already (or the new name is taken)
  'E_LAST_REAL', // removing the only real server of a service (a service needs one)
  'E_LAST_SERVICE', // removing the only service (a config needs one)
  'E_ADMIN', // the admin socket cannot be listened on, or talked to
  'E_NO_DAEMON', // no daemon listens on the admin socket
  'E_PERMISSION', // the admin socket refuses this user (only root, its owner and the members of its group may use it)
  'E_PROTOCOL', // what came back on the admin socket is not an answer of its protocol
  'E_TIMEOUT', // no answer in time: the daemon, or a drain waited for with --wait
  'E_INTERNAL', // a failure lbd did not expect (a bug): what the admin socket answers for an error without a code of this set
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** A code that came from outside (an answer on the admin socket), checked against the set. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code);
}

export class LbdError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** One problem found in a config file, located as precisely as the YAML allows. */
export interface ConfigIssue {
  file: string;
  line: number; // 1-based; 0 when the problem is not tied to a place (e.g. unreadable file)
  col: number; // 1-based
  path: string; // e.g. services[0].scheduler
  message: string;
}

export function formatConfigIssue(i: ConfigIssue): string {
  const where = i.line > 0 ? `${i.file}:${i.line}:${i.col}` : i.file;
  return i.path ? `${where} ${i.path}: ${i.message}` : `${where}: ${i.message}`;
}

export class ConfigError extends LbdError {
  constructor(readonly issues: ConfigIssue[]) {
    super('E_CONFIG', issues.map(formatConfigIssue).join('\n'));
  }
}

export class CaptureError extends LbdError {
  constructor(message: string) {
    super('E_CAPTURE', message);
  }
}

/** No native binding loads: lbd cannot capture or send (src/dataplane/binding.ts). */
export class BindingError extends LbdError {
  constructor(message: string) {
    super('E_BINDING', message);
  }
}

export class HostSetupError extends LbdError {
  constructor(message: string) {
    super('E_HOST', message);
  }
}

/** The process lacks capabilities lbd needs (src/host/capabilities.ts): named, with how to give them. */
export class CapabilityError extends LbdError {
  constructor(
    message: string,
    readonly missing: readonly string[],
  ) {
    super('E_CAPABILITY', message);
  }
}

/** Another live lbd owns what this one would change (the capture interface's guard). */
export class InstanceConflictError extends LbdError {
  constructor(message: string) {
    super('E_INSTANCE', message);
  }
}

export class UnknownSchedulerError extends LbdError {
  constructor(name: string, known: readonly string[]) {
    super('E_SCHEDULER', `unknown scheduler "${name}" (${known.join(', ')})`);
  }
}
