import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/config/load';
import { ConfigError, formatConfigIssue } from '../../src/errors';
import { Control } from '../../src/control/admin/control';
import { ListResult } from '../../src/control/admin/protocol';
import { AdminServer } from '../../src/control/admin/server';
import { CliIO, parseArgs, parseFlags, socketPath } from '../../src/cli/command';
import { formatConnections, formatList, largeNum } from '../../src/cli/format';
import { main } from '../../src/cli/main';
import { intToIp } from '../../src/dataplane/packet';
import { ACK, SYN, frame } from '../helpers/frames';
import { BASE_CONFIG, testDaemon } from '../helpers/daemon';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function io(stdin = ''): CliIO & { stdout: string; stderr: string } {
  const o = {
    stdout: '',
    stderr: '',
    out: (t: string) => void (o.stdout += t),
    err: (t: string) => void (o.stderr += t),
    stdin: async () => stdin,
  };
  return o;
}

// --- arguments ----------------------------------------------------------------------------------

test('run/check arguments keep their first behaviour', () => {
  assert.deepEqual(parseArgs(['--config', 'lb.yaml']), { command: 'run', config: 'lb.yaml' });
  assert.deepEqual(parseArgs(['check', '-c', 'lb.yaml']), { command: 'check', config: 'lb.yaml' });
  assert.deepEqual(parseArgs(['check', 'lb.yaml']), { command: 'check', config: 'lb.yaml' });
  assert.deepEqual(parseArgs(['run', '--config=lb.yaml', '-l', 'debug']), { command: 'run', config: 'lb.yaml', logLevel: 'debug' });
  // Without --config: the operators' place for it.
  assert.deepEqual(parseArgs(['run']), { command: 'run', config: '/etc/lbd/lb.yaml' });
  assert.deepEqual(parseArgs(['check']), { command: 'check', config: '/etc/lbd/lb.yaml' });
  assert.throws(() => parseArgs(['--config', 'x', '--log-level', 'loud']), /unknown level "loud"/);
});

test('parseFlags: long, short, inline values, repeats, --, and did-you-mean', () => {
  const spec = { '--weight': { short: '-w', value: true }, '--server': { value: true, repeat: true }, '--wait': {} };
  const p = parseFlags(['add', 'web', '-w', '3', '--server=a', '--server', 'b', '--wait', '--', '--not-a-flag'], spec, 'lbd x');
  assert.deepEqual(p.positionals, ['add', 'web', '--not-a-flag']);
  assert.equal(p.flags.get('--weight'), '3');
  assert.deepEqual(p.flags.get('--server'), ['a', 'b']);
  assert.equal(p.flags.get('--wait'), true);
  assert.throws(() => parseFlags(['--wieght', '3'], spec, 'lbd x'), /lbd x: unknown option "--wieght"; did you mean "--weight"\?/);
  assert.throws(() => parseFlags(['--weight'], spec, 'lbd x'), /--weight needs a value/);
  assert.throws(() => parseFlags(['--wait=1'], spec, 'lbd x'), /--wait takes no value/);
});

test('the admin socket: --socket, else admin.socket of --config (even a file with other errors), else the default', () => {
  const spec = { '--socket': { value: true }, '--config': { value: true } };
  const file = path.join(tmp, 'sock.yaml');
  fs.writeFileSync(file, 'admin:\n  socket: /tmp/x/lbd.sock\nservices: nonsense\n');
  assert.equal(socketPath(parseFlags(['--socket', '/a.sock', '--config', file], spec, 'x')), '/a.sock');
  assert.equal(socketPath(parseFlags(['--config', file], spec, 'x')), '/tmp/x/lbd.sock');
  fs.writeFileSync(file, 'interfaces: { capture: eth0 }\n');
  assert.equal(socketPath(parseFlags(['--config', file], spec, 'x')), '/run/lbd/lbd.sock');
  assert.equal(socketPath(parseFlags([], spec, 'x')), '/run/lbd/lbd.sock');
});

test('admin.socket in the config: default, validation', () => {
  const base = BASE_CONFIG();
  assert.deepEqual(parseConfig(base, 'lb.yaml').admin, { socket: '/run/lbd/lbd.sock' });
  assert.deepEqual(parseConfig(base + 'admin:\n  socket: /var/run/lbd-a.sock\n', 'lb.yaml').admin, { socket: '/var/run/lbd-a.sock' });
  const errors = (yaml: string) => {
    try {
      parseConfig(yaml, 'lb.yaml');
    } catch (e) {
      return (e as ConfigError).issues.map(formatConfigIssue);
    }
    return [];
  };
  const lines = base.split('\n').length;
  assert.deepEqual(errors(base + 'admin:\n  socket: lbd.sock\n'), [
    `lb.yaml:${lines + 1}:11 admin.socket: expected an absolute path of at most 107 bytes (e.g. /run/lbd/lbd.sock), got "lbd.sock"`,
  ]);
  assert.match(errors(base + `admin:\n  socket: /${'x'.repeat(120)}\n`)[0], /admin\.socket: expected an absolute path of at most 107 bytes/);
  assert.deepEqual(errors(base + 'admin:\n  sockt: /a\n'), [`lb.yaml:${lines + 1}:3 admin.sockt: unknown key "sockt"; did you mean "socket"?`]);
  assert.deepEqual(errors(base + 'on_remove: cut\n'), [`lb.yaml:${lines}:12 on_remove: unknown on_remove action "cut" (drain, drop)`]);
});

// --- formatting (golden text) -------------------------------------------------------------------

const zero = { conns: 0, inpkts: 0, outpkts: 0, inbytes: 0, outbytes: 0 };
const zr = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };
const real = (address: string, o: Partial<ListResult['services'][0]['reals'][0]> = {}) => ({
  address,
  port: 80,
  forward: 'Route' as const,
  weight: 1,
  active: 0,
  inactive: 0,
  persistent: 0,
  u_threshold: 0,
  l_threshold: 0,
  overloaded: false,
  health: 'unchecked',
  health_reason: '',
  removed: false,
  mac: null,
  stats: zero,
  rate: zr,
  ...o,
});
const LIST: ListResult = {
  version: '0.1.0',
  size: 1048576,
  dataplane: 'ts',
  connections: 12,
  file: '/etc/lbd/lb.yaml',
  runtime_changes: [],
  services: [
    {
      name: 'web',
      key: '10.0.10.100:80/tcp',
      protocol: 'tcp',
      vip: '10.0.10.100',
      port: 80,
      scheduler: 'wlc',
      scheduler_flags: [],
      on_miss: 'drop',
      persistence: 0,
      persistence_netmask: '255.255.255.255',
      removed: false,
      active: 3,
      inactive: 9,
      stats: { conns: 1234, inpkts: 56789, outpkts: 0, inbytes: 123456789012, outbytes: 0 },
      rate: { cps: 12, inpps: 340, outpps: 0, inbps: 27000, outbps: 0 },
      reals: [
        real('10.0.10.111', {
          weight: 3,
          active: 2,
          inactive: 5,
          persistent: 4,
          u_threshold: 7,
          l_threshold: 3,
          overloaded: true,
          health: 'up',
          stats: { conns: 800, inpkts: 40000, outpkts: 0, inbytes: 5000000, outbytes: 0 },
          rate: { cps: 8, inpps: 200, outpps: 0, inbps: 16000, outbps: 0 },
        }),
        real('10.0.10.40', {
          weight: 0,
          active: 1,
          inactive: 4,
          health: 'down',
          health_reason: 'connect refused',
          stats: { conns: 434, inpkts: 16789, outpkts: 0, inbytes: 1000, outbytes: 0 },
        }),
        real('10.0.10.39', { removed: true, active: 0, inactive: 1 }),
      ],
    },
    {
      name: 'dns',
      key: '10.0.10.100:53/udp',
      protocol: 'udp',
      vip: '10.0.10.100',
      port: 53,
      scheduler: 'sh',
      scheduler_flags: [],
      on_miss: 'drop',
      persistence: 300,
      persistence_netmask: '255.255.255.0',
      removed: false,
      active: 0,
      inactive: 0,
      stats: zero,
      rate: zr,
      reals: [real('10.0.10.40', { port: 53 })],
    },
  ],
};

test('lbd list: ipvsadm -L -n layout, sorted like ipvsadm, with Health and names', () => {
  assert.equal(
    formatList(LIST),
    [
      'lbd Virtual Server version 0.1.0 (size=1048576)',
      'Prot LocalAddress:Port Scheduler Flags',
      '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn Health',
      'TCP  10.0.10.100:80 wlc (web)',
      '  -> 10.0.10.39:80                Route   1      0          1          removed, draining',
      '  -> 10.0.10.40:80                Route   0      1          4          down (connect refused)',
      '  -> 10.0.10.111:80               Route   3      2          5          up',
      'UDP  10.0.10.100:53 sh persistent 300 mask 255.255.255.0 (dns)',
      '  -> 10.0.10.40:53                Route   1      0          0          unchecked',
      '',
    ].join('\n'),
  );
});

test("lbd list: a scheduler's flags in parentheses after it, as ipvsadm -L shows them, and on_miss hash", () => {
  const [web, dns] = LIST.services;
  const flagged: ListResult = {
    ...LIST,
    services: [
      { ...web, scheduler: 'mh', scheduler_flags: ['mh-fallback', 'mh-port'], mh_table_size: 65537, on_miss: 'hash' },
      { ...dns, scheduler_flags: ['sh-port'] },
    ],
  };
  const serviceLines = (mode?: 'plain' | 'thresholds' | 'persistent') =>
    formatList(flagged, { mode })
      .split('\n')
      .filter((l) => /^(TCP|UDP) /.test(l));
  // ipvsadm -L -n: "TCP  10.0.0.1:80 mh (mh-fallback,mh-port) persistent 300"; lbd's on_miss and name follow the flags.
  const expected = [
    'TCP  10.0.10.100:80 mh (mh-fallback,mh-port) on_miss hash (web)',
    'UDP  10.0.10.100:53 sh (sh-port) persistent 300 mask 255.255.255.0 (dns)',
  ];
  assert.deepEqual(serviceLines(), expected);
  assert.deepEqual(serviceLines('thresholds'), expected);
  assert.deepEqual(serviceLines('persistent'), expected);
  // The real-server lines keep their columns.
  assert.match(formatList(flagged), /^ {2}-> 10\.0\.10\.111:80 {15}Route {3}3 {6}2 {10}5 {10}up$/m);
  // --stats keeps ipvsadm's numbers-only service line.
  assert.equal(formatList(flagged, { mode: 'stats' }).split('\n')[3], 'TCP  10.0.10.100:80                   1234    56789        0     123G        0');
});

test('lbd list --stats and --rate: ipvsadm columns and K/M/G', () => {
  assert.equal(
    formatList(LIST, { mode: 'stats' }),
    [
      'lbd Virtual Server version 0.1.0 (size=1048576)',
      'Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes',
      '  -> RemoteAddress:Port',
      'TCP  10.0.10.100:80                   1234    56789        0     123G        0',
      '  -> 10.0.10.39:80                       0        0        0        0        0',
      '  -> 10.0.10.40:80                     434    16789        0     1000        0',
      '  -> 10.0.10.111:80                    800    40000        0  5000000        0',
      'UDP  10.0.10.100:53                      0        0        0        0        0',
      '  -> 10.0.10.40:53                       0        0        0        0        0',
      '',
    ].join('\n'),
  );
  assert.equal(
    formatList(LIST, { mode: 'stats', exact: true }).split('\n')[3],
    'TCP  10.0.10.100:80                   1234    56789        0 123456789012        0',
  );
  assert.equal(
    formatList(LIST, { mode: 'rate', nosort: true }).split('\n').slice(1, 5).join('\n'),
    [
      'Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS',
      '  -> RemoteAddress:Port',
      'TCP  10.0.10.100:80                     12      340        0    27000        0',
      '  -> 10.0.10.111:80                      8      200        0    16000        0',
    ].join('\n'),
  );
  assert.equal(largeNum(99999999), ' 99999999');
  assert.equal(largeNum(100000000), '  100000K');
  assert.equal(largeNum(5e12), '    5000G');
});

test('lbd list --thresholds: ipvsadm -L -n --thresholds columns, plus whether each server is overloaded', () => {
  assert.equal(
    formatList(LIST, { mode: 'thresholds' }),
    [
      'lbd Virtual Server version 0.1.0 (size=1048576)',
      'Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn Overload',
      '  -> RemoteAddress:Port',
      'TCP  10.0.10.100:80 wlc (web)',
      '  -> 10.0.10.39:80                0          0          0          1          no',
      '  -> 10.0.10.40:80                0          0          1          4          no',
      '  -> 10.0.10.111:80               7          3          2          5          yes',
      'UDP  10.0.10.100:53 sh persistent 300 mask 255.255.255.0 (dns)',
      '  -> 10.0.10.40:53                0          0          0          0          no',
      '',
    ].join('\n'),
  );
});

test('lbd list --persistent-conn: ipvsadm -L -n --persistent-conn columns', () => {
  assert.equal(
    formatList(LIST, { mode: 'persistent' }).split('\n').slice(1, 7).join('\n'),
    [
      'Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn',
      '  -> RemoteAddress:Port',
      'TCP  10.0.10.100:80 wlc (web)',
      '  -> 10.0.10.39:80                1         0           0          1',
      '  -> 10.0.10.40:80                0         0           1          4',
      '  -> 10.0.10.111:80               3         4           2          5',
    ].join('\n'),
  );
});

test('lbd list -c: ipvsadm -L -n -c layout', () => {
  assert.equal(
    formatConnections([
      { protocol: 'tcp', expires: 899, state: 'ESTABLISHED', client: '10.0.10.50:45678', virtual: '10.0.10.100:80', destination: '10.0.10.40:80' },
      { protocol: 'udp', expires: 65, state: 'UDP', client: '10.0.10.50:5353', virtual: '10.0.10.100:53', destination: '10.0.10.111:53' },
      { protocol: 'tcp', expires: 300, state: 'NONE', client: '10.0.10.0:0', virtual: '10.0.10.100:80', destination: '10.0.10.40:80', template: true },
    ]),
    [
      'lbd connection entries',
      'pro expire state       source             virtual            destination',
      'TCP 14:59  ESTABLISHED 10.0.10.50:45678   10.0.10.100:80     10.0.10.40:80',
      'UDP 01:05  UDP         10.0.10.50:5353    10.0.10.100:53     10.0.10.111:53',
      'TCP 05:00  NONE        10.0.10.0:0        10.0.10.100:80     10.0.10.40:80',
      '',
    ].join('\n'),
  );
});

// --- the commands end to end, in process --------------------------------------------------------

test('dispatcher: --help lists every command, --version, unknown commands and options', async () => {
  let o = io();
  assert.equal(await main(['--help'], o), 0);
  for (const c of ['run', 'check', 'list', 'server', 'service', 'reload', 'save', 'import-ipvsadm']) assert.match(o.stdout, new RegExp(`^  ${c} +\\S`, 'm'));
  o = io();
  assert.equal(await main(['--version'], o), 0);
  assert.match(o.stdout, /^lbd \d+\.\d+\.\d+\n$/);
  o = io();
  assert.equal(await main(['lsit'], o), 2);
  assert.match(o.stderr, /^lbd: unknown command "lsit"; did you mean "list"\?/);
  o = io();
  assert.equal(await main(['list', '--stat'], o), 2);
  assert.match(o.stderr, /^lbd: lbd list: unknown option "--stat"; did you mean "--stats"\?\n\nUsage: lbd list/);
  o = io();
  assert.equal(await main(['server', 'add', 'web'], o), 2);
  assert.match(o.stderr, /give SERVICE and ADDRESS/);
  o = io();
  assert.equal(await main(['list', '--help'], o), 0);
  assert.match(o.stdout, /^Usage: lbd list/);
});

test('no daemon: exit 1 and the hint', async () => {
  const o = io();
  const sock = path.join(tmp, 'none.sock');
  assert.equal(await main(['list', '--socket', sock], o), 1);
  assert.equal(o.stderr, `lbd: no daemon is listening on ${sock} (is lbd running? start it with: lbd --config FILE)\n`);
});

test('list, server add/drain --wait, save, reload and import-ipvsadm through main()', async () => {
  const file = path.join(tmp, 'lb.yaml');
  fs.writeFileSync(file, BASE_CONFIG());
  const t = await testDaemon(BASE_CONFIG());
  t.daemon.running = { ...t.daemon.running, file };
  const sock = path.join(tmp, 'd', 'lbd.sock');
  const admin = new AdminServer(new Control(t.daemon), sock);
  await admin.listen();
  try {
    t.send(frame({ flags: SYN, sport: 40001 }));
    t.send(frame({ flags: ACK, sport: 40001 })); // ESTABLISHED on .40
    let o = io();
    assert.equal(await main(['list', '--socket', sock], o), 0);
    assert.match(o.stdout, /^ {2}-> 10\.0\.10\.40:80 {16}Route {3}1 {6}1 {10}0 {10}unchecked$/m);
    o = io();
    assert.equal(await main(['list', 'web', '--json', '--socket', sock], o), 0);
    assert.equal(JSON.parse(o.stdout).services[0].reals[0].active, 1);
    o = io();
    assert.equal(await main(['list', '-c', '--socket', sock], o), 0);
    assert.match(o.stdout, /^TCP \d\d:\d\d {2}ESTABLISHED 10\.0\.10\.50:40001 {3}10\.0\.10\.100:80 {5}10\.0\.10\.40:80$/m);
    o = io();
    assert.equal(await main(['server', 'add', 'web', '10.0.10.112', '--weight', '2', '--mac', '02:00:00:00:01:12', '--socket', sock], o), 0);
    assert.equal(o.stdout, 'add real server 10.0.10.112:80 to 10.0.10.100:80/tcp (weight 2)\n');
    assert.match(o.stderr, /1 runtime change not in .*lb\.yaml.*lbd save > /);
    // Thresholds, ipvsadm's -x/-y.
    o = io();
    assert.equal(await main(['server', 'edit', 'web', '10.0.10.112', '-x', '5', '--l-threshold', '3', '--socket', sock], o), 0);
    assert.equal(o.stdout, 'update real server 10.0.10.112 of 10.0.10.100:80/tcp: l_threshold, u_threshold\n');
    o = io();
    assert.equal(await main(['list', '--thresholds', '--socket', sock], o), 0);
    assert.match(o.stdout, /^ {2}-> 10\.0\.10\.112:80 {15}5 {10}3 {10}0 {10}0 {10}no$/m);
    o = io();
    assert.equal(await main(['server', 'edit', 'web', '10.0.10.112', '-x', 'lots', '--socket', sock], o), 2);
    assert.match(o.stderr, /--u-threshold: expected a number of connections \(0 = no limit\), got "lots"/);
    o = io();
    assert.equal(await main(['server', 'drain', 'web', '10.0.10.112', '-y', '1', '--socket', sock], o), 2);
    assert.match(o.stderr, /--weight, --mac and the thresholds belong to add and edit/);
    // drain --wait: reports each second; the open flow ends (RST) while it waits.
    o = io();
    // The RST comes after the first report of the open flow, however late that report is.
    const writeOut = o.out;
    let reset = false;
    o.out = (text: string) => {
      writeOut(text);
      if (!reset && / 1 active/.test(text)) {
        reset = true;
        setImmediate(() => t.send(frame({ flags: 0x04, sport: 40001 })));
      }
    };
    assert.equal(await main(['server', 'drain', 'web', '10.0.10.40', '--wait', '--timeout', '10', '--socket', sock], o), 0);
    assert.ok(reset, 'it reported the open flow before it ended');
    const lines = o.stdout.trim().split('\n');
    assert.equal(lines[0], 'update real server 10.0.10.40 of 10.0.10.100:80/tcp: weight');
    assert.equal(lines[1], '10.0.10.40:80 (web): 1 active, 0 inactive connection');
    assert.equal(lines[lines.length - 1], '10.0.10.40:80 drained: no active connection left');
    // drain --wait with a timeout that passes: exit 1.
    t.send(frame({ flags: SYN, sport: 40002 })); // → .111 or .112
    t.send(frame({ flags: ACK, sport: 40002 }));
    const dest = intToIp(t.daemon.forwarder.dests.views[t.daemon.forwarder.conns.dest[t.daemon.forwarder.conns.find(0x0a000a32, 40002)]].addr);
    o = io();
    assert.equal(await main(['server', 'drain', 'web', dest, '--wait', '--timeout', '1', '--socket', sock], o), 1);
    assert.match(o.stderr, /still has 1 active connection after 1 s \(it stays at weight 0\)/);
    // save: the YAML has the runtime changes; stderr lists them.
    o = io();
    assert.equal(await main(['save', '--socket', sock], o), 0);
    const saved = parseConfig(o.stdout, 'saved.yaml');
    assert.deepEqual(
      saved.services[0].real_servers.map((r) => [r.address, r.weight]),
      [
        ['10.0.10.40', 0],
        ['10.0.10.111', dest === '10.0.10.111' ? 0 : 1],
        ['10.0.10.112', dest === '10.0.10.112' ? 0 : 2],
      ],
    );
    assert.match(o.stderr, /4 runtime changes not in/);
    o = io();
    assert.equal(await main(['save', '--ipvsadm', '--socket', sock], o), 0);
    assert.match(o.stdout, /^-A -t 10\.0\.10\.100:80 -s rr\n-a -t 10\.0\.10\.100:80 -r 10\.0\.10\.40:80 -g -w 0\n/);
    assert.match(o.stdout, /^-a -t 10\.0\.10\.100:80 -r 10\.0\.10\.112:80 -g -w \d -x 5 -y 3$/m);
    // reload: back to the file; the runtime changes are listed as undone.
    o = io();
    assert.equal(await main(['reload', '--socket', sock], o), 0);
    assert.match(o.stdout, /lb\.yaml: reloaded, 3 changes\n {2}remove real server 10\.0\.10\.112 from 10\.0\.10\.100:80\/tcp \(drain\)\n/);
    assert.match(o.stderr, /undid 4 runtime changes/);
    fs.writeFileSync(file, BASE_CONFIG().replace('scheduler: rr', 'scheduler: wl'));
    o = io();
    assert.equal(await main(['reload', '--socket', sock], o), 1);
    assert.match(
      o.stderr,
      /^lbd: .*lb\.yaml:\d+:\d+ services\[0\]\.scheduler: unknown scheduler "wl"; did you mean "wlc"\?.*\n.*lb\.yaml: 1 error; not reloaded, the running config stays\n$/,
    );
    // --config finds the socket.
    fs.writeFileSync(file, BASE_CONFIG() + `admin:\n  socket: ${sock}\n`);
    o = io();
    assert.equal(await main(['list', '--config', file], o), 0);
  } finally {
    await admin.close();
    await t.daemon.stop();
  }
  const o = io('-A -t 10.0.10.30:80 -s wlc\n-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 1\n-a -t 10.0.10.30:80 -r 10.0.10.111:80 -g -w 1\n');
  assert.equal(await main(['import-ipvsadm', '--interface', 'eth0'], o), 0);
  assert.equal(parseConfig(o.stdout, 'imported.yaml').services[0].real_servers.length, 2);
  const bad = io('-A -t 10.0.10.30:80 -s wlc\n-a -t 10.0.10.30:80 -r 10.0.10.40:80 -m -w 1\n');
  assert.equal(await main(['import-ipvsadm'], bad), 1);
  assert.match(bad.stderr, /stdin:2: 10\.0\.10\.40: masquerading \(-m, NAT\) is not supported/);
});

test('scheduler flags through main(): service edit -b, list, save --ipvsadm and its stderr note', async () => {
  const yaml = BASE_CONFIG().replace('    scheduler: rr', '    scheduler: mh\n    mh_table_size: 4093');
  const file = path.join(tmp, 'lb-mh.yaml');
  fs.writeFileSync(file, yaml);
  const t = await testDaemon(yaml);
  t.daemon.running = { ...t.daemon.running, file };
  const sock = path.join(tmp, 'mh', 'lbd.sock');
  const admin = new AdminServer(new Control(t.daemon), sock);
  await admin.listen();
  try {
    let o = io();
    assert.equal(await main(['service', 'edit', 'web', '-b', 'mh-fallback,flag-2', '--socket', sock], o), 0);
    o = io();
    assert.equal(await main(['list', '--socket', sock], o), 0);
    assert.match(o.stdout, /^TCP {2}10\.0\.10\.100:80 mh \(mh-fallback,mh-port\) \(web\)$/m);
    o = io();
    assert.equal(await main(['list', '--json', '--socket', sock], o), 0);
    const web = JSON.parse(o.stdout).services[0];
    assert.deepEqual([web.scheduler_flags, web.mh_table_size, web.on_miss], [['mh-fallback', 'mh-port'], 4093, 'drop']);
    o = io();
    assert.equal(await main(['save', '--ipvsadm', '--socket', sock], o), 0);
    assert.match(o.stdout, /^-A -t 10\.0\.10\.100:80 -s mh -b mh-fallback,mh-port$/m);
    assert.match(
      o.stderr,
      /^lbd: 1 setting of the running config is not expressible as ipvsadm rules:\n {2}service web \(10\.0\.10\.100:80\/tcp\): mh_table_size 4093 is not in the rules/,
    );
    // The YAML save carries the keys, and says nothing about ipvsadm.
    o = io();
    assert.equal(await main(['save', '--socket', sock], o), 0);
    const saved = parseConfig(o.stdout, 'saved.yaml').services[0];
    assert.deepEqual([saved.mh_fallback, saved.mh_port, saved.mh_table_size], [true, true, 4093]);
    assert.doesNotMatch(o.stderr, /ipvsadm/);
    // Another scheduler's flag: refused by the daemon (exit 1), saying what mh takes.
    o = io();
    assert.equal(await main(['service', 'edit', 'web', '--sched-flags', 'sh-port', '--socket', sock], o), 1);
    assert.match(o.stderr, /"sh-port" is for scheduler sh, not mh \(mh takes mh-fallback, mh-port/);
  } finally {
    await admin.close();
    await t.daemon.stop();
  }
});

test('exit status: an invalid or missing config is 78 (EX_CONFIG) for the daemon, 1 for lbd check, a usage error 2', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-exit-'));
  try {
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(
      bad,
      'interfaces: { capture: eth0 }\nservices:\n  - name: web\n    vip: 10.0.10.100\n    port: 80\n    scheduler: wl\n    real_servers: [10.0.10.40]\n',
    );
    let o = io();
    assert.equal(await main(['--config', bad], o), 78, 'lbd --config BAD');
    assert.match(o.stderr, /bad\.yaml:6:16 services\[0\]\.scheduler: unknown scheduler "wl"; did you mean "wlc"\?/);
    o = io();
    assert.equal(await main(['run', '--config', path.join(dir, 'missing.yaml')], o), 78, 'a missing config');
    assert.match(o.stderr, /missing\.yaml/);
    o = io();
    assert.equal(await main(['check', bad], o), 1, 'lbd check keeps nginx -t’s 1');
    o = io();
    assert.equal(await main(['run', '--config'], o), 2, 'a usage error');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
