/**
 * How lbd's own host configuration (its nftables tables, the local-access interface's link and
 * routes) runs its programs: asynchronously, since the event loop that waits is the one the
 * data plane runs on. These changes are what lbd needs, so a program that is missing, cannot
 * start or fails is a HostSetupError (E_HOST) carrying the program's own words; cleanup, which
 * may find nothing to clean, runs quietly.
 */
import { HostSetupError } from '../errors';
import { ProgramFailedError, ProgramNotFoundError, failureText, run, type ProgramName, type RunOptions, type RunResult } from './programs';

/** A host program gets this long; nft and ip answer in milliseconds. */
const HOST_TIMEOUT_MS = 10_000;

/** run(); a program that is missing (the message names its package) or cannot start is a HostSetupError. */
export async function hostRun(cmd: ProgramName, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  try {
    return await run(cmd, args, { timeoutMs: HOST_TIMEOUT_MS, ...opts });
  } catch (e) {
    if (e instanceof ProgramNotFoundError || e instanceof ProgramFailedError) throw new HostSetupError(e.message);
    throw e;
  }
}

/** A change that must succeed: a non-zero exit is a HostSetupError naming the command and its stderr. */
export async function hostChange(cmd: ProgramName, args: string[]): Promise<void> {
  const r = await hostRun(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new HostSetupError(`${cmd} ${args.join(' ')}: ${failureText(r)}`);
}

/** Cleanup that may find nothing to clean (nor the program, on a host lbd never ran on). */
export async function quietly(cmd: ProgramName, args: string[]): Promise<void> {
  try {
    await run(cmd, args, { stdio: 'ignore', timeoutMs: HOST_TIMEOUT_MS });
  } catch {
    /* not there */
  }
}
