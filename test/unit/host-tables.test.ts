import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HostGuard } from '../../src/host/guard';
import { instanceNames } from '../../src/host/instance';
import { LeasedTable, tableState } from '../../src/host/leased-table';
import type { NftObject } from '../../src/host/nftables';
import { ownerAlive, ownerTag, parseOwnerTag, processStart, selfOwner } from '../../src/host/owner';

test('instance names derive from the capture interface: nft-safe table names, interface names of at most 15 characters', () => {
  assert.deepEqual(instanceNames('eth0'), {
    capture: 'eth0',
    guardTable: 'lbd_eth0',
    probeTable: 'lbd_eth0_probe',
    localInterface: 'lbd-eth0',
    announceInterface: 'lbdv-eth0',
    stateFile: '/run/lbd/lbd_eth0.state',
  });
  const vlan = instanceNames('enp3s0f1.100');
  assert.match(vlan.guardTable, /^lbd_enp3s0f1_100_[0-9a-f]{4}$/);
  assert.notEqual(instanceNames('enp3s0f1_100').guardTable, vlan.guardTable, 'a name the slug changed does not meet the one it looks like');
  assert.ok(vlan.localInterface.length <= 15, vlan.localInterface);
  assert.match(vlan.localInterface, /^lbd-enp3s0-[0-9a-f]{4}$/);
  assert.notEqual(instanceNames('enp3s0f1.101').localInterface, vlan.localInterface, 'two long names that share a start still differ');
  assert.match(vlan.announceInterface, /^lbdv-enp3s-[0-9a-f]{4}$/);
});

test('owner tags: this process is alive, a PID with another start time (a reused PID) or a PID that does not exist is not', () => {
  const me = selfOwner();
  assert.equal(me.pid, process.pid);
  assert.ok(me.start > 0);
  assert.deepEqual(parseOwnerTag(ownerTag(me)), me);
  assert.equal(parseOwnerTag('someone else'), null);
  assert.equal(parseOwnerTag(undefined), null);
  assert.ok(ownerAlive(me));
  assert.ok(!ownerAlive({ pid: me.pid, start: me.start + 1 }));
  assert.ok(!ownerAlive({ pid: 0x3fffffff, start: 1 }));
  assert.equal(processStart(0x3fffffff), null);
});

const owner = { pid: 4242, start: 777 };
const guard = () => new HostGuard('lbd_eth0', 'eth0', owner, 15);

test('the guard table: one transaction, owner-tagged, the services as leased set elements', () => {
  const t = guard().table; // (scripts only: a unit test runs no nft)
  (t as unknown as { elements: string[] }).elements = [HostGuard.element({ vip: '10.0.0.1', port: 80, protocol: 'tcp' }), '10.0.0.2 . udp . 53'];
  const create = t.script('create');
  assert.match(create, /^create table netdev lbd_eth0 \{ comment "lbd pid 4242 start 777"; \}\ntable netdev lbd_eth0 \{\n/);
  assert.match(
    create,
    /set services \{ type ipv4_addr \. inet_proto \. inet_service; flags timeout; comment "lbd pid 4242 start 777"; elements = \{ 10\.0\.0\.1 \. tcp \. 80 timeout 15s, 10\.0\.0\.2 \. udp \. 53 timeout 15s \}; \}/,
  );
  assert.match(create, /type filter hook ingress device "eth0" priority 0; policy accept;\n    ip daddr \. ip protocol \. th dport @services drop\n/);
  assert.match(
    t.script('replace'),
    /^add table netdev lbd_eth0\ndelete table netdev lbd_eth0\nadd table netdev lbd_eth0 \{ comment "lbd pid 4242 start 777"; \}\ntable netdev lbd_eth0 \{/,
  );
  assert.equal(
    t.refreshScript(),
    'flush set netdev lbd_eth0 services\nadd element netdev lbd_eth0 services { 10.0.0.1 . tcp . 80 timeout 15s, 10.0.0.2 . udp . 53 timeout 15s }\n',
  );
  (t as unknown as { elements: string[] }).elements = [];
  assert.equal(t.refreshScript(), 'flush set netdev lbd_eth0 services\n', 'no service: the set is emptied');
});

test('reading a table back (nft -j): owner, chain, rules and elements, as nft 1.0.6 prints them', () => {
  const objects: NftObject[] = [
    { metainfo: { version: '1.0.6' } },
    { table: { family: 'netdev', name: 'lbd_eth0', handle: 2 } },
    {
      set: {
        family: 'netdev',
        name: 'services',
        table: 'lbd_eth0',
        comment: 'lbd pid 4242 start 777',
        elem: [{ elem: { val: { concat: ['10.0.0.1', 'tcp', 80] }, timeout: 15, expires: 14 } }, { elem: { val: { concat: ['10.0.0.2', 'udp', 53] } } }],
      },
    },
    { chain: { family: 'netdev', table: 'lbd_eth0', name: 'capture_ingress', hook: 'ingress' } },
    { rule: { family: 'netdev', table: 'lbd_eth0', chain: 'capture_ingress', expr: [] } },
  ];
  const st = tableState(objects, { name: 'lbd_eth0', chain: 'capture_ingress', set: 'services' });
  assert.deepEqual(st.owner, owner);
  assert.equal(st.chain, true);
  assert.equal(st.rules, 1);
  assert.deepEqual([...st.elements], ['10.0.0.1 . tcp . 80', '10.0.0.2 . udp . 53']);
  const probe = tableState([{ set: { name: 'vips', elem: ['10.0.0.9', { elem: { val: '10.0.0.8', timeout: 15 } }] } }], { name: 'x', chain: 'c', set: 'vips' });
  assert.deepEqual([...probe.elements], ['10.0.0.9', '10.0.0.8']);
  assert.equal(probe.owner, null, 'no tag: not an lbd table');
});

test('setElements: an unchanged list (in any order, duplicates too) costs no nft call', async () => {
  const t = new LeasedTable({ name: 'x', role: 'guard', device: 'eth0', chain: 'c', set: 's', type: 'ipv4_addr', rules: [] }, owner, 15);
  (t as unknown as { elements: string[] }).elements = ['10.0.0.1', '10.0.0.2'];
  t.installed = true;
  let called = false;
  t.refresh = () => ((called = true), Promise.resolve());
  await t.setElements(['10.0.0.2', '10.0.0.1', '10.0.0.1']);
  assert.equal(called, false);
  await t.setElements(['10.0.0.3']);
  assert.equal(called, true);
  assert.deepEqual(t.wanted, ['10.0.0.3']);
});
