// The records the flow map hands out: one reused FlowReport and one reused PayloadReport, filled
// from the flow slots and valid only during the callback, so the per-second reports and the
// per-packet payloads cost no object each. Field names are those of flowtap.Flow / AppPayload.
// `toFlow` / `toAppPayload` copy one out as a plain protobuf object, for code that keeps them.
import { flowtap } from '../../lib/proto';

export class FlowReport {
  flow_id = 0;
  start_time = 0;
  end_time = 0;
  report_time = 0;
  ip_version = 0;
  /** ip_0 is ipBytes[ipOffset .. +16), ip_1 the 16 bytes after it (views of the flow slots). */
  ipBytes: Uint8Array = new Uint8Array(32);
  ipOffset = 0;
  client_port = 0;
  server_port = 0;
  protocol = 0;
  vlan = 0;
  tunnel_type = 0;
  tunnel_id = 0;
  l7_protocol = '';
  is_new_flow = false;
  is_closed = false;
  close_type = '';
  packet_tx = 0;
  packet_rx = 0;
  byte_tx = 0;
  byte_rx = 0;
  l3_byte_tx = 0;
  l3_byte_rx = 0;
  l4_byte_tx = 0;
  l4_byte_rx = 0;
  tcp_flags_tx = 0;
  tcp_flags_rx = 0;
  syn_count = 0;
  synack_count = 0;
  fin_count = 0;
  rtt = 0;
  rtt_client_sum = 0;
  rtt_client_count = 0;
  rtt_client_max = 0;
  rtt_server_sum = 0;
  rtt_server_count = 0;
  rtt_server_max = 0;
  srt_sum = 0;
  srt_count = 0;
  srt_max = 0;
  art_sum = 0;
  art_count = 0;
  art_max = 0;
  cit_sum = 0;
  cit_count = 0;
  cit_max = 0;
  retrans_tx = 0;
  retrans_rx = 0;
  zero_win_tx = 0;
  zero_win_rx = 0;
  ooo_tx = 0;
  ooo_rx = 0;
  retrans_syn = 0;
  retrans_synack = 0;
}

export class PayloadReport {
  flow_id = 0;
  timestamp_us = 0;
  ip_version = 0;
  /** ip_0 is ipBytes[ipOffset .. +16), ip_1 the 16 bytes after it. */
  ipBytes: Uint8Array = new Uint8Array(32);
  ipOffset = 0;
  client_port = 0;
  server_port = 0;
  protocol = 0;
  from_client = false;
  l7_protocol = '';
  tcp_seq = 0;
  payload_len = 0;
  /** The captured payload is payloadBytes[payloadOffset .. +payloadCap) (a view of the packet batch). */
  payloadBytes: Uint8Array = new Uint8Array(0);
  payloadOffset = 0;
  payloadCap = 0;
  vlan = 0;
  tunnel_type = 0;
  tunnel_id = 0;
}

/** A copy of the report as a protobuf object (addresses copied). */
export function toFlow(r: FlowReport): flowtap.IFlow {
  return {
    flow_id: r.flow_id,
    start_time: r.start_time,
    end_time: r.end_time,
    report_time: r.report_time,
    ip_version: r.ip_version,
    ip_0: r.ipBytes.slice(r.ipOffset, r.ipOffset + 16),
    ip_1: r.ipBytes.slice(r.ipOffset + 16, r.ipOffset + 32),
    client_port: r.client_port,
    server_port: r.server_port,
    protocol: r.protocol,
    vlan: r.vlan,
    tunnel_type: r.tunnel_type,
    tunnel_id: r.tunnel_id,
    l7_protocol: r.l7_protocol,
    is_new_flow: r.is_new_flow,
    is_closed: r.is_closed,
    close_type: r.close_type,
    packet_tx: r.packet_tx,
    packet_rx: r.packet_rx,
    byte_tx: r.byte_tx,
    byte_rx: r.byte_rx,
    l3_byte_tx: r.l3_byte_tx,
    l3_byte_rx: r.l3_byte_rx,
    l4_byte_tx: r.l4_byte_tx,
    l4_byte_rx: r.l4_byte_rx,
    tcp_flags_tx: r.tcp_flags_tx,
    tcp_flags_rx: r.tcp_flags_rx,
    syn_count: r.syn_count,
    synack_count: r.synack_count,
    fin_count: r.fin_count,
    rtt: r.rtt,
    rtt_client_sum: r.rtt_client_sum,
    rtt_client_count: r.rtt_client_count,
    rtt_client_max: r.rtt_client_max,
    rtt_server_sum: r.rtt_server_sum,
    rtt_server_count: r.rtt_server_count,
    rtt_server_max: r.rtt_server_max,
    srt_sum: r.srt_sum,
    srt_count: r.srt_count,
    srt_max: r.srt_max,
    art_sum: r.art_sum,
    art_count: r.art_count,
    art_max: r.art_max,
    cit_sum: r.cit_sum,
    cit_count: r.cit_count,
    cit_max: r.cit_max,
    retrans_tx: r.retrans_tx,
    retrans_rx: r.retrans_rx,
    zero_win_tx: r.zero_win_tx,
    zero_win_rx: r.zero_win_rx,
    ooo_tx: r.ooo_tx,
    ooo_rx: r.ooo_rx,
    retrans_syn: r.retrans_syn,
    retrans_synack: r.retrans_synack,
  };
}

/** A copy of the payload record as a protobuf object (addresses and payload copied). */
export function toAppPayload(p: PayloadReport): flowtap.IAppPayload {
  return {
    flow_id: p.flow_id,
    timestamp_us: p.timestamp_us,
    ip_version: p.ip_version,
    ip_0: p.ipBytes.slice(p.ipOffset, p.ipOffset + 16),
    ip_1: p.ipBytes.slice(p.ipOffset + 16, p.ipOffset + 32),
    client_port: p.client_port,
    server_port: p.server_port,
    protocol: p.protocol,
    from_client: p.from_client,
    l7_protocol: p.l7_protocol,
    tcp_seq: p.tcp_seq,
    payload_len: p.payload_len,
    payload: Buffer.from(p.payloadBytes.subarray(p.payloadOffset, p.payloadOffset + p.payloadCap)),
    vlan: p.vlan,
    tunnel_type: p.tunnel_type,
    tunnel_id: p.tunnel_id,
  };
}
