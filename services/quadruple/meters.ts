// Meter arithmetic: a flow report or an AppMeter added into a metric row. Meters live in
// Float64Array slots (one stride per row, fields in proto order, see FM and AM), so a row costs
// no object until it is written out; reports arrive in one reused scratch record each.
import { flowtap } from '../../lib/proto';

/** Every FlowMeter field, as plain numbers (the object form of a row's meter). */
export type FlowMeterCounts = { [K in keyof flowtap.IFlowMeter]-?: number };
export type AppMeterCounts = { [K in keyof flowtap.IAppMeterValues]-?: number };

/** FlowMeter fields in proto order: name and proto field number. FM indexes this list. */
export const FLOW_METER_FIELDS: readonly (readonly [keyof FlowMeterCounts, number])[] = [
  ['packet_tx', 1], ['packet_rx', 2], ['byte_tx', 3], ['byte_rx', 4], ['l3_byte_tx', 5], ['l3_byte_rx', 6],
  ['l4_byte_tx', 7], ['l4_byte_rx', 8], ['new_flow', 9], ['closed_flow', 10], ['syn', 11], ['synack', 12],
  ['l7_request', 13], ['l7_response', 14],
  ['rtt_sum', 20], ['rtt_count', 21], ['rtt_max', 22], ['rtt_client_sum', 23], ['rtt_client_count', 24], ['rtt_client_max', 25],
  ['rtt_server_sum', 26], ['rtt_server_count', 27], ['rtt_server_max', 28], ['srt_sum', 29], ['srt_count', 30], ['srt_max', 31],
  ['art_sum', 32], ['art_count', 33], ['art_max', 34], ['rrt_sum', 35], ['rrt_count', 36], ['rrt_max', 37],
  ['cit_sum', 38], ['cit_count', 39], ['cit_max', 40],
  ['retrans_tx', 50], ['retrans_rx', 51], ['zero_win_tx', 52], ['zero_win_rx', 53], ['retrans_syn', 54], ['retrans_synack', 55],
  ['ooo_tx', 56], ['ooo_rx', 57],
  ['client_rst_flow', 60], ['server_rst_flow', 61], ['client_half_close_flow', 62], ['server_half_close_flow', 63],
  ['client_source_port_reuse', 64], ['client_establish_reset', 65], ['server_reset', 66], ['server_queue_lack', 67],
  ['server_establish_reset', 68], ['tcp_timeout', 69], ['l7_client_error', 70], ['l7_server_error', 71], ['l7_timeout', 72],
  ['load', 80], ['flow_count', 81],
];

/** Index of each FlowMeter field in a row's slot (the order of FLOW_METER_FIELDS). */
export const enum FM {
  packet_tx, packet_rx, byte_tx, byte_rx, l3_byte_tx, l3_byte_rx, l4_byte_tx, l4_byte_rx, new_flow, closed_flow, syn, synack,
  l7_request, l7_response,
  rtt_sum, rtt_count, rtt_max, rtt_client_sum, rtt_client_count, rtt_client_max, rtt_server_sum, rtt_server_count, rtt_server_max,
  srt_sum, srt_count, srt_max, art_sum, art_count, art_max, rrt_sum, rrt_count, rrt_max, cit_sum, cit_count, cit_max,
  retrans_tx, retrans_rx, zero_win_tx, zero_win_rx, retrans_syn, retrans_synack, ooo_tx, ooo_rx,
  client_rst_flow, server_rst_flow, client_half_close_flow, server_half_close_flow, client_source_port_reuse,
  client_establish_reset, server_reset, server_queue_lack, server_establish_reset, tcp_timeout,
  l7_client_error, l7_server_error, l7_timeout, load, flow_count,
  SIZE,
}

/** AppMeterValues fields in proto order (field numbers 1..8). AM indexes this list. */
export const APP_METER_FIELDS: readonly (keyof AppMeterCounts)[] = [
  'request', 'response', 'client_error', 'server_error', 'timeout', 'rrt_sum', 'rrt_count', 'rrt_max',
];

export const enum AM { request, response, client_error, server_error, timeout, rrt_sum, rrt_count, rrt_max, SIZE }

/** The object form of the FlowMeter in slot `o` of `m`. */
export function flowMeterObject(m: Float64Array, o: number): FlowMeterCounts {
  const r = {} as FlowMeterCounts;
  for (let k = 0; k < FM.SIZE; k++) r[FLOW_METER_FIELDS[k][0]] = m[o + k];
  return r;
}

/** The object form of the AppMeterValues in slot `o` of `a`. */
export function appMeterObject(a: Float64Array, o: number): AppMeterCounts {
  const r = {} as AppMeterCounts;
  for (let k = 0; k < AM.SIZE; k++) r[APP_METER_FIELDS[k]] = a[o + k];
  return r;
}

const n = (v: number | null | undefined): number => (v ? Number(v) : 0);

/**
 * One flow report as plain fields (the Flow message's names), filled in place for each report by
 * the FlowBatch decoder or from a decoded object: monomorphic, and no object per report.
 * `ips` holds ip_0 then ip_1 (16 bytes each); `ip_0_len`/`ip_1_len` say how long they were on
 * the wire (-1: absent), since only 16-byte addresses are usable.
 */
export class FlowRecord {
  flow_id = 0; start_time = 0; end_time = 0; report_time = 0; ip_version = 0;
  readonly ips = new Uint8Array(32); ip_0_len = -1; ip_1_len = -1;
  client_port = 0; server_port = 0; protocol = 0; vlan = 0; tunnel_type = 0; tunnel_id = 0;
  l7_protocol = ''; is_new_flow = false; is_closed = false; close_type = '';
  packet_tx = 0; packet_rx = 0; byte_tx = 0; byte_rx = 0; l3_byte_tx = 0; l3_byte_rx = 0; l4_byte_tx = 0; l4_byte_rx = 0;
  tcp_flags_tx = 0; tcp_flags_rx = 0; syn_count = 0; synack_count = 0; fin_count = 0;
  rtt = 0; rtt_client_sum = 0; rtt_client_count = 0; rtt_client_max = 0; rtt_server_sum = 0; rtt_server_count = 0; rtt_server_max = 0;
  srt_sum = 0; srt_count = 0; srt_max = 0; art_sum = 0; art_count = 0; art_max = 0; cit_sum = 0; cit_count = 0; cit_max = 0;
  retrans_tx = 0; retrans_rx = 0; zero_win_tx = 0; zero_win_rx = 0; ooo_tx = 0; ooo_rx = 0; retrans_syn = 0; retrans_synack = 0;

  /** Back to every field's proto3 default. */
  reset(): void {
    this.flow_id = 0; this.start_time = 0; this.end_time = 0; this.report_time = 0; this.ip_version = 0;
    this.ip_0_len = -1; this.ip_1_len = -1;
    this.client_port = 0; this.server_port = 0; this.protocol = 0; this.vlan = 0; this.tunnel_type = 0; this.tunnel_id = 0;
    this.l7_protocol = ''; this.is_new_flow = false; this.is_closed = false; this.close_type = '';
    this.packet_tx = 0; this.packet_rx = 0; this.byte_tx = 0; this.byte_rx = 0;
    this.l3_byte_tx = 0; this.l3_byte_rx = 0; this.l4_byte_tx = 0; this.l4_byte_rx = 0;
    this.tcp_flags_tx = 0; this.tcp_flags_rx = 0; this.syn_count = 0; this.synack_count = 0; this.fin_count = 0;
    this.rtt = 0; this.rtt_client_sum = 0; this.rtt_client_count = 0; this.rtt_client_max = 0;
    this.rtt_server_sum = 0; this.rtt_server_count = 0; this.rtt_server_max = 0;
    this.srt_sum = 0; this.srt_count = 0; this.srt_max = 0; this.art_sum = 0; this.art_count = 0; this.art_max = 0;
    this.cit_sum = 0; this.cit_count = 0; this.cit_max = 0;
    this.retrans_tx = 0; this.retrans_rx = 0; this.zero_win_tx = 0; this.zero_win_rx = 0; this.ooo_tx = 0; this.ooo_rx = 0;
    this.retrans_syn = 0; this.retrans_synack = 0;
  }

  /** Fills this record from a decoded (or hand-built) Flow object. */
  fromObject(f: flowtap.IFlow): this {
    this.reset();
    this.flow_id = n(f.flow_id); this.start_time = n(f.start_time); this.end_time = n(f.end_time);
    this.report_time = n(f.report_time); this.ip_version = n(f.ip_version);
    this.ip_0_len = copyIp(this.ips, 0, f.ip_0); this.ip_1_len = copyIp(this.ips, 16, f.ip_1);
    this.client_port = n(f.client_port); this.server_port = n(f.server_port); this.protocol = n(f.protocol);
    this.vlan = n(f.vlan); this.tunnel_type = n(f.tunnel_type); this.tunnel_id = n(f.tunnel_id);
    this.l7_protocol = f.l7_protocol ?? ''; this.is_new_flow = f.is_new_flow === true; this.is_closed = f.is_closed === true;
    this.close_type = f.close_type ?? '';
    this.packet_tx = n(f.packet_tx); this.packet_rx = n(f.packet_rx); this.byte_tx = n(f.byte_tx); this.byte_rx = n(f.byte_rx);
    this.l3_byte_tx = n(f.l3_byte_tx); this.l3_byte_rx = n(f.l3_byte_rx); this.l4_byte_tx = n(f.l4_byte_tx); this.l4_byte_rx = n(f.l4_byte_rx);
    this.tcp_flags_tx = n(f.tcp_flags_tx); this.tcp_flags_rx = n(f.tcp_flags_rx);
    this.syn_count = n(f.syn_count); this.synack_count = n(f.synack_count); this.fin_count = n(f.fin_count);
    this.rtt = n(f.rtt);
    this.rtt_client_sum = n(f.rtt_client_sum); this.rtt_client_count = n(f.rtt_client_count); this.rtt_client_max = n(f.rtt_client_max);
    this.rtt_server_sum = n(f.rtt_server_sum); this.rtt_server_count = n(f.rtt_server_count); this.rtt_server_max = n(f.rtt_server_max);
    this.srt_sum = n(f.srt_sum); this.srt_count = n(f.srt_count); this.srt_max = n(f.srt_max);
    this.art_sum = n(f.art_sum); this.art_count = n(f.art_count); this.art_max = n(f.art_max);
    this.cit_sum = n(f.cit_sum); this.cit_count = n(f.cit_count); this.cit_max = n(f.cit_max);
    this.retrans_tx = n(f.retrans_tx); this.retrans_rx = n(f.retrans_rx);
    this.zero_win_tx = n(f.zero_win_tx); this.zero_win_rx = n(f.zero_win_rx); this.ooo_tx = n(f.ooo_tx); this.ooo_rx = n(f.ooo_rx);
    this.retrans_syn = n(f.retrans_syn); this.retrans_synack = n(f.retrans_synack);
    return this;
  }
}

/** One AppMeter as plain fields, filled in place like FlowRecord. */
export class AppRecord {
  flow_id = 0; time = 0; ip_version = 0;
  readonly ips = new Uint8Array(32); ip_0_len = -1; ip_1_len = -1;
  server_port = 0; protocol = 0; l7_protocol = ''; endpoint = '';
  request = 0; response = 0; client_error = 0; server_error = 0; timeout = 0; rrt_sum = 0; rrt_count = 0; rrt_max = 0;

  reset(): void {
    this.flow_id = 0; this.time = 0; this.ip_version = 0; this.ip_0_len = -1; this.ip_1_len = -1;
    this.server_port = 0; this.protocol = 0; this.l7_protocol = ''; this.endpoint = '';
    this.request = 0; this.response = 0; this.client_error = 0; this.server_error = 0; this.timeout = 0;
    this.rrt_sum = 0; this.rrt_count = 0; this.rrt_max = 0;
  }

  fromObject(m: flowtap.IAppMeter): this {
    this.reset();
    this.flow_id = n(m.flow_id); this.time = n(m.time); this.ip_version = n(m.ip_version);
    this.ip_0_len = copyIp(this.ips, 0, m.ip_0); this.ip_1_len = copyIp(this.ips, 16, m.ip_1);
    this.server_port = n(m.server_port); this.protocol = n(m.protocol);
    this.l7_protocol = m.l7_protocol ?? ''; this.endpoint = m.endpoint ?? '';
    this.request = n(m.request); this.response = n(m.response); this.client_error = n(m.client_error);
    this.server_error = n(m.server_error); this.timeout = n(m.timeout);
    this.rrt_sum = n(m.rrt_sum); this.rrt_count = n(m.rrt_count); this.rrt_max = n(m.rrt_max);
    return this;
  }
}

/** Copies a 16-byte address into `ips` at `off`; returns its length (-1: absent). */
function copyIp(ips: Uint8Array, off: number, ip: Uint8Array | null | undefined): number {
  if (!ip) return -1;
  if (ip.length === 16) ips.set(ip, off);
  return ip.length;
}

/**
 * Adds one flow report into the FlowMeter at `o`. `swap` turns the flow's client-to-server view
 * into the server's own view (tx = sent by the server), for the server-side row of single-side
 * tables.
 */
export function addFlowToMeter(m: Float64Array, o: number, f: FlowRecord, swap: boolean): void {
  if (!swap) {
    m[o + FM.packet_tx] += f.packet_tx; m[o + FM.packet_rx] += f.packet_rx;
    m[o + FM.byte_tx] += f.byte_tx; m[o + FM.byte_rx] += f.byte_rx;
    m[o + FM.l3_byte_tx] += f.l3_byte_tx; m[o + FM.l3_byte_rx] += f.l3_byte_rx;
    m[o + FM.l4_byte_tx] += f.l4_byte_tx; m[o + FM.l4_byte_rx] += f.l4_byte_rx;
    m[o + FM.retrans_tx] += f.retrans_tx; m[o + FM.retrans_rx] += f.retrans_rx;
    m[o + FM.zero_win_tx] += f.zero_win_tx; m[o + FM.zero_win_rx] += f.zero_win_rx;
    m[o + FM.ooo_tx] += f.ooo_tx; m[o + FM.ooo_rx] += f.ooo_rx;
  } else {
    m[o + FM.packet_tx] += f.packet_rx; m[o + FM.packet_rx] += f.packet_tx;
    m[o + FM.byte_tx] += f.byte_rx; m[o + FM.byte_rx] += f.byte_tx;
    m[o + FM.l3_byte_tx] += f.l3_byte_rx; m[o + FM.l3_byte_rx] += f.l3_byte_tx;
    m[o + FM.l4_byte_tx] += f.l4_byte_rx; m[o + FM.l4_byte_rx] += f.l4_byte_tx;
    m[o + FM.retrans_tx] += f.retrans_rx; m[o + FM.retrans_rx] += f.retrans_tx;
    m[o + FM.zero_win_tx] += f.zero_win_rx; m[o + FM.zero_win_rx] += f.zero_win_tx;
    m[o + FM.ooo_tx] += f.ooo_rx; m[o + FM.ooo_rx] += f.ooo_tx;
  }
  if (f.is_new_flow) m[o + FM.new_flow]++;
  if (f.is_closed) m[o + FM.closed_flow]++;
  m[o + FM.syn] += f.syn_count;
  m[o + FM.synack] += f.synack_count;
  const rtt = f.rtt;
  if (rtt > 0) { m[o + FM.rtt_sum] += rtt; m[o + FM.rtt_count]++; if (rtt > m[o + FM.rtt_max]) m[o + FM.rtt_max] = rtt; }
  m[o + FM.rtt_client_sum] += f.rtt_client_sum;
  m[o + FM.rtt_client_count] += f.rtt_client_count;
  if (f.rtt_client_max > m[o + FM.rtt_client_max]) m[o + FM.rtt_client_max] = f.rtt_client_max;
  m[o + FM.rtt_server_sum] += f.rtt_server_sum;
  m[o + FM.rtt_server_count] += f.rtt_server_count;
  if (f.rtt_server_max > m[o + FM.rtt_server_max]) m[o + FM.rtt_server_max] = f.rtt_server_max;
  m[o + FM.srt_sum] += f.srt_sum;
  m[o + FM.srt_count] += f.srt_count;
  if (f.srt_max > m[o + FM.srt_max]) m[o + FM.srt_max] = f.srt_max;
  m[o + FM.art_sum] += f.art_sum;
  m[o + FM.art_count] += f.art_count;
  if (f.art_max > m[o + FM.art_max]) m[o + FM.art_max] = f.art_max;
  m[o + FM.cit_sum] += f.cit_sum;
  m[o + FM.cit_count] += f.cit_count;
  if (f.cit_max > m[o + FM.cit_max]) m[o + FM.cit_max] = f.cit_max;
  m[o + FM.retrans_syn] += f.retrans_syn;
  m[o + FM.retrans_synack] += f.retrans_synack;
  if (f.is_closed) addCloseType(m, o, f.close_type, f.protocol === 6);
}

function addCloseType(m: Float64Array, o: number, closeType: string, tcp: boolean): void {
  switch (closeType) {
    case 'tcp_client_rst':
    case 'tcp_fin_client_rst': m[o + FM.client_rst_flow]++; break;
    case 'tcp_server_rst': m[o + FM.server_rst_flow]++; break;
    case 'client_half_close': m[o + FM.client_half_close_flow]++; break;
    case 'server_half_close': m[o + FM.server_half_close_flow]++; break;
    case 'client_source_port_reuse': m[o + FM.client_source_port_reuse]++; break;
    case 'client_establish_reset': m[o + FM.client_establish_reset]++; break;
    case 'server_reset': m[o + FM.server_reset]++; break;
    case 'server_queue_lack': m[o + FM.server_queue_lack]++; break;
    case 'server_establish_reset': m[o + FM.server_establish_reset]++; break;
    case 'timeout': if (tcp) m[o + FM.tcp_timeout]++; break;
    default: break;
  }
}

/** Adds an AppMeter into the AppMeterValues at `o`. */
export function addAppToMeter(m: Float64Array, o: number, a: AppRecord): void {
  m[o + AM.request] += a.request;
  m[o + AM.response] += a.response;
  m[o + AM.client_error] += a.client_error;
  m[o + AM.server_error] += a.server_error;
  m[o + AM.timeout] += a.timeout;
  m[o + AM.rrt_sum] += a.rrt_sum;
  m[o + AM.rrt_count] += a.rrt_count;
  if (a.rrt_max > m[o + AM.rrt_max]) m[o + AM.rrt_max] = a.rrt_max;
}

/** An AppMeter's L7 counts added into a network row's FlowMeter (l7_request, rrt, l7 errors). */
export function addAppToFlowMeter(m: Float64Array, o: number, a: AppRecord): void {
  m[o + FM.l7_request] += a.request;
  m[o + FM.l7_response] += a.response;
  m[o + FM.l7_client_error] += a.client_error;
  m[o + FM.l7_server_error] += a.server_error;
  m[o + FM.l7_timeout] += a.timeout;
  m[o + FM.rrt_sum] += a.rrt_sum;
  m[o + FM.rrt_count] += a.rrt_count;
  if (a.rrt_max > m[o + FM.rrt_max]) m[o + FM.rrt_max] = a.rrt_max;
}
