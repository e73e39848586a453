/**
 * lbd as a system service, without systemd as PID 1: the daemon runs as an unprivileged user
 * holding only CAP_NET_RAW and CAP_NET_ADMIN (what the unit's User= and AmbientCapabilities=
 * give, made here with setpriv), in a runtime directory of its own (RuntimeDirectory=), talking
 * to a notification socket this test binds where systemd would (NOTIFY_SOCKET, WATCHDOG_USEC).
 * It must forward, health-check (the vip probe too), install and remove its nftables state,
 * serve metrics, answer the operators of its group and refuse everyone else; started without a
 * capability it needs, it must say which and exit.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import path from 'node:path';
import { createLab, Lab, type Command } from '../../lab/lab';
import { requireBinding } from '../../src/dataplane/binding';
import { instanceNames } from '../../src/host/instance';
import { PACKAGE_ROOT } from '../../src/package-root';
import { curl, lbdConfig, startLbd } from '../helpers/lbd-process';

/** Numeric IDs with no passwd entry: nothing on the host is changed to make them. */
const SERVICE_ID = 64_123; // the daemon's user and group (systemd: User=lbd, Group=lbd)
const OPERATOR_ID = 64_124; // a member of the daemon's group
const OUTSIDER_ID = 64_125; // not a member

let lab: Lab;
let node: string;
let lbdBin: string;
let svcDir: string;
let runDir: string;
/** /dev/net/tun's mode before this test (restored after it), when it had to be opened up. */
let tunMode: number | null = null;
before(() => {
  lab = createLab({ shape: 'one-nic' });
  ({ node, lbdBin } = installedForOthers(lab.dir));
  svcDir = path.join(lab.dir, 'service');
  fs.mkdirSync(svcDir, { mode: 0o755 });
  // The runtime directory as systemd makes it (RuntimeDirectory=lbd, RuntimeDirectoryMode=0750).
  runDir = path.join(svcDir, 'run');
  fs.mkdirSync(runDir, { mode: 0o750 });
  fs.chownSync(runDir, SERVICE_ID, SERVICE_ID);
  // Every user may open /dev/net/tun on a Debian host (udev's rule: MODE="0666"; creating an
  // interface still takes CAP_NET_ADMIN). A container without udev may have it 0600: give it
  // the host's mode for this test.
  const mode = fs.statSync('/dev/net/tun').mode & 0o777;
  if (mode !== 0o666) {
    tunMode = mode;
    fs.chmodSync('/dev/net/tun', 0o666);
  }
});
after(() => {
  if (tunMode !== null) fs.chmodSync('/dev/net/tun', tunMode);
  lab?.teardown();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** True when a user with no special rights can reach `p` (every directory on the way searchable, the file readable). */
function readableByOthers(p: string): boolean {
  const parts = path.resolve(p).split('/').filter(Boolean);
  for (let i = 0; i < parts.length; i++) {
    const st = fs.statSync('/' + parts.slice(0, i + 1).join('/'));
    if (i < parts.length - 1 && (st.mode & 0o001) === 0) return false;
    if (i === parts.length - 1 && (st.mode & 0o004) === 0) return false;
  }
  return true;
}

/**
 * The Node binary and lbd as the service user can run them, as a package would install them:
 * these as they are when every user can read them, else copies in the lab's directory (a
 * clone under /root, Node under /root/.cache: nobody but root can reach those).
 */
function installedForOthers(dir: string): { node: string; lbdBin: string } {
  let nodeBin = process.execPath;
  if (!readableByOthers(nodeBin)) {
    nodeBin = path.join(dir, 'node');
    fs.copyFileSync(process.execPath, nodeBin);
    fs.chmodSync(nodeBin, 0o755);
  }
  const needed = ['bin/lbd', 'dist/src/cli/main.js', 'native/build/Release/lbd_native.node', 'node_modules/pino/package.json', 'package.json'];
  if (needed.every((f) => readableByOthers(path.join(PACKAGE_ROOT, f)))) return { node: nodeBin, lbdBin: path.join(PACKAGE_ROOT, 'bin/lbd') };
  const root = path.join(dir, 'lbd');
  for (const part of ['bin', 'dist/src', 'native/build/Release', 'node_modules', 'package.json']) {
    fs.cpSync(path.join(PACKAGE_ROOT, part), path.join(root, part), { recursive: true });
  }
  return { node: nodeBin, lbdBin: path.join(root, 'bin/lbd') };
}

/** `cmd` (an lbd command line starting with node) run as uid/gid `id`, in `groups`, holding only `caps` (setpriv: what systemd's User=, Group=, SupplementaryGroups= and AmbientCapabilities= do). */
function asUser(id: number, cmd: Command, o: { groups?: number[]; caps?: string[] } = {}): Command {
  const caps = (o.caps ?? []).map((c) => `+${c}`).join(',');
  const set = caps ? `-all,${caps}` : '-all';
  return [
    'setpriv',
    `--reuid=${id}`,
    `--regid=${id}`,
    o.groups?.length ? `--groups=${o.groups.join(',')}` : '--clear-groups',
    `--inh-caps=${set}`,
    `--ambient-caps=${set}`,
    `--bounding-set=${set}`,
    '--',
    ...(cmd[0] === 'node' ? [node, ...cmd.slice(1).map((a) => (a.endsWith('/bin/lbd') ? lbdBin : a))] : cmd),
  ];
}

/** `lbd ARGS` as an operator of uid/gid `id` in `groups`, no capabilities. */
function operatorLbd(id: number, args: string[], groups: number[] = []) {
  return lab.tryExec(lab.ns.balancer, asUser(id, ['node', lbdBin, ...args], { groups }), { timeoutMs: 30000 });
}

/**
 * A stand-in for systemd's notification socket, writable by the service user as systemd's is.
 * Like systemd's descriptor store (FileDescriptorStoreMax=), it keeps what FDSTORE=1 sends under
 * its FDNAME, and closes it at FDSTOREREMOVE=1.
 */
function notifySocket(file: string) {
  const addon = requireBinding();
  const fd = addon.listenNotify(file);
  fs.chmodSync(file, 0o777);
  const got: { at: number; msg: string }[] = [];
  const store = new Map<string, number[]>();
  return {
    file,
    store,
    /** Every message received so far (the socket is drained first). */
    messages(): { at: number; msg: string }[] {
      for (const { message: msg, fds } of addon.receiveNotify(fd)) {
        got.push({ at: Date.now(), msg });
        const name = /^FDNAME=(.*)$/m.exec(msg)?.[1] ?? 'stored';
        if (/^FDSTORE=1$/m.test(msg)) store.set(name, [...(store.get(name) ?? []), ...fds]);
        else for (const d of fds) fs.closeSync(d);
        if (/^FDSTOREREMOVE=1$/m.test(msg)) {
          for (const d of store.get(name) ?? []) fs.closeSync(d);
          store.delete(name);
        }
      }
      return got;
    },
    async waitFor(re: RegExp, afterIndex: number, ms: number): Promise<number> {
      for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(50)) {
        const i = this.messages().findIndex((m, j) => j >= afterIndex && re.test(m.msg));
        if (i >= 0) return i;
      }
      throw new Error(`no ${re} from lbd within ${ms} ms; got ${JSON.stringify(this.messages().map((m) => m.msg))}`);
    },
    close: () => {
      addon.closeNotify(fd);
      for (const fds of store.values()) for (const d of fds) fs.closeSync(d);
      store.clear();
    },
  };
}

const tables = () => lab.exec(lab.ns.balancer, ['nft', 'list', 'tables']);

test('as an unprivileged user with CAP_NET_RAW and CAP_NET_ADMIN only, under a fake systemd: forwards, checks, notifies, serves its group', async (t) => {
  const notify = notifySocket(path.join(svcDir, 'notify'));
  const yaml = lbdConfig(lab, {
    serviceLines: ['health_check: { type: vip, interval: 300ms, timeout: 300ms, rise: 2, fall: 2 }'],
    top: `admin:\n  socket: ${runDir}/lbd.sock\nstate_file: ${runDir}/lbd.state\nlocal_access: true\n`,
  });
  const started = Date.now();
  const lbd = await startLbd(lab, yaml, {
    wrap: (cmd) => asUser(SERVICE_ID, cmd, { caps: ['net_raw', 'net_admin'] }),
    env: { ...process.env, NOTIFY_SOCKET: notify.file, WATCHDOG_USEC: '1000000', RUNTIME_DIRECTORY: runDir },
  });
  const guard = `netdev lbd_${lab.ifaces.balancerCapture}`;
  let rs1Broken = false;
  try {
    // Who it runs as: the service user, with exactly the two capabilities.
    const status = fs.readFileSync(`/proc/${lbd.proc.pid}/status`, 'utf8');
    assert.match(status, new RegExp(`^Uid:\\s+${SERVICE_ID}\\s`, 'm'));
    assert.match(status, /^CapEff:\s+0000000000003000$/m, 'CAP_NET_ADMIN (12) and CAP_NET_RAW (13), nothing else');
    const ready = await notify.waitFor(/^READY=1\nSTATUS=forwarding: 1 service, 2 real servers/, 0, 5000);
    t.diagnostic(`READY=1 ${notify.messages()[ready].at - started} ms after the start`);

    // Forwards, and the host's own traffic reaches the VIP too (local_access: a TAP, routes).
    const bodies = new Set<string>();
    for (let i = 0; i < 6; i++) bodies.add(curl(lab, `http://${lab.addr.vip}/`));
    assert.deepEqual(bodies, new Set(['server40', 'server111']));
    assert.match(lab.exec(lab.ns.balancer, ['curl', '-sS', '--max-time', '5', `http://${lab.addr.vip}/`]).trim(), /^server(40|111)$/);

    // Its nftables state: the guard and the vip probe's table.
    assert.match(tables(), new RegExp(`${guard}\\b`));
    assert.match(tables(), new RegExp(`${guard}_probe\\b`));

    // The vip probe works unprivileged: both up, and a server without the VIP on lo goes down.
    const up = (i: number) => lbd.metric('lbd_real_server_up', { service: 'web', real: `${lab.addr.rs[i]}:80` });
    const checks = () => lbd.metric('lbd_health_check_duration_seconds_count', { service: 'web', real: `${lab.addr.rs[1]}:80`, type: 'vip' });
    for (const deadline = Date.now() + 5000; !(checks() >= 3) && Date.now() < deadline;) await sleep(100);
    assert.ok(checks() >= 3, 'the vip probe runs');
    assert.deepEqual([up(0), up(1)], [1, 1]);
    lab.exec(lab.ns.rs[1], ['ip', 'addr', 'del', `${lab.addr.vip}/32`, 'dev', 'lo']);
    rs1Broken = true;
    for (const deadline = Date.now() + 5000; up(1) !== 0 && Date.now() < deadline;) await sleep(100);
    assert.equal(up(1), 0, 'the vip probe marks a server without the VIP on lo down');
    lab.exec(lab.ns.rs[1], ['ip', 'addr', 'add', `${lab.addr.vip}/32`, 'dev', 'lo']);
    rs1Broken = false;

    // The admin socket: 0660 in its group; members may use it, others are refused.
    const sock = fs.statSync(lbd.socket);
    assert.equal(sock.mode & 0o777, 0o660);
    assert.equal(sock.uid, SERVICE_ID);
    assert.equal(sock.gid, SERVICE_ID);
    const member = operatorLbd(OPERATOR_ID, ['list', '--socket', lbd.socket], [SERVICE_ID]);
    assert.equal(member.status, 0, member.stderr);
    assert.match(member.stdout, new RegExp(`TCP\\s+${lab.addr.vip.replace(/\./g, '\\.')}:80`));
    const outsider = operatorLbd(OUTSIDER_ID, ['list', '--socket', lbd.socket]);
    assert.notEqual(outsider.status, 0);
    assert.match(outsider.stderr, /permission denied/i);
    assert.match(outsider.stderr, new RegExp(`group ${SERVICE_ID}|not a member|usermod`));

    // A reload from an operator: RELOADING=1, then READY=1 again.
    const before = notify.messages().length;
    const reload = operatorLbd(OPERATOR_ID, ['reload', '--socket', lbd.socket], [SERVICE_ID]);
    assert.equal(reload.status, 0, reload.stderr);
    const reloading = await notify.waitFor(/^RELOADING=1\nMONOTONIC_USEC=\d+/, before, 5000);
    await notify.waitFor(/^READY=1/, reloading + 1, 5000);

    // The watchdog: WATCHDOG_USEC=1 s, a ping every half of it from the data plane's tick.
    const pings = notify.messages().filter((m) => m.msg === 'WATCHDOG=1');
    const runningS = (Date.now() - notify.messages()[ready].at) / 1000;
    t.diagnostic(`${pings.length} WATCHDOG=1 in ${runningS.toFixed(1)} s`);
    assert.ok(pings.length >= Math.floor(runningS) && pings.length >= 2, `${pings.length} pings in ${runningS} s`);

    // Metrics, served by the unprivileged process.
    assert.match(lbd.metrics(), /^lbd_build_info\{/m);
  } finally {
    if (rs1Broken) lab.exec(lab.ns.rs[1], ['ip', 'addr', 'add', `${lab.addr.vip}/32`, 'dev', 'lo']);
    const stopAt = notify.messages().length;
    const stop = operatorLbd(OPERATOR_ID, ['stop', '--clean', '--socket', lbd.socket], [SERVICE_ID]);
    const { code } = await lbd.stop();
    assert.equal(stop.status, 0, stop.stderr);
    assert.equal(code, 0);
    await notify.waitFor(/^STOPPING=1/, stopAt, 2000);
    notify.close();
  }
  // lbd stop --clean removed its nftables state, unprivileged as well.
  assert.doesNotMatch(tables(), new RegExp(`${guard}\\b`));
  assert.notEqual(
    lab.tryExec(lab.ns.balancer, ['ip', 'link', 'show', instanceNames(lab.ifaces.balancerCapture).localInterface]).status,
    0,
    'the local_access TAP is gone',
  );
});

test('started without CAP_NET_ADMIN, lbd names the capability it lacks and exits 78 (a restart would not mend it), changing nothing', async () => {
  const yaml = lbdConfig(lab, { top: `admin:\n  socket: ${runDir}/lacking.sock\nstate_file: ${runDir}/lacking.state\n` });
  const before = tables();
  await assert.rejects(
    startLbd(lab, yaml, { wrap: (cmd) => asUser(SERVICE_ID, cmd, { caps: ['net_raw'] }), env: { ...process.env, RUNTIME_DIRECTORY: runDir } }),
    (e: Error) => {
      assert.match(e.message, /exit 78\)/);
      assert.match(e.message, /CAP_NET_ADMIN/);
      assert.doesNotMatch(e.message, /CAP_NET_RAW[^,]*(missing|lacks)/);
      return true;
    },
  );
  assert.equal(tables(), before, 'no nftables change');
});

/** PIDs of the announce keepers running as the service user (a service's other processes, which KillMode=mixed kills). */
function serviceKeepers(): number[] {
  const pids: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      const uid = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))?.[1];
      if (cmdline.includes('announce-keeper') && Number(uid) === SERVICE_ID) pids.push(Number(p));
    } catch {
      /* gone meanwhile */
    }
  }
  return pids;
}

test('systemctl restart with hold_on_restart: the announce interface waits in the descriptor store while KillMode=mixed kills the keeper', async (t) => {
  const notify = notifySocket(path.join(svcDir, 'notify-restart'));
  const iface = instanceNames(lab.ifaces.balancerCapture).announceInterface;
  const routes = () => lab.exec(lab.ns.balancer, ['ip', 'route', 'show', 'table', '4242']);
  const announced = () => routes().includes(`${lab.addr.vip} dev ${iface} proto static`);
  const yaml = `${lbdConfig(lab, { scheduler: 'mh', top: `admin:\n  socket: ${runDir}/restart.sock\nstate_file: ${runDir}/restart.state\n` })}announce:\n  hold_on_restart: 2s\n`;
  const asService = (cmd: Command) => asUser(SERVICE_ID, cmd, { caps: ['net_raw', 'net_admin'] });
  const env = { ...process.env, NOTIFY_SOCKET: notify.file, RUNTIME_DIRECTORY: runDir };
  const first = await startLbd(lab, yaml, { wrap: asService, env });
  let second: Awaited<ReturnType<typeof startLbd>> | null = null;
  let missing = 0;
  let watching = true;
  const watch = (async () => {
    while (watching) {
      if (!announced()) missing++;
      await sleep(10);
    }
  })();
  try {
    assert.ok(announced(), routes());
    // systemctl restart: SIGTERM to the main process; once it has exited, KillMode=mixed
    // SIGKILLs what is left of the service (the keeper, which would have held the interface).
    assert.equal((await first.stop()).code, 0);
    const keepers = serviceKeepers();
    assert.equal(keepers.length, 1, 'the keeper outlived lbd (its hold)');
    for (const pid of keepers) process.kill(pid, 'SIGKILL');
    notify.messages();
    assert.equal(notify.store.get('announce')?.length, 1, 'lbd gave the service manager a queue of the interface (FDSTORE=1, FDNAME=announce)');
    await sleep(500);
    assert.ok(announced(), 'held by the store alone, the interface and its route stay');
    // The next start: systemd passes the stored descriptor (LISTEN_FDS from fd 3, LISTEN_PID = the process's own).
    const stored = notify.store.get('announce')!;
    second = await startLbd(lab, yaml, {
      wrap: (cmd) => ['sh', '-c', 'export LISTEN_PID=$$; exec "$@"', 'sh', ...asService(cmd)],
      env: { ...env, LISTEN_FDS: String(stored.length), LISTEN_FDNAMES: 'announce' },
      fds: stored,
    });
    await notify.waitFor(/^FDSTOREREMOVE=1\nFDNAME=announce$/, 0, 5000);
    assert.equal(notify.store.size, 0, 'the store let go of it once the new lbd attached');
    await sleep(2500); // past the hold: the new lbd's keeper holds the interface alone
    assert.ok(announced());
    watching = false;
    await watch;
    assert.equal(missing, 0, 'the VIP route was never missing');
    t.diagnostic('the VIP route stayed through a restart whose keeper was killed (polled every 10 ms)');
    assert.equal(curl(lab, `http://${lab.addr.vip}/`).startsWith('server'), true);
  } finally {
    watching = false;
    await watch;
    await second?.stopClean();
    if (!second) await first.stopClean();
    for (const pid of serviceKeepers()) process.kill(pid, 'SIGKILL');
    notify.close();
  }
  assert.ok(!announced(), 'withdrawn at the end');
});
