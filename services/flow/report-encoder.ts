// Protobuf encoders for the flow process's two outputs, FlowBatch (to quadruple) and
// AppPayloadBatch (to l7): each report is written straight from the reused FlowReport /
// PayloadReport into one growing byte buffer (lib/proto-wire.ts), with no message object per
// record. The bytes are the wire format of proto/flowtap.proto (fields in number order, zero
// values left out as proto3 allows), so `flowtap.FlowBatch.decode` / `AppPayloadBatch.decode`
// read them unchanged; 64-bit values are converted from numbers exactly as protobufjs does.
import { ProtoWriter, tagOf, WIRE_LEN, WIRE_VARINT } from '../../lib/proto-wire';
import { FlowReport, PayloadReport } from './flow-report';

/** A FlowBatch's and an AppPayloadBatch's repeated field (flows = 1, items = 1). */
const TAG_BATCH_ITEM = tagOf(1, WIRE_LEN);

/**
 * ip_version, ip_0, ip_1 (16 bytes each), client_port, server_port and protocol: fields `first`
 * to `first + 5` of a Flow (5) and of an AppPayload (3).
 */
function writeEndpoints(w: ProtoWriter, first: number, r: FlowReport | PayloadReport): void {
  w.uint32Field(tagOf(first, WIRE_VARINT), r.ip_version);
  w.bytesField(tagOf(first + 1, WIRE_LEN), r.ipBytes, r.ipOffset, r.ipOffset + 16);
  w.bytesField(tagOf(first + 2, WIRE_LEN), r.ipBytes, r.ipOffset + 16, r.ipOffset + 32);
  w.uint32Field(tagOf(first + 3, WIRE_VARINT), r.client_port);
  w.uint32Field(tagOf(first + 4, WIRE_VARINT), r.server_port);
  w.uint32Field(tagOf(first + 5, WIRE_VARINT), r.protocol);
}

/** A growing buffer of encoded records, cut into batches of `batchSize` records. */
export class BatchEncoder {
  protected readonly w = new ProtoWriter();
  /** Records in the batch being written. */
  count = 0;

  constructor(readonly batchSize: number) {
    if (!(batchSize >= 1)) throw new Error(`batch size must be at least 1, got ${batchSize}`);
  }

  /** The batch written so far (its own buffer: the sender may hold it a while); starts the next one. */
  take(): Uint8Array {
    this.count = 0;
    return this.w.take();
  }
}

/** FlowBatch bytes from FlowReports. */
export class FlowBatchEncoder extends BatchEncoder {
  add(r: FlowReport): void {
    const w = this.w;
    w.begin(TAG_BATCH_ITEM, 2); // a flow takes 128 to 16383 bytes
    w.uint64Field(tagOf(1, WIRE_VARINT), r.flow_id);
    w.uint64Field(tagOf(2, WIRE_VARINT), r.start_time);
    w.uint64Field(tagOf(3, WIRE_VARINT), r.end_time);
    w.uint64Field(tagOf(4, WIRE_VARINT), r.report_time);
    writeEndpoints(w, 5, r);
    w.uint32Field(tagOf(11, WIRE_VARINT), r.vlan);
    w.uint32Field(tagOf(12, WIRE_VARINT), r.tunnel_type);
    w.uint32Field(tagOf(13, WIRE_VARINT), r.tunnel_id);
    w.stringField(tagOf(14, WIRE_LEN), r.l7_protocol);
    w.boolField(tagOf(15, WIRE_VARINT), r.is_new_flow);
    w.boolField(tagOf(16, WIRE_VARINT), r.is_closed);
    w.stringField(tagOf(17, WIRE_LEN), r.close_type);
    w.uint64Field(tagOf(20, WIRE_VARINT), r.packet_tx);
    w.uint64Field(tagOf(21, WIRE_VARINT), r.packet_rx);
    w.uint64Field(tagOf(22, WIRE_VARINT), r.byte_tx);
    w.uint64Field(tagOf(23, WIRE_VARINT), r.byte_rx);
    w.uint64Field(tagOf(24, WIRE_VARINT), r.l3_byte_tx);
    w.uint64Field(tagOf(25, WIRE_VARINT), r.l3_byte_rx);
    w.uint64Field(tagOf(26, WIRE_VARINT), r.l4_byte_tx);
    w.uint64Field(tagOf(27, WIRE_VARINT), r.l4_byte_rx);
    w.uint32Field(tagOf(28, WIRE_VARINT), r.tcp_flags_tx);
    w.uint32Field(tagOf(29, WIRE_VARINT), r.tcp_flags_rx);
    w.uint32Field(tagOf(30, WIRE_VARINT), r.syn_count);
    w.uint32Field(tagOf(31, WIRE_VARINT), r.synack_count);
    w.uint32Field(tagOf(32, WIRE_VARINT), r.fin_count);
    w.uint64Field(tagOf(40, WIRE_VARINT), r.rtt);
    w.uint64Field(tagOf(41, WIRE_VARINT), r.rtt_client_sum);
    w.uint32Field(tagOf(42, WIRE_VARINT), r.rtt_client_count);
    w.uint64Field(tagOf(43, WIRE_VARINT), r.rtt_client_max);
    w.uint64Field(tagOf(44, WIRE_VARINT), r.rtt_server_sum);
    w.uint32Field(tagOf(45, WIRE_VARINT), r.rtt_server_count);
    w.uint64Field(tagOf(46, WIRE_VARINT), r.rtt_server_max);
    w.uint64Field(tagOf(47, WIRE_VARINT), r.srt_sum);
    w.uint32Field(tagOf(48, WIRE_VARINT), r.srt_count);
    w.uint64Field(tagOf(49, WIRE_VARINT), r.srt_max);
    w.uint64Field(tagOf(50, WIRE_VARINT), r.art_sum);
    w.uint32Field(tagOf(51, WIRE_VARINT), r.art_count);
    w.uint64Field(tagOf(52, WIRE_VARINT), r.art_max);
    w.uint64Field(tagOf(53, WIRE_VARINT), r.cit_sum);
    w.uint32Field(tagOf(54, WIRE_VARINT), r.cit_count);
    w.uint64Field(tagOf(55, WIRE_VARINT), r.cit_max);
    w.uint32Field(tagOf(56, WIRE_VARINT), r.retrans_tx);
    w.uint32Field(tagOf(57, WIRE_VARINT), r.retrans_rx);
    w.uint32Field(tagOf(58, WIRE_VARINT), r.zero_win_tx);
    w.uint32Field(tagOf(59, WIRE_VARINT), r.zero_win_rx);
    w.uint32Field(tagOf(60, WIRE_VARINT), r.ooo_tx);
    w.uint32Field(tagOf(61, WIRE_VARINT), r.ooo_rx);
    w.uint32Field(tagOf(62, WIRE_VARINT), r.retrans_syn);
    w.uint32Field(tagOf(63, WIRE_VARINT), r.retrans_synack);
    w.end();
    this.count++;
  }
}

/** AppPayloadBatch bytes from PayloadReports and flow-closed notices. */
export class AppPayloadBatchEncoder extends BatchEncoder {
  add(p: PayloadReport): void {
    const w = this.w;
    // Two length bytes hold an item up to 16383 bytes; larger payloads reserve three.
    w.begin(TAG_BATCH_ITEM, p.payloadCap + p.l7_protocol.length * 3 < 0x3f00 ? 2 : 3);
    w.uint64Field(tagOf(1, WIRE_VARINT), p.flow_id);
    w.uint64Field(tagOf(2, WIRE_VARINT), p.timestamp_us);
    writeEndpoints(w, 3, p);
    w.boolField(tagOf(9, WIRE_VARINT), p.from_client);
    w.stringField(tagOf(10, WIRE_LEN), p.l7_protocol);
    w.uint32Field(tagOf(11, WIRE_VARINT), p.tcp_seq);
    w.uint32Field(tagOf(12, WIRE_VARINT), p.payload_len);
    w.bytesField(tagOf(13, WIRE_LEN), p.payloadBytes, p.payloadOffset, p.payloadOffset + p.payloadCap);
    w.uint32Field(tagOf(14, WIRE_VARINT), p.vlan);
    w.uint32Field(tagOf(15, WIRE_VARINT), p.tunnel_type);
    w.uint32Field(tagOf(16, WIRE_VARINT), p.tunnel_id);
    w.end();
    this.count++;
  }

  /** The notice that a flow ended (flow_id, timestamp_us, flow_closed only): l7 ends its sessions. */
  addFlowClosed(flowId: number, timestampUs: number): void {
    const w = this.w;
    w.begin(TAG_BATCH_ITEM, 1);
    w.uint64Field(tagOf(1, WIRE_VARINT), flowId);
    w.uint64Field(tagOf(2, WIRE_VARINT), timestampUs);
    w.boolField(tagOf(17, WIRE_VARINT), true);
    w.end();
    this.count++;
  }
}
