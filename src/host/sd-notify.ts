/**
 * What lbd tells its service manager (sd_notify(3), systemd's Type=notify): READY=1 once it
 * forwards, RELOADING=1 and READY=1 around a reload, STOPPING=1 as it stops, STATUS= lines for
 * `systemctl status`, and WATCHDOG=1 while the data plane's loop runs (WatchdogSec=). Across a
 * restart it keeps the announce interface in the service manager's file descriptor store
 * (FDSTORE=1, FileDescriptorStoreMax=): the next lbd attaches to it and releases it.
 *
 * Sent from this process through the addon (notify.cc): systemd takes notifications from the
 * unit's main PID only, and Node's dgram has no Unix datagram sockets. Without NOTIFY_SOCKET
 * (not under systemd) every call does nothing. A send that fails is logged once and never stops
 * the daemon: a balancer that forwards must not die because its supervisor went away.
 */
import * as fs from 'node:fs';
import type { Logger } from 'pino';

/** Sends one datagram to the socket, descriptors attached; 0 or the errno (NativeAddon.sdNotify). */
export type NotifySend = (socket: string, message: string, fds?: number[]) => number;

/** The environment the service manager sets (systemd.exec(5)): where to notify, and the watchdog. */
export interface NotifyEnv {
  NOTIFY_SOCKET?: string;
  WATCHDOG_USEC?: string;
  WATCHDOG_PID?: string;
  /** Descriptors passed at start (sd_listen_fds(3)): this many from fd 3 on, for this PID, with these names (colon-separated). */
  LISTEN_FDS?: string;
  LISTEN_PID?: string;
  LISTEN_FDNAMES?: string;
}

/** The first descriptor the service manager passes (SD_LISTEN_FDS_START). */
const LISTEN_FDS_START = 3;

export class ServiceNotifier {
  /** NOTIFY_SOCKET: a path, or an abstract name written "@name"; null when not under a service manager. */
  readonly socket: string | null;
  /** How often WATCHDOG=1 goes out: half of WatchdogSec, as sd_watchdog_enabled(3) advises; null without a watchdog. */
  readonly watchdogIntervalMs: number | null;
  /** Datagrams that could not be sent (the first failure is logged). */
  failures = 0;
  /** The names of the descriptors the service manager passed at start (from its store): lbd closes them and attaches anew. */
  readonly passedNames: ReadonlySet<string>;
  private lastWatchdog = -Infinity;

  constructor(
    env: NotifyEnv,
    private readonly send: NotifySend,
    private readonly log?: Logger,
    pid = process.pid,
  ) {
    const socket = env.NOTIFY_SOCKET ?? '';
    this.socket = socket.startsWith('/') || socket.startsWith('@') ? socket : null;
    const usec = Number(env.WATCHDOG_USEC);
    // WATCHDOG_PID names the process the watchdog is for: a child that inherited it is not.
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === pid;
    this.watchdogIntervalMs = this.socket && forUs && Number.isInteger(usec) && usec > 0 ? Math.max(usec / 2000, 1) : null;
    this.passedNames = new Set(passedFds(env, pid).map((p) => p.name));
  }

  /**
   * The notifier of this process, and NOTIFY_SOCKET and the watchdog's variables taken out of
   * its environment, so that the programs lbd runs (nft, ip, its keeper) cannot speak for it
   * (what sd_notify's unset_environment does).
   */
  static fromProcess(send: NotifySend, log?: Logger): ServiceNotifier {
    const n = new ServiceNotifier({ ...process.env }, send, log);
    // What the store passed back is not used as such (the announce interface is attached to by
    // name, the store's copy keeping it alive meanwhile): closed, so that no stray copy holds it.
    for (const { fd } of passedFds(process.env, process.pid)) {
      try {
        fs.closeSync(fd);
      } catch {
        /* not open: nothing to close */
      }
    }
    for (const name of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES']) delete process.env[name];
    return n;
  }

  get enabled(): boolean {
    return this.socket !== null;
  }

  /** The data plane forwards (after a start, or after a reload's RELOADING=1). */
  ready(status: string): void {
    this.notify(`READY=1\nSTATUS=${oneLine(status)}`);
  }

  /**
   * A reload begins. MONOTONIC_USEC is CLOCK_MONOTONIC now, which Type=notify-reload (systemd
   * 253 and later) requires with RELOADING=1; older systemd ignores it.
   */
  reloading(): void {
    this.notify(`RELOADING=1\nMONOTONIC_USEC=${process.hrtime.bigint() / 1000n}\nSTATUS=reloading`);
  }

  stopping(status: string): void {
    this.notify(`STOPPING=1\nSTATUS=${oneLine(status)}`);
  }

  /** Only a STATUS= line (the start failed, say: `systemctl status` shows why). */
  status(status: string): void {
    this.notify(`STATUS=${oneLine(status)}`);
  }

  /**
   * Keeps a duplicate of `fd` in the service manager under `name` until the next start of the
   * unit releases it (FDSTORE=1; the unit needs FileDescriptorStoreMax=). False when not under
   * a service manager, or when the send failed.
   */
  store(name: string, fd: number): boolean {
    return this.notify(`FDSTORE=1\nFDNAME=${name}`, [fd]);
  }

  /** The service manager closes what it keeps under `name` (FDSTOREREMOVE=1). */
  release(name: string): void {
    this.notify(`FDSTOREREMOVE=1\nFDNAME=${name}`);
  }

  /**
   * Called from the data plane's periodic tick: WATCHDOG=1 when one is due. A loop stuck in a
   * frame or a long synchronous call stops these, and systemd restarts lbd after WatchdogSec.
   */
  keepAlive(nowMs: number): void {
    if (this.watchdogIntervalMs === null || nowMs - this.lastWatchdog < this.watchdogIntervalMs) return;
    // A ping that did not go out (systemd busy: its queue full) is tried again at the next tick.
    if (this.notify('WATCHDOG=1')) this.lastWatchdog = nowMs;
  }

  private notify(message: string, fds?: number[]): boolean {
    if (this.socket === null) return false;
    let errno: number;
    try {
      errno = fds ? this.send(this.socket, message, fds) : this.send(this.socket, message);
    } catch (e) {
      // No binding to send with (it failed to load: the start's own error says why).
      errno = -1;
      if (this.failures === 0) this.log?.warn({ err: (e as Error).message }, 'cannot notify the service manager');
    }
    if (errno === 0) return true;
    if (this.failures++ === 0) this.log?.warn({ socket: this.socket, errno }, 'cannot notify the service manager (NOTIFY_SOCKET): going on without it');
    return false;
  }
}

/** The descriptors passed to this process (sd_listen_fds_with_names(3)): none unless LISTEN_PID is ours. */
function passedFds(env: NotifyEnv, pid: number): { fd: number; name: string }[] {
  const n = Number(env.LISTEN_FDS);
  if (Number(env.LISTEN_PID) !== pid || !Number.isInteger(n) || n <= 0 || n > 64) return [];
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  return Array.from({ length: n }, (_, i) => ({ fd: LISTEN_FDS_START + i, name: names[i] || 'unknown' }));
}

/** A STATUS= value is one line. */
function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, '; ');
}
