/**
 * The state file: the shared state (state.ts) kept in a memory-mapped file on tmpfs, so that the
 * connections outlive the process. Every write either data path makes to its tables is a write to
 * the file the moment it is made (MAP_SHARED), so whatever ends lbd (SIGTERM, a crash, SIGKILL),
 * the next lbd finds the table as it was and adopts it (adopt.ts).
 *
 * The file: a header page, then the region as stateLayout() lays it out.
 *
 *   0   magic "LBDSTATE"                  8 bytes
 *   8   layout version (STATE_LAYOUT_VERSION)   u32
 *   12  header bytes (HEADER_BYTES)        u32
 *   16  connCapacity, connSlots, templateCapacity, templateSlots   u32 × 4
 *   32  MAX_DESTS, MAX_SERVICES, SERVICE_INDEXES                    u32 × 3
 *   44  (zero)                             u32
 *   48  region bytes                       f64
 *   56  boot id (/proc/sys/kernel/random/boot_id): the clock's base  36 bytes ASCII
 *   92  (zero)                             u32
 *   96  FNV-1a of bytes 0..95              u32
 *   --- written as lbd runs, outside the checksum ---
 *   128 restarts: how many lbds adopted this table before this one    u32
 *   132 writer's pid                       u32
 *   136 writer's start, ms since the epoch f64
 *   144 stopped: 1 once the writer stopped on a signal (the table was quiet when it ended)  u32
 *
 * The clock of the table's expiry times is CLOCK_MONOTONIC in whole seconds, the same for every
 * process of one boot: the boot id says which boot, and a file from another boot is not read.
 *
 * One lbd at a time: the file `<state file>.lock` is flocked for the life of the process (the
 * kernel lets go of it however the process ends), and whoever holds it may write the state file.
 */
import fs from 'node:fs';
import { InstanceConflictError, LbdError } from '../errors';
import { MAX_DESTS, MAX_SERVICES, SERVICE_INDEXES, STATE_LAYOUT_VERSION, type StateArrays, connSlotsFor } from './contract';
import { CONN_TABLE_MAX } from '../config/values';
import { type RegionSizes, SharedState, regionBytes, regionSizes, regionViews } from './state';

export const HEADER_BYTES = 4096;
const MAGIC = 'LBDSTATE';
const OFF_VERSION = 8;
const OFF_HEADER_BYTES = 12;
const OFF_SIZES = 16;
const OFF_LIMITS = 32;
const OFF_REGION_BYTES = 48;
const OFF_BOOT = 56;
const BOOT_LEN = 36;
const OFF_CHECKSUM = 96;
const OFF_RESTARTS = 128;
const OFF_PID = 132;
const OFF_STARTED = 136;
const OFF_STOPPED = 144;
/** A cell nobody writes: Atomics.wait on it is a synchronous sleep (startup only). */
const SLEEP_CELL = new Int32Array(new SharedArrayBuffer(4));
/** How long a starting lbd waits for the lock of an lbd that is still stopping. */
const LOCK_WAIT_MS = 2000;
/** The most connection-table entries a header may claim: config's connection_table.size maximum. */
const CAPACITY_MAX = CONN_TABLE_MAX;

/** What mapping and locking take (the addon's mapStateFile, lockFile, unlockFile; tests give their own). */
export interface StateFileIo {
  map(path: string, bytes: number): ArrayBuffer;
  /** The previous file read in place (mapped copy-on-write), code ENOENT when there is none; absent: read into memory. */
  mapExisting?(path: string): ArrayBuffer;
  lock(path: string): number;
  unlock(fd: number): void;
}

export class StateFileError extends LbdError {
  constructor(message: string) {
    super('E_STATE_FILE', message);
  }
}

/** The header of a state file, as read. */
export interface StateHeader extends RegionSizes {
  layoutVersion: number;
  bootId: string;
  restarts: number;
  pid: number;
  startedMs: number;
  stopped: boolean;
}

/** A state file that was read and found sound: its header and the arrays of its region (over a copy in memory). */
export interface PreviousState {
  header: StateHeader;
  arrays: StateArrays;
}

/** FNV-1a, 32 bits, over buf[0..len). */
function fnv1a(buf: Uint8Array, len: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < len; i++) h = Math.imul(h ^ buf[i], 0x01000193);
  return h >>> 0;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

/** This boot's id: the clock base of every expiry time in a state file. */
export function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().slice(0, BOOT_LEN);
  } catch {
    return '';
  }
}

/** The coarse clock of the data plane: CLOCK_MONOTONIC in whole seconds (libuv's hrtime), the same in every process of a boot. */
export function monotonicSeconds(): number {
  return process.hrtime()[0];
}

/** Writes a new header (restarts, pid and start included) into the first HEADER_BYTES of `buf`. */
export function writeHeader(buf: Uint8Array, s: RegionSizes, boot: string, restarts: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
  buf.fill(0, 0, HEADER_BYTES);
  for (let i = 0; i < MAGIC.length; i++) buf[i] = MAGIC.charCodeAt(i);
  v.setUint32(OFF_VERSION, STATE_LAYOUT_VERSION, true);
  v.setUint32(OFF_HEADER_BYTES, HEADER_BYTES, true);
  v.setUint32(OFF_SIZES, s.connCapacity, true);
  v.setUint32(OFF_SIZES + 4, s.connSlots, true);
  v.setUint32(OFF_SIZES + 8, s.templateCapacity, true);
  v.setUint32(OFF_SIZES + 12, s.templateSlots, true);
  v.setUint32(OFF_LIMITS, MAX_DESTS, true);
  v.setUint32(OFF_LIMITS + 4, MAX_SERVICES, true);
  v.setUint32(OFF_LIMITS + 8, SERVICE_INDEXES, true);
  v.setFloat64(OFF_REGION_BYTES, regionBytes(s), true);
  buf.set(Buffer.from(boot.slice(0, BOOT_LEN), 'latin1'), OFF_BOOT);
  v.setUint32(OFF_CHECKSUM, fnv1a(buf, OFF_CHECKSUM), true);
  v.setUint32(OFF_RESTARTS, restarts, true);
  v.setUint32(OFF_PID, process.pid, true);
  v.setFloat64(OFF_STARTED, Date.now(), true);
}

/** Marks the header: the writer stopped on a signal. */
export function markStopped(buf: Uint8Array): void {
  new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES).setUint32(OFF_STOPPED, 1, true);
}

/**
 * Reads the header of a state file's bytes: the header, or why the file cannot be adopted (not a
 * state file, another layout, a damaged header, other limits, another boot, a size that does not
 * match what its header says).
 */
export function readHeader(buf: Uint8Array, boot: string): StateHeader | string {
  if (buf.length < HEADER_BYTES) return `${buf.length} bytes, shorter than a header`;
  for (let i = 0; i < MAGIC.length; i++) if (buf[i] !== MAGIC.charCodeAt(i)) return 'not an lbd state file (no LBDSTATE magic)';
  const v = new DataView(buf.buffer, buf.byteOffset, HEADER_BYTES);
  const version = v.getUint32(OFF_VERSION, true);
  if (version !== STATE_LAYOUT_VERSION) return `layout version ${version}, this lbd reads ${STATE_LAYOUT_VERSION}`;
  if (v.getUint32(OFF_CHECKSUM, true) !== fnv1a(buf, OFF_CHECKSUM)) return 'header checksum does not match (damaged)';
  if (v.getUint32(OFF_HEADER_BYTES, true) !== HEADER_BYTES) return 'header size does not match';
  const limits = [v.getUint32(OFF_LIMITS, true), v.getUint32(OFF_LIMITS + 4, true), v.getUint32(OFF_LIMITS + 8, true)];
  if (limits[0] !== MAX_DESTS || limits[1] !== MAX_SERVICES || limits[2] !== SERVICE_INDEXES)
    return `built for ${limits[0]} real servers, ${limits[1]} services and ${limits[2]} service indexes (this lbd: ${MAX_DESTS}, ${MAX_SERVICES}, ${SERVICE_INDEXES})`;
  const sizes: RegionSizes = {
    connCapacity: v.getUint32(OFF_SIZES, true),
    connSlots: v.getUint32(OFF_SIZES + 4, true),
    templateCapacity: v.getUint32(OFF_SIZES + 8, true),
    templateSlots: v.getUint32(OFF_SIZES + 12, true),
  };
  const sane =
    sizes.connCapacity > 0 &&
    sizes.connCapacity <= CAPACITY_MAX &&
    sizes.templateCapacity > 0 &&
    sizes.templateCapacity <= CAPACITY_MAX &&
    isPowerOfTwo(sizes.connSlots) &&
    sizes.connSlots === connSlotsFor(sizes.connCapacity) &&
    isPowerOfTwo(sizes.templateSlots) &&
    sizes.templateSlots === connSlotsFor(sizes.templateCapacity);
  if (!sane) return 'table sizes in the header do not add up';
  const bytes = regionBytes(sizes);
  if (v.getFloat64(OFF_REGION_BYTES, true) !== bytes || buf.length !== HEADER_BYTES + bytes)
    return `${buf.length} bytes where the header's tables take ${HEADER_BYTES + bytes} (cut short?)`;
  const fileBoot = Buffer.from(buf.subarray(OFF_BOOT, OFF_BOOT + BOOT_LEN))
    .toString('latin1')
    .replace(/\0+$/, '');
  if (boot !== '' && fileBoot !== boot) return 'written before the last boot (its clock is not this boot’s)';
  return {
    ...sizes,
    layoutVersion: version,
    bootId: fileBoot,
    restarts: v.getUint32(OFF_RESTARTS, true),
    pid: v.getUint32(OFF_PID, true),
    startedMs: v.getFloat64(OFF_STARTED, true),
    stopped: v.getUint32(OFF_STOPPED, true) === 1,
  };
}

/** The outcome of looking at the state file left by the previous lbd. */
export type Previous =
  { kind: 'none' } | { kind: 'fresh' } | { kind: 'adoptable'; state: PreviousState } | { kind: 'set-aside'; reason: string; movedTo: string };

/**
 * One lbd's state file: open() takes the lock, previous() reads what the last lbd left, create()
 * maps a new file that the Forwarder's region lies in, commit() puts it in the old one's place.
 * The new file is written beside the old one and renamed over it only when the adoption is done,
 * so an lbd killed while adopting leaves the old file for the next try.
 */
export class StateFile {
  private lockFd = -1;
  private header: Uint8Array | null = null;
  private committed = false;

  private constructor(
    readonly path: string,
    private readonly io: StateFileIo,
  ) {}

  /**
   * Takes `<path>.lock` (see lock()). The directory is made (0750) when missing: it is also the
   * admin socket's (/run/lbd), which lbd's group must be able to reach; the files in it are lbd's own.
   */
  static open(path: string, io: StateFileIo, waitMs = LOCK_WAIT_MS, pollMs = 20): StateFile {
    const f = StateFile.unlocked(path, io);
    f.lock(waitMs, pollMs);
    return f;
  }

  /**
   * The state file without its lock yet: a hand-over makes its new file (create()) while the old
   * lbd still runs, and takes the lock (lock()) once it has told that one to let go.
   */
  static unlocked(path: string, io: StateFileIo): StateFile {
    const dir = path.slice(0, path.lastIndexOf('/')) || '/';
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o750 });
    } catch (e) {
      throw new StateFileError(`cannot create ${dir} for the state file: ${(e as Error).message}`);
    }
    return new StateFile(path, io);
  }

  /**
   * Takes `<path>.lock`; InstanceConflictError when another process holds it for longer than
   * `waitMs` (an lbd still stopping lets go within a moment: a restart waits for it). Startup
   * only: it sleeps synchronously between tries, `pollMs` apart.
   */
  lock(waitMs = LOCK_WAIT_MS, pollMs = 20): void {
    const path = this.path;
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        this.lockFd = this.io.lock(`${path}.lock`);
        return;
      } catch (e) {
        if ((e as { code?: string }).code !== 'EWOULDBLOCK') throw new StateFileError((e as Error).message);
        if (Date.now() >= deadline)
          throw new InstanceConflictError(
            `another lbd runs with the state file ${path} (it holds ${path}.lock): stop it first, or give this one another state_file`,
          );
        Atomics.wait(SLEEP_CELL, 0, 0, pollMs);
      }
    }
  }

  /** What the previous lbd left: nothing, a file to adopt, or one set aside (renamed to `<path>.rejected`). */
  previous(fresh: boolean, boot: string = bootId()): Previous {
    if (!fs.existsSync(this.path)) return { kind: 'none' };
    if (fresh) return { kind: 'fresh' };
    let bytes: Buffer;
    try {
      // In place when the addon can map it: a copy of a 1M-entry table (56 MiB) took a quarter of a second.
      bytes = this.io.mapExisting ? Buffer.from(this.io.mapExisting(this.path)) : fs.readFileSync(this.path);
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') return { kind: 'none' };
      return this.setAside(`unreadable: ${(e as Error).message}`);
    }
    // The views need 8-byte alignment (f64 fields): a pooled Buffer may not start on it.
    if (bytes.byteOffset % 8 !== 0) bytes = Buffer.from(bytes);
    const header = readHeader(bytes, boot);
    if (typeof header === 'string') return this.setAside(header);
    const arrays = regionViews(bytes.buffer as ArrayBuffer, bytes.byteOffset + HEADER_BYTES, header);
    return { kind: 'adoptable', state: { header, arrays } };
  }

  /** The previous file, read but not adopted after all: set aside like one that did not match. */
  setAsidePrevious(): void {
    this.setAside('');
  }

  private setAside(reason: string): Previous {
    const movedTo = `${this.path}.rejected`;
    try {
      fs.renameSync(this.path, movedTo);
    } catch {
      // Unreadable and unmovable: the new file replaces it at commit().
    }
    return { kind: 'set-aside', reason, movedTo };
  }

  /** A new state file (at `<path>.new` until commit()) for `connCapacity` entries, its region for the Forwarder. */
  create(connCapacity: number, restarts = 0, boot: string = bootId()): SharedState {
    const sizes = regionSizes(connCapacity);
    let buffer: ArrayBuffer;
    try {
      buffer = this.io.map(`${this.path}.new`, HEADER_BYTES + regionBytes(sizes));
    } catch (e) {
      throw new StateFileError((e as Error).message);
    }
    this.header = new Uint8Array(buffer, 0, HEADER_BYTES);
    writeHeader(this.header, sizes, boot, restarts);
    return new SharedState(connCapacity, { buffer, offset: HEADER_BYTES });
  }

  /** The header's count of restarts this table lived through (known once the previous file was read). */
  setRestarts(restarts: number): void {
    if (this.header) new DataView(this.header.buffer, this.header.byteOffset, HEADER_BYTES).setUint32(OFF_RESTARTS, restarts, true);
  }

  /** The new file takes the old one's name: from now on it is what the next lbd adopts. */
  commit(): void {
    try {
      fs.renameSync(`${this.path}.new`, this.path);
      this.committed = true;
    } catch (e) {
      throw new StateFileError(`cannot put the state file in place: ${(e as Error).message}`);
    }
  }

  /** The table was left quiet (lbd stopped on a signal): said in the header for the next lbd's log line. */
  markStopped(): void {
    if (this.header) markStopped(this.header);
  }

  /**
   * lbd stop --clean: the state file goes, with what was set aside. The lock file stays (an
   * empty file): removing a file someone may be about to flock would let two lbds lock two files.
   */
  remove(): void {
    for (const p of [this.path, `${this.path}.new`, `${this.path}.rejected`]) fs.rmSync(p, { force: true });
  }

  /** Lets go of the lock (the file stays for the next lbd); the end of the process does the same. */
  release(): void {
    if (this.lockFd >= 0) this.io.unlock(this.lockFd);
    this.lockFd = -1;
  }

  get isCommitted(): boolean {
    return this.committed;
  }
}
