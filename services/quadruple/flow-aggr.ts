// FlowTable: what quadruple keeps per flow, in reused slots (typed arrays and string arrays, one
// slot per live flow, no object per flow): its addresses and metric row hashes, its L4 flow log
// being merged (FlowAggr), and its concurrent-connection carry state (concurrent.ts).
//
// FlowAggr merges a flow's per-second reports into one L4FlowLog per flow per minute. A log
// goes out when the flow's first report of a later minute arrives, when the flow closes (at
// once, with its close type), or when the minute's window closes. A log of a flow still open
// says close_type "forced_report" (DeepFlow's name for the periodic report of a live flow).
// Logs go out in the order their flows entered the aggregation (a doubly linked list of slots).
//
// Health checks (optional): a TCP flow seen from its SYN that closed by a client RST right after
// the handshake (close type tcp_client_rst or client_establish_reset) with no payload either way
// is merged into one log per server (ip_1, server_port) per minute, emitted when the minute
// closes. That log has flow_id 0 and client_port 0, the first client's ip_0, and the summed
// counters of all the checks (syn_count = number of checks, one SYN each unless repeated).
import { flowtap } from '../../lib/proto';
import { formatIp } from '../../lib/packet-batch';
import { FlowRecord } from './meters';
import { EMPTY_HASH, RowKind, RowStore, rowHash, strHash } from './windows';
import type { ProtoWriter } from '../../lib/proto-wire';

/** Numeric L4FlowLog fields held in a slot, in proto order. LG indexes this list. */
const LOG_FIELDS: readonly (readonly [keyof flowtap.IL4FlowLog, number, 'u64' | 'u32'])[] = [
  ['flow_id', 1, 'u64'], ['start_time', 2, 'u64'], ['end_time', 3, 'u64'],
  ['client_port', 6, 'u32'], ['server_port', 7, 'u32'], ['protocol', 8, 'u32'],
  ['packet_tx', 11, 'u64'], ['packet_rx', 12, 'u64'], ['byte_tx', 13, 'u64'], ['byte_rx', 14, 'u64'],
  ['l3_byte_tx', 15, 'u64'], ['l3_byte_rx', 16, 'u64'], ['l4_byte_tx', 17, 'u64'], ['l4_byte_rx', 18, 'u64'],
  ['vlan', 19, 'u32'], ['tunnel_type', 20, 'u32'], ['tunnel_id', 21, 'u32'], ['tcp_flags_tx', 22, 'u32'], ['tcp_flags_rx', 23, 'u32'],
  ['is_new_flow', 24, 'u32'],
  ['rtt', 25, 'u64'], ['rtt_client_max', 26, 'u64'], ['rtt_server_max', 27, 'u64'], ['srt_max', 28, 'u64'], ['art_max', 29, 'u64'], ['cit_max', 30, 'u64'],
  ['retrans_tx', 31, 'u32'], ['retrans_rx', 32, 'u32'], ['zero_win_tx', 33, 'u32'], ['zero_win_rx', 34, 'u32'], ['ooo_tx', 35, 'u32'], ['ooo_rx', 36, 'u32'],
  ['syn_count', 37, 'u32'], ['synack_count', 38, 'u32'], ['fin_count', 39, 'u32'], ['retrans_syn', 41, 'u32'], ['retrans_synack', 42, 'u32'],
];

const enum LG {
  flow_id, start_time, end_time, client_port, server_port, protocol,
  packet_tx, packet_rx, byte_tx, byte_rx, l3_byte_tx, l3_byte_rx, l4_byte_tx, l4_byte_rx,
  vlan, tunnel_type, tunnel_id, tcp_flags_tx, tcp_flags_rx, is_new_flow,
  rtt, rtt_client_max, rtt_server_max, srt_max, art_max, cit_max,
  retrans_tx, retrans_rx, zero_win_tx, zero_win_rx, ooo_tx, ooo_rx, syn_count, synack_count, fin_count, retrans_syn, retrans_synack,
  SIZE,
}

const LOG_TAGS = LOG_FIELDS.map(([, no]) => no << 3);
const LOG_U32 = LOG_FIELDS.map(([, , type]) => type === 'u32');

const n = (v: number | null | undefined): number => (v ? Number(v) : 0);

/** A closed flow's whole-life log that is a health check (see the header). */
export function isHealthCheck(l: flowtap.IL4FlowLog): boolean {
  return l.protocol === 6 && l.is_new_flow === true
    && (l.close_type === 'tcp_client_rst' || l.close_type === 'client_establish_reset')
    && n(l.syn_count) > 0 && n(l.synack_count) > 0 && n(l.l4_byte_tx) === 0 && n(l.l4_byte_rx) === 0;
}

/** Where FlowTable sends the logs it emits: a slot's log (read it before returning), or an object. */
export interface LogOutput {
  fromSlot(table: FlowTable, slot: number): void;
  fromObject(log: flowtap.IL4FlowLog): void;
}

const NONE = -1;

/**
 * Address strings, IPv4 ones remembered by address (a client or server shows up in many flows):
 * one string per address instead of one per flow.
 */
export class IpStrings {
  private readonly v4 = new Map<number, string>();

  format(ips: Uint8Array, off: number): string {
    let mapped = ips[off + 10] === 0xff && ips[off + 11] === 0xff;
    for (let k = 0; mapped && k < 10; k++) if (ips[off + k] !== 0) mapped = false;
    if (!mapped) return formatIp(ips, off);
    const a = ips[off + 12] * 16777216 + ips[off + 13] * 65536 + ips[off + 14] * 256 + ips[off + 15];
    let s = this.v4.get(a);
    if (s === undefined) {
      if (this.v4.size >= 65536) this.v4.clear(); // bounded: a scan of many addresses only costs re-formatting
      s = formatIp(ips, off);
      this.v4.set(a, s);
    }
    return s;
  }
}

export class FlowTable {
  /** Flow id -> slot, for every flow aggregated or carried. */
  private readonly slots = new Map<number, number>();
  private readonly free: number[] = [];
  private capacity = 0;
  private used = 0;

  flowId = new Float64Array(0);
  readonly ip0: string[] = [];
  readonly ip1: string[] = [];
  /** strHash of ip0 and ip1 (application rows hash with them). */
  hashIp0 = new Int32Array(0);
  hashIp1 = new Int32Array(0);
  /** rowHash of the flow's network rows: client side, server side, edge. */
  hashC = new Int32Array(0);
  hashS = new Int32Array(0);
  hashE = new Int32Array(0);
  private readonly ipStrings = new IpStrings();
  port = new Float64Array(0);
  proto = new Float64Array(0);
  /** The flow's addresses as on the wire (ip_0 then ip_1, 32 bytes per slot). */
  ipBytes = new Uint8Array(0);

  // The flow's network rows in the window it last touched, per granularity g at slot * 2 + g:
  // that window's start (NaN: none) and the client, server and edge row numbers. Saves the row
  // lookups for every later report, AppMeter and carry of the flow in the same window.
  rowStart = new Float64Array(0);
  rowC = new Int32Array(0);
  rowS = new Int32Array(0);
  rowE = new Int32Array(0);
  /** networkRows' answer. */
  outC = 0;
  outS = 0;
  outE = 0;

  // FlowAggr state.
  inAggr = new Uint8Array(0);
  minute = new Float64Array(0);
  /** Last second a report of the flow was counted in (for distinct counts). */
  lastSec = new Float64Array(0);
  log = new Float64Array(0);
  readonly l7: string[] = [];
  readonly closeType: string[] = [];
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private head = NONE;
  private tail = NONE;
  private aggrCount = 0;

  // Carry state per granularity g (0: 1 s, 1: 1 min), at slot * 2 + g.
  inCarry = new Uint8Array(0);
  carryFirst = new Float64Array(0);
  carryLast = new Float64Array(0);
  carryClose = new Float64Array(0);

  /** Health-check logs being merged, by server and minute. */
  private readonly healthChecks = new Map<string, { minute: number; log: flowtap.IL4FlowLog }>();
  /** Flow logs merged into a health-check log, all time. */
  healthChecksMerged = 0;

  constructor(private readonly out: LogOutput, private readonly aggregateHealthChecks = false) {
    this.grow(1024);
  }

  /** Flows with a log being merged, and health-check logs being merged. */
  get size(): number {
    return this.aggrCount + this.healthChecks.size;
  }

  /** Slots in use (flows aggregated or carried). */
  get live(): number {
    return this.slots.size;
  }

  /** The slot of the flow of `r`, taken (addresses formatted, row hashes made) if the flow is new. */
  slotOf(r: FlowRecord): number {
    let s = this.slots.get(r.flow_id);
    if (s !== undefined) return s;
    if (this.free.length > 0) s = this.free.pop()!;
    else { if (this.used === this.capacity) this.grow(this.capacity * 2); s = this.used++; }
    this.slots.set(r.flow_id, s);
    this.flowId[s] = r.flow_id;
    this.ipBytes.set(r.ips, s * 32);
    this.rowStart[s * 2] = NaN; this.rowStart[s * 2 + 1] = NaN;
    const ip0 = this.ipStrings.format(r.ips, 0), ip1 = this.ipStrings.format(r.ips, 16);
    const port = r.server_port, proto = r.protocol;
    this.ip0[s] = ip0; this.ip1[s] = ip1; this.port[s] = port; this.proto[s] = proto;
    const h0 = strHash(ip0), h1 = strHash(ip1), none = EMPTY_HASH;
    this.hashIp0[s] = h0; this.hashIp1[s] = h1;
    this.hashC[s] = rowHash(RowKind.NetClient, h0, none, port, proto, none, none);
    this.hashS[s] = rowHash(RowKind.NetServer, h1, none, port, proto, none, none);
    this.hashE[s] = rowHash(RowKind.NetEdge, h0, h1, port, proto, none, none);
    return s;
  }

  /** The slot of flow `flowId` if it is held, else -1. */
  find(flowId: number): number {
    return this.slots.get(flowId) ?? -1;
  }

  /** Whether slot `s`'s flow has these addresses (32 bytes at `off`), server port and protocol. */
  sameEndpoints(s: number, ips: Uint8Array, port: number, proto: number): boolean {
    if (this.port[s] !== port || this.proto[s] !== proto) return false;
    const b = this.ipBytes, o = s * 32;
    for (let k = 0; k < 32; k++) if (b[o + k] !== ips[k]) return false;
    return true;
  }

  /**
   * Sets outC/outS/outE to slot `s`'s client, server and edge rows in `rows` (a window of
   * granularity `g`), making them if new.
   */
  networkRows(s: number, g: number, rows: RowStore): void {
    const i = s * 2 + g;
    if (this.rowStart[i] === rows.start) {
      this.outC = this.rowC[i]; this.outS = this.rowS[i]; this.outE = this.rowE[i];
      return;
    }
    const ip0 = this.ip0[s], ip1 = this.ip1[s], port = this.port[s], proto = this.proto[s];
    this.outC = this.rowC[i] = rows.row(this.hashC[s], RowKind.NetClient, ip0, '', port, proto, '', '');
    this.outS = this.rowS[i] = rows.row(this.hashS[s], RowKind.NetServer, ip1, '', port, proto, '', '');
    this.outE = this.rowE[i] = rows.row(this.hashE[s], RowKind.NetEdge, ip0, ip1, port, proto, '', '');
    this.rowStart[i] = rows.start;
  }

  /** Gives the slot back once nothing (aggregation, either carry) holds the flow. */
  release(s: number): void {
    if (this.inAggr[s] || this.inCarry[s * 2] || this.inCarry[s * 2 + 1]) return;
    this.slots.delete(this.flowId[s]);
    this.ip0[s] = ''; this.ip1[s] = '';
    this.l7[s] = ''; this.closeType[s] = '';
    this.free.push(s);
  }

  /**
   * FlowAggr: adds report `r` of second `sec` to slot `s`'s log; returns whether this is the
   * flow's first report in this minute (bit 1) / in this second (bit 0), so windows can count
   * distinct flows.
   */
  aggregate(s: number, r: FlowRecord, sec: number): number {
    const minute = sec - (sec % 60);
    let firstInMinute = false;
    if (this.inAggr[s] && this.minute[s] < minute) {
      this.out.fromSlot(this, s);
      this.unlink(s);
      this.startLog(s, r, minute);
      firstInMinute = true;
    } else if (!this.inAggr[s]) {
      this.startLog(s, r, minute);
      firstInMinute = true;
    }
    const firstInSecond = this.lastSec[s] !== sec;
    this.lastSec[s] = sec;
    this.merge(s, r);
    if (r.is_closed) {
      this.unlink(s);
      if (this.aggregateHealthChecks && this.isHealthCheckSlot(s)) this.addHealthCheck(this.logObject(s), minute);
      else this.out.fromSlot(this, s);
    }
    return (firstInMinute ? 2 : 0) | (firstInSecond ? 1 : 0);
  }

  /** Emits the logs of every minute before `minuteEnd` (s). */
  closeMinutesBefore(minuteEnd: number): void {
    for (let s = this.head; s !== NONE;) {
      const next = this.next[s];
      if (this.minute[s] < minuteEnd) {
        this.out.fromSlot(this, s);
        this.unlink(s);
        this.release(s);
      }
      s = next;
    }
    for (const [key, hc] of this.healthChecks) {
      if (hc.minute < minuteEnd) { this.out.fromObject(hc.log); this.healthChecks.delete(key); }
    }
  }

  flush(): void {
    for (let s = this.head; s !== NONE;) {
      const next = this.next[s];
      this.out.fromSlot(this, s);
      this.unlink(s);
      this.release(s);
      s = next;
    }
    for (const hc of this.healthChecks.values()) this.out.fromObject(hc.log);
    this.healthChecks.clear();
  }

  /** end_time of slot `s`'s log (µs). */
  logEndTime(s: number): number {
    return this.log[s * LG.SIZE + LG.end_time];
  }

  /** Writes slot `s`'s log as L4FlowLog fields (no `sampled`: the throttle decides it later). */
  encodeLog(s: number, w: ProtoWriter): void {
    const o = s * LG.SIZE, log = this.log;
    for (let k = 0; k < LG.SIZE; k++) {
      const v = log[o + k];
      if (v === 0) continue;
      if (LOG_U32[k]) w.uint32Field(LOG_TAGS[k], v);
      else w.uint64Field(LOG_TAGS[k], v);
    }
    w.stringField((4 << 3) | 2, this.ip0[s]);
    w.stringField((5 << 3) | 2, this.ip1[s]);
    w.stringField((9 << 3) | 2, this.l7[s]);
    w.stringField((10 << 3) | 2, this.closeType[s]);
  }

  /** Slot `s`'s log as an object (every field present, as the object output has always had it). */
  logObject(s: number): flowtap.IL4FlowLog {
    const o = s * LG.SIZE, log = this.log;
    const u32 = (k: number) => log[o + k] >>> 0;
    return {
      flow_id: log[o + LG.flow_id], start_time: log[o + LG.start_time], end_time: log[o + LG.end_time],
      ip_0: this.ip0[s], ip_1: this.ip1[s],
      client_port: log[o + LG.client_port], server_port: log[o + LG.server_port], protocol: log[o + LG.protocol],
      l7_protocol: this.l7[s], close_type: this.closeType[s],
      packet_tx: log[o + LG.packet_tx], packet_rx: log[o + LG.packet_rx], byte_tx: log[o + LG.byte_tx], byte_rx: log[o + LG.byte_rx],
      l3_byte_tx: log[o + LG.l3_byte_tx], l3_byte_rx: log[o + LG.l3_byte_rx], l4_byte_tx: log[o + LG.l4_byte_tx], l4_byte_rx: log[o + LG.l4_byte_rx],
      vlan: log[o + LG.vlan], tunnel_type: log[o + LG.tunnel_type], tunnel_id: log[o + LG.tunnel_id],
      tcp_flags_tx: u32(LG.tcp_flags_tx), tcp_flags_rx: u32(LG.tcp_flags_rx), is_new_flow: log[o + LG.is_new_flow] !== 0,
      rtt: log[o + LG.rtt], rtt_client_max: log[o + LG.rtt_client_max], rtt_server_max: log[o + LG.rtt_server_max],
      srt_max: log[o + LG.srt_max], art_max: log[o + LG.art_max], cit_max: log[o + LG.cit_max],
      retrans_tx: log[o + LG.retrans_tx], retrans_rx: log[o + LG.retrans_rx], zero_win_tx: log[o + LG.zero_win_tx], zero_win_rx: log[o + LG.zero_win_rx],
      ooo_tx: log[o + LG.ooo_tx], ooo_rx: log[o + LG.ooo_rx],
      syn_count: log[o + LG.syn_count], synack_count: log[o + LG.synack_count], fin_count: log[o + LG.fin_count], sampled: false,
      retrans_syn: log[o + LG.retrans_syn], retrans_synack: log[o + LG.retrans_synack],
    };
  }

  private isHealthCheckSlot(s: number): boolean {
    const o = s * LG.SIZE, log = this.log, ct = this.closeType[s];
    return log[o + LG.protocol] === 6 && log[o + LG.is_new_flow] !== 0
      && (ct === 'tcp_client_rst' || ct === 'client_establish_reset')
      && log[o + LG.syn_count] > 0 && log[o + LG.synack_count] > 0 && log[o + LG.l4_byte_tx] === 0 && log[o + LG.l4_byte_rx] === 0;
  }

  private addHealthCheck(log: flowtap.IL4FlowLog, minute: number): void {
    this.healthChecksMerged++;
    const key = `${log.ip_1}|${log.server_port}|${minute}`;
    const hc = this.healthChecks.get(key);
    if (!hc) {
      this.healthChecks.set(key, { minute, log: { ...log, flow_id: 0, client_port: 0 } });
      return;
    }
    mergeLogObjects(hc.log, log);
    hc.log.start_time = Math.min(n(hc.log.start_time), n(log.start_time));
  }

  private startLog(s: number, r: FlowRecord, minute: number): void {
    this.inAggr[s] = 1;
    this.aggrCount++;
    this.minute[s] = minute;
    this.lastSec[s] = -1;
    const o = s * LG.SIZE, log = this.log;
    log.fill(0, o, o + LG.SIZE);
    log[o + LG.flow_id] = r.flow_id; log[o + LG.start_time] = r.start_time; log[o + LG.end_time] = r.end_time;
    log[o + LG.client_port] = r.client_port; log[o + LG.server_port] = r.server_port; log[o + LG.protocol] = r.protocol;
    log[o + LG.vlan] = r.vlan; log[o + LG.tunnel_type] = r.tunnel_type; log[o + LG.tunnel_id] = r.tunnel_id;
    this.l7[s] = r.l7_protocol;
    this.closeType[s] = 'forced_report';
    // Append to the emission order.
    this.prev[s] = this.tail; this.next[s] = NONE;
    if (this.tail === NONE) this.head = s; else this.next[this.tail] = s;
    this.tail = s;
  }

  /** Takes slot `s` out of the aggregation (its log was emitted or merged). */
  private unlink(s: number): void {
    if (!this.inAggr[s]) return;
    this.inAggr[s] = 0;
    this.aggrCount--;
    const p = this.prev[s], q = this.next[s];
    if (p === NONE) this.head = q; else this.next[p] = q;
    if (q === NONE) this.tail = p; else this.prev[q] = p;
  }

  private merge(s: number, f: FlowRecord): void {
    const o = s * LG.SIZE, l = this.log;
    l[o + LG.packet_tx] += f.packet_tx; l[o + LG.packet_rx] += f.packet_rx;
    l[o + LG.byte_tx] += f.byte_tx; l[o + LG.byte_rx] += f.byte_rx;
    l[o + LG.l3_byte_tx] += f.l3_byte_tx; l[o + LG.l3_byte_rx] += f.l3_byte_rx;
    l[o + LG.l4_byte_tx] += f.l4_byte_tx; l[o + LG.l4_byte_rx] += f.l4_byte_rx;
    l[o + LG.retrans_tx] += f.retrans_tx; l[o + LG.retrans_rx] += f.retrans_rx;
    l[o + LG.zero_win_tx] += f.zero_win_tx; l[o + LG.zero_win_rx] += f.zero_win_rx;
    l[o + LG.ooo_tx] += f.ooo_tx; l[o + LG.ooo_rx] += f.ooo_rx;
    l[o + LG.syn_count] += f.syn_count; l[o + LG.synack_count] += f.synack_count;
    l[o + LG.fin_count] += f.fin_count;
    l[o + LG.retrans_syn] += f.retrans_syn;
    l[o + LG.retrans_synack] += f.retrans_synack;
    l[o + LG.tcp_flags_tx] = l[o + LG.tcp_flags_tx] | f.tcp_flags_tx;
    l[o + LG.tcp_flags_rx] = l[o + LG.tcp_flags_rx] | f.tcp_flags_rx;
    if (f.end_time > l[o + LG.end_time]) l[o + LG.end_time] = f.end_time;
    if (f.is_new_flow) l[o + LG.is_new_flow] = 1;
    if (f.rtt > 0) l[o + LG.rtt] = f.rtt;
    if (f.rtt_client_max > l[o + LG.rtt_client_max]) l[o + LG.rtt_client_max] = f.rtt_client_max;
    if (f.rtt_server_max > l[o + LG.rtt_server_max]) l[o + LG.rtt_server_max] = f.rtt_server_max;
    if (f.srt_max > l[o + LG.srt_max]) l[o + LG.srt_max] = f.srt_max;
    if (f.art_max > l[o + LG.art_max]) l[o + LG.art_max] = f.art_max;
    if (f.cit_max > l[o + LG.cit_max]) l[o + LG.cit_max] = f.cit_max;
    if (f.l7_protocol) this.l7[s] = f.l7_protocol;
    if (f.is_closed) this.closeType[s] = f.close_type;
  }

  private grow(cap: number): void {
    const f64 = (a: Float64Array, k = 1) => { const b = new Float64Array(cap * k); b.set(a); return b; };
    const u8 = (a: Uint8Array, k = 1) => { const b = new Uint8Array(cap * k); b.set(a); return b; };
    const i32 = (a: Int32Array) => { const b = new Int32Array(cap); b.set(a); return b; };
    const i32x = (a: Int32Array, k: number) => { const b = new Int32Array(cap * k); b.set(a); return b; };
    this.flowId = f64(this.flowId); this.port = f64(this.port); this.proto = f64(this.proto);
    this.ipBytes = u8(this.ipBytes, 32);
    this.hashIp0 = i32(this.hashIp0); this.hashIp1 = i32(this.hashIp1);
    this.hashC = i32(this.hashC); this.hashS = i32(this.hashS); this.hashE = i32(this.hashE);
    this.rowStart = f64(this.rowStart, 2); this.rowC = i32x(this.rowC, 2); this.rowS = i32x(this.rowS, 2); this.rowE = i32x(this.rowE, 2);
    this.inAggr = u8(this.inAggr); this.minute = f64(this.minute); this.lastSec = f64(this.lastSec);
    this.log = f64(this.log, LG.SIZE); this.prev = i32(this.prev); this.next = i32(this.next);
    this.inCarry = u8(this.inCarry, 2); this.carryFirst = f64(this.carryFirst, 2);
    this.carryLast = f64(this.carryLast, 2); this.carryClose = f64(this.carryClose, 2);
    this.capacity = cap;
  }
}

/** Adds log `f`'s counters into log `l` (health-check merging), as a report merges into a log. */
function mergeLogObjects(l: flowtap.IL4FlowLog, f: flowtap.IL4FlowLog): void {
  l.packet_tx = n(l.packet_tx) + n(f.packet_tx); l.packet_rx = n(l.packet_rx) + n(f.packet_rx);
  l.byte_tx = n(l.byte_tx) + n(f.byte_tx); l.byte_rx = n(l.byte_rx) + n(f.byte_rx);
  l.l3_byte_tx = n(l.l3_byte_tx) + n(f.l3_byte_tx); l.l3_byte_rx = n(l.l3_byte_rx) + n(f.l3_byte_rx);
  l.l4_byte_tx = n(l.l4_byte_tx) + n(f.l4_byte_tx); l.l4_byte_rx = n(l.l4_byte_rx) + n(f.l4_byte_rx);
  l.retrans_tx = n(l.retrans_tx) + n(f.retrans_tx); l.retrans_rx = n(l.retrans_rx) + n(f.retrans_rx);
  l.zero_win_tx = n(l.zero_win_tx) + n(f.zero_win_tx); l.zero_win_rx = n(l.zero_win_rx) + n(f.zero_win_rx);
  l.ooo_tx = n(l.ooo_tx) + n(f.ooo_tx); l.ooo_rx = n(l.ooo_rx) + n(f.ooo_rx);
  l.syn_count = n(l.syn_count) + n(f.syn_count); l.synack_count = n(l.synack_count) + n(f.synack_count);
  l.fin_count = n(l.fin_count) + n(f.fin_count);
  l.retrans_syn = n(l.retrans_syn) + n(f.retrans_syn);
  l.retrans_synack = n(l.retrans_synack) + n(f.retrans_synack);
  l.tcp_flags_tx = n(l.tcp_flags_tx) | n(f.tcp_flags_tx);
  l.tcp_flags_rx = n(l.tcp_flags_rx) | n(f.tcp_flags_rx);
  l.end_time = Math.max(n(l.end_time), n(f.end_time));
  if (n(f.rtt) > 0) l.rtt = n(f.rtt);
  l.rtt_client_max = Math.max(n(l.rtt_client_max), n(f.rtt_client_max));
  l.rtt_server_max = Math.max(n(l.rtt_server_max), n(f.rtt_server_max));
  l.srt_max = Math.max(n(l.srt_max), n(f.srt_max));
  l.art_max = Math.max(n(l.art_max), n(f.art_max));
  l.cit_max = Math.max(n(l.cit_max), n(f.cit_max));
  if (f.l7_protocol) l.l7_protocol = f.l7_protocol;
}
