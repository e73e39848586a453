import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnTable, connPort } from '../../src/dataplane/conntable';
import { nextTcpState } from '../../src/dataplane/tcpstate';
import { ConnState } from '../../src/dataplane/contract';
import { ACK, FIN, RST, SYN } from '../helpers/frames';

test('insert, find and remove keep every other entry reachable (backward-shift deletion)', () => {
  const t = new ConnTable(4096);
  const keys: [number, number][] = [];
  let seed = 7;
  const rnd = () => (seed = (Math.imul(seed, 48271) + 1) >>> 0);
  for (let i = 0; i < 4096; i++) keys.push([rnd(), connPort(i & 3, rnd() & 0xffff)]);
  keys.forEach(([a, p], i) => assert.ok(t.insert(a, p, i, ConnState.SynRecv, 0, 10) >= 0));
  assert.equal(t.size, 4096);
  assert.equal(t.insert(1, 1, 1, 1, 0, 1), -1, 'full at capacity');
  // Remove every other entry, then every remaining one must still be found with its value.
  for (let i = 0; i < keys.length; i += 2) t.remove(t.find(keys[i][0], keys[i][1]));
  assert.equal(t.size, 2048);
  keys.forEach(([a, p], i) => {
    const s = t.find(a, p);
    if (i % 2 === 0) assert.equal(s, -1);
    else assert.equal(t.dest[s], i);
  });
});

test('IPVS input-only TCP transitions', () => {
  assert.equal(nextTcpState(ConnState.None, SYN), ConnState.SynRecv);
  assert.equal(nextTcpState(ConnState.SynRecv, ACK), ConnState.Established);
  assert.equal(nextTcpState(ConnState.Established, FIN | ACK), ConnState.FinWait);
  assert.equal(nextTcpState(ConnState.FinWait, ACK), ConnState.FinWait);
  assert.equal(nextTcpState(ConnState.Established, RST), ConnState.Close);
  assert.equal(nextTcpState(ConnState.SynRecv, RST), ConnState.SynRecv, 'IPVS keeps SYN_RECV on RST');
  assert.equal(nextTcpState(ConnState.TimeWait, SYN), ConnState.SynRecv, 'a reused port starts over');
  assert.equal(nextTcpState(ConnState.Established, 0), ConnState.Established, 'no flag, no change');
  assert.equal(nextTcpState(ConnState.Established, SYN | RST), ConnState.Close, 'RST outranks SYN');
});
