// Time windows of one size (1 s or 1 min) on packet time. A window [start, start + size) stays
// open until the clock passes its end by the late-data tolerance; data for a window already
// closed is refused (the caller counts it). Windows close in time order, so state carried from
// one window to the next (concurrent connections) is applied in order.
import { flowtap } from '../../lib/proto';
import { AppMeterCounts, FlowMeterCounts } from './meters';

/** One metric row being built: its document (table, time, tags) and its meter. */
export interface Row {
  doc: flowtap.IDocument;
  flow?: FlowMeterCounts;
  app?: AppMeterCounts;
}

export type Rows = Map<string, Row>;

export class Windows {
  private readonly open = new Map<number, Rows>();
  /** Windows starting before this second are closed (-Infinity until the first close). */
  closedBefore = -Infinity;

  constructor(readonly sizeSec: number, readonly toleranceSec: number) {}

  /** The rows of the window holding `sec`, or undefined when that window is already closed. */
  rowsAt(sec: number): Rows | undefined {
    const start = sec - (sec % this.sizeSec);
    if (start < this.closedBefore) return undefined;
    let rows = this.open.get(start);
    if (!rows) { rows = new Map(); this.open.set(start, rows); }
    return rows;
  }

  /**
   * Closes, in time order, every window whose end + tolerance <= nowSec, including empty ones
   * in between (concurrent connections are carried through them), but at most `maxEmpty`
   * empty windows in one gap. `onClose` gets each window's start and rows.
   */
  advance(nowSec: number, onClose: (start: number, rows: Rows) => void, maxEmpty = 3600): void {
    const lastClosable = Math.floor((nowSec - this.toleranceSec) / this.sizeSec) * this.sizeSec - this.sizeSec;
    if (this.closedBefore === -Infinity) {
      if (this.open.size === 0) return;
      this.closedBefore = Math.min(...this.open.keys());
    }
    this.closeThrough(lastClosable, onClose, maxEmpty);
  }

  /** Closes every window still open (end of stream). */
  flush(onClose: (start: number, rows: Rows) => void, maxEmpty = 3600): void {
    if (this.open.size === 0) return;
    if (this.closedBefore === -Infinity) this.closedBefore = Math.min(...this.open.keys());
    this.closeThrough(Math.max(...this.open.keys()), onClose, maxEmpty);
  }

  private closeThrough(last: number, onClose: (start: number, rows: Rows) => void, maxEmpty: number): void {
    let empty = 0;
    for (let start = this.closedBefore; start <= last; start += this.sizeSec) {
      const rows = this.open.get(start);
      if (rows) {
        this.open.delete(start);
        empty = 0;
        onClose(start, rows);
      } else if (empty < maxEmpty) {
        empty++;
        onClose(start, new Map());
      } else {
        // A long idle gap: jump to the next window holding data (or the end).
        let next = last + this.sizeSec;
        for (const k of this.open.keys()) if (k > start && k < next) next = k;
        start = next - this.sizeSec;
      }
      this.closedBefore = start + this.sizeSec;
    }
  }
}
