/**
 * Remove the leftovers of a lab that did not get to tear itself down (SIGKILL, power cut, …):
 * processes living in its namespaces (killed by PID), the namespaces `<prefix>-*`, and
 * os.tmpdir()/<prefix>.
 *
 *   node dist/lab/cleanup.js PREFIX        (also: node dist/lab/cli.js down PREFIX)
 *   node dist/lab/cleanup.js --list        prefixes that have namespaces or a lab dir left
 *
 * Only ever touches things named after the given prefix; there is deliberately no "remove every
 * lab" mode, because other people's labs may be running on the same machine.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { killPids, labMemDir, listNamespaces, namespacePids, run } from './lab';

export interface CleanupReport {
  prefix: string;
  namespaces: string[];
  killed: number[];
  dirRemoved: string | null;
  problems: string[];
}

const PREFIX_RE = /^[A-Za-z0-9_]{2,40}$/;

export function cleanupPrefix(prefix: string): CleanupReport {
  if (!PREFIX_RE.test(prefix)) throw new Error(`bad lab prefix "${prefix}" (want [A-Za-z0-9_]{2,40})`);
  const report: CleanupReport = { prefix, namespaces: [], killed: [], dirRemoved: null, problems: [] };
  const mine = listNamespaces().filter((n) => n.startsWith(`${prefix}-`));
  // processes first: a namespace stays alive (with its interfaces) as long as a process is in it
  const pids = [...new Set(mine.flatMap((ns) => namespacePids(ns)))];
  if (pids.length > 0) {
    const left = killPids(pids, 3000);
    report.killed = pids.filter((p) => !left.includes(p));
    if (left.length > 0) report.problems.push(`could not kill ${left.join(' ')}`);
  }
  for (const ns of mine) {
    const r = run('ip', ['netns', 'del', ns]);
    if (r.status === 0) report.namespaces.push(ns);
    else report.problems.push(`ip netns del ${ns}: ${r.stderr.trim()}`);
  }
  const dir = path.join(os.tmpdir(), prefix);
  if (fs.existsSync(dir)) {
    fs.rmSync(dir, { recursive: true, force: true });
    report.dirRemoved = dir;
  }
  const mem = labMemDir(prefix);
  if (mem !== null && fs.existsSync(mem)) fs.rmSync(mem, { recursive: true, force: true });
  return report;
}

/** prefixes of labs that look left over: namespaces named `<prefix>-{br,client,lb,rs…}` */
export function listLeftovers(): { prefix: string; namespaces: string[]; dir: string | null }[] {
  const by = new Map<string, string[]>();
  for (const n of listNamespaces()) {
    const m = /^([A-Za-z0-9_]{2,40})-(br|client|lb|rs\d+)$/.exec(n);
    if (!m) continue;
    by.set(m[1], [...(by.get(m[1]) ?? []), n]);
  }
  return [...by].map(([prefix, namespaces]) => {
    const dir = path.join(os.tmpdir(), prefix);
    return { prefix, namespaces, dir: fs.existsSync(path.join(dir, 'lab.json')) ? dir : null };
  });
}

function main(argv: string[]): number {
  if (argv[0] === '--list') {
    for (const l of listLeftovers()) console.log(`${l.prefix}\t${l.namespaces.join(' ')}${l.dir ? `\t${l.dir}` : ''}`);
    return 0;
  }
  if (argv.length !== 1 || argv[0].startsWith('-')) {
    console.error('usage: cleanup.js PREFIX | --list');
    return 2;
  }
  const r = cleanupPrefix(argv[0]);
  console.log(
    `lab ${r.prefix}: removed ${r.namespaces.length} namespace(s)${r.namespaces.length ? ` (${r.namespaces.join(' ')})` : ''}, ` +
      `killed ${r.killed.length} process(es)${r.dirRemoved ? `, removed ${r.dirRemoved}` : ''}`,
  );
  for (const p of r.problems) console.error(`problem: ${p}`);
  return r.problems.length ? 1 : 0;
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
