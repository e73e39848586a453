import net from 'node:net';
import { Checker, CheckResult, errorReason } from './types';

/** keepalived's TCP_CHECK: a connect to address:port within the timeout is a success. */
export class TcpChecker implements Checker {
  readonly type = 'tcp';
  constructor(
    private readonly address: string,
    private readonly port: number,
    private readonly timeoutMs: number,
  ) {}

  run(): Promise<CheckResult> {
    return new Promise((resolve) => {
      let done = false;
      const sock = net.connect({ host: this.address, port: this.port });
      const finish = (r: CheckResult) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        // A connect-then-RST would leave the server a log line per check; a FIN is polite.
        sock.removeAllListeners('error');
        sock.on('error', () => {});
        sock.destroy();
        resolve(r);
      };
      const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), this.timeoutMs);
      sock.once('connect', () => finish({ ok: true, reason: 'connected' }));
      sock.once('error', (e) => finish({ ok: false, reason: errorReason(e) }));
    });
  }
}
