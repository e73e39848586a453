/**
 * Runs an asynchronous job one at a time, coalescing requests: a request while the job runs
 * makes it run once more afterwards (so it sees the state of then) and shares that promise.
 * For host work that several timers and reloads may ask for at once (a refresh of the host
 * changes, a look at the nftables tables).
 */
export class SingleFlight {
  private running: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly job: () => Promise<void>,
    /** No more runs once this is true. */
    private readonly stopped: () => boolean = () => false,
  ) {}

  request(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.job();
      } while (this.again && !this.stopped());
    })().finally(() => (this.running = null));
    return this.running;
  }
}
