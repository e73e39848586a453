/**
 * The admin socket's server side: listens on the unix socket (0600, in a 0700 directory, never
 * over a live daemon's), splits the stream into request lines, answers each in order through
 * Control, and removes the socket on close.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { LbdError } from '../../errors';
import type { Control } from './control';
import { AdminAnswer, AdminError } from './protocol';

/** The longest request line accepted (a request is a few hundred bytes). */
const MAX_LINE = 1 << 20;

/** One answer line's JSON (without its newline). */
function encode(answer: AdminAnswer): string {
  return JSON.stringify(answer);
}

export class AdminServer {
  private server: net.Server | null = null;
  private ino = -1;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly control: Control,
    readonly socketPath: string,
    private readonly log?: Logger,
  ) {}

  /**
   * Listens on the socket: creates its directory (0700) when missing, replaces a stale socket
   * left by a dead daemon, refuses to take over one a live daemon answers on; the socket is
   * 0600 (root only when lbd runs as root).
   */
  async listen(): Promise<void> {
    const p = this.socketPath;
    const dir = path.dirname(p);
    if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(p);
    } catch {
      st = undefined;
    }
    if (st) {
      if (!st.isSocket()) throw new AdminError('E_ADMIN', `admin socket ${p} exists and is not a socket: remove it or set admin.socket to another path`);
      if (await isListening(p)) {
        throw new AdminError('E_ADMIN', `another lbd is already listening on ${p}: stop it first, or give this one its own admin.socket`);
      }
      fs.unlinkSync(p); // stale: its daemon is gone
    }
    const server = net.createServer((sock) => this.serve(sock));
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(p, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      throw new AdminError('E_ADMIN', `cannot listen on the admin socket ${p}: ${(e as Error).message}`);
    } finally {
      process.umask(oldMask);
    }
    fs.chmodSync(p, 0o600);
    this.ino = fs.statSync(p).ino;
    this.server = server;
    this.control.start();
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    let chain = Promise.resolve();
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_LINE && !buf.includes('\n')) {
        sock.end(encode({ ok: false, error: { code: 'E_USAGE', message: 'request too long' } }) + '\n');
        return;
      }
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        chain = chain
          .then(() => this.answer(line))
          .then((out) => {
            if (!sock.destroyed) sock.write(out + '\n');
          });
      }
    });
  }

  private async answer(line: string): Promise<string> {
    let req: { cmd?: unknown; args?: unknown };
    try {
      req = JSON.parse(line);
    } catch {
      return encode({ ok: false, error: { code: 'E_USAGE', message: 'a request is one JSON object per line' } });
    }
    try {
      const result = await this.control.handle(req);
      return encode({ ok: true, result });
    } catch (e) {
      const err = e as Error;
      if (!(e instanceof LbdError)) this.log?.error({ err: err?.stack ?? String(e), cmd: req.cmd }, 'admin request failed');
      // Only LbdError codes travel (AdminAnswer): anything else is a bug, answered as E_INTERNAL.
      return encode({ ok: false, error: { code: e instanceof LbdError ? e.code : 'E_INTERNAL', message: err.message ?? String(e) } });
    }
  }

  /** Stops listening and removes the socket file (if it is still ours). */
  async close(): Promise<void> {
    this.control.stop();
    const server = this.server;
    if (!server) return;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    try {
      if (fs.statSync(this.socketPath).ino === this.ino) fs.unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
  }
}

/** True when something accepts connections on the unix socket at `p`. */
export function isListening(p: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createConnection(p);
    const done = (v: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(true), timeoutMs); // alive but slow: do not steal it
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}
