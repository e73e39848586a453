import { SLOT_EMPTY, type StateArrays, connSlotsFor, flowHash } from './contract';

/** The arrays of one table, in the shared state (state.ts) or of its own: the connection table's layout. */
export type ConnArrays = Pick<StateArrays, 'keyAddr' | 'keyPort' | 'dest' | 'state' | 'flags' | 'expires' | 'refs'>;

/**
 * The connection table: fixed capacity, open addressing with linear probing over parallel
 * typed arrays (layout in contract.ts). Nothing is allocated after construction, and a lookup
 * touches a handful of array elements. Deletion shifts the following cluster back (no
 * tombstones), so probe chains never grow with churn.
 */
export class ConnTable {
  readonly capacity: number;
  readonly slots: number;
  readonly mask: number;
  readonly keyAddr: Uint32Array;
  readonly keyPort: Uint32Array;
  readonly dest: Int32Array;
  readonly state: Uint8Array;
  readonly flags: Uint8Array;
  readonly expires: Uint32Array;
  /** Templates only: how many connections currently rely on this template. */
  readonly refs: Uint32Array;
  size = 0;

  /**
   * A table of `capacity` entries over `arrays` (the shared state's), or over arrays of its own.
   * At most half full: linear probing stays short (expected < 2.5 probes on a miss).
   */
  constructor(capacity: number, arrays?: ConnArrays) {
    this.capacity = capacity;
    const slots = connSlotsFor(capacity);
    this.slots = slots;
    this.mask = slots - 1;
    const a = arrays ?? {
      keyAddr: new Uint32Array(slots),
      keyPort: new Uint32Array(slots),
      dest: new Int32Array(slots),
      state: new Uint8Array(slots),
      flags: new Uint8Array(slots),
      expires: new Uint32Array(slots),
      refs: new Uint32Array(slots),
    };
    if (a.dest.length !== slots) throw new Error(`connection table arrays of ${a.dest.length} slots for a capacity of ${capacity} (${slots} slots)`);
    this.keyAddr = a.keyAddr;
    this.keyPort = a.keyPort;
    this.dest = a.dest.fill(SLOT_EMPTY);
    this.state = a.state;
    this.flags = a.flags;
    this.expires = a.expires;
    this.refs = a.refs;
  }

  /** The slot holding (addr, port), or -1. `port` is (service << 16) | client port. */
  find(addr: number, port: number): number {
    const mask = this.mask;
    let i = flowHash(addr, port) & mask;
    for (;;) {
      if (this.dest[i] === SLOT_EMPTY) return -1;
      if (this.keyAddr[i] === addr && this.keyPort[i] === port) return i;
      i = (i + 1) & mask;
    }
  }

  /** Inserts a new entry (the caller checked it is absent) and returns its slot, or -1 when full. */
  insert(addr: number, port: number, dest: number, state: number, flags: number, expires: number): number {
    if (this.size >= this.capacity) return -1;
    const mask = this.mask;
    let i = flowHash(addr, port) & mask;
    while (this.dest[i] !== SLOT_EMPTY) i = (i + 1) & mask;
    this.keyAddr[i] = addr >>> 0;
    this.keyPort[i] = port >>> 0;
    this.dest[i] = dest;
    this.state[i] = state;
    this.flags[i] = flags;
    this.expires[i] = expires;
    this.refs[i] = 0;
    this.size++;
    return i;
  }

  /**
   * Removes the entry at `slot` and closes the gap: every entry after it in the same cluster
   * whose home slot does not lie cyclically in (slot, j] moves back into the gap.
   * Returns true when an entry was moved into `slot` (a sweeping caller must look at it again).
   */
  remove(slot: number): boolean {
    const mask = this.mask;
    let gap = slot;
    let movedIntoSlot = false;
    let j = slot;
    for (;;) {
      j = (j + 1) & mask;
      if (this.dest[j] === SLOT_EMPTY) break;
      const home = flowHash(this.keyAddr[j], this.keyPort[j]) & mask;
      // Distance from home to j and from home to the gap, both going forward around the ring:
      // the entry may fill the gap only if the gap is not past it on its own probe path.
      if (((j - home) & mask) >= ((j - gap) & mask)) {
        this.move(j, gap);
        if (gap === slot) movedIntoSlot = true;
        gap = j;
      }
    }
    this.dest[gap] = SLOT_EMPTY;
    this.size--;
    return movedIntoSlot;
  }

  private move(from: number, to: number): void {
    this.keyAddr[to] = this.keyAddr[from];
    this.keyPort[to] = this.keyPort[from];
    this.dest[to] = this.dest[from];
    this.state[to] = this.state[from];
    this.flags[to] = this.flags[from];
    this.expires[to] = this.expires[from];
    this.refs[to] = this.refs[from];
  }

  clear(): void {
    this.dest.fill(SLOT_EMPTY);
    this.size = 0;
  }
}

/** Packs the service index and client port the way the table keys them. */
export function connPort(service: number, clientPort: number): number {
  return ((service << 16) | clientPort) >>> 0;
}
