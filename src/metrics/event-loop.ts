/**
 * lbd_event_loop_delay_seconds: how late the event loop runs, as a histogram. The event loop is
 * the data plane's (both paths take their frames on it), so its delay is how long frames can
 * wait because of anything else lbd does: a slow admin request, a reload, a host change.
 *
 * Measured by perf_hooks.monitorEventLoopDelay (a libuv timer every RESOLUTION_MS that records
 * the time between its runs, so a sample is RESOLUTION_MS plus the delay). Every FOLD_MS and at
 * each scrape its samples are moved into the Prometheus histogram: for each bucket bound the
 * count of samples at or below it is read back from the sampler's percentiles (a binary search
 * over percentile(), which is monotonic), the difference to the previous bound is observed at the
 * sampler's value in the middle of that range, and the sampler is reset. Counts are exact to the
 * sampler's resolution (a few per cent of the value); the sum is as close as the middle values.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Histogram, type Registry } from 'prom-client';

const RESOLUTION_MS = 10;
const FOLD_MS = 5000;
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/** Samples at or below `delayNs` (of `total`): the highest percentile whose value is within it. */
function countAtMost(h: IntervalHistogram, delayNs: number, total: number): number {
  const limit = delayNs + RESOLUTION_MS * 1e6;
  if (h.min > limit) return 0;
  if (h.max <= limit) return total;
  let lo = 0; // percentile(lo) <= limit
  let hi = 100; // percentile(hi) > limit
  for (let i = 0; i < 24; i++) {
    const mid = (lo + hi) / 2;
    if (h.percentile(mid) <= limit) lo = mid;
    else hi = mid;
  }
  return Math.round((lo / 100) * total);
}

/** The delay of the sample at cumulative count `at` (of `total`), in seconds. */
function delayAt(h: IntervalHistogram, at: number, total: number): number {
  const p = Math.min(100, Math.max(1e-9, (100 * at) / total));
  return Math.max(0, h.percentile(p) - RESOLUTION_MS * 1e6) / 1e9;
}

function fold(h: IntervalHistogram, metric: Histogram<string>): void {
  const total = h.count;
  if (total === 0) return;
  let prev = 0;
  let lower = 0;
  for (const bound of [...BUCKETS, Infinity]) {
    const cum = bound === Infinity ? total : countAtMost(h, bound * 1e9, total);
    const n = cum - prev;
    if (n > 0) {
      // Within (lower, bound], whatever the sampler's rounding says, so they land in this bucket.
      const v = Math.min(Math.max(delayAt(h, prev + n / 2, total), lower * (1 + 1e-9) + 1e-12), bound);
      for (let i = 0; i < n; i++) metric.observe(v);
    }
    prev = Math.max(prev, cum);
    lower = bound;
  }
  h.reset();
}

/** The sampler, one per daemon; register() puts the histogram into a registry (a new one after the metrics address changes). */
export class EventLoopDelay {
  private readonly h = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private metric: Histogram<string> | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.h.enable();
    this.timer = setInterval(() => this.fold(), FOLD_MS);
    this.timer.unref();
  }

  private fold(): void {
    if (this.metric) fold(this.h, this.metric);
  }

  /**
   * The histogram in `registry`. Samples go to the one last scraped (and the folds between
   * scrapes too): a registry made for a new metrics address that then failed to listen is never
   * scraped, so the serving one keeps its samples.
   */
  register(registry: Registry): void {
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    const metric: Histogram<string> = new Histogram({
      name: 'lbd_event_loop_delay_seconds',
      help: "How late the event loop (which is the data plane's) ran, sampled every 10 ms: frames wait this long for whatever else lbd does.",
      buckets: BUCKETS,
      registers: [registry],
      collect() {
        self.metric = metric;
        self.fold();
      },
    });
    this.metric ??= metric;
  }

  stop(): void {
    clearInterval(this.timer);
    this.h.disable();
  }
}
