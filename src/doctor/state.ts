/**
 * lbd doctor's checks of the state file (src/dataplane/state-file.ts): the memory-mapped file the
 * connection table lives in, so that it outlives the process.
 *
 *   state.space     the file system has room for a new file next to the old one (lbd allocates
 *                   it in full at start, and renames it over the old one only once it is made);
 *                   tmpfs, so that no page write reaches a disk and no file outlives a boot
 *   state.file      what the next lbd finds: nothing, a table it adopts, or a file it sets aside
 *   state.rejected  a file an lbd set aside (`<state>.rejected`), which only an operator removes
 */
import type { Config } from '../config/types';
import { HEADER_BYTES } from '../dataplane/state-file';
import { regionBytes, regionSizes } from '../dataplane/state';
import { stateFilePath } from '../host/instance';
import type { Finding, HostView, StateFileView } from './checks';

const MiB = 1024 * 1024;

/** Bytes as MiB: one decimal under 100 MiB, whole above. */
export function mib(bytes: number): string {
  const m = bytes / MiB;
  return `${m < 100 ? m.toFixed(1) : Math.round(m)} MiB`;
}

export { stateFilePath };

/** Bytes of the state file for a table of `size` entries, header included (what lbd allocates at start). */
export function stateFileBytes(size: number): number {
  return HEADER_BYTES + regionBytes(regionSizes(size));
}

function dirOf(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}

function checkSpace(cfg: Config, h: HostView, path: string, exists: boolean): Finding {
  const size = cfg.connection_table.size;
  const need = stateFileBytes(size);
  const dir = dirOf(path);
  const fsInfo = h.fileSystem(path);
  if (!fsInfo) return { check: 'state.space', severity: 'skip', what: `cannot look at the file system of ${dir} (for the state file ${path})` };
  const where = `${fsInfo.mount ?? dir} (${fsInfo.type})`;
  const notTmpfs = `${dir} is on ${fsInfo.type}, not tmpfs: every page lbd writes to the state file may reach the disk, the kernel's writeback makes the next write to each written-out page fault again (slower new flows: an upcall took 20–27 µs there instead of 4 on tmpfs), and the file outlives a reboot (after which the next lbd sets it aside)`;
  if (fsInfo.freeBytes < need) {
    const short = need - fsInfo.freeBytes;
    const remount =
      fsInfo.tmpfs && fsInfo.mount && fsInfo.totalBytes !== undefined
        ? `mount -o remount,size=${Math.ceil((fsInfo.totalBytes + short) / MiB)}m ${fsInfo.mount} (a larger tmpfs), or `
        : '';
    return {
      check: 'state.space',
      severity: 'error',
      what:
        `lbd will not start: the state file needs ${mib(need)} on ${where} for a ${size}-entry table, ${mib(fsInfo.freeBytes)} free` +
        (exists ? ` (at start the new file is made next to the old one ${path}, so the old one's space does not count)` : '') +
        (fsInfo.tmpfs ? '' : `; and ${notTmpfs}`),
      fix: `${remount}free ${mib(short)} there, or a smaller connection_table.size, or a state_file on a file system with room (in ${cfg.file})`,
    };
  }
  if (!fsInfo.tmpfs)
    return {
      check: 'state.space',
      severity: 'warn',
      what: `${notTmpfs}; it has room (${mib(need)} needed, ${mib(fsInfo.freeBytes)} free)`,
      // Room for two files: the old one and the new one made next to it at start.
      fix: `set state_file in ${cfg.file} to a path on a tmpfs (/run, /dev/shm), or mount one on ${dir}: mount -t tmpfs -o size=${Math.ceil((2 * need) / MiB) + 1}m,mode=0700 tmpfs ${dir}`,
    };
  return {
    check: 'state.space',
    severity: 'ok',
    what: `the state file for a ${size}-entry table takes ${mib(need)}; ${where} has ${mib(fsInfo.freeBytes)} free${exists ? ', room for the new file next to the old one' : ''}`,
  };
}

function checkFile(cfg: Config, h: HostView, path: string, sf: StateFileView | null, running: boolean): Finding {
  if (sf === null) return { check: 'state.file', severity: 'ok', what: `no state file yet (${path}): the first start makes one` };
  if ('error' in sf)
    return {
      check: 'state.file',
      severity: 'skip',
      what: `cannot read the state file ${path} (${sf.error})`,
      fix: 'run lbd doctor with lbd’s privileges (as root)',
    };
  const { header } = sf;
  if (typeof header === 'string') {
    return running
      ? {
          check: 'state.file',
          severity: 'warn',
          what: `this lbd cannot adopt the running lbd's state file ${path} (${header}): a restart sets it aside and starts with an empty table, cutting the connections it tracks`,
          fix: `restart lbd when losing its connections is acceptable (lbd --config ${cfg.file} --fresh says so on purpose)`,
        }
      : {
          check: 'state.file',
          severity: 'warn',
          what: `the next start sets the state file ${path} (${mib(sf.bytes)}) aside as ${path}.rejected (${header}) and starts with an empty table`,
          fix: `lbd --config ${cfg.file} --fresh (replaces it), or rm ${path}`,
        };
  }
  const alive = header.pid > 0 && h.processAlive(header.pid, header.startedMs);
  const parts = [`${header.connCapacity}-entry table, written by pid ${header.pid}, which ${alive ? 'is running' : 'has stopped'}`];
  if (!alive)
    parts.push(
      header.stopped ? 'it stopped on a signal (the table was quiet)' : 'it ended without stopping (a crash or SIGKILL): the next lbd checks every entry',
    );
  if (header.restarts > 0) parts.push(`the table lived through ${header.restarts} restart${header.restarts === 1 ? '' : 's'}`);
  if (alive && !running)
    parts.push(
      `but no lbd answers on ${cfg.metrics.listen}: pid ${header.pid} holds ${path}.lock (an lbd with another metrics address, or one starting or stopping), and another lbd with this state file does not start while it runs`,
    );
  const size = cfg.connection_table.size;
  if (header.connCapacity !== size)
    parts.push(
      `the config says ${size} entries: that is fine, the next start makes a ${size}-entry table and adopts the entries into it` +
        (size < header.connCapacity ? ' (those that do not fit are dropped, counted as table_full)' : ''),
    );
  return { check: 'state.file', severity: 'ok', what: `state file ${path}: ${parts.join('; ')}` };
}

function checkRejected(cfg: Config, h: HostView, path: string, running: boolean): Finding[] {
  const rejected = `${path}.rejected`;
  const st = h.fileStat(rejected);
  if (!st) return [];
  return [
    {
      check: 'state.rejected',
      severity: 'warn',
      what: `an lbd set a state file aside here: ${rejected} (${mib(st.bytes)}, since ${new Date(st.mtimeMs).toISOString()}) could not be adopted; it takes room next to the state file`,
      fix: running
        ? `look at it (lbd's log of that start says why it was set aside), then rm ${rejected}`
        : `look at it (lbd's log of that start says why it was set aside), then rm ${rejected} (or lbd stop --clean --config ${cfg.file}, which removes it with the state file)`,
    },
  ];
}

/** The state file's findings: state.space, state.file, and state.rejected when there is one. */
export function checkStateFile(cfg: Config, h: HostView, running: boolean): Finding[] {
  const path = stateFilePath(cfg);
  const sf = h.stateFile(path);
  return [checkSpace(cfg, h, path, sf !== null), checkFile(cfg, h, path, sf, running), ...checkRejected(cfg, h, path, running)];
}
