import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { LinkWatch, linkState, pollStats } from '../../src/control/link-watch';
import { loadNative } from '../../src/dataplane/binding';
import { MemoryPort, RingPort } from '../../src/dataplane/io';

// The link watch reads sysfs; lo is the one interface every network namespace has.
const LO = '/sys/class/net/lo';
const loIndex = existsSync(LO) ? Number(readFileSync(`${LO}/ifindex`, 'utf8')) : 0;
const loMac = Buffer.alloc(6);

test('linkState: lo is up (operstate "unknown" counts as up); another ifindex or no such interface is gone', { skip: !loIndex && 'no sysfs' }, () => {
  assert.equal(linkState('lo', loIndex), 'up');
  assert.equal(linkState('lo', loIndex + 1000), 'gone', 'same name, another interface: the sockets are bound to the old one');
  assert.equal(linkState('lbd-no-such-if', 1), 'gone');
});

test('LinkWatch.open: only on an interface sysfs shows with the MAC its port opened; check() reports changes only', { skip: !loIndex && 'no sysfs' }, () => {
  const w = LinkWatch.open('lo', loMac);
  assert.ok(w);
  assert.equal(w.ifindex, loIndex);
  assert.equal(w.state, 'up');
  assert.equal(w.check(), null, 'no change');
  // Another namespace's sysfs (a MAC the port did not see) or no such interface: no watch, rather than a false "gone".
  assert.equal(LinkWatch.open('lo', Buffer.from([2, 0, 0, 0, 0, 1])), null);
  assert.equal(LinkWatch.open('lbd-no-such-if', loMac), null);
});

test('pollStats: null for a port without a capture ring; a RingPort polls until closed (root)', (t) => {
  assert.equal(pollStats(new MemoryPort('m0', Buffer.alloc(6))), null);
  if (!loadNative().ok) return t.skip('no native binding');
  if (process.getuid?.() !== 0) return t.skip('AF_PACKET needs root (CAP_NET_RAW)');
  const port = new RingPort('lo', 'ether proto 0x88b5', 1 << 20);
  try {
    port.start(() => undefined);
    assert.deepEqual(pollStats(port), { pollErrors: 0, polling: true });
  } finally {
    port.close();
  }
  assert.deepEqual(pollStats(port), { pollErrors: 0, polling: false }, 'what the daemon takes for a capture lost');
});
