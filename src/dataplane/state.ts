/**
 * The shared state: every array the TypeScript path and the native fast path read or write (the
 * connection and template tables, the real-server and service tables and who they are, the
 * counters, the clock, the timeouts and the MACs), as typed-array views over ONE region laid out
 * by contract.ts's stateLayout(). The Forwarder owns it; its tables work on these views, and the
 * native path's attach() is handed the very same arrays. The region is an ArrayBuffer of its own,
 * or a part of a memory-mapped state file (state-file.ts) that the next lbd adopts.
 */
import { STATE_LAYOUT_VERSION, type StateArrays, type StateElement, type StateField, connSlotsFor, stateLayout } from './contract';

const BYTES: Record<StateElement, number> = { u8: 1, i32: 4, u32: 4, f64: 8 };
const VIEW = { u8: Uint8Array, i32: Int32Array, u32: Uint32Array, f64: Float64Array } as const;

/** Where each field starts and how many bytes the region takes. */
export function regionPlan(fields: readonly StateField[]): { offsets: number[]; bytes: number } {
  const offsets: number[] = [];
  let at = 0;
  for (const f of fields) {
    at = Math.ceil(at / 8) * 8; // every field 8-byte aligned (not with & ~7: a region may pass 2 GiB)
    offsets.push(at);
    at += f.length * BYTES[f.type];
  }
  return { offsets, bytes: Math.ceil(at / 8) * 8 };
}

/** The table sizes a region is laid out for. */
export interface RegionSizes {
  connCapacity: number;
  connSlots: number;
  templateCapacity: number;
  templateSlots: number;
}

/** The sizes for a connection table of `connCapacity` entries (and a quarter as many templates, at least 1024). */
export function regionSizes(connCapacity: number): RegionSizes {
  // One template per client network at most, and usually far fewer than flows.
  const templateCapacity = Math.max(1024, connCapacity >>> 2);
  return { connCapacity, connSlots: connSlotsFor(connCapacity), templateCapacity, templateSlots: connSlotsFor(templateCapacity) };
}

/** Bytes of a region of these sizes. */
export function regionBytes(s: RegionSizes): number {
  return regionPlan(stateLayout(s.connSlots, s.templateSlots)).bytes;
}

/** Every array of a region of these sizes that starts at `offset` in `buffer` (which must hold regionBytes()). */
export function regionViews(buffer: ArrayBuffer, offset: number, s: RegionSizes): StateArrays {
  const fields = stateLayout(s.connSlots, s.templateSlots);
  const plan = regionPlan(fields);
  if (offset + plan.bytes > buffer.byteLength) throw new RangeError(`a region of ${plan.bytes} bytes does not fit at ${offset} in ${buffer.byteLength}`);
  const arrays: Partial<Record<keyof StateArrays, unknown>> = {};
  fields.forEach((f, i) => (arrays[f.name] = new VIEW[f.type](buffer, offset + plan.offsets[i], f.length)));
  return arrays as StateArrays;
}

export class SharedState implements RegionSizes {
  readonly layoutVersion = STATE_LAYOUT_VERSION;
  readonly region: ArrayBuffer;
  readonly arrays: StateArrays;
  readonly connCapacity: number;
  readonly connSlots: number;
  readonly templateCapacity: number;
  readonly templateSlots: number;

  /**
   * A region for a connection table of `connCapacity` entries: a zeroed ArrayBuffer of its own, or
   * `backing` (zeroed too: a new state file) from byte `offset` on.
   */
  constructor(connCapacity: number, backing?: { buffer: ArrayBuffer; offset: number }) {
    const s = regionSizes(connCapacity);
    this.connCapacity = s.connCapacity;
    this.connSlots = s.connSlots;
    this.templateCapacity = s.templateCapacity;
    this.templateSlots = s.templateSlots;
    this.region = backing?.buffer ?? prefaulted(new ArrayBuffer(regionBytes(s)));
    this.arrays = regionViews(this.region, backing?.offset ?? 0, s);
  }
}

/**
 * The buffer with one byte of every page written (zero over zero): the pages' faults are taken
 * now, at start, not one by one by the first flows that land on them, inside upcalls and lookups
 * (a state file's mapping is prefaulted the same way by the addon).
 */
function prefaulted(buffer: ArrayBuffer): ArrayBuffer {
  const bytes = new Uint8Array(buffer);
  for (let i = 0; i < bytes.length; i += 4096) bytes[i] = 0;
  return buffer;
}
