import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLab, Lab } from '../../lab/lab';
import { curl, lbdConfig, sampleValue, startLbd } from '../helpers/lbd-process';

// The classic two-NIC LVS-DR shape: clients on eth0's network, real servers behind eth1 with the
// balancer as their gateway. lbd captures on eth0 and re-injects on eth1; replies are routed
// back to the client by the balancer's kernel without lbd ever seeing them.
let lab: Lab;
before(() => {
  lab = createLab({ shape: 'two-nic' });
});
after(() => lab?.teardown());

test('two NICs: capture on eth0, egress on eth1, replies routed by the kernel', async () => {
  assert.notEqual(lab.ifaces.balancerCapture, lab.ifaces.balancerEgress);
  const lbd = await startLbd(lab, lbdConfig(lab, { scheduler: 'rr' }));
  try {
    const bodies = [0, 1, 2, 3, 4, 5].map(() => curl(lab, `http://${lab.addr.vip}/`));
    assert.deepEqual(bodies, ['server40', 'server111', 'server40', 'server111', 'server40', 'server111']);
    // One scrape for all three, once the last connection's closing segments have arrived
    // (two scrapes in a row agree).
    let text = lbd.metrics();
    for (let prev = '', deadline = Date.now() + 5000; Date.now() < deadline;) {
      const counters = text
        .split('\n')
        .filter((l) => /^lbd_(received|forwarded|arp)_packets_total /.test(l))
        .join('\n');
      if (counters === prev) break;
      prev = counters;
      await new Promise((r) => setTimeout(r, 200));
      text = lbd.metrics();
    }
    const received = sampleValue(text, 'lbd_received_packets_total');
    const forwarded = sampleValue(text, 'lbd_forwarded_packets_total');
    const arp = sampleValue(text, 'lbd_arp_packets_total');
    // Every frame lbd received was a client's frame to the VIP (forwarded) or ARP: no reply
    // from a real server ever reached it.
    assert.equal(received, forwarded + arp, `received ${received}, forwarded ${forwarded}, arp ${arp}`);
    assert.ok(forwarded >= 6 * 5);
    const dropped = lbd
      .metrics()
      .split('\n')
      .filter((l) => l.startsWith('lbd_dropped_packets_total{') && !l.endsWith(' 0'));
    assert.deepEqual(dropped, []);
  } finally {
    const { code } = await lbd.stop();
    assert.equal(code, 0);
  }
});
