// Hand-written protobuf codecs for l7's three messages (proto/flowtap.proto), for the hot path:
// - AppPayloadBatch is read item by item into one reused record whose payload and addresses are
//   offsets into the received body, so reading an item allocates nothing and copies nothing;
// - L7LogBatch and AppMeterBatch are written record by record straight into one buffer, as each
//   record is made, instead of keeping objects until protobufjs encodes a batch of them.
// The bytes are standard proto3: fields in number order, fields at their default (0, "", false)
// left out, as every proto3 encoder may; optional response_code is written whenever set.
import { flowtap } from '../../lib/proto';

const TWO_32 = 4294967296;
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

/** Thrown for bytes that are not an AppPayloadBatch. */
export class MalformedMessageError extends Error {}

/**
 * Reads AppPayloadBatch bodies. `read` calls `onItem` with the reused record once per item, in
 * order; a malformed body throws MalformedMessageError, after the items before the bad one.
 */
export class AppPayloadBatchReader {
  private readonly rec = new AppPayloadRecord();
  private buf: Buffer = EMPTY;
  private pos = 0;
  // The high 32 bits of the last varint read by varint() (its low 32 bits are returned).
  private hi = 0;
  // l7_protocol names seen, so that an item's name costs a byte comparison, not a new string.
  private readonly names: { bytes: Buffer; text: string }[] = [];

  read(body: Buffer, onItem: (item: AppPayloadRecord) => void): number {
    this.buf = body;
    this.pos = 0;
    const end = body.length;
    let count = 0;
    while (this.pos < end) {
      const tag = this.varint();
      if (tag === 0x0a) {
        const len = this.varint();
        const itemEnd = this.pos + len;
        if (this.hi !== 0 || itemEnd > end) throw new MalformedMessageError('AppPayloadBatch: item runs past the end');
        this.readItem(itemEnd);
        onItem(this.rec);
        count++;
      } else this.skip(tag);
    }
    return count;
  }

  private readItem(end: number): void {
    const r = this.rec;
    r.ipBuf = this.buf;
    r.payloadBuf = this.buf;
    r.flowId = 0; r.timestampUs = 0; r.ipVersion = 0;
    r.ip0Start = r.ip0End = r.ip1Start = r.ip1End = r.payloadStart = r.payloadEnd = 0;
    r.clientPort = 0; r.serverPort = 0; r.protocol = 0; r.fromClient = false; r.l7Protocol = '';
    r.tcpSeq = 0; r.payloadLen = 0; r.vlan = 0; r.tunnelType = 0; r.tunnelId = 0; r.flowClosed = false;
    while (this.pos < end) {
      const tag = this.varint();
      switch (tag) {
        case 8: r.flowId = this.uint64(); break;
        case 16: r.timestampUs = this.uint64(); break;
        case 24: r.ipVersion = this.varint(); break;
        case 34: r.ip0Start = this.bytes(end); r.ip0End = this.pos; break;
        case 42: r.ip1Start = this.bytes(end); r.ip1End = this.pos; break;
        case 48: r.clientPort = this.varint(); break;
        case 56: r.serverPort = this.varint(); break;
        case 64: r.protocol = this.varint(); break;
        case 72: r.fromClient = (this.varint() | this.hi) !== 0; break;
        case 82: { const s = this.bytes(end); r.l7Protocol = this.name(s, this.pos); break; }
        case 88: r.tcpSeq = this.varint(); break;
        case 96: r.payloadLen = this.varint(); break;
        case 106: r.payloadStart = this.bytes(end); r.payloadEnd = this.pos; break;
        case 112: r.vlan = this.varint(); break;
        case 120: r.tunnelType = this.varint(); break;
        case 128: r.tunnelId = this.varint(); break;
        case 136: r.flowClosed = (this.varint() | this.hi) !== 0; break;
        default: this.skip(tag);
      }
    }
    if (this.pos !== end) throw new MalformedMessageError('AppPayloadBatch: field runs past its item');
  }

  /** A varint: returns its low 32 bits (unsigned) and leaves the high ones in `hi`. */
  private varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    let b = buf[pos++];
    if (b < 0x80) { this.pos = pos; this.hi = 0; return b; }
    let lo = b & 0x7f;
    let hi = 0;
    for (let shift = 7; shift < 28; shift += 7) {
      if (pos >= buf.length) throw new MalformedMessageError('AppPayloadBatch: truncated varint');
      b = buf[pos++];
      lo |= (b & 0x7f) << shift;
      if (b < 0x80) { this.pos = pos; this.hi = 0; return lo >>> 0; }
    }
    // Byte 5 holds bits 28..34; bytes 6..10 the rest of the high word.
    if (pos >= buf.length) throw new MalformedMessageError('AppPayloadBatch: truncated varint');
    b = buf[pos++];
    lo |= (b & 0x0f) << 28;
    hi = (b & 0x70) >> 4;
    for (let shift = 3; b >= 0x80; shift += 7) {
      if (shift > 31 || pos >= buf.length) throw new MalformedMessageError('AppPayloadBatch: bad varint');
      b = buf[pos++];
      hi |= (b & 0x7f) << shift;
    }
    this.pos = pos;
    this.hi = hi >>> 0;
    return lo >>> 0;
  }

  private uint64(): number {
    const lo = this.varint();
    return this.hi === 0 ? lo : lo + this.hi * TWO_32;
  }

  /** A length-delimited field inside [pos, end): returns its start and moves past it. */
  private bytes(end: number): number {
    const len = this.varint();
    const start = this.pos;
    if (this.hi !== 0 || start + len > end) throw new MalformedMessageError('AppPayloadBatch: field runs past its item');
    this.pos = start + len;
    return start;
  }

  private skip(tag: number): void {
    switch (tag & 7) {
      case 0: this.varint(); return;
      case 1: this.pos += 8; break;
      case 2: this.bytes(this.buf.length); return;
      case 5: this.pos += 4; break;
      default: throw new MalformedMessageError(`AppPayloadBatch: wire type ${tag & 7} not supported`);
    }
    if (this.pos > this.buf.length) throw new MalformedMessageError('AppPayloadBatch: truncated field');
  }

  private name(start: number, end: number): string {
    const len = end - start;
    if (len === 0) return '';
    const names = this.names;
    for (let i = 0; i < names.length; i++) {
      const n = names[i].bytes;
      if (n.length !== len) continue;
      let k = 0;
      while (k < len && n[k] === this.buf[start + k]) k++;
      if (k === len) return names[i].text;
    }
    const text = this.buf.toString('utf8', start, end);
    // Names come from a short list (the parsers'); a bounded cache keeps odd input from growing it.
    if (names.length < 64) names.push({ bytes: Buffer.from(this.buf.subarray(start, end)), text });
    return text;
  }
}

/**
 * A growable buffer that protobuf fields are written into. Lengths of nested messages are
 * written after their content, moving the content if the length takes other than 2 bytes.
 */
export class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(initial = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + n) cap *= 2;
    const b = Buffer.allocUnsafe(cap);
    this.buf.copy(b, 0, 0, this.pos);
    this.buf = b;
  }

  /** An unsigned varint of up to 32 bits (room must have been ensured). */
  varint32(v: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (v > 0x7f) {
      buf[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    buf[pos++] = v;
    this.pos = pos;
  }

  /** A non-negative integer up to 2^53 as a varint (room must have been ensured). */
  varint64(v: number): void {
    if (v < TWO_32) { this.varint32(v); return; }
    const buf = this.buf;
    let pos = this.pos;
    let lo = v >>> 0;
    let hi = Math.floor(v / TWO_32) >>> 0;
    // 28 low bits, then 4 more with 3 of the high word, then the high word 7 bits at a time.
    for (let k = 0; k < 4; k++) { buf[pos++] = (lo & 0x7f) | 0x80; lo >>>= 7; }
    let b = lo | ((hi & 0x07) << 4);
    hi >>>= 3;
    while (hi !== 0) {
      buf[pos++] = b | 0x80;
      b = hi & 0x7f;
      hi >>>= 7;
    }
    buf[pos++] = b;
    this.pos = pos;
  }

  /** Field `tag` (number << 3 | wire type) as a varint, if not zero. */
  uintField(tag: number, v: number): void {
    if (v === 0) return;
    this.ensure(16);
    this.varint32(tag);
    if (v < TWO_32) this.varint32(v >>> 0); // a negative value wraps, as protobufjs writes uint32
    else this.varint64(v);
  }

  /** An int32 field: a negative value takes ten bytes, as a sign-extended 64-bit varint. */
  int32Field(tag: number, v: number): void {
    this.ensure(16);
    this.varint32(tag);
    if (v >= 0) { this.varint32(v); return; }
    const buf = this.buf;
    let pos = this.pos;
    let lo = v >>> 0;
    for (let k = 0; k < 4; k++) { buf[pos++] = (lo & 0x7f) | 0x80; lo >>>= 7; }
    // Bits 28..31 of the low word with three set high bits, then the other 29 high bits set.
    buf[pos++] = lo | 0xf0;
    for (let k = 0; k < 4; k++) buf[pos++] = 0xff;
    buf[pos++] = 0x01;
    this.pos = pos;
  }

  boolField(tag: number, v: boolean): void {
    if (!v) return;
    this.ensure(8);
    this.varint32(tag);
    this.buf[this.pos++] = 1;
  }

  /** A string field, if not empty, as UTF-8. */
  stringField(tag: number, s: string): void {
    const n = s.length;
    if (n === 0) return;
    this.ensure(n * 3 + 16);
    this.varint32(tag);
    // Short ASCII strings (the usual case) are copied here; others go through Buffer's encoder.
    if (n < 128) {
      const buf = this.buf;
      const lenAt = this.pos;
      let pos = lenAt + 1;
      let k = 0;
      for (; k < n; k++) {
        const c = s.charCodeAt(k);
        if (c >= 0x80) break;
        buf[pos++] = c;
      }
      if (k === n) { buf[lenAt] = n; this.pos = pos; return; }
    }
    const len = Buffer.byteLength(s, 'utf8');
    this.varint32(len);
    this.buf.write(s, this.pos, len, 'utf8');
    this.pos += len;
  }

  bytesField(tag: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.ensure(b.length + 16);
    this.varint32(tag);
    this.varint32(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Starts a nested message of field `tag`; returns the mark endMessage takes. */
  beginMessage(tag: number): number {
    this.ensure(8);
    this.varint32(tag);
    const mark = this.pos;
    this.pos += 2;
    return mark;
  }

  /** Ends the nested message begun at `mark`: writes its length before it. */
  endMessage(mark: number): void {
    const len = this.pos - mark - 2;
    const buf = this.buf;
    if (len < 0x80) {
      buf.copyWithin(mark + 1, mark + 2, this.pos);
      buf[mark] = len;
      this.pos--;
    } else if (len < 0x4000) {
      buf[mark] = (len & 0x7f) | 0x80;
      buf[mark + 1] = len >>> 7;
    } else {
      // Longer than 2 varint bytes: shift the content right to make room.
      let lenBytes = 3;
      while (len >= 2 ** (7 * lenBytes)) lenBytes++;
      this.ensure(lenBytes - 2);
      const b = this.buf;
      b.copyWithin(mark + lenBytes, mark + 2, this.pos);
      this.pos += lenBytes - 2;
      let v = len, p = mark;
      while (v > 0x7f) { b[p++] = (v & 0x7f) | 0x80; v >>>= 7; }
      b[p] = v;
    }
  }

  /** The bytes written, as a buffer of their own; the writer starts again empty. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.pos = 0;
    return out;
  }
}

/** Writes one L7FlowLog as item `logs` (field 1) of an L7LogBatch. */
export function writeL7Log(w: ProtoWriter, l: flowtap.IL7FlowLog): void {
  const mark = w.beginMessage(0x0a);
  w.uintField(8, Number(l.flow_id ?? 0));
  w.uintField(16, Number(l.start_time ?? 0));
  w.uintField(24, Number(l.end_time ?? 0));
  w.stringField(34, l.ip_0 ?? '');
  w.stringField(42, l.ip_1 ?? '');
  w.uintField(48, l.client_port ?? 0);
  w.uintField(56, l.server_port ?? 0);
  w.uintField(64, l.protocol ?? 0);
  w.stringField(74, l.l7_protocol ?? '');
  w.stringField(82, l.version ?? '');
  w.stringField(90, l.request_type ?? '');
  w.stringField(98, l.request_domain ?? '');
  w.stringField(106, l.request_resource ?? '');
  w.stringField(114, l.endpoint ?? '');
  if (l.response_code != null) w.int32Field(120, l.response_code);
  w.stringField(130, l.response_status ?? '');
  w.stringField(138, l.response_exception ?? '');
  w.stringField(146, l.response_result ?? '');
  w.uintField(152, Number(l.response_duration ?? 0));
  w.uintField(160, l.request_length ?? 0);
  w.uintField(168, l.response_length ?? 0);
  w.stringField(178, l.trace_id ?? '');
  w.stringField(186, l.span_id ?? '');
  w.stringField(194, l.x_request_id ?? '');
  w.uintField(200, l.vlan ?? 0);
  w.stringField(210, l.signal_source ?? '');
  w.boolField(216, l.sampled === true);
  w.uintField(224, l.process_id_0 ?? 0);
  w.uintField(232, l.process_id_1 ?? 0);
  w.stringField(242, l.process_kname_0 ?? '');
  w.stringField(250, l.process_kname_1 ?? '');
  w.uintField(256, Number(l.syscall_trace_id_request ?? 0));
  w.uintField(264, Number(l.syscall_trace_id_response ?? 0));
  w.boolField(272, l.is_tls === true);
  w.endMessage(mark);
}

/** Writes one AppMeter as item `meters` (field 1) of an AppMeterBatch. */
export function writeAppMeter(w: ProtoWriter, m: flowtap.IAppMeter): void {
  const mark = w.beginMessage(0x0a);
  w.uintField(8, Number(m.flow_id ?? 0));
  w.uintField(16, Number(m.time ?? 0));
  w.uintField(24, m.ip_version ?? 0);
  if (m.ip_0) w.bytesField(34, m.ip_0);
  if (m.ip_1) w.bytesField(42, m.ip_1);
  w.uintField(48, m.server_port ?? 0);
  w.uintField(56, m.protocol ?? 0);
  w.stringField(66, m.l7_protocol ?? '');
  w.stringField(74, m.endpoint ?? '');
  w.uintField(80, m.request ?? 0);
  w.uintField(88, m.response ?? 0);
  w.uintField(96, m.client_error ?? 0);
  w.uintField(104, m.server_error ?? 0);
  w.uintField(112, m.timeout ?? 0);
  w.uintField(120, Number(m.rrt_sum ?? 0));
  w.uintField(128, m.rrt_count ?? 0);
  w.uintField(136, Number(m.rrt_max ?? 0));
  w.endMessage(mark);
}
