import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  NETWORKD_FILE,
  SYSCTL_FILE,
  applySteps,
  formatScript,
  ifupdownFile,
  loLabel,
  networkdContent,
  networkdVips,
  parseRsArgs,
  plan,
  readState,
  realserverSetupMain,
  type RsOptions,
  type RsSystem,
} from '../../src/cli/realserver-setup';

const opts = (o: Partial<RsOptions> = {}): RsOptions => ({ vips: ['10.0.10.100'], apply: false, undo: false, method: 'lo', persist: false, devs: [], ...o });

/** A fake real server: lo addresses, iptables rules and files in memory; commands recorded and simulated. */
class FakeRs implements RsSystem {
  lo = ['127.0.0.1'];
  rules = new Set<string>();
  files = new Map<string, string>();
  sysctls = new Map<string, string>();
  ran: string[] = [];
  exec(cmd: string[]) {
    this.ran.push(cmd.join(' '));
    if (cmd[0] === 'ip' && cmd[2] === 'add') this.lo.push(cmd[3].split('/')[0]);
    if (cmd[0] === 'ip' && cmd[2] === 'del') this.lo = this.lo.filter((a) => a !== cmd[3].split('/')[0]);
    if (cmd[0] === 'sysctl') for (const kv of cmd.slice(3)) this.sysctls.set(kv.split('=')[0], kv.split('=')[1]);
    if (cmd[0] === 'iptables' && cmd[3] === '-A') this.rules.add(cmd[6]);
    if (cmd[0] === 'iptables' && cmd[3] === '-D') this.rules.delete(cmd[6]);
  }
  loAddresses() {
    return [...this.lo];
  }
  redirected(vip: string) {
    return this.rules.has(`${vip}/32`);
  }
  readFile(p: string) {
    return this.files.get(p);
  }
  writeFile(p: string, c: string) {
    this.files.set(p, c);
  }
  removeFile(p: string) {
    this.files.delete(p);
  }
}

const apply = (o: RsOptions, sys: FakeRs) => applySteps(plan(o, readState(o, sys)), sys, () => {});

test('print mode: VIP on lo and the ARP sysctls, as a shell script', () => {
  const s = formatScript(opts(), plan(opts(), null));
  assert.match(s, /^#!\/bin\/sh\n/);
  assert.match(s, /^ip addr add 10\.0\.10\.100\/32 dev lo$/m);
  assert.match(
    s,
    /^sysctl -q -w net\.ipv4\.conf\.all\.arp_ignore=1 net\.ipv4\.conf\.all\.arp_announce=2 net\.ipv4\.conf\.lo\.arp_ignore=1 net\.ipv4\.conf\.lo\.arp_announce=2$/m,
  );
  assert.doesNotMatch(s, /sysctl\.d/, 'nothing persisted without --persist');
  const withDev = formatScript(opts({ devs: ['eth0'] }), plan(opts({ devs: ['eth0'] }), null));
  assert.match(withDev, /net\.ipv4\.conf\.eth0\.arp_announce=2/);
});

test('--persist writes the sysctl.d file and a networkd or ifupdown snippet', () => {
  const nd = formatScript(opts({ persist: true, persistWith: 'networkd' }), plan(opts({ persist: true, persistWith: 'networkd' }), null));
  assert.match(nd, new RegExp(`cat > ${SYSCTL_FILE} <<'EOF'\n(#.*\n)+net\\.ipv4\\.conf\\.all\\.arp_ignore = 1\n`));
  assert.match(nd, /\[Match\]\nName=lo\n\n\[Network\]\nKeepConfiguration=yes\nAddress=127\.0\.0\.1\/8\nAddress=10\.0\.10\.100\/32\nEOF/);
  const o = opts({ persist: true, persistWith: 'ifupdown' });
  const ifu = formatScript(o, plan(o, null));
  assert.equal(loLabel('10.0.10.100'), 'lo:0a000a64');
  assert.ok(ifu.includes(`cat > ${ifupdownFile('10.0.10.100')} <<'EOF'`));
  assert.match(ifu, /auto lo:0a000a64\niface lo:0a000a64 inet static\n {4}address 10\.0\.10\.100\/32/);
});

test('the redirect method: one iptables rule per VIP, no sysctl', () => {
  const o = opts({ method: 'redirect', vips: ['10.0.10.100', '10.0.10.101'] });
  const s = formatScript(o, plan(o, null));
  assert.match(s, /^iptables -t nat -A PREROUTING -d 10\.0\.10\.100\/32 -j REDIRECT$/m);
  assert.match(s, /^iptables -t nat -A PREROUTING -d 10\.0\.10\.101\/32 -j REDIRECT$/m);
  assert.doesNotMatch(s, /sysctl|ip addr/);
  const u = formatScript({ ...o, undo: true }, plan({ ...o, undo: true }, null));
  assert.match(u, /^iptables -t nat -D PREROUTING -d 10\.0\.10\.100\/32 -j REDIRECT$/m);
});

test('--apply is idempotent, and --undo reverses it completely', () => {
  const sys = new FakeRs();
  const o = opts({ apply: true, persist: true, persistWith: 'networkd' });
  apply(o, sys);
  assert.deepEqual(sys.lo, ['127.0.0.1', '10.0.10.100']);
  assert.equal(sys.sysctls.get('net.ipv4.conf.all.arp_ignore'), '1');
  assert.equal(sys.sysctls.get('net.ipv4.conf.lo.arp_announce'), '2');
  assert.ok(sys.files.has(SYSCTL_FILE));
  assert.deepEqual(networkdVips(sys.files.get(NETWORKD_FILE)), ['10.0.10.100']);

  sys.ran = [];
  apply(o, sys);
  assert.ok(!sys.ran.some((c) => c.startsWith('ip addr add')), 'the VIP is not added twice');
  assert.deepEqual(sys.lo, ['127.0.0.1', '10.0.10.100']);

  // A second VIP joins the networkd file.
  apply(opts({ apply: true, persist: true, persistWith: 'networkd', vips: ['10.0.10.101'] }), sys);
  assert.deepEqual(networkdVips(sys.files.get(NETWORKD_FILE)), ['10.0.10.100', '10.0.10.101']);

  // Undo of one VIP keeps the sysctls (another VIP is on lo) and the other VIP's persistence.
  apply(opts({ apply: true, undo: true }), sys);
  assert.deepEqual(sys.lo, ['127.0.0.1', '10.0.10.101']);
  assert.equal(sys.sysctls.get('net.ipv4.conf.all.arp_ignore'), '1');
  assert.deepEqual(networkdVips(sys.files.get(NETWORKD_FILE)), ['10.0.10.101']);
  assert.ok(sys.files.has(SYSCTL_FILE));

  // Undo of the last one: defaults back, files gone.
  apply(opts({ apply: true, undo: true, vips: ['10.0.10.101'] }), sys);
  assert.deepEqual(sys.lo, ['127.0.0.1']);
  assert.equal(sys.sysctls.get('net.ipv4.conf.all.arp_ignore'), '0');
  assert.equal(sys.sysctls.get('net.ipv4.conf.all.arp_announce'), '0');
  assert.equal(sys.files.size, 0);

  // Undo again: nothing to remove, no failing command.
  sys.ran = [];
  apply(opts({ apply: true, undo: true }), sys);
  assert.ok(!sys.ran.some((c) => c.startsWith('ip addr del')));
});

test('redirect --apply / --undo', () => {
  const sys = new FakeRs();
  const o = opts({ apply: true, method: 'redirect' });
  apply(o, sys);
  apply(o, sys);
  assert.deepEqual(sys.ran, ['iptables -t nat -A PREROUTING -d 10.0.10.100/32 -j REDIRECT']);
  apply({ ...o, undo: true }, sys);
  assert.equal(sys.rules.size, 0);
  assert.deepEqual(sys.lo, ['127.0.0.1'], 'the VIP never becomes local');
});

test('networkd file round trip', () => {
  assert.deepEqual(networkdVips(networkdContent(['10.0.0.1', '10.0.0.2'])), ['10.0.0.1', '10.0.0.2']);
  assert.deepEqual(networkdVips(undefined), []);
});

test('argument parsing', async () => {
  assert.deepEqual(
    parseRsArgs(['--vip', '10.0.10.100,10.0.10.101', '--method=redirect', '--apply']),
    opts({ vips: ['10.0.10.100', '10.0.10.101'], method: 'redirect', apply: true }),
  );
  assert.throws(() => parseRsArgs([]), /--vip VIP is required/);
  assert.throws(() => parseRsArgs(['--vip', '10.0.10.300']), /not an IPv4 address/);
  assert.throws(() => parseRsArgs(['--vip', '10.0.10.1', '--method', 'tun']), /lo or redirect/);
  assert.equal(parseRsArgs(['--help']), 'help');
  const out: string[] = [];
  const io = { out: (s: string) => void out.push(s), err: (s: string) => void out.push(s), stdin: async () => '' };
  {
    assert.equal(await realserverSetupMain(['--vip', '10.0.10.100'], io, new FakeRs()), 0);
    assert.match(out.join(''), /ip addr add 10\.0\.10\.100\/32 dev lo/);
    assert.equal(await realserverSetupMain(['--vip'], io, new FakeRs()), 2);
    const sys = new FakeRs();
    assert.equal(await realserverSetupMain(['--vip', '10.0.10.100', '--apply'], io, sys), 0);
    assert.deepEqual(sys.lo, ['127.0.0.1', '10.0.10.100']);
  }
});
