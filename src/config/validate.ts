/**
 * The generic validator: walks the field table (./fields.ts) against a YAML document tree,
 * which keeps every value's source position, and records each problem as a ConfigIssue with
 * its line and column. Values are read by ./readers.ts; rules relating several fields and the
 * assembly of the normalized config are in ./rules.ts.
 */
import { Document, LineCounter, Pair, Scalar, YAMLMap, YAMLSeq, isAlias, isMap, isScalar, isSeq } from 'yaml';
import { ConfigIssue } from '../errors';
import type { Field, Section } from './fields';
import { listOf, readScalar } from './readers';
import { didYouMean } from './suggest';

export type YNode = Scalar | YAMLMap | YAMLSeq;
/** A mapping's entries by key, each with its key node (for unknown-key positions) and value. */
export type Entries = Map<string, { key: YNode; value: YNode | undefined }>;

export function joinPath(path: string, key: string): string {
  // A blank key (`"": 1`) is shown quoted, so that the path names it.
  if (key.trim() === '') key = JSON.stringify(key);
  return path ? `${path}.${key}` : key;
}

/** An override of the section written under `key` in the enclosing section `from`. */
export interface Inherit {
  from: string;
  key: string;
}

/** What the validator found in one mapping (or shorthand string) of a section. */
export class SectionResult {
  /** The keys written, with their nodes (a shorthand string stands for the keys it sets). */
  entries: Entries = new Map();
  /** The valid values of the keys written, in validation order. */
  readonly values: Record<string, unknown> = {};
  /** Keys written with an invalid value (reported). */
  readonly invalid = new Set<string>();
  /** False once anything in the section was reported (an invalid or missing key, a rule). */
  ok = true;

  constructor(
    readonly spec: Section,
    readonly path: string,
    /** The mapping, or the shorthand string. */
    readonly node: YNode | undefined,
    /** The key the section is written under (for a list item: the list). */
    readonly key: YNode | undefined,
    readonly parent: SectionResult | undefined,
    /** Set for an override (Field.inherit): which section it overrides. */
    readonly inherit?: Inherit,
  ) {}

  /** An override: only the keys written count. */
  get partial(): boolean {
    return this.inherit !== undefined;
  }

  /** For an override, the valid section it overrides (undefined when there is none). */
  get base(): Record<string, unknown> | undefined {
    return this.inherit && (this.parent?.up(this.inherit.from)?.values[this.inherit.key] as Record<string, unknown> | undefined);
  }

  /** Where a missing key is reported: the mapping, else the key it is written under. */
  get here(): YNode | undefined {
    return this.node && isMap(this.node) ? this.node : this.key;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The value of `key`: as written when valid, undefined when invalid, the default when absent. */
  get(key: string): unknown {
    if (this.entries.has(key)) return this.values[key];
    return this.default(key);
  }

  /** The table's default of `key`. */
  default(key: string): unknown {
    return this.spec.fields.find((f) => f.key === key)?.default;
  }

  /** Records the value read for `key`; undefined = invalid (already reported). */
  record(key: string, value: unknown): void {
    if (value === undefined) {
      this.invalid.add(key);
      this.ok = false;
    } else {
      this.values[key] = value;
    }
  }

  /** Where a problem with `key`'s value is reported: its value, else its key. */
  at(key: string): YNode | undefined {
    const e = this.entries.get(key);
    return e ? (e.value ?? e.key) : undefined;
  }

  /** The nearest enclosing section called `name` (this one included). */
  up(name: string): SectionResult | undefined {
    return this.spec.name === name ? this : this.parent?.up(name);
  }
}

export class Validator {
  readonly issues: ConfigIssue[] = [];

  constructor(
    readonly file: string,
    private readonly text: string,
    private readonly lc: LineCounter,
    private readonly doc: Document,
  ) {}

  // --- positions and reporting --------------------------------------------------------------

  position(offset: number): { line: number; col: number } {
    const p = this.lc.linePos(offset);
    if (p.line === 0) return { line: 1, col: offset + 1 };
    return p;
  }

  report(node: YNode | undefined, path: string, message: string, fallback?: YNode): void {
    const target = node?.range ? node : fallback;
    const offset = target?.range ? target.range[0] : 0;
    const { line, col } = this.position(offset);
    this.issues.push({ file: this.file, line, col, path, message });
  }

  reportAtOffset(offset: number, path: string, message: string): void {
    const { line, col } = this.position(offset);
    this.issues.push({ file: this.file, line, col, path, message });
  }

  /** Follows an alias (`*name`) to the node it refers to. */
  deref(node: unknown): YNode | undefined {
    if (node === null || node === undefined) return undefined;
    if (isAlias(node)) {
      const target = node.resolve(this.doc) as YNode | undefined;
      if (!target) {
        this.reportAtOffset(node.range?.[0] ?? 0, '', `invalid YAML: unknown alias "*${node.source}" (no anchor "&${node.source}" before it)`);
      }
      return target;
    }
    if (isScalar(node) || isMap(node) || isSeq(node)) return node;
    return undefined;
  }

  /** The text a scalar was written as (numbers keep their spelling: `1e3`, `0x50`). */
  scalarText(node: Scalar): string {
    if (typeof node.value === 'string') return node.value;
    if (node.range) {
      const src = this.text.slice(node.range[0], node.range[1]).trim();
      if (src) return src;
    }
    return String(node.value);
  }

  /** How a value is shown in "got ..." messages. */
  describe(node: YNode | undefined): string {
    if (!node) return 'nothing';
    if (isMap(node)) return 'a mapping';
    if (isSeq(node)) return 'a list';
    const v = node.value;
    if (v === null || v === undefined) return 'nothing';
    if (typeof v === 'string') return JSON.stringify(v);
    return this.scalarText(node);
  }

  // --- structure ------------------------------------------------------------------------------

  /**
   * Reads a mapping: reports keys that are not in `valid` (with a suggestion) and returns the
   * known ones. With `nullIsEmpty` (sections such as `log:` with nothing under it) a null
   * value counts as an empty mapping. Returns undefined (after reporting) when the node is
   * something else; `fallback` locates the report when the node has no position.
   */
  mapping(node: YNode | undefined, path: string, valid: readonly string[], what: string, fallback?: YNode, nullIsEmpty = true): Entries | undefined {
    const fields: Entries = new Map();
    if (nullIsEmpty && isScalar(node) && node.value === null) return fields;
    if (!isMap(node)) {
      this.report(node, path, `expected ${what} (keys: ${listOf(valid)}), got ${this.describe(node)}`, fallback);
      return undefined;
    }
    for (const item of node.items as Pair<unknown, unknown>[]) {
      const keyNode = this.deref(item.key);
      if (!isScalar(keyNode)) {
        this.report(keyNode, path, `expected a plain key (${listOf(valid)}), got ${this.describe(keyNode)}`, node);
        continue;
      }
      const key = this.scalarText(keyNode);
      if (!valid.includes(key)) {
        const guess = didYouMean(key, valid);
        const hint = guess !== undefined ? `; did you mean "${guess}"?` : ` (valid: ${listOf(valid)})`;
        this.report(keyNode, joinPath(path, key), `unknown key "${key}"${hint}`);
        continue;
      }
      fields.set(key, { key: keyNode, value: this.deref(item.value) });
    }
    return fields;
  }

  // --- the table walk ---------------------------------------------------------------------------

  /** Validates the whole document against `spec` (the top level); undefined after any problem. */
  document(spec: Section): unknown {
    const root = this.deref(this.doc.contents);
    if (!root || (isScalar(root) && root.value === null)) {
      const needed = spec.fields.filter((f) => f.required !== undefined).map((f) => f.key);
      this.reportAtOffset(0, '', `the config is empty: expected a mapping with at least ${needed.join(' and ')}`);
      return undefined;
    }
    if (!isMap(root)) {
      this.report(root, '', `expected a mapping at the top level (keys: ${listOf(spec.fields.map((f) => f.key))}), got ${this.describe(root)}`);
      return undefined;
    }
    const r = this.section(spec, root, undefined, '', undefined);
    return r && this.build(r);
  }

  /**
   * One section: a mapping (or the section's shorthand string) read field by field, then its
   * rules. `key` is the key the section is written under, or the list holding it; undefined
   * when the node is no mapping (reported).
   */
  section(
    spec: Section,
    node: YNode | undefined,
    key: YNode | undefined,
    path: string,
    parent: SectionResult | undefined,
    inherit?: Inherit,
  ): SectionResult | undefined {
    const r = new SectionResult(spec, path, node, key, parent, inherit);
    if (spec.shorthand && isScalar(node) && typeof node.value === 'string') {
      spec.shorthand(this, r);
    } else {
      if (spec.expected !== undefined && !isMap(node)) {
        this.report(node, path, `expected ${spec.expected}, got ${this.describe(node)}`, key);
        return undefined;
      }
      const keys = spec.fields.map((f) => f.key);
      const entries = this.mapping(node, path, keys, spec.what, key, spec.nullIsEmpty);
      if (!entries) return undefined;
      r.entries = entries;
      for (const k of spec.order ?? keys) {
        const f = spec.fields.find((g) => g.key === k);
        if (f) this.field(r, f);
      }
    }
    for (const rule of spec.rules ?? []) rule(this, r);
    return r;
  }

  /** The normalized value of a section (its build, or every field with defaults filled in). */
  build(r: SectionResult): unknown {
    if (r.spec.build) return r.spec.build(this, r);
    const out: Record<string, unknown> = {};
    for (const f of r.spec.fields) out[f.key] = r.get(f.key);
    return out;
  }

  /** The value of a section that is not written at all. */
  absent(spec: Section, parent?: SectionResult): unknown {
    return this.build(new SectionResult(spec, '', undefined, undefined, parent));
  }

  private field(r: SectionResult, f: Field): void {
    const e = r.entries.get(f.key);
    const path = joinPath(r.path, f.key);
    if (!e) {
      // A required key of an override may come from the section it overrides.
      if (f.required === undefined || (r.partial && r.base)) return;
      const why = r.inherit ? ` (the ${r.inherit.from} has no ${r.inherit.key} to inherit it from)` : '';
      this.report(r.here, path, `missing required key "${f.key}" (${f.required})${why}`, this.doc.contents as YNode);
      r.ok = false;
      return;
    }
    let value: unknown;
    if (f.type === 'section') {
      const c = this.section(f.section!, e.value, e.key, path, r, f.inherit !== undefined ? { from: f.inherit, key: f.key } : undefined);
      value = c && this.build(c);
    } else if (f.type === 'list') {
      value = this.list(r, f, e.value, e.key, path);
    } else {
      value = readScalar(this, f, e.value, e.key, path);
    }
    r.record(f.key, value);
    f.after?.(this, r);
  }

  private list(r: SectionResult, f: Field, node: YNode | undefined, key: YNode, path: string): unknown[] | undefined {
    if (!isSeq(node)) {
      if (!node || (isScalar(node) && node.value === null)) this.report(key, path, `expected a list of at least one ${f.item}, got nothing`);
      else this.report(node, path, `expected a list of ${f.items}, got ${this.describe(node)}`);
      return undefined;
    }
    if (node.items.length === 0) {
      this.report(node, path, `expected at least one ${f.item}, got an empty list`);
      r.ok = false;
    }
    const check = f.eachItem?.();
    const out: unknown[] = [];
    node.items.forEach((item, i) => {
      const c = this.section(f.section!, this.deref(item), node, `${path}[${i}]`, r);
      if (!c) {
        r.ok = false;
        return;
      }
      check?.(this, c, i);
      const v = this.build(c);
      if (v === undefined) r.ok = false;
      else out.push(v);
    });
    return out;
  }
}
