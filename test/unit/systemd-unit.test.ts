/**
 * contrib/systemd/lbd.service, checked where systemd is not PID 1: what the unit must say for
 * lbd (notify, the two capabilities, no restart on a bad config, the state file kept across a
 * restart, a stop timeout longer than the longest withdraw_delay), `systemd-analyze verify`
 * finds nothing to say about it, and `systemd-analyze security --offline=true` reports no
 * exposure that is not listed (and justified) here and in the unit's comments, with a score
 * that does not creep up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ANNOUNCE_DELAY_MAX } from '../../src/config/values';
import { REPO_ROOT, runSync } from '../../src/host/programs';

const UNIT = path.join(REPO_ROOT, 'contrib/systemd/lbd.service');
const SYSUSERS = path.join(REPO_ROOT, 'contrib/systemd/lbd.sysusers.conf');
const text = fs.readFileSync(UNIT, 'utf8');

/**
 * What `systemd-analyze security --offline=true` still reports, each with why it stays. The unit
 * names each of these in a comment (checked below). Measured with systemd 252 (Debian 12).
 */
const JUSTIFIED: Record<string, string> = {
  'PrivateNetwork=': "lbd forwards on the host's interfaces",
  'PrivateUsers=': "capabilities in a user namespace do not act on the host's network",
  'PrivateDevices=': 'lbd opens /dev/net/tun (its TAPs); DevicePolicy=closed + DeviceAllow= instead',
  'DeviceAllow=': '/dev/net/tun rw (and char-rtc r, which ProtectClock= adds)',
  'MemoryDenyWriteExecute=': "Node's JIT needs writable and executable memory",
  'AmbientCapabilities=': 'nft, ip, ethtool and the keeper inherit CAP_NET_ADMIN and CAP_NET_RAW',
  'CapabilityBoundingSet=~CAP_NET_ADMIN': 'nftables, routes, the TAP, ethtool',
  'CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)': 'CAP_NET_RAW: AF_PACKET capture and transmit',
  'RestrictAddressFamilies=~AF_PACKET': 'the data plane',
  'RestrictAddressFamilies=~AF_NETLINK': 'nft, ip, ethtool, link watching',
  'RestrictAddressFamilies=~AF_UNIX': 'the admin socket, the journal',
  'RestrictAddressFamilies=~AF_(INET|INET6)': 'health checks, metrics, probes',
  'SystemCallFilter=~@privileged': 'chown of the admin socket to admin.group; capset by ip',
  'ProcSubset=': 'lbd reads /proc/sys/kernel/random/boot_id',
  'IPAddressDeny=': 'the addresses lbd talks to are in lb.yaml, not in the unit',
  'RootDirectory=/RootImage=': "lbd runs the host's node, nft, ip and ethtool",
  'UMask=': "group lbd (lbd's operators) may read what lbd writes",
  'RemoveIPC=': 'it would delete a state_file in /dev/shm at every restart, and lbd uses no SysV IPC (PrivateIPC=yes)',
};

/** `systemd-analyze security --offline=true` of this unit, measured with systemd 252: 2.1. */
const MEASURED_SCORE = 2.1;
/** A regression guard, not a benchmark: the list above already catches a new exposure. */
const MAX_SCORE = MEASURED_SCORE + 0.4;

/** The unit's assignments, in order, as [section, key, value] (comments and blank lines dropped; no continuation lines are used). */
function assignments(unit: string): [string, string, string][] {
  const out: [string, string, string][] = [];
  let section = '';
  for (const raw of unit.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1];
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not an assignment: ${line}`);
    assert.ok(!line.endsWith('\\'), `continuation lines are not parsed here: ${line}`);
    out.push([section, line.slice(0, eq).trim(), line.slice(eq + 1).trim()]);
  }
  return out;
}

const settings = assignments(text);
/** Every value of a key of a section, in order. */
const values = (section: string, key: string) => settings.filter(([s, k]) => s === section && k === key).map(([, , v]) => v);
/** The one value of a key (asserted to be set exactly once). */
function one(section: string, key: string): string {
  const v = values(section, key);
  assert.equal(v.length, 1, `[${section}] ${key}= is set once (${v.length} times)`);
  return v[0];
}
const comments = text
  .split('\n')
  .filter((l) => l.trim().startsWith('#'))
  .join('\n');

/** A systemd time span ("330s", "5min 30s", "5m30s") in seconds. */
function seconds(span: string): number {
  const units: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, sec: 1, m: 60, min: 60, h: 3600, hr: 3600 };
  let total = 0;
  const rest = span.replace(/(\d+(?:\.\d+)?)\s*([a-z]*)/g, (_, n: string, u: string) => {
    const mult = u === '' ? 1 : units[u];
    assert.ok(mult !== undefined, `time unit ${u} in ${span}`);
    total += Number(n) * mult;
    return '';
  });
  assert.equal(rest.trim(), '', `time span ${span}`);
  return total;
}

const isTrue = (v: string) => ['1', 'yes', 'y', 'true', 't', 'on'].includes(v.toLowerCase());

test('the unit says what lbd needs: notify, the two capabilities, no restart on a bad config, the state file kept across restarts', () => {
  assert.equal(one('Service', 'Type'), 'notify');
  assert.equal(one('Service', 'NotifyAccess'), 'main');
  assert.ok(seconds(one('Service', 'WatchdogSec')) > 0);
  assert.equal(one('Service', 'ExecStart'), '/usr/bin/lbd run --config /etc/lbd/lb.yaml');
  assert.equal(one('Service', 'ExecReload'), '/usr/bin/lbd reload --config /etc/lbd/lb.yaml');
  assert.equal(one('Service', 'User'), 'lbd');
  assert.equal(one('Service', 'Group'), 'lbd');
  const caps = (key: string) =>
    values('Service', key)
      .flatMap((v) => v.split(/\s+/))
      .sort();
  assert.deepEqual(caps('AmbientCapabilities'), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
  assert.deepEqual(caps('CapabilityBoundingSet'), ['CAP_NET_ADMIN', 'CAP_NET_RAW']);
  assert.equal(one('Service', 'Restart'), 'on-failure');
  assert.equal(one('Service', 'RestartPreventExitStatus'), '78', 'exit 78 (EX_CONFIG): a restart cannot mend the config');
  assert.equal(one('Service', 'RuntimeDirectory'), 'lbd');
  assert.equal(one('Service', 'RuntimeDirectoryMode'), '0750');
  assert.equal(one('Service', 'RuntimeDirectoryPreserve'), 'restart', 'the state file survives a restart');
  // the keeper ignores SIGTERM: only lbd is signalled, and the stop outlasts the longest withdraw_delay
  assert.equal(one('Service', 'KillMode'), 'mixed');
  // …which kills a keeper holding the announce interface over a restart: systemd keeps it instead
  assert.ok(Number(one('Service', 'FileDescriptorStoreMax')) >= 1, 'the descriptor store holds the announce interface across a restart');
  assert.ok(seconds(one('Service', 'TimeoutStopSec')) > ANNOUNCE_DELAY_MAX, `TimeoutStopSec > withdraw_delay's max (${ANNOUNCE_DELAY_MAX} s)`);
  // Node's JIT: never MemoryDenyWriteExecute; /dev/net/tun: never PrivateDevices
  assert.ok(!values('Service', 'MemoryDenyWriteExecute').some(isTrue), 'MemoryDenyWriteExecute would kill the JIT');
  assert.ok(!values('Service', 'PrivateDevices').some(isTrue), 'lbd opens /dev/net/tun');
  assert.equal(one('Service', 'DevicePolicy'), 'closed');
  assert.deepEqual(values('Service', 'DeviceAllow'), ['/dev/net/tun rw']);
  assert.deepEqual(
    values('Service', 'RestrictAddressFamilies')
      .flatMap((v) => v.split(/\s+/))
      .sort(),
    ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_PACKET', 'AF_UNIX'],
  );
  assert.equal(one('Unit', 'Documentation'), 'man:lbd(8) man:lb.yaml(5)');
  assert.deepEqual(values('Unit', 'Wants'), ['network-online.target']);
  assert.ok(values('Unit', 'After').includes('network-online.target'));
  assert.equal(one('Install', 'WantedBy'), 'multi-user.target');
  // the user it runs as: sysusers.d makes it (and its group)
  const users = fs
    .readFileSync(SYSUSERS, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'));
  assert.deepEqual(
    users.map((l) => l.split(/\s+/).slice(0, 2)),
    [['u', 'lbd']],
  );
});

test('systemd-analyze verify: nothing to say about the unit', (t) => {
  // verify insists that ExecStart's program exists and is executable: /usr/bin/lbd is where the
  // Debian package puts it, so a copy of the unit, under its own name, starts this checkout's
  // bin/lbd instead. (--man=no: the man pages come with the package, not with this checkout;
  // --recursive-errors=no: this unit only, not whatever the machine's other units say. The user
  // lbd need not exist: verify does not look it up.)
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-unit-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const lbd = path.join(REPO_ROOT, 'bin/lbd');
  const quoted = /[\s"'\\]/.test(lbd) ? `"${lbd.replace(/[\\"]/g, '\\$&')}"` : lbd;
  const copy = path.join(dir, 'lbd.service');
  assert.ok(text.includes('=/usr/bin/lbd '));
  fs.writeFileSync(copy, text.replaceAll('=/usr/bin/lbd ', `=${quoted} `));
  const r = runSync('systemd-analyze', ['verify', '--man=no', '--recursive-errors=no', copy], { timeoutMs: 60_000 });
  const aboutUnit = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes('lbd.service') || l.includes(dir));
  assert.deepEqual(aboutUnit, [], 'verify says nothing about lbd.service');
  assert.equal(r.status, 0, `systemd-analyze verify: ${r.stderr}`);
});

test('systemd-analyze security --offline=true: every exposure left is a justified one, and the score stays low', (t) => {
  // --json=short gives the table (one object per check: set, name, exposure), but not the
  // overall score, which only the text output's last line has.
  const json = runSync('systemd-analyze', ['security', '--offline=true', '--no-pager', '--json=short', UNIT], { timeoutMs: 60_000 });
  assert.equal(json.status, 0, `systemd-analyze security --json=short: ${json.stderr}`);
  const rows = JSON.parse(json.stdout) as { set: boolean; name: string; exposure: string | null }[];
  assert.ok(Array.isArray(rows) && rows.length > 40, `the security table (${rows.length} rows)`);
  // a check not passed (✗ in the table) is set: false with an exposure; a weightless one counts too
  const exposed = rows.filter((r) => !r.set).map((r) => r.name);
  assert.deepEqual(
    exposed.filter((n) => !(n in JUSTIFIED)),
    [],
    'an exposure nobody justified: harden the unit, or justify it here and in the unit',
  );
  assert.deepEqual(
    Object.keys(JUSTIFIED).filter((n) => !exposed.includes(n)),
    [],
    'justified but no longer exposed: drop it from the list',
  );
  const unjustifiedInUnit = Object.keys(JUSTIFIED).filter((n) => !comments.includes(n));
  assert.deepEqual(unjustifiedInUnit, [], "the unit's comments name each exposure it keeps");

  const textOut = runSync('systemd-analyze', ['security', '--offline=true', '--no-pager', UNIT], { timeoutMs: 60_000 });
  assert.equal(textOut.status, 0, `systemd-analyze security: ${textOut.stderr}`);
  const m = /Overall exposure level for lbd\.service:\s*(\d+(?:\.\d+)?)/.exec(textOut.stdout);
  assert.ok(m, `no overall exposure level in:\n${textOut.stdout}`);
  const score = Number(m[1]);
  t.diagnostic(`overall exposure ${score} (measured ${MEASURED_SCORE}, bound ${MAX_SCORE.toFixed(1)}); exposed: ${exposed.join(' ')}`);
  assert.ok(score <= MAX_SCORE + 1e-9, `overall exposure ${score} > ${MAX_SCORE.toFixed(1)}`);
  // the text table's ✗ lines are the same checks as the JSON's
  const crossed = textOut.stdout
    .split('\n')
    .filter((l) => l.startsWith('✗'))
    .map((l) => l.slice(1).trim().split(/\s+/)[0]);
  assert.deepEqual(crossed.sort(), [...exposed].sort());
});
