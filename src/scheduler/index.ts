/**
 * The scheduler registry. Like IPVS (net/netfilter/ipvs/ip_vs_*.c), each scheduler is one small
 * file behind one tiny interface (types.ts); this file names them all. The data plane calls
 * `schedule()` only for a new flow (a TCP SYN or a new UDP flow), never per packet.
 */
import { UnknownSchedulerError } from '../errors';
import { fo } from './fo';
import { lc } from './lc';
import { mh } from './mh';
import { nq } from './nq';
import { ovf } from './ovf';
import { rr } from './rr';
import { sed } from './sed';
import { sh } from './sh';
import type { SchedulerOptions } from './options';
import type { Scheduler, SchedulerInfo } from './types';
import { wlc } from './wlc';
import { wrr } from './wrr';

export * from './types';
export * from './options';

/** The scheduler names, in IPVS's documentation order. */
export const SCHEDULER_NAMES = ['rr', 'wrr', 'lc', 'wlc', 'sed', 'nq', 'sh', 'fo', 'ovf', 'mh'] as const;
export type SchedulerName = (typeof SCHEDULER_NAMES)[number];

const REGISTRY: Record<SchedulerName, SchedulerInfo> = { rr, wrr, lc, wlc, sed, nq, sh, fo, ovf, mh };

export function schedulerNames(): string[] {
  return [...SCHEDULER_NAMES];
}

export function getScheduler(name: string): SchedulerInfo | undefined {
  return Object.hasOwn(REGISTRY, name) ? REGISTRY[name as SchedulerName] : undefined;
}

export function createScheduler(name: string, options?: SchedulerOptions): Scheduler {
  const info = getScheduler(name);
  if (!info) throw new UnknownSchedulerError(name, SCHEDULER_NAMES);
  return info.create(options);
}
