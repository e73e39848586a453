import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { Control } from '../../src/control/admin/control';
import type { HandoverResult } from '../../src/control/admin/protocol';
import type { Daemon } from '../../src/control/daemon';
import { parseArgs, UsageError } from '../../src/cli/command';

const silent = pino({ level: 'silent' });
const noDaemon = { log: silent, withdrawDelayMs: () => 0 } as unknown as Daemon;

test('handover: the running lbd answers who it is and arms itself; refused when it cannot hand over or is stopping', async () => {
  let armed = 0;
  const control = new Control(noDaemon, {
    log: silent,
    stop: () => {},
    handover: () => {
      armed++;
      return { pid: 4242, start: 99, armedMs: 10000, stateFile: '/run/lbd/lbd_eth0.state', capture: 'eth0', layoutVersion: 4 };
    },
  });
  const r = (await control.handle({ cmd: 'handover' })) as HandoverResult;
  assert.deepEqual(r, { pid: 4242, start: 99, armedMs: 10000, stateFile: '/run/lbd/lbd_eth0.state', capture: 'eth0', layoutVersion: 4 });
  assert.equal(armed, 1);
  await assert.rejects(control.handle({ cmd: 'handover', args: { now: true } }), (e: { code?: string }) => e.code === 'E_USAGE');
  await control.handle({ cmd: 'stop' });
  await assert.rejects(control.handle({ cmd: 'handover' }), (e: { code?: string }) => e.code === 'E_ADMIN', 'not while stopping');
  const plain = new Control(noDaemon, { log: silent });
  await assert.rejects(plain.handle({ cmd: 'handover' }), (e: { code?: string }) => e.code === 'E_ADMIN', 'not without a handler');
  assert.equal(armed, 1);
});

test('lbd run --take-over and --fresh: flags of run only, without a value', () => {
  assert.equal(parseArgs(['--config', 'lb.yaml', '--take-over']).takeOver, true);
  assert.equal(parseArgs(['run', '--config', 'lb.yaml', '--fresh']).fresh, true);
  assert.throws(() => parseArgs(['check', 'lb.yaml', '--take-over']), UsageError);
  assert.throws(() => parseArgs(['--config', 'lb.yaml', '--take-over=yes']), UsageError);
  assert.throws(
    () => parseArgs(['--config', 'lb.yaml', '--fresh', '--take-over']),
    /--fresh and --take-over/,
    'a hand-over that starts empty would cut every flow',
  );
});
