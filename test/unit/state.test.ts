/**
 * The shared state: one region holding every array both data paths read or write, owned by the
 * Forwarder and handed to the native path by attach() as it is — nothing mirrored or patched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { STATE_LAYOUT_VERSION, type StateArrays, connSlotsFor, stateLayout } from '../../src/dataplane/contract';
import { Forwarder } from '../../src/dataplane/forwarder';
import { MemoryPort } from '../../src/dataplane/io';
import { NativeDataplane, loadNative } from '../../src/dataplane/native';
import { macFromString } from '../../src/dataplane/packet';
import { VirtualService } from '../../src/dataplane/services';
import { SharedState, regionPlan } from '../../src/dataplane/state';
import { createScheduler } from '../../src/scheduler/index';

function forwarder(size = 4096): Forwarder {
  const egress = new MemoryPort('eth0', macFromString('02:00:00:00:00:30'));
  return new Forwarder({
    connTableSize: size,
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    captureMac: egress.mac,
    egressMac: macFromString('02:00:00:00:0e:01'),
    egress,
  });
}

/** Own properties and how each is defined: what patching would change. */
function shape(o: object): string[] {
  return Object.getOwnPropertyNames(o)
    .map((k) => {
      const d = Object.getOwnPropertyDescriptor(o, k)!;
      return `${k}:${d.get || d.set ? 'accessor' : typeof d.value === 'function' ? 'function' : 'value'}`;
    })
    .sort();
}

test('every field of the layout is a view of the one region, 8-byte aligned, none overlapping', () => {
  const st = new SharedState(5000);
  assert.equal(st.layoutVersion, STATE_LAYOUT_VERSION);
  assert.equal(st.connSlots, connSlotsFor(5000));
  const fields = stateLayout(st.connSlots, st.templateSlots);
  const { offsets, bytes } = regionPlan(fields);
  assert.equal(st.region.byteLength, bytes);
  let end = 0;
  fields.forEach((f, i) => {
    const a = st.arrays[f.name];
    assert.equal(a.buffer, st.region, `${f.name} is a view of the region`);
    assert.equal(a.byteOffset, offsets[i], f.name);
    assert.equal(a.byteOffset % 8, 0, `${f.name} is 8-byte aligned`);
    assert.equal(a.length, f.length, f.name);
    assert.ok(a.byteOffset >= end, `${f.name} starts after the field before it`);
    end = a.byteOffset + a.byteLength;
  });
  assert.ok(end <= bytes);
  assert.deepEqual(Object.keys(st.arrays).sort(), fields.map((f) => f.name).sort(), 'every array of StateArrays is laid out');
});

test("the Forwarder's tables, counters, clock, timeouts and MACs are the shared state's arrays", () => {
  const fw = forwarder();
  const a: StateArrays = fw.state.arrays;
  assert.equal(fw.conns.keyAddr, a.keyAddr);
  assert.equal(fw.conns.dest, a.dest);
  assert.equal(fw.templates.dest, a.tplDest);
  assert.equal(fw.dests.active, a.active);
  assert.equal(fw.dests.packets, a.destPackets);
  assert.equal(fw.counters, a.counters);
  assert.equal(fw.drops, a.drops);
  assert.equal(fw.captureMac.buffer, fw.state.region);
  assert.deepEqual([...a.macs], [2, 0, 0, 0, 0, 0x30, 2, 0, 0, 0, 0x0e, 0x01], 'capture MAC, then egress MAC');
  fw.now = 42;
  assert.equal(a.clock[0], 42, 'the clock is the shared cell');
  fw.setTimeouts({ tcp: 60, tcpfin: 30, udp: 7 });
  assert.deepEqual([a.timeouts[1], a.timeouts[4], a.timeouts[13]], [60, 30, 7], 'ESTABLISHED, FIN_WAIT, UDP');

  const svc = new VirtualService(3, 'web', 0x0a000a64, 80, 6, createScheduler('rr'), 0, 0xffffffff);
  fw.services.add(svc);
  assert.deepEqual([a.svcMeta[0], a.svcMeta[1]], [1, 3], 'one service, index 3 in slot 0');
  assert.equal(svc.stats.buffer, fw.state.region, "the service's counters are cells of the region");
  a.svcStats[3 * 2] = 5;
  assert.equal(svc.packets, 5);
});

test('attaching the native path patches nothing: the Forwarder and its tables keep their shape', (t) => {
  const load = loadNative();
  if (!load.ok) assert.fail(`the native addon must be built and loadable (bash scripts/setup.sh): ${load.reason}`);
  const fw = forwarder();
  fw.services.add(new VirtualService(0, 'web', 0x0a000a64, 80, 6, createScheduler('rr'), 0, 0xffffffff));
  const objects = { fw, conns: fw.conns, dests: fw.dests, services: fw.services, svc: fw.services.all[0] };
  const before = Object.fromEntries(Object.entries(objects).map(([k, o]) => [k, shape(o)]));
  const dp = new NativeDataplane(fw);
  t.after(() => dp.close());
  const after = Object.fromEntries(Object.entries(objects).map(([k, o]) => [k, shape(o)]));
  assert.deepEqual(after, before);
  assert.equal(Object.getOwnPropertyDescriptor(fw, 'now'), undefined, 'the clock is a class accessor, not an own one');
});
