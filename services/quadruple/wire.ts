// Hand-written protobuf reading and writing for quadruple's hot messages (FlowBatch and
// AppMeterBatch in; DocumentBatch and L4LogBatch out), byte-compatible with proto/flowtap.proto.
// protobufjs builds an object per record on decode and an operation object per field on encode,
// which made garbage collection quadruple's largest cost; these read into one reused scratch
// record and write straight into one reused buffer. Fields equal to their proto3 default are not
// written (readers see the same values).
import protobuf from 'protobufjs/minimal';
import { AppRecord, FlowRecord } from './meters';

const TWO_32 = 4294967296;

/** Reads varints and length-delimited fields from one message body, bounds-checked. */
export class ProtoReader {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;

  reset(body: Uint8Array): void {
    this.buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    this.pos = 0;
    this.end = body.length;
  }

  /** A varint as an unsigned number (exact below 2^53, as protobufjs reads uint64 without Long). */
  varint(): number {
    const buf = this.buf, end = this.end;
    let pos = this.pos;
    let b = 0, lo = 0, hi = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      if (pos >= end) throw truncated();
      b = buf[pos++];
      lo |= (b & 127) << shift;
      if (b < 128) { this.pos = pos; return lo; }
    }
    if (pos >= end) throw truncated();
    b = buf[pos++];
    lo = (lo | ((b & 15) << 28)) >>> 0;
    hi = (b & 127) >> 4;
    if (b >= 128) {
      for (let shift = 3; shift < 32; shift += 7) {
        if (pos >= end) throw truncated();
        b = buf[pos++];
        hi |= (b & 127) << shift;
        if (b < 128) break;
      }
      if (b >= 128) throw new Error('invalid varint (more than 10 bytes)');
    }
    this.pos = pos;
    return (hi >>> 0) * TWO_32 + lo;
  }

  /** A uint32 field: the varint's low 32 bits, as protobufjs reads it. */
  uint32(): number {
    const buf = this.buf;
    const pos = this.pos;
    if (pos < this.end && buf[pos] < 128) { this.pos = pos + 1; return buf[pos]; }
    const v = this.varint();
    return v < TWO_32 ? v : v % TWO_32;
  }

  /** Length of a length-delimited field; the caller reads [pos, pos + length). */
  length(): number {
    const n = this.uint32();
    if (n > this.end - this.pos) throw truncated();
    return n;
  }

  /** Skips a field of wire type `wireType` that this reader does not use. */
  skip(wireType: number): void {
    switch (wireType) {
      case 0: this.varint(); return;
      case 1: this.advance(8); return;
      case 2: this.advance(this.length()); return;
      case 5: this.advance(4); return;
      default: throw new Error(`unsupported wire type ${wireType}`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) throw truncated();
    this.pos += n;
  }
}

function truncated(): Error {
  return new Error('truncated protobuf message');
}

/**
 * Decodes short strings (protocol names, close types, endpoints) through a small direct-mapped
 * cache keyed by their bytes, so a repeated value is one string, not a new one per record.
 */
export class StringCache {
  static readonly SIZE = 1024;
  static readonly MAX_LEN = 64;
  private readonly keys: (Buffer | undefined)[] = new Array(StringCache.SIZE);
  private readonly values: string[] = new Array(StringCache.SIZE);

  get(buf: Buffer, start: number, end: number): string {
    const len = end - start;
    if (len === 0) return '';
    if (len > StringCache.MAX_LEN) return buf.toString('utf8', start, end);
    let h = len;
    for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i], 16777619);
    const slot = (h >>> 0) & (StringCache.SIZE - 1);
    const k = this.keys[slot];
    if (k !== undefined && k.length === len) {
      let same = true;
      for (let i = 0; i < len; i++) if (k[i] !== buf[start + i]) { same = false; break; }
      if (same) return this.values[slot];
    }
    const s = buf.toString('utf8', start, end);
    this.keys[slot] = Buffer.from(buf.subarray(start, end));
    this.values[slot] = s;
    return s;
  }
}

/** Reads a 16-byte address field into `ips` at `off`; returns its length on the wire. */
function readIp(rd: ProtoReader, ips: Uint8Array, off: number): number {
  const len = rd.length();
  if (len === 16) { const buf = rd.buf, p = rd.pos; for (let k = 0; k < 16; k++) ips[off + k] = buf[p + k]; } // no subarray object
  rd.pos += len;
  return len;
}

function readString(rd: ProtoReader, strings: StringCache): string {
  const len = rd.length();
  const s = strings.get(rd.buf, rd.pos, rd.pos + len);
  rd.pos += len;
  return s;
}

/**
 * Calls `onFlow` with each Flow of a FlowBatch body, decoded into `r` (reused: read it before
 * returning). Returns the number of flows. Throws on a malformed body, after the flows before it.
 */
export function decodeFlowBatch(body: Uint8Array, rd: ProtoReader, strings: StringCache, r: FlowRecord, onFlow: (r: FlowRecord) => void): number {
  rd.reset(body);
  let count = 0;
  while (rd.pos < rd.end) {
    const tag = rd.uint32();
    if (tag !== 10) { rd.skip(tag & 7); continue; } // field 1 (flows), length-delimited
    const len = rd.length();
    const end = rd.pos + len;
    const outerEnd = rd.end;
    rd.end = end;
    readFlow(rd, strings, r);
    rd.end = outerEnd;
    count++;
    onFlow(r);
  }
  return count;
}

function readFlow(rd: ProtoReader, strings: StringCache, r: FlowRecord): void {
  r.reset();
  while (rd.pos < rd.end) {
    const tag = rd.uint32();
    // Cases are (field number << 3) | wire type; a known field with an unexpected wire type is skipped.
    switch (tag) {
      case 1 << 3: r.flow_id = rd.varint(); break;
      case 2 << 3: r.start_time = rd.varint(); break;
      case 3 << 3: r.end_time = rd.varint(); break;
      case 4 << 3: r.report_time = rd.varint(); break;
      case 5 << 3: r.ip_version = rd.uint32(); break;
      case (6 << 3) | 2: r.ip_0_len = readIp(rd, r.ips, 0); break;
      case (7 << 3) | 2: r.ip_1_len = readIp(rd, r.ips, 16); break;
      case 8 << 3: r.client_port = rd.uint32(); break;
      case 9 << 3: r.server_port = rd.uint32(); break;
      case 10 << 3: r.protocol = rd.uint32(); break;
      case 11 << 3: r.vlan = rd.uint32(); break;
      case 12 << 3: r.tunnel_type = rd.uint32(); break;
      case 13 << 3: r.tunnel_id = rd.uint32(); break;
      case (14 << 3) | 2: r.l7_protocol = readString(rd, strings); break;
      case 15 << 3: r.is_new_flow = rd.uint32() !== 0; break;
      case 16 << 3: r.is_closed = rd.uint32() !== 0; break;
      case (17 << 3) | 2: r.close_type = readString(rd, strings); break;
      case 20 << 3: r.packet_tx = rd.varint(); break;
      case 21 << 3: r.packet_rx = rd.varint(); break;
      case 22 << 3: r.byte_tx = rd.varint(); break;
      case 23 << 3: r.byte_rx = rd.varint(); break;
      case 24 << 3: r.l3_byte_tx = rd.varint(); break;
      case 25 << 3: r.l3_byte_rx = rd.varint(); break;
      case 26 << 3: r.l4_byte_tx = rd.varint(); break;
      case 27 << 3: r.l4_byte_rx = rd.varint(); break;
      case 28 << 3: r.tcp_flags_tx = rd.uint32(); break;
      case 29 << 3: r.tcp_flags_rx = rd.uint32(); break;
      case 30 << 3: r.syn_count = rd.uint32(); break;
      case 31 << 3: r.synack_count = rd.uint32(); break;
      case 32 << 3: r.fin_count = rd.uint32(); break;
      case 40 << 3: r.rtt = rd.varint(); break;
      case 41 << 3: r.rtt_client_sum = rd.varint(); break;
      case 42 << 3: r.rtt_client_count = rd.uint32(); break;
      case 43 << 3: r.rtt_client_max = rd.varint(); break;
      case 44 << 3: r.rtt_server_sum = rd.varint(); break;
      case 45 << 3: r.rtt_server_count = rd.uint32(); break;
      case 46 << 3: r.rtt_server_max = rd.varint(); break;
      case 47 << 3: r.srt_sum = rd.varint(); break;
      case 48 << 3: r.srt_count = rd.uint32(); break;
      case 49 << 3: r.srt_max = rd.varint(); break;
      case 50 << 3: r.art_sum = rd.varint(); break;
      case 51 << 3: r.art_count = rd.uint32(); break;
      case 52 << 3: r.art_max = rd.varint(); break;
      case 53 << 3: r.cit_sum = rd.varint(); break;
      case 54 << 3: r.cit_count = rd.uint32(); break;
      case 55 << 3: r.cit_max = rd.varint(); break;
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
  rd.reset(body);
  let count = 0;
  while (rd.pos < rd.end) {
    const tag = rd.uint32();
    if (tag !== 10) { rd.skip(tag & 7); continue; } // field 1 (meters)
    const len = rd.length();
    const end = rd.pos + len;
    const outerEnd = rd.end;
    rd.end = end;
    readAppMeter(rd, strings, r);
    rd.end = outerEnd;
    count++;
    onMeter(r);
  }
  return count;
}

function readAppMeter(rd: ProtoReader, strings: StringCache, r: AppRecord): void {
  r.reset();
  while (rd.pos < rd.end) {
    const tag = rd.uint32();
    switch (tag) {
      case 1 << 3: r.flow_id = rd.varint(); break;
      case 2 << 3: r.time = rd.varint(); break;
      case 3 << 3: r.ip_version = rd.uint32(); break;
      case (4 << 3) | 2: r.ip_0_len = readIp(rd, r.ips, 0); break;
      case (5 << 3) | 2: r.ip_1_len = readIp(rd, r.ips, 16); break;
      case 6 << 3: r.server_port = rd.uint32(); break;
      case 7 << 3: r.protocol = rd.uint32(); break;
      case (8 << 3) | 2: r.l7_protocol = readString(rd, strings); break;
      case (9 << 3) | 2: r.endpoint = readString(rd, strings); break;
      case 10 << 3: r.request = rd.uint32(); break;
      case 11 << 3: r.response = rd.uint32(); break;
      case 12 << 3: r.client_error = rd.uint32(); break;
      case 13 << 3: r.server_error = rd.uint32(); break;
      case 14 << 3: r.timeout = rd.uint32(); break;
      case 15 << 3: r.rrt_sum = rd.varint(); break;
      case 16 << 3: r.rrt_count = rd.uint32(); break;
      case 17 << 3: r.rrt_max = rd.varint(); break;
      default: rd.skip(tag & 7);
    }
  }
}

/** Writes protobuf into one growing buffer, reused from message to message. */
export class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(initialSize = 1 << 16) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  /** Room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const buf = Buffer.allocUnsafe(size);
    this.buf.copy(buf, 0, 0, this.pos);
    this.buf = buf;
  }

  /** A varint of a non-negative integer below 2^64 (uint64 written as protobufjs writes a number). */
  varint(v: number): void {
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    if (v < 128 && v >= 0) { buf[pos] = v; this.pos = pos + 1; return; }
    if (!(v >= 0)) { this.negative(v); return; }
    while (v > 0x7fffffff) { buf[pos++] = (v % 128) | 128; v = Math.floor(v / 128); }
    while (v > 127) { buf[pos++] = (v & 127) | 128; v >>>= 7; }
    buf[pos++] = v;
    this.pos = pos;
  }

  /** A negative number in a uint64 field: protobufjs's two's complement, for identical bytes. */
  private negative(v: number): void {
    const bits = protobuf.util.LongBits.fromNumber(v);
    let lo = bits.lo >>> 0, hi = bits.hi >>> 0;
    const buf = this.buf;
    while (hi) { buf[this.pos++] = (lo & 127) | 128; lo = ((lo >>> 7) | (hi << 25)) >>> 0; hi >>>= 7; }
    while (lo > 127) { buf[this.pos++] = (lo & 127) | 128; lo >>>= 7; }
    buf[this.pos++] = lo;
  }

  /** A uint64 field, left out when 0. `tag` is (field number << 3), wire type 0. */
  u64(tag: number, v: number): void {
    if (v === 0) return;
    this.varint(tag);
    this.varint(v);
  }

  /** A uint32 field, left out when 0 (values wrap to 32 bits as protobufjs writes them). */
  u32(tag: number, v: number): void {
    v >>>= 0;
    if (v === 0) return;
    this.varint(tag);
    this.varint(v);
  }

  /** A string field, left out when empty. `tag` is (field number << 3) | 2. */
  str(tag: number, s: string): void {
    const n = s.length;
    if (n === 0) return;
    this.varint(tag);
    let ascii = true;
    for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 127) { ascii = false; break; }
    if (ascii) {
      this.varint(n);
      this.ensure(n);
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < n; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
    } else {
      const len = Buffer.byteLength(s, 'utf8');
      this.varint(len);
      this.ensure(len);
      this.pos += this.buf.write(s, this.pos, len, 'utf8');
    }
  }

  /** Raw bytes (already encoded fields). */
  raw(bytes: Uint8Array, start = 0, end = bytes.length): void {
    const n = end - start;
    this.ensure(n);
    if (n < 32) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = start; i < end; i++) buf[pos++] = bytes[i];
      this.pos = pos;
    } else {
      this.buf.set(bytes.subarray(start, end), this.pos);
      this.pos += n;
    }
  }

  /** Starts a length-delimited field (tag written, one length byte reserved); returns its start. */
  begin(tag: number): number {
    this.varint(tag);
    this.ensure(1);
    this.pos++;
    return this.pos;
  }

  /** Ends the field begun at `start`: writes its length, moving the content if it needs more bytes. */
  end(start: number): void {
    const len = this.pos - start;
    if (len < 128) { this.buf[start - 1] = len; return; }
    const lenBytes = len < 1 << 14 ? 2 : len < 1 << 21 ? 3 : len < 1 << 28 ? 4 : 5;
    this.ensure(lenBytes - 1);
    this.buf.copyWithin(start + lenBytes - 1, start, this.pos);
    const end = this.pos + lenBytes - 1;
    this.pos = start - 1;
    this.varint(len);
    this.pos = end;
  }

  /** A copy of what was written (a message to send), and the writer emptied. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    this.pos = 0;
    return out;
  }
}

/**
 * Collects encoded records as `repeated X = 1` of a batch message (DocumentBatch, L4LogBatch)
 * and hands each batch of `batchSize` records to `emit`; `flush` hands over the partial last one.
 */
export class BatchWriter {
  readonly w = new ProtoWriter();
  count = 0;
  private recordStart = 0;

  constructor(private readonly batchSize: number, private readonly emit: (body: Buffer, count: number) => void) {}

  /** Starts a record; write its fields into `w`, then call endRecord. */
  beginRecord(): void {
    this.recordStart = this.w.begin(10);
  }

  endRecord(): void {
    this.w.end(this.recordStart);
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
