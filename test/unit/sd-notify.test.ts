/**
 * What lbd tells systemd (Type=notify): the messages, the watchdog's pace, and the datagrams
 * themselves, sent through the addon to a socket this test binds where systemd would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { requireBinding } from '../../src/dataplane/binding';
import { ServiceNotifier } from '../../src/host/sd-notify';

function recorder(errno = 0) {
  const sent: { socket: string; message: string }[] = [];
  return { sent, send: (socket: string, message: string) => (sent.push({ socket, message }), errno) };
}

test('not under a service manager (no NOTIFY_SOCKET), the notifier sends nothing', () => {
  const r = recorder();
  const n = new ServiceNotifier({ WATCHDOG_USEC: '10000000' }, r.send);
  n.ready('forwarding');
  n.reloading();
  n.stopping('stopping');
  n.keepAlive(1e9);
  assert.equal(n.enabled, false);
  assert.equal(n.watchdogIntervalMs, null);
  assert.deepEqual(r.sent, []);
  assert.equal(new ServiceNotifier({ NOTIFY_SOCKET: 'relative/path' }, r.send).enabled, false, 'neither a path nor an abstract name');
});

test('READY=1, RELOADING=1 with MONOTONIC_USEC, STOPPING=1, each with a one-line STATUS', () => {
  const r = recorder();
  const n = new ServiceNotifier({ NOTIFY_SOCKET: '/run/systemd/notify' }, r.send);
  n.ready('forwarding: 2 services');
  n.reloading();
  n.ready('forwarding: 3 services');
  n.stopping('stopping:\n  VIPs withdrawn');
  assert.ok(r.sent.every((s) => s.socket === '/run/systemd/notify'));
  const msgs = r.sent.map((s) => s.message);
  assert.equal(msgs[0], 'READY=1\nSTATUS=forwarding: 2 services');
  const reloading = /^RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading$/.exec(msgs[1]);
  assert.ok(reloading, msgs[1]);
  // CLOCK_MONOTONIC in microseconds: within a second of now.
  const nowUs = Number(process.hrtime.bigint() / 1000n);
  assert.ok(Math.abs(nowUs - Number(reloading[1])) < 1e6);
  assert.equal(msgs[2], 'READY=1\nSTATUS=forwarding: 3 services');
  assert.equal(msgs[3], 'STOPPING=1\nSTATUS=stopping:; VIPs withdrawn');
});

test('the watchdog pings at half of WATCHDOG_USEC, and only for the process WATCHDOG_PID names', () => {
  const r = recorder();
  const n = new ServiceNotifier({ NOTIFY_SOCKET: '@lbd-test', WATCHDOG_USEC: '4000000' }, r.send, undefined, 1234);
  assert.equal(n.watchdogIntervalMs, 2000);
  // The data plane ticks every 10 ms; pings go out every 2 s of those.
  for (let t = 0; t <= 10_000; t += 10) n.keepAlive(t);
  assert.equal(r.sent.filter((s) => s.message === 'WATCHDOG=1').length, 6, 'at 0, 2, 4, 6, 8 and 10 s');
  assert.equal(new ServiceNotifier({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '4000000', WATCHDOG_PID: '1234' }, r.send, undefined, 1234).watchdogIntervalMs, 2000);
  assert.equal(
    new ServiceNotifier({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '4000000', WATCHDOG_PID: '99' }, r.send, undefined, 1234).watchdogIntervalMs,
    null,
    "another process's watchdog",
  );
  assert.equal(new ServiceNotifier({ NOTIFY_SOCKET: '/x', WATCHDOG_USEC: 'junk' }, r.send).watchdogIntervalMs, null);
});

test('a send that fails is logged once, and the daemon goes on', () => {
  const r = recorder(111); // ECONNREFUSED: systemd gone
  const warned: unknown[] = [];
  const log = { warn: (o: unknown) => warned.push(o) } as never;
  const n = new ServiceNotifier({ NOTIFY_SOCKET: '/run/systemd/notify' }, r.send, log);
  n.ready('forwarding');
  n.ready('forwarding');
  assert.equal(n.failures, 2);
  assert.equal(warned.length, 1);
});

test('fromProcess takes NOTIFY_SOCKET and the watchdog out of the environment the programs lbd runs inherit', () => {
  const saved = { ...process.env };
  try {
    process.env.NOTIFY_SOCKET = '/run/systemd/notify';
    process.env.WATCHDOG_USEC = '2000000';
    process.env.WATCHDOG_PID = String(process.pid);
    const n = ServiceNotifier.fromProcess(() => 0);
    assert.equal(n.socket, '/run/systemd/notify');
    assert.equal(n.watchdogIntervalMs, 1000);
    assert.equal(process.env.NOTIFY_SOCKET, undefined);
    assert.equal(process.env.WATCHDOG_USEC, undefined);
    assert.equal(process.env.WATCHDOG_PID, undefined);
  } finally {
    process.env = saved;
  }
});

test('the addon delivers each notification as one datagram, to a path and to an abstract name, descriptors attached', () => {
  const addon = requireBinding();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-notify-'));
  const sock = path.join(dir, 'notify');
  const abstract = `@lbd-notify-test-${process.pid}`;
  const fd = addon.listenNotify(sock);
  const afd = addon.listenNotify(abstract);
  try {
    const n = new ServiceNotifier({ NOTIFY_SOCKET: sock }, (s, m) => addon.sdNotify(s, m));
    n.ready('forwarding');
    n.stopping('stopping');
    assert.deepEqual(addon.receiveNotify(fd), [
      { message: 'READY=1\nSTATUS=forwarding', fds: [] },
      { message: 'STOPPING=1\nSTATUS=stopping', fds: [] },
    ]);
    assert.deepEqual(addon.receiveNotify(fd), [], 'drained');
    assert.equal(addon.sdNotify(abstract, 'WATCHDOG=1'), 0);
    const devNull = fs.openSync('/dev/null', 'r');
    assert.equal(addon.sdNotify(abstract, 'FDSTORE=1\nFDNAME=test', [devNull]), 0);
    const got = addon.receiveNotify(afd);
    assert.deepEqual(
      got.map((g) => g.message),
      ['WATCHDOG=1', 'FDSTORE=1\nFDNAME=test'],
    );
    // The descriptor arrived, open, as another number for the same file.
    assert.equal(got[1].fds.length, 1);
    assert.notEqual(got[1].fds[0], devNull);
    assert.equal(fs.fstatSync(got[1].fds[0]).rdev, fs.fstatSync(devNull).rdev);
    fs.closeSync(got[1].fds[0]);
    fs.closeSync(devNull);
    // Nobody listening: the errno comes back (ENOENT), nothing is thrown.
    assert.equal(addon.sdNotify(path.join(dir, 'absent'), 'READY=1'), os.constants.errno.ENOENT);
    assert.equal(addon.sdNotify('not-a-path', 'READY=1'), os.constants.errno.EINVAL);
  } finally {
    addon.closeNotify(fd);
    addon.closeNotify(afd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the descriptor store: FDSTORE=1 with the descriptor, FDSTOREREMOVE=1; what was passed back is known by name only when LISTEN_PID is ours', () => {
  const sent: { message: string; fds?: number[] }[] = [];
  const send = (_s: string, message: string, fds?: number[]) => (sent.push({ message, fds }), 0);
  const env = { NOTIFY_SOCKET: '/run/systemd/notify', LISTEN_FDS: '1', LISTEN_FDNAMES: 'announce', LISTEN_PID: '1234' };
  const n = new ServiceNotifier(env, send, undefined, 1234);
  assert.deepEqual([...n.passedNames], ['announce']);
  assert.equal(n.store('announce', 17), true);
  n.release('announce');
  assert.deepEqual(sent, [
    { message: 'FDSTORE=1\nFDNAME=announce', fds: [17] },
    { message: 'FDSTOREREMOVE=1\nFDNAME=announce', fds: undefined },
  ]);
  assert.deepEqual([...new ServiceNotifier({ ...env, LISTEN_PID: '99' }, send, undefined, 1234).passedNames], [], "another process's descriptors");
  assert.deepEqual([...new ServiceNotifier({ ...env, LISTEN_FDNAMES: undefined }, send, undefined, 1234).passedNames], ['unknown']);
  assert.equal(new ServiceNotifier({}, send).store('announce', 17), false, 'not under a service manager: nothing kept');
});

test('a watchdog ping that could not go out (systemd busy) is tried again at the next tick, not a whole interval later', () => {
  let errno = 11; // EAGAIN: the manager's queue is full
  const pings: number[] = [];
  const n = new ServiceNotifier(
    { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '2000000' },
    (_s, m) => (m === 'WATCHDOG=1' && pings.push(errno), errno),
  );
  n.keepAlive(0);
  n.keepAlive(10);
  errno = 0;
  n.keepAlive(20);
  n.keepAlive(30);
  assert.deepEqual(pings, [11, 11, 0], 'tried at each tick until one went out, then paced again');
  n.keepAlive(1020);
  assert.equal(pings.length, 4);
});

test('a binding that cannot send (it failed to load) is a failed notification, not an exception', () => {
  const n = new ServiceNotifier({ NOTIFY_SOCKET: '/run/systemd/notify' }, () => {
    throw new Error('no binding');
  });
  n.status('could not start: no binding');
  assert.equal(n.failures, 1);
});
