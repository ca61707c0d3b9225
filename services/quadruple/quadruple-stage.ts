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
import { ProtoReader, ProtoWriter, StringCache } from '../../lib/proto-wire';
import { ReservoirThrottle } from '../../lib/throttle';
import { ConcurrentConnections } from './concurrent';
import { FlowTable, IpStrings, LogOutput } from './flow-aggr';
import {
  AM, AppRecord, FLOW_METER_FIELDS, FM, FlowRecord, addAppToFlowMeter, addAppToMeter, addFlowToMeter, appMeterObject, flowMeterObject,
} from './meters';
import { EMPTY_HASH, ROW_TABLES, RowKind, RowStore, Windows, rowHash, strHash } from './windows';
import { BatchWriter, decodeAppMeterBatch, decodeFlowBatch } from './wire';

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

/** Records one at a time, as objects (tests, the in-process pipeline). */
export interface QuadrupleOutputs {
  onDocument(doc: flowtap.IDocument): void;
  onL4Log(log: flowtap.IL4FlowLog): void;
}

/**
 * Records as encoded batch messages (the service): DocumentBatch and L4LogBatch bodies of
 * `batchSize` records each, written straight from the rows' meter slots; `flushBatches` sends
 * the partial last ones.
 */
export interface QuadrupleWireOutputs {
  batchSize: number;
  onDocumentBatch(body: Buffer, count: number): void;
  onL4LogBatch(body: Buffer, count: number): void;
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

interface Granularity {
  suffix: '1s' | '1m';
  windows: Windows;
  /** Flows alive, carried from window to window (flow_meter.load). */
  carry: ConcurrentConnections;
  /** Encoded `table` fields (tag, length, name) by RowKind. */
  tableField: Buffer[];
}

/** An L4 log held by the throttle in wire mode: its encoded fields in the log arena. */
interface EncodedLog {
  start: number;
  end: number;
  sampled?: boolean | null;
}

type HeldLog = flowtap.IL4FlowLog | EncodedLog;

/** Document.side, encoded (field 4), for client and server rows. */
const SIDE_FIELDS = ['client', 'server'].map((side) => Buffer.from([(4 << 3) | 2, side.length, ...Buffer.from(side)]));
/** L4FlowLog.sampled = true (field 40, varint 1), appended to a held log the throttle marked. */
const SAMPLED_TRUE = Buffer.from([0xc0, 0x02, 0x01]);
const FLOW_METER_TAGS = FLOW_METER_FIELDS.map(([, no]) => no << 3);

function granularity(suffix: '1s' | '1m', windows: Windows, carry: ConcurrentConnections): Granularity {
  const tableField = ROW_TABLES.map((t) => { const name = Buffer.from(`${t}.${suffix}`); return Buffer.from([(1 << 3) | 2, name.length, ...name]); });
  return { suffix, windows, carry, tableField };
}

export class QuadrupleStage implements LogOutput {
  readonly drops: Record<QuadrupleDropReason, number> = {
    late_flow_1s: 0, late_flow_1m: 0, late_app_1s: 0, late_app_1m: 0, bad_flow: 0, bad_app: 0, l4_log_throttled: 0,
  };
  readonly totals = { flows: 0, appMeters: 0, documents: 0, l4Logs: 0 };
  readonly config: QuadrupleConfig;
  private readonly second: Granularity;
  private readonly minute: Granularity;
  private readonly table: FlowTable;
  private readonly l4Throttle: ReservoirThrottle<HeldLog>;
  private clockSec = -Infinity;
  /** The record being added (reused). */
  private readonly flowRecord = new FlowRecord();
  private readonly appRecord = new AppRecord();
  private readonly reader = new ProtoReader();
  private readonly strings = new StringCache();
  private readonly addFlowRecord = (r: FlowRecord) => this.addFlow(r);
  private readonly addAppRecord = (r: AppRecord) => this.addAppMeter(r);
  // Wire mode only.
  private readonly objects: QuadrupleOutputs | undefined;
  private readonly documentBatch: BatchWriter | undefined;
  private readonly l4Batch: BatchWriter | undefined;
  /** Encoded L4 logs waiting in the throttle (emptied whenever it holds none). */
  private readonly logArena = new ProtoWriter();

  constructor(outputs: QuadrupleOutputs | QuadrupleWireOutputs, config: Partial<QuadrupleConfig> = {}) {
    this.config = { ...DEFAULT_QUADRUPLE_CONFIG, ...config };
    const c = this.config;
    this.table = new FlowTable(this, c.aggregateHealthChecks);
    this.second = granularity('1s', new Windows(1, c.toleranceSecondSec), new ConcurrentConnections(this.table, 0, 1, c.carryIdleLimitSec));
    this.minute = granularity('1m', new Windows(60, c.toleranceMinuteSec), new ConcurrentConnections(this.table, 1, 60, c.carryIdleLimitSec));
    if ('onDocumentBatch' in outputs) {
      this.documentBatch = new BatchWriter(outputs.batchSize, (body, count) => outputs.onDocumentBatch(body, count));
      this.l4Batch = new BatchWriter(outputs.batchSize, (body, count) => outputs.onL4LogBatch(body, count));
    } else {
      this.objects = outputs;
    }
    this.l4Throttle = new ReservoirThrottle<HeldLog>(c.l4LogPerSecond, (log) => {
      this.totals.l4Logs++;
      if (this.objects) { this.objects.onL4Log(log as flowtap.IL4FlowLog); return; }
      const { start, end, sampled } = log as EncodedLog;
      const w = this.l4Batch!.w;
      w.uint32(10);
      w.uint32(end - start + (sampled ? SAMPLED_TRUE.length : 0));
      w.raw(this.logArena.buf, start, end);
      if (sampled) w.raw(SAMPLED_TRUE);
      this.l4Batch!.recordAdded();
    }, c.throttleSeed);
  }

  /** Gauge: flows with an L4 log being merged. */
  get flowsInAggr(): number {
    return this.table.size;
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
      health_checks_merged: this.table.healthChecksMerged,
      carry_expired_1s: this.second.carry.expired,
      carry_expired_1m: this.minute.carry.expired,
    };
  }

  addFlows(flows: flowtap.IFlow[]): void {
    for (const f of flows) this.addFlow(this.flowRecord.fromObject(f));
    this.advanceTo(this.clockSec);
  }

  addAppMeters(meters: flowtap.IAppMeter[]): void {
    for (const m of meters) this.addAppMeter(this.appRecord.fromObject(m));
    this.advanceTo(this.clockSec);
  }

  /**
   * A FlowBatch message body, decoded straight into the stage; returns the number of flows.
   * Throws on a malformed body (the flows before the fault have been added).
   */
  addFlowBatch(body: Uint8Array): number {
    const count = decodeFlowBatch(body, this.reader, this.strings, this.flowRecord, this.addFlowRecord);
    this.advanceTo(this.clockSec);
    return count;
  }

  /** An AppMeterBatch message body, as addFlowBatch. */
  addAppMeterBatch(body: Uint8Array): number {
    const count = decodeAppMeterBatch(body, this.reader, this.strings, this.appRecord, this.addAppRecord);
    this.advanceTo(this.clockSec);
    return count;
  }

  /** Moves the clock (µs) and closes the windows now past their tolerance. */
  advance(nowUs: number): void {
    if (nowUs > 0) this.advanceTo(Math.floor(nowUs / 1e6));
  }

  /** End of stream: closes every window and emits every L4 log still being merged. */
  flush(): void {
    this.second.windows.flush((start, rows) => this.closeWindow(this.second, start, rows));
    this.minute.windows.flush((start, rows) => this.closeWindow(this.minute, start, rows));
    this.table.flush();
    this.l4Throttle.flush();
  }

  /** Wire mode: hands over the partial last batches (the service does this on ticks and at the end). */
  flushBatches(): void {
    this.l4Batch?.flush();
    this.documentBatch?.flush();
  }

  /** LogOutput: a flow's L4 log leaves the aggregation, read from its slot, into the throttle. */
  fromSlot(table: FlowTable, s: number): void {
    let log: HeldLog;
    if (this.objects) log = table.logObject(s);
    else {
      const arena = this.logArena;
      if (this.l4Throttle.held === 0) arena.pos = 0;
      const start = arena.pos;
      table.encodeLog(s, arena);
      log = { start, end: arena.pos, sampled: false };
    }
    this.offerLog(log, table.logEndTime(s));
  }

  /** LogOutput: a merged health-check log. */
  fromObject(obj: flowtap.IL4FlowLog): void {
    let log: HeldLog = obj;
    if (!this.objects) {
      const arena = this.logArena;
      if (this.l4Throttle.held === 0) arena.pos = 0;
      const start = arena.pos;
      arena.raw(flowtap.L4FlowLog.encode(obj).finish());
      log = { start, end: arena.pos, sampled: false };
    }
    this.offerLog(log, Number(obj.end_time) || 0);
  }

  private offerLog(log: HeldLog, endTimeUs: number): void {
    this.l4Throttle.add(log, Math.max(endTimeUs || 0, this.clockSec * 1e6));
    this.drops.l4_log_throttled = this.l4Throttle.dropped;
  }

  private advanceTo(sec: number): void {
    if (!(sec > this.clockSec)) sec = this.clockSec;
    this.clockSec = sec;
    if (sec === -Infinity) return;
    this.second.windows.advance(sec, (start, rows) => this.closeWindow(this.second, start, rows));
    this.minute.windows.advance(sec, (start, rows) => {
      this.closeWindow(this.minute, start, rows);
      this.table.closeMinutesBefore(start + 60);
    });
    this.l4Throttle.advance(sec * 1e6);
  }

  private addFlow(r: FlowRecord): void {
    const t = r.report_time;
    if (!(t > 0) || r.ip_0_len !== 16 || r.ip_1_len !== 16) { this.drops.bad_flow++; return; }
    this.totals.flows++;
    const sec = Math.floor(t / 1e6);
    if (sec > this.clockSec) this.clockSec = sec;
    const rows1s = this.second.windows.rowsAt(sec);
    const rows1m = this.minute.windows.rowsAt(sec);
    if (!rows1s) this.drops.late_flow_1s++;
    if (!rows1m) this.drops.late_flow_1m++;
    const table = this.table;
    const s = table.slotOf(r);
    // Late or not, the report tells the carry the flow is alive (or closed).
    this.second.carry.seen(s, sec, r.is_closed);
    this.minute.carry.seen(s, sec, r.is_closed);
    // FlowAggr (only while the minute is open) also tells whether the flow is new to the windows.
    let firstInSecond = true, firstInMinute = true;
    if (rows1m) {
      const first = table.aggregate(s, r, sec);
      firstInSecond = (first & 1) !== 0;
      firstInMinute = (first & 2) !== 0;
    }
    if (rows1s) this.addNetworkRows(rows1s, 0, s, r, firstInSecond);
    if (rows1m) this.addNetworkRows(rows1m, 1, s, r, firstInMinute);
  }

  private addNetworkRows(rows: RowStore, g: number, s: number, f: FlowRecord, distinct: boolean): void {
    const t = this.table;
    t.networkRows(s, g, rows);
    const c = t.outC * FM.SIZE, sv = t.outS * FM.SIZE, e = t.outE * FM.SIZE;
    const m = rows.flow; // after the rows are made: making one may reallocate it
    addFlowToMeter(m, c, f, false);
    addFlowToMeter(m, sv, f, true);
    addFlowToMeter(m, e, f, false);
    if (distinct) { m[c + FM.flow_count]++; m[sv + FM.flow_count]++; m[e + FM.flow_count]++; }
  }

  private addAppMeter(a: AppRecord): void {
    const sec = a.time;
    if (!(sec > 0) || a.ip_0_len !== 16 || a.ip_1_len !== 16) { this.drops.bad_app++; return; }
    this.totals.appMeters++;
    // AppMeters do not move the clock: they come from l7, on a path that may run ahead of (or
    // behind) the flow reports, and a clock moved by them would close windows whose flow reports
    // are still on their way. Flow reports and ticks, both from flow, drive it.
    const rows1s = this.second.windows.rowsAt(sec);
    const rows1m = this.minute.windows.rowsAt(sec);
    if (!rows1s) this.drops.late_app_1s++;
    if (!rows1m) this.drops.late_app_1m++;
    if (!rows1s && !rows1m) return;
    const port = a.server_port, proto = a.protocol, t = this.table;
    // The flow's slot (usually still held: its carry outlives its reports) has the addresses
    // formatted and hashed, the network row hashes made and, often, its rows in this window found.
    let s = t.find(a.flow_id);
    if (s >= 0 && !t.sameEndpoints(s, a.ips, port, proto)) s = -1;
    let ip0: string, ip1: string, h0: number, h1: number;
    const hashes = this.appHashes;
    if (s >= 0) {
      ip0 = t.ip0[s]; ip1 = t.ip1[s]; h0 = t.hashIp0[s]; h1 = t.hashIp1[s];
    } else {
      ip0 = this.ipStrings.format(a.ips, 0); ip1 = this.ipStrings.format(a.ips, 16);
      h0 = strHash(ip0); h1 = strHash(ip1);
      hashes[3] = rowHash(RowKind.NetClient, h0, EMPTY_HASH, port, proto, EMPTY_HASH, EMPTY_HASH);
      hashes[4] = rowHash(RowKind.NetServer, h1, EMPTY_HASH, port, proto, EMPTY_HASH, EMPTY_HASH);
      hashes[5] = rowHash(RowKind.NetEdge, h0, h1, port, proto, EMPTY_HASH, EMPTY_HASH);
    }
    const hL7 = strHash(a.l7_protocol), hEp = strHash(a.endpoint);
    hashes[0] = rowHash(RowKind.AppClient, h0, EMPTY_HASH, port, proto, hL7, hEp);
    hashes[1] = rowHash(RowKind.AppServer, h1, EMPTY_HASH, port, proto, hL7, hEp);
    hashes[2] = rowHash(RowKind.AppEdge, h0, h1, port, proto, hL7, hEp);
    if (rows1s) this.addAppRows(rows1s, 0, s, a, ip0, ip1);
    if (rows1m) this.addAppRows(rows1m, 1, s, a, ip0, ip1);
  }

  /** rowHash of the AppMeter being added's rows: application client, server, edge; network client, server, edge (no flow slot). */
  private readonly appHashes = new Int32Array(6);
  private readonly ipStrings = new IpStrings();

  /** Adds AppMeter `a` to its application rows and to the network rows of the same endpoints (flow slot `s`, or -1). */
  private addAppRows(rows: RowStore, g: number, s: number, a: AppRecord, ip0: string, ip1: string): void {
    const h = this.appHashes, port = a.server_port, proto = a.protocol, l7 = a.l7_protocol, ep = a.endpoint;
    const ac = rows.row(h[0], RowKind.AppClient, ip0, '', port, proto, l7, ep) * AM.SIZE;
    const as = rows.row(h[1], RowKind.AppServer, ip1, '', port, proto, l7, ep) * AM.SIZE;
    const ae = rows.row(h[2], RowKind.AppEdge, ip0, ip1, port, proto, l7, ep) * AM.SIZE;
    let c: number, sv: number, e: number;
    if (s >= 0) {
      const t = this.table;
      t.networkRows(s, g, rows);
      c = t.outC * FM.SIZE; sv = t.outS * FM.SIZE; e = t.outE * FM.SIZE;
    } else {
      c = rows.row(h[3], RowKind.NetClient, ip0, '', port, proto, '', '') * FM.SIZE;
      sv = rows.row(h[4], RowKind.NetServer, ip1, '', port, proto, '', '') * FM.SIZE;
      e = rows.row(h[5], RowKind.NetEdge, ip0, ip1, port, proto, '', '') * FM.SIZE;
    }
    addAppToMeter(rows.app, ac, a);
    addAppToMeter(rows.app, as, a);
    addAppToMeter(rows.app, ae, a);
    addAppToFlowMeter(rows.flow, c, a);
    addAppToFlowMeter(rows.flow, sv, a);
    addAppToFlowMeter(rows.flow, e, a);
  }

  /** Applies the carried connection counts to a closing window and emits its rows. */
  private closeWindow(g: Granularity, start: number, rows: RowStore): void {
    g.carry.applyTo(start, rows);
    const m = rows.flow;
    for (let r = 0; r < rows.count; r++) {
      // Every flow that reported is carried, so load >= flow_count; kept as a guard.
      const o = r * FM.SIZE;
      if (rows.kind[r] <= RowKind.NetEdge && m[o + FM.load] < m[o + FM.flow_count]) m[o + FM.load] = m[o + FM.flow_count];
    }
    this.totals.documents += rows.count;
    if (this.objects) {
      for (let r = 0; r < rows.count; r++) this.objects.onDocument(this.documentObject(g, start, rows, r));
    } else {
      for (let r = 0; r < rows.count; r++) this.encodeDocument(g, start, rows, r);
    }
  }

  private documentObject(g: Granularity, time: number, rows: RowStore, r: number): flowtap.IDocument {
    const kind = rows.kind[r] as RowKind;
    const table = `${ROW_TABLES[kind]}.${g.suffix}`, server_port = rows.port[r], protocol = rows.proto[r];
    switch (kind) {
      case RowKind.NetClient:
      case RowKind.NetServer:
        return { table, time, ip: rows.ipA[r], side: kind === RowKind.NetClient ? 'client' : 'server', server_port, protocol, flow_meter: flowMeterObject(rows.flow, r * FM.SIZE) };
      case RowKind.NetEdge:
        return { table, time, ip_0: rows.ipA[r], ip_1: rows.ipB[r], server_port, protocol, flow_meter: flowMeterObject(rows.flow, r * FM.SIZE) };
      case RowKind.AppClient:
      case RowKind.AppServer:
        return {
          table, time, ip: rows.ipA[r], side: kind === RowKind.AppClient ? 'client' : 'server', server_port, protocol,
          l7_protocol: rows.l7[r], endpoint: rows.endpoint[r], app_meter: appMeterObject(rows.app, r * AM.SIZE),
        };
      default:
        return {
          table, time, ip_0: rows.ipA[r], ip_1: rows.ipB[r], server_port, protocol,
          l7_protocol: rows.l7[r], endpoint: rows.endpoint[r], app_meter: appMeterObject(rows.app, r * AM.SIZE),
        };
    }
  }

  /** Writes row `r` as one Document of the DocumentBatch being filled. */
  private encodeDocument(g: Granularity, time: number, rows: RowStore, r: number): void {
    const batch = this.documentBatch!, w = batch.w;
    const kind = rows.kind[r] as RowKind;
    batch.beginRecord();
    w.raw(g.tableField[kind]);
    w.uint64Field(2 << 3, time);
    if (kind === RowKind.NetEdge || kind === RowKind.AppEdge) {
      w.stringField((5 << 3) | 2, rows.ipA[r]);
      w.stringField((6 << 3) | 2, rows.ipB[r]);
    } else {
      w.stringField((3 << 3) | 2, rows.ipA[r]);
      w.raw(SIDE_FIELDS[kind === RowKind.NetClient || kind === RowKind.AppClient ? 0 : 1]);
    }
    w.uint32Field(7 << 3, rows.port[r]);
    w.uint32Field(8 << 3, rows.proto[r]);
    if (kind <= RowKind.NetEdge) {
      w.begin((20 << 3) | 2);
      const m = rows.flow, o = r * FM.SIZE;
      for (let k = 0; k < FM.SIZE; k++) {
        const v = m[o + k];
        if (v !== 0) { w.uint32(FLOW_METER_TAGS[k]); w.uint64(v); }
      }
      w.end();
    } else {
      w.stringField((9 << 3) | 2, rows.l7[r]);
      w.stringField((10 << 3) | 2, rows.endpoint[r]);
      w.begin((21 << 3) | 2);
      const a = rows.app, o = r * AM.SIZE;
      for (let k = 0; k < AM.SIZE; k++) {
        const v = a[o + k];
        if (v !== 0) { w.uint32((k + 1) << 3); w.uint64(v); }
      }
      w.end();
    }
    batch.endRecord();
  }
}
