// A minimal BSON reader (bsonspec.org): walks the top-level elements of one document, bounds-
// checked against both the document's own length and the bytes given (a capture may cut it).
// It allocates nothing per element: callers read the current element's fields off the reader.

export const BSON_DOUBLE = 0x01, BSON_STRING = 0x02, BSON_DOC = 0x03, BSON_ARRAY = 0x04;
export const BSON_BOOL = 0x08, BSON_INT32 = 0x10, BSON_INT64 = 0x12;

export class BsonReader {
  private d: Buffer = Buffer.alloc(0);
  private pos = 0;
  private end = 0;
  /** The current element: its type, name [nameStart, nameEnd) and value [valueStart, valueEnd). */
  type = 0;
  nameStart = 0;
  nameEnd = 0;
  valueStart = 0;
  valueEnd = 0;

  /** Starts at the document at `start`; false if no document header is there. */
  open(d: Buffer, start: number, end: number): boolean {
    if (start < 0 || start + 5 > end) return false;
    const len = d.readInt32LE(start);
    if (len < 5) return false;
    this.d = d;
    this.pos = start + 4;
    // A document longer than the bytes given is read as far as it goes (its last element, if
    // cut, is not read). `end` bounds every read, the terminating 0 included.
    this.end = Math.min(end, start + len);
    return true;
  }

  /** Moves to the next element; false at the end of the document or of the bytes. */
  next(): boolean {
    const d = this.d;
    if (this.pos >= this.end) return false;
    const type = d[this.pos];
    if (type === 0) return false;
    const nameStart = this.pos + 1;
    const nul = d.indexOf(0, nameStart);
    if (nul < 0 || nul >= this.end) return false;
    const v = nul + 1;
    const size = this.valueSize(type, v);
    if (size < 0 || v + size > this.end) return false;
    this.type = type;
    this.nameStart = nameStart;
    this.nameEnd = nul;
    this.valueStart = v;
    this.valueEnd = v + size;
    this.pos = v + size;
    return true;
  }

  /** Is the current element's name `lit` (ASCII)? */
  nameIs(lit: string): boolean {
    if (this.nameEnd - this.nameStart !== lit.length) return false;
    for (let i = 0; i < lit.length; i++) if (this.d[this.nameStart + i] !== lit.charCodeAt(i)) return false;
    return true;
  }

  name(): string { return this.d.toString('utf8', this.nameStart, this.nameEnd); }

  /** A string element's text ('' for other types). */
  string(): string {
    if (this.type !== BSON_STRING || this.valueEnd - this.valueStart < 5) return '';
    const n = this.d.readInt32LE(this.valueStart);
    const s = this.valueStart + 4;
    const e = Math.min(s + n - 1, this.valueEnd);
    return e > s ? this.d.toString('utf8', s, e) : '';
  }

  /** A numeric or boolean element's value (NaN for other types). */
  number(): number {
    const d = this.d, v = this.valueStart;
    switch (this.type) {
      case BSON_DOUBLE: return this.valueEnd - v >= 8 ? d.readDoubleLE(v) : NaN;
      case BSON_INT32: return this.valueEnd - v >= 4 ? d.readInt32LE(v) : NaN;
      case BSON_INT64: return this.valueEnd - v >= 8 ? Number(d.readBigInt64LE(v)) : NaN;
      case BSON_BOOL: return this.valueEnd - v >= 1 ? (d[v] === 0 ? 0 : 1) : NaN;
      default: return NaN;
    }
  }

  /** Size of a value of `type` at `v`, -1 if unknown or unreadable. */
  private valueSize(type: number, v: number): number {
    const d = this.d, end = this.end;
    const n4 = v + 4 <= end ? d.readInt32LE(v) : -1;
    switch (type) {
      case 0x01: case 0x09: case 0x11: case 0x12: return 8; // double, datetime, timestamp, int64
      case 0x02: case 0x0d: case 0x0e: { const n = n4; return n < 1 ? -1 : 4 + n; } // string, js, symbol
      case 0x03: case 0x04: case 0x0f: { const n = n4; return n < 5 ? -1 : n; } // doc, array, code w/ scope
      case 0x05: { const n = n4; return n < 0 ? -1 : 5 + n; } // binary
      case 0x06: case 0x0a: case 0x7f: case 0xff: return 0; // undefined, null, max/min key
      case 0x07: return 12; // ObjectId
      case 0x08: return 1;
      case 0x0b: { // regex: two cstrings
        const a = d.indexOf(0, v);
        if (a < 0 || a >= end) return -1;
        const b = d.indexOf(0, a + 1);
        return b < 0 || b >= end ? -1 : b + 1 - v;
      }
      case 0x0c: { const n = n4; return n < 1 ? -1 : 4 + n + 12; } // DBPointer
      case 0x10: return 4;
      case 0x13: return 16; // decimal128
      default: return -1;
    }
  }
}
