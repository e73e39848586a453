import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleFlight } from '../../src/single-flight';

test('SingleFlight: one run at a time; requests during a run make exactly one more run, which sees the state of then', async () => {
  let state = 0;
  const seen: number[] = [];
  let release: (() => void) | null = null;
  const job = new SingleFlight(async () => {
    seen.push(state);
    await new Promise<void>((r) => (release = r));
  });
  const first = job.request();
  state = 1;
  const second = job.request();
  state = 2;
  const third = job.request();
  assert.equal(second, third, 'requests during a run share one promise');
  release!();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(seen, [0, 2], 'the second run sees the latest state, and there is only one');
  release!();
  await Promise.all([first, second, third]);
  assert.deepEqual(seen, [0, 2]);
});

test('SingleFlight: no further run once stopped', async () => {
  let stopped = false;
  let runs = 0;
  const job = new SingleFlight(
    async () => {
      runs++;
      stopped = true;
      await Promise.resolve();
    },
    () => stopped,
  );
  const a = job.request();
  void job.request();
  await a;
  assert.equal(runs, 1);
});
