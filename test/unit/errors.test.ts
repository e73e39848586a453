/**
 * Error codes are one closed set (ERROR_CODES in src/errors.ts): tsc holds every LbdError to it;
 * this keeps the set honest the other way: it lists no code that nothing raises any more.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ERROR_CODES, isErrorCode } from '../../src/errors';

const SRC = path.resolve(__dirname, '../../../src');

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

test('every error code in src/ is one of ERROR_CODES, and every one of them is raised somewhere', () => {
  const used = new Set<string>();
  for (const file of sources(SRC)) {
    let text = fs.readFileSync(file, 'utf8');
    // The list itself does not count as a use.
    if (path.relative(SRC, file) === 'errors.ts') text = text.replace(/export const ERROR_CODES = \[[^]*?\] as const;/, '');
    for (const m of text.matchAll(/'(E_[A-Z_]+)'/g)) used.add(m[1]);
  }
  assert.deepEqual(
    [...used].filter((c) => !isErrorCode(c)),
    [],
    'codes outside ERROR_CODES',
  );
  assert.deepEqual(
    ERROR_CODES.filter((c) => !used.has(c)),
    [],
    'codes in ERROR_CODES that nothing raises',
  );
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length, 'no code twice');
});
