/**
 * The admin socket's modules keep the CLI light: the commands that talk to the daemon load the
 * protocol and the client, never the config loader, reconcile, ipvsadm or the data plane (the
 * daemon's side). Checked on the built tree by what a fresh require brings into require.cache.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as path from 'node:path';

const SRC = path.resolve(__dirname, '../../src');
const load = createRequire(__filename);

/** The daemon's side: none of these may load for a command that only talks to the socket. */
const DAEMON_SIDE = [
  'config/load',
  'control/reconcile',
  'control/ipvsadm',
  'control/daemon',
  'control/admin/apply',
  'control/admin/control',
  'control/admin/server',
  'dataplane/',
];

/** The files of src/ (relative, without .js) that requiring `modules` loads, on a cache emptied of src/ first. */
function loadedBy(...modules: string[]): string[] {
  const ours = (k: string) => k.startsWith(SRC + path.sep);
  for (const k of Object.keys(load.cache)) if (ours(k)) delete load.cache[k];
  for (const m of modules) load(path.join(SRC, m));
  return Object.keys(load.cache)
    .filter(ours)
    .map((k) => path.relative(SRC, k).replace(/\.js$/, ''))
    .sort();
}

function daemonSide(loaded: string[]): string[] {
  return loaded.filter((f) => DAEMON_SIDE.some((d) => (d.endsWith('/') ? f.startsWith(d) : f === d)));
}

test('the admin client and protocol load none of the daemon side', () => {
  const loaded = loadedBy('control/admin/protocol', 'control/admin/client', 'control/admin/service-ref');
  assert.ok(loaded.includes('control/admin/client') && loaded.includes('control/admin/protocol'), `loaded: ${loaded.join(', ')}`);
  assert.deepEqual(daemonSide(loaded), [], `loaded: ${loaded.join(', ')}`);
});

test('lbd and its daemon commands (list, server, service, reload, save) load none of the daemon side', () => {
  for (const cmd of ['main', 'list', 'server', 'service', 'reload', 'save']) {
    const loaded = loadedBy(`cli/${cmd}`);
    assert.deepEqual(daemonSide(loaded), [], `cli/${cmd} loaded: ${loaded.join(', ')}`);
  }
});

test('lbd check loads the config loader but not the daemon', () => {
  const loaded = loadedBy('cli/check');
  assert.deepEqual(daemonSide(loaded), ['config/load'], `loaded: ${loaded.join(', ')}`);
});

test('the check sees the daemon side where it is loaded (it is not vacuous)', () => {
  const loaded = loadedBy('control/admin/control', 'control/admin/server');
  for (const f of ['config/load', 'control/reconcile', 'control/ipvsadm', 'control/admin/apply'])
    assert.ok(loaded.includes(f), `${f} not in: ${loaded.join(', ')}`);
});
