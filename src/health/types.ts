/** What one health check run found. `reason` is short and from a small vocabulary (it is a metric label). */
export interface CheckResult {
  ok: boolean;
  /** 'connect refused', 'timeout', 'status 503', 'vip path: no SYN-ACK', … ('status 200', 'connected' when ok). */
  reason: string;
}

/** One checker bound to one real server. run() never rejects and ends within its timeout. */
export interface Checker {
  readonly type: string;
  run(): Promise<CheckResult>;
  /** Releases whatever the checker holds (sockets, capture handles). */
  close?(): void;
}

/** Timers and time, injectable so that tests can drive the supervisor with a fake clock. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Maps a socket error to a short reason (a bounded set: it is used as a metric label). */
export function errorReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return 'connect refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'EHOSTUNREACH':
      return 'host unreachable';
    case 'ENETUNREACH':
      return 'network unreachable';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'EPIPE':
      return 'connection reset';
    case undefined:
      return 'error';
    default:
      return `error ${code}`;
  }
}
