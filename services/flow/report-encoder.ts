// Hand-written protobuf encoders for the flow process's two outputs, FlowBatch (to quadruple) and
// AppPayloadBatch (to l7): each report is written straight from the reused FlowReport /
// PayloadReport into one growing byte buffer, with no message object per record. The bytes are
// the wire format of proto/flowtap.proto (fields in number order, zero values left out as proto3
// allows), so `flowtap.FlowBatch.decode` / `AppPayloadBatch.decode` read them unchanged; 64-bit
// values are converted from numbers exactly as protobufjs's writer does (LongBits.fromNumber).
import { FlowReport, PayloadReport } from './flow-report';

const WIRE_VARINT = 0;
const WIRE_BYTES = 2;
const TWO_32 = 4294967296;
/** A FlowBatch's and an AppPayloadBatch's repeated field (flows = 1, items = 1). */
const TAG_BATCH_ITEM = (1 << 3) | WIRE_BYTES;

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** A growing buffer of encoded records, cut into batches of `batchSize` records. */
export class BatchEncoder {
  protected buf: Uint8Array = Buffer.allocUnsafeSlow(64 * 1024);
  protected pos = 0;
  /** Records in the batch being written. */
  count = 0;
  private readonly utf8 = new Map<string, Uint8Array>();

  constructor(readonly batchSize: number) {
    if (!(batchSize >= 1)) throw new Error(`batch size must be at least 1, got ${batchSize}`);
  }

  /**
   * The batch written so far, and starts the next one in a fresh buffer (not zero-filled): the
   * batch's bytes are handed over as they are, not copied, since the sender may hold them a while.
   */
  take(): Uint8Array {
    const out = this.buf.subarray(0, this.pos);
    this.buf = Buffer.allocUnsafeSlow(this.buf.length);
    this.pos = 0;
    this.count = 0;
    return out;
  }

  protected ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  protected varint32(v: number): void {
    const buf = this.buf;
    let p = this.pos;
    v >>>= 0;
    while (v > 127) {
      buf[p++] = (v & 127) | 128;
      v >>>= 7;
    }
    buf[p++] = v;
    this.pos = p;
  }

  /** A uint32 field (value >>> 0, as protobufjs), left out when 0. */
  protected u32Field(tag: number, v: number): void {
    if ((v >>> 0) === 0) return;
    this.varint32(tag);
    this.varint32(v);
  }

  /** A uint64 field from a number, as protobufjs's LongBits.fromNumber (negative: two's complement), left out when 0. */
  protected u64Field(tag: number, v: number): void {
    if (v === 0) return;
    if (v > 0 && v < TWO_32 && v === Math.floor(v)) {
      // The common case (counters, µs durations, ids): one 32-bit varint.
      this.varint32(tag);
      this.varint32(v);
      return;
    }
    // Fractions, negatives, 2^32 and up, NaN: protobufjs's conversion, byte for byte.
    const negative = v < 0;
    if (negative) v = -v;
    let lo = v >>> 0;
    let hi = ((v - lo) / TWO_32) >>> 0;
    if (negative) {
      hi = ~hi >>> 0;
      lo = ~lo >>> 0;
      if (++lo > 0xffffffff) { lo = 0; if (++hi > 0xffffffff) hi = 0; }
    }
    if (lo === 0 && hi === 0) return;
    this.varint32(tag);
    const buf = this.buf;
    let p = this.pos;
    while (hi) {
      buf[p++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    while (lo > 127) {
      buf[p++] = (lo & 127) | 128;
      lo >>>= 7;
    }
    buf[p++] = lo;
    this.pos = p;
  }

  protected boolField(tag: number, v: boolean): void {
    if (!v) return;
    this.varint32(tag);
    this.buf[this.pos++] = 1;
  }

  /** A bytes field of `len` bytes from src[offset..], left out when empty. */
  protected bytesField(tag: number, src: Uint8Array, offset: number, len: number): void {
    if (len === 0) return;
    this.ensure(len + 10);
    this.varint32(tag);
    this.varint32(len);
    const buf = this.buf;
    if (len <= 64) {
      // Addresses and short strings: a loop beats making a subarray view for set().
      let p = this.pos;
      for (let k = offset, end = offset + len; k < end; k++) buf[p++] = src[k];
    } else if (src instanceof Buffer) {
      src.copy(buf, this.pos, offset, offset + len); // no view object
    } else {
      buf.set(src.subarray(offset, offset + len), this.pos);
    }
    this.pos += len;
  }

  /** A 16-byte address field (the caller has ensured room): no length checks, no copy call. */
  protected addressField(tag: number, src: Uint8Array, offset: number): void {
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = tag;
    buf[p++] = 16;
    for (let k = offset, end = offset + 16; k < end; k++) buf[p++] = src[k];
    this.pos = p;
  }

  /** A string field, left out when empty (the few distinct strings are encoded once each). */
  protected stringField(tag: number, s: string): void {
    if (s.length === 0) return;
    let bytes = this.utf8.get(s);
    if (bytes === undefined) {
      bytes = Buffer.from(s, 'utf8');
      if (this.utf8.size < 1024) this.utf8.set(s, bytes);
    }
    this.bytesField(tag, bytes, 0, bytes.length);
  }

  /** Starts a batch item: its tag and room for its length, filled in by `endItem`. */
  protected beginItem(reserve: number): number {
    this.buf[this.pos++] = TAG_BATCH_ITEM;
    const start = this.pos;
    this.pos += reserve;
    return start;
  }

  protected endItem(start: number, reserved: number): void {
    const len = this.pos - start - reserved;
    const n = varintSize(len);
    if (n !== reserved) {
      if (n > reserved) this.ensure(n - reserved);
      this.buf.copyWithin(start + n, start + reserved, this.pos);
      this.pos += n - reserved;
    }
    const save = this.pos;
    this.pos = start;
    this.varint32(len);
    this.pos = save;
    this.count++;
  }
}

/** A field's tag (fields 16 and up take two varint bytes). */
const tagOf = (field: number, wire: number) => (field << 3) | wire;

/** FlowBatch bytes from FlowReports. */
export class FlowBatchEncoder extends BatchEncoder {
  add(r: FlowReport): void {
    // The largest fixed part: 2 x 18 address bytes + 48 fields of up to 2 + 10 bytes.
    this.ensure(640 + r.l7_protocol.length * 3 + r.close_type.length * 3);
    const start = this.beginItem(2);
    this.u64Field(tagOf(1, WIRE_VARINT), r.flow_id);
    this.u64Field(tagOf(2, WIRE_VARINT), r.start_time);
    this.u64Field(tagOf(3, WIRE_VARINT), r.end_time);
    this.u64Field(tagOf(4, WIRE_VARINT), r.report_time);
    this.u32Field(tagOf(5, WIRE_VARINT), r.ip_version);
    this.addressField(tagOf(6, WIRE_BYTES), r.ipBytes, r.ipOffset);
    this.addressField(tagOf(7, WIRE_BYTES), r.ipBytes, r.ipOffset + 16);
    this.u32Field(tagOf(8, WIRE_VARINT), r.client_port);
    this.u32Field(tagOf(9, WIRE_VARINT), r.server_port);
    this.u32Field(tagOf(10, WIRE_VARINT), r.protocol);
    this.u32Field(tagOf(11, WIRE_VARINT), r.vlan);
    this.u32Field(tagOf(12, WIRE_VARINT), r.tunnel_type);
    this.u32Field(tagOf(13, WIRE_VARINT), r.tunnel_id);
    this.stringField(tagOf(14, WIRE_BYTES), r.l7_protocol);
    this.boolField(tagOf(15, WIRE_VARINT), r.is_new_flow);
    this.boolField(tagOf(16, WIRE_VARINT), r.is_closed);
    this.stringField(tagOf(17, WIRE_BYTES), r.close_type);
    this.u64Field(tagOf(20, WIRE_VARINT), r.packet_tx);
    this.u64Field(tagOf(21, WIRE_VARINT), r.packet_rx);
    this.u64Field(tagOf(22, WIRE_VARINT), r.byte_tx);
    this.u64Field(tagOf(23, WIRE_VARINT), r.byte_rx);
    this.u64Field(tagOf(24, WIRE_VARINT), r.l3_byte_tx);
    this.u64Field(tagOf(25, WIRE_VARINT), r.l3_byte_rx);
    this.u64Field(tagOf(26, WIRE_VARINT), r.l4_byte_tx);
    this.u64Field(tagOf(27, WIRE_VARINT), r.l4_byte_rx);
    this.u32Field(tagOf(28, WIRE_VARINT), r.tcp_flags_tx);
    this.u32Field(tagOf(29, WIRE_VARINT), r.tcp_flags_rx);
    this.u32Field(tagOf(30, WIRE_VARINT), r.syn_count);
    this.u32Field(tagOf(31, WIRE_VARINT), r.synack_count);
    this.u32Field(tagOf(32, WIRE_VARINT), r.fin_count);
    this.u64Field(tagOf(40, WIRE_VARINT), r.rtt);
    this.u64Field(tagOf(41, WIRE_VARINT), r.rtt_client_sum);
    this.u32Field(tagOf(42, WIRE_VARINT), r.rtt_client_count);
    this.u64Field(tagOf(43, WIRE_VARINT), r.rtt_client_max);
    this.u64Field(tagOf(44, WIRE_VARINT), r.rtt_server_sum);
    this.u32Field(tagOf(45, WIRE_VARINT), r.rtt_server_count);
    this.u64Field(tagOf(46, WIRE_VARINT), r.rtt_server_max);
    this.u64Field(tagOf(47, WIRE_VARINT), r.srt_sum);
    this.u32Field(tagOf(48, WIRE_VARINT), r.srt_count);
    this.u64Field(tagOf(49, WIRE_VARINT), r.srt_max);
    this.u64Field(tagOf(50, WIRE_VARINT), r.art_sum);
    this.u32Field(tagOf(51, WIRE_VARINT), r.art_count);
    this.u64Field(tagOf(52, WIRE_VARINT), r.art_max);
    this.u64Field(tagOf(53, WIRE_VARINT), r.cit_sum);
    this.u32Field(tagOf(54, WIRE_VARINT), r.cit_count);
    this.u64Field(tagOf(55, WIRE_VARINT), r.cit_max);
    this.u32Field(tagOf(56, WIRE_VARINT), r.retrans_tx);
    this.u32Field(tagOf(57, WIRE_VARINT), r.retrans_rx);
    this.u32Field(tagOf(58, WIRE_VARINT), r.zero_win_tx);
    this.u32Field(tagOf(59, WIRE_VARINT), r.zero_win_rx);
    this.u32Field(tagOf(60, WIRE_VARINT), r.ooo_tx);
    this.u32Field(tagOf(61, WIRE_VARINT), r.ooo_rx);
    this.u32Field(tagOf(62, WIRE_VARINT), r.retrans_syn);
    this.u32Field(tagOf(63, WIRE_VARINT), r.retrans_synack);
    this.endItem(start, 2);
  }
}

/** AppPayloadBatch bytes from PayloadReports and flow-closed notices. */
export class AppPayloadBatchEncoder extends BatchEncoder {
  add(p: PayloadReport): void {
    this.ensure(160 + p.l7_protocol.length * 3 + p.payloadCap);
    // Two length bytes hold an item up to 16383 bytes; larger payloads reserve five.
    const reserve = p.payloadCap + p.l7_protocol.length * 3 < 0x3f00 ? 2 : 5;
    const start = this.beginItem(reserve);
    this.u64Field(tagOf(1, WIRE_VARINT), p.flow_id);
    this.u64Field(tagOf(2, WIRE_VARINT), p.timestamp_us);
    this.u32Field(tagOf(3, WIRE_VARINT), p.ip_version);
    this.addressField(tagOf(4, WIRE_BYTES), p.ipBytes, p.ipOffset);
    this.addressField(tagOf(5, WIRE_BYTES), p.ipBytes, p.ipOffset + 16);
    this.u32Field(tagOf(6, WIRE_VARINT), p.client_port);
    this.u32Field(tagOf(7, WIRE_VARINT), p.server_port);
    this.u32Field(tagOf(8, WIRE_VARINT), p.protocol);
    this.boolField(tagOf(9, WIRE_VARINT), p.from_client);
    this.stringField(tagOf(10, WIRE_BYTES), p.l7_protocol);
    this.u32Field(tagOf(11, WIRE_VARINT), p.tcp_seq);
    this.u32Field(tagOf(12, WIRE_VARINT), p.payload_len);
    this.bytesField(tagOf(13, WIRE_BYTES), p.payloadBytes, p.payloadOffset, p.payloadCap);
    this.u32Field(tagOf(14, WIRE_VARINT), p.vlan);
    this.u32Field(tagOf(15, WIRE_VARINT), p.tunnel_type);
    this.u32Field(tagOf(16, WIRE_VARINT), p.tunnel_id);
    this.endItem(start, reserve);
  }

  /** The notice that a flow ended (flow_id, timestamp_us, flow_closed only): l7 ends its sessions. */
  addFlowClosed(flowId: number, timestampUs: number): void {
    this.ensure(32);
    const start = this.beginItem(1);
    this.u64Field(tagOf(1, WIRE_VARINT), flowId);
    this.u64Field(tagOf(2, WIRE_VARINT), timestampUs);
    this.boolField(tagOf(17, WIRE_VARINT), true);
    this.endItem(start, 1);
  }
}
