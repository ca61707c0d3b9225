// HPACK (RFC 7541) decoding for the HTTP/2 parser: static table, Huffman-coded strings and one
// dynamic table per direction. Built for capture analysis, where the start of a connection may be
// missing: entries inserted before the capture began are unknown, so a reference to them cannot be
// resolved. Such fields are skipped (and counted) while the rest of the block is still read.

/** RFC 7541 Appendix A. Index 0 is unused. */
const STATIC_TABLE: readonly (readonly [string, string])[] = [
  ['', ''], [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'],
  [':path', '/index.html'], [':scheme', 'http'], [':scheme', 'https'], [':status', '200'],
  [':status', '204'], [':status', '206'], [':status', '304'], [':status', '400'], [':status', '404'],
  [':status', '500'], ['accept-charset', ''], ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''], ['accept-ranges', ''], ['accept', ''], ['access-control-allow-origin', ''],
  ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''], ['content-disposition', ''],
  ['content-encoding', ''], ['content-language', ''], ['content-length', ''], ['content-location', ''],
  ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''], ['expect', ''],
  ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''],
  ['link', ''], ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''],
  ['proxy-authorization', ''], ['range', ''], ['referer', ''], ['refresh', ''], ['retry-after', ''],
  ['server', ''], ['set-cookie', ''], ['strict-transport-security', ''], ['transfer-encoding', ''],
  ['user-agent', ''], ['vary', ''], ['via', ''], ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC_TABLE.length - 1;

// The Huffman code is canonical (codes of one length are consecutive, in symbol order, shorter
// lengths first), so the code length of each of the 257 symbols (256 = EOS) defines it. Lengths
// as characters '0' + length. They were measured from Node's HPACK encoder for every byte it
// sends (tab, 0x20-0x7e, 0x80-0xff) and complete a prefix code (Kraft sum exactly 1) with the
// RFC's lengths for the control bytes; test/l7/http2.test.ts checks them against Node again.
const HUFFMAN_LENGTHS =
  '=GLLLLLLLHNLLNLLLLLLLLNLLLLLLLLL6::<=68;::8;8666555666666678?6<:=67777777777777777777777878=C=>6?56565666577666567655677777?;>=LDFDDFFFGFGGGGGHGHHFGHGGGGEFGFGGHFEDFFGGEGFFHEFGGEEFEGFGGDFFFGFFGJJDCFGFIJJJKKJHICEJKKJKHEEJJLKKKDHDEFEEGFFIIHHJGJKJJKKKKKLKKKKKJN';
const MAX_CODE_LEN = 30;
/** Per length: the first canonical code, how many codes, where its symbols start in SYMBOLS. */
const FIRST_CODE = new Int32Array(MAX_CODE_LEN + 2);
const CODE_COUNT = new Int32Array(MAX_CODE_LEN + 2);
const SYMBOL_START = new Int32Array(MAX_CODE_LEN + 2);
const SYMBOLS = new Uint16Array(257);
(() => {
  const lens = new Int32Array(257);
  for (let s = 0; s < 257; s++) { lens[s] = HUFFMAN_LENGTHS.charCodeAt(s) - 48; CODE_COUNT[lens[s]]++; }
  let code = 0, at = 0;
  for (let l = 1; l <= MAX_CODE_LEN; l++) {
    FIRST_CODE[l] = code;
    SYMBOL_START[l] = at;
    for (let s = 0; s < 257; s++) if (lens[s] === l) SYMBOLS[at++] = s;
    code = (code + CODE_COUNT[l]) << 1;
  }
})();

let scratch = Buffer.allocUnsafe(4096);

/** Huffman-decodes d[a, b) into a latin1 string; null if the code is invalid (EOS, bad padding). */
export function huffmanDecode(d: Buffer, a: number, b: number): string | null {
  // Each symbol takes at least 5 bits: the output is at most 8/5 of the input.
  const need = Math.ceil((b - a) * 8 / 5);
  if (scratch.length < need) scratch = Buffer.allocUnsafe(need * 2);
  let out = 0, code = 0, len = 0;
  for (let i = a; i < b; i++) {
    const byte = d[i];
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      const idx = code - FIRST_CODE[len];
      if (idx >= 0 && idx < CODE_COUNT[len]) {
        const sym = SYMBOLS[SYMBOL_START[len] + idx];
        if (sym === 256) return null;
        scratch[out++] = sym;
        code = 0; len = 0;
      } else if (len >= MAX_CODE_LEN) return null;
    }
  }
  // Padding: fewer than 8 bits, all ones (the start of EOS).
  if (len > 7 || code !== (1 << len) - 1) return null;
  return scratch.toString('latin1', 0, out);
}

/** A dynamic-table entry whose name was never seen (inserted with an unknown name index). */
export const UNKNOWN_NAME = '\u0000unknown';

export const HPACK_OK = 0;
/** Some fields referenced entries inserted before the capture began: skipped. */
export const HPACK_UNKNOWN_REFERENCE = 1;
/** Not valid HPACK (bad index, bad Huffman, cut short): the table can no longer be trusted. */
export const HPACK_ERROR = 2;

export type HeaderFieldSink = (name: string, value: string) => void;

/** One direction's decoder: its dynamic table and whether it is known since the connection start. */
export class HpackDecoder {
  /** Oldest first; index 62 is the last element. */
  private names: string[] = [];
  private values: string[] = [];
  private size = 0;
  private maxSize = 4096;
  /** Entries were (or may have been) inserted that this decoder never saw. */
  hasUnknown = true;
  /** Unknown entries count as this many bytes: tables of unknown size keep what they can. */
  static readonly UNKNOWN_MAX_SIZE = 1 << 16;

  constructor() { this.forget(); }

  /** The connection starts here: the table is empty and fully known. */
  startFresh(): void {
    this.names.length = 0; this.values.length = 0; this.size = 0; this.maxSize = 4096; this.hasUnknown = false;
  }

  /** Bytes of header blocks were lost: what the table holds is unknown from now on. */
  forget(): void {
    this.names.length = 0; this.values.length = 0; this.size = 0;
    this.maxSize = HpackDecoder.UNKNOWN_MAX_SIZE; this.hasUnknown = true;
  }

  get entryCount(): number { return this.names.length; }

  /**
   * Decodes one complete header block d[a, b), calling `sink` per resolved field. `complete`
   * false: the block was cut by the capture; the fields read are reported and the table is
   * forgotten afterwards (insertions in the missing part are unknown).
   */
  decode(d: Buffer, a: number, b: number, complete: boolean, sink: HeaderFieldSink): number {
    let result = HPACK_OK;
    let p = a;
    while (p < b) {
      const x = d[p];
      let nameIdx: number, indexing: boolean;
      if (x & 0x80) {
        // Indexed field.
        const r = readInt(d, p, b, 7);
        if (r < 0) { result = HPACK_ERROR; break; }
        p = intEnd;
        if (r === 0) { result = HPACK_ERROR; break; }
        const st = this.resolve(r, sink, true);
        if (st !== HPACK_OK) { result = Math.max(result, st); if (st === HPACK_ERROR) break; }
        continue;
      }
      if ((x & 0xe0) === 0x20) {
        // Dynamic table size update.
        const r = readInt(d, p, b, 5);
        if (r < 0 || r > HpackDecoder.UNKNOWN_MAX_SIZE) { result = HPACK_ERROR; break; }
        p = intEnd;
        this.maxSize = r;
        this.evict(0);
        continue;
      }
      indexing = (x & 0x40) !== 0;
      nameIdx = readInt(d, p, b, indexing ? 6 : 4);
      if (nameIdx < 0) { result = HPACK_ERROR; break; }
      p = intEnd;
      let name: string | null;
      if (nameIdx === 0) {
        name = readString(d, p, b);
        if (name === null) { result = HPACK_ERROR; break; }
        p = intEnd;
      } else {
        name = this.nameAt(nameIdx);
        if (name === null) { result = HPACK_ERROR; break; }
      }
      const value = readString(d, p, b);
      if (value === null) { result = HPACK_ERROR; break; }
      p = intEnd;
      if (name === UNKNOWN_NAME) result = Math.max(result, HPACK_UNKNOWN_REFERENCE);
      else sink(name, value);
      if (indexing) this.insert(name, value);
    }
    if (result === HPACK_ERROR || !complete) this.forget();
    return result;
  }

  /** Name of table entry `i`, UNKNOWN_NAME if inserted before the capture, null if impossible. */
  private nameAt(i: number): string | null {
    if (i <= STATIC_COUNT) return STATIC_TABLE[i][0];
    const k = this.names.length - 1 - (i - STATIC_COUNT - 1);
    if (k >= 0) return this.names[k];
    return this.hasUnknown ? UNKNOWN_NAME : null;
  }

  private resolve(i: number, sink: HeaderFieldSink, _indexed: boolean): number {
    if (i <= STATIC_COUNT) { sink(STATIC_TABLE[i][0], STATIC_TABLE[i][1]); return HPACK_OK; }
    const k = this.names.length - 1 - (i - STATIC_COUNT - 1);
    if (k < 0) return this.hasUnknown ? HPACK_UNKNOWN_REFERENCE : HPACK_ERROR;
    if (this.names[k] === UNKNOWN_NAME) return HPACK_UNKNOWN_REFERENCE;
    sink(this.names[k], this.values[k]);
    return HPACK_OK;
  }

  private insert(name: string, value: string): void {
    const n = name.length + value.length + 32;
    this.evict(n);
    if (n > this.maxSize) return; // larger than the table: it empties it and is not kept
    this.names.push(name);
    this.values.push(value);
    this.size += n;
  }

  /** Makes room for `extra` bytes. */
  private evict(extra: number): void {
    let drop = 0;
    let size = this.size;
    while (drop < this.names.length && size + extra > this.maxSize) {
      size -= this.names[drop].length + this.values[drop].length + 32;
      drop++;
    }
    if (drop > 0) { this.names.splice(0, drop); this.values.splice(0, drop); }
    this.size = size;
  }
}

/** Where the last readInt/readString ended (avoids allocating a result pair). */
let intEnd = 0;

/** HPACK integer with an n-bit prefix at d[p]; -1 if cut short or too large. */
function readInt(d: Buffer, p: number, b: number, n: number): number {
  const max = (1 << n) - 1;
  let v = d[p] & max;
  p++;
  if (v < max) { intEnd = p; return v; }
  let shift = 0;
  for (;;) {
    if (p >= b || shift > 21) return -1;
    const x = d[p++];
    v += (x & 0x7f) * (1 << shift);
    shift += 7;
    if ((x & 0x80) === 0) break;
  }
  intEnd = p;
  return v;
}

/** String literal at d[p] (H bit, length, bytes); null if cut short or a bad Huffman code. */
function readString(d: Buffer, p: number, b: number): string | null {
  if (p >= b) return null;
  const huffman = (d[p] & 0x80) !== 0;
  const n = readInt(d, p, b, 7);
  if (n < 0) return null;
  const s = intEnd;
  if (s + n > b) return null;
  const v = huffman ? huffmanDecode(d, s, s + n) : d.toString('latin1', s, s + n);
  intEnd = s + n;
  return v;
}
