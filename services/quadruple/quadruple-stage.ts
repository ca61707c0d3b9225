// The quadruple stage: flow reports and AppMeters in, metric Documents (1 s and 1 min windows)
// and L4 flow logs out. Packet time is the clock: the report times drive it, `advance` moves it
// when the wire is idle, `flush` closes everything at end of stream.
//
// Tables:
// - network.1s / network.1m: single side, key (ip, server_port, protocol, side). Each flow adds a
//   client-side row (ip = ip_0) and a server-side row (ip = ip_1); in both, `tx` means "sent by
//   `ip`" (so the server row's byte_tx is the flow's byte_rx), and the retransmission / zero
//   window counters are swapped the same way. Other counters are the flow's, unswapped.
// - network_map.1s / network_map.1m: edge, key (ip_0, ip_1, server_port, protocol), tx = client
//   to server as on the flow.
// - application.1s / 1m: single side, key (ip, server_port, protocol, l7_protocol, endpoint,
//   side), the AppMeter's counts on both the client row and the server row.
// - application_map.1s / 1m: edge, key (ip_0, ip_1, server_port, protocol, l7_protocol, endpoint).
// flow_meter.load (concurrent connections) counts the flows of the key alive in the window:
// first seen before its end and not closed before its start; it is carried through windows where
// the flow sent nothing, until the flow's close report (even one too late for the metrics) or
// until it has been silent for carryIdleLimitSec (see concurrent.ts). flow_count counts distinct
// flows that reported in the window.
//
// L4 flow logs go from FlowAggr through a ReservoirThrottle (lib/throttle.ts): at most
// l4LogPerSecond per second of packet time, a uniform sample of each 4 s bucket, held until the
// bucket ends.
import { flowtap } from '../../lib/proto';
import { formatIp } from '../../lib/packet-batch';
import { ReservoirThrottle } from '../../lib/throttle';
import { ConcurrentConnections } from './concurrent';
import { FlowAggr } from './flow-aggr';
import {
  AppMeterCounts, FlowReport, addAppToFlowMeter, addAppToMeter, addFlowToMeter, newAppMeter, newFlowMeter, newFlowReport, readFlowReport,
} from './meters';
import { Rows, Windows } from './windows';

export interface QuadrupleConfig {
  /** Late-data tolerance of 1 s windows, s (DeepFlow: 9). */
  toleranceSecondSec: number;
  /** Late-data tolerance of 1 min windows, s (DeepFlow: 69). */
  toleranceMinuteSec: number;
  /** L4 flow logs kept per second of packet time (Infinity: no throttle, logs leave at once). */
  l4LogPerSecond: number;
  /** Merge health-check flows into one L4 log per server per minute (flow-aggr.ts). */
  aggregateHealthChecks: boolean;
  /** A flow silent this long (s) stops counting as a concurrent connection: its close was lost. */
  carryIdleLimitSec: number;
  /** Seed of the L4 throttle's sampling (tests); random by default. */
  throttleSeed?: number;
}

export const DEFAULT_QUADRUPLE_CONFIG: QuadrupleConfig = {
  toleranceSecondSec: 9, toleranceMinuteSec: 69, l4LogPerSecond: 10000, aggregateHealthChecks: false, carryIdleLimitSec: 600,
};

export interface QuadrupleOutputs {
  onDocument(doc: flowtap.IDocument): void;
  onL4Log(log: flowtap.IL4FlowLog): void;
}

/**
 * Drop reasons (counted, never thrown):
 * - late_flow_1s / late_flow_1m: a flow report for a window already closed (the 1 m case also
 *   keeps it out of the L4 log).
 * - late_app_1s / late_app_1m: the same for AppMeters.
 * - bad_flow / bad_app: a record without a usable time or 16-byte addresses.
 * - l4_log_throttled: an L4 flow log left out of the sample by the L4 log throttle.
 */
export type QuadrupleDropReason = 'late_flow_1s' | 'late_flow_1m' | 'late_app_1s' | 'late_app_1m' | 'bad_flow' | 'bad_app'
  | 'l4_log_throttled';

/** Row keys of a flow in the network tables: client side, server side, edge. */
function rowKeys(ip0: string, ip1: string, port: number, proto: number): [string, string, string] {
  return [`c|${ip0}|${port}|${proto}`, `s|${ip1}|${port}|${proto}`, `e|${ip0}|${ip1}|${port}|${proto}`];
}

interface Granularity {
  suffix: '1s' | '1m';
  windows: Windows;
  /** Flows alive, carried from window to window (flow_meter.load). */
  carry: ConcurrentConnections;
}

export class QuadrupleStage {
  readonly drops: Record<QuadrupleDropReason, number> = {
    late_flow_1s: 0, late_flow_1m: 0, late_app_1s: 0, late_app_1m: 0, bad_flow: 0, bad_app: 0, l4_log_throttled: 0,
  };
  readonly totals = { flows: 0, appMeters: 0, documents: 0, l4Logs: 0 };
  readonly config: QuadrupleConfig;
  private readonly second: Granularity;
  private readonly minute: Granularity;
  private readonly aggr: FlowAggr;
  private readonly l4Throttle: ReservoirThrottle<flowtap.IL4FlowLog>;
  private clockSec = -Infinity;
  /** The report being added, flattened (reused). */
  private readonly report = newFlowReport();

  constructor(private readonly outputs: QuadrupleOutputs, config: Partial<QuadrupleConfig> = {}) {
    this.config = { ...DEFAULT_QUADRUPLE_CONFIG, ...config };
    const c = this.config;
    this.second = { suffix: '1s', windows: new Windows(1, c.toleranceSecondSec), carry: new ConcurrentConnections(1, '1s', c.carryIdleLimitSec) };
    this.minute = { suffix: '1m', windows: new Windows(60, c.toleranceMinuteSec), carry: new ConcurrentConnections(60, '1m', c.carryIdleLimitSec) };
    this.l4Throttle = new ReservoirThrottle<flowtap.IL4FlowLog>(c.l4LogPerSecond, (log) => {
      this.totals.l4Logs++;
      this.outputs.onL4Log(log);
    }, c.throttleSeed);
    this.aggr = new FlowAggr((log) => {
      this.l4Throttle.add(log, Math.max(Number(log.end_time) || 0, this.clockSec * 1e6));
      this.drops.l4_log_throttled = this.l4Throttle.dropped;
    }, c.aggregateHealthChecks);
  }

  /** Gauge: flows with an L4 log being merged. */
  get flowsInAggr(): number {
    return this.aggr.size;
  }

  /** Gauge: L4 logs held by the throttle until their 4 s bucket ends. */
  get l4LogsHeld(): number {
    return this.l4Throttle.held;
  }

  /** Gauge: flows carried as concurrent connections (1 min windows). */
  get flowsCarried(): number {
    return this.minute.carry.size;
  }

  /** Counters: flow logs merged into health-check logs; carried flows expired without a close. */
  get counters(): { health_checks_merged: number; carry_expired_1s: number; carry_expired_1m: number } {
    return {
      health_checks_merged: this.aggr.healthChecksMerged,
      carry_expired_1s: this.second.carry.expired,
      carry_expired_1m: this.minute.carry.expired,
    };
  }

  addFlows(flows: flowtap.IFlow[]): void {
    for (const f of flows) this.addFlow(f);
    this.advanceTo(this.clockSec);
  }

  addAppMeters(meters: flowtap.IAppMeter[]): void {
    for (const m of meters) this.addAppMeter(m);
    this.advanceTo(this.clockSec);
  }

  /** Moves the clock (µs) and closes the windows now past their tolerance. */
  advance(nowUs: number): void {
    if (nowUs > 0) this.advanceTo(Math.floor(nowUs / 1e6));
  }

  /** End of stream: closes every window and emits every L4 log still being merged. */
  flush(): void {
    this.second.windows.flush((start, rows) => this.closeWindow(this.second, start, rows));
    this.minute.windows.flush((start, rows) => this.closeWindow(this.minute, start, rows));
    this.aggr.flush();
    this.l4Throttle.flush();
  }

  private advanceTo(sec: number): void {
    if (!(sec > this.clockSec)) sec = this.clockSec;
    this.clockSec = sec;
    if (sec === -Infinity) return;
    this.second.windows.advance(sec, (start, rows) => this.closeWindow(this.second, start, rows));
    this.minute.windows.advance(sec, (start, rows) => {
      this.closeWindow(this.minute, start, rows);
      this.aggr.closeMinutesBefore(start + 60);
    });
    this.l4Throttle.advance(sec * 1e6);
  }

  private addFlow(f: flowtap.IFlow): void {
    const t = Number(f.report_time);
    if (!(t > 0) || f.ip_0?.length !== 16 || f.ip_1?.length !== 16) { this.drops.bad_flow++; return; }
    this.totals.flows++;
    const sec = Math.floor(t / 1e6);
    if (sec > this.clockSec) this.clockSec = sec;
    const rows1s = this.second.windows.rowsAt(sec);
    const rows1m = this.minute.windows.rowsAt(sec);
    if (!rows1s) this.drops.late_flow_1s++;
    if (!rows1m) this.drops.late_flow_1m++;
    // FlowAggr (only while the minute is open) also tells whether the flow is new to the windows.
    const port = Number(f.server_port ?? 0), proto = Number(f.protocol ?? 0);
    let keys: [string, string, string] | undefined, ip0: string, ip1: string;
    let firstInSecond = true, firstInMinute = true;
    if (rows1m) {
      const r = this.aggr.add(f, sec);
      ip0 = r.acc.log.ip_0!; ip1 = r.acc.log.ip_1!;
      firstInSecond = r.firstInSecond; firstInMinute = r.firstInMinute;
      keys = r.acc.rowKeys ??= rowKeys(ip0, ip1, port, proto);
    } else {
      ip0 = formatIp(f.ip_0); ip1 = formatIp(f.ip_1);
      keys = rowKeys(ip0, ip1, port, proto);
    }
    // Late or not, the report tells the carry the flow is alive (or closed).
    const id = Number(f.flow_id), closed = f.is_closed === true;
    this.second.carry.seen(id, sec, closed, keys, ip0, ip1, port, proto);
    this.minute.carry.seen(id, sec, closed, keys, ip0, ip1, port, proto);
    const r = readFlowReport(f, this.report);
    if (rows1s) this.addNetworkRows(rows1s, this.second, sec, r, keys, ip0, ip1, port, proto, firstInSecond);
    if (rows1m) this.addNetworkRows(rows1m, this.minute, sec - (sec % 60), r, keys, ip0, ip1, port, proto, firstInMinute);
  }

  private addNetworkRows(rows: Rows, g: Granularity, time: number, f: FlowReport, keys: [string, string, string],
    ip0: string, ip1: string, port: number, proto: number, distinct: boolean): void {
    let c = rows.get(keys[0]);
    if (!c) rows.set(keys[0], c = { doc: { table: `network.${g.suffix}`, time, ip: ip0, side: 'client', server_port: port, protocol: proto }, flow: newFlowMeter() });
    let s = rows.get(keys[1]);
    if (!s) rows.set(keys[1], s = { doc: { table: `network.${g.suffix}`, time, ip: ip1, side: 'server', server_port: port, protocol: proto }, flow: newFlowMeter() });
    let e = rows.get(keys[2]);
    if (!e) rows.set(keys[2], e = { doc: { table: `network_map.${g.suffix}`, time, ip_0: ip0, ip_1: ip1, server_port: port, protocol: proto }, flow: newFlowMeter() });
    addFlowToMeter(c.flow!, f, false);
    addFlowToMeter(s.flow!, f, true);
    addFlowToMeter(e.flow!, f, false);
    if (distinct) { c.flow!.flow_count++; s.flow!.flow_count++; e.flow!.flow_count++; }
  }

  private addAppMeter(m: flowtap.IAppMeter): void {
    const sec = Number(m.time);
    if (!(sec > 0) || m.ip_0?.length !== 16 || m.ip_1?.length !== 16) { this.drops.bad_app++; return; }
    this.totals.appMeters++;
    // AppMeters do not move the clock: they come from l7, on a path that may run ahead of (or
    // behind) the flow reports, and a clock moved by them would close windows whose flow reports
    // are still on their way. Flow reports and ticks, both from flow, drive it.
    const ip0 = formatIp(m.ip_0), ip1 = formatIp(m.ip_1);
    for (const g of [this.second, this.minute]) {
      const rows = g.windows.rowsAt(sec);
      if (!rows) { this.drops[g === this.second ? 'late_app_1s' : 'late_app_1m']++; continue; }
      const time = sec - (sec % g.windows.sizeSec);
      const port = Number(m.server_port ?? 0), proto = Number(m.protocol ?? 0);
      const l7 = m.l7_protocol ?? '', ep = m.endpoint ?? '';
      const tags = { server_port: port, protocol: proto, l7_protocol: l7, endpoint: ep };
      addAppToMeter(this.appRow(rows, `ac|${ip0}|${port}|${proto}|${l7}|${ep}`,
        () => ({ table: `application.${g.suffix}`, time, ip: ip0, side: 'client', ...tags })), m);
      addAppToMeter(this.appRow(rows, `as|${ip1}|${port}|${proto}|${l7}|${ep}`,
        () => ({ table: `application.${g.suffix}`, time, ip: ip1, side: 'server', ...tags })), m);
      addAppToMeter(this.appRow(rows, `ae|${ip0}|${ip1}|${port}|${proto}|${l7}|${ep}`,
        () => ({ table: `application_map.${g.suffix}`, time, ip_0: ip0, ip_1: ip1, ...tags })), m);
      // The network rows of the same endpoints carry the L7 totals too (l7_request, rrt, ...).
      const keys = rowKeys(ip0, ip1, port, proto);
      const netDocs: flowtap.IDocument[] = [
        { table: `network.${g.suffix}`, time, ip: ip0, side: 'client', server_port: port, protocol: proto },
        { table: `network.${g.suffix}`, time, ip: ip1, side: 'server', server_port: port, protocol: proto },
        { table: `network_map.${g.suffix}`, time, ip_0: ip0, ip_1: ip1, server_port: port, protocol: proto },
      ];
      for (let k = 0; k < 3; k++) {
        let row = rows.get(keys[k]);
        if (!row) rows.set(keys[k], row = { doc: netDocs[k], flow: newFlowMeter() });
        addAppToFlowMeter(row.flow!, m);
      }
    }
  }

  private appRow(rows: Rows, key: string, doc: () => flowtap.IDocument): AppMeterCounts {
    let row = rows.get(key);
    if (!row) { row = { doc: doc(), app: newAppMeter() }; rows.set(key, row); }
    return row.app!;
  }

  /** Applies the carried connection counts to a closing window and emits its rows. */
  private closeWindow(g: Granularity, start: number, rows: Rows): void {
    g.carry.applyTo(start, rows);
    for (const row of rows.values()) {
      // Every flow that reported is carried, so load >= flow_count; kept as a guard.
      if (row.flow && row.flow.load < row.flow.flow_count) row.flow.load = row.flow.flow_count;
    }
    for (const row of rows.values()) {
      const doc = row.doc;
      if (row.flow) doc.flow_meter = row.flow;
      if (row.app) doc.app_meter = row.app;
      this.totals.documents++;
      this.outputs.onDocument(doc);
    }
  }
}
