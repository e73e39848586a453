/**
 * What a service may tell its scheduler beyond its name: IPVS's scheduler flags (ipvsadm -b,
 * keepalived's sh-port/sh-fallback/mh-port/mh-fallback) and Maglev's lookup-table size. Kept
 * apart from the schedulers so that the config, the CLI and the registry share one list.
 */

/** Options of a scheduler instance; each scheduler reads the ones it knows. */
export interface SchedulerOptions {
  /** sh-fallback / mh-fallback: a flow whose hashed server cannot take it tries the next one. */
  fallback?: boolean;
  /** sh-port / mh-port: the client's source port is hashed with its address. */
  port?: boolean;
  /** mh: the lookup table's size, one of MH_TABLE_SIZES. */
  tableSize?: number;
}

/**
 * Maglev lookup-table sizes: IPVS's primes (ip_vs_mh.c, one of them chosen when the kernel is
 * built, 4093 by default) and 65537, the Maglev paper's. A prime size makes every skip in
 * 1..size-1 coprime with it, so each server's permutation visits every entry.
 */
export const MH_TABLE_SIZES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 65537, 131071] as const;
export const MH_TABLE_SIZE_DEFAULT = 65537;

/** The schedulers whose choice is a function of the flow alone, the same on every balancer with the same config. */
export const CONSISTENT_SCHEDULERS = ['mh', 'sh'] as const;

/** ipvsadm's names of the flags a scheduler with these options runs with (-b, and `ipvsadm -L`'s "(…)"). */
export function schedulerFlagNames(scheduler: string, o: SchedulerOptions): string[] {
  if (scheduler !== 'mh' && scheduler !== 'sh') return [];
  const out: string[] = [];
  if (o.fallback) out.push(`${scheduler}-fallback`);
  if (o.port) out.push(`${scheduler}-port`);
  return out;
}

/** The options a service's config gives its scheduler (each scheduler's own keys: mh_* for mh, sh_* for sh). */
export function schedulerOptions(s: {
  scheduler: string;
  mh_fallback?: boolean;
  mh_port?: boolean;
  mh_table_size?: number;
  sh_fallback?: boolean;
  sh_port?: boolean;
}): SchedulerOptions {
  if (s.scheduler === 'mh') return { fallback: s.mh_fallback === true, port: s.mh_port === true, tableSize: s.mh_table_size ?? MH_TABLE_SIZE_DEFAULT };
  if (s.scheduler === 'sh') return { fallback: s.sh_fallback === true, port: s.sh_port === true };
  return {};
}

export function sameSchedulerOptions(a: SchedulerOptions | undefined, b: SchedulerOptions): boolean {
  const x = a ?? {};
  return (x.fallback ?? false) === (b.fallback ?? false) && (x.port ?? false) === (b.port ?? false) && x.tableSize === b.tableSize;
}
