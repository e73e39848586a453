import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { requireBinding } from '../dataplane/binding';
import { HostSetupError } from '../errors';
import { SingleFlight } from '../single-flight';
import type { AnnounceConfig } from '../config/types';
import { hostChange, hostRun } from './commands';
import { spawnProgram, type ChildProcess } from './programs';

/**
 * Announcing the VIPs to the routers, through a routing daemon (BIRD) that lbd does not drive:
 * lbd puts a /32 route per VIP that can serve into a kernel routing table of its own
 * (`announce.table`), through a TAP interface (`announce.interface`); the daemon's kernel
 * protocol learns that table and exports the routes by BGP. Chosen over driving the daemon on
 * its control socket because the announcement must die with lbd, and here the kernel sees to
 * it: the TAP is held only by a small keeper process (announce-keeper.ts) that lets go when lbd
 * ends, crashes, is killed or stops sending heartbeats (a hang, SIGSTOP); a TAP nobody holds is
 * deleted with every route through it, and the daemon withdraws what it no longer learns. No
 * state to clean up after a crash, nothing to keep in sync with the daemon's config but a table
 * number and an interface name. The routes are in a table of their own, so the balancer's own
 * traffic to a VIP is not sent into the TAP.
 *
 * A VIP is announced while one of its services can serve (see Daemon.announceableVips). A stop
 * either withdraws first (delete the routes, keep forwarding `withdraw_delay` while the routers
 * move away, then stop) or holds (a restart: the keeper keeps the interface `hold_on_restart`
 * for the next lbd, which attaches a queue of its own to the same multi-queue TAP).
 */

/** What the announcer does to its host: the TAP, the keeper and the routes (injectable for tests). */
export interface AnnounceHost {
  openTap(name: string): number;
  closeTap(fd: number): void;
  /** Starts a keeper holding `fd` (as its fd 3) with this hang timeout. */
  spawnKeeper(fd: number, hangTimeoutMs: number): KeeperProcess;
  /** `ip` with these arguments; rejects with the reason. */
  ip(args: string[]): Promise<void>;
  /** The /32 destinations routed through `dev` in `table` now; null when they cannot be read. */
  routesVia(dev: string, table: number): Promise<string[] | null>;
  /** Throws what is missing when no keeper can be started (its script). */
  checkKeeper(): void;
}

/** The keeper as the announcer sees it: a pipe to write heartbeats to, and its exit. */
export interface KeeperProcess {
  /** Writes a line; `done` once it is in the pipe (or could not be). */
  write(line: string, done?: () => void): void;
  /** Closes our end of the pipe: the keeper lets go now, or after a hold it was told. */
  end(): void;
  onExit(fn: (code: number | null, signal: string | null) => void): void;
  readonly pid: number | undefined;
}

/** The announce interface's name in the service manager's descriptor store (FDNAME=). */
export const ANNOUNCE_FD_NAME = 'announce';

/** A heartbeat line to the keeper this often; announce.hang_timeout must be at least 3 of them. */
export const HEARTBEAT_MS = 100;
/** The routes are read back from the kernel this often (ticks), so that one deleted behind lbd's back returns. */
const RESYNC_TICKS = 20;
/** After the keeper let go under a running lbd (a stall, a kill), the next try comes this much later. */
const RETRY_MS = 1000;

export class Announcer {
  private keeper: KeeperProcess | null = null;
  /** VIPs routed through the interface now (as far as our last route changes went). */
  private readonly routed = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Once withdrawn for a stop, nothing is announced again. */
  private withdrawn = false;
  private readonly sync: SingleFlight;
  /** Times the keeper let go while lbd ran (a hang or a kill): the VIPs were withdrawn meanwhile. */
  lapses = 0;

  constructor(
    private readonly cfg: () => AnnounceConfig,
    /** The VIPs that can serve now. */
    private readonly wanted: () => string[],
    private readonly log: Logger,
    private readonly host: AnnounceHost = SYSTEM_HOST,
  ) {
    this.sync = new SingleFlight(
      () => this.apply(),
      () => this.stopped,
    );
  }

  /** The VIPs announced now. */
  get announced(): ReadonlySet<string> {
    return this.routed;
  }

  /** Opens (or attaches to, after a restart's hold) the interface, hands it to a keeper, routes what can serve. */
  async start(): Promise<void> {
    // Heartbeats from the first moment the keeper runs: its hang timer starts then, and routing
    // many VIPs on a loaded host may take longer than it.
    this.timer = setInterval(() => this.tick(), HEARTBEAT_MS);
    this.timer.unref?.();
    await this.establish();
  }

  private async establish(): Promise<void> {
    const cfg = this.cfg();
    this.host.checkKeeper();
    let fd: number;
    try {
      fd = this.host.openTap(cfg.interface);
    } catch (e) {
      throw new HostSetupError(`announce: ${(e as Error).message}`);
    }
    try {
      const keeper = this.host.spawnKeeper(fd, Math.round(cfg.hang_timeout * 1000));
      this.keeper = keeper;
      keeper.onExit((code, signal) => this.keeperGone(keeper, code, signal));
      keeper.write('.\n');
    } finally {
      // The keeper holds the interface now, and nobody else: when it goes, the interface goes.
      this.host.closeTap(fd);
    }
    await this.host.ip(['link', 'set', cfg.interface, 'up']);
    // An interface held over a restart keeps the routes of the lbd before: take them as ours, so
    // that those still wanted are never missing and the others are withdrawn.
    const there = await this.host.routesVia(cfg.interface, cfg.table);
    if (there === null) throw new HostSetupError(`announce: cannot read the routes of table ${cfg.table} (ip -j route show)`);
    this.routed.clear();
    for (const vip of there) this.routed.add(vip);
    await this.sync.request();
  }

  private ticks = 0;
  private resync = false;

  private tick(): void {
    this.keeper?.write('.\n');
    if (++this.ticks % RESYNC_TICKS === 0) this.resync = true;
    if (!this.withdrawn) void this.sync.request();
  }

  /** Brings the routes in line with the VIPs that can serve; every few seconds, as the kernel has them. */
  private async apply(): Promise<void> {
    const keeper = this.keeper;
    // Nothing after a stop (a late command could remove what the next lbd took over).
    const live = () => !this.stopped && this.keeper === keeper && keeper !== null;
    if (!live()) return;
    const cfg = this.cfg();
    if (this.resync) {
      this.resync = false;
      const there = await this.host.routesVia(cfg.interface, cfg.table);
      if (!live()) return;
      if (there !== null) {
        this.routed.clear();
        for (const vip of there) this.routed.add(vip);
      }
    }
    const want = new Set(this.withdrawn ? [] : this.wanted());
    for (const vip of [...this.routed]) {
      if (want.has(vip) || !live()) continue;
      try {
        await this.host.ip(['route', 'del', `${vip}/32`, 'dev', cfg.interface, 'table', String(cfg.table)]);
      } catch (e) {
        // Already gone is withdrawn; anything else is tried again at the next tick.
        if (!/No such process|not found|Cannot find device/i.test((e as Error).message)) {
          this.log.error({ vip, err: (e as Error).message }, 'could not withdraw the VIP');
          continue;
        }
      }
      this.routed.delete(vip);
      this.log.info(
        { vip, interface: cfg.interface, table: cfg.table },
        this.withdrawn ? 'VIP withdrawn: lbd is stopping' : 'VIP withdrawn: no service on it can serve',
      );
    }
    for (const vip of want) {
      if (this.routed.has(vip) || !live()) continue;
      try {
        await this.host.ip(['route', 'replace', `${vip}/32`, 'dev', cfg.interface, 'table', String(cfg.table), 'proto', 'static']);
        this.routed.add(vip);
        this.log.info({ vip, interface: cfg.interface, table: cfg.table }, 'VIP announced');
      } catch (e) {
        this.log.error({ vip, err: (e as Error).message }, 'could not announce the VIP');
      }
    }
  }

  /** The keeper let go while we run: the interface and its routes are gone; announce again shortly. */
  private keeperGone(keeper: KeeperProcess, code: number | null, signal: string | null): void {
    if (this.keeper !== keeper) return;
    this.keeper = null;
    this.routed.clear();
    if (this.stopped) return;
    this.lapses++;
    this.log.warn(
      { interface: this.cfg().interface, retryMs: RETRY_MS, keeperExit: code, keeperSignal: signal },
      code === 0
        ? 'the announce keeper let go (the event loop stalled past announce.hang_timeout): the VIPs are withdrawn; announcing again'
        : 'the announce keeper ended: the VIPs are withdrawn; announcing again',
    );
    this.again();
  }

  private again(): void {
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.stopped || this.keeper !== null) return;
      this.establish().catch((e: Error) => {
        this.log.error({ err: e.message, retryMs: RETRY_MS }, 'could not announce again');
        if (!this.stopped && this.keeper === null) this.again();
      });
    }, RETRY_MS);
    this.retry.unref?.();
  }

  /**
   * Withdraws every VIP now and announces nothing more; the keeper stays (the interface too, routeless),
   * so that the routers see a withdrawal while lbd still forwards what reaches it.
   */
  async withdraw(): Promise<void> {
    this.withdrawn = true;
    await this.sync.request();
  }

  /**
   * Ends the announcing: with `holdMs`, the keeper keeps the interface and its routes that long
   * for the next lbd (a restart); without, it lets go now and the kernel deletes them.
   *
   * `store`, when holding, hands a queue of the interface to the service manager as well
   * (systemd's descriptor store): a service manager that ends every process of the service
   * before starting the next (KillMode=mixed kills the keeper) keeps the interface, and its
   * routes, until the next lbd has attached to it and released it.
   */
  async stop(holdMs = 0, store?: (fd: number) => boolean): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.retry) clearTimeout(this.retry);
    this.timer = this.retry = null;
    // A route change under way finishes (or stops at its next step) before the keeper is told.
    await this.sync.request();
    const keeper = this.keeper;
    this.keeper = null;
    if (!keeper) return;
    if (holdMs > 0 && store) this.storeQueue(store);
    // The hold must be in the pipe before lbd's process ends (its end closes the pipe): wait for it.
    if (holdMs > 0) await new Promise<void>((resolve) => keeper.write(`hold ${Math.round(holdMs)}\n`, resolve));
    keeper.end();
  }

  /** A queue of the interface (the keeper still holds it), for the service manager to keep. */
  private storeQueue(store: (fd: number) => boolean): void {
    const name = this.cfg().interface;
    let fd: number;
    try {
      fd = this.host.openTap(name);
    } catch (e) {
      this.log.warn({ interface: name, err: (e as Error).message }, 'cannot give the announce interface to the service manager: only the keeper holds it');
      return;
    }
    try {
      if (store(fd)) this.log.info({ interface: name }, 'the announce interface handed to the service manager (FDSTORE) for the next lbd');
    } finally {
      this.host.closeTap(fd);
    }
  }
}

/** The keeper, compiled beside this file. */
const KEEPER = path.join(__dirname, 'announce-keeper.js');

const SYSTEM_HOST: AnnounceHost = {
  openTap: (name) => requireBinding().openTap(name, true),
  closeTap: (fd) => requireBinding().closeTap(fd),
  spawnKeeper(fd, hangTimeoutMs) {
    // Detached: a terminal's Ctrl-C (SIGINT to lbd's process group) must not end the keeper
    // before lbd decides between withdrawing and holding.
    // Nothing of lbd's output: a pipe reader waiting for lbd's stderr to end must not wait for a hold.
    const child: ChildProcess = spawnProgram('node', [KEEPER, String(hangTimeoutMs)], { stdio: ['pipe', 'ignore', 'ignore', fd], detached: true });
    // Neither the keeper nor our end of its pipe keeps lbd's event loop alive.
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    child.stdin?.on('error', () => {
      /* the keeper is gone: its exit says so */
    });
    return {
      write: (line, done) => {
        if (child.stdin?.writable) child.stdin.write(line, () => done?.());
        else done?.();
      },
      end: () => child.stdin?.end(),
      onExit: (fn) => {
        child.on('exit', (code, signal) => fn(code, signal));
        child.on('error', () => fn(null, null));
      },
      get pid() {
        return child.pid;
      },
    };
  },
  ip: (args) => hostChange('ip', args),
  async routesVia(dev, table) {
    const r = await hostRun('ip', ['-j', 'route', 'show', 'table', String(table), 'dev', dev], { stdio: ['ignore', 'pipe', 'pipe'] });
    // A table nothing was ever routed in does not exist yet: no routes.
    if (r.status !== 0) return /table does not exist/i.test(r.stderr) ? [] : null;
    try {
      return (JSON.parse(r.stdout || '[]') as { dst?: string }[]).map((x) => x.dst ?? '').filter((d) => /^\d+\.\d+\.\d+\.\d+$/.test(d));
    } catch {
      return null;
    }
  },
  checkKeeper() {
    if (!fs.existsSync(KEEPER)) throw new HostSetupError(`announce: the keeper ${KEEPER} is missing (run lbd from its build: npm run build)`);
  },
};
