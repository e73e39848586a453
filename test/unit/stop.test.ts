import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Control } from '../../src/control/admin/control';
import type { StopResult } from '../../src/control/admin/protocol';
import { AdminServer, isListening } from '../../src/control/admin/server';
import type { Daemon } from '../../src/control/daemon';
import { CliIO } from '../../src/cli/command';
import { main } from '../../src/cli/main';
import { cleanStopped, CleanupHost, stop, tableOwner } from '../../src/cli/stop';
import type { NftObject } from '../../src/host/nftables';
import { instanceNames } from '../../src/host/instance';
import { BASE_CONFIG, testDaemon } from '../helpers/daemon';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-stop-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

function io(): CliIO & { stdout: string; stderr: string } {
  const o = {
    stdout: '',
    stderr: '',
    out: (t: string) => void (o.stdout += t),
    err: (t: string) => void (o.stderr += t),
    stdin: async () => '',
  };
  return o;
}

const silent = pino({ level: 'silent' });
/** Control needs no daemon for ping-less requests such as stop. */
const noDaemon = { log: silent, withdrawDelayMs: (mode: string) => (mode === 'clean' ? 2000 : 0) } as unknown as Daemon;
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

// --- the admin request --------------------------------------------------------------------------

test('stop: answered first with the clean flag and the pid, then the stop callback runs once', async () => {
  for (const clean of [true, false]) {
    const calls: boolean[] = [];
    const control = new Control(noDaemon, { log: silent, stop: (c) => calls.push(c) });
    const r = (await control.handle(clean ? { cmd: 'stop', args: { clean } } : { cmd: 'stop' })) as StopResult;
    // withdraw_delay_ms: how long the CLI must allow for an announcing daemon's withdraw delay.
    assert.deepEqual(r, { stopping: true, clean, pid: process.pid, withdraw_delay_ms: clean ? 2000 : 0 });
    assert.deepEqual(calls, [], 'not stopped before the answer is out');
    await nextTurn();
    assert.deepEqual(calls, [clean]);
    // A second request while stopping: the first one's flag, nothing stopped twice.
    const again = (await control.handle({ cmd: 'stop', args: { clean: !clean } })) as StopResult;
    assert.deepEqual(again, { stopping: true, clean, pid: process.pid });
    await nextTurn();
    assert.deepEqual(calls, [clean]);
  }
});

test('stop: refused without a stop handler, and a clean that is not a boolean', async () => {
  const control = new Control(noDaemon, { log: silent });
  await assert.rejects(control.handle({ cmd: 'stop' }), (e: { code?: string; message?: string }) => {
    assert.equal(e.code, 'E_ADMIN');
    assert.match(e.message!, /cannot be stopped over its admin socket/);
    return true;
  });
  const withStop = new Control(noDaemon, { log: silent, stop: () => assert.fail('must not stop') });
  await assert.rejects(withStop.handle({ cmd: 'stop', args: { clean: 'yes' } }), /invalid clean "yes": expected true or false/);
  await assert.rejects(withStop.handle({ cmd: 'stop', args: { force: true } }), /unknown field "force" in the args of stop/);
  await nextTurn();
});

/** A test daemon's admin socket whose stop closes the server as lbd run does. */
async function withStoppable(onStop: (clean: boolean, close: () => Promise<void>) => void, fn: (sock: string, calls: boolean[]) => Promise<void>) {
  const t = await testDaemon(BASE_CONFIG());
  const sock = path.join(tmp, `run-${++n}`, 'lbd.sock');
  const calls: boolean[] = [];
  const ref: { admin?: AdminServer } = {};
  const control = new Control(t.daemon, {
    log: silent,
    stop: (clean) => {
      calls.push(clean);
      onStop(clean, () => ref.admin!.close());
    },
  });
  const admin = (ref.admin = new AdminServer(control, sock));
  await admin.listen();
  try {
    await fn(sock, calls);
  } finally {
    await admin.close();
    await t.daemon.stop();
  }
}

/**
 * Fakes for everything lbd stop touches on the host. The lock makes its file as lockFile() does
 * (O_CREAT); `events` says in which order the lock, the socket check and the unlock came.
 */
function fakeHost(tables: Record<string, NftObject[]> = {}, alive: number[] = [], lockHeld = false) {
  const host = {
    scripts: [] as string[],
    locks: [] as string[],
    unlocked: 0,
    held: false,
    events: [] as string[],
    lock(p: string) {
      if (lockHeld) throw Object.assign(new Error(`${p} is locked by another process`), { code: 'EWOULDBLOCK' });
      fs.closeSync(fs.openSync(p, 'a', 0o600));
      host.locks.push(p);
      host.held = true;
      host.events.push('lock');
      return 42;
    },
    unlock(fd: number) {
      assert.equal(fd, 42);
      host.unlocked++;
      host.held = false;
      host.events.push('unlock');
    },
    listTable: async (name: string) => tables[name] ?? null,
    nft: async (script: string) => void host.scripts.push(script),
    ownerAlive: (o: { pid: number }) => alive.includes(o.pid),
    listening: (p: string) => {
      host.events.push(`listening${host.held ? ', lock held' : ''}`);
      return isListening(p);
    },
  } satisfies CleanupHost & Record<string, unknown>;
  return host;
}

test('lbd stop: the reply reaches the CLI, which waits until the daemon is gone', async () => {
  await withStoppable(
    (_clean, close) => void close(),
    async (sock, calls) => {
      const o = io();
      assert.equal(await stop(['--clean', '--socket', sock], o, { host: fakeHost(), processStart: () => null, waitMs: 3000 }), 0, o.stderr);
      assert.equal(o.stdout, `lbd (pid ${process.pid}) stopped, every host change removed\n`);
      assert.deepEqual(calls, [true]);
      assert.equal(fs.existsSync(sock), false);
    },
  );
  await withStoppable(
    (_clean, close) => void close(),
    async (sock, calls) => {
      const o = io();
      assert.equal(await stop(['--socket', sock], o, { host: fakeHost(), processStart: () => null, waitMs: 3000 }), 0, o.stderr);
      assert.equal(o.stdout, `lbd (pid ${process.pid}) stopped\n`);
      assert.deepEqual(calls, [false]);
    },
  );
});

test('lbd stop: a daemon that does not go away in time is exit 1', async () => {
  await withStoppable(
    () => {},
    async (sock, calls) => {
      const o = io();
      assert.equal(await stop(['--socket', sock], o, { host: fakeHost(), processStart: () => null, waitMs: 300 }), 1);
      assert.match(o.stderr, new RegExp(`^lbd: lbd \\(pid ${process.pid}\\) was asked to stop but still runs`));
      assert.deepEqual(calls, [false]);
    },
  );
  // The socket went but the process (named by its start time) still runs: not stopped yet.
  await withStoppable(
    (_clean, close) => void close(),
    async (sock) => {
      const o = io();
      assert.equal(await stop(['--socket', sock], o, { host: fakeHost(), processStart: () => 1234, waitMs: 300 }), 1);
      assert.match(o.stderr, /still runs/);
    },
  );
});

// --- arguments ----------------------------------------------------------------------------------

test('lbd stop arguments: unknown options and arguments are usage errors; --help; --clean is taken', async () => {
  let o = io();
  assert.equal(await main(['stop', '--force'], o), 2);
  assert.match(o.stderr, /^lbd: lbd stop: unknown option "--force"/);
  assert.match(o.stderr, /Usage: lbd stop \[--clean\]/);
  o = io();
  assert.equal(await main(['stop', '--clean=yes'], o), 2);
  assert.match(o.stderr, /--clean takes no value/);
  o = io();
  assert.equal(await main(['stop', 'now'], o), 2);
  assert.match(o.stderr, /unexpected argument "now"/);
  o = io();
  assert.equal(await main(['stop', '--help'], o), 0);
  assert.match(o.stdout, /^Usage: lbd stop \[--clean\] \[--socket PATH \| --config FILE\]/);
  o = io();
  assert.equal(await main(['--help'], o), 0);
  assert.match(o.stdout, /^ {2}stop +\S/m);
  // Nothing runs there: an error without --clean; with it, --config is needed to know what to clean.
  const nobody = path.join(tmp, 'nobody.sock');
  o = io();
  assert.equal(await main(['stop', '--socket', nobody], o), 1);
  assert.equal(o.stderr, `lbd: no lbd runs on ${nobody}\n`);
  o = io();
  assert.equal(await main(['stop', '--clean', '--socket', nobody], o), 1);
  assert.match(o.stderr, /^lbd: no lbd runs on .*; cleaning up after a stopped lbd needs --config FILE/);
  assert.equal(o.stdout, '');
});

// --- cleaning up after a stopped lbd ------------------------------------------------------------

const tagged = (table: string, tag: string | null): NftObject[] => [
  { table: { family: 'netdev', name: table, ...(tag ? { comment: tag } : {}) } },
  { set: { family: 'netdev', table, name: 'vips', ...(tag ? { comment: tag } : {}) } },
  { chain: { family: 'netdev', table, name: 'ingress' } },
];

test('tableOwner: from the set, else the table; null for a table lbd did not make', () => {
  assert.deepEqual(tableOwner(tagged('t', 'lbd pid 12 start 34')), { pid: 12, start: 34 });
  assert.deepEqual(tableOwner([{ table: { name: 't', comment: 'lbd pid 5 start 6' } }]), { pid: 5, start: 6 });
  assert.equal(tableOwner(tagged('t', null)), null);
  assert.equal(tableOwner(tagged('t', 'made by hand')), null);
});

/** A stale socket file: one whose server closed without unlinking it. */
async function staleSocket(p: string): Promise<void> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(p, () => r()));
  fs.linkSync(p, `${p}.keep`);
  await new Promise<void>((r) => s.close(() => r()));
  fs.renameSync(`${p}.keep`, p);
}

test('cleanStopped: a dead owner’s table goes, a live owner’s or a foreign one stays; state files and a stale socket go, the lock file stays', async () => {
  const dir = path.join(tmp, `clean-${++n}`);
  fs.mkdirSync(dir);
  const state = path.join(dir, 'lbd_eth0.state');
  for (const f of [state, `${state}.new`, `${state}.rejected`, `${state}.lock`]) fs.writeFileSync(f, 'x');
  const lockIno = fs.statSync(`${state}.lock`).ino;
  const sock = path.join(dir, 'lbd.sock');
  await staleSocket(sock);
  const host = fakeHost(
    { lbd_eth0: tagged('lbd_eth0', 'lbd pid 111 start 1'), lbd_eth0_probe: tagged('lbd_eth0_probe', 'lbd pid 222 start 2'), other: tagged('other', null) },
    [222],
  );
  const r = await cleanStopped({ socket: sock, stateFile: state, tables: ['lbd_eth0', 'lbd_eth0_probe', 'other', 'absent'] }, host);
  assert.deepEqual(host.scripts, ['delete table netdev lbd_eth0\n']);
  assert.deepEqual(host.locks, [`${state}.lock`]);
  assert.equal(host.unlocked, 1);
  assert.deepEqual(r.removed, [
    'removed nftables table netdev lbd_eth0 (its lbd, pid 111, is gone)',
    `removed state file ${state}`,
    `removed ${state}.new`,
    `removed set-aside state file ${state}.rejected`,
    `removed stale admin socket ${sock}`,
  ]);
  assert.deepEqual(r.left, [
    'nftables table netdev lbd_eth0_probe belongs to lbd pid 222, which still runs: left alone',
    'nftables table netdev other was not made by lbd: left alone',
  ]);
  assert.deepEqual(r.errors, []);
  // The lock file is never removed: the very inode a later lbd (or clean-up) flocks.
  assert.deepEqual(fs.readdirSync(dir), ['lbd_eth0.state.lock']);
  assert.equal(fs.statSync(`${state}.lock`).ino, lockIno);
  assert.equal(fs.readFileSync(`${state}.lock`, 'utf8'), 'x');
});

test('cleanStopped: the admin socket is looked at and removed under the state file’s lock, released last', async () => {
  const dir = path.join(tmp, `clean-${++n}`);
  fs.mkdirSync(dir);
  const state = path.join(dir, 'lbd_eth0.state');
  const sock = path.join(dir, 'lbd.sock');
  await staleSocket(sock);
  const host = fakeHost();
  // What an lbd starting the moment the lock is free would find: the stale socket already gone.
  const socketAtUnlock: boolean[] = [];
  const unlock = host.unlock;
  host.unlock = (fd: number) => {
    socketAtUnlock.push(fs.existsSync(sock));
    unlock(fd);
  };
  const r = await cleanStopped({ socket: sock, stateFile: state, tables: [] }, host);
  assert.deepEqual(r.removed, [`removed stale admin socket ${sock}`]);
  assert.deepEqual(host.events, ['lock', 'listening, lock held', 'unlock']);
  assert.deepEqual(socketAtUnlock, [false]);
  // A socket something listens on is left alone, also looked at under the lock.
  const server = net.createServer();
  await new Promise<void>((res) => server.listen(sock, () => res()));
  try {
    const live = fakeHost();
    const r2 = await cleanStopped({ socket: sock, stateFile: state, tables: [] }, live);
    assert.deepEqual(r2.removed, []);
    assert.deepEqual(r2.left, [`something listens on ${sock}: left alone`]);
    assert.deepEqual(live.events, ['lock', 'listening, lock held', 'unlock']);
    assert.ok(fs.existsSync(sock));
  } finally {
    await new Promise<void>((res) => server.close(() => res()));
  }
});

test('cleanStopped: the lock held by a running lbd touches nothing (E_INSTANCE)', async () => {
  const dir = path.join(tmp, `clean-${++n}`);
  fs.mkdirSync(dir);
  const state = path.join(dir, 'lbd_eth0.state');
  fs.writeFileSync(state, 'x');
  const host = fakeHost({ lbd_eth0: tagged('lbd_eth0', 'lbd pid 111 start 1') }, [], true);
  await assert.rejects(cleanStopped({ socket: path.join(dir, 'lbd.sock'), stateFile: state, tables: ['lbd_eth0'] }, host), (e: { code?: string }) => {
    assert.equal(e.code, 'E_INSTANCE');
    return true;
  });
  assert.deepEqual(host.scripts, []);
  assert.ok(fs.existsSync(state));
});

test('cleanStopped: a failing nft is reported and the files still go', async () => {
  const dir = path.join(tmp, `clean-${++n}`);
  fs.mkdirSync(dir);
  const state = path.join(dir, 'lbd_eth0.state');
  fs.writeFileSync(state, 'x');
  const host = { ...fakeHost(), listTable: async () => Promise.reject(new Error('nftables: Operation not permitted')) };
  const r = await cleanStopped({ socket: path.join(dir, 'lbd.sock'), stateFile: state, tables: ['lbd_eth0'] }, host);
  assert.deepEqual(r.errors, ['nftables table netdev lbd_eth0: nftables: Operation not permitted']);
  assert.deepEqual(r.removed, [`removed state file ${state}`]);
});

test('lbd stop --clean --config with no daemon: cleans what the config names, or says nothing to clean', async () => {
  const dir = path.join(tmp, `clean-${++n}`);
  fs.mkdirSync(dir);
  const state = path.join(dir, 'lb.state');
  const sock = path.join(dir, 'lbd.sock');
  const file = path.join(dir, 'lb.yaml');
  fs.writeFileSync(file, `${BASE_CONFIG()}\nstate_file: ${state}\nadmin:\n  socket: ${sock}\n`);
  const names = instanceNames('veth-test');
  // Nothing there.
  let host = fakeHost();
  let o = io();
  assert.equal(await stop(['--clean', '--config', file], o, { host }), 0, o.stderr);
  assert.equal(o.stdout, 'nothing to clean\n');
  assert.deepEqual(host.locks, [`${state}.lock`]);
  assert.ok(fs.existsSync(`${state}.lock`), 'the lock file made by taking the lock stays');
  // What a killed lbd left: its guard (owner gone), its state file, one it set aside.
  fs.writeFileSync(state, 'x');
  fs.writeFileSync(`${state}.rejected`, 'x');
  host = fakeHost({ [names.guardTable]: tagged(names.guardTable, 'lbd pid 999999 start 7') });
  o = io();
  assert.equal(await stop(['--clean', '-c', file], o, { host }), 0, o.stderr);
  assert.equal(
    o.stdout,
    `removed nftables table netdev ${names.guardTable} (its lbd, pid 999999, is gone)\nremoved state file ${state}\nremoved set-aside state file ${state}.rejected\n`,
  );
  assert.deepEqual(host.scripts, [`delete table netdev ${names.guardTable}\n`]);
  assert.equal(fs.existsSync(state), false);
  assert.equal(fs.existsSync(`${state}.rejected`), false);
  assert.ok(fs.existsSync(`${state}.lock`));
  // An lbd holds the state file: nothing touched, E_INSTANCE, exit 1.
  fs.writeFileSync(state, 'x');
  host = fakeHost({ [names.guardTable]: tagged(names.guardTable, 'lbd pid 999999 start 7') }, [], true);
  o = io();
  assert.equal(await stop(['--clean', '--config', file], o, { host }), 1);
  assert.match(o.stderr, /^lbd: an lbd runs with the state file .*lb\.state/);
  assert.deepEqual(host.scripts, []);
  assert.ok(fs.existsSync(state));
});
