import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import { importIpvsadm, ipvsadmOmissions, parseIpvsadmRules, toIpvsadmRules } from '../../src/control/ipvsadm';

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

test('scheduler flags (-b): sh and mh names and their numbers become the config keys, and save writes them back', () => {
  const rules = [
    '-A -t 10.0.10.30:80 -s mh -b mh-fallback,mh-port',
    '-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 1',
    '-A -u 10.0.10.30:53 -s sh --sched-flags=sh-port',
    '-a -u 10.0.10.30:53 -r 10.0.10.40:53 -g -w 1',
    // flag-1 and flag-2 are ipvsadm's numbers of the same two flags.
    '-A -t 10.0.10.31:443 -s mh -p 600 -b flag-2',
    '-a -t 10.0.10.31:443 -r 10.0.10.40:443 -g -w 1',
    '-A -t 10.0.10.32:443 -s sh -b flag-1,flag-2',
    '-a -t 10.0.10.32:443 -r 10.0.10.40:443 -g -w 1',
    '',
  ].join('\n');
  const { yaml, warnings } = importIpvsadm(rules, { interface: 'eth0' });
  assert.deepEqual(warnings, []);
  assert.match(yaml, /^ {4}scheduler: mh\n {4}mh_fallback: true\n {4}mh_port: true\n/m);
  const cfg = parseConfig(yaml, 'imported.yaml');
  const keys = (i: number) => {
    const s = cfg.services[i];
    return { scheduler: s.scheduler, mh_fallback: s.mh_fallback, mh_port: s.mh_port, sh_fallback: s.sh_fallback, sh_port: s.sh_port };
  };
  assert.deepEqual(keys(0), { scheduler: 'mh', mh_fallback: true, mh_port: true, sh_fallback: undefined, sh_port: undefined });
  assert.deepEqual(keys(1), { scheduler: 'sh', mh_fallback: undefined, mh_port: undefined, sh_fallback: undefined, sh_port: true });
  assert.deepEqual(keys(2), { scheduler: 'mh', mh_fallback: undefined, mh_port: true, sh_fallback: undefined, sh_port: undefined });
  assert.deepEqual(keys(3), { scheduler: 'sh', mh_fallback: undefined, mh_port: undefined, sh_fallback: true, sh_port: true });
  // Saved as ipvsadm -S writes them: the scheduler's own names, after -p.
  const saved = toIpvsadmRules(cfg);
  assert.equal(
    saved
      .split('\n')
      .filter((l) => l.startsWith('-A'))
      .join('\n'),
    [
      '-A -t 10.0.10.30:80 -s mh -b mh-fallback,mh-port',
      '-A -u 10.0.10.30:53 -s sh -b sh-port',
      '-A -t 10.0.10.31:443 -s mh -p 600 -b mh-port',
      '-A -t 10.0.10.32:443 -s sh -b sh-fallback,sh-port',
    ].join('\n'),
  );
  // Round trip: the saved rules import to the same config, and save to the same rules.
  const again = parseConfig(importIpvsadm(saved, { interface: 'eth0' }).yaml, 'imported.yaml');
  assert.deepEqual(again, cfg);
  assert.equal(toIpvsadmRules(again), saved);
  // Without flags, no -b.
  assert.doesNotMatch(toIpvsadmRules(parseConfig(importIpvsadm(SEED, { interface: 'eth0' }).yaml, 'x.yaml')), /-b/);
});

test('scheduler flags (-b): -E replaces them, a new scheduler drops them', () => {
  const base = '-A -t 10.0.10.30:80 -s sh -b sh-fallback,sh-port\n-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 1\n';
  assert.deepEqual(parseIpvsadmRules(base + '-E -t 10.0.10.30:80 -b sh-port\n').services[0].flags, { port: true });
  assert.deepEqual(parseIpvsadmRules(base + '-E -t 10.0.10.30:80 -p 60\n').services[0].flags, { fallback: true, port: true });
  const moved = parseIpvsadmRules(base + '-E -t 10.0.10.30:80 -s mh\n').services[0];
  assert.equal(moved.scheduler, 'mh');
  assert.equal(moved.flags, undefined);
});

test("scheduler flags (-b) that mean nothing are ignored with a warning; unknown and other schedulers' flags are refused", () => {
  const { yaml, warnings } = importIpvsadm(
    [
      '-A -t 10.0.10.30:80 -s wlc -b flag-1',
      '-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 1',
      '-A -t 10.0.10.31:80 -s sh -b sh-port,flag-3',
      '-a -t 10.0.10.31:80 -r 10.0.10.40:80 -g -w 1',
      '',
    ].join('\n'),
    { interface: 'eth0' },
  );
  assert.deepEqual(warnings, [
    'rules:1: scheduler flag flag-1 (-b flag-1) means nothing for scheduler wlc (only sh and mh take flags): ignored',
    'rules:3: scheduler flag flag-3 (-b sh-port,flag-3) means nothing for scheduler sh: ignored',
  ]);
  const cfg = parseConfig(yaml, 'x.yaml');
  assert.equal(cfg.services[0].sh_fallback, undefined);
  assert.equal(cfg.services[1].sh_port, true);
  assert.equal(toIpvsadmRules(cfg).split('\n')[0], '-A -t 10.0.10.30:80 -s wlc');

  const bad = [
    '-A -t 10.0.10.30:80 -s mh -b sh-port',
    '-A -t 10.0.10.31:80 -b mh-fallback',
    '-A -t 10.0.10.32:80 -s sh -b sh-fallbak',
    '-A -t 10.0.10.33:80 -s mh -b mh-port,sticky',
  ].join('\n');
  assert.throws(
    () => parseIpvsadmRules(bad),
    (e: Error) => {
      const lines = e.message.split('\n');
      assert.equal(
        lines[0],
        'rules:1: -b sh-port: scheduler flag "sh-port" is for scheduler sh, not mh (mh takes mh-fallback, mh-port (or their numbers flag-1, flag-2))',
      );
      // No -s: ipvsadm's default scheduler, wlc, takes no flags.
      assert.match(
        lines[1],
        /^rules:2: -b mh-fallback: scheduler flag "mh-fallback" is for scheduler mh, not wlc \(wlc takes none: only sh and mh take scheduler flags\)$/,
      );
      assert.match(
        lines[2],
        /^rules:3: -b sh-fallbak: unknown scheduler flag "sh-fallbak"; did you mean "sh-fallback"\? \(sh takes sh-fallback, sh-port .*; -b knows sh-fallback, sh-port, mh-fallback, mh-port, flag-1, flag-2, flag-3\)$/,
      );
      assert.match(lines[3], /^rules:4: -b mh-port,sticky: unknown scheduler flag "sticky"/);
      return true;
    },
  );
});

test('save --ipvsadm: what the rules cannot say (an mh table size, on_miss: hash) is listed apart', () => {
  const cfg = parseConfig(
    importIpvsadm('-A -t 10.0.10.30:80 -s mh -b mh-port\n-a -t 10.0.10.30:80 -r 10.0.10.40:80 -g -w 1\n', { interface: 'eth0' }).yaml,
    'x.yaml',
  );
  assert.deepEqual(ipvsadmOmissions(cfg), []);
  const s = cfg.services[0];
  const tuned = { services: [{ ...s, mh_table_size: 4093, on_miss: 'hash' as const }] };
  assert.equal(toIpvsadmRules(tuned), toIpvsadmRules(cfg));
  assert.deepEqual(ipvsadmOmissions(tuned), [
    "service tcp-10.0.10.30-80 (10.0.10.30:80/tcp): mh_table_size 4093 is not in the rules: IPVS's Maglev table size is chosen when the kernel is built (CONFIG_IP_VS_MH_TAB_INDEX)",
    "service tcp-10.0.10.30-80 (10.0.10.30:80/tcp): on_miss: hash is not in the rules: IPVS's equivalent is the sysctl net.ipv4.vs.sloppy_tcp=1 (for every service)",
  ]);
  // The default size says nothing.
  assert.deepEqual(ipvsadmOmissions({ services: [{ ...s, mh_table_size: 65537 }] }), []);
});
