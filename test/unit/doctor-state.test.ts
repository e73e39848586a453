import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/config/load';
import { formatReport, runDoctor, type FileSystemInfo, type Finding, type HostView, type StateFileView } from '../../src/doctor/checks';
import { checkStateFile, stateFileBytes, stateFilePath } from '../../src/doctor/state';
import { SystemHost, mountOf } from '../../src/doctor/system';
import { HEADER_BYTES, bootId, writeHeader, type StateHeader } from '../../src/dataplane/state-file';
import { regionBytes, regionSizes } from '../../src/dataplane/state';

const YAML = `
interfaces:
  capture: eth0
connection_table:
  size: 65536
services:
  - name: web
    vip: 10.0.10.100
    port: 80
    real_servers:
      - 10.0.10.40
`;
const cfg = (extra = '') => parseConfig(YAML + extra, 'lb.yaml');
const STATE = '/run/lbd/lbd_eth0.state';
const NEED = stateFileBytes(65536);
const MiB = 1024 * 1024;

function header(over: Partial<StateHeader> = {}): StateHeader {
  return { ...regionSizes(65536), layoutVersion: 1, bootId: 'b', restarts: 0, pid: 4242, startedMs: 1_700_000_000_000, stopped: true, ...over };
}

/** The host the state checks see: a tmpfs /run with room, no state file, nothing set aside. */
class FakeStateHost implements Pick<HostView, 'fileSystem' | 'stateFile' | 'fileStat' | 'processAlive'> {
  fs: FileSystemInfo | null = { tmpfs: true, freeBytes: 512 * MiB, totalBytes: 1024 * MiB, type: 'tmpfs', mount: '/run' };
  files: Record<string, StateFileView> = {};
  stats: Record<string, { bytes: number; mtimeMs: number }> = {};
  alive = new Set<number>();
  fsAsked: string[] = [];
  fileSystem(p: string) {
    this.fsAsked.push(p);
    return this.fs;
  }
  stateFile(p: string) {
    return this.files[p] ?? null;
  }
  fileStat(p: string) {
    return this.stats[p] ?? null;
  }
  processAlive(pid: number) {
    return this.alive.has(pid);
  }
}

const run = (h: FakeStateHost, running = false, extra = '') => checkStateFile(cfg(extra), h as unknown as HostView, running);
const one = (fs_: Finding[], check: string) => {
  const f = fs_.filter((x) => x.check === check);
  assert.equal(f.length, 1, `one ${check} finding in ${JSON.stringify(fs_)}`);
  return f[0];
};

test('no state file yet, tmpfs with room: ok, and no state.rejected finding', () => {
  const h = new FakeStateHost();
  const out = run(h);
  assert.deepEqual(
    out.map((f) => [f.check, f.severity]),
    [
      ['state.space', 'ok'],
      ['state.file', 'ok'],
    ],
  );
  assert.match(one(out, 'state.file').what, /no state file yet.*first start makes one/);
  assert.match(one(out, 'state.space').what, new RegExp(`65536-entry table takes ${(NEED / MiB).toFixed(1)} MiB; /run \\(tmpfs\\) has 512 MiB free`));
  assert.deepEqual(h.fsAsked, [STATE]);
});

test('the state file path: config state_file, else the default of the capture interface', () => {
  assert.equal(stateFilePath(cfg()), STATE);
  assert.equal(stateFilePath(cfg('state_file: /dev/shm/lb.state\n')), '/dev/shm/lb.state');
  const h = new FakeStateHost();
  h.files['/dev/shm/lb.state'] = { bytes: NEED, header: header() };
  assert.match(one(run(h, false, 'state_file: /dev/shm/lb.state\n'), 'state.file').what, /state file \/dev\/shm\/lb\.state: 65536-entry table/);
  assert.equal(stateFileBytes(1 << 20), HEADER_BYTES + regionBytes(regionSizes(1 << 20)));
});

test('a sound header: ok, with the table, the writer and whether it runs', () => {
  const h = new FakeStateHost();
  h.files[STATE] = { bytes: NEED, header: header({ restarts: 2 }) };
  let f = one(run(h), 'state.file');
  assert.equal(f.severity, 'ok');
  assert.match(f.what, /65536-entry table, written by pid 4242, which has stopped/);
  assert.match(f.what, /stopped on a signal/);
  assert.match(f.what, /2 restarts/);
  assert.doesNotMatch(f.what, /config says/);

  h.files[STATE] = { bytes: NEED, header: header({ stopped: false }) };
  assert.match(one(run(h), 'state.file').what, /ended without stopping \(a crash or SIGKILL\)/);

  h.alive.add(4242);
  f = one(run(h, true), 'state.file');
  assert.equal(f.severity, 'ok');
  assert.match(f.what, /pid 4242, which is running/);
  assert.doesNotMatch(f.what, /no lbd answers/);
  // The space check counts no room for the old file: the new one must fit next to it.
  assert.match(one(run(h, true), 'state.space').what, /room for the new file next to the old one/);
});

test('a sound header whose writer runs while no lbd answers on the metrics address: said so', () => {
  const h = new FakeStateHost();
  h.files[STATE] = { bytes: NEED, header: header() };
  h.alive.add(4242);
  const f = one(run(h, false), 'state.file');
  assert.equal(f.severity, 'ok');
  assert.match(f.what, /which is running; but no lbd answers on 127\.0\.0\.1:9469: pid 4242 holds \/run\/lbd\/lbd_eth0\.state\.lock/);
});

test('a table of another size than configured: fine, adoption carries the entries over', () => {
  const h = new FakeStateHost();
  h.files[STATE] = { bytes: stateFileBytes(1 << 20), header: header(regionSizes(1 << 20)) };
  let f = one(run(h), 'state.file');
  assert.equal(f.severity, 'ok');
  assert.match(f.what, /1048576-entry table/);
  assert.match(
    f.what,
    /config says 65536 entries: that is fine, the next start makes a 65536-entry table and adopts the entries into it \(those that do not fit are dropped, counted as table_full\)/,
  );

  h.files[STATE] = { bytes: stateFileBytes(1024), header: header(regionSizes(1024)) };
  f = one(run(h), 'state.file');
  assert.match(f.what, /adopts the entries into it/);
  assert.doesNotMatch(f.what, /table_full/);
});

test('a header the next lbd cannot trust: warn, it is set aside, fix --fresh or rm', () => {
  const h = new FakeStateHost();
  h.files[STATE] = { bytes: 3 * MiB, header: 'written before the last boot (its clock is not this boot’s)' };
  const f = one(run(h), 'state.file');
  assert.equal(f.severity, 'warn');
  assert.match(f.what, /next start sets the state file \/run\/lbd\/lbd_eth0\.state \(3\.0 MiB\) aside as \/run\/lbd\/lbd_eth0\.state\.rejected/);
  assert.match(f.what, /\(written before the last boot.*\) and starts with an empty table/);
  assert.match(f.fix!, /lbd --config lb\.yaml --fresh/);
  assert.match(f.fix!, /rm \/run\/lbd\/lbd_eth0\.state/);

  // Running: a restart into this lbd loses the table; no rm of a file a running lbd maps.
  const r = one(run(h, true), 'state.file');
  assert.equal(r.severity, 'warn');
  assert.match(r.what, /cannot adopt the running lbd's state file/);
  assert.doesNotMatch(r.fix!, /\brm\b/);
});

test('a state file that cannot be read (no privileges): skip, not a verdict', () => {
  const h = new FakeStateHost();
  h.files[STATE] = { error: 'EACCES' };
  const f = one(run(h), 'state.file');
  assert.equal(f.severity, 'skip');
  assert.match(f.what, /cannot read the state file .*EACCES/);
});

test('not on tmpfs: warn (disk writes, outlives a reboot)', () => {
  const h = new FakeStateHost();
  h.fs = { tmpfs: false, freeBytes: 20 * 1024 * MiB, type: 'ext4', mount: '/' };
  const f = one(run(h, false, 'state_file: /var/lib/lbd/lb.state\n'), 'state.space');
  assert.equal(f.severity, 'warn');
  assert.match(f.what, /\/var\/lib\/lbd is on ext4, not tmpfs/);
  assert.match(f.what, /reach the disk/);
  assert.match(f.what, /outlives a reboot/);
  assert.match(f.fix!, /state_file .*tmpfs/);
  assert.match(f.fix!, new RegExp(`mount -t tmpfs -o size=${Math.ceil((2 * NEED) / MiB) + 1}m,mode=0700 tmpfs /var/lib/lbd$`));
});

test('too little space: error, lbd will not start, with the numbers and the fixes', () => {
  const h = new FakeStateHost();
  h.fs = { tmpfs: true, freeBytes: 2 * MiB, totalBytes: 64 * MiB, type: 'tmpfs', mount: '/run' };
  const out = run(h);
  const f = one(out, 'state.space');
  assert.equal(f.severity, 'error');
  assert.match(
    f.what,
    new RegExp(`lbd will not start: the state file needs ${(NEED / MiB).toFixed(1)} MiB on /run \\(tmpfs\\) for a 65536-entry table, 2\\.0 MiB free`),
  );
  const grow = Math.ceil((64 * MiB + NEED - 2 * MiB) / MiB);
  assert.match(f.fix!, new RegExp(`mount -o remount,size=${grow}m /run`));
  assert.match(f.fix!, /connection_table\.size/);
  assert.match(f.fix!, /state_file/);

  // With an old file there, its space does not count: the new one is made next to it.
  h.files[STATE] = { bytes: NEED, header: header() };
  assert.match(one(run(h), 'state.space').what, /new file is made next to the old one/);

  // Just enough is enough.
  h.fs = { ...h.fs, freeBytes: NEED };
  assert.equal(one(run(h), 'state.space').severity, 'ok');
  h.fs = { ...h.fs, freeBytes: NEED - 1 };
  assert.equal(one(run(h), 'state.space').severity, 'error');
});

test('too little space on a disk: error, and it says not tmpfs too; no remount of a disk', () => {
  const h = new FakeStateHost();
  h.fs = { tmpfs: false, freeBytes: MiB, type: 'ext4', mount: '/' };
  const f = one(run(h), 'state.space');
  assert.equal(f.severity, 'error');
  assert.match(f.what, /not tmpfs/);
  assert.doesNotMatch(f.fix!, /remount/);
});

test('no file system to look at: skip', () => {
  const h = new FakeStateHost();
  h.fs = null;
  assert.equal(one(run(h), 'state.space').severity, 'skip');
});

test('a state file set aside: warn with its size, fix rm (or lbd stop --clean when none runs)', () => {
  const h = new FakeStateHost();
  h.stats[`${STATE}.rejected`] = { bytes: 6 * MiB, mtimeMs: Date.UTC(2025, 0, 2, 3, 4, 5) };
  let f = one(run(h), 'state.rejected');
  assert.equal(f.severity, 'warn');
  assert.match(f.what, /an lbd set a state file aside here: \/run\/lbd\/lbd_eth0\.state\.rejected \(6\.0 MiB, since 2025-01-02T03:04:05\.000Z\)/);
  assert.match(f.fix!, /rm \/run\/lbd\/lbd_eth0\.state\.rejected/);
  assert.match(f.fix!, /lbd stop --clean --config lb\.yaml/);
  f = one(run(h, true), 'state.rejected');
  assert.doesNotMatch(f.fix!, /stop --clean/);
});

test('runDoctor reports the state checks after the guard', async () => {
  const h = new FakeStateHost();
  h.fs = { tmpfs: true, freeBytes: MiB, type: 'tmpfs' };
  const host = new Proxy(h, {
    get(t, k) {
      if (k in t) return (t as unknown as Record<string | symbol, unknown>)[k];
      // Everything else: an empty host (the other checks' findings do not matter here).
      if (k === 'lbdMetrics') return async () => null;
      if (k === 'iface') return () => ({ exists: false, up: false, operstate: 'absent', addresses: [] });
      if (k === 'binding') return () => ({ error: 'none' });
      if (k === 'localAddresses') return () => [];
      if (k === 'nftGuardTable') return () => '';
      return () => null;
    },
  }) as unknown as HostView;
  const r = await runDoctor(cfg(), host, { noProbes: true });
  const checks = r.findings.map((f) => f.check);
  assert.ok(checks.indexOf('state.space') > checks.indexOf('guard'), checks.join(' '));
  assert.equal(r.ok, false);
  assert.match(formatReport(r), /ERROR  lbd will not start: the state file needs/);
});

test('SystemHost reads a state file in a temp dir: absent, sound, cut short; .rejected; its file system', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-doctor-state-'));
  try {
    const host = new SystemHost();
    const file = path.join(dir, 'sub', 'lb.state');
    assert.equal(host.stateFile(file), null);
    assert.equal(host.fileStat(`${file}.rejected`), null);
    // The directory does not exist yet: the nearest one that does.
    const fsi = host.fileSystem(file);
    assert.ok(fsi && fsi.freeBytes > 0 && typeof fsi.type === 'string', JSON.stringify(fsi));

    fs.mkdirSync(path.dirname(file));
    const bytes = stateFileBytes(1024);
    const buf = new Uint8Array(bytes);
    writeHeader(buf, regionSizes(1024), bootId(), 3);
    fs.writeFileSync(file, buf);
    const sound = host.stateFile(file);
    assert.ok(sound && 'header' in sound && typeof sound.header !== 'string', JSON.stringify(sound));
    assert.equal(sound.bytes, bytes);
    assert.equal(sound.header.connCapacity, 1024);
    assert.equal(sound.header.pid, process.pid);
    assert.equal(sound.header.restarts, 3);
    assert.equal(host.processAlive(process.pid, sound.header.startedMs), true);
    // A process that started after the header was written is not its writer.
    assert.equal(host.processAlive(process.pid, 0), false);

    fs.truncateSync(file, bytes - 4096);
    const cut = host.stateFile(file);
    assert.ok(cut && 'header' in cut && typeof cut.header === 'string');
    assert.match(cut.header, /cut short/);

    fs.writeFileSync(file, 'hello');
    const junk = host.stateFile(file);
    assert.ok(junk && 'header' in junk);
    assert.match(String(junk.header), /shorter than a header/);

    fs.writeFileSync(`${file}.rejected`, 'x'.repeat(10));
    assert.equal(host.fileStat(`${file}.rejected`)?.bytes, 10);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('mountOf: the deepest mount holding the path, octal escapes undone', () => {
  const info = [
    '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
    '25 22 0:23 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1000k',
    '26 25 0:24 / /run/lock rw shared:6 - tmpfs tmpfs rw',
    '27 22 0:25 / /srv/my\\040data rw shared:7 - xfs /dev/sdb1 rw',
  ].join('\n');
  assert.deepEqual(mountOf(info, '/run/lbd'), { mount: '/run', type: 'tmpfs' });
  assert.deepEqual(mountOf(info, '/run'), { mount: '/run', type: 'tmpfs' });
  assert.deepEqual(mountOf(info, '/runner'), { mount: '/', type: 'ext4' });
  assert.deepEqual(mountOf(info, '/srv/my data/x'), { mount: '/srv/my data', type: 'xfs' });
  assert.equal(mountOf('', '/x'), null);
});
