// Time windows of one size (1 s or 1 min) on packet time. A window [start, start + size) stays
// open until the clock passes its end by the late-data tolerance; data for a window already
// closed is refused (the caller counts it). Windows close in time order, so state carried from
// one window to the next (concurrent connections) is applied in order.
//
// A window's rows live in a RowStore: typed-array meter slots and a key -> slot map. Stores are
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
  // Key -> row: open addressing (linear probing) over row + 1 (0: empty), with each row's key
  // and keyHash (see keyHash) kept by row. Probes compare the hashes in a typed array and touch
  // a key string only on a hash match: far fewer cache misses than a Map of string keys.
  private readonly keys: string[] = [];
  private keyHashes: Int32Array;
  private index: Int32Array;
  private capacity: number;

  constructor(capacity = 64) {
    this.capacity = capacity;
    this.kind = new Uint8Array(capacity);
    this.port = new Float64Array(capacity);
    this.proto = new Float64Array(capacity);
    this.flow = new Float64Array(capacity * FM.SIZE);
    this.app = new Float64Array(capacity * AM.SIZE);
    this.keyHashes = new Int32Array(capacity);
    this.index = new Int32Array(capacity * 2);
  }

  /** The row of `key` (whose keyHash is `hash`), created (zeroed meters) with these tags if new. */
  row(key: string, hash: number, kind: RowKind, ipA: string, ipB: string, port: number, proto: number, l7: string, endpoint: string): number {
    const index = this.index, mask = index.length - 1;
    let i = hash & mask;
    for (let e = index[i]; e !== 0; e = index[i]) {
      if (this.keyHashes[e - 1] === hash && this.keys[e - 1] === key) return e - 1;
      i = (i + 1) & mask;
    }
    const r = this.count++;
    if (r === this.capacity) { this.grow(); return this.add(r, key, hash, kind, ipA, ipB, port, proto, l7, endpoint); }
    index[i] = r + 1;
    return this.set(r, key, hash, kind, ipA, ipB, port, proto, l7, endpoint);
  }

  /** Forgets every row (meters zeroed, arrays kept for the next window). */
  clear(): void {
    this.flow.fill(0, 0, this.count * FM.SIZE);
    this.app.fill(0, 0, this.count * AM.SIZE);
    this.index.fill(0);
    this.count = 0;
    this.start = NaN;
    // Drop string references so a long-quiet store holds no old addresses.
    this.keys.length = 0; this.ipA.length = 0; this.ipB.length = 0; this.l7.length = 0; this.endpoint.length = 0;
  }

  /** Inserts row `r` after a grow (the probe sequence changed). */
  private add(r: number, key: string, hash: number, kind: RowKind, ipA: string, ipB: string, port: number, proto: number, l7: string, endpoint: string): number {
    const index = this.index, mask = index.length - 1;
    let i = hash & mask;
    while (index[i] !== 0) i = (i + 1) & mask;
    index[i] = r + 1;
    return this.set(r, key, hash, kind, ipA, ipB, port, proto, l7, endpoint);
  }

  private set(r: number, key: string, hash: number, kind: RowKind, ipA: string, ipB: string, port: number, proto: number, l7: string, endpoint: string): number {
    this.keys[r] = key; this.keyHashes[r] = hash;
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
    const hashes = new Int32Array(cap); hashes.set(this.keyHashes); this.keyHashes = hashes;
    // The index stays at most half full.
    const index = new Int32Array(cap * 2), mask = index.length - 1;
    for (let r = 0; r < this.capacity; r++) {
      let i = hashes[r] & mask;
      while (index[i] !== 0) i = (i + 1) & mask;
      index[i] = r + 1;
    }
    this.index = index;
    this.capacity = cap;
  }
}

/** The hash RowStore.row wants with a key (FNV-1a over the UTF-16 units, then mixed). */
export function keyHash(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
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
