import http from 'node:http';
import { statusMatches } from '../config/values';
import { Checker, CheckResult, errorReason } from './types';

/** The most body read for expect_body; a health page is small. */
const MAX_BODY = 64 * 1024;

export interface HttpCheckOptions {
  address: string;
  port: number;
  path: string;
  /** Host header; default the address. */
  host?: string;
  /** Normalized status set ("200-299", "200,301-302"). */
  expectStatus: string;
  expectBody?: string;
  timeoutMs: number;
}

/**
 * keepalived's HTTP_GET: GET path from address:port (a fresh connection each time, no
 * keep-alive), the status must be in expect_status and, when given, the body must match
 * expect_body. The whole exchange must end within the timeout.
 */
export class HttpChecker implements Checker {
  readonly type = 'http';
  private readonly bodyRe: RegExp | null;
  constructor(private readonly o: HttpCheckOptions) {
    this.bodyRe = o.expectBody !== undefined ? new RegExp(o.expectBody) : null;
  }

  run(): Promise<CheckResult> {
    const o = this.o;
    return new Promise((resolve) => {
      let done = false;
      const finish = (r: CheckResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        req.destroy();
        resolve(r);
      };
      const req = http.request({
        host: o.address,
        port: o.port,
        path: o.path,
        method: 'GET',
        agent: false,
        headers: { Host: o.host ?? o.address, 'User-Agent': 'lbd-health-check', Connection: 'close' },
      });
      const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), o.timeoutMs);
      req.on('error', (e) => finish({ ok: false, reason: errorReason(e) }));
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (!statusMatches(o.expectStatus, status)) {
          res.resume();
          return finish({ ok: false, reason: `status ${status}` });
        }
        if (!this.bodyRe) {
          res.resume();
          return finish({ ok: true, reason: `status ${status}` });
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          if (size < MAX_BODY) chunks.push(c);
          size += c.length;
        });
        res.on('error', (e) => finish({ ok: false, reason: errorReason(e) }));
        res.on('end', () => {
          const body = Buffer.concat(chunks).subarray(0, MAX_BODY).toString('utf8');
          finish(this.bodyRe!.test(body) ? { ok: true, reason: `status ${status}` } : { ok: false, reason: 'body mismatch' });
        });
      });
      req.end();
    });
  }
}
