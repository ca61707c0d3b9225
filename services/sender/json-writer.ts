// Writes JSON text into a reused byte buffer: numbers, booleans and strings exactly as
// JSON.stringify prints them, strings taken straight from UTF-8 bytes (a protobuf body) when
// they need no escaping. Finished text is handed out with take() as a view that is never
// written again, so it can go to a file stream without a copy.
export class JsonWriter {
  /** The current chunk; printers that reserve() room write into it directly from `pos` on. */
  buf: Buffer;
  /** `buf` as a DataView: constant text goes in four bytes at a time. */
  view: DataView;
  pos = 0;
  private start = 0;
  /** lend() calls on the current chunk not yet given back. */
  private lentFromCurrent = 0;
  /** take() handed out text of the current chunk. */
  private currentKept = false;
  /** Chunks left behind with text still lent out, and how many lends are outstanding. */
  private readonly retired = new Map<ArrayBufferLike, { chunk: Buffer; lent: number }>();
  /** Chunks none of whose text is held any more, ready for reuse. */
  private readonly spare: Buffer[] = [];

  constructor(private readonly chunkBytes = 4 << 20) {
    this.buf = Buffer.allocUnsafe(chunkBytes);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  /** Bytes written since the last take(). */
  get pending(): number {
    return this.pos - this.start;
  }

  /** The text written since the last take(); the caller may keep it. */
  take(): Buffer {
    this.currentKept = true;
    return this.cut();
  }

  /**
   * Like take(), for a caller that calls giveBack() with the text once done with it (a file
   * stream's write callback): a chunk whose text was all lent and given back is reused instead
   * of a fresh 4 MB allocation, which spares the collector ~75 of them per 300 MB of lines.
   */
  lend(): Buffer {
    this.lentFromCurrent++;
    return this.cut();
  }

  giveBack(text: Buffer): void {
    if (text.buffer === this.buf.buffer) {
      this.lentFromCurrent--;
      return;
    }
    const retired = this.retired.get(text.buffer);
    if (!retired || --retired.lent > 0) return;
    this.retired.delete(text.buffer);
    this.keepSpare(retired.chunk);
  }

  private cut(): Buffer {
    const out = this.buf.subarray(this.start, this.pos);
    this.start = this.pos;
    return out;
  }

  private keepSpare(chunk: Buffer): void {
    if (chunk.length === this.chunkBytes && this.spare.length < MAX_SPARE_CHUNKS) this.spare.push(chunk);
  }

  /** Makes room for n more bytes and returns the buffer to write them into, from `pos`. */
  reserve(n: number): Buffer {
    this.ensure(n);
    return this.buf;
  }

  /** Makes room for n more bytes: when full, a spare chunk or a fresh one (the old one may still be in a stream's queue). */
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const pending = this.pos - this.start;
    const size = Math.max(this.chunkBytes, 2 * (pending + n));
    const next = size === this.chunkBytes && this.spare.length > 0 ? this.spare.pop()! : Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, this.start, this.pos);
    // Text lent from the chunk left behind is still queued: the chunk is reused once it is back.
    // Text take() handed out may be held for ever: such a chunk is left to the GC.
    if (!this.currentKept) {
      if (this.lentFromCurrent > 0) this.retired.set(this.buf.buffer, { chunk: this.buf, lent: this.lentFromCurrent });
      else this.keepSpare(this.buf);
    }
    this.lentFromCurrent = 0;
    this.currentKept = false;
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.length);
    this.start = 0;
    this.pos = pending;
  }

  /** Raw bytes (JSON punctuation and keys). */
  bytes(src: Uint8Array): void {
    const n = src.length;
    this.ensure(n);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < n; i++) buf[p++] = src[i];
    this.pos = p;
  }

  byte(b: number): void {
    this.ensure(1);
    this.buf[this.pos++] = b;
  }

  /** A number as JSON.stringify prints it; NaN (an absent optional field) as null. */
  number(v: number): void {
    this.ensure(MAX_NUMBER_BYTES);
    this.pos = printNumber(this.buf, this.pos, v);
  }

  boolean(v: boolean): void {
    this.bytes(v ? TRUE : FALSE);
  }

  /**
   * The UTF-8 bytes src[start, end) as a JSON string. Printable ASCII without `"` or `\` is
   * copied; anything else is decoded as protobufjs decodes it and escaped by JSON.stringify.
   */
  utf8String(src: Buffer, start: number, end: number): void {
    this.ensure(end - start + 2);
    const buf = this.buf;
    let p = this.pos;
    buf[p++] = 34;
    for (let i = start; i < end; i++) {
      const c = src[i];
      if (c < 0x20 || c === 0x22 || c === 0x5c || c >= 0x80) {
        this.string(src.toString('utf8', start, end));
        return;
      }
      buf[p++] = c;
    }
    buf[p++] = 34;
    this.pos = p;
  }

  /** A JS string as JSON.stringify prints it. */
  string(s: string): void {
    this.text(JSON.stringify(s));
  }

  /** Text that is JSON already (e.g. from JSON.stringify). */
  text(json: string): void {
    // A UTF-16 unit takes at most 3 bytes of UTF-8.
    this.ensure(3 * json.length);
    this.pos += this.buf.write(json, this.pos, 'utf8');
  }
}

/** Chunks kept for reuse; more are only needed while a slow disk queues text, and then go to the GC. */
const MAX_SPARE_CHUNKS = 4;

const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');

/** The longest text JSON.stringify gives for a number ("-1.7976931348623157e+308"). */
export const MAX_NUMBER_BYTES = 24;

/** "00" to "99": integers are printed two digits at a time. */
const DIGIT_PAIRS = Buffer.from(Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0')).join(''), 'latin1');

/** Prints 0 <= v < 2^31 at buf[p]; with `width`, zero-padded to that many digits. Returns the end. */
function printSmall(buf: Buffer, p: number, v: number, width: number): number {
  let digits = 1;
  for (let t = 10; digits < 10 && v >= t; t *= 10) digits++;
  if (width > digits) digits = width;
  let q = p + digits;
  const end = q;
  while (v >= 100) {
    const pair = (v % 100) << 1;
    v = (v / 100) | 0;
    buf[--q] = DIGIT_PAIRS[pair + 1];
    buf[--q] = DIGIT_PAIRS[pair];
  }
  if (v >= 10) {
    buf[--q] = DIGIT_PAIRS[(v << 1) + 1];
    buf[--q] = DIGIT_PAIRS[v << 1];
  } else {
    buf[--q] = 48 + v;
  }
  while (q > p) buf[--q] = 48; // zero padding
  return end;
}

/**
 * Prints v as JSON.stringify does at buf[p] (room for MAX_NUMBER_BYTES needed); NaN as null.
 * Returns the end. Integers below 2^53 (every decoded field) are printed without a string.
 */
export function printNumber(buf: Buffer, p: number, v: number): number {
  if (v === 0) {
    buf[p] = 48;
    return p + 1;
  }
  if (!Number.isSafeInteger(v)) return p + buf.write(JSON.stringify(v), p, 'latin1');
  if (v < 0) {
    buf[p++] = 45; // -
    v = -v;
  }
  if (v < 2147483648) return printSmall(buf, p, v, 0);
  // Up to 2^53: the high part (< 2^31) and nine low digits, each in 32-bit arithmetic.
  const high = Math.floor(v / 1e9);
  p = printSmall(buf, p, high, 0);
  return printSmall(buf, p, v - high * 1e9, 9);
}
