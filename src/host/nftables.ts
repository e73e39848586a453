/**
 * Talking to nftables: applying a script and reading a table back as JSON, asynchronously
 * (`nft` takes ~20 ms; the event loop that would wait is the data plane's). Used by the leased
 * tables (leased-table.ts) and lbd doctor.
 */
import { HostSetupError } from '../errors';
import { hostRun } from './commands';
import { failureText } from './programs';

/** Runs an nft script as one transaction; a failure is a HostSetupError with nft's own message. */
export async function nftApply(script: string): Promise<void> {
  const r = await hostRun('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new HostSetupError(`nftables: ${failureText(r)}`);
}

/** One object of `nft -j list …` output: {"table": {…}}, {"set": {…}}, {"rule": {…}} … */
export type NftObject = Record<string, Record<string, unknown>>;

/** `nft -j list table netdev NAME`, or null when there is no such table. */
export async function nftListTable(name: string): Promise<NftObject[] | null> {
  const r = await hostRun('nft', ['-j', 'list', 'table', 'netdev', name], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    if (/No such file or directory/.test(r.stderr)) return null;
    throw new HostSetupError(`nftables: ${failureText(r)}`);
  }
  try {
    const doc = JSON.parse(r.stdout) as { nftables?: NftObject[] };
    return doc.nftables ?? [];
  } catch {
    throw new HostSetupError(`nftables: nft -j list table netdev ${name} printed no JSON`);
  }
}

/** An element of a set as `nft -j` prints it, in the words of an nft script ("10.0.0.1 . tcp . 80"). */
export function nftElementText(elem: unknown): string {
  const inner = elem && typeof elem === 'object' && 'elem' in elem ? (elem as { elem: { val: unknown } }).elem.val : elem;
  if (inner && typeof inner === 'object' && 'concat' in inner) return (inner as { concat: unknown[] }).concat.map(String).join(' . ');
  return String(inner);
}
