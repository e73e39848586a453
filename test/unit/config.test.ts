import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, formatConfigIssue } from '../../src/errors';
import { formatConfig, loadConfig, parseConfig } from '../../src/config/load';
import { parseDuration } from '../../src/config/values';
import { didYouMean, editDistance } from '../../src/config/suggest';
import { Config } from '../../src/config/types';

// Compiled to dist/test/unit/: the sources (examples, fixtures) are three levels up.
const ROOT = path.resolve(__dirname, '../../..');
const FIXTURES = path.join(ROOT, 'test/fixtures/configs');
const fixture = (name: string) => fs.readFileSync(path.join(FIXTURES, name), 'utf8');

/** The formatted issues parseConfig reports for `text` (fails if it does not throw ConfigError). */
function errorsOf(text: string, file = 'lb.yaml'): string[] {
  try {
    parseConfig(text, file);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'E_CONFIG');
    assert.equal(err.message, err.issues.map(formatConfigIssue).join('\n'));
    return err.issues.map(formatConfigIssue);
  }
  assert.fail(`expected a ConfigError for:\n${text}`);
}

function issuesOf(text: string) {
  try {
    parseConfig(text, 'lb.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.issues;
  }
  assert.fail('expected a ConfigError');
}

/** A valid config with one service; `svc` and `rs` lines are spliced in (4/8-space indents). */
function withService(svc: string[] = [], rs: string[] = ['      - address: 10.0.10.40']): string {
  return [
    'interfaces:',
    '  capture: eth0',
    'services:',
    '  - name: web',
    '    vip: 10.0.10.100',
    '    port: 80',
    ...svc.map((l) => `    ${l}`),
    '    real_servers:',
    ...rs,
    '',
  ].join('\n');
}

// --- valid configs, defaults, normalization ----------------------------------------------------

test('examples/lb.yaml (the lab topology) loads to the expected config', () => {
  const file = path.join(ROOT, 'examples/lb.yaml');
  const cfg = loadConfig(file);
  const expected: Config = {
    file,
    interfaces: { capture: 'eth0', egress: 'eth0' },
    metrics: { listen: '127.0.0.1:9469', host: '127.0.0.1', port: 9469 },
    log: { level: 'info' },
    dataplane: 'auto',
    busy_poll: 0,
    local_access: false,
    connection_table: { size: 1048576, syn_flood_defense: 'auto', defense_threshold: 75, defense_syn_recv_timeout: 5 },
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    services: [
      {
        name: 'web',
        vip: '10.0.10.100',
        port: 80,
        protocol: 'tcp',
        scheduler: 'rr',
        persistence: 0,
        persistence_netmask: '255.255.255.255',
        real_servers: [
          { address: '10.0.10.40', port: 80, weight: 1 },
          { address: '10.0.10.111', port: 80, weight: 1 },
        ],
      },
    ],
    admin: { socket: '/run/lbd/lbd.sock' },
    conn_reuse_mode: 2,
  };
  assert.deepEqual(cfg, expected);
});

test('defaults are applied to a minimal config', () => {
  const cfg = parseConfig(
    'interfaces:\n  capture: eth1\nservices:\n  - name: web\n    vip: 10.0.10.100\n    port: 80\n    real_servers:\n      - address: 10.0.10.40\n',
    'min.yaml',
  );
  assert.deepEqual(cfg, {
    file: 'min.yaml',
    interfaces: { capture: 'eth1', egress: 'eth1' },
    metrics: { listen: '127.0.0.1:9469', host: '127.0.0.1', port: 9469 },
    log: { level: 'info' },
    dataplane: 'auto',
    busy_poll: 0,
    local_access: false,
    connection_table: { size: 1 << 20, syn_flood_defense: 'auto', defense_threshold: 75, defense_syn_recv_timeout: 5 },
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    services: [
      {
        name: 'web',
        vip: '10.0.10.100',
        port: 80,
        protocol: 'tcp',
        scheduler: 'wlc',
        persistence: 0,
        persistence_netmask: '255.255.255.255',
        real_servers: [{ address: '10.0.10.40', port: 80, weight: 1 }],
      },
    ],
    admin: { socket: '/run/lbd/lbd.sock' },
    conn_reuse_mode: 2,
  });
});

test('empty optional sections (`log:` with nothing under it) mean defaults', () => {
  const cfg = parseConfig(withService().replace('services:', 'log:\nmetrics:\ntimeouts:\nservices:'), 'lb.yaml');
  assert.equal(cfg.log.level, 'info');
  assert.equal(cfg.metrics.listen, '127.0.0.1:9469');
  assert.deepEqual(cfg.timeouts, { tcp: 900, tcpfin: 120, udp: 300 });
});

test('every key set explicitly', () => {
  const text = `
interfaces: { capture: eth0, egress: eth1 }
metrics: { listen: 0.0.0.0:9100 }
log: { level: debug }
dataplane: ts
busy_poll: 150us
connection_table: { size: 4096 }
timeouts: { tcp: 1h, tcpfin: 30s, udp: 500ms }
services:
  - name: dns.udp-1
    vip: 192.0.2.53
    port: 53
    protocol: udp
    scheduler: sh
    persistence: 1m30s
    persistence_netmask: 255.255.255.0
    real_servers:
      - { address: 192.0.2.10, port: 53, weight: 0, mac: 02:AB:CD:EF:00:11 }
      - { address: 192.0.2.11, weight: 65535, mac: 02-00-00-00-00-22 }
`;
  const cfg = parseConfig(text, 'lb.yaml');
  assert.deepEqual(cfg.interfaces, { capture: 'eth0', egress: 'eth1' });
  assert.deepEqual(cfg.metrics, { listen: '0.0.0.0:9100', host: '0.0.0.0', port: 9100 });
  assert.equal(cfg.log.level, 'debug');
  assert.equal(cfg.dataplane, 'ts');
  assert.equal(cfg.busy_poll, 0.00015);
  assert.equal(cfg.connection_table.size, 4096);
  assert.deepEqual(cfg.timeouts, { tcp: 3600, tcpfin: 30, udp: 0.5 });
  assert.deepEqual(cfg.services[0], {
    name: 'dns.udp-1',
    vip: '192.0.2.53',
    port: 53,
    protocol: 'udp',
    scheduler: 'sh',
    persistence: 90,
    persistence_netmask: '255.255.255.0',
    real_servers: [
      { address: '192.0.2.10', port: 53, weight: 0, mac: '02:ab:cd:ef:00:11' },
      { address: '192.0.2.11', port: 53, weight: 65535, mac: '02:00:00:00:00:22' },
    ],
  });
});

test('durations: units, plain seconds, compound', () => {
  const cases: [string, number][] = [
    ['500ms', 0.5],
    ['2s', 2],
    ['1m', 60],
    ['1h', 3600],
    ['90', 90],
    ['1.5', 1.5],
    ['1.5s', 1.5],
    ['1m30s', 90],
    ['0', 0],
  ];
  for (const [text, secs] of cases) {
    const cfg = parseConfig(withService([`persistence: ${text}`]), 'lb.yaml');
    assert.equal(cfg.services[0].persistence, secs, text);
  }
  assert.equal(parseDuration(7), 7);
  assert.equal(parseDuration('200us'), 0.0002);
  assert.equal(parseDuration('1ms500us'), 0.0015);
  assert.equal(parseDuration('"x"'), undefined);
  for (const bad of [-1, '-1s', '5x', '1 m', 's', '', 'ms5', Infinity, true, null]) {
    assert.equal(parseDuration(bad), undefined, String(bad));
  }
});

test('real server shorthand: "address" and "address:port"', () => {
  const cfg = parseConfig(withService([], ['      - 10.0.10.40', '      - "10.0.10.111:80"', '      - { address: 10.0.10.112 }']), 'lb.yaml');
  assert.deepEqual(cfg.services[0].real_servers, [
    { address: '10.0.10.40', port: 80, weight: 1 },
    { address: '10.0.10.111', port: 80, weight: 1 },
    { address: '10.0.10.112', port: 80, weight: 1 },
  ]);
  assert.deepEqual(parseConfig(fixture('minimal.yaml'), 'minimal.yaml').services[0].real_servers, [
    { address: '192.0.2.10', port: 53, weight: 1 },
    { address: '192.0.2.11', port: 53, weight: 1 },
  ]);
});

test('formatConfig prints the normalized config, which parses back to the same Config', () => {
  for (const text of [fs.readFileSync(path.join(ROOT, 'examples/lb.yaml'), 'utf8'), fixture('minimal.yaml')]) {
    const cfg = parseConfig(text, 'x.yaml');
    const out = formatConfig(cfg);
    assert.doesNotMatch(out, /file/);
    assert.deepEqual(parseConfig(out, 'x.yaml'), cfg);
  }
  const cfg = parseConfig(
    withService(['persistence: 1m30s', 'scheduler: sed'], ['      - { address: 10.0.10.40, mac: 02:AA:00:00:00:01 }']).replace(
      '  capture: eth0',
      '  capture: eth0\ntimeouts:\n  udp: 500ms',
    ),
    'lb.yaml',
  );
  const out = formatConfig(cfg);
  assert.match(out, /^ {2}udp: 0\.5$/m);
  assert.match(out, /^ {4}persistence: 90$/m);
  assert.match(out, /^ {8}mac: 02:aa:00:00:00:01$/m);
  assert.match(out, /^ {2}egress: eth0$/m);
  assert.deepEqual(parseConfig(out, 'lb.yaml'), cfg);
  // A name that YAML would read as a number survives the round trip.
  const numeric = parseConfig(withService().replace('name: web', 'name: 8080'), 'lb.yaml');
  assert.equal(numeric.services[0].name, '8080');
  assert.deepEqual(parseConfig(formatConfig(numeric), 'lb.yaml'), numeric);
});

// --- the error messages -----------------------------------------------------------------------

test('misspelt scheduler: value position, suggestion and the list of schedulers', () => {
  assert.deepEqual(errorsOf(fixture('bad-scheduler.yaml')), [
    'lb.yaml:13:16 services[0].scheduler: unknown scheduler "wl"; did you mean "wlc"? (rr, wrr, lc, wlc, sed, nq, sh, fo, ovf, mh)',
  ]);
  const [issue] = issuesOf(fixture('bad-scheduler.yaml'));
  assert.deepEqual(issue, {
    file: 'lb.yaml',
    line: 13,
    col: 16,
    path: 'services[0].scheduler',
    message: 'unknown scheduler "wl"; did you mean "wlc"? (rr, wrr, lc, wlc, sed, nq, sh, fo, ovf, mh)',
  });
  assert.deepEqual(errorsOf(withService(['scheduler: banana'])), [
    'lb.yaml:7:16 services[0].scheduler: unknown scheduler "banana" (rr, wrr, lc, wlc, sed, nq, sh, fo, ovf, mh)',
  ]);
});

test('unknown keys, with a suggestion or the list of valid keys, located at the key', () => {
  assert.deepEqual(errorsOf(withService(['shceduler: rr'])), ['lb.yaml:7:5 services[0].shceduler: unknown key "shceduler"; did you mean "scheduler"?']);
  assert.deepEqual(errorsOf(withService(['colour: blue'])), [
    'lb.yaml:7:5 services[0].colour: unknown key "colour" (valid: name, vip, port, protocol, scheduler, persistence, persistence_netmask, real_servers, health_check, on_down, inhibit_on_failure, quorum, sorry_server, initial_state, on_remove, conn_reuse_mode, mh_table_size, mh_fallback, mh_port, sh_fallback, sh_port, on_miss)',
  ]);
  assert.deepEqual(errorsOf('interface:\n  capture: eth0\n' + withService().split('\n').slice(2).join('\n')), [
    'lb.yaml:1:1 interface: unknown key "interface"; did you mean "interfaces"?',
    'lb.yaml:1:1 interfaces: missing required key "interfaces" (the capture interface, e.g. interfaces: { capture: eth0 })',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        wieght: 2'])), [
    'lb.yaml:9:9 services[0].real_servers[0].wieght: unknown key "wieght"; did you mean "weight"?',
  ]);
  assert.deepEqual(errorsOf(withService().replace('  capture: eth0', '  capture: eth0\n  egres: eth1')), [
    'lb.yaml:3:3 interfaces.egres: unknown key "egres"; did you mean "egress"?',
  ]);
});

test('wrong types and out-of-range values', () => {
  assert.deepEqual(errorsOf(withService().replace('port: 80', 'port: "eighty"')), ['lb.yaml:6:11 services[0].port: expected an integer 1-65535, got "eighty"']);
  assert.deepEqual(errorsOf(withService().replace('port: 80', 'port: 70000')), ['lb.yaml:6:11 services[0].port: expected an integer 1-65535, got 70000']);
  assert.deepEqual(errorsOf(withService().replace('port: 80', 'port: 0')), ['lb.yaml:6:11 services[0].port: expected an integer 1-65535, got 0']);
  assert.deepEqual(errorsOf(withService().replace('port: 80', 'port: [80]')), ['lb.yaml:6:11 services[0].port: expected an integer 1-65535, got a list']);
  assert.deepEqual(errorsOf(withService().replace('port: 80', 'port:')), ['lb.yaml:6:10 services[0].port: expected an integer 1-65535, got nothing']);
  assert.deepEqual(errorsOf(withService().replace('  capture: eth0', '  capture: eth0\nconnection_table:\n  size: 10')), [
    'lb.yaml:4:9 connection_table.size: expected an integer 1024-16777216, got 10',
  ]);
});

test('invalid IPv4 addresses', () => {
  assert.deepEqual(errorsOf(withService().replace('vip: 10.0.10.100', 'vip: 10.0.10.300')), [
    'lb.yaml:5:10 services[0].vip: invalid IPv4 address "10.0.10.300": expected a dotted quad of four numbers 0-255 (e.g. 10.0.10.100)',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10'])), [
    'lb.yaml:8:18 services[0].real_servers[0].address: invalid IPv4 address "10.0.10": expected a dotted quad of four numbers 0-255 (e.g. 10.0.10.100)',
  ]);
  assert.deepEqual(errorsOf(withService().replace('vip: 10.0.10.100', 'vip: 224.0.0.1')), [
    'lb.yaml:5:10 services[0].vip: 224.0.0.1 is a multicast address; a VIP must be a unicast IPv4 address',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - 10.0.10.100'])), [
    "lb.yaml:8:9 services[0].real_servers[0].address: the real server address must not be the VIP 10.0.10.100 (the VIP lives on the real servers' loopback; list their own addresses)",
  ]);
  assert.deepEqual(errorsOf(withService().replace('  capture: eth0', '  capture: eth0\nmetrics:\n  listen: 127.0.0.1')), [
    'lb.yaml:4:11 metrics.listen: expected host:port with an IPv4 host and a port 1-65535 (e.g. 127.0.0.1:9469 or 0.0.0.0:9469), got "127.0.0.1"',
  ]);
});

test('invalid durations, MACs, weights, netmask', () => {
  assert.deepEqual(errorsOf(withService(['persistence: 5x'])), [
    'lb.yaml:7:18 services[0].persistence: invalid duration "5x": expected e.g. 500ms, 2s, 1m, 1h or a number of seconds',
  ]);
  assert.deepEqual(errorsOf(withService(['persistence: -5'])), [
    'lb.yaml:7:18 services[0].persistence: expected a non-negative duration (e.g. 500ms, 2s, 1m, 1h or a number of seconds), got -5',
  ]);
  assert.deepEqual(errorsOf(withService().replace('  capture: eth0', '  capture: eth0\ntimeouts:\n  tcp: 0')), [
    'lb.yaml:4:8 timeouts.tcp: expected a duration greater than 0 (e.g. 500ms, 2s, 1m, 1h or a number of seconds), got 0',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        mac: 02:00:00:00:01'])), [
    'lb.yaml:9:14 services[0].real_servers[0].mac: invalid MAC address "02:00:00:00:01": expected six hex bytes like 02:00:00:00:01:11',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        mac: 01:00:5e:00:00:01'])), [
    'lb.yaml:9:14 services[0].real_servers[0].mac: 01:00:5e:00:00:01 is a multicast MAC address; a real server needs a unicast MAC (even first byte)',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        weight: -1'])), [
    'lb.yaml:9:17 services[0].real_servers[0].weight: expected an integer 0-65535, got -1',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        weight: 1.5'])), [
    'lb.yaml:9:17 services[0].real_servers[0].weight: expected an integer 0-65535, got 1.5',
  ]);
  assert.deepEqual(errorsOf(withService(['persistence_netmask: 255.0.255.0'])), [
    'lb.yaml:7:26 services[0].persistence_netmask: expected a contiguous IPv4 netmask (e.g. 255.255.255.0 or 255.255.255.255), got "255.0.255.0"',
  ]);
});

test('connection thresholds: u_threshold/l_threshold as ipvsadm -x/-y, validated like the kernel', () => {
  const ok = parseConfig(
    withService([], ['      - address: 10.0.10.40', '        u_threshold: 100', '        l_threshold: 50', '      - 10.0.10.111']),
    'lb.yaml',
  );
  assert.deepEqual(ok.services[0].real_servers, [
    { address: '10.0.10.40', port: 80, weight: 1, u_threshold: 100, l_threshold: 50 },
    { address: '10.0.10.111', port: 80, weight: 1 },
  ]);
  assert.deepEqual(parseConfig(formatConfig(ok), 'again.yaml').services, ok.services, 'formatConfig keeps them');
  assert.deepEqual(
    parseConfig(withService([], ['      - address: 10.0.10.40', '        u_threshold: 0']), 'lb.yaml').services[0].real_servers[0],
    { address: '10.0.10.40', port: 80, weight: 1 },
    '0 = none',
  );
  // The kernel (ip_vs_add_dest) refuses only a lower threshold above the upper one: equal is fine.
  assert.deepEqual(
    parseConfig(withService([], ['      - address: 10.0.10.40', '        u_threshold: 10', '        l_threshold: 10']), 'lb.yaml').services[0].real_servers[0]
      .l_threshold,
    10,
  );
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        u_threshold: 10', '        l_threshold: 11'])), [
    'lb.yaml:10:22 services[0].real_servers[0].l_threshold: l_threshold (11) must not exceed u_threshold (10): the server takes new flows again once its connections fall below l_threshold',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        l_threshold: 5'])), [
    'lb.yaml:9:22 services[0].real_servers[0].l_threshold: l_threshold (5) needs a u_threshold: without an upper threshold the server is never overloaded',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        u_threshold: -1'])), [
    'lb.yaml:9:22 services[0].real_servers[0].u_threshold: expected an integer 0-2147483647, got -1',
  ]);
  assert.match(
    errorsOf(withService([], ['      - address: 10.0.10.40', '        uthreshold: 10']))[0],
    /unknown key "uthreshold"; did you mean "u_threshold"\?/,
  );
});

test('busy_poll: a duration up to 1ms, 0 = off', () => {
  assert.equal(parseConfig(withService(), 'lb.yaml').busy_poll, 0);
  assert.equal(parseConfig(withService().replace('  capture: eth0', '  capture: eth0\nbusy_poll: 200us'), 'lb.yaml').busy_poll, 0.0002);
  assert.deepEqual(errorsOf(withService().replace('  capture: eth0', '  capture: eth0\nbusy_poll: 1s')), [
    'lb.yaml:3:12 busy_poll: expected at most 1ms (a wake-up of the native loop yields after 1 ms anyway), got "1s"',
  ]);
  assert.deepEqual(errorsOf(withService().replace('  capture: eth0', '  capture: eth0\nbusy_poll: fast')), [
    'lb.yaml:3:12 busy_poll: invalid duration "fast": expected e.g. 500ms, 2s, 1m, 1h or a number of seconds',
  ]);
});

test('unknown protocol, log level, dataplane', () => {
  assert.deepEqual(errorsOf(withService(['protocol: tpc'])), ['lb.yaml:7:15 services[0].protocol: unknown protocol "tpc"; did you mean "tcp"? (tcp, udp)']);
  assert.deepEqual(errorsOf(withService().replace('services:', 'log:\n  level: verbose\nservices:')), [
    'lb.yaml:4:10 log.level: unknown log level "verbose" (trace, debug, info, warn, error, fatal, silent)',
  ]);
  assert.deepEqual(errorsOf(withService().replace('services:', 'dataplane: Native\nservices:')), [
    'lb.yaml:3:12 dataplane: unknown dataplane mode "Native"; did you mean "native"? (auto, native, ts)',
  ]);
});

test('duplicates: service name, VIP:port/protocol, real server address', () => {
  const two = (second: string[]) =>
    ['interfaces: { capture: eth0 }', 'services:', '  - { name: web, vip: 10.0.10.100, port: 80, real_servers: [10.0.10.40] }', ...second, ''].join('\n');
  assert.deepEqual(errorsOf(two(['  - { name: web, vip: 10.0.10.101, port: 80, real_servers: [10.0.10.40] }'])), [
    'lb.yaml:4:13 services[1].name: duplicate service name "web" (also services[0])',
  ]);
  assert.deepEqual(errorsOf(two(['  - { name: web2, vip: 10.0.10.100, port: 80, real_servers: [10.0.10.40] }'])), [
    'lb.yaml:4:24 services[1]: duplicates services[0] (10.0.10.100:80/tcp)',
  ]);
  // Same VIP and port over UDP is a different service.
  parseConfig(two(['  - { name: web2, vip: 10.0.10.100, port: 80, protocol: udp, real_servers: [10.0.10.40] }']), 'lb.yaml');
  assert.deepEqual(errorsOf(withService([], ['      - 10.0.10.40', '      - address: 10.0.10.40'])), [
    'lb.yaml:9:18 services[0].real_servers[1].address: duplicate real server 10.0.10.40 (also real_servers[0])',
  ]);
});

test('Direct Routing cannot change the port', () => {
  assert.deepEqual(errorsOf(withService([], ['      - address: 10.0.10.40', '        port: 8080'])), [
    'lb.yaml:9:15 services[0].real_servers[0].port: Direct Routing cannot change the destination port: real server port 8080 must equal the service port 80',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - "10.0.10.40:8080"'])), [
    'lb.yaml:8:9 services[0].real_servers[0].port: Direct Routing cannot change the destination port: real server port 8080 must equal the service port 80',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - "10.0.10.40:http"'])), [
    'lb.yaml:8:9 services[0].real_servers[0].port: expected "address" or "address:port" with a port 1-65535, got "10.0.10.40:http"',
  ]);
});

test('missing required keys are located at the parent mapping; empty lists', () => {
  assert.deepEqual(errorsOf(withService().replace('    vip: 10.0.10.100\n', '')), [
    'lb.yaml:4:5 services[0].vip: missing required key "vip" (the virtual IPv4 address, e.g. 10.0.10.100)',
  ]);
  assert.deepEqual(errorsOf(withService([], ['      - weight: 2'])), [
    'lb.yaml:8:9 services[0].real_servers[0].address: missing required key "address" (the real server IPv4 address)',
  ]);
  assert.deepEqual(errorsOf('interfaces:\n  egress: eth0\n'), [
    'lb.yaml:1:1 services: missing required key "services" (at least one service)',
    'lb.yaml:2:3 interfaces.capture: missing required key "capture" (the interface VIP traffic arrives on, e.g. eth0)',
  ]);
  assert.deepEqual(errorsOf('interfaces:\n  capture: eth0\nservices: []\n'), ['lb.yaml:3:11 services: expected at least one service, got an empty list']);
  assert.deepEqual(errorsOf('interfaces:\n  capture: eth0\nservices:\n'), ['lb.yaml:3:1 services: expected a list of at least one service, got nothing']);
  assert.deepEqual(errorsOf(withService([], []).replace('real_servers:', 'real_servers: []')), [
    'lb.yaml:7:19 services[0].real_servers: expected at least one real server, got an empty list',
  ]);
});

test('broken YAML, non-mapping and empty documents', () => {
  const broken = errorsOf(fixture('broken-yaml.yaml'));
  assert.equal(broken.length, 1);
  assert.match(broken[0], /^lb\.yaml:6:5: invalid YAML: Flow sequence .* end with a \]$/);
  const tabs = issuesOf('interfaces:\n\tcapture: eth0\n');
  assert.ok(tabs.length >= 1);
  assert.ok(tabs.every((i) => i.message.startsWith('invalid YAML: ') && i.line >= 1 && i.col >= 1));
  assert.deepEqual(errorsOf('- eth0\n- web\n'), [
    'lb.yaml:1:1: expected a mapping at the top level (keys: interfaces, metrics, log, dataplane, busy_poll, connection_table, timeouts, services, admin, on_remove, expire_nodest_conn, conn_reuse_mode, state_file, announce, local_access), got a list',
  ]);
  assert.deepEqual(errorsOf(''), ['lb.yaml:1:1: the config is empty: expected a mapping with at least interfaces and services']);
  assert.deepEqual(errorsOf('# nothing but a comment\n'), ['lb.yaml:1:1: the config is empty: expected a mapping with at least interfaces and services']);
  assert.deepEqual(errorsOf(withService().replace('port: 80', 'port: 80\n    port: 81')), [
    'lb.yaml:7:5: invalid YAML: duplicate key (each key may appear only once in a mapping)',
  ]);
});

test('anchors and aliases resolve; an unknown alias is reported', () => {
  const cfg = parseConfig(
    [
      'interfaces: { capture: eth0 }',
      'services:',
      '  - { name: a, vip: 10.0.10.100, port: 80, real_servers: &pool [10.0.10.40, 10.0.10.111] }',
      '  - { name: b, vip: 10.0.10.101, port: 80, real_servers: *pool }',
      '',
    ].join('\n'),
    'lb.yaml',
  );
  assert.deepEqual(cfg.services[1].real_servers, cfg.services[0].real_servers);
  assert.ok(errorsOf(withService([], ['      - *nope'])).includes('lb.yaml:8:9: invalid YAML: unknown alias "*nope" (no anchor "&nope" before it)'));
  assert.deepEqual(errorsOf('interfaces: { capture: eth0 }\nservices:\n  - null\n'), [
    'lb.yaml:3:5 services[0]: expected a service mapping (keys: name, vip, port, protocol, scheduler, persistence, persistence_netmask, real_servers, health_check, on_down, inhibit_on_failure, quorum, sorry_server, initial_state, on_remove, conn_reuse_mode, mh_table_size, mh_fallback, mh_port, sh_fallback, sh_port, on_miss), got nothing',
  ]);
});

test('all issues are reported at once, in file order', () => {
  assert.deepEqual(errorsOf(fixture('many-errors.yaml')), [
    'lb.yaml:5:10 log.level: unknown log level "infoo"; did you mean "info"? (trace, debug, info, warn, error, fatal, silent)',
    'lb.yaml:6:12 dataplane: unknown dataplane mode "fast" (auto, native, ts)',
    'lb.yaml:8:8 timeouts.tcp: invalid duration "15 minutes": expected e.g. 500ms, 2s, 1m, 1h or a number of seconds',
    'lb.yaml:11:10 services[0].vip: invalid IPv4 address "10.0.10.300": expected a dotted quad of four numbers 0-255 (e.g. 10.0.10.100)',
    'lb.yaml:12:11 services[0].port: expected an integer 1-65535, got "eighty"',
    'lb.yaml:13:15 services[0].protocol: unknown protocol "tpc"; did you mean "tcp"? (tcp, udp)',
    'lb.yaml:14:5 services[0].shceduler: unknown key "shceduler"; did you mean "scheduler"?',
    'lb.yaml:17:17 services[0].real_servers[0].weight: expected an integer 0-65535, got -1',
    'lb.yaml:18:14 services[0].real_servers[0].mac: invalid MAC address "02:00:00:00:01": expected six hex bytes like 02:00:00:00:01:11',
  ]);
});

test('loadConfig: a missing file is a ConfigError at line 0, and the path is kept', () => {
  const missing = path.join(os.tmpdir(), `lbd-no-such-${process.pid}.yaml`);
  assert.throws(
    () => loadConfig(missing),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(err.issues, [{ file: missing, line: 0, col: 0, path: '', message: 'cannot read config: ENOENT: no such file or directory' }]);
      assert.equal(err.message, `${missing}: cannot read config: ENOENT: no such file or directory`);
      return true;
    },
  );
  assert.throws(
    () => loadConfig(os.tmpdir()),
    (err: unknown) => err instanceof ConfigError && /EISDIR/.test(err.message),
  );
  const bad = path.join(FIXTURES, 'bad-scheduler.yaml');
  assert.throws(
    () => loadConfig(bad),
    (err: unknown) => err instanceof ConfigError && err.issues[0].file === bad,
  );
});

test('garbage never escapes as anything but ConfigError', () => {
  const inputs = [
    '\0\x01\x02',
    ':::',
    '{',
    'a: *nope',
    '!!binary AAAA',
    '[[[[[[[[[[',
    'interfaces: &a [*a]\nservices: *a\n',
    '? [a, b]\n: c\n',
    'interfaces:\n  capture: [eth0]\nservices:\n  - 42\n  - null\n  - name: {a: 1}\n    vip: true\n    port: .inf\n    real_servers: [1, [], ~, {address: ~}]\n',
    '%YAML 1.1\n---\ninterfaces: {capture: eth0}\nservices: [{name: a, vip: 10.0.10.100, port: 80, real_servers: [{address: 10.0.10.40, mac: 02:00:00:00:01:11}]}]\n',
    'x'.repeat(10000),
    '---\na: 1\n---\nb: 2\n',
  ];
  for (const text of inputs) {
    try {
      parseConfig(text, 'g.yaml');
    } catch (err) {
      assert.ok(err instanceof ConfigError, `${JSON.stringify(text.slice(0, 40))}: ${String(err)}`);
      for (const i of err.issues) {
        assert.ok(i.line >= 1 && i.col >= 1, `${JSON.stringify(text.slice(0, 40))}: ${formatConfigIssue(i)}`);
        assert.doesNotMatch(i.message, /\n|    at /);
      }
    }
  }
});

// --- did you mean -----------------------------------------------------------------------------

test('didYouMean and editDistance', () => {
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('shceduler', 'scheduler'), 1); // a swap is one edit
  assert.equal(editDistance('', 'abc'), 3);
  const schedulers = ['rr', 'wrr', 'lc', 'wlc', 'sed', 'nq', 'sh', 'fo', 'ovf'];
  assert.equal(didYouMean('wl', schedulers), 'wlc');
  assert.equal(didYouMean('WLC', schedulers), 'wlc');
  assert.equal(didYouMean('roundrobin', schedulers), undefined);
  assert.equal(didYouMean('shceduler', ['name', 'scheduler', 'real_servers']), 'scheduler');
  assert.equal(didYouMean('realservers', ['name', 'scheduler', 'real_servers']), 'real_servers');
  assert.equal(didYouMean('persist', ['persistence', 'persistence_netmask']), 'persistence');
  assert.equal(didYouMean('colour', ['name', 'vip', 'port']), undefined);
  assert.equal(didYouMean('', ['a']), undefined);
});

test('local_access: a boolean, default false', () => {
  const base = 'interfaces:\n  capture: eth0\nservices:\n  - name: web\n    vip: 10.0.10.100\n    port: 80\n    real_servers: [10.0.10.40]\n';
  assert.equal(parseConfig(base, 'lb.yaml').local_access, false);
  assert.equal(parseConfig(`local_access: true\n${base}`, 'lb.yaml').local_access, true);
  assert.throws(() => parseConfig(`local_access: sometimes\n${base}`, 'lb.yaml'), /lb\.yaml:1:15 local_access: /);
});
