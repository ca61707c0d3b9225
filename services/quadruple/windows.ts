// Time windows of one size (1 s or 1 min) on packet time. A window [start, start + size) stays
// open until the clock passes its end by the late-data tolerance; data for a window already
// closed is refused (the caller counts it). Windows close in time order, so state carried from
// one window to the next (concurrent connections) is applied in order.
//
// A window's rows live in a RowStore: typed-array meter slots and a tags -> row index. Stores are
// reused once a closed window has been written out, so steady state allocates no rows.
import { AM, FM } from './meters';

/** Which table a row belongs to (with the window's suffix, 1s or 1m). */
export const enum RowKind { NetClient, NetServer, NetEdge, AppClient, AppServer, AppEdge }

/** Table names by RowKind, without the suffix. */
export const ROW_TABLES = ['network', 'network', 'network_map', 'application', 'application', 'application_map'] as const;

/**
 * The metric rows of one window. Row `r` has tags kind[r], ipA[r] (ip, or ip_0 on edge rows),
 * ipB[r] (ip_1 on edge rows), port[r], proto[r], l7[r], endpoint[r]; network rows (kind < 3)
 * have a FlowMeter at flow[r * FM.SIZE], application rows an AppMeterValues at app[r * AM.SIZE].
 */
export class RowStore {
  /** Start of the window these rows are for (s); a window's start is never reused once it closed. */
  start = NaN;
  count = 0;
  kind: Uint8Array;
  port: Float64Array;
  proto: Float64Array;
  readonly ipA: string[] = [];
  readonly ipB: string[] = [];
  readonly l7: string[] = [];
  readonly endpoint: string[] = [];
  flow: Float64Array;
  app: Float64Array;
  // Tags -> row: open addressing (linear probing), each entry a pair (row + 1 (0: empty), the
  // row's rowHash). A row is identified by its tags themselves (no key string to build per
  // record); probes compare the hash held next to the row number (one cache line) and touch the
  // tags only on a hash match.
  private index: Int32Array;
  private capacity: number;

  constructor(capacity = 64) {
    this.capacity = capacity;
    this.kind = new Uint8Array(capacity);
    this.port = new Float64Array(capacity);
    this.proto = new Float64Array(capacity);
    this.flow = new Float64Array(capacity * FM.SIZE);
    this.app = new Float64Array(capacity * AM.SIZE);
    this.index = new Int32Array(capacity * 4);
  }

  /** The row with these tags (whose rowHash is `hash`), created (zeroed meters) if new. */
  row(hash: number, kind: RowKind, ipA: string, ipB: string, port: number, proto: number, l7: string, endpoint: string): number {
    const index = this.index, mask = (index.length >> 1) - 1;
    let i = hash & mask;
    for (let e = index[i << 1]; e !== 0; e = index[i << 1]) {
      const r = e - 1;
      if (index[(i << 1) + 1] === hash && this.kind[r] === kind && this.port[r] === port && this.proto[r] === proto
        && this.ipA[r] === ipA && this.ipB[r] === ipB && this.l7[r] === l7 && this.endpoint[r] === endpoint) return r;
      i = (i + 1) & mask;
    }
    const r = this.count++;
    if (r === this.capacity) { this.grow(); return this.add(r, hash, kind, ipA, ipB, port, proto, l7, endpoint); }
    index[i << 1] = r + 1; index[(i << 1) + 1] = hash;
    return this.set(r, kind, ipA, ipB, port, proto, l7, endpoint);
  }

  /** Forgets every row (meters zeroed, arrays kept for the next window). */
  clear(): void {
    this.flow.fill(0, 0, this.count * FM.SIZE);
    this.app.fill(0, 0, this.count * AM.SIZE);
    this.index.fill(0);
    this.count = 0;
    this.start = NaN;
    // Drop string references so a long-quiet store holds no old addresses.
    this.ipA.length = 0; this.ipB.length = 0; this.l7.length = 0; this.endpoint.length = 0;
  }

  /** Inserts row `r` after a grow (the probe sequence changed). */
  private add(r: number, hash: number, kind: RowKind, ipA: string, ipB: string, port: number, proto: number, l7: string, endpoint: string): number {
    const index = this.index, mask = (index.length >> 1) - 1;
    let i = hash & mask;
    while (index[i << 1] !== 0) i = (i + 1) & mask;
    index[i << 1] = r + 1; index[(i << 1) + 1] = hash;
    return this.set(r, kind, ipA, ipB, port, proto, l7, endpoint);
  }

  private set(r: number, kind: RowKind, ipA: string, ipB: string, port: number, proto: number, l7: string, endpoint: string): number {
    this.kind[r] = kind; this.port[r] = port; this.proto[r] = proto;
    this.ipA[r] = ipA; this.ipB[r] = ipB; this.l7[r] = l7; this.endpoint[r] = endpoint;
    return r;
  }

  private grow(): void {
    const cap = this.capacity * 2;
    const kind = new Uint8Array(cap); kind.set(this.kind); this.kind = kind;
    const port = new Float64Array(cap); port.set(this.port); this.port = port;
    const proto = new Float64Array(cap); proto.set(this.proto); this.proto = proto;
    const flow = new Float64Array(cap * FM.SIZE); flow.set(this.flow); this.flow = flow;
    const app = new Float64Array(cap * AM.SIZE); app.set(this.app); this.app = app;
    // The index stays at most half full; entries move over with their hashes.
    const old = this.index, index = new Int32Array(cap * 4), mask = cap * 2 - 1;
    for (let k = 0; k < old.length; k += 2) {
      if (old[k] === 0) continue;
      const hash = old[k + 1];
      let i = hash & mask;
      while (index[i << 1] !== 0) i = (i + 1) & mask;
      index[i << 1] = old[k]; index[(i << 1) + 1] = hash;
    }
    this.index = index;
    this.capacity = cap;
  }
}

/** A string's hash, an input of rowHash (FNV-1a over the UTF-16 units; rowHash mixes it). */
export function strHash(str: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < str.length; i++) h = Math.imul(h ^ str.charCodeAt(i), 16777619);
  return h;
}

/** strHash of '' (the tags a row kind does not have). */
export const EMPTY_HASH = strHash('');

/** Folds one 32-bit value into a running hash (the MurmurHash3 block step). */
function mixIn(h: number, v: number): number {
  v = Math.imul(v, 0xcc9e2d51); v = (v << 15) | (v >>> 17); v = Math.imul(v, 0x1b873593);
  h ^= v; h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * The hash RowStore.row wants with a row's tags; the strings come as their strHash (callers
 * keep those per flow or per address, so a record hashes no string it has hashed before).
 */
export function rowHash(kind: RowKind, ipA: number, ipB: number, port: number, proto: number, l7: number, endpoint: number): number {
  let h = mixIn(kind, ipA);
  h = mixIn(h, ipB); h = mixIn(h, port | 0); h = mixIn(h, proto | 0); h = mixIn(h, l7); h = mixIn(h, endpoint);
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Cleared stores kept for reuse: more than the windows open at once in steady state. */
const MAX_SPARE_STORES = 16;

export class Windows {
  private readonly open = new Map<number, RowStore>();
  /** Stores of closed windows, cleared, for reuse. */
  private readonly spare: RowStore[] = [];
  /** Windows starting before this second are closed (-Infinity until the first close). */
  closedBefore = -Infinity;

  constructor(readonly sizeSec: number, readonly toleranceSec: number) {}

  /** The rows of the window holding `sec`, or undefined when that window is already closed. */
  rowsAt(sec: number): RowStore | undefined {
    const start = sec - (sec % this.sizeSec);
    if (start < this.closedBefore) return undefined;
    let rows = this.open.get(start);
    if (!rows) { rows = this.store(start); this.open.set(start, rows); }
    return rows;
  }

  /**
   * Closes, in time order, every window whose end + tolerance <= nowSec, including empty ones
   * in between (concurrent connections are carried through them), but at most `maxEmpty`
   * empty windows in one gap. `onClose` gets each window's start and rows, which are reused
   * once it returns.
   */
  advance(nowSec: number, onClose: (start: number, rows: RowStore) => void, maxEmpty = 3600): void {
    const lastClosable = Math.floor((nowSec - this.toleranceSec) / this.sizeSec) * this.sizeSec - this.sizeSec;
    if (this.closedBefore === -Infinity) {
      if (this.open.size === 0) return;
      this.closedBefore = Math.min(...this.open.keys());
    }
    this.closeThrough(lastClosable, onClose, maxEmpty);
  }

  /** Closes every window still open (end of stream). */
  flush(onClose: (start: number, rows: RowStore) => void, maxEmpty = 3600): void {
    if (this.open.size === 0) return;
    if (this.closedBefore === -Infinity) this.closedBefore = Math.min(...this.open.keys());
    this.closeThrough(Math.max(...this.open.keys()), onClose, maxEmpty);
  }

  private closeThrough(last: number, onClose: (start: number, rows: RowStore) => void, maxEmpty: number): void {
    let empty = 0;
    for (let start = this.closedBefore; start <= last; start += this.sizeSec) {
      const rows = this.open.get(start);
      if (rows) {
        this.open.delete(start);
        empty = 0;
        this.closeOne(start, rows, onClose);
      } else if (empty < maxEmpty) {
        empty++;
        this.closeOne(start, this.store(start), onClose);
      } else {
        // A long idle gap: jump to the next window holding data (or the end).
        let next = last + this.sizeSec;
        for (const k of this.open.keys()) if (k > start && k < next) next = k;
        start = next - this.sizeSec;
      }
      this.closedBefore = start + this.sizeSec;
    }
  }

  private store(start: number): RowStore {
    const rows = this.spare.pop() ?? new RowStore();
    rows.start = start;
    return rows;
  }

  private closeOne(start: number, rows: RowStore, onClose: (start: number, rows: RowStore) => void): void {
    onClose(start, rows);
    rows.clear();
    if (this.spare.length < MAX_SPARE_STORES) this.spare.push(rows);
  }
}
