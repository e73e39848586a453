/**
 * Rates for `lbd list --rate`, like IPVS's estimator: per second over the last interval, from
 * two counter samples the daemon takes every RATE_INTERVAL_MS.
 */
import type { Rates } from './protocol';

export const RATE_INTERVAL_MS = 2000;

const ZERO_RATES: Rates = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };

interface Sample {
  t: number;
  conns: number;
  pkts: number;
  bytes: number;
}

export class RateEstimator {
  private readonly prev = new Map<string, Sample>();
  private readonly rates = new Map<string, Rates>();

  /** Records one sample for `key` and updates its rates (per second over the last interval). */
  sample(key: string, t: number, conns: number, pkts: number, bytes: number): void {
    const p = this.prev.get(key);
    if (p && t > p.t) {
      const dt = (t - p.t) / 1000;
      this.rates.set(key, {
        cps: Math.round(Math.max(0, conns - p.conns) / dt),
        inpps: Math.round(Math.max(0, pkts - p.pkts) / dt),
        outpps: 0,
        inbps: Math.round(Math.max(0, bytes - p.bytes) / dt),
        outbps: 0,
      });
    }
    this.prev.set(key, { t, conns, pkts, bytes });
  }

  rate(key: string): Rates {
    return this.rates.get(key) ?? { ...ZERO_RATES };
  }
}
