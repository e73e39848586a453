/**
 * Keeps lbd's nftables tables as lbd wants them for as long as it runs:
 *  - renews their leases (leased-table.ts) every third of a lease, so they expire shortly
 *    after lbd is gone and never while it runs;
 *  - watches: `nft monitor` reports every ruleset change on the host (a firewall reload's
 *    `flush ruleset`, someone's `nft delete table`); a change to one of lbd's tables or chains,
 *    or to the whole ruleset, has every table looked at, and one found changed is put back at
 *    once (tens of milliseconds), logged, and counted (lbd_host_table_restores_total). Element
 *    changes are left to the renewal, which rewrites every element within a third of a lease
 *    (they are also what the renewal itself prints). Each renewal looks at the tables too, so
 *    nothing is missed while the monitor is down or when it lost events.
 * Everything is asynchronous: nft runs as a child process, the event loop never waits for it.
 */
import type { Logger } from 'pino';
import type { LbdError } from '../errors';
import type { LeasedTable } from './leased-table';
import { spawnProgram } from './programs';
import { SingleFlight } from '../single-flight';

type ChildProcess = ReturnType<typeof spawnProgram>;

export interface HostKeeperOptions {
  log: Logger;
  /** Renewal period, ms (a third of the tables' lease). */
  renewMs: number;
  /** Watch with `nft monitor` (default true). */
  watch?: boolean;
}

/** A burst of monitor lines (one transaction prints several) is looked at once, this long after its first line. */
const DEBOUNCE_MS = 10;
/** The monitor is started again after it ends: first after this long, doubling up to MONITOR_RESTART_MAX_MS. */
const MONITOR_RESTART_MS = 1000;
const MONITOR_RESTART_MAX_MS = 60_000;
/** A monitor that ran this long was healthy: its next restart is quick again. */
const MONITOR_HEALTHY_MS = 60_000;

export class HostKeeper {
  private readonly tables = new Set<LeasedTable>();
  private renewTimer: NodeJS.Timeout | null = null;
  private renewing = false;
  private debounce: NodeJS.Timeout | null = null;
  private monitor: ChildProcess | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private restartMs = MONITOR_RESTART_MS;
  private stopped = false;
  private readonly checks = new SingleFlight(
    () => this.checkAll(),
    () => this.stopped,
  );
  /** Restores by table role, over the daemon's life (lbd_host_table_restores_total). */
  readonly restores = new Map<string, number>();

  constructor(private readonly o: HostKeeperOptions) {}

  add(t: LeasedTable): void {
    this.tables.add(t);
    if (!this.restores.has(t.spec.role)) this.restores.set(t.spec.role, 0);
  }

  start(): void {
    this.renewTimer = setInterval(() => void this.renew(), this.o.renewMs);
    this.renewTimer.unref?.();
    if (this.o.watch !== false) this.startMonitor();
  }

  private startMonitor(): void {
    if (this.stopped) return;
    let child: ChildProcess;
    try {
      child = spawnProgram('nft', ['monitor'], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      this.o.log.warn({ err: (e as Error).message }, 'cannot watch nftables (nft monitor): changes are caught at the next renewal');
      return;
    }
    const startedAt = Date.now();
    this.monitor = child;
    // Whatever changed while no monitor ran is looked at now.
    this.schedule();
    let partial = '';
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop() ?? '';
      if (lines.some((l) => this.concernsUs(l))) this.schedule();
    });
    // "# ERROR: We lost some netlink events!": look at everything.
    child.stderr?.on('data', () => this.schedule());
    child.on('error', () => undefined);
    child.on('exit', (code, signal) => {
      if (this.monitor === child) this.monitor = null;
      if (this.stopped) return;
      if (Date.now() - startedAt > MONITOR_HEALTHY_MS) this.restartMs = MONITOR_RESTART_MS;
      this.o.log.warn({ code, signal, retryMs: this.restartMs }, 'nft monitor ended: starting it again (meanwhile the renewal watches)');
      this.restartTimer = setTimeout(() => this.startMonitor(), this.restartMs);
      this.restartTimer.unref?.();
      this.restartMs = Math.min(this.restartMs * 2, MONITOR_RESTART_MAX_MS);
    });
  }

  /** A monitor line about one of our tables (not its elements: the renewal's own lines), or about the whole ruleset. */
  private concernsUs(line: string): boolean {
    if (line.startsWith('#') || line.trim() === '') return false;
    const words = line.split(' ');
    if (words[1] === 'ruleset') return true;
    if (words[1] === 'element') return false;
    for (const t of this.tables) if (words.includes(t.spec.name)) return true;
    return false;
  }

  private schedule(): void {
    if (this.debounce || this.stopped) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.check();
    }, DEBOUNCE_MS);
    this.debounce.unref?.();
  }

  /** Looks at every table and restores the ones found changed; one look at a time (a request during one runs after it). */
  check(): Promise<void> {
    return this.checks.request();
  }

  private async checkAll(): Promise<void> {
    for (const t of [...this.tables]) if (t.installed && !this.stopped) await this.checkOne(t);
  }

  private async checkOne(t: LeasedTable): Promise<void> {
    try {
      const wrong = await t.restore();
      if (wrong === null) return;
      this.restores.set(t.spec.role, (this.restores.get(t.spec.role) ?? 0) + 1);
      this.o.log.warn({ table: `netdev ${t.spec.name}`, role: t.spec.role, found: wrong }, 'nftables table of lbd changed by someone else: restored');
    } catch (e) {
      this.o.log.error(
        { table: `netdev ${t.spec.name}`, code: (e as LbdError).code, err: (e as Error).message },
        'cannot verify or restore an nftables table of lbd',
      );
    }
  }

  /** Renews every lease, then looks at every table; a renewal still running when the next is due is not doubled. */
  async renew(): Promise<void> {
    if (this.renewing) return;
    this.renewing = true;
    try {
      for (const t of [...this.tables]) {
        if (!t.installed || this.stopped) continue;
        await t.refresh().catch(() => undefined); // a table gone or changed: the check below restores it
      }
      if (!this.stopped) await this.check();
    } finally {
      this.renewing = false;
    }
  }

  stop(): void {
    this.stopped = true;
    for (const t of [this.renewTimer, this.debounce, this.restartTimer]) if (t) clearTimeout(t);
    this.renewTimer = this.debounce = this.restartTimer = null;
    this.monitor?.kill('SIGTERM');
    this.monitor = null;
  }
}
