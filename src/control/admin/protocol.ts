/**
 * The admin socket's wire protocol: what `lbd list/server/service/reload/save/stop` send and what the
 * daemon answers. Types only (and the error class whose codes travel on the wire), so that the
 * CLI can load it without the config loader, reconcile or the data plane.
 *
 * A unix stream socket, one JSON object per line each way. A request is
 * `{"cmd": "list", "args": {…}}`; the answer is `{"ok": true, "result": …}` or
 * `{"ok": false, "error": {"code": "E_…", "message": "…"}}`. A connection may carry any number
 * of requests; answers come back in order.
 */
import { LbdError, type ErrorCode } from '../../errors';
import type { AdminCommand } from './schema';

// The requests and their fields are described once, in schema.ts (which both ends validate against).
export type { AdminCommand, Change, ValidRequest } from './schema';

/** One request line, as sent. What each `cmd` takes in `args` is schema.ts's REQUEST_SCHEMA. */
export interface AdminRequest {
  cmd: AdminCommand;
  args?: unknown;
}

/**
 * One answer line. An error's code is one of lbd's ErrorCodes (src/errors.ts): the code of the
 * LbdError the request raised on the daemon (E_USAGE, E_NO_SERVICE, E_CONFIG, E_RELOAD, E_HOST,
 * …), E_INTERNAL for any other failure, E_ADMIN when the daemon already serves as many clients
 * as it takes. Never on the wire: E_NO_DAEMON, E_PERMISSION, E_PROTOCOL and E_TIMEOUT, the CLI's
 * failures to get an answer.
 */
export type AdminAnswer<T = unknown> = { ok: true; result: T } | { ok: false; error: { code: ErrorCode; message: string } };

/** An error the daemon answers with (`E_USAGE`, `E_NO_SERVICE`, `E_CONFIG`, …): its code goes on the wire. */
export class AdminError extends LbdError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
  }
}

// What the admin socket answers (the CLI formats it; `--json` prints it as is).

export interface PingResult {
  version: string;
  pid: number;
  /** The config file the daemon reads on reload. */
  file: string;
}
export interface Counters {
  conns: number;
  inpkts: number;
  outpkts: number;
  inbytes: number;
  outbytes: number;
}
export interface Rates {
  cps: number;
  inpps: number;
  outpps: number;
  inbps: number;
  outbps: number;
}
export interface RealView {
  address: string;
  port: number;
  /** Always Route: lbd does Direct Routing only (ipvsadm -g). */
  forward: 'Route';
  weight: number;
  active: number;
  inactive: number;
  /** Persistence templates pointing at this server. */
  persistent: number;
  /** Connection thresholds (ipvsadm -x/-y), 0 = none. */
  u_threshold: number;
  l_threshold: number;
  /** At its upper threshold: no new flows until it falls below the lower one. */
  overloaded: boolean;
  health: string;
  health_reason: string;
  /** Removed from the config and still draining its flows. */
  removed: boolean;
  /** The sorry server of its service (health checks), not scheduled normally. */
  sorry?: boolean;
  mac: string | null;
  stats: Counters;
  rate: Rates;
}
export interface ServiceView {
  name: string;
  key: string;
  protocol: 'tcp' | 'udp';
  vip: string;
  port: number;
  scheduler: string;
  /** The scheduler's flags by ipvsadm's names (sh-port, mh-fallback, …): what `ipvsadm -L` shows in parentheses. */
  scheduler_flags: string[];
  /** mh only: the Maglev lookup table's size. */
  mh_table_size?: number;
  /** A TCP segment without SYN and without a connection entry: dropped, or scheduled by the hash (mh, sh). */
  on_miss: 'drop' | 'hash';
  /** Seconds, 0 = off. */
  persistence: number;
  persistence_netmask: string;
  /** Removed from the config and still draining its flows. */
  removed: boolean;
  active: number;
  inactive: number;
  stats: Counters;
  rate: Rates;
  reals: RealView[];
}
export interface ListResult {
  version: string;
  /** connection_table.size */
  size: number;
  dataplane: string;
  /** Entries in the connection table now. */
  connections: number;
  /** The config file the daemon reads on reload. */
  file: string;
  /** Runtime changes (lbd server/service …) not in the config file. */
  runtime_changes: string[];
  services: ServiceView[];
}
export interface ConnEntry {
  protocol: 'tcp' | 'udp';
  /** Seconds until the entry expires. */
  expires: number;
  state: string;
  client: string;
  virtual: string;
  destination: string;
  /** A persistence template (client network → real server), shown like IPVS's with port 0. */
  template?: boolean;
}
export interface ChangeResult {
  /** One line per applied change (describeAction), empty when nothing changed. */
  changes: string[];
  /** reload: runtime changes that the file did not have and that are gone now. */
  discarded?: string[];
  /** The config file, for "write it back" hints. */
  file: string;
  runtime_changes: string[];
}
/** What `stop` answers before the daemon stops (the stop itself starts once the answer is written). */
export interface StopResult {
  stopping: true;
  /** The daemon removes every change it made to the host (guard, probe table, state file) as it stops. */
  clean: boolean;
  /** The daemon's process, to wait for. */
  pid: number;
  /** How long it forwards on after withdrawing its VIPs (announce.withdraw_delay) before it stops, in ms; 0 without. */
  withdraw_delay_ms?: number;
}
/** What `handover` answers: the process the new lbd signals (SIGUSR2) once its capture is open. */
export interface HandoverResult {
  pid: number;
  /** Its start time (owner.ts), to tell it from a process that got its PID later. */
  start: number;
  /** How long (ms) it waits for the SIGUSR2 before it forgets the hand-over. */
  armedMs: number;
  /** What the new lbd must share with it to take its table over: the state file, the capture interface, the table layout. */
  stateFile: string | null;
  capture: string;
  layoutVersion: number;
}
export interface SaveResult {
  yaml: string;
  ipvsadm: string;
  /** What the ipvsadm rules leave out (an mh_table_size, on_miss: hash), one line each; absent from older daemons. */
  ipvsadm_omitted?: string[];
  file: string;
  runtime_changes: string[];
}
