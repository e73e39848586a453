/** wrk's summary, parsed: what the e2e tests and the benchmark read of a wrk run in the lab. */

export interface WrkSummary {
  /** Requests/sec (NaN when wrk printed none: its output was not understood). */
  rps: number;
  requests: number;
  /** Latency percentiles in µs, with --latency (NaN without). */
  p50us: number;
  p90us: number;
  p99us: number;
  /** connect + read + write + timeout */
  socketErrors: number;
  non2xx: number;
}

function toMicros(v: string, unit: string): number {
  const n = Number(v);
  switch (unit) {
    case 'us':
      return n;
    case 'ms':
      return n * 1e3;
    case 's':
      return n * 1e6;
    case 'm':
      return n * 60e6;
    default:
      return NaN;
  }
}

export function parseWrk(out: string): WrkSummary {
  const pct = (p: string): number => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? toMicros(m[1], m[2]) : NaN;
  };
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    requests: Number(/(\d+) requests in/.exec(out)?.[1] ?? NaN),
    p50us: pct('50'),
    p90us: pct('90'),
    p99us: pct('99'),
    socketErrors: se ? se.slice(1).reduce((a, b) => a + Number(b), 0) : 0,
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  };
}
