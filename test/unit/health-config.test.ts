import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, formatConfigIssue } from '../../src/errors';
import { formatConfig, parseConfig } from '../../src/config/load';
import { parseStatusSet, statusMatches } from '../../src/config/values';
import { effectiveCheck } from '../../src/health/manager';

function errorsOf(text: string): string[] {
  try {
    parseConfig(text, 'lb.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.issues.map(formatConfigIssue);
  }
  assert.fail(`expected a ConfigError for:\n${text}`);
}

/** One service; `svc` lines at service level (4 spaces), `rs` the real_servers list. */
function cfg(svc: string[] = [], rs: string[] = ['      - address: 10.0.10.40', '      - address: 10.0.10.111'], protocol = 'tcp'): string {
  return [
    'interfaces:',
    '  capture: eth0',
    'services:',
    '  - name: web',
    '    vip: 10.0.10.100',
    '    port: 80',
    `    protocol: ${protocol}`,
    ...svc.map((l) => `    ${l}`),
    '    real_servers:',
    ...rs,
    '',
  ].join('\n');
}

test('health_check: defaults are filled in (interval 2s, timeout 1s, rise 2, fall 2, path /, 200-299, service port)', () => {
  const c = parseConfig(cfg(['health_check:', '  type: http']), 'lb.yaml');
  assert.deepEqual(c.services[0].health_check, {
    type: 'http',
    interval: 2,
    timeout: 1,
    rise: 2,
    fall: 2,
    path: '/',
    expect_status: '200-299',
    port: 80,
  });
  // Policy keys stay absent when not written (their defaults live in HEALTH_DEFAULTS).
  assert.equal(c.services[0].on_down, undefined);
  assert.equal(c.services[0].quorum, undefined);
});

test('health_check: every key, durations, status sets, policy keys and a sorry server', () => {
  const c = parseConfig(
    cfg([
      'health_check:',
      '  type: http',
      '  interval: 500ms',
      '  timeout: 200ms',
      '  rise: 3',
      '  fall: 1',
      '  path: /healthz',
      '  host: www.example.com',
      '  expect_status: "200, 301-302"',
      '  expect_body: "^server\\\\d+"',
      '  port: 8080',
      'on_down: drop',
      'inhibit_on_failure: true',
      'quorum: 2',
      'sorry_server: { address: 10.0.10.112, mac: 02-00-00-00-01-12 }',
      'initial_state: down',
    ]),
    'lb.yaml',
  );
  const s = c.services[0];
  assert.deepEqual(s.health_check, {
    type: 'http',
    interval: 0.5,
    timeout: 0.2,
    rise: 3,
    fall: 1,
    path: '/healthz',
    host: 'www.example.com',
    expect_status: '200,301-302',
    expect_body: '^server\\d+',
    port: 8080,
  });
  assert.equal(s.on_down, 'drop');
  assert.equal(s.inhibit_on_failure, true);
  assert.equal(s.quorum, 2);
  assert.deepEqual(s.sorry_server, { address: '10.0.10.112', mac: '02:00:00:00:01:12' });
  assert.equal(s.initial_state, 'down');
  // lbd check's output parses back to the same config.
  assert.deepEqual(parseConfig(formatConfig(c), 'lb.yaml'), c);
});

test('a real server overrides part of the service check; effectiveCheck merges them', () => {
  const c = parseConfig(
    cfg(
      ['health_check:', '  type: http', '  interval: 1s', '  path: /ok'],
      ['      - address: 10.0.10.40', '      - address: 10.0.10.111', '        health_check: { type: vip, fall: 5 }'],
    ),
    'lb.yaml',
  );
  const [a, b] = c.services[0].real_servers;
  assert.equal(a.health_check, undefined);
  assert.deepEqual(b.health_check, { type: 'vip', fall: 5 });
  assert.equal(effectiveCheck(c.services[0], a)?.type, 'http');
  const eb = effectiveCheck(c.services[0], b)!;
  assert.equal(eb.type, 'vip');
  assert.equal(eb.fall, 5);
  assert.equal(eb.interval, 1);
  assert.deepEqual(parseConfig(formatConfig(c), 'lb.yaml'), c);
});

test('a real server may have a check of its own when the service has none (type required then)', () => {
  const ok = parseConfig(cfg([], ['      - address: 10.0.10.40', '        health_check: { type: tcp, interval: 300ms }']), 'lb.yaml');
  const eff = effectiveCheck(ok.services[0], ok.services[0].real_servers[0])!;
  assert.equal(eff.type, 'tcp');
  assert.equal(eff.interval, 0.3);
  assert.equal(eff.timeout, 0.3, 'default timeout is capped at the interval');
  assert.equal(eff.port, 80);
  assert.equal(effectiveCheck(ok.services[0], { address: '10.0.10.1', port: 80, weight: 1 }), undefined);
  assert.deepEqual(errorsOf(cfg([], ['      - address: 10.0.10.40', '        health_check: { fall: 3 }'])), [
    'lb.yaml:10:23 services[0].real_servers[0].health_check.type: missing required key "type" (tcp, http, vip) (the service has no health_check to inherit it from)',
  ]);
});

test('unknown keys and values get a line:col and a "did you mean"', () => {
  assert.deepEqual(errorsOf(cfg(['health_check:', '  type: htp', '  intreval: 2s'])), [
    'lb.yaml:9:13 services[0].health_check.type: unknown health check type "htp"; did you mean "http"? (tcp, http, vip)',
    'lb.yaml:10:7 services[0].health_check.intreval: unknown key "intreval"; did you mean "interval"?',
  ]);
  assert.deepEqual(errorsOf(cfg(['on_down: reshedule'])), [
    'lb.yaml:8:14 services[0].on_down: unknown on_down action "reshedule"; did you mean "reschedule"? (reschedule, drop, keep)',
  ]);
  assert.deepEqual(errorsOf(cfg(['on_dwn: drop'])), ['lb.yaml:8:5 services[0].on_dwn: unknown key "on_dwn"; did you mean "on_down"?']);
  assert.deepEqual(errorsOf(cfg(['initial_state: sideways'])), ['lb.yaml:8:20 services[0].initial_state: unknown initial state "sideways" (up, down)']);
});

test('invalid values: rise 0, bad durations, timeout > interval, bad status sets, bad regex, bad path', () => {
  const errs = errorsOf(
    cfg(['health_check:', '  type: http', '  rise: 0', '  interval: soon', '  expect_status: 200-199', '  expect_body: "(["', '  path: healthz']),
  );
  assert.equal(errs.length, 5, errs.join('\n'));
  assert.match(errs[0], /^lb\.yaml:10:13 services\[0\]\.health_check\.rise: expected an integer 1-1000, got 0$/);
  assert.match(errs[1], /^lb\.yaml:11:17 services\[0\]\.health_check\.interval: invalid duration "soon"/);
  assert.match(errs[2], /^lb\.yaml:12:22 services\[0\]\.health_check\.expect_status: expected HTTP status codes 100-599/);
  assert.match(errs[3], /^lb\.yaml:13:20 services\[0\]\.health_check\.expect_body: invalid regular expression "\(\["/);
  assert.match(errs[4], /^lb\.yaml:14:13 services\[0\]\.health_check\.path: expected an HTTP path starting with "\/", got "healthz"$/);
  assert.deepEqual(errorsOf(cfg(['health_check: { type: tcp, interval: 1s, timeout: 2s }'])), [
    'lb.yaml:8:55 services[0].health_check.timeout: timeout (2s) must not exceed interval (1s): a check must end before the next one starts',
  ]);
  assert.deepEqual(errorsOf(cfg(['health_check: { type: http, expect_status: 99 }'])), [
    'lb.yaml:8:48 services[0].health_check.expect_status: expected HTTP status codes 100-599: a code, a range or a comma list (e.g. 200, "200-299", "200,301-302"), got 99',
  ]);
});

test('http-only keys on a tcp check, a vip check on UDP or another port, booleans, quorum, sorry server', () => {
  assert.deepEqual(errorsOf(cfg(['health_check: { type: tcp, path: /x }'])), [
    'lb.yaml:8:32 services[0].health_check.path: "path" applies to http checks only (this check is type tcp)',
  ]);
  assert.deepEqual(errorsOf(cfg(['health_check: { type: vip }'], undefined, 'udp')), [
    'lb.yaml:8:27 services[0].health_check.type: the vip check probes with a TCP SYN: it needs a tcp service',
  ]);
  assert.deepEqual(errorsOf(cfg(['health_check: { type: vip, port: 81 }'])), [
    'lb.yaml:8:38 services[0].health_check.port: the vip check probes the VIP on the service port 80 (Direct Routing cannot change it), got 81',
  ]);
  assert.deepEqual(errorsOf(cfg(['inhibit_on_failure: yes please'])), [
    'lb.yaml:8:25 services[0].inhibit_on_failure: expected true or false, got "yes please"',
  ]);
  assert.deepEqual(errorsOf(cfg(['quorum: 0'])), ['lb.yaml:8:13 services[0].quorum: expected an integer 1-4096, got 0']);
  assert.deepEqual(errorsOf(cfg(['sorry_server: 10.0.10.100'])), [
    'lb.yaml:8:19 services[0].sorry_server.address: the sorry server address must not be the VIP 10.0.10.100 (list its own address; it carries the VIP on its loopback like a real server)',
  ]);
  assert.deepEqual(errorsOf(cfg(['sorry_server: { adress: 10.0.10.5 }'])), [
    'lb.yaml:8:19 services[0].sorry_server.address: missing required key "address" (the sorry server IPv4 address)',
    'lb.yaml:8:21 services[0].sorry_server.adress: unknown key "adress"; did you mean "address"?',
  ]);
  assert.deepEqual(parseConfig(cfg(['sorry_server: 10.0.10.5']), 'lb.yaml').services[0].sorry_server, { address: '10.0.10.5' });
});

test('expect_status sets: single codes, ranges, lists', () => {
  assert.equal(parseStatusSet('200'), '200');
  assert.equal(parseStatusSet('200-299'), '200-299');
  assert.equal(parseStatusSet(' 200 , 301-302'), '200,301-302');
  for (const bad of ['', '2xx', '99', '600', '300-200', '200-', 'abc', '200,,201']) assert.equal(parseStatusSet(bad), undefined, bad);
  assert.ok(statusMatches('200-299', 204));
  assert.ok(!statusMatches('200-299', 503));
  assert.ok(statusMatches('200,301-302', 302));
  assert.ok(!statusMatches('200,301-302', 300));
});
