// The protobuf wire format, by hand: one writer and one reader that every hot-path codec of the
// processes uses (PacketBatch columns, FlowBatch, AppPayloadBatch, L7LogBatch, AppMeterBatch,
// DocumentBatch, L4LogBatch), instead of protobufjs's object per record and operation per field.
//
// Numbers follow protobufjs with Long turned off (lib/proto.ts), byte for byte:
// - int32 wraps to 32 bits (v | 0), and a negative one is a 10-byte sign-extended varint, as
//   protobuf requires; int64 is two's complement on 64 bits (10 bytes when negative);
// - uint32 wraps to 32 bits (v >>> 0); uint64 and int64 take the 64 bits protobufjs's
//   LongBits.fromNumber makes (fractions truncated, negatives in two's complement, 2^64 and up,
//   NaN and infinities 0); reading gives hi * 2^32 + lo, exact below 2^53;
// - sint32 and sint64 are zigzag; bool reads the low 32 bits of its varint, as protobufjs does.
// Strings are written as Node writes UTF-8: a lone surrogate becomes U+FFFD (EF BF BD). protobufjs
// writes strings under 40 UTF-16 units with its own encoder, which puts out the surrogate itself
// (ED A0 80, not valid UTF-8); it writes longer ones as Node does. Same length, valid bytes.
// The `...Field` writers leave out a value that encodes as zero, as proto3 allows; the plain
// writers (uint32, int32, ...) write whatever they are given, for fields with presence.

const TWO_32 = 4294967296;
const EMPTY = new Uint8Array(0);
/** Nested messages open at once (batch, record, meter: 3 in use). */
const MAX_DEPTH = 16;

/** Thrown for bytes that are not well-formed protobuf (truncated, overlong, bad wire type). */
export class ProtoWireError extends Error {
  override name = 'ProtoWireError';
}

export const WIRE_VARINT = 0;
export const WIRE_I64 = 1;
export const WIRE_LEN = 2;
export const WIRE_I32 = 5;
/** The records of a batch message: field 1, length-delimited. */
const BATCH_ITEM_TAG = (1 << 3) | WIRE_LEN;

/** A field's tag: (field number << 3) | wire type. */
export function tagOf(field: number, wireType: number): number {
  return ((field << 3) | wireType) >>> 0;
}

/** Bytes of the varint of an unsigned 32-bit value. */
export function varintSize32(v: number): number {
  v >>>= 0;
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

// The 64 bits protobufjs's LongBits.fromNumber makes of a number, left here by splitNumber
// (module state: no object per value).
let splitLo = 0;
let splitHi = 0;

function splitNumber(v: number): void {
  if (v === 0 || v !== v) { splitLo = splitHi = 0; return; }
  const negative = v < 0;
  if (negative) v = -v;
  let lo = v >>> 0;
  let hi = ((v - lo) / TWO_32) >>> 0;
  if (negative) {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
    if (++lo > 0xffffffff) { lo = 0; if (++hi > 0xffffffff) hi = 0; }
  }
  splitLo = lo;
  splitHi = hi;
}

/** Puts the varint of `v` (unsigned 32-bit) at buf[pos]; returns the position after it. */
function putVarint32(buf: Buffer, pos: number, v: number): number {
  while (v > 0x7f) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

/** Puts the varint of the 64-bit value hi * 2^32 + lo (unsigned halves) at buf[pos]. */
function putVarint64(buf: Buffer, pos: number, lo: number, hi: number): number {
  while (hi !== 0) {
    buf[pos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  return putVarint32(buf, pos, lo);
}

/**
 * Writes protobuf into one growing buffer, reused from message to message: `take` hands over
 * what was written and empties it. Every write makes its own room.
 */
export class ProtoWriter {
  buf: Buffer;
  pos = 0;
  /** buf.length, kept apart: the room check of every write reads it. */
  private cap: number;
  // Open nested messages: where each one's content starts and how many length bytes it reserved.
  private readonly openStart = new Int32Array(MAX_DEPTH);
  private readonly openReserved = new Uint8Array(MAX_DEPTH);
  private depth = 0;

  constructor(initialSize = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(16, initialSize));
    this.cap = this.buf.length;
  }

  /**
   * Writes from now on at the start of `buf`, for a message whose size is known beforehand:
   * `buf` then holds it, with no copy, unless the writer outgrew it (and `buf` is no longer
   * `this.buf`). Each write asks for the room its largest form takes (5 bytes for a uint32, 10
   * for a uint64), so give `buf` 10 bytes more than the message.
   */
  writeInto(buf: Buffer): void {
    this.buf = buf;
    this.cap = buf.length;
    this.pos = 0;
    this.depth = 0;
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    if (this.pos + n > this.cap) this.grow(n);
  }

  private grow(n: number): void {
    let size = Math.max(64, this.buf.length * 2);
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.cap = size;
  }

  /**
   * A copy of what was written (a message to send, which the transport may still hold after the
   * send), and the writer emptied. A copy rather than the buffer itself: measured in the l7
   * process, handing over the writer's buffer and allocating another cost more than the copy.
   */
  take(): Buffer {
    if (this.depth !== 0) throw new Error(`ProtoWriter.take with ${this.depth} nested message(s) open`);
    const n = this.pos;
    this.pos = 0;
    const out = Buffer.allocUnsafe(n);
    this.buf.copy(out, 0, 0, n);
    return out;
  }

  // --- Values, without tag; written whatever they are. ---

  /** A uint32 (also a tag or a length): the value wrapped to 32 bits, as protobufjs writes it. */
  uint32(v: number): void {
    if (this.pos + 5 > this.cap) this.grow(5);
    this.pos = putVarint32(this.buf, this.pos, v >>> 0);
  }

  /** An int32: the value wrapped to 32 bits; a negative one takes ten bytes, sign-extended to 64 bits. */
  int32(v: number): void {
    v |= 0;
    if (v < 0) this.varint64(v >>> 0, 0xffffffff);
    else this.uint32(v);
  }

  /** A uint64 from a number, as protobufjs writes it (see the top of the file). */
  uint64(v: number): void {
    if (v >= 0 && v < TWO_32) { this.uint32(v); return; }
    splitNumber(v);
    this.varint64(splitLo, splitHi);
  }

  /** An int64 from a number: the same bytes as uint64 (two's complement). */
  int64(v: number): void {
    this.uint64(v);
  }

  sint32(v: number): void {
    this.uint32(((v << 1) ^ (v >> 31)) >>> 0);
  }

  sint64(v: number): void {
    splitNumber(v);
    // Zigzag on 64 bits: (n << 1) ^ (n >> 63).
    const sign = splitHi >> 31;
    const hi = (((splitHi << 1) | (splitLo >>> 31)) ^ sign) >>> 0;
    const lo = ((splitLo << 1) ^ sign) >>> 0;
    this.varint64(lo, hi);
  }

  bool(v: boolean): void {
    if (this.pos + 1 > this.cap) this.grow(1);
    this.buf[this.pos++] = v ? 1 : 0;
  }

  /** A varint of the 64-bit value hi * 2^32 + lo (both unsigned 32-bit). */
  varint64(lo: number, hi: number): void {
    if (this.pos + 10 > this.cap) this.grow(10);
    this.pos = putVarint64(this.buf, this.pos, lo, hi);
  }

  fixed32(v: number): void {
    if (this.pos + 4 > this.cap) this.grow(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }

  sfixed32(v: number): void {
    this.fixed32(v);
  }

  /** A fixed64 or sfixed64 from a number (the 64 bits of uint64). */
  fixed64(v: number): void {
    splitNumber(v);
    if (this.pos + 8 > this.cap) this.grow(8);
    this.buf.writeUInt32LE(splitLo, this.pos);
    this.buf.writeUInt32LE(splitHi, this.pos + 4);
    this.pos += 8;
  }

  sfixed64(v: number): void {
    this.fixed64(v);
  }

  double(v: number): void {
    if (this.pos + 8 > this.cap) this.grow(8);
    this.pos = this.buf.writeDoubleLE(v, this.pos);
  }

  float(v: number): void {
    if (this.pos + 4 > this.cap) this.grow(4);
    this.pos = this.buf.writeFloatLE(v, this.pos);
  }

  /** A string's length and UTF-8 bytes (a lone surrogate as U+FFFD). */
  string(s: string): void {
    const n = s.length;
    if (this.pos + 5 + 3 * n > this.cap) this.grow(5 + 3 * n);
    // ASCII (the usual case) is copied here, behind a length of n; otherwise Buffer's encoder.
    if (n < 2048) {
      const buf = this.buf;
      const lenAt = this.pos;
      let pos = lenAt + (n < 0x80 ? 1 : 2);
      let k = 0;
      for (; k < n; k++) {
        const c = s.charCodeAt(k);
        if (c >= 0x80) break;
        buf[pos++] = c;
      }
      if (k === n) {
        if (n < 0x80) buf[lenAt] = n;
        else { buf[lenAt] = (n & 0x7f) | 0x80; buf[lenAt + 1] = n >>> 7; }
        this.pos = pos;
        return;
      }
    }
    const len = Buffer.byteLength(s, 'utf8');
    this.uint32(len);
    this.pos += this.buf.write(s, this.pos, len, 'utf8');
  }

  /** A bytes value: src[start, end) behind its length. */
  bytes(src: Uint8Array, start = 0, end = src.length): void {
    const n = end - start;
    if (this.pos + 5 + n > this.cap) this.grow(5 + n);
    this.pos = putVarint32(this.buf, this.pos, n);
    this.raw(src, start, end);
  }

  /** Bytes copied as they are (fields encoded elsewhere). */
  raw(src: Uint8Array, start = 0, end = src.length): void {
    const n = end - start;
    if (this.pos + n > this.cap) this.grow(n);
    if (n <= 64) {
      // Addresses and short fields: a loop costs less than a native copy.
      const buf = this.buf;
      let pos = this.pos;
      for (let k = start; k < end; k++) buf[pos++] = src[k];
      this.pos = pos;
    } else if (src instanceof Buffer) {
      this.pos += src.copy(this.buf, this.pos, start, end); // no view object
    } else {
      this.buf.set(start === 0 && end === src.length ? src : src.subarray(start, end), this.pos);
      this.pos += n;
    }
  }

  // --- Fields: the tag, then the value; left out when the value encodes as zero. ---

  uint32Field(tag: number, v: number): void {
    v >>>= 0;
    if (v === 0) return;
    if (this.pos + 10 > this.cap) this.grow(10);
    this.pos = putVarint32(this.buf, putVarint32(this.buf, this.pos, tag), v);
  }

  int32Field(tag: number, v: number): void {
    if ((v | 0) === 0) return;
    this.uint32(tag);
    this.int32(v);
  }

  uint64Field(tag: number, v: number): void {
    if (v === 0) return;
    if (this.pos + 15 > this.cap) this.grow(15);
    if (v >= 1 && v < TWO_32) {
      this.pos = putVarint32(this.buf, putVarint32(this.buf, this.pos, tag), v >>> 0);
      return;
    }
    splitNumber(v);
    if (splitLo === 0 && splitHi === 0) return;
    this.pos = putVarint64(this.buf, putVarint32(this.buf, this.pos, tag), splitLo, splitHi);
  }

  int64Field(tag: number, v: number): void {
    this.uint64Field(tag, v);
  }

  sint32Field(tag: number, v: number): void {
    if ((v | 0) === 0) return;
    this.uint32(tag);
    this.sint32(v);
  }

  sint64Field(tag: number, v: number): void {
    splitNumber(v);
    if (splitLo === 0 && splitHi === 0) return;
    this.uint32(tag);
    this.sint64(v);
  }

  boolField(tag: number, v: boolean): void {
    if (!v) return;
    if (this.pos + 6 > this.cap) this.grow(6);
    const pos = putVarint32(this.buf, this.pos, tag);
    this.buf[pos] = 1;
    this.pos = pos + 1;
  }

  fixed32Field(tag: number, v: number): void {
    if ((v >>> 0) === 0) return;
    this.uint32(tag);
    this.fixed32(v);
  }

  fixed64Field(tag: number, v: number): void {
    splitNumber(v);
    if (splitLo === 0 && splitHi === 0) return;
    this.uint32(tag);
    this.fixed64(v);
  }

  /** A double field, left out when +0 (a -0 is kept: its bytes are not zero). */
  doubleField(tag: number, v: number): void {
    if (v === 0 && 1 / v > 0) return;
    this.uint32(tag);
    this.double(v);
  }

  stringField(tag: number, s: string): void {
    if (s.length === 0) return;
    if (this.pos + 5 > this.cap) this.grow(5);
    this.pos = putVarint32(this.buf, this.pos, tag);
    this.string(s);
  }

  /** A bytes field of src[start, end), left out when empty. */
  bytesField(tag: number, src: Uint8Array, start = 0, end = src.length): void {
    const n = end - start;
    if (n === 0) return;
    if (this.pos + 10 + n > this.cap) this.grow(10 + n);
    const buf = this.buf;
    let pos = putVarint32(buf, putVarint32(buf, this.pos, tag), n);
    if (n <= 64) {
      for (let k = start; k < end; k++) buf[pos++] = src[k];
      this.pos = pos;
    } else {
      this.pos = pos;
      this.raw(src, start, end);
    }
  }

  // --- Nested messages and packed repeated fields. ---

  /**
   * Starts a length-delimited field (a nested message, packed values) of `tag`, reserving
   * `reserve` bytes for its length: reserve what the length usually takes, and `end` moves the
   * content only when it takes other than that. Ends with `end`; nests.
   */
  begin(tag: number, reserve = 1): void {
    if (this.depth === MAX_DEPTH) throw new Error(`ProtoWriter: more than ${MAX_DEPTH} nested messages`);
    if (this.pos + 5 + reserve > this.cap) this.grow(5 + reserve);
    this.pos = putVarint32(this.buf, this.pos, tag) + reserve;
    this.openStart[this.depth] = this.pos;
    this.openReserved[this.depth++] = reserve;
  }

  /** Ends the innermost field `begin` opened: writes its length in front of it. */
  end(): void {
    if (this.depth === 0) throw new Error('ProtoWriter.end without begin');
    const start = this.openStart[--this.depth];
    const reserved = this.openReserved[this.depth];
    const len = this.pos - start;
    const lenBytes = varintSize32(len);
    if (lenBytes !== reserved) {
      if (lenBytes > reserved) this.ensure(lenBytes - reserved);
      this.buf.copyWithin(start + lenBytes - reserved, start, this.pos);
      this.pos += lenBytes - reserved;
    }
    putVarint32(this.buf, start - reserved, len);
  }
}

/**
 * Reads one message body: varints bounds-checked against `end`, lengths checked to fit before
 * it. A nested message is read by moving `end` to its end and back. Malformed bytes throw
 * ProtoWireError; the reader never reads past `end` nor loops on bad input.
 */
export class ProtoReader {
  buf: Uint8Array = EMPTY;
  pos = 0;
  end = 0;
  /** The high 32 bits (unsigned) of the last varint read; `varint` returns the low ones. */
  hi = 0;

  /** Reads `body[start, end)` from its start. */
  reset(body: Uint8Array, start = 0, end = body.length): this {
    this.buf = body;
    this.pos = start;
    this.end = end;
    return this;
  }

  /**
   * A varint of up to 10 bytes: returns its low 32 bits (unsigned) and leaves the high ones in
   * `hi`. Bits past the 64th are dropped, as protobufjs drops them.
   */
  varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    // Ten bytes or more before the end: no varint can run past it, so no check per byte.
    if (this.end - pos < 10) return this.varintNearEnd();
    let b = buf[pos++];
    let lo = b & 0x7f;
    if (b >= 0x80) {
      b = buf[pos++]; lo |= (b & 0x7f) << 7;
      if (b >= 0x80) {
        b = buf[pos++]; lo |= (b & 0x7f) << 14;
        if (b >= 0x80) {
          b = buf[pos++]; lo |= (b & 0x7f) << 21;
          if (b >= 0x80) return this.varintHigh(buf, pos, lo);
        }
      }
    }
    this.pos = pos;
    this.hi = 0;
    return lo >>> 0;
  }

  /** Bytes 5 to 10 of a varint whose low 28 bits are `lo` (at least 6 bytes are left). */
  private varintHigh(buf: Uint8Array, pos: number, lo: number): number {
    // Byte 5 holds bits 28..34; bytes 6..10 the rest of the high word.
    let b = buf[pos++];
    lo |= (b & 0x0f) << 28;
    let hi = (b & 0x7f) >> 4;
    for (let shift = 3; b >= 0x80; shift += 7) {
      if (shift > 31) throw new ProtoWireError('varint longer than 10 bytes');
      b = buf[pos++];
      hi |= (b & 0x7f) << shift;
    }
    this.pos = pos;
    this.hi = hi >>> 0;
    return lo >>> 0;
  }

  /** `varint` within 10 bytes of the end: every byte checked against it. */
  private varintNearEnd(): number {
    const buf = this.buf;
    const end = this.end;
    let pos = this.pos;
    let lo = 0;
    let hi = 0;
    for (let k = 0; ; k++) {
      if (k === 10) throw new ProtoWireError('varint longer than 10 bytes');
      if (pos >= end) throw new ProtoWireError('truncated varint');
      const b = buf[pos++];
      if (k < 4) lo |= (b & 0x7f) << (7 * k);
      else if (k === 4) { lo |= (b & 0x0f) << 28; hi = (b & 0x7f) >> 4; }
      else hi |= (b & 0x7f) << (7 * k - 32);
      if (b < 0x80) break;
    }
    this.pos = pos;
    this.hi = hi >>> 0;
    return lo >>> 0;
  }

  /** A uint32 (also a tag): the varint's low 32 bits. */
  uint32(): number {
    const pos = this.pos;
    if (pos < this.end) {
      const b = this.buf[pos];
      if (b < 0x80) { this.pos = pos + 1; this.hi = 0; return b; }
    }
    return this.varint();
  }

  int32(): number {
    return this.uint32() | 0;
  }

  /** A uint64 as a number: exact below 2^53, the nearest double above. */
  uint64(): number {
    const lo = this.uint32();
    return this.hi === 0 ? lo : this.hi * TWO_32 + lo;
  }

  /** An int64 as a number (two's complement). */
  int64(): number {
    const lo = this.uint32();
    return int64Of(lo, this.hi);
  }

  sint32(): number {
    const v = this.uint32();
    return (v >>> 1) ^ -(v & 1);
  }

  sint64(): number {
    const lo = this.uint32();
    const hi = this.hi;
    // Zigzag on 64 bits: (n >>> 1) ^ -(n & 1).
    const mask = -(lo & 1);
    return int64Of((((lo >>> 1) | (hi << 31)) ^ mask) >>> 0, ((hi >>> 1) ^ mask) >>> 0);
  }

  /** A bool: the varint's low 32 bits not zero (protobufjs reads no more of it). */
  bool(): boolean {
    return this.uint32() !== 0;
  }

  fixed32(): number {
    this.need(4);
    const v = le32(this.buf, this.pos);
    this.pos += 4;
    return v;
  }

  sfixed32(): number {
    return this.fixed32() | 0;
  }

  fixed64(): number {
    this.need(8);
    const lo = le32(this.buf, this.pos), hi = le32(this.buf, this.pos + 4);
    this.pos += 8;
    return hi * TWO_32 + lo;
  }

  sfixed64(): number {
    this.need(8);
    const lo = le32(this.buf, this.pos), hi = le32(this.buf, this.pos + 4);
    this.pos += 8;
    return int64Of(lo, hi);
  }

  double(): number {
    this.need(8);
    for (let k = 0; k < 8; k++) FLOAT_BYTES[k] = this.buf[this.pos++];
    return FLOAT64[0];
  }

  float(): number {
    this.need(4);
    for (let k = 0; k < 4; k++) FLOAT_BYTES[k] = this.buf[this.pos++];
    return FLOAT32[0];
  }

  /** A length prefix whose bytes are all before `end`; `pos` is then at the first of them. */
  length(): number {
    const n = this.uint32();
    if (this.hi !== 0 || n > this.end - this.pos) throw new ProtoWireError('truncated message: length past the end');
    return n;
  }

  /** A length-delimited field: returns where its bytes start and moves past them (to `pos`). */
  delimited(): number {
    const n = this.length();
    const start = this.pos;
    this.pos = start + n;
    return start;
  }

  /** A bytes field, as a view of the body (no copy). */
  bytes(): Uint8Array {
    const start = this.delimited();
    return this.buf.subarray(start, this.pos);
  }

  /** A string field, decoded as Node decodes UTF-8 (an invalid sequence as U+FFFD), as protobufjs does. */
  string(): string {
    const start = this.delimited();
    return utf8Slice(this.buf, start, this.pos);
  }

  /**
   * Reads a batch body (`repeated X = 1`, its records length-delimited): calls `readItem` once
   * per record with the reader at its first byte and `end` at its last, so that no field can run
   * past it; other fields of the batch are skipped. Returns the number of records. Throws
   * ProtoWireError on malformed bytes, after the records before them.
   */
  eachItem(body: Uint8Array, readItem: (rd: ProtoReader) => void): number {
    this.reset(body);
    const end = body.length;
    let count = 0;
    while (this.pos < end) {
      const tag = this.uint32();
      if (tag !== BATCH_ITEM_TAG) { this.skip(tag & 7); continue; }
      const len = this.length();
      const itemEnd = this.pos + len;
      this.end = itemEnd;
      readItem(this);
      this.pos = itemEnd;
      this.end = end;
      count++;
    }
    return count;
  }

  /** Skips a field of wire type `wireType`. Groups (3, 4), which no flowtap message has, are an error. */
  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT: this.varint(); return;
      case WIRE_I64: this.need(8); this.pos += 8; return;
      case WIRE_LEN: this.delimited(); return;
      case WIRE_I32: this.need(4); this.pos += 4; return;
      default: throw new ProtoWireError(`unsupported wire type ${wireType}`);
    }
  }

  private need(n: number): void {
    if (n > this.end - this.pos) throw new ProtoWireError('truncated field');
  }
}

// Little-endian bytes of a float being read (the reader needs a little-endian host, as the columns do).
const FLOAT64 = new Float64Array(1);
const FLOAT32 = new Float32Array(FLOAT64.buffer, 0, 1);
const FLOAT_BYTES = new Uint8Array(FLOAT64.buffer);
if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new Error('lib/proto-wire needs a little-endian host');

function le32(buf: Uint8Array, p: number): number {
  return (buf[p] | (buf[p + 1] << 8) | (buf[p + 2] << 16) | (buf[p + 3] << 24)) >>> 0;
}

/** The signed 64-bit value of two unsigned halves, as protobufjs's LongBits.toNumber(false). */
function int64Of(lo: number, hi: number): number {
  if (hi >>> 31 === 0) return hi * TWO_32 + lo;
  lo = (~lo + 1) >>> 0;
  hi = ~hi >>> 0;
  if (lo === 0) hi = (hi + 1) >>> 0;
  return -(lo + hi * TWO_32);
}

function utf8Slice(buf: Uint8Array, start: number, end: number): string {
  if (start === end) return '';
  return Buffer.isBuffer(buf) ? buf.toString('utf8', start, end) : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('utf8', start, end);
}

/**
 * Decodes short strings (protocol names, close types, endpoints) through a small direct-mapped
 * cache keyed by their bytes, so that a repeated value is one string, not a new one per record.
 */
export class StringCache {
  static readonly SIZE = 1024;
  static readonly MAX_LEN = 64;
  private readonly keys: (Uint8Array | undefined)[] = new Array(StringCache.SIZE);
  private readonly values: string[] = new Array(StringCache.SIZE);
  // The last string returned: runs of the same value (a batch of one protocol) skip the hash.
  private lastKey: Uint8Array = EMPTY;
  private lastValue = '';

  get(buf: Uint8Array, start: number, end: number): string {
    const len = end - start;
    if (len === 0) return '';
    if (len > StringCache.MAX_LEN) return utf8Slice(buf, start, end);
    const last = this.lastKey;
    if (last.length === len) {
      let i = 0;
      while (i < len && last[i] === buf[start + i]) i++;
      if (i === len) return this.lastValue;
    }
    let h = len;
    for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i], 16777619);
    const slot = (h >>> 0) & (StringCache.SIZE - 1);
    const k = this.keys[slot];
    if (k !== undefined && k.length === len) {
      let same = true;
      for (let i = 0; i < len; i++) if (k[i] !== buf[start + i]) { same = false; break; }
      if (same) {
        this.lastKey = k;
        return (this.lastValue = this.values[slot]);
      }
    }
    const s = utf8Slice(buf, start, end);
    const key = new Uint8Array(len); // a copy: the body it came from is reused
    for (let i = 0; i < len; i++) key[i] = buf[start + i];
    this.keys[slot] = key;
    this.values[slot] = s;
    this.lastKey = key;
    this.lastValue = s;
    return s;
  }

  /** A string field read from `rd` through the cache. */
  read(rd: ProtoReader): string {
    const start = rd.delimited();
    return this.get(rd.buf, start, rd.pos);
  }
}
