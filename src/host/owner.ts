/**
 * Who owns a host change: a process, named by its PID and its start time (field 22 of
 * /proc/PID/stat, in clock ticks since boot), so that a PID the kernel has since given to
 * another process is not mistaken for the owner. lbd writes its owner tag into the comments
 * of the nftables tables it makes; another lbd reads it back before it touches such a table.
 */
import { readFileSync } from 'node:fs';

export interface Owner {
  pid: number;
  /** The process's start time, in clock ticks since boot (0 when unknown). */
  start: number;
}

/**
 * The start time of a process, or null when there is no such process (in this PID namespace) or
 * it has ended and only waits for its parent to reap it (a zombie holds no lock, no socket, and
 * renews no lease: it is gone).
 */
export function processStart(pid: number): number | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return null;
  const start = Number(fields[19]);
  return Number.isFinite(start) ? start : null;
}

/** This process. */
export function selfOwner(): Owner {
  return { pid: process.pid, start: processStart(process.pid) ?? 0 };
}

const TAG = /^lbd pid (\d+) start (\d+)$/;

/** The tag written into nftables comments: "lbd pid 1234 start 5678". */
export function ownerTag(o: Owner): string {
  return `lbd pid ${o.pid} start ${o.start}`;
}

/** The owner a tag names, or null when it is not an lbd owner tag. */
export function parseOwnerTag(tag: unknown): Owner | null {
  const m = typeof tag === 'string' ? TAG.exec(tag) : null;
  return m ? { pid: Number(m[1]), start: Number(m[2]) } : null;
}

export function sameOwner(a: Owner, b: Owner): boolean {
  return a.pid === b.pid && a.start === b.start;
}

/** Resolves once the owner's process is gone, or after `ms` (false: still there). */
export async function waitGone(o: Owner, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (ownerAlive(o)) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

/** Whether the owner still runs: its PID exists and started when the tag says. */
export function ownerAlive(o: Owner): boolean {
  const start = processStart(o.pid);
  return start !== null && (o.start === 0 || start === o.start);
}
