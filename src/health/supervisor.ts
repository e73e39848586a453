import { Checker, CheckResult, Clock, realClock } from './types';

export type HealthState = 'up' | 'down';

export interface SupervisorOptions {
  checker: Checker;
  /** Seconds between the starts of two checks. */
  interval: number;
  /** Consecutive successes that bring a down server up. */
  rise: number;
  /** Consecutive failures that take an up server down. */
  fall: number;
  initial: HealthState;
  clock?: Clock;
  /** [0, 1): the first check runs after random() × interval, so checks do not fire in lockstep. */
  random?: () => number;
  /** Called once per state change, synchronously, with the result that caused it. */
  onTransition(to: HealthState, reason: string): void;
  /** Called after every check with its result and duration (seconds). */
  onResult?(result: CheckResult, seconds: number): void;
}

/**
 * keepalived's rise/fall state machine around one checker: `fall` consecutive failures take
 * an up server down, `rise` consecutive successes bring a down one up; anything else only
 * resets the opposite run. Checks never overlap: the next one starts `interval` after the
 * previous one started (or at once when a check took longer than that).
 */
export class HealthSupervisor {
  state: HealthState;
  /** Why the state is what it is: the result that caused the last transition ('initial' before). */
  reason = 'initial';
  /** Consecutive successes / failures of the current run. */
  okRun = 0;
  failRun = 0;
  checks = 0;
  private timer: unknown = null;
  private running = false;
  private stopped = true;
  private readonly clock: Clock;

  constructor(private readonly o: SupervisorOptions) {
    this.state = o.initial;
    this.clock = o.clock ?? realClock;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const spread = (this.o.random ?? Math.random)();
    this.schedule(Math.floor(Math.max(0, Math.min(0.999, spread)) * this.o.interval * 1000));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.o.checker.close?.();
  }

  get active(): boolean {
    return !this.stopped;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      void this.runOnce();
    }, ms);
  }

  /** Runs one check now (tests call it directly too) and schedules the next. */
  async runOnce(): Promise<void> {
    if (this.running || this.stopped) return;
    this.running = true;
    const t0 = this.clock.now();
    let r: CheckResult;
    try {
      r = await this.o.checker.run();
    } catch (e) {
      r = { ok: false, reason: `error ${(e as Error)?.message ?? e}`.slice(0, 60) };
    }
    this.running = false;
    if (this.stopped) return;
    const elapsed = this.clock.now() - t0;
    this.checks++;
    this.o.onResult?.(r, elapsed / 1000);
    this.record(r);
    this.schedule(Math.max(0, this.o.interval * 1000 - elapsed));
  }

  /** Feeds one result to the state machine. */
  record(r: CheckResult): void {
    if (r.ok) {
      this.okRun++;
      this.failRun = 0;
      if (this.state === 'down' && this.okRun >= this.o.rise) this.transition('up', r.reason);
    } else {
      this.failRun++;
      this.okRun = 0;
      if (this.state === 'up' && this.failRun >= this.o.fall) this.transition('down', r.reason);
    }
  }

  private transition(to: HealthState, reason: string): void {
    this.state = to;
    this.reason = reason;
    this.o.onTransition(to, reason);
  }
}
