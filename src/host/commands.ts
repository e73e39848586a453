/**
 * How lbd's own host configuration (its nftables tables, the local-access veth pair) runs its
 * programs. These changes are what lbd needs to start, so a program that is missing, cannot
 * start or fails is a HostSetupError (E_HOST) carrying the program's own words; cleanup, which
 * may find nothing to clean, runs quietly.
 */
import { HostSetupError } from '../errors';
import { ProgramFailedError, ProgramNotFoundError, failureText, runSync, type ProgramName, type RunOptions, type RunResult } from './programs';

/** runSync; a program that is missing (the message names its package) or cannot start is a HostSetupError. */
export function hostRun(cmd: ProgramName, args: string[], opts: RunOptions): RunResult {
  try {
    return runSync(cmd, args, opts);
  } catch (e) {
    if (e instanceof ProgramNotFoundError || e instanceof ProgramFailedError) throw new HostSetupError(e.message);
    throw e;
  }
}

/** A change that must succeed: a non-zero exit is a HostSetupError naming the command and its stderr. */
export function hostChange(cmd: ProgramName, args: string[]): void {
  const r = hostRun(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new HostSetupError(`${cmd} ${args.join(' ')}: ${failureText(r)}`);
}

/** Cleanup that may find nothing to clean (nor the program, on a host lbd never ran on). */
export function quietly(cmd: ProgramName, args: string[]): void {
  try {
    runSync(cmd, args, { stdio: 'ignore' });
  } catch {
    /* not there */
  }
}
