// Meter arithmetic: a flow report or an AppMeter added into a metric row.
import { flowtap } from '../../lib/proto';

/** Every FlowMeter field, as plain numbers (all present, so rows merge without checks). */
export type FlowMeterCounts = { [K in keyof flowtap.IFlowMeter]-?: number };
export type AppMeterCounts = { [K in keyof flowtap.IAppMeterValues]-?: number };

export function newFlowMeter(): FlowMeterCounts {
  return {
    packet_tx: 0, packet_rx: 0, byte_tx: 0, byte_rx: 0, l3_byte_tx: 0, l3_byte_rx: 0, l4_byte_tx: 0, l4_byte_rx: 0,
    new_flow: 0, closed_flow: 0, syn: 0, synack: 0, l7_request: 0, l7_response: 0,
    rtt_sum: 0, rtt_count: 0, rtt_max: 0, rtt_client_sum: 0, rtt_client_count: 0, rtt_client_max: 0,
    rtt_server_sum: 0, rtt_server_count: 0, rtt_server_max: 0, srt_sum: 0, srt_count: 0, srt_max: 0,
    art_sum: 0, art_count: 0, art_max: 0, rrt_sum: 0, rrt_count: 0, rrt_max: 0, cit_sum: 0, cit_count: 0, cit_max: 0,
    retrans_tx: 0, retrans_rx: 0, zero_win_tx: 0, zero_win_rx: 0, retrans_syn: 0, retrans_synack: 0, ooo_tx: 0, ooo_rx: 0,
    client_rst_flow: 0, server_rst_flow: 0, client_half_close_flow: 0, server_half_close_flow: 0,
    client_source_port_reuse: 0, client_establish_reset: 0, server_reset: 0, server_queue_lack: 0,
    server_establish_reset: 0, tcp_timeout: 0, l7_client_error: 0, l7_server_error: 0, l7_timeout: 0,
    load: 0, flow_count: 0,
  };
}

export function newAppMeter(): AppMeterCounts {
  return { request: 0, response: 0, client_error: 0, server_error: 0, timeout: 0, rrt_sum: 0, rrt_count: 0, rrt_max: 0 };
}

const n = (v: number | null | undefined): number => (v ? Number(v) : 0);

/** The numeric fields of a flow report that meters add up. */
const REPORT_FIELDS = [
  'packet_tx', 'packet_rx', 'byte_tx', 'byte_rx', 'l3_byte_tx', 'l3_byte_rx', 'l4_byte_tx', 'l4_byte_rx',
  'retrans_tx', 'retrans_rx', 'zero_win_tx', 'zero_win_rx', 'ooo_tx', 'ooo_rx', 'syn_count', 'synack_count', 'rtt',
  'rtt_client_sum', 'rtt_client_count', 'rtt_client_max', 'rtt_server_sum', 'rtt_server_count', 'rtt_server_max',
  'srt_sum', 'srt_count', 'srt_max', 'art_sum', 'art_count', 'art_max', 'cit_sum', 'cit_count', 'cit_max',
  'retrans_syn', 'retrans_synack', 'protocol',
] as const;

/**
 * A flow report flattened into plain numbers, read once per report into one reused object:
 * decoded protobuf messages keep default values on their prototype, which makes each of the
 * six meter additions per report read them slowly; this object is monomorphic.
 */
export type FlowReport = { [K in typeof REPORT_FIELDS[number]]: number } & { is_new_flow: boolean; is_closed: boolean; close_type: string };

export function newFlowReport(): FlowReport {
  // A literal, so the object gets one fast shape with every field in place.
  return {
    packet_tx: 0, packet_rx: 0, byte_tx: 0, byte_rx: 0, l3_byte_tx: 0, l3_byte_rx: 0, l4_byte_tx: 0, l4_byte_rx: 0,
    retrans_tx: 0, retrans_rx: 0, zero_win_tx: 0, zero_win_rx: 0, ooo_tx: 0, ooo_rx: 0, syn_count: 0, synack_count: 0, rtt: 0,
    rtt_client_sum: 0, rtt_client_count: 0, rtt_client_max: 0, rtt_server_sum: 0, rtt_server_count: 0, rtt_server_max: 0,
    srt_sum: 0, srt_count: 0, srt_max: 0, art_sum: 0, art_count: 0, art_max: 0, cit_sum: 0, cit_count: 0, cit_max: 0,
    retrans_syn: 0, retrans_synack: 0, protocol: 0, is_new_flow: false, is_closed: false, close_type: '',
  };
}

/** Fills `r` from `f` and returns it. */
export function readFlowReport(f: flowtap.IFlow, r: FlowReport): FlowReport {
  r.packet_tx = n(f.packet_tx); r.packet_rx = n(f.packet_rx); r.byte_tx = n(f.byte_tx); r.byte_rx = n(f.byte_rx);
  r.l3_byte_tx = n(f.l3_byte_tx); r.l3_byte_rx = n(f.l3_byte_rx); r.l4_byte_tx = n(f.l4_byte_tx); r.l4_byte_rx = n(f.l4_byte_rx);
  r.retrans_tx = n(f.retrans_tx); r.retrans_rx = n(f.retrans_rx); r.zero_win_tx = n(f.zero_win_tx); r.zero_win_rx = n(f.zero_win_rx);
  r.ooo_tx = n(f.ooo_tx); r.ooo_rx = n(f.ooo_rx); r.syn_count = n(f.syn_count); r.synack_count = n(f.synack_count);
  r.rtt = n(f.rtt);
  r.rtt_client_sum = n(f.rtt_client_sum); r.rtt_client_count = n(f.rtt_client_count); r.rtt_client_max = n(f.rtt_client_max);
  r.rtt_server_sum = n(f.rtt_server_sum); r.rtt_server_count = n(f.rtt_server_count); r.rtt_server_max = n(f.rtt_server_max);
  r.srt_sum = n(f.srt_sum); r.srt_count = n(f.srt_count); r.srt_max = n(f.srt_max);
  r.art_sum = n(f.art_sum); r.art_count = n(f.art_count); r.art_max = n(f.art_max);
  r.cit_sum = n(f.cit_sum); r.cit_count = n(f.cit_count); r.cit_max = n(f.cit_max);
  r.retrans_syn = n(f.retrans_syn); r.retrans_synack = n(f.retrans_synack); r.protocol = n(f.protocol);
  r.is_new_flow = f.is_new_flow === true; r.is_closed = f.is_closed === true; r.close_type = f.close_type ?? '';
  return r;
}

/**
 * Adds one flow report. `swap` turns the flow's client-to-server view into the server's own
 * view (tx = sent by the server), for the server-side row of single-side tables.
 */
export function addFlowToMeter(m: FlowMeterCounts, f: FlowReport, swap: boolean): void {
  // Explicit fields (no computed keys): this runs 6 times per flow report.
  if (!swap) {
    m.packet_tx += f.packet_tx; m.packet_rx += f.packet_rx;
    m.byte_tx += f.byte_tx; m.byte_rx += f.byte_rx;
    m.l3_byte_tx += f.l3_byte_tx; m.l3_byte_rx += f.l3_byte_rx;
    m.l4_byte_tx += f.l4_byte_tx; m.l4_byte_rx += f.l4_byte_rx;
    m.retrans_tx += f.retrans_tx; m.retrans_rx += f.retrans_rx;
    m.zero_win_tx += f.zero_win_tx; m.zero_win_rx += f.zero_win_rx;
    m.ooo_tx += f.ooo_tx; m.ooo_rx += f.ooo_rx;
  } else {
    m.packet_tx += f.packet_rx; m.packet_rx += f.packet_tx;
    m.byte_tx += f.byte_rx; m.byte_rx += f.byte_tx;
    m.l3_byte_tx += f.l3_byte_rx; m.l3_byte_rx += f.l3_byte_tx;
    m.l4_byte_tx += f.l4_byte_rx; m.l4_byte_rx += f.l4_byte_tx;
    m.retrans_tx += f.retrans_rx; m.retrans_rx += f.retrans_tx;
    m.zero_win_tx += f.zero_win_rx; m.zero_win_rx += f.zero_win_tx;
    m.ooo_tx += f.ooo_rx; m.ooo_rx += f.ooo_tx;
  }
  if (f.is_new_flow) m.new_flow++;
  if (f.is_closed) m.closed_flow++;
  m.syn += f.syn_count;
  m.synack += f.synack_count;
  const rtt = f.rtt;
  if (rtt > 0) { m.rtt_sum += rtt; m.rtt_count++; if (rtt > m.rtt_max) m.rtt_max = rtt; }
  m.rtt_client_sum += f.rtt_client_sum;
  m.rtt_client_count += f.rtt_client_count;
  m.rtt_client_max = Math.max(m.rtt_client_max, f.rtt_client_max);
  m.rtt_server_sum += f.rtt_server_sum;
  m.rtt_server_count += f.rtt_server_count;
  m.rtt_server_max = Math.max(m.rtt_server_max, f.rtt_server_max);
  m.srt_sum += f.srt_sum;
  m.srt_count += f.srt_count;
  m.srt_max = Math.max(m.srt_max, f.srt_max);
  m.art_sum += f.art_sum;
  m.art_count += f.art_count;
  m.art_max = Math.max(m.art_max, f.art_max);
  m.cit_sum += f.cit_sum;
  m.cit_count += f.cit_count;
  m.cit_max = Math.max(m.cit_max, f.cit_max);
  m.retrans_syn += f.retrans_syn;
  m.retrans_synack += f.retrans_synack;
  if (f.is_closed) addCloseType(m, f.close_type, f.protocol === 6);
}

function addCloseType(m: FlowMeterCounts, closeType: string, tcp: boolean): void {
  switch (closeType) {
    case 'tcp_client_rst':
    case 'tcp_fin_client_rst': m.client_rst_flow++; break;
    case 'tcp_server_rst': m.server_rst_flow++; break;
    case 'client_half_close': m.client_half_close_flow++; break;
    case 'server_half_close': m.server_half_close_flow++; break;
    case 'client_source_port_reuse': m.client_source_port_reuse++; break;
    case 'client_establish_reset': m.client_establish_reset++; break;
    case 'server_reset': m.server_reset++; break;
    case 'server_queue_lack': m.server_queue_lack++; break;
    case 'server_establish_reset': m.server_establish_reset++; break;
    case 'timeout': if (tcp) m.tcp_timeout++; break;
    default: break;
  }
}

export function addAppToMeter(m: AppMeterCounts, a: flowtap.IAppMeter): void {
  m.request += n(a.request);
  m.response += n(a.response);
  m.client_error += n(a.client_error);
  m.server_error += n(a.server_error);
  m.timeout += n(a.timeout);
  m.rrt_sum += n(a.rrt_sum);
  m.rrt_count += n(a.rrt_count);
  m.rrt_max = Math.max(m.rrt_max, n(a.rrt_max));
}

/** An AppMeter's L7 counts added into a network row's FlowMeter (l7_request, rrt, l7 errors). */
export function addAppToFlowMeter(m: FlowMeterCounts, a: flowtap.IAppMeter): void {
  m.l7_request += n(a.request);
  m.l7_response += n(a.response);
  m.l7_client_error += n(a.client_error);
  m.l7_server_error += n(a.server_error);
  m.l7_timeout += n(a.timeout);
  m.rrt_sum += n(a.rrt_sum);
  m.rrt_count += n(a.rrt_count);
  m.rrt_max = Math.max(m.rrt_max, n(a.rrt_max));
}
