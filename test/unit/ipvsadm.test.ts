import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import { importIpvsadm, parseIpvsadmRules, toIpvsadmRules } from '../../src/control/ipvsadm';

const SEED = ['-A -t 10.0.10.30:80 -s wlc', '-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 1', '-a -t 10.0.10.30:80 -r 10.0.10.111:80 -g -w 1', ''].join('\n');

test("the seed's rules → lb.yaml that lbd check accepts → the same rules back", () => {
  const { yaml, warnings } = importIpvsadm(SEED, { interface: 'eth0' });
  assert.deepEqual(warnings, []);
  const cfg = parseConfig(yaml, 'imported.yaml');
  assert.equal(cfg.interfaces.capture, 'eth0');
  assert.deepEqual(cfg.services, [
    {
      name: 'tcp-10.0.10.30-80',
      vip: '10.0.10.30',
      port: 80,
      protocol: 'tcp',
      scheduler: 'wlc',
      persistence: 0,
      persistence_netmask: '255.255.255.255',
      real_servers: [
        { address: '10.0.10.40', port: 80, weight: 1 },
        { address: '10.0.10.111', port: 80, weight: 1 },
      ],
    },
  ]);
  assert.equal(toIpvsadmRules(cfg), SEED);
});

test('UDP, persistence with a netmask, weights, long options and an ipvsadm prefix', () => {
  const rules = `
# ipvsadm-save -n, hand-edited
ipvsadm --add-service --udp-service 192.0.2.53:53 --scheduler sh --persistent 600 --netmask 255.255.255.0
ipvsadm -a -u 192.0.2.53:53 -r 192.0.2.10:53 -g -w 3
-a --udp-service=192.0.2.53:53 --real-server=192.0.2.11 --gatewaying --weight=0
-A -t 192.0.2.80:http -s rr -p
-a -t 192.0.2.80:80 -r 192.0.2.10:80
-e -t 192.0.2.80:80 -r 192.0.2.10:80 -w 4
`;
  const { services } = parseIpvsadmRules(rules);
  assert.deepEqual(services, [
    {
      protocol: 'udp',
      vip: '192.0.2.53',
      port: 53,
      scheduler: 'sh',
      persistence: 600,
      netmask: '255.255.255.0',
      reals: [
        { address: '192.0.2.10', port: 53, weight: 3 },
        { address: '192.0.2.11', port: 53, weight: 0 },
      ],
    },
    {
      protocol: 'tcp',
      vip: '192.0.2.80',
      port: 80,
      scheduler: 'rr',
      persistence: 300,
      netmask: '255.255.255.255',
      reals: [{ address: '192.0.2.10', port: 80, weight: 4 }],
    },
  ]);
  const { yaml } = importIpvsadm(rules, { interface: 'eth1' });
  const cfg = parseConfig(yaml, 'x.yaml');
  assert.equal(
    toIpvsadmRules(cfg),
    [
      '-A -u 192.0.2.53:53 -s sh -p 600 -M 255.255.255.0',
      '-a -u 192.0.2.53:53 -r 192.0.2.10:53 -g -w 3',
      '-a -u 192.0.2.53:53 -r 192.0.2.11:53 -g -w 0',
      '-A -t 192.0.2.80:80 -s rr -p 300',
      '-a -t 192.0.2.80:80 -r 192.0.2.10:80 -g -w 4',
      '',
    ].join('\n'),
  );
  // Round trip: import of the saved rules gives the same config.
  assert.deepEqual(parseConfig(importIpvsadm(toIpvsadmRules(cfg), { interface: 'eth1' }).yaml, 'x.yaml'), cfg);
});

test('NAT, tunnel, fwmark, hostnames and unknown schedulers are refused with the reason and line', () => {
  const bad = [
    '-A -t 10.0.10.30:80 -s wlc',
    '-a -t 10.0.10.30:80 -r 10.0.10.40:80 -m -w 1',
    '-a -t 10.0.10.30:80 -r 10.0.10.41:80 -i -w 1',
    '-A -f 7 -s rr',
    '-A -t lb.example.com:http -s rr',
    '-A -t 10.0.10.31:80 -s lblc',
    '-a -t 10.0.10.30:80 -r 10.0.10.111:80 -g -w 1',
  ].join('\n');
  assert.throws(
    () => parseIpvsadmRules(bad),
    (e: Error) => {
      const lines = e.message.split('\n');
      assert.match(lines[0], /^rules:2: 10\.0\.10\.40: masquerading \(-m, NAT\) is not supported: lbd does Direct Routing only \(-g\)/);
      assert.match(lines[1], /^rules:3: 10\.0\.10\.41: tunneling \(-i, IPIP\) is not supported/);
      assert.match(lines[2], /^rules:4: firewall-mark services \(-f\) are not supported/);
      assert.match(lines[3], /^rules:5: .*not an IPv4 address \(feed numeric rules: ipvsadm-save -n/);
      assert.match(lines[4], /^rules:6: scheduler "lblc" is not supported by lbd/);
      return true;
    },
  );
  assert.throws(() => parseIpvsadmRules('-A -t 10.0.10.30:80 -s wlc\n'), /has no real servers/);
  assert.throws(() => parseIpvsadmRules(''), /no ipvsadm rules found/);
  assert.throws(() => parseIpvsadmRules('-L -n\n'), /unknown ipvsadm option "-L"/);
});

test('warnings: placeholder interface, port differences', () => {
  const { yaml, warnings } = importIpvsadm('-A -t 10.0.10.30:80 -s wlc\n-a -t 10.0.10.30:80 -r 10.0.10.40:8080 -g -w 1\n');
  assert.match(yaml, /^ {2}capture: eth0 {2}# FILL IN/m);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0], /placeholder/);
  assert.match(warnings[1], /rules:2: real server port 8080 differs from the service port 80/);
  parseConfig(yaml, 'x.yaml');
});

test('connection thresholds (-x/-y, --u-threshold/--l-threshold) are imported, edited by -e and saved back', () => {
  const rules = [
    '-A -t 10.0.10.30:80 -s wlc',
    '-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 1 -x 100 -y 50',
    '-a -t 10.0.10.30:80 -r 10.0.10.111:80 -g -w 1 --u-threshold 10',
    '-e -t 10.0.10.30:80 -r 10.0.10.111:80 -g -w 2 -x 20',
    '',
  ].join('\n');
  const { yaml, warnings } = importIpvsadm(rules, { interface: 'eth0' });
  assert.deepEqual(warnings, []);
  const cfg = parseConfig(yaml, 'imported.yaml');
  assert.deepEqual(cfg.services[0].real_servers, [
    { address: '10.0.10.40', port: 80, weight: 1, u_threshold: 100, l_threshold: 50 },
    { address: '10.0.10.111', port: 80, weight: 2, u_threshold: 20 },
  ]);
  assert.equal(
    toIpvsadmRules(cfg),
    ['-A -t 10.0.10.30:80 -s wlc', '-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 1 -x 100 -y 50', '-a -t 10.0.10.30:80 -r 10.0.10.111:80 -g -w 2 -x 20', ''].join(
      '\n',
    ),
  );
  assert.throws(() => importIpvsadm('-A -t 10.0.10.30:80 -s wlc\n-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -x many\n'), /rules:2: invalid u-threshold "many"/);
  // Refused as the kernel refuses them, never written as a config lbd check would reject.
  assert.throws(() => importIpvsadm('-A -t 10.0.10.30:80 -s wlc\n-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -x 10 -y 20\n'), /rules:2: -y 20 is above -x 10/);
  assert.throws(() => importIpvsadm('-A -t 10.0.10.30:80 -s wlc\n-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -y 5\n'), /rules:2: -y 5 without -x/);
  // -e replaces like ipvsadm: what the line leaves out is the default (weight 1, no thresholds).
  const edited = parseIpvsadmRules(
    '-A -t 10.0.10.30:80 -s wlc\n-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 5 -x 10 -y 4\n-e -t 10.0.10.30:80 -r 10.0.10.40:80 -g\n',
  );
  assert.deepEqual(edited.services[0].reals, [{ address: '10.0.10.40', port: 80, weight: 1 }]);
});
