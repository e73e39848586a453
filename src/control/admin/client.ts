/**
 * The CLI's end of the admin socket: one request, one answer, and the daemon's errors (or the
 * lack of a daemon) as LbdErrors the CLI prints. Loads only the protocol, so that `lbd list` and
 * the other daemon commands start without the config loader, reconcile or the data plane.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { isErrorCode, LbdError } from '../../errors';
import { readGroups } from '../../host/groups';
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

/** What a user refused by the admin socket (EACCES) can see of it: what permissionDeniedMessage explains. */
export interface SocketRefusal {
  socketPath: string;
  /** The socket as this user sees it (stat), with its group's name; absent when the user cannot reach it. */
  socket?: { mode: number; uid: number; gid: number; group?: string };
  /** When the socket cannot be reached: the first directory on its path this user cannot search, as it is. */
  blocked?: { dir: string; mode?: number; gid?: number; group?: string };
  /** This process has the socket's group (as its primary or a supplementary group). */
  inGroup?: boolean;
  /** This user is listed as a member of the socket's group in /etc/group (a new login would have it). */
  listedMember?: boolean;
}

const octal = (mode: number) => `0${(mode & 0o777).toString(8)}`;

/**
 * The E_PERMISSION message: what keeps this user out of the admin socket and what to do about it.
 * Pure: socketRefusal() gathers what it is given.
 */
export function permissionDeniedMessage(r: SocketRefusal): string {
  const head = `permission denied on ${r.socketPath}`;
  const asRoot = 'run the command as root (sudo lbd …)';
  const join = (group: string) => `sudo usermod -aG ${group} $USER, then log in again`;
  if (!r.socket) {
    const b = r.blocked;
    if (!b) return `${head}: ${asRoot}`;
    const name = b.group ?? (b.gid !== undefined ? String(b.gid) : undefined);
    const where = `this user cannot reach it: the directory ${b.dir}${b.mode !== undefined ? ` (mode ${octal(b.mode)}${name !== undefined ? `, group ${name}` : ''})` : ''} does not let it through`;
    if (b.mode !== undefined && (b.mode & 0o010) !== 0 && name !== undefined && b.gid !== 0) {
      return `${head}: ${where}: ${asRoot} or as a member of group ${name} (${join(name)})`;
    }
    return `${head}: ${where}: ${asRoot}; for a group of operators, the directory must let the socket's group search it (chmod 0750 and the daemon's group, e.g. systemd's RuntimeDirectoryMode=0750)`;
  }
  const s = r.socket;
  const name = s.group ?? String(s.gid);
  if ((s.mode & 0o060) !== 0o060) {
    const who = s.uid === 0 ? 'only root' : `only its owner (uid ${s.uid}) and root`;
    return `${head}: the socket is mode ${octal(s.mode)}: ${who} may use it: ${asRoot}`;
  }
  if (s.gid === 0) {
    return `${head}: the socket belongs to group ${name}: ${asRoot}, or set admin.group in the daemon's config to a group of operators (e.g. lbd) and restart it`;
  }
  if (r.listedMember && !r.inGroup) {
    return `${head}: this user is a member of group ${name} in /etc/group, but this login session does not have it yet: log in again (or run newgrp ${name}), or ${asRoot}`;
  }
  return `${head}: ${asRoot} or as a member of group ${name}, the socket's group (${join(name)})`;
}

/** Gathers what this user can see of a socket it was refused (EACCES/EPERM) for permissionDeniedMessage. */
export function socketRefusal(socketPath: string): SocketRefusal {
  const groups = readGroups();
  const nameOf = (gid: number) => groups.find((g) => g.gid === gid)?.name;
  let st: fs.Stats;
  try {
    st = fs.statSync(socketPath);
  } catch {
    return { socketPath, blocked: blockedDirectory(socketPath, nameOf) };
  }
  let user: string | undefined;
  try {
    user = os.userInfo().username;
  } catch {
    user = undefined; // no passwd entry
  }
  const entry = groups.find((g) => g.gid === st.gid);
  const mine = [process.getegid?.(), ...(process.getgroups?.() ?? [])];
  return {
    socketPath,
    socket: { mode: st.mode, uid: st.uid, gid: st.gid, group: entry?.name },
    inGroup: mine.includes(st.gid),
    listedMember: user !== undefined && entry !== undefined && entry.members.includes(user),
  };
}

/** The first directory on the way to `p` this process cannot search (X_OK), with its mode and group when it can see them. */
function blockedDirectory(p: string, nameOf: (gid: number) => string | undefined): SocketRefusal['blocked'] {
  const parts = path.resolve(p).split('/').slice(1, -1);
  let dir = '/';
  for (const part of ['', ...parts]) {
    dir = part ? path.join(dir, part) : dir;
    try {
      fs.accessSync(dir, fs.constants.X_OK);
    } catch {
      try {
        const st = fs.statSync(dir);
        return { dir, mode: st.mode, gid: st.gid, group: nameOf(st.gid) };
      } catch {
        return { dir };
      }
    }
  }
  return undefined;
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
      else if (e.code === 'EACCES' || e.code === 'EPERM') finish(new LbdError('E_PERMISSION', permissionDeniedMessage(socketRefusal(socketPath))));
      else finish(new LbdError('E_ADMIN', `cannot talk to the daemon on ${socketPath}: ${e.message}`));
    });
    sock.on('close', () => finish(new LbdError('E_PROTOCOL', `the daemon on ${socketPath} closed the connection without answering`)));
  });
}
