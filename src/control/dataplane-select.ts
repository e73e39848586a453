/**
 * Which data-plane path the daemon runs (config `dataplane: auto | native | ts`) and the ports it
 * opens for it: control policy, kept out of the data plane itself.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/types';
import { type NativeLoad, loadNative } from '../dataplane/binding';
import { Port, RingPort } from '../dataplane/io';
import { NativePort } from '../dataplane/native';
import { BindingError, LbdError } from '../errors';

export interface DataplaneSelection {
  path: 'native' | 'ts';
  /** Why the TypeScript path runs although native was possible in principle (auto); null otherwise. */
  fallbackReason: string | null;
  /**
   * Opens ports for the daemon: on the native path the fast path's port on the capture interface
   * and RingPorts elsewhere (egress ARP, local access); on the TypeScript path RingPorts only.
   */
  openPort: (iface: string, filter: string) => Port;
}

/** The selection's opener under in-memory ports: the caller opens every port itself. */
const callerOpensPorts = (): Port => {
  throw new LbdError('E_NATIVE', 'in-memory ports: the caller opens them');
};

/**
 * Picks the data-plane path for the daemon: `ts` → the TypeScript path; `native` → the addon's
 * fast path or an error saying why not; `auto` → the fast path when the capture interface opens
 * for it, else the TypeScript path with a warning. Either path captures through the binding:
 * when none loads, a BindingError says what was tried and how to build one, whatever the mode.
 * In-memory ports (tests) always run the TypeScript path and need no binding.
 */
export function selectDataplane(cfg: Config, o: { inMemory: boolean; log: Logger; filter: string; load?: NativeLoad }): DataplaneSelection {
  const mode = cfg.dataplane;
  if (o.inMemory) return { path: 'ts', fallbackReason: null, openPort: callerOpensPorts };
  const load = o.load ?? loadNative();
  if (!load.ok) throw new BindingError(load.reason);
  const ring = (iface: string, filter: string): Port => new RingPort(iface, filter);
  if (mode === 'ts') return { path: 'ts', fallbackReason: null, openPort: ring };
  const { capture, egress } = cfg.interfaces;
  let first: NativePort | null = null;
  try {
    first = new NativePort(capture, egress, o.filter);
  } catch (e) {
    const reason = (e as Error).message;
    if (mode === 'native') {
      throw new LbdError(
        'E_NATIVE',
        `dataplane: native, but the native fast path cannot run: ${reason} (use dataplane: auto or ts to run the TypeScript path)`,
      );
    }
    o.log.warn({ reason }, 'native fast path unavailable: running the TypeScript data plane');
    return { path: 'ts', fallbackReason: reason, openPort: ring };
  }
  return {
    path: 'native',
    fallbackReason: null,
    openPort: (iface, filter) => {
      if (iface !== capture) return ring(iface, filter); // the egress interface: ARP only; lbd0
      if (first) {
        // The port opened to find out whether native works is the daemon's first capture port.
        const p = first;
        first = null;
        if (filter !== o.filter) p.setFilter(filter);
        return p;
      }
      return new NativePort(capture, egress, filter);
    },
  };
}
