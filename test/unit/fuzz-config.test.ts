/**
 * The config loader under property-based fuzzing (test/fuzz/config.ts), as a smoke with a fixed
 * seed: random and mutated YAML documents either load or are refused with a ConfigError whose
 * every issue is located and names its field; every stored failing input
 * (test/fixtures/fuzz/config/*.yaml) replayed. The long run: npm run fuzz -- --target config.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { parseConfig } from '../../src/config/load';
import { ConfigError } from '../../src/errors';
import { checkConfig, configSeeds, fuzzConfig, readConfigFixtures } from '../fuzz/config';

const ROOT = path.resolve(__dirname, '../../..');

test('fuzz (smoke, fixed seed): random and mutated configs load or are refused with located, named issues', async () => {
  const r = await fuzzConfig(configSeeds(ROOT), { seed: 0x1bd, inputs: 600, runsPerRound: 200, limitMs: 10_000 });
  assert.deepEqual(
    r.failures.map((f) => `seed ${f.seed}: ${f.error}`),
    [],
  );
});

test('fuzz: every stored failing config (test/fixtures/fuzz/config) now passes', () => {
  const stored = readConfigFixtures(path.join(ROOT, 'test/fixtures/fuzz/config'));
  assert.ok(stored.length >= 1);
  for (const f of stored) {
    try {
      checkConfig(f.text, 10_000);
    } catch (e) {
      assert.fail(`${f.file}: ${(e as Error).message}`);
    }
  }
});

test('a blank key is named by a quoted path (found by the fuzzer)', () => {
  assert.throws(
    () =>
      parseConfig(
        '"": 1\ninterfaces:\n  capture: eth0\nservices:\n  - name: web\n    vip: 10.0.10.100\n    port: 80\n    " ": x\n    real_servers: [10.0.10.40]\n',
        'f.yaml',
      ),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.deepEqual(
        e.issues.map((i) => [i.line, i.col, i.path]),
        [
          [1, 1, '""'],
          [8, 5, 'services[0]." "'],
        ],
      );
      return true;
    },
  );
});
