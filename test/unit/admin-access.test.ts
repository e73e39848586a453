/**
 * Who may use the admin socket: its owner, root and the members of its group (admin.group, else
 * lbd's primary group), like HAProxy's `stats socket … mode 660 group haproxy`. The socket is
 * 0660, a directory lbd makes for it 0750 and of the same group; a group that does not exist or
 * that lbd may not give is a clear error; the CLI refused tells the operator what to do.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig, formatConfig } from '../../src/config/load';
import { ConfigError, formatConfigIssue, LbdError } from '../../src/errors';
import { permissionDeniedMessage, socketRefusal } from '../../src/control/admin/client';
import { Control } from '../../src/control/admin/control';
import { adminGroupId, AdminServer, prepareSocketDirectory } from '../../src/control/admin/server';
import { describeAction, plan } from '../../src/control/reconcile';
import { groupName, parseGroupFile, readGroups, resolveGroup } from '../../src/host/groups';
import { BASE_CONFIG, testDaemon } from '../helpers/daemon';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-admin-access-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const isRoot = process.geteuid?.() === 0;

async function withAdmin(group: string | number | undefined, sock: string, fn: (admin: AdminServer) => Promise<void>): Promise<void> {
  const t = await testDaemon(BASE_CONFIG());
  const admin = new AdminServer(new Control(t.daemon), sock, undefined, {}, { group });
  try {
    await admin.listen();
    await fn(admin);
  } finally {
    await admin.close();
    await t.daemon.stop();
  }
}

const cfg = (yaml: string) => parseConfig(yaml, 'lb.yaml');
const withGroup = (value: string) => `${BASE_CONFIG()}admin:\n  socket: /run/lbd/lbd.sock\n  group: ${value}\n`;

function configIssues(yaml: string): string[] {
  try {
    cfg(yaml);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.issues.map(formatConfigIssue);
  }
  return assert.fail('expected a ConfigError');
}

test('/etc/group is parsed: names, gids, listed members', () => {
  const groups = parseGroupFile('root:x:0:\n# a comment\nnogroup:x:65534:\nlbd:x:998:alice,bob\nbroken line\nbad:x:notanumber:\n\n');
  assert.deepEqual(groups, [
    { name: 'root', gid: 0, members: [] },
    { name: 'nogroup', gid: 65534, members: [] },
    { name: 'lbd', gid: 998, members: ['alice', 'bob'] },
  ]);
  assert.equal(resolveGroup('lbd', groups), 998);
  assert.equal(resolveGroup(65534, groups), 65534);
  assert.equal(resolveGroup('4242', groups), 4242, 'a gid no entry has is used as it is');
  assert.equal(resolveGroup('operators', groups), undefined);
  assert.equal(groupName(998, groups), 'lbd');
  assert.equal(groupName(4242, groups), undefined);
  assert.ok(
    readGroups().some((g) => g.gid === 0),
    'this host has a group 0',
  );
  assert.deepEqual(readGroups(path.join(tmp, 'no-such-file')), []);
});

test('admin.group: a name or a gid; anything else is refused at its line', () => {
  assert.equal(cfg(BASE_CONFIG()).admin.group, undefined, 'unset: the daemon uses its primary group');
  assert.deepEqual(cfg(withGroup('lbd')).admin, { socket: '/run/lbd/lbd.sock', group: 'lbd' });
  assert.equal(cfg(withGroup('65534')).admin.group, 65534);
  assert.equal(cfg(withGroup('"65534"')).admin.group, 65534, 'digits in quotes are a gid too');
  assert.equal(cfg(withGroup('_lbd-ops.x')).admin.group, '_lbd-ops.x');
  const line =
    withGroup('x')
      .split('\n')
      .findIndex((l) => l.startsWith('  group:')) + 1;
  assert.deepEqual(configIssues(withGroup('"lbd ops"')), [
    `lb.yaml:${line}:10 admin.group: invalid group name "lbd ops": expected a group name (e.g. lbd) or a numeric gid 0-4294967294; a name starts with a letter or "_", has letters, digits, "_", "." or "-", and at most 32 characters`,
  ]);
  assert.match(
    configIssues(withGroup('4294967295'))[0],
    new RegExp(`^lb\\.yaml:${line}:10 admin\\.group: expected a group name \\(e\\.g\\. lbd\\) or a numeric gid 0-4294967294, got 4294967295$`),
  );
  assert.match(configIssues(withGroup('-1'))[0], /admin\.group: invalid group name "-1"/);
  assert.match(configIssues(withGroup('true'))[0], /admin\.group: expected a group name .*, got true/);
  assert.match(configIssues(withGroup('[a]'))[0], /admin\.group: expected a group name/);
  assert.match(configIssues(`${BASE_CONFIG()}admin:\n  gruop: lbd\n`)[0], /admin\.gruop: unknown key "gruop"; did you mean "group"\?/);
  // lbd check prints it back; a reload that changes it needs a restart, like admin.socket.
  assert.match(formatConfig(cfg(withGroup('lbd'))), /^admin:\n {2}socket: \/run\/lbd\/lbd\.sock\n {2}group: lbd$/m);
  assert.doesNotMatch(formatConfig(cfg(BASE_CONFIG())), /group:/);
  for (const [from, to] of [
    [BASE_CONFIG(), withGroup('lbd')],
    [withGroup('lbd'), withGroup('65534')],
  ]) {
    const actions = plan(cfg(from), cfg(to));
    assert.deepEqual(
      actions.map((a) => a.kind + ('field' in a ? `:${a.field}` : '')),
      ['restart-required:admin.group'],
    );
    assert.match(describeAction(actions[0]), /admin\.group/);
  }
  assert.deepEqual(plan(cfg(withGroup('lbd')), cfg(withGroup('lbd'))), []);
});

test('the socket is 0660 in a 0750 directory it made, both of the process group when admin.group is unset', async () => {
  const sock = path.join(tmp, `run-${++n}`, 'deeper', 'lbd.sock');
  await withAdmin(undefined, sock, async () => {
    const st = fs.statSync(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.gid, process.getegid!());
    for (const d of [path.dirname(sock), path.dirname(path.dirname(sock))]) {
      assert.equal(fs.statSync(d).mode & 0o777, 0o750, `${d}: every level lbd made`);
      assert.equal(fs.statSync(d).gid, process.getegid!());
    }
  });
  assert.equal(fs.existsSync(sock), false);
});

test('a directory that exists (systemd RuntimeDirectory=) is left as it is', async () => {
  const dir = path.join(tmp, `run-${++n}`);
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.chmodSync(dir, 0o711);
  const sock = path.join(dir, 'lbd.sock');
  await withAdmin(undefined, sock, async () => {
    assert.equal(fs.statSync(dir).mode & 0o777, 0o711);
    assert.equal(fs.statSync(sock).mode & 0o777, 0o660);
  });
});

test('admin.group as a gid and as a name: the socket and the directory lbd made get that group', async (t) => {
  if (!isRoot) return t.skip('chown to another group needs root (or membership)');
  const sock = path.join(tmp, `run-${++n}`, 'lbd.sock');
  await withAdmin(65534, sock, async () => {
    assert.equal(fs.statSync(sock).gid, 65534);
    assert.equal(fs.statSync(sock).mode & 0o777, 0o660);
    assert.equal(fs.statSync(path.dirname(sock)).gid, 65534);
    assert.equal(fs.statSync(path.dirname(sock)).mode & 0o777, 0o750);
  });
  const named = readGroups().find((g) => g.gid !== 0);
  if (!named) return;
  const sock2 = path.join(tmp, `run-${++n}`, 'lbd.sock');
  await withAdmin(named.name, sock2, async () => {
    assert.equal(fs.statSync(sock2).gid, named.gid, `group ${named.name}`);
  });
});

test('a group name /etc/group does not have is a clear error, and no socket is left', async () => {
  assert.throws(
    () => adminGroupId('no-such-group-lbd'),
    (e: unknown) => {
      assert.ok(e instanceof LbdError && e.code === 'E_ADMIN');
      assert.equal(
        e.message,
        'admin.group: no group "no-such-group-lbd" in /etc/group: create it (groupadd --system no-such-group-lbd), or give its numeric gid',
      );
      return true;
    },
  );
  const sock = path.join(tmp, `run-${++n}`, 'lbd.sock');
  await assert.rejects(
    withAdmin('no-such-group-lbd', sock, async () => assert.fail('listened')),
    /admin\.group: no group "no-such-group-lbd"/,
  );
  assert.equal(fs.existsSync(sock), false);
  assert.equal(adminGroupId(undefined), process.getegid!());
  assert.equal(adminGroupId(4242), 4242);
});

test('a chown refused (EPERM: not a member, no CAP_CHOWN) is a clear error, and no socket is left', async (t) => {
  if (!isRoot) return t.skip('needs a gid it could give: run as root');
  const gid = 65534;
  // The module object itself (the server reads it through its import's getters).
  t.mock.method(createRequire(__filename)('node:fs') as typeof fs, 'chownSync', () => {
    throw Object.assign(new Error('EPERM: operation not permitted, chown'), { code: 'EPERM' });
  });
  const sock = path.join(tmp, `run-${++n}`, 'lbd.sock');
  await assert.rejects(
    withAdmin(gid, sock, async () => assert.fail('listened')),
    (e: unknown) => {
      assert.ok(e instanceof LbdError && e.code === 'E_ADMIN');
      assert.match(
        e.message,
        /^cannot give the admin socket directory .* to group 65534 \(admin\.group\): lbd \(uid 0\) is not a member of group 65534 and lacks CAP_CHOWN/,
      );
      assert.match(e.message, /usermod -aG 65534 USER, or SupplementaryGroups= in its unit/);
      return true;
    },
  );
  // The directory exists now: the socket's own chown is the one refused.
  await assert.rejects(
    withAdmin(gid, sock, async () => assert.fail('listened')),
    /^AdminGroupError: cannot give the admin socket \/\S+\/lbd\.sock to group 65534 \(admin\.group\)/,
  );
  assert.equal(fs.existsSync(sock), false, 'the socket made before the refusal is removed');
});

test("the client's permission message says what to do", () => {
  const p = '/run/lbd/lbd.sock';
  const sock = (mode: number, gid: number, group?: string) => ({ mode: 0o140000 | mode, uid: 0, gid, group });
  assert.equal(
    permissionDeniedMessage({ socketPath: p, socket: sock(0o660, 998, 'lbd'), inGroup: false, listedMember: false }),
    "permission denied on /run/lbd/lbd.sock: run the command as root (sudo lbd …) or as a member of group lbd, the socket's group (sudo usermod -aG lbd $USER, then log in again)",
  );
  assert.equal(
    permissionDeniedMessage({ socketPath: p, socket: sock(0o660, 998, 'lbd'), inGroup: false, listedMember: true }),
    'permission denied on /run/lbd/lbd.sock: this user is a member of group lbd in /etc/group, but this login session does not have it yet: log in again (or run newgrp lbd), or run the command as root (sudo lbd …)',
  );
  assert.match(
    permissionDeniedMessage({ socketPath: p, socket: sock(0o660, 4242) }),
    /as a member of group 4242, the socket's group \(sudo usermod -aG 4242 \$USER/,
  );
  assert.equal(
    permissionDeniedMessage({ socketPath: p, socket: sock(0o600, 0, 'root') }),
    'permission denied on /run/lbd/lbd.sock: the socket is mode 0600: only root may use it: run the command as root (sudo lbd …)',
  );
  assert.match(
    permissionDeniedMessage({ socketPath: p, socket: { ...sock(0o600, 998, 'lbd'), uid: 997 } }),
    /mode 0600: only its owner \(uid 997\) and root may use it/,
  );
  assert.equal(
    permissionDeniedMessage({ socketPath: p, socket: sock(0o660, 0, 'root') }),
    "permission denied on /run/lbd/lbd.sock: the socket belongs to group root: run the command as root (sudo lbd …), or set admin.group in the daemon's config to a group of operators (e.g. lbd) and restart it",
  );
  // The user cannot even stat the socket: its directory is in the way.
  assert.equal(
    permissionDeniedMessage({ socketPath: p, blocked: { dir: '/run/lbd', mode: 0o40750, gid: 998, group: 'lbd' } }),
    'permission denied on /run/lbd/lbd.sock: this user cannot reach it: the directory /run/lbd (mode 0750, group lbd) does not let it through: run the command as root (sudo lbd …) or as a member of group lbd (sudo usermod -aG lbd $USER, then log in again)',
  );
  assert.equal(
    permissionDeniedMessage({ socketPath: p, blocked: { dir: '/run/lbd', mode: 0o40700, gid: 0, group: 'root' } }),
    "permission denied on /run/lbd/lbd.sock: this user cannot reach it: the directory /run/lbd (mode 0700, group root) does not let it through: run the command as root (sudo lbd …); for a group of operators, the directory must let the socket's group search it (chmod 0750 and the daemon's group, e.g. systemd's RuntimeDirectoryMode=0750)",
  );
  assert.match(
    permissionDeniedMessage({ socketPath: p, blocked: { dir: '/run/lbd' } }),
    /the directory \/run\/lbd does not let it through: run the command as root/,
  );
  assert.equal(permissionDeniedMessage({ socketPath: p }), 'permission denied on /run/lbd/lbd.sock: run the command as root (sudo lbd …)');
});

test("socketRefusal sees the socket's mode and group as this user can", (t) => {
  const f = path.join(tmp, `refused-${++n}`);
  fs.writeFileSync(f, '');
  fs.chmodSync(f, 0o660);
  const mine = socketRefusal(f);
  assert.equal(mine.socket!.mode & 0o777, 0o660);
  assert.equal(mine.socket!.gid, fs.statSync(f).gid);
  assert.equal(mine.inGroup, true, 'made by this process: its group');
  assert.equal(mine.blocked, undefined);
  if (!isRoot) return t.skip('chown needs root');
  fs.chownSync(f, 0, 65534);
  const other = socketRefusal(f);
  assert.equal(other.socket!.gid, 65534);
  assert.equal(other.socket!.group, groupName(65534));
  assert.equal(other.inGroup, process.getgroups!().includes(65534));
});

test("the socket directory is made for the group first thing, before the state file (by default in the same /run/lbd) could make it root's alone", async (t) => {
  if (!isRoot) return t.skip('chown to another group needs root (or membership)');
  const dir = path.join(tmp, `run-${++n}`, 'lbd');
  const sock = path.join(dir, 'lbd.sock');
  assert.equal(prepareSocketDirectory(sock, 65534), true);
  assert.equal(fs.statSync(dir).gid, 65534);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o750);
  assert.equal(fs.statSync(path.dirname(dir)).gid, 65534, 'every level it made');
  // What lbd run does next: the state file in the same directory, then the socket.
  fs.writeFileSync(path.join(dir, 'lbd.state'), '', { mode: 0o600 });
  assert.equal(prepareSocketDirectory(sock, 65534), false, 'there already: left as it is');
  await withAdmin(65534, sock, async () => {
    assert.equal(fs.statSync(sock).gid, 65534);
    assert.equal(fs.statSync(dir).gid, 65534);
  });
});
