// Hand-written protobuf codecs for l7's three messages (proto/flowtap.proto), for the hot path:
// - AppPayloadBatch is read item by item into one reused record whose payload and addresses are
//   offsets into the received body, so reading an item allocates nothing and copies nothing;
// - L7LogBatch and AppMeterBatch are written record by record straight into one buffer, as each
//   record is made, instead of keeping objects until protobufjs encodes a batch of them.
// The bytes are standard proto3, through lib/proto-wire.ts: fields in number order, fields at
// their default (0, "", false) left out, as every proto3 encoder may; optional response_code is
// written whenever set.
import { flowtap } from '../../lib/proto';
import { ProtoReader, ProtoWriter, StringCache } from '../../lib/proto-wire';

const EMPTY = Buffer.alloc(0);

/** One AppPayload as read from a batch: reused for every item, valid until the next one. */
export class AppPayloadRecord {
  flowId = 0;
  timestampUs = 0;
  ipVersion = 0;
  /** ip_0 and ip_1 are ipBuf[ip0Start, ip0End) and ipBuf[ip1Start, ip1End). */
  ipBuf: Buffer = EMPTY;
  ip0Start = 0;
  ip0End = 0;
  ip1Start = 0;
  ip1End = 0;
  clientPort = 0;
  serverPort = 0;
  protocol = 0;
  fromClient = false;
  l7Protocol = '';
  tcpSeq = 0;
  payloadLen = 0;
  /** payload is payloadBuf[payloadStart, payloadEnd). */
  payloadBuf: Buffer = EMPTY;
  payloadStart = 0;
  payloadEnd = 0;
  vlan = 0;
  tunnelType = 0;
  tunnelId = 0;
  flowClosed = false;

  /** Fills the record from a message object (tests, eBPF socket data): addresses copied, payload not. */
  setFromObject(p: flowtap.IAppPayload): this {
    this.flowId = Number(p.flow_id ?? 0);
    this.timestampUs = Number(p.timestamp_us ?? 0);
    this.ipVersion = p.ip_version ?? 0;
    // Absent addresses are all zeros (::), as the stage always took them.
    const ip0 = p.ip_0 ?? ZERO_ADDRESS, ip1 = p.ip_1 ?? ZERO_ADDRESS;
    const ipBuf = Buffer.allocUnsafe(ip0.length + ip1.length);
    ipBuf.set(ip0, 0);
    ipBuf.set(ip1, ip0.length);
    this.ipBuf = ipBuf;
    this.ip0Start = 0; this.ip0End = ip0.length;
    this.ip1Start = ip0.length; this.ip1End = ipBuf.length;
    const raw = p.payload ?? EMPTY;
    this.payloadBuf = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.length);
    this.payloadStart = 0; this.payloadEnd = raw.length;
    this.clientPort = p.client_port ?? 0;
    this.serverPort = p.server_port ?? 0;
    this.protocol = p.protocol ?? 0;
    this.fromClient = p.from_client === true;
    this.l7Protocol = p.l7_protocol ?? '';
    this.tcpSeq = p.tcp_seq ?? 0;
    this.payloadLen = p.payload_len ?? 0;
    this.vlan = p.vlan ?? 0;
    this.tunnelType = p.tunnel_type ?? 0;
    this.tunnelId = p.tunnel_id ?? 0;
    this.flowClosed = p.flow_closed === true;
    return this;
  }
}

const ZERO_ADDRESS = new Uint8Array(16);

/**
 * Reads AppPayloadBatch bodies. `read` calls `onItem` with the reused record once per item, in
 * order; a malformed body throws ProtoWireError, after the items before the bad one.
 */
export class AppPayloadBatchReader {
  private readonly rec = new AppPayloadRecord();
  private readonly rd = new ProtoReader();
  // l7_protocol names, so that an item's name costs a byte comparison, not a new string.
  private readonly names = new StringCache();

  read(body: Buffer, onItem: (item: AppPayloadRecord) => void): number {
    return this.rd.eachItem(body, () => {
      this.readItem(body);
      onItem(this.rec);
    });
  }

  /** The item from the reader's position to its `end` (no field can run past it). */
  private readItem(body: Buffer): void {
    const r = this.rec, rd = this.rd;
    r.ipBuf = body;
    r.payloadBuf = body;
    r.flowId = 0; r.timestampUs = 0; r.ipVersion = 0;
    r.ip0Start = r.ip0End = r.ip1Start = r.ip1End = r.payloadStart = r.payloadEnd = 0;
    r.clientPort = 0; r.serverPort = 0; r.protocol = 0; r.fromClient = false; r.l7Protocol = '';
    r.tcpSeq = 0; r.payloadLen = 0; r.vlan = 0; r.tunnelType = 0; r.tunnelId = 0; r.flowClosed = false;
    const end = rd.end;
    while (rd.pos < end) {
      const tag = rd.uint32();
      switch (tag) {
        case 8: r.flowId = rd.uint64(); break;
        case 16: r.timestampUs = rd.uint64(); break;
        case 24: r.ipVersion = rd.uint32(); break;
        case 34: r.ip0Start = rd.delimited(); r.ip0End = rd.pos; break;
        case 42: r.ip1Start = rd.delimited(); r.ip1End = rd.pos; break;
        case 48: r.clientPort = rd.uint32(); break;
        case 56: r.serverPort = rd.uint32(); break;
        case 64: r.protocol = rd.uint32(); break;
        case 72: r.fromClient = rd.bool(); break;
        case 82: r.l7Protocol = this.names.read(rd); break;
        case 88: r.tcpSeq = rd.uint32(); break;
        case 96: r.payloadLen = rd.uint32(); break;
        case 106: r.payloadStart = rd.delimited(); r.payloadEnd = rd.pos; break;
        case 112: r.vlan = rd.uint32(); break;
        case 120: r.tunnelType = rd.uint32(); break;
        case 128: r.tunnelId = rd.uint32(); break;
        case 136: r.flowClosed = rd.bool(); break;
        default: rd.skip(tag & 7);
      }
    }
  }
}

/** Writes one L7FlowLog as item `logs` (field 1) of an L7LogBatch. */
export function writeL7Log(w: ProtoWriter, l: flowtap.IL7FlowLog): void {
  w.begin(0x0a, 2); // two length bytes: most records take 128 to 16383 bytes
  w.uint64Field(8, Number(l.flow_id ?? 0));
  w.uint64Field(16, Number(l.start_time ?? 0));
  w.uint64Field(24, Number(l.end_time ?? 0));
  w.stringField(34, l.ip_0 ?? '');
  w.stringField(42, l.ip_1 ?? '');
  w.uint32Field(48, l.client_port ?? 0);
  w.uint32Field(56, l.server_port ?? 0);
  w.uint32Field(64, l.protocol ?? 0);
  w.stringField(74, l.l7_protocol ?? '');
  w.stringField(82, l.version ?? '');
  w.stringField(90, l.request_type ?? '');
  w.stringField(98, l.request_domain ?? '');
  w.stringField(106, l.request_resource ?? '');
  w.stringField(114, l.endpoint ?? '');
  // Optional (explicit presence): written whenever set, 0 included.
  if (l.response_code != null) { w.uint32(120); w.int32(l.response_code); }
  w.stringField(130, l.response_status ?? '');
  w.stringField(138, l.response_exception ?? '');
  w.stringField(146, l.response_result ?? '');
  w.uint64Field(152, Number(l.response_duration ?? 0));
  w.uint32Field(160, l.request_length ?? 0);
  w.uint32Field(168, l.response_length ?? 0);
  w.stringField(178, l.trace_id ?? '');
  w.stringField(186, l.span_id ?? '');
  w.stringField(194, l.x_request_id ?? '');
  w.uint32Field(200, l.vlan ?? 0);
  w.stringField(210, l.signal_source ?? '');
  w.boolField(216, l.sampled === true);
  w.uint32Field(224, l.process_id_0 ?? 0);
  w.uint32Field(232, l.process_id_1 ?? 0);
  w.stringField(242, l.process_kname_0 ?? '');
  w.stringField(250, l.process_kname_1 ?? '');
  w.uint64Field(256, Number(l.syscall_trace_id_request ?? 0));
  w.uint64Field(264, Number(l.syscall_trace_id_response ?? 0));
  w.boolField(272, l.is_tls === true);
  w.end();
}

/** Writes one AppMeter as item `meters` (field 1) of an AppMeterBatch. */
export function writeAppMeter(w: ProtoWriter, m: flowtap.IAppMeter): void {
  w.begin(0x0a, 1); // one length byte: most meters take under 128 bytes
  w.uint64Field(8, Number(m.flow_id ?? 0));
  w.uint64Field(16, Number(m.time ?? 0));
  w.uint32Field(24, m.ip_version ?? 0);
  if (m.ip_0) w.bytesField(34, m.ip_0);
  if (m.ip_1) w.bytesField(42, m.ip_1);
  w.uint32Field(48, m.server_port ?? 0);
  w.uint32Field(56, m.protocol ?? 0);
  w.stringField(66, m.l7_protocol ?? '');
  w.stringField(74, m.endpoint ?? '');
  w.uint32Field(80, m.request ?? 0);
  w.uint32Field(88, m.response ?? 0);
  w.uint32Field(96, m.client_error ?? 0);
  w.uint32Field(104, m.server_error ?? 0);
  w.uint32Field(112, m.timeout ?? 0);
  w.uint64Field(120, Number(m.rrt_sum ?? 0));
  w.uint32Field(128, m.rrt_count ?? 0);
  w.uint64Field(136, Number(m.rrt_max ?? 0));
  w.end();
}
