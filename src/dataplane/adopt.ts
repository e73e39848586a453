/**
 * Adopting the table a previous lbd left in its state file (state-file.ts): every entry is checked
 * before it is trusted (a SIGKILL can land in the middle of a write), then carried into this lbd's
 * own tables under this lbd's numbering: a real server is known by its service (VIP, port,
 * protocol) and its address and port, never by the previous process's index alone.
 *
 * An entry is rejected, and counted by reason, when:
 *   corrupt     an index out of range, a state or flag that cannot be, a real server that is not
 *               its service's;
 *   misplaced   it does not sit on the probe path from its home slot (a move cut short);
 *   duplicate   its key is there twice (a move cut short: ConnTable.move() writes the key first,
 *               so the copy nearer its home slot may carry another entry's server; the farther
 *               one, the entry as it was, is kept);
 *   expired     its time had come while no lbd ran (a template only if no connection holds it);
 *   removed     its service or real server is not in this lbd's config and on_remove is drop;
 *   persistence_changed  a template of a service whose persistence settings changed;
 *   table_full  this lbd's table (or its real-server or service numbering) has no room left.
 * An expiry further away than the previous lbd's longest timeout (a timeout lowered by a reload
 * after the entry was refreshed) is brought down to it, not held against the entry.
 */
import {
  CONN_F_INACTIVE,
  CONN_F_PERSIST,
  CONN_FLAGS_ALL,
  ConnState,
  IPPROTO_UDP,
  MAX_DESTS,
  SLOT_EMPTY,
  type StateArrays,
  TIMEOUTS_LEN,
  flowHash,
} from './contract';
import { connPort } from './conntable';
import type { Forwarder } from './forwarder';
import { DEST_F_OVERLOAD } from '../scheduler/index';
import type { RealServer, VirtualService } from './services';
import type { PreviousState } from './state-file';

export const ADOPT_REJECTS = ['corrupt', 'misplaced', 'duplicate', 'expired', 'removed', 'persistence_changed', 'table_full'] as const;
export type AdoptReject = (typeof ADOPT_REJECTS)[number];

/** A service as the previous lbd's region names it. */
export interface OldService {
  index: number;
  vip: number;
  port: number;
  proto: number;
  persistence: number;
  persistenceMask: number;
}

/** A real server as the previous lbd's region names it, with what it knew of it. */
export interface OldDest {
  index: number;
  service: OldService;
  addr: number;
  port: number;
  /** Its MAC, when the previous lbd had resolved it. */
  mac: Uint8Array | null;
  /** Its health verdict (DEST_HEALTH_*). */
  health: number;
}

/** This lbd's service and real server for the previous one's; null: not here (on_remove drop); undefined: no room for it (table_full). */
export interface AdoptMap {
  service(old: OldService): VirtualService | null | undefined;
  dest(old: OldDest, service: VirtualService): RealServer | null | undefined;
}

export interface Adopted {
  flows: number;
  templates: number;
  rejected: Record<AdoptReject, number>;
}

type Table = 'conn' | 'template';

/** The previous region's arrays of one table. */
function tableOf(a: StateArrays, t: Table) {
  return t === 'conn'
    ? { keyAddr: a.keyAddr, keyPort: a.keyPort, dest: a.dest, state: a.state, flags: a.flags, expires: a.expires }
    : { keyAddr: a.tplKeyAddr, keyPort: a.tplKeyPort, dest: a.tplDest, state: a.tplState, flags: a.tplFlags, expires: a.tplExpires };
}

/**
 * Reads and checks the previous lbd's tables: the services and real servers its sound entries
 * point at, and a pass over each table that hands every entry's verdict to `visit`.
 */
export class PreviousTables {
  readonly services = new Map<number, OldService>();
  readonly dests = new Map<number, OldDest>();
  private readonly a: StateArrays;
  /** The longest a connection entry may still have to live: the previous lbd's longest timeout. */
  private readonly maxTimeout: number;
  /** Slots holding the nearer copy of a key that is there twice, per table. */
  private readonly torn: Record<Table, Set<number>> = { conn: new Set(), template: new Set() };
  /** The sound entries' slots, per table, in slot order (one pass over each table finds them). */
  private readonly sound: Record<Table, number[]> = { conn: [], template: [] };
  /** Entries found unsound in that pass, by reason. */
  private readonly unsound = Object.fromEntries(ADOPT_REJECTS.map((r) => [r, 0])) as Record<AdoptReject, number>;

  constructor(
    prev: PreviousState,
    private readonly now: number,
  ) {
    this.a = prev.arrays;
    let max = 0;
    for (let i = 0; i < TIMEOUTS_LEN; i++) max = Math.max(max, this.a.timeouts[i]);
    this.maxTimeout = max;
    for (const t of ['template', 'conn'] as const) this.findTorn(t);
    for (const t of ['template', 'conn'] as const) this.scan(t);
  }

  /** Marks every slot whose key appears again further along the same probe path. */
  private findTorn(t: Table): void {
    const tab = tableOf(this.a, t);
    const mask = tab.dest.length - 1;
    for (let i = 0; i <= mask; i++) {
      if (tab.dest[i] === SLOT_EMPTY) continue;
      for (let j = flowHash(tab.keyAddr[i], tab.keyPort[i]) & mask; j !== i; j = (j + 1) & mask) {
        if (tab.dest[j] === SLOT_EMPTY) break;
        if (tab.keyAddr[j] === tab.keyAddr[i] && tab.keyPort[j] === tab.keyPort[i]) this.torn[t].add(j);
      }
    }
  }

  /** Checks every entry of `t`: a sound one's slot is kept (its service and server noted), an unsound one counted. */
  private scan(t: Table): void {
    const tab = tableOf(this.a, t);
    const mask = tab.dest.length - 1;
    const sound = this.sound[t];
    for (let i = 0; i <= mask; i++) {
      if (tab.dest[i] === SLOT_EMPTY) continue;
      const problem = this.check(t, tab, mask, i);
      if (problem === null) sound.push(i);
      else this.unsound[problem]++;
    }
  }

  private check(t: Table, tab: ReturnType<typeof tableOf>, mask: number, i: number): AdoptReject | null {
    const a = this.a;
    const d = tab.dest[i];
    const svcIndex = tab.keyPort[i] >>> 16;
    if (d < 0 || d >= MAX_DESTS || a.destSvc[d] !== svcIndex + 1 || a.svcKeyPortProto[svcIndex] === 0) return 'corrupt';
    const proto = a.svcKeyPortProto[svcIndex] & 0xff;
    const state = tab.state[i];
    if (t === 'template') {
      if (state !== ConnState.Template || (tab.keyPort[i] & 0xffff) !== 0 || tab.flags[i] !== 0) return 'corrupt';
    } else {
      const valid = proto === IPPROTO_UDP ? state === ConnState.Udp : state < ConnState.Udp;
      if (!valid || (tab.flags[i] & ~CONN_FLAGS_ALL) !== 0) return 'corrupt';
    }
    // On the probe path from its home slot: no empty slot between home and here.
    for (let j = flowHash(tab.keyAddr[i], tab.keyPort[i]) & mask; j !== i; j = (j + 1) & mask) {
      if (tab.dest[j] === SLOT_EMPTY) return 'misplaced';
    }
    if (this.torn[t].has(i)) return 'duplicate';
    // A template past its time that connections still hold is kept: the previous lbd would have
    // given it another period at its next sweep.
    if (tab.expires[i] <= this.now && (t === 'conn' || a.tplRefs[i] === 0)) return 'expired';
    this.note(svcIndex, d);
    return null;
  }

  private note(svcIndex: number, d: number): void {
    const a = this.a;
    let svc = this.services.get(svcIndex);
    if (!svc) {
      const pp = a.svcKeyPortProto[svcIndex];
      svc = {
        index: svcIndex,
        vip: a.svcKeyVip[svcIndex],
        port: pp >>> 8,
        proto: pp & 0xff,
        persistence: a.svcPersist[svcIndex],
        persistenceMask: a.svcPersistMask[svcIndex],
      };
      this.services.set(svcIndex, svc);
    }
    if (!this.dests.has(d)) {
      const mac = a.macKnown[d] === 1 ? a.mac.slice(d * 6, d * 6 + 6) : null;
      this.dests.set(d, { index: d, service: svc, addr: a.destAddr[d], port: a.destPort[d], mac, health: a.destHealth[d] });
    }
  }

  /**
   * Carries every sound entry into `fw`'s tables (templates first, so that connections find the
   * template they hold), with this lbd's indices from `map`, and rebuilds the counts that derive
   * from the entries (ActiveConn, InActConn, PersistConn, template references, overload).
   */
  adoptInto(fw: Forwarder, map: AdoptMap): Adopted {
    const rejected = { ...this.unsound };
    const services = new Map<number, VirtualService | null | undefined>();
    const dests = new Map<number, RealServer | null | undefined>();
    const serviceFor = (old: OldService) => {
      if (!services.has(old.index)) services.set(old.index, map.service(old));
      return services.get(old.index);
    };
    const destFor = (old: OldDest, svc: VirtualService) => {
      if (!dests.has(old.index)) dests.set(old.index, map.dest(old, svc));
      return dests.get(old.index);
    };
    /** The entry's service and server here, or why not: 'removed' (on_remove drop) or 'table_full' (no room). */
    const resolve = (tab: ReturnType<typeof tableOf>, i: number): [VirtualService, RealServer] | 'removed' | 'table_full' => {
      const oldDest = this.dests.get(tab.dest[i])!;
      const svc = serviceFor(oldDest.service);
      if (!svc) return svc === null ? 'removed' : 'table_full';
      const rs = destFor(oldDest, svc);
      if (!rs) return rs === null ? 'removed' : 'table_full';
      return [svc, rs];
    };
    const touched = new Set<RealServer>();
    let templates = 0;
    let flows = 0;
    const tpl = tableOf(this.a, 'template');
    const adoptTemplate = (i: number): AdoptReject | null => {
      const r = resolve(tpl, i);
      if (typeof r === 'string') return r;
      const [svc, rs] = r;
      const old = this.services.get(tpl.keyPort[i] >>> 16)!;
      if (svc.persistence === 0 || svc.persistence !== old.persistence || svc.persistenceMask !== old.persistenceMask) return 'persistence_changed';
      const key = connPort(svc.index, 0);
      if (fw.templates.find(tpl.keyAddr[i], key) >= 0) return 'duplicate';
      // Past its time (connections hold it): another period; never further than one period away.
      const expires = tpl.expires[i] <= this.now ? this.now + svc.persistence : Math.min(tpl.expires[i], this.now + svc.persistence + 1);
      if (fw.templates.insert(tpl.keyAddr[i], key, rs.index, ConnState.Template, 0, expires) < 0) return 'table_full';
      fw.dests.persistent[rs.index]++;
      touched.add(rs);
      templates++;
      return null;
    };
    const conn = tableOf(this.a, 'conn');
    const adoptConn = (i: number): AdoptReject | null => {
      const r = resolve(conn, i);
      if (typeof r === 'string') return r;
      const [svc, rs] = r;
      const key = connPort(svc.index, conn.keyPort[i] & 0xffff);
      if (fw.conns.find(conn.keyAddr[i], key) >= 0) return 'duplicate';
      let flags = conn.flags[i];
      const t =
        (flags & CONN_F_PERSIST) !== 0 && svc.persistence > 0 ? fw.templates.find((conn.keyAddr[i] & svc.persistenceMask) >>> 0, connPort(svc.index, 0)) : -1;
      if (t < 0) flags &= ~CONN_F_PERSIST;
      const expires = Math.min(conn.expires[i], this.now + this.maxTimeout);
      if (fw.conns.insert(conn.keyAddr[i], key, rs.index, conn.state[i], flags, expires) < 0) return 'table_full';
      if (t >= 0) fw.templates.refs[t]++;
      if ((flags & CONN_F_INACTIVE) !== 0) fw.dests.inactive[rs.index]++;
      else fw.dests.active[rs.index]++;
      touched.add(rs);
      flows++;
      return null;
    };
    for (const i of this.sound.template) {
      const r = adoptTemplate(i);
      if (r !== null) rejected[r]++;
    }
    for (const i of this.sound.conn) {
      const r = adoptConn(i);
      if (r !== null) rejected[r]++;
    }
    // ip_vs_bind_dest's overload, for the counts just rebuilt.
    for (const rs of touched) {
      if (rs.uThreshold !== 0 && fw.dests.active[rs.index] + fw.dests.inactive[rs.index] >= rs.uThreshold) rs.flags |= DEST_F_OVERLOAD;
    }
    return { flows, templates, rejected };
  }
}
