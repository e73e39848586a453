/**
 * The shared state: every array the TypeScript path and the native fast path read or write (the
 * connection and template tables, the real-server and service tables, the counters, the clock,
 * the timeouts and the MACs), as typed-array views over ONE region laid out by contract.ts's
 * stateLayout(). The Forwarder owns it; its tables work on these views, and the native path's
 * attach() is handed the very same arrays. One region, one layout version: what a memory-mapped
 * state file can back, so that another process can adopt it.
 */
import { STATE_LAYOUT_VERSION, type StateArrays, type StateElement, type StateField, connSlotsFor, stateLayout } from './contract';

const BYTES: Record<StateElement, number> = { u8: 1, i32: 4, u32: 4, f64: 8 };
const VIEW = { u8: Uint8Array, i32: Int32Array, u32: Uint32Array, f64: Float64Array } as const;

/** Where each field starts and how many bytes the region takes. */
export function regionPlan(fields: readonly StateField[]): { offsets: number[]; bytes: number } {
  const offsets: number[] = [];
  let at = 0;
  for (const f of fields) {
    at = (at + 7) & ~7; // every field 8-byte aligned, whatever came before it
    offsets.push(at);
    at += f.length * BYTES[f.type];
  }
  return { offsets, bytes: (at + 7) & ~7 };
}

export class SharedState {
  readonly layoutVersion = STATE_LAYOUT_VERSION;
  readonly region: ArrayBuffer;
  readonly arrays: StateArrays;
  readonly connCapacity: number;
  readonly connSlots: number;
  readonly templateCapacity: number;
  readonly templateSlots: number;

  /** A zeroed region for a connection table of `connCapacity` entries (and a quarter as many templates, at least 1024). */
  constructor(connCapacity: number) {
    this.connCapacity = connCapacity;
    this.connSlots = connSlotsFor(connCapacity);
    // One template per client network at most, and usually far fewer than flows.
    this.templateCapacity = Math.max(1024, connCapacity >>> 2);
    this.templateSlots = connSlotsFor(this.templateCapacity);
    const fields = stateLayout(this.connSlots, this.templateSlots);
    const plan = regionPlan(fields);
    this.region = new ArrayBuffer(plan.bytes);
    const arrays: Partial<Record<keyof StateArrays, unknown>> = {};
    fields.forEach((f, i) => (arrays[f.name] = new VIEW[f.type](this.region, plan.offsets[i], f.length)));
    this.arrays = arrays as StateArrays;
  }
}
