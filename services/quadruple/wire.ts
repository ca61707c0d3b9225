// Protobuf reading and writing for quadruple's hot messages (FlowBatch and AppMeterBatch in;
// DocumentBatch and L4LogBatch out), with lib/proto-wire.ts, as proto/flowtap.proto says.
// protobufjs builds an object per record on decode and an operation object per field on encode,
// which made garbage collection quadruple's largest cost; these read into one reused scratch
// record and write straight into one reused buffer. Fields equal to their proto3 default are not
// written (readers see the same values).
import { ProtoReader, ProtoWriter, StringCache } from '../../lib/proto-wire';
import { AppRecord, FlowRecord } from './meters';

/** Reads a 16-byte address field into `ips` at `off`; returns its length on the wire. */
function readIp(rd: ProtoReader, ips: Uint8Array, off: number): number {
  const len = rd.length();
  if (len === 16) { const buf = rd.buf, p = rd.pos; for (let k = 0; k < 16; k++) ips[off + k] = buf[p + k]; } // no subarray object
  rd.pos += len;
  return len;
}

/**
 * Calls `onFlow` with each Flow of a FlowBatch body, decoded into `r` (reused: read it before
 * returning). Returns the number of flows. Throws on a malformed body, after the flows before it.
 */
export function decodeFlowBatch(body: Uint8Array, rd: ProtoReader, strings: StringCache, r: FlowRecord, onFlow: (r: FlowRecord) => void): number {
  return rd.eachItem(body, () => {
    readFlow(rd, strings, r);
    onFlow(r);
  });
}

function readFlow(rd: ProtoReader, strings: StringCache, r: FlowRecord): void {
  r.reset();
  const end = rd.end;
  while (rd.pos < end) {
    const tag = rd.uint32();
    // Cases are (field number << 3) | wire type; a known field with an unexpected wire type is skipped.
    switch (tag) {
      case 1 << 3: r.flow_id = rd.uint64(); break;
      case 2 << 3: r.start_time = rd.uint64(); break;
      case 3 << 3: r.end_time = rd.uint64(); break;
      case 4 << 3: r.report_time = rd.uint64(); break;
      case 5 << 3: r.ip_version = rd.uint32(); break;
      case (6 << 3) | 2: r.ip_0_len = readIp(rd, r.ips, 0); break;
      case (7 << 3) | 2: r.ip_1_len = readIp(rd, r.ips, 16); break;
      case 8 << 3: r.client_port = rd.uint32(); break;
      case 9 << 3: r.server_port = rd.uint32(); break;
      case 10 << 3: r.protocol = rd.uint32(); break;
      case 11 << 3: r.vlan = rd.uint32(); break;
      case 12 << 3: r.tunnel_type = rd.uint32(); break;
      case 13 << 3: r.tunnel_id = rd.uint32(); break;
      case (14 << 3) | 2: r.l7_protocol = strings.read(rd); break;
      case 15 << 3: r.is_new_flow = rd.bool(); break;
      case 16 << 3: r.is_closed = rd.bool(); break;
      case (17 << 3) | 2: r.close_type = strings.read(rd); break;
      case 20 << 3: r.packet_tx = rd.uint64(); break;
      case 21 << 3: r.packet_rx = rd.uint64(); break;
      case 22 << 3: r.byte_tx = rd.uint64(); break;
      case 23 << 3: r.byte_rx = rd.uint64(); break;
      case 24 << 3: r.l3_byte_tx = rd.uint64(); break;
      case 25 << 3: r.l3_byte_rx = rd.uint64(); break;
      case 26 << 3: r.l4_byte_tx = rd.uint64(); break;
      case 27 << 3: r.l4_byte_rx = rd.uint64(); break;
      case 28 << 3: r.tcp_flags_tx = rd.uint32(); break;
      case 29 << 3: r.tcp_flags_rx = rd.uint32(); break;
      case 30 << 3: r.syn_count = rd.uint32(); break;
      case 31 << 3: r.synack_count = rd.uint32(); break;
      case 32 << 3: r.fin_count = rd.uint32(); break;
      case 40 << 3: r.rtt = rd.uint64(); break;
      case 41 << 3: r.rtt_client_sum = rd.uint64(); break;
      case 42 << 3: r.rtt_client_count = rd.uint32(); break;
      case 43 << 3: r.rtt_client_max = rd.uint64(); break;
      case 44 << 3: r.rtt_server_sum = rd.uint64(); break;
      case 45 << 3: r.rtt_server_count = rd.uint32(); break;
      case 46 << 3: r.rtt_server_max = rd.uint64(); break;
      case 47 << 3: r.srt_sum = rd.uint64(); break;
      case 48 << 3: r.srt_count = rd.uint32(); break;
      case 49 << 3: r.srt_max = rd.uint64(); break;
      case 50 << 3: r.art_sum = rd.uint64(); break;
      case 51 << 3: r.art_count = rd.uint32(); break;
      case 52 << 3: r.art_max = rd.uint64(); break;
      case 53 << 3: r.cit_sum = rd.uint64(); break;
      case 54 << 3: r.cit_count = rd.uint32(); break;
      case 55 << 3: r.cit_max = rd.uint64(); break;
      case 56 << 3: r.retrans_tx = rd.uint32(); break;
      case 57 << 3: r.retrans_rx = rd.uint32(); break;
      case 58 << 3: r.zero_win_tx = rd.uint32(); break;
      case 59 << 3: r.zero_win_rx = rd.uint32(); break;
      case 60 << 3: r.ooo_tx = rd.uint32(); break;
      case 61 << 3: r.ooo_rx = rd.uint32(); break;
      case 62 << 3: r.retrans_syn = rd.uint32(); break;
      case 63 << 3: r.retrans_synack = rd.uint32(); break;
      default: rd.skip(tag & 7);
    }
  }
}

/** As decodeFlowBatch, for an AppMeterBatch body. */
export function decodeAppMeterBatch(body: Uint8Array, rd: ProtoReader, strings: StringCache, r: AppRecord, onMeter: (r: AppRecord) => void): number {
  return rd.eachItem(body, () => {
    readAppMeter(rd, strings, r);
    onMeter(r);
  });
}

function readAppMeter(rd: ProtoReader, strings: StringCache, r: AppRecord): void {
  r.reset();
  const end = rd.end;
  while (rd.pos < end) {
    const tag = rd.uint32();
    switch (tag) {
      case 1 << 3: r.flow_id = rd.uint64(); break;
      case 2 << 3: r.time = rd.uint64(); break;
      case 3 << 3: r.ip_version = rd.uint32(); break;
      case (4 << 3) | 2: r.ip_0_len = readIp(rd, r.ips, 0); break;
      case (5 << 3) | 2: r.ip_1_len = readIp(rd, r.ips, 16); break;
      case 6 << 3: r.server_port = rd.uint32(); break;
      case 7 << 3: r.protocol = rd.uint32(); break;
      case (8 << 3) | 2: r.l7_protocol = strings.read(rd); break;
      case (9 << 3) | 2: r.endpoint = strings.read(rd); break;
      case 10 << 3: r.request = rd.uint32(); break;
      case 11 << 3: r.response = rd.uint32(); break;
      case 12 << 3: r.client_error = rd.uint32(); break;
      case 13 << 3: r.server_error = rd.uint32(); break;
      case 14 << 3: r.timeout = rd.uint32(); break;
      case 15 << 3: r.rrt_sum = rd.uint64(); break;
      case 16 << 3: r.rrt_count = rd.uint32(); break;
      case 17 << 3: r.rrt_max = rd.uint64(); break;
      default: rd.skip(tag & 7);
    }
  }
}

/**
 * Collects encoded records as `repeated X = 1` of a batch message (DocumentBatch, L4LogBatch)
 * and hands each batch of `batchSize` records to `emit`; `flush` hands over the partial last one.
 */
export class BatchWriter {
  readonly w = new ProtoWriter();
  count = 0;

  constructor(private readonly batchSize: number, private readonly emit: (body: Buffer, count: number) => void) {}

  /** Starts a record; write its fields into `w`, then call endRecord. */
  beginRecord(): void {
    this.w.begin(10);
  }

  endRecord(): void {
    this.w.end();
    this.recordAdded();
  }

  /** A record was written whole into `w` (tag 1, length, fields) without beginRecord. */
  recordAdded(): void {
    if (++this.count >= this.batchSize) this.flush();
  }

  flush(): void {
    if (this.count === 0) return;
    const n = this.count;
    this.count = 0;
    this.emit(this.w.take(), n);
  }
}
