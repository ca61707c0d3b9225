// Concurrent connections (flow_meter.load) of one window size: every flow seen is carried from
// window to window, adding 1 to the load of its three network rows (client side, server side,
// edge) in each window it is alive in, including windows where it sent nothing.
//
// State is per flow, not a count per row key, so that a close report that arrives too late for
// its window (dropped from the metrics as late data) still ends the carry, and a flow whose close
// never arrives stops being carried after `idleLimitSec` without a report: a key whose flows are
// all gone stops carrying.
import { flowtap } from '../../lib/proto';
import { newFlowMeter } from './meters';
import { Rows } from './windows';

interface CarriedFlow {
  /** Row keys (client side, server side, edge) in the network tables. */
  keys: [string, string, string];
  ip0: string;
  ip1: string;
  port: number;
  proto: number;
  /** Second of its first report seen, and of its last. */
  firstSec: number;
  lastSec: number;
  /** Second of its close report (Infinity while open). */
  closeSec: number;
}

export class ConcurrentConnections {
  /** Flows dropped from the carry because they sent nothing for idleLimitSec (their close was lost). */
  expired = 0;
  private readonly flows = new Map<number, CarriedFlow>();

  constructor(readonly sizeSec: number, readonly suffix: '1s' | '1m', readonly idleLimitSec: number) {}

  get size(): number {
    return this.flows.size;
  }

  /** A report of flow `flowId` at second `sec`; called for late reports too (their close still counts). */
  seen(flowId: number, sec: number, closed: boolean, keys: [string, string, string], ip0: string, ip1: string, port: number, proto: number): void {
    let f = this.flows.get(flowId);
    if (!f) {
      f = { keys, ip0, ip1, port, proto, firstSec: sec, lastSec: sec, closeSec: Infinity };
      this.flows.set(flowId, f);
    }
    if (sec < f.firstSec) f.firstSec = sec;
    if (sec > f.lastSec) f.lastSec = sec;
    if (closed && sec < f.closeSec) f.closeSec = sec;
  }

  /** Sets the load of the window [start, start + sizeSec) that is closing; forgets flows that ended in it. */
  applyTo(start: number, rows: Rows): void {
    const end = start + this.sizeSec;
    for (const [id, f] of this.flows) {
      if (f.firstSec >= end) continue; // opened in a later window, still open
      if (f.closeSec < start) { this.flows.delete(id); continue; } // its close came late
      if (f.closeSec === Infinity && f.lastSec + this.idleLimitSec < start) { this.flows.delete(id); this.expired++; continue; }
      for (let k = 0; k < 3; k++) {
        const key = f.keys[k];
        let row = rows.get(key);
        if (!row) { row = { doc: this.doc(k, start, f) }; rows.set(key, row); }
        const meter = row.flow ??= newFlowMeter();
        meter.load++;
      }
      if (f.closeSec < end) this.flows.delete(id);
    }
  }

  private doc(k: number, time: number, f: CarriedFlow): flowtap.IDocument {
    if (k === 2) return { table: `network_map.${this.suffix}`, time, ip_0: f.ip0, ip_1: f.ip1, server_port: f.port, protocol: f.proto };
    return { table: `network.${this.suffix}`, time, ip: k === 0 ? f.ip0 : f.ip1, side: k === 0 ? 'client' : 'server', server_port: f.port, protocol: f.proto };
  }
}
