/**
 * The bash completion (contrib/bash-completion/lbd), driven in a real bash: the script is
 * sourced, COMP_LINE/COMP_POINT/COMP_WORDS/COMP_CWORD set as readline sets them, _lbd called and
 * COMPREPLY printed. The daemon's services come from a stand-in `lbd` first in PATH that prints
 * what the real `lbd list --json` prints for a canned list answer (the real command, run against
 * a stand-in admin socket), and records its arguments.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { bashCompletion } from '../../src/cli/completion';
import { command as listCommand } from '../../src/cli/list';
import { COMMAND_FILES } from '../../src/cli/main';
import { commandSpecs } from '../../src/cli/usage-spec';
import type { ListResult, RealView, ServiceView } from '../../src/control/admin/protocol';
import { LOG_LEVELS } from '../../src/config/types';
import { REPO_ROOT, runSync } from '../../src/host/programs';

const SCRIPT = path.join(REPO_ROOT, 'contrib/bash-completion/lbd');
const zero = { conns: 0, inpkts: 0, outpkts: 0, inbytes: 0, outbytes: 0 };
const rates = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };

function real(address: string, port: number): RealView {
  return {
    address,
    port,
    forward: 'Route',
    weight: 1,
    active: 0,
    inactive: 0,
    persistent: 0,
    u_threshold: 0,
    l_threshold: 0,
    overloaded: false,
    health: 'up',
    health_reason: '',
    removed: false,
    mac: null,
    stats: zero,
    rate: rates,
  };
}

function service(name: string, vip: string, port: number, protocol: 'tcp' | 'udp', reals: string[]): ServiceView {
  return {
    name,
    key: `${vip}:${port}/${protocol}`,
    protocol,
    vip,
    port,
    scheduler: 'mh',
    scheduler_flags: ['mh-port'],
    mh_table_size: 65537,
    on_miss: 'drop',
    persistence: 0,
    persistence_netmask: '255.255.255.255',
    removed: false,
    active: 0,
    inactive: 0,
    stats: zero,
    rate: rates,
    reals: reals.map((a) => real(a, port)),
  };
}

const LIST: ListResult = {
  version: '0.1.0',
  size: 1048576,
  dataplane: 'native',
  connections: 0,
  file: '/etc/lbd/lb.yaml',
  runtime_changes: [],
  services: [service('web', '10.0.10.100', 80, 'tcp', ['10.0.10.40', '10.0.10.111']), service('dns', '10.0.10.53', 53, 'udp', ['10.0.10.7'])],
};

/** What `lbd list --json` prints for LIST: the real command against a stand-in daemon. */
async function listJson(dir: string): Promise<string> {
  const sock = path.join(dir, 'admin.sock');
  const server = net.createServer((c) => c.on('data', () => c.end(JSON.stringify({ ok: true, result: LIST }) + '\n')));
  await new Promise<void>((r) => server.listen(sock, r));
  let out = '';
  try {
    const status = await listCommand.run(['--json', '--socket', sock], { out: (t) => (out += t), err: () => {}, stdin: async () => '' });
    assert.equal(status, 0);
  } finally {
    await new Promise((r) => server.close(r));
  }
  return out;
}

let dir = '';
test.before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-completion-'));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'list.json'), await listJson(dir));
  fs.writeFileSync(path.join(dir, 'bin/lbd'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${dir}/args'\ncat '${dir}/list.json'\n`, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'lb.yaml'), '');
  fs.writeFileSync(path.join(dir, 'notes.txt'), '');
});
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** COMPREPLY for the command line `line` (the cursor at its end), in a real bash. */
function complete(line: string, script = SCRIPT): string[] {
  const r = runSync(
    'bash',
    [
      '-c',
      'source "$1" || exit 9; COMP_LINE=$2; COMP_POINT=${#2}; read -ra COMP_WORDS <<<"$2"; [[ $2 == *" " ]] && COMP_WORDS+=(""); ' +
        'COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); _lbd; printf "%s\\n" "${COMPREPLY[@]}"',
      'bash',
      script,
      line,
    ],
    { cwd: dir, env: { ...process.env, PATH: `${path.join(dir, 'bin')}:${process.env.PATH}` }, timeoutMs: 20000 },
  );
  assert.equal(r.status, 0, `bash: ${r.stderr}`);
  assert.equal(r.stderr, '', line);
  return r.stdout.split('\n').filter(Boolean);
}

const argsSeen = () => (fs.existsSync(path.join(dir, 'args')) ? fs.readFileSync(path.join(dir, 'args'), 'utf8') : '');

test('contrib/bash-completion/lbd is what the usage texts generate (regenerate: node dist/src/cli/completion.js > contrib/bash-completion/lbd)', () => {
  assert.equal(fs.readFileSync(SCRIPT, 'utf8'), bashCompletion());
});

test('lbd <TAB>: every command; lbd s<TAB>: those starting with s', () => {
  assert.deepEqual(
    complete('lbd ').filter((w) => w !== 'help'),
    COMMAND_FILES,
  );
  assert.deepEqual(complete('lbd se'), ['server', 'service']);
});

test('every command offers every option its usage text names, long and short', () => {
  for (const s of commandSpecs()) {
    const offered = complete(`lbd ${s.name} -`);
    for (const o of s.options.values()) {
      assert.ok(offered.includes(o.long), `lbd ${s.name}: ${o.long}`);
      if (o.short) assert.ok(offered.includes(o.short), `lbd ${s.name}: ${o.short}`);
    }
  }
  assert.deepEqual(complete('lbd run --'), ['--config', '--log-level', '--fresh', '--take-over', '--help']);
  assert.ok(complete('lbd server --').includes('--weight'));
});

test('option values: log levels, schedulers, choices, *.yaml files for --config', () => {
  assert.deepEqual(complete('lbd --log-level '), [...LOG_LEVELS]);
  assert.deepEqual(complete('lbd run -l w'), ['warn']);
  assert.ok(complete('lbd service edit web --scheduler ').includes('mh'));
  assert.deepEqual(complete('lbd service add x --protocol '), ['tcp', 'udp']);
  assert.deepEqual(complete('lbd realserver-setup --method=r'), ['redirect']);
  const files = complete('lbd check --config ');
  assert.ok(files.includes('lb.yaml') && !files.includes('notes.txt'), files.join(' '));
});

test("lbd server edit <TAB>: the daemon's service names and VIP:PORT/PROTO; then the real servers of the one chosen", () => {
  fs.rmSync(path.join(dir, 'args'), { force: true });
  assert.deepEqual(complete('lbd server edit '), ['web', 'dns', '10.0.10.100:80/tcp', '10.0.10.53:53/udp']);
  assert.deepEqual(complete('lbd server edit w'), ['web']);
  assert.deepEqual(complete('lbd server drain web '), ['10.0.10.40', '10.0.10.111']);
  assert.deepEqual(complete('lbd server remove 10.0.10.53:53/udp 10.'), ['10.0.10.7']);
  assert.deepEqual(complete('lbd list '), ['web', 'dns', '10.0.10.100:80/tcp', '10.0.10.53:53/udp']);
  assert.deepEqual(complete('lbd service remove d'), ['dns']);
  assert.match(argsSeen(), /^list --json$/m);
  // the socket or config given earlier on the line is the one asked
  assert.deepEqual(complete('lbd server edit --socket /run/other.sock web '), ['10.0.10.40', '10.0.10.111']);
  assert.match(argsSeen(), /^list --json --socket \/run\/other\.sock$/m);
  complete('lbd server edit --config=/etc/lbd/b.yaml ');
  assert.match(argsSeen(), /^list --json --config \/etc\/lbd\/b\.yaml$/m);
  // a new service or server is not the daemon's: nothing to offer
  assert.deepEqual(complete('lbd server add web '), []);
});

test('the tests notice a broken completion', () => {
  const broken = path.join(dir, 'broken');
  fs.writeFileSync(broken, fs.readFileSync(SCRIPT, 'utf8').replace(/_lbd_svc_reals\+=\("\$\{reals# \}"\)/, '_lbd_svc_reals+=("")'));
  assert.deepEqual(complete('lbd server drain web ', broken), []);
});
