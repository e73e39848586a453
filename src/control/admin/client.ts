/**
 * The CLI's end of the admin socket: one request, one answer, and the daemon's errors (or the
 * lack of a daemon) as LbdErrors the CLI prints. Loads only the protocol, so that `lbd list` and
 * the other daemon commands start without the config loader, reconcile or the data plane.
 */
import * as net from 'node:net';
import { isErrorCode, LbdError } from '../../errors';
import type { AdminCommand, AdminRequest } from './protocol';
import { parseRequest } from './schema';

export class NoDaemonError extends LbdError {
  constructor(
    readonly socketPath: string,
    detail?: string,
  ) {
    super('E_NO_DAEMON', `no daemon is listening on ${socketPath} (is lbd running? start it with: lbd --config FILE)${detail ? ` [${detail}]` : ''}`);
  }
}

/**
 * Sends one request and returns its result; throws the daemon's error as an LbdError. The request
 * is checked against the schema the daemon checks it with first: a malformed one is refused here
 * with the daemon's E_USAGE message, without a round trip.
 */
export function adminRequest<T = unknown>(socketPath: string, cmd: AdminCommand, args?: unknown, timeoutMs = 30000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const request: AdminRequest = { cmd, args };
    const line = JSON.stringify(request);
    try {
      parseRequest(JSON.parse(line)); // as the daemon will read it: undefined fields dropped
    } catch (e) {
      return reject(e as Error);
    }
    const sock = net.createConnection(socketPath);
    let buf = '';
    let settled = false;
    const finish = (err: Error | null, value?: T) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value as T);
    };
    const timer = setTimeout(
      () => finish(new LbdError('E_TIMEOUT', `no answer from the daemon on ${socketPath} within ${Math.round(timeoutMs / 1000)} s`)),
      timeoutMs,
    );
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(line + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      // An AdminAnswer, read loosely: whatever answers on the socket may not follow the protocol.
      let res: { ok: boolean; result?: T; error?: { code?: unknown; message?: string } };
      try {
        res = JSON.parse(buf.slice(0, i));
      } catch {
        return finish(new LbdError('E_PROTOCOL', `the daemon on ${socketPath} sent something that is not JSON`));
      }
      if (res.ok) finish(null, res.result as T);
      else finish(new LbdError(isErrorCode(res.error?.code) ? res.error.code : 'E_INTERNAL', res.error?.message ?? 'the daemon reported an error'));
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') finish(new NoDaemonError(socketPath));
      else if (e.code === 'EACCES' || e.code === 'EPERM')
        finish(new LbdError('E_PERMISSION', `permission denied on ${socketPath}: the admin socket is root-only (run the command as root)`));
      else finish(new LbdError('E_ADMIN', `cannot talk to the daemon on ${socketPath}: ${e.message}`));
    });
    sock.on('close', () => finish(new LbdError('E_PROTOCOL', `the daemon on ${socketPath} closed the connection without answering`)));
  });
}
