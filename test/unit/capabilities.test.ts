/**
 * lbd as an unprivileged user with CAP_NET_RAW and CAP_NET_ADMIN: the check at start reads the
 * effective set (CapEff of /proc/self/status) and names what is missing, why and how to give it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CapabilityError, LbdError } from '../../src/errors';
import {
  CAP_NET_ADMIN,
  CAP_NET_RAW,
  NEEDED_CAPABILITIES,
  capEffOf,
  capabilityMessage,
  checkCapabilities,
  missingCapabilities,
  parseCapMask,
  readCapEff,
} from '../../src/host/capabilities';

const names = (hex: string | undefined) => missingCapabilities(NEEDED_CAPABILITIES, hex).map((c) => c.name);

test('the needed capabilities are CAP_NET_RAW (13) and CAP_NET_ADMIN (12)', () => {
  assert.deepEqual(
    NEEDED_CAPABILITIES.map((c) => [c.name, c.bit]),
    [
      ['CAP_NET_RAW', 13],
      ['CAP_NET_ADMIN', 12],
    ],
  );
});

test('CapEff masks as /proc/PID/status shows them', () => {
  assert.deepEqual(names('000001ffffffffff'), [], 'root: every capability');
  assert.deepEqual(names('000001fffeffffff'), [], 'root without CAP_SYS_RESOURCE (a container)');
  assert.deepEqual(names('0000000000003000'), [], 'NET_ADMIN | NET_RAW: AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN');
  assert.deepEqual(names('0000000000002000'), ['CAP_NET_ADMIN'], 'NET_RAW only');
  assert.deepEqual(names('0000000000001000'), ['CAP_NET_RAW'], 'NET_ADMIN only');
  assert.deepEqual(names('0000000000000000'), ['CAP_NET_RAW', 'CAP_NET_ADMIN'], 'an unprivileged user');
  assert.deepEqual(names('00000000a80425fb'), ['CAP_NET_ADMIN'], "docker's default set: NET_RAW, not NET_ADMIN");
  assert.deepEqual(names('00000000a80435fb'), [], "docker's default set with --cap-add NET_ADMIN");
  assert.equal(parseCapMask('000001ffffffffff'), (1n << 41n) - 1n);
  assert.equal(parseCapMask('ffffffffffffffffff'), (1n << 72n) - 1n, 'wider than 64 bits: a BigInt');
  assert.throws(() => parseCapMask('xyz'), /not a capability mask/);
  assert.deepEqual(names(undefined), [], 'no /proc: lbd cannot tell, and reports nothing missing');
});

test('CapEff is read from the status text', () => {
  const status = 'Name:\tlbd\nUmask:\t0022\nCapInh:\t0000000000000000\nCapPrm:\t0000000000003000\nCapEff:\t0000000000003000\nCapBnd:\t000001ffffffffff\n';
  assert.equal(capEffOf(status), '0000000000003000');
  assert.equal(capEffOf('Name:\tlbd\n'), undefined);
  assert.equal(readCapEff('/nonexistent/status'), undefined);
  assert.match(readCapEff() ?? '', /^[0-9a-f]{16}$/, "this process's mask");
});

test('the error names each missing capability, why lbd needs it and how to give it', () => {
  let caught: unknown;
  try {
    checkCapabilities('0000000000002000');
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof CapabilityError && caught instanceof LbdError && caught.code === 'E_CAPABILITY', String(caught));
  const m = caught.message;
  assert.deepEqual(caught.missing, ['CAP_NET_ADMIN']);
  assert.match(m, /lacks the capability CAP_NET_ADMIN:/);
  assert.doesNotMatch(m, /CAP_NET_RAW:/, 'only the missing one is explained');
  assert.match(m, /nftables guard table/);
  assert.match(m, /as root/);
  assert.match(m, /AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN/);
  assert.match(m, /setpriv .*--ambient-caps \+net_raw,\+net_admin/);
  assert.match(m, /capsh /);
  const both = capabilityMessage([CAP_NET_RAW, CAP_NET_ADMIN], 1000);
  assert.match(both, /lacks the capabilities CAP_NET_RAW and CAP_NET_ADMIN:/);
  assert.match(both, /CAP_NET_RAW: AF_PACKET/);
  assert.match(both, /CAP_NET_ADMIN: the nftables guard table, the routes and TAP interfaces/);
  assert.doesNotMatch(both, /runs as root/);
  assert.match(capabilityMessage([CAP_NET_RAW], 0), /\nlbd runs as root here, but without it: a container/, 'root in a container that dropped it');
  assert.doesNotThrow(() => checkCapabilities('000001ffffffffff'));
  assert.doesNotThrow(() => checkCapabilities('0000000000003000'));
});

test("this process's check passes when it runs as root with its capabilities", (t) => {
  if (process.geteuid?.() !== 0) return t.skip('not root');
  const eff = readCapEff();
  if (eff !== undefined && missingCapabilities(NEEDED_CAPABILITIES, eff).length > 0) return t.skip(`root without the capabilities (CapEff ${eff})`);
  assert.doesNotThrow(() => checkCapabilities());
  assert.deepEqual(missingCapabilities(), []);
  assert.ok([CAP_NET_RAW, CAP_NET_ADMIN].every((c) => (parseCapMask(readCapEff()!) >> BigInt(c.bit)) & 1n));
});
