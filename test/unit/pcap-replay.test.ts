import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { DROP_REASONS } from '../../src/dataplane/contract';
import { parse, ParsedFrame, PARSED_L4, macToString, intToIp } from '../../src/dataplane/packet';
import { MAC } from '../helpers/frames';
import { testDaemon } from '../helpers/daemon';
import { readPcap } from '../helpers/pcap';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures');

const CONFIG = `
interfaces:
  capture: eth0
services:
  - name: web
    vip: 10.0.10.100
    port: 80
    scheduler: rr
    real_servers:
      - { address: 10.0.10.40, mac: "${MAC.rs40}" }
      - { address: 10.0.10.111, mac: "${MAC.rs111}" }
  - name: echo
    vip: 10.0.10.100
    port: 5353
    protocol: udp
    scheduler: rr
    real_servers:
      - { address: 10.0.10.40, mac: "${MAC.rs40}" }
      - { address: 10.0.10.111, mac: "${MAC.rs111}" }
`;

// lab-http-udp.pcap: what the lab's balancer received (tcpdump -Q in on eth0) while the client
// ran three curls and two UDP echoes to the VIP: an ARP request, 18 TCP and 2 UDP frames.
test('replaying a real lab capture gives exactly the expected output frames', async () => {
  const frames = await readPcap(path.join(FIXTURES, 'lab-http-udp.pcap'));
  assert.equal(frames.length, 21);
  const t = await testDaemon(CONFIG);
  try {
    const p = new ParsedFrame();
    const flowServer = new Map<string, string>();
    const order: string[] = [];
    let forwarded = 0;
    let arpReplies = 0;
    for (const input of frames) {
      const sentBefore = t.capture.sent.length;
      const out = t.send(input);
      if (input.readUInt16BE(12) === 0x0806) {
        arpReplies += t.capture.sent.length - sentBefore;
        continue;
      }
      assert.equal(parse(input, input.length, p), PARSED_L4);
      const flow = `${p.proto}/${intToIp(p.srcAddr)}:${p.srcPort}`;
      assert.equal(out.length, 1, `frame of ${flow} forwarded`);
      // Exactly the input with new MACs: destination = the flow's real server, source = ours.
      const server = macToString(out[0], 0);
      if (!flowServer.has(flow)) {
        flowServer.set(flow, server);
        order.push(`${p.proto === 6 ? 'tcp' : 'udp'}:${server}`);
      }
      assert.equal(server, flowServer.get(flow), `${flow} stays on one server`);
      assert.equal(macToString(out[0], 6), MAC.balancer);
      assert.deepEqual(out[0].subarray(12), input.subarray(12));
      forwarded++;
    }
    assert.equal(arpReplies, 1, 'the who-has for the VIP was answered');
    assert.equal(forwarded, 20);
    assert.deepEqual(order, [`tcp:${MAC.rs40}`, `tcp:${MAC.rs111}`, `tcp:${MAC.rs40}`, `udp:${MAC.rs40}`, `udp:${MAC.rs111}`]);
    assert.deepEqual(
      [...t.daemon.forwarder.drops].every((d) => d === 0),
      true,
    );
    const dt = t.daemon.forwarder.dests;
    // The curls completed their handshakes and closed: nothing ESTABLISHED remains.
    assert.deepEqual([dt.active[0], dt.active[1]], [0, 0]);
  } finally {
    await t.daemon.stop();
  }
});

test('malformed.pcap: every bad frame is counted by reason, and the good SYN after them still goes through', async () => {
  const frames = await readPcap(path.join(FIXTURES, 'malformed.pcap'));
  const t = await testDaemon(CONFIG);
  try {
    const outputs = frames.map((f) => t.send(f));
    const drops: Record<string, number> = {};
    DROP_REASONS.forEach((r, i) => {
      if (t.daemon.forwarder.drops[i]) drops[r] = t.daemon.forwarder.drops[i];
    });
    assert.deepEqual(drops, {
      truncated: 3,
      not_ipv4: 1,
      bad_ip_header: 3,
      fragment: 2,
      unsupported: 2,
      not_our_mac: 1,
      no_connection: 1,
    });
    assert.deepEqual(
      outputs.slice(0, -1).map((o) => o.length),
      new Array(frames.length - 1).fill(0),
    );
    const last = outputs[outputs.length - 1];
    assert.equal(last.length, 1);
    assert.equal(macToString(last[0], 0), MAC.rs40);
  } finally {
    await t.daemon.stop();
  }
});
