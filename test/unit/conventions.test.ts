/**
 * The service conventions operators expect: runtime files where systemd put the service's runtime
 * directory, and log lines the journal files under their priority.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { journalDestination, stdoutIsJournal, syslogPriority, withPriority } from '../../src/journal';
import { runtimeDir } from '../../src/runtime-dir';

test("runtime files go to systemd's RUNTIME_DIRECTORY (the first of several), else /run/lbd", () => {
  assert.equal(runtimeDir({}), '/run/lbd');
  assert.equal(runtimeDir({ RUNTIME_DIRECTORY: '/run/lbd-test' }), '/run/lbd-test');
  assert.equal(runtimeDir({ RUNTIME_DIRECTORY: '/run/a:/run/b' }), '/run/a');
  assert.equal(runtimeDir({ RUNTIME_DIRECTORY: 'relative' }), '/run/lbd', 'not a directory systemd gave');
  assert.equal(runtimeDir({ RUNTIME_DIRECTORY: '' }), '/run/lbd');
});

test('when stdout is the journal (JOURNAL_STREAM = its device:inode), each line starts with its syslog priority', () => {
  const st = () => ({ dev: 25, ino: 3141 });
  assert.equal(stdoutIsJournal({ JOURNAL_STREAM: '25:3141' }, st), true);
  assert.equal(stdoutIsJournal({ JOURNAL_STREAM: '25:3142' }, st), false, 'stdout redirected elsewhere (a pipe of ours): plain lines');
  assert.equal(stdoutIsJournal({}, st), false);
  assert.equal(stdoutIsJournal({ JOURNAL_STREAM: 'junk' }, st), false);
  // pino's levels: trace 10, debug 20, info 30, warn 40, error 50, fatal 60.
  assert.deepEqual([10, 20, 30, 40, 50, 60].map(syslogPriority), [7, 7, 6, 4, 3, 2]);
  assert.equal(withPriority('{"level":40,"msg":"real server down"}\n'), '<4>{"level":40,"msg":"real server down"}\n');
  const written: string[] = [];
  const dest = journalDestination({ write: (s: string) => written.push(s) });
  dest.write('{"level":50,"time":"t","msg":"lbd could not start"}\n');
  dest.write('{"level":30,"msg":"lbd started"}\n');
  assert.deepEqual(written, ['<3>{"level":50,"time":"t","msg":"lbd could not start"}\n', '<6>{"level":30,"msg":"lbd started"}\n']);
});
