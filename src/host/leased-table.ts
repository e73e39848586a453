/**
 * One of lbd's nftables tables, owned and leased. A netdev-ingress table on one device whose
 * rules match through one set, and the set's elements (what the rules cover: VIP:port pairs,
 * VIPs) carry timeouts that lbd renews while it runs. So:
 *  - lbd gone by exit, crash or SIGKILL: the elements expire a lease after the last renewal
 *    and the rules match nothing: a dead lbd never black-holes traffic for long;
 *  - lbd restarted within the lease: the new one finds the elements still there and takes the
 *    table over in one transaction: traffic is never unguarded in between;
 *  - ownership: the table and its set carry the owner's tag (owner.ts); a table whose owner
 *    still runs is never touched (claim() refuses, remove() leaves it), one whose owner is
 *    gone is taken over;
 *  - watched: restore() compares what the kernel has with what lbd wants and puts it back
 *    (host-keeper.ts calls it when `nft monitor` reports a change, and at each renewal).
 * nft calls on one table run one at a time, in order.
 */
import { InstanceConflictError } from '../errors';
import { nftApply, nftElementText, nftListTable, type NftObject } from './nftables';
import { ownerAlive, ownerTag, parseOwnerTag, sameOwner, type Owner } from './owner';

/**
 * How long lbd's nftables elements outlive their last renewal (renewed every third of it): a
 * dead lbd's guard lapses this long after it died; a restart within it finds the guard in place.
 */
export const HOST_LEASE_S = 15;

export interface LeasedTableSpec {
  /** The table's name (family netdev). */
  name: string;
  /** What it is for, in logs and the restore metric: "guard", "probe". */
  role: string;
  /** The interface its ingress chain hooks. */
  device: string;
  chain: string;
  /** The set the rules match through, and its nft type ("ipv4_addr . inet_proto . inet_service"). */
  set: string;
  type: string;
  /** The chain's rules, each referring to @set. nft 1.0.6 wants one rule per line. */
  rules: string[];
}

/** What the kernel has of a table, as far as lbd checks it. */
export interface TableState {
  owner: Owner | null;
  chain: boolean;
  rules: number;
  elements: Set<string>;
}

export class LeasedTable {
  /** The elements the rules should match, in nft script words ("10.0.0.1 . tcp . 80"). */
  private elements: string[] = [];
  /** lbd made or took over the table and has not removed it. */
  installed = false;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly tag: string;

  constructor(
    readonly spec: LeasedTableSpec,
    private readonly owner: Owner,
    /** Seconds an element lives after its last renewal. */
    readonly leaseS: number,
  ) {
    this.tag = ownerTag(owner);
  }

  /** The elements, sorted, so that an unchanged list is recognised. */
  get wanted(): readonly string[] {
    return this.elements;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private elementList(): string {
    return this.elements.map((e) => `${e} timeout ${this.leaseS}s`).join(', ');
  }

  /**
   * The whole table in one transaction. "create" fails if the table exists (two lbds starting at
   * once: one of them loses); "replace" ("add" then "delete" then define) swaps a table in
   * atomically, elements included.
   */
  script(mode: 'create' | 'replace'): string {
    const s = this.spec;
    // (The comment goes with create/add: a later `table x { comment … }` block does not change it.)
    const head =
      mode === 'create'
        ? [`create table netdev ${s.name} { comment "${this.tag}"; }`]
        : [`add table netdev ${s.name}`, `delete table netdev ${s.name}`, `add table netdev ${s.name} { comment "${this.tag}"; }`];
    const elements = this.elements.length ? ` elements = { ${this.elementList()} };` : '';
    return [
      ...head,
      `table netdev ${s.name} {`,
      `  set ${s.set} { type ${s.type}; flags timeout; comment "${this.tag}";${elements} }`,
      `  chain ${s.chain} {`,
      `    type filter hook ingress device "${s.device}" priority 0; policy accept;`,
      ...s.rules.map((r) => `    ${r}`),
      '  }',
      '}',
      '',
    ].join('\n');
  }

  /** Renews every element's lease; elements no longer wanted go at once. One transaction. */
  refreshScript(): string {
    const s = this.spec;
    const lines = [`flush set netdev ${s.name} ${s.set}`];
    if (this.elements.length) lines.push(`add element netdev ${s.name} ${s.set} { ${this.elementList()} }`);
    return lines.join('\n') + '\n';
  }

  /** What the kernel has now; null when there is no such table. */
  async read(): Promise<TableState | null> {
    const objects = await nftListTable(this.spec.name);
    return objects === null ? null : tableState(objects, this.spec);
  }

  /**
   * Before any change: a table of this name whose owner still runs belongs to another lbd
   * (InstanceConflictError naming it); one whose owner is gone is returned, to be taken over, and
   * so is one of `handingOver`, the lbd that hands over to this one (lbd --take-over) and ends.
   */
  async claim(handingOver?: Owner): Promise<Owner | null> {
    const state = await this.read();
    if (state === null) return null;
    const prev = state.owner;
    if (prev && sameOwner(prev, this.owner)) return null;
    if (prev && handingOver && sameOwner(prev, handingOver)) return prev;
    if (prev === null)
      throw new InstanceConflictError(
        `nftables table netdev ${this.spec.name} exists and was not made by lbd: delete it (nft delete table netdev ${this.spec.name})`,
      );
    if (ownerAlive(prev))
      throw new InstanceConflictError(
        `another lbd (pid ${prev.pid}) runs on ${this.spec.device}: it owns nftables table netdev ${this.spec.name}; stop it first, or balance another interface`,
      );
    return prev;
  }

  /** Makes the table (or takes over a dead owner's, without a gap) with these elements. */
  install(elements: string[], takeOver: boolean): Promise<void> {
    this.elements = [...new Set(elements)].sort();
    return this.serial(async () => {
      try {
        await nftApply(this.script(takeOver ? 'replace' : 'create'));
      } catch (e) {
        // Another lbd made it between claim() and here (two started at once): say whose it is.
        if (!takeOver) await this.claim();
        throw e;
      }
      this.installed = true;
    });
  }

  /** New elements (a reload); unchanged ones cost nothing. */
  setElements(elements: string[]): Promise<void> {
    const next = [...new Set(elements)].sort();
    if (next.length === this.elements.length && next.every((e, i) => e === this.elements[i])) return Promise.resolve();
    this.elements = next;
    return this.installed ? this.refresh() : Promise.resolve();
  }

  /** Renews the lease of every element. */
  refresh(): Promise<void> {
    return this.serial(() => (this.installed ? nftApply(this.refreshScript()) : Promise.resolve()));
  }

  /** What is wrong with the kernel's copy, in a few words; null when it is as lbd wants it. */
  problem(state: TableState | null): string | null {
    if (state === null) return 'table gone';
    if (!state.owner || !sameOwner(state.owner, this.owner)) return 'owner changed';
    if (!state.chain) return 'chain gone';
    if (state.rules !== this.spec.rules.length) return `${state.rules} of ${this.spec.rules.length} rules`;
    const missing = this.elements.filter((e) => !state.elements.has(e));
    if (missing.length) return `elements missing: ${missing.join(', ')}`;
    return null;
  }

  /**
   * Looks at the kernel's copy and puts it back as lbd wants it when it is not (one nft call when
   * all is well, two when not); resolves with what was wrong, or null when nothing was. A table
   * another live lbd has taken over, or one not made by lbd, is left alone
   * (InstanceConflictError). Our own replace shows on the monitor as a deleted table: the next
   * look finds it fine, so lbd never chases its own changes.
   */
  restore(): Promise<string | null> {
    return this.serial(async () => {
      if (!this.installed) return null;
      const state = await this.read();
      const wrong = this.problem(state);
      if (wrong === null) return null;
      const other = state?.owner;
      if (state && !other) throw new InstanceConflictError(`nftables table netdev ${this.spec.name} was replaced by one not made by lbd: left alone`);
      if (other && !sameOwner(other, this.owner) && ownerAlive(other))
        throw new InstanceConflictError(`nftables table netdev ${this.spec.name} was taken over by another lbd (pid ${other.pid})`);
      await nftApply(this.script(state === null ? 'create' : 'replace'));
      return wrong;
    });
  }

  /**
   * Leaves the table as it is, for the next lbd (a stop that keeps it): no renewal, update or
   * restore queued or to come touches it any more.
   */
  abandon(): void {
    this.installed = false;
  }

  /**
   * Deletes the table if it is this lbd's; another's is left alone. Queued behind whatever nft
   * call is in flight (an install finishing after this was asked for is undone too).
   */
  remove(): Promise<void> {
    this.installed = false;
    return this.serial(async () => {
      const state = await this.read();
      if (state === null || !state.owner || !sameOwner(state.owner, this.owner)) return;
      await nftApply(`delete table netdev ${this.spec.name}\n`);
    });
  }
}

/** Reads the parts of `nft -j list table` output lbd checks. */
export function tableState(objects: NftObject[], spec: Pick<LeasedTableSpec, 'name' | 'chain' | 'set'>): TableState {
  const state: TableState = { owner: null, chain: false, rules: 0, elements: new Set() };
  for (const o of objects) {
    if (o.set && o.set.name === spec.set) {
      state.owner = parseOwnerTag(o.set.comment);
      for (const e of (o.set.elem as unknown[] | undefined) ?? []) state.elements.add(nftElementText(e));
    } else if (o.chain && o.chain.name === spec.chain) {
      state.chain = true;
    } else if (o.rule && o.rule.chain === spec.chain) {
      state.rules++;
    }
  }
  return state;
}
