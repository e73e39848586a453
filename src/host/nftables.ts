/**
 * lbd's nftables tables: the script of one netdev-ingress table, applying it, deleting it.
 * Used by the host guard (guard.ts), local access (local-access.ts) and the vip health
 * probe's table (src/health/vip.ts).
 */
import { HostSetupError } from '../errors';
import { hostRun, quietly } from './commands';
import { failureText } from './programs';

/**
 * The script for one of lbd's own nftables tables: a netdev table with a single ingress
 * chain on `device`. "add" then "delete" first clears a table a crashed lbd may have left,
 * without failing if there is none, so applying the script replaces the table atomically.
 * nft 1.0.6 rejects a rule and a closing brace on one line: one rule per line.
 */
export function netdevIngressTable(table: string, chain: string, device: string, policy: 'accept' | 'drop', rules: string[]): string {
  return [
    `add table netdev ${table}`,
    `delete table netdev ${table}`,
    `table netdev ${table} {`,
    `  chain ${chain} {`,
    `    type filter hook ingress device "${device}" priority 0; policy ${policy};`,
    ...rules.map((r) => `    ${r}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Runs an nft script; a failure is a HostSetupError with nft's own message. */
export function nftApply(script: string): void {
  const r = hostRun('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new HostSetupError(`nftables: ${failureText(r)}`);
}

/** Removes one of lbd's tables; one that is already gone is fine. */
export function nftDeleteTable(table: string): void {
  quietly('nft', ['delete', 'table', 'netdev', table]);
}
