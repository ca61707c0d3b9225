// Concurrent connections (flow_meter.load) of one window size: every flow seen is carried from
// window to window, adding 1 to the load of its three network rows (client side, server side,
// edge) in each window it is alive in, including windows where it sent nothing.
//
// State is per flow, not a count per row key, so that a close report that arrives too late for
// its window (dropped from the metrics as late data) still ends the carry, and a flow whose close
// never arrives stops being carried after `idleLimitSec` without a report: a key whose flows are
// all gone stops carrying. The state lives in the FlowTable's slot of the flow (carry* at
// slot * 2 + g); this class keeps the list of carried slots.
import { FlowTable } from './flow-aggr';
import { FM } from './meters';
import { RowStore } from './windows';

export class ConcurrentConnections {
  /** Flows dropped from the carry because they sent nothing for idleLimitSec (their close was lost). */
  expired = 0;
  /** Slots carried, in the order they were first seen. */
  private carried: number[] = [];

  /** `g`: this carry's index in the FlowTable's carry columns (0: 1 s, 1: 1 min). */
  constructor(private readonly table: FlowTable, private readonly g: 0 | 1, readonly sizeSec: number, readonly idleLimitSec: number) {}

  get size(): number {
    return this.carried.length;
  }

  /** A report of the flow in slot `s` at second `sec`; called for late reports too (their close still counts). */
  seen(s: number, sec: number, closed: boolean): void {
    const t = this.table, i = s * 2 + this.g;
    if (!t.inCarry[i]) {
      t.inCarry[i] = 1;
      t.carryFirst[i] = sec; t.carryLast[i] = sec; t.carryClose[i] = Infinity;
      this.carried.push(s);
    }
    if (sec < t.carryFirst[i]) t.carryFirst[i] = sec;
    if (sec > t.carryLast[i]) t.carryLast[i] = sec;
    if (closed && sec < t.carryClose[i]) t.carryClose[i] = sec;
  }

  /** Sets the load of the window [start, start + sizeSec) that is closing; forgets flows that ended in it. */
  applyTo(start: number, rows: RowStore): void {
    const t = this.table, end = start + this.sizeSec, carried = this.carried;
    let kept = 0;
    for (let k = 0; k < carried.length; k++) {
      const s = carried[k], i = s * 2 + this.g;
      const close = t.carryClose[i];
      let keep = true;
      if (t.carryFirst[i] >= end) { // opened in a later window, still open
      } else if (close < start) { // its close came late
        keep = false;
      } else if (close === Infinity && t.carryLast[i] + this.idleLimitSec < start) {
        keep = false;
        this.expired++;
      } else {
        t.networkRows(s, this.g, rows);
        const m = rows.flow; // after the rows are made: making one may reallocate it
        m[t.outC * FM.SIZE + FM.load]++;
        m[t.outS * FM.SIZE + FM.load]++;
        m[t.outE * FM.SIZE + FM.load]++;
        if (close < end) keep = false;
      }
      if (keep) carried[kept++] = s;
      else { t.inCarry[i] = 0; t.release(s); }
    }
    carried.length = kept;
  }
}
