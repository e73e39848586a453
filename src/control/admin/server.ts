/**
 * The admin socket's server side: listens on the unix socket (0660 and of admin.group, in a 0750
 * directory when lbd creates it; never over a live daemon's), splits the stream into request
 * lines, answers each in order through Control, and removes the socket on close.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Logger } from 'pino';
import { LbdError } from '../../errors';
import { groupName, readGroups, resolveGroup } from '../../host/groups';
import type { Control } from './control';
import { AdminAnswer, AdminError } from './protocol';
import { NOT_AN_OBJECT } from './schema';

/**
 * Per-client limits: a client that misbehaves (or a script that never reads its answers) costs
 * the daemon a bounded amount of memory and of event-loop time, never the forwarding of frames.
 */
export interface AdminLimits {
  /** The longest request line: a request is a few hundred bytes, 1 MiB is generous and still bounds one client's buffer. */
  maxLine: number;
  /**
   * Requests read but not answered yet (their bytes are bounded by maxLine too). Past it the
   * client is not read from (the kernel's socket buffer, then the client's writes, hold the
   * rest): enough to pipeline, small enough that one client's backlog stays a few KiB, not
   * 20,000 answers.
   */
  maxPending: number;
  /** A client that sends nothing and reads nothing (it does not drain its answers) for this long is closed: nothing the CLI does waits that long between requests. */
  idleMs: number;
  /** Connections at once: the CLI uses one per command; 64 leaves room for scripts and monitoring, and bounds the sum of the above. */
  maxClients: number;
}

export const ADMIN_LIMITS: Readonly<AdminLimits> = { maxLine: 1 << 20, maxPending: 32, idleMs: 60_000, maxClients: 64 };

/** Who may use the socket besides its owner (root, or lbd's user): the members of one group. */
export interface AdminAccess {
  /** admin.group: a group name (of /etc/group) or a numeric gid; absent = the process's own (effective) primary group. */
  group?: string | number;
}

/** The socket's mode: its owner and its group read and write (connect(2) needs write). */
export const ADMIN_SOCKET_MODE = 0o660;
/** A directory lbd creates for the socket: its group may reach the socket (search), not list or add to it. */
export const ADMIN_DIR_MODE = 0o750;

/** admin.group cannot be used (no such group, or lbd may not give it): a restart will not mend it. */
export class AdminGroupError extends AdminError {
  constructor(message: string) {
    super('E_ADMIN', message);
  }
}

/**
 * The gid the socket gets: admin.group's (a name looked up in `groupFile`, a number as it is),
 * else the process's effective gid. Throws E_ADMIN for a name /etc/group does not have.
 */
export function adminGroupId(group: string | number | undefined, groupFile?: string): number {
  if (group === undefined) return process.getegid?.() ?? 0;
  const gid = resolveGroup(group, readGroups(groupFile));
  if (gid === undefined) {
    throw new AdminGroupError(
      `admin.group: no group ${JSON.stringify(group)} in ${groupFile ?? '/etc/group'}: create it (groupadd --system ${group}), or give its numeric gid`,
    );
  }
  return gid;
}

/** Sets the group of `p` (the socket, or a directory lbd made), with an error that says what to do when it is refused. */
function chownGroup(p: string, gid: number, group: string | number | undefined, what: string): void {
  if (fs.statSync(p).gid === gid) return;
  try {
    fs.chownSync(p, -1, gid);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const named = group === undefined ? `gid ${gid}` : `group ${String(group)}${typeof group === 'string' ? ` (gid ${gid})` : ''}`;
    const hint =
      code === 'EPERM'
        ? `: lbd (uid ${process.geteuid?.()}) is not a member of ${named} and lacks CAP_CHOWN; make its user a member (usermod -aG ${typeof group === 'string' ? group : gid} USER, or SupplementaryGroups= in its unit) or run it as root`
        : `: ${(e as Error).message}`;
    throw new AdminGroupError(`cannot give the admin ${what} ${p} to ${named} (admin.group)${hint}`);
  }
}

/**
 * Makes the socket's directory when it is missing: 0750, every level made of the socket's group
 * (0700 until it is), so that the group can reach the socket. lbd calls it first thing, before
 * anything else (the state file, by default in the same /run/lbd) makes the directory root's
 * alone. True when it made it; a directory that exists is left as it is.
 */
export function prepareSocketDirectory(socketPath: string, group: string | number | undefined): boolean {
  const dir = path.dirname(socketPath);
  if (fs.existsSync(dir)) return false;
  const gid = adminGroupId(group);
  const first = fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Every level made here (not only the last) must let the group through.
  for (let d = dir; first !== undefined; d = path.dirname(d)) {
    chownGroup(d, gid, group, 'socket directory');
    fs.chmodSync(d, ADMIN_DIR_MODE);
    if (d === first || d === path.dirname(d)) break;
  }
  return true;
}

/** What an unexpected failure answers: the details (a stack) go to the daemon's log, not to the client. */
const INTERNAL_MESSAGE = "the daemon failed to answer this request (an internal error; the daemon's log has the details)";

/** One answer line's JSON (without its newline). */
function encode(answer: AdminAnswer): string {
  return JSON.stringify(answer);
}

/** Stands in the queue for a line over maxLine: its refusal is answered in order, then the connection closes. */
const TOO_LONG = Symbol('too long');

/** Lets the event loop run (frames, timers, other clients) between two requests of one client. */
const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

export class AdminServer {
  private server: net.Server | null = null;
  private ino = -1;
  private readonly sockets = new Set<net.Socket>();
  private turn: Promise<void> = Promise.resolve();
  readonly limits: Readonly<AdminLimits>;

  constructor(
    private readonly control: Control,
    readonly socketPath: string,
    private readonly log?: Logger,
    limits: Partial<AdminLimits> = {},
    readonly access: Readonly<AdminAccess> = {},
  ) {
    this.limits = { ...ADMIN_LIMITS, ...limits };
  }

  /**
   * Listens on the socket: creates its directory (0750, of the socket's group) when missing (one
   * that exists, such as systemd's RuntimeDirectory=, is left as it is), replaces a stale socket
   * left by a dead daemon, refuses to take over one a live daemon answers on. The socket is
   * 0660 and belongs to admin.group (else lbd's primary group): its owner and that group's
   * members may use it. It is made 0600 and given its group before it is opened to the group.
   */
  async listen(): Promise<void> {
    const p = this.socketPath;
    const dir = path.dirname(p);
    const group = this.access.group;
    const gid = adminGroupId(group);
    if (!prepareSocketDirectory(p, group)) this.warnUnreachable(dir, gid);
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
    try {
      chownGroup(p, gid, group, 'socket');
      fs.chmodSync(p, ADMIN_SOCKET_MODE);
    } catch (e) {
      await new Promise<void>((r) => server.close(() => r()));
      try {
        fs.unlinkSync(p);
      } catch {
        // already gone
      }
      throw e;
    }
    this.ino = fs.statSync(p).ino;
    this.server = server;
    this.control.start();
  }

  /** Logs when an existing directory of the socket does not let the socket's group reach it (search). */
  private warnUnreachable(dir: string, gid: number): void {
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch {
      return;
    }
    const searchable = st.gid === gid ? (st.mode & 0o010) !== 0 : (st.mode & 0o001) !== 0;
    if (searchable) return;
    const name = groupName(gid) ?? String(gid);
    this.log?.warn(
      { dir, mode: `0${(st.mode & 0o7777).toString(8)}`, dirGroup: groupName(st.gid) ?? st.gid, socketGroup: name },
      `the admin socket's directory ${dir} does not let group ${name} search it: only root and its owner can use the admin socket (chgrp ${name} ${dir}; chmod 0750 ${dir}, or systemd's RuntimeDirectoryMode=0750 with Group=${name})`,
    );
  }

  /**
   * One client: splits its stream into lines and answers them one at a time, in order. Reading
   * stops (backpressure) while maxPending requests wait or while the client does not read its
   * answers (write() returned false, until 'drain'), so that what one client costs stays bounded.
   * Lines are taken off the stream only as they are answered, so a pipelined burst is never
   * split in one go either.
   */
  private serve(sock: net.Socket): void {
    sock.on('error', () => {});
    if (this.sockets.size >= this.limits.maxClients) {
      sock.end(
        encode({ ok: false, error: { code: 'E_ADMIN', message: `the daemon serves ${this.limits.maxClients} admin clients already: try again` } }) + '\n',
      );
      sock.destroySoon();
      return;
    }
    this.sockets.add(sock);
    const lim = this.limits;
    let buf = ''; // what was read and not taken as a request yet
    const pending: (string | typeof TOO_LONG)[] = [];
    let queued = 0; // the bytes of the pending lines
    let busy = false; // a request is being answered (the idle timer does not run meanwhile)
    let blocked = false; // write() returned false: wait for 'drain'
    let done = false; // closing: nothing more is read or answered
    let stopped = false; // a line too long came: nothing more is read, what came before it is answered
    // Refreshed on every read and answer; a request still being answered (a reload may take long) is not idleness.
    const idle: NodeJS.Timeout = setTimeout(() => (busy ? idle.refresh() : sock.destroy()), lim.idleMs);
    idle.unref();
    const touch = () => void idle.refresh();
    /** Moves complete lines from buf to pending, up to the limits. */
    const take = () => {
      while (!stopped && pending.length < lim.maxPending && queued <= lim.maxLine) {
        const i = buf.indexOf('\n');
        if (i < 0 ? buf.length > lim.maxLine : i > lim.maxLine) {
          stopped = true;
          pending.push(TOO_LONG);
          buf = '';
          sock.pause();
          break;
        }
        if (i < 0) break;
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (line) {
          pending.push(line);
          queued += line.length;
        }
      }
    };
    const flow = () => {
      if (done || stopped) return;
      if (blocked || pending.length >= lim.maxPending || queued > lim.maxLine) sock.pause();
      else sock.resume();
    };
    const finish = (out: string) => {
      // The refusal is answered after the requests before it, then the connection closes.
      done = true;
      pending.length = 0;
      buf = '';
      sock.end(out + '\n');
    };
    const pump = async () => {
      if (busy) return;
      busy = true;
      touch();
      try {
        while (!done && !blocked && !sock.destroyed && pending.length) {
          await this.nextTurn();
          if (sock.destroyed || done) break;
          const line = pending.shift()!;
          if (line === TOO_LONG) {
            finish(
              encode({
                ok: false,
                error: { code: 'E_USAGE', message: `request too long: a request line is at most ${lim.maxLine} bytes; closing the connection` },
              }),
            );
            break;
          }
          queued -= line.length;
          const out = await this.answer(line);
          if (sock.destroyed || done) break;
          if (!sock.write(out + '\n')) blocked = true;
          take();
          flow();
        }
      } catch (e) {
        // answer() does not throw; this is a last guard so that nothing escapes to the process.
        this.log?.error({ err: (e as Error)?.stack ?? String(e) }, 'admin client failed');
        sock.destroy();
      } finally {
        busy = false;
        touch();
      }
    };
    sock.on('drain', () => {
      blocked = false;
      touch();
      flow();
      void pump();
    });
    sock.on('close', () => {
      done = true;
      clearTimeout(idle);
      this.sockets.delete(sock);
    });
    sock.setEncoding('utf8');
    sock.on('data', (chunk: string) => {
      if (done || stopped) return;
      touch();
      buf += chunk;
      take();
      flow();
      void pump();
    });
  }

  /**
   * Resolves on a later turn of the event loop than the previous request's, whichever client
   * sent it: admin work runs one request per turn, frames and timers in between, so that however
   * many clients pipeline requests, forwarding waits for one answer at most.
   */
  private nextTurn(): Promise<void> {
    const t = this.turn.then(yieldToLoop);
    this.turn = t;
    return t;
  }

  /** One line's answer. Never throws: whatever a request does wrong is its answer. */
  private async answer(line: string): Promise<string> {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      return encode({ ok: false, error: { code: 'E_USAGE', message: NOT_AN_OBJECT } });
    }
    try {
      const result = await this.control.handle(value);
      return encode({ ok: true, result });
    } catch (e) {
      if (e instanceof LbdError) return encode({ ok: false, error: { code: e.code, message: e.message } });
      // Only LbdError codes travel (AdminAnswer): anything else is a bug, logged and answered as E_INTERNAL.
      const cmd = value !== null && typeof value === 'object' ? (value as { cmd?: unknown }).cmd : undefined;
      this.log?.error({ err: (e as Error)?.stack ?? String(e), cmd: typeof cmd === 'string' ? cmd.slice(0, 40) : undefined }, 'admin request failed');
      return encode({ ok: false, error: { code: 'E_INTERNAL', message: INTERNAL_MESSAGE } });
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
