// MetaPacket batches stored by column: one typed array per field, reused from batch to batch,
// so that decoding a frame or reading a packet never allocates. The wire form is the
// PacketBatch message in proto/flowtap.proto (one `bytes` field per column).
import { flowtap } from './proto';
import { ProtoReader, ProtoWireError, ProtoWriter, tagOf, varintSize32, WIRE_LEN, WIRE_VARINT } from './proto-wire';

export const PACKET_BATCH_DEFAULT_CAPACITY = 1024;
export const DEFAULT_PAYLOAD_CUT = 1024;

/** TCP flag bits as they sit in the TCP header's 13th byte. */
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

export const WSCALE_ABSENT = 255;

/** PacketBatch field numbers (proto/flowtap.proto). */
const FIELD_COUNT = 1;
const FIELD_PAYLOAD_DATA = 19;
const FIELD_TCP_WSCALE = 22;
const MAX_FIELD = 24;

/** One fixed-width column of the wire form: its field number and its bytes, row after row. */
interface WireColumn {
  readonly field: number;
  readonly name: string;
  /** Bytes per row. */
  readonly width: number;
  /** A byte view over the whole column (all `capacity` rows). */
  readonly bytes: Uint8Array;
}

// The columns go on the wire as the typed arrays hold them, so the host must be little-endian.
if (new Uint8Array(Uint16Array.of(1).buffer)[0] !== 1) throw new Error('PacketBatch needs a little-endian host');

export class PacketBatch {
  count = 0;
  readonly capacity: number;
  readonly timestampUs: Float64Array;
  /** 16 bytes per packet; IPv4 is v4-mapped. `ipSrc32`/`ipDst32` view the same memory as 4 words. */
  readonly ipSrc: Uint8Array;
  readonly ipDst: Uint8Array;
  readonly ipSrc32: Uint32Array;
  readonly ipDst32: Uint32Array;
  readonly portSrc: Uint16Array;
  readonly portDst: Uint16Array;
  readonly protocol: Uint8Array;
  readonly ipVersion: Uint8Array;
  readonly tcpFlags: Uint8Array;
  readonly tcpSeq: Uint32Array;
  readonly tcpAck: Uint32Array;
  readonly tcpWindow: Uint16Array;
  readonly vlan: Uint16Array;
  readonly frameLen: Uint32Array;
  readonly l3Len: Uint32Array;
  readonly l4PayloadLen: Uint32Array;
  readonly payloadOffset: Uint32Array;
  readonly payloadCap: Uint16Array;
  readonly tunnelType: Uint8Array;
  readonly tunnelId: Uint32Array;
  readonly tcpWscale: Uint8Array;
  readonly ifindex: Uint32Array;
  readonly icmpTypeCode: Uint16Array;
  /** Captured payload bytes of all packets, back to back. */
  payloadData: Buffer;
  payloadUsed = 0;
  /** The fixed-width columns in field-number order (payload_data, field 19, is not among them). */
  private readonly wireColumns: readonly WireColumn[];
  /**
   * Rows at or past this index hold their initial values (zero; tcpWscale absent). Rows below it
   * may hold an earlier packet's values: `reset` clears them in bulk, `begin` clears one that a
   * discarded decode left behind, so a row costs no clearing in the common case.
   */
  private dirtyRows = 0;
  // Where each field was found by the last `decode` (last occurrence wins, as in protobuf).
  private readonly fieldStart = new Int32Array(MAX_FIELD + 1);
  private readonly fieldLength = new Int32Array(MAX_FIELD + 1);
  private readonly reader = new ProtoReader();
  private readonly writer = new ProtoWriter(16);

  constructor(capacity = PACKET_BATCH_DEFAULT_CAPACITY, readonly payloadCut = DEFAULT_PAYLOAD_CUT) {
    this.capacity = capacity;
    this.timestampUs = new Float64Array(capacity);
    this.ipSrc32 = new Uint32Array(capacity * 4);
    this.ipDst32 = new Uint32Array(capacity * 4);
    this.ipSrc = new Uint8Array(this.ipSrc32.buffer);
    this.ipDst = new Uint8Array(this.ipDst32.buffer);
    this.portSrc = new Uint16Array(capacity);
    this.portDst = new Uint16Array(capacity);
    this.protocol = new Uint8Array(capacity);
    this.ipVersion = new Uint8Array(capacity);
    this.tcpFlags = new Uint8Array(capacity);
    this.tcpSeq = new Uint32Array(capacity);
    this.tcpAck = new Uint32Array(capacity);
    this.tcpWindow = new Uint16Array(capacity);
    this.vlan = new Uint16Array(capacity);
    this.frameLen = new Uint32Array(capacity);
    this.l3Len = new Uint32Array(capacity);
    this.l4PayloadLen = new Uint32Array(capacity);
    this.payloadOffset = new Uint32Array(capacity);
    this.payloadCap = new Uint16Array(capacity);
    this.tunnelType = new Uint8Array(capacity);
    this.tunnelId = new Uint32Array(capacity);
    this.tcpWscale = new Uint8Array(capacity).fill(WSCALE_ABSENT);
    this.ifindex = new Uint32Array(capacity);
    this.icmpTypeCode = new Uint16Array(capacity);
    this.payloadData = Buffer.allocUnsafe(Math.max(capacity * Math.min(payloadCut, 256), payloadCut * 4));
    const column = (field: number, name: string, a: ArrayBufferView, width: number): WireColumn =>
      ({ field, name, width, bytes: new Uint8Array(a.buffer, a.byteOffset, a.byteLength) });
    this.wireColumns = [
      column(2, 'timestamp_us', this.timestampUs, 8),
      column(3, 'ip_src', this.ipSrc, 16),
      column(4, 'ip_dst', this.ipDst, 16),
      column(5, 'port_src', this.portSrc, 2),
      column(6, 'port_dst', this.portDst, 2),
      column(7, 'protocol', this.protocol, 1),
      column(8, 'ip_version', this.ipVersion, 1),
      column(9, 'tcp_flags', this.tcpFlags, 1),
      column(10, 'tcp_seq', this.tcpSeq, 4),
      column(11, 'tcp_ack', this.tcpAck, 4),
      column(12, 'tcp_window', this.tcpWindow, 2),
      column(13, 'vlan', this.vlan, 2),
      column(14, 'frame_len', this.frameLen, 4),
      column(15, 'l3_len', this.l3Len, 4),
      column(16, 'l4_payload_len', this.l4PayloadLen, 4),
      column(17, 'payload_offset', this.payloadOffset, 4),
      column(18, 'payload_cap', this.payloadCap, 2),
      column(20, 'tunnel_type', this.tunnelType, 1),
      column(21, 'tunnel_id', this.tunnelId, 4),
      column(22, 'tcp_wscale', this.tcpWscale, 1),
      column(23, 'ifindex', this.ifindex, 4),
      column(24, 'icmp_type_code', this.icmpTypeCode, 2),
    ];
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  /** Empties the batch and clears the rows it used, one fill per column. */
  reset(): void {
    const rows = this.dirtyRows;
    if (rows > 0) {
      for (const c of this.wireColumns) c.bytes.fill(c.field === FIELD_TCP_WSCALE ? WSCALE_ABSENT : 0, 0, rows * c.width);
    }
    this.dirtyRows = 0;
    this.count = 0;
    this.payloadUsed = 0;
  }

  /**
   * Claims the next row and returns its index; its per-packet fields hold their initial values
   * (zero, tcpWscale absent). The decoder then fills the columns at that index and calls
   * `commit` (or simply does not, to discard it).
   */
  begin(): number {
    const i = this.count;
    if (i < this.dirtyRows) this.clearRow(i);
    else this.dirtyRows = i + 1;
    this.payloadOffset[i] = this.payloadUsed;
    return i;
  }

  /** Row `i` back to its initial values (after a discarded decode, or over a decoded batch). */
  private clearRow(i: number): void {
    this.timestampUs[i] = 0;
    this.ipSrc32.fill(0, i * 4, i * 4 + 4);
    this.ipDst32.fill(0, i * 4, i * 4 + 4);
    this.portSrc[i] = 0;
    this.portDst[i] = 0;
    this.protocol[i] = 0;
    this.ipVersion[i] = 0;
    this.tcpFlags[i] = 0;
    this.tcpSeq[i] = 0;
    this.tcpAck[i] = 0;
    this.tcpWindow[i] = 0;
    this.vlan[i] = 0;
    this.frameLen[i] = 0;
    this.l3Len[i] = 0;
    this.l4PayloadLen[i] = 0;
    this.payloadOffset[i] = 0;
    this.payloadCap[i] = 0;
    this.tunnelType[i] = 0;
    this.tunnelId[i] = 0;
    this.tcpWscale[i] = WSCALE_ABSENT;
    this.ifindex[i] = 0;
    this.icmpTypeCode[i] = 0;
  }

  /** Copies up to `payloadCut` bytes of payload for row `i` (call once per row, before commit). */
  setPayload(i: number, src: Uint8Array, start: number, end: number): void {
    const n = Math.min(end - start, this.payloadCut);
    if (n <= 0) return;
    if (this.payloadUsed + n > this.payloadData.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.payloadData.length * 2, this.payloadUsed + n));
      this.payloadData.copy(grown, 0, 0, this.payloadUsed);
      this.payloadData = grown;
    }
    this.payloadOffset[i] = this.payloadUsed;
    this.payloadCap[i] = n;
    this.payloadData.set(src.subarray(start, start + n), this.payloadUsed);
    this.payloadUsed += n;
  }

  commit(): void {
    this.count++;
  }

  /** The captured payload of row `i`, as a view (valid until the batch is reset). */
  payload(i: number): Buffer {
    const off = this.payloadOffset[i];
    return this.payloadData.subarray(off, off + this.payloadCap[i]);
  }

  /** Writes an IPv4 address (4 bytes at `src[off]`) into row `i` as v4-mapped. */
  static setIpv4(dst: Uint8Array, i: number, src: Uint8Array, off: number): void {
    const o = i * 16;
    dst[o + 10] = 0xff;
    dst[o + 11] = 0xff;
    dst[o + 12] = src[off];
    dst[o + 13] = src[off + 1];
    dst[o + 14] = src[off + 2];
    dst[o + 15] = src[off + 3];
  }

  static setIpv6(dst: Uint8Array, i: number, src: Uint8Array, off: number): void {
    dst.set(src.subarray(off, off + 16), i * 16);
  }

  /** The batch as a protobufjs message whose columns are views of this batch (for tests and tools). */
  toMessage(): flowtap.IPacketBatch {
    const n = this.count;
    const view = (a: ArrayBufferView, width: number) => Buffer.from(a.buffer, a.byteOffset, n * width);
    return {
      count: n,
      timestamp_us: view(this.timestampUs, 8),
      ip_src: view(this.ipSrc, 16),
      ip_dst: view(this.ipDst, 16),
      port_src: view(this.portSrc, 2),
      port_dst: view(this.portDst, 2),
      protocol: view(this.protocol, 1),
      ip_version: view(this.ipVersion, 1),
      tcp_flags: view(this.tcpFlags, 1),
      tcp_seq: view(this.tcpSeq, 4),
      tcp_ack: view(this.tcpAck, 4),
      tcp_window: view(this.tcpWindow, 2),
      vlan: view(this.vlan, 2),
      frame_len: view(this.frameLen, 4),
      l3_len: view(this.l3Len, 4),
      l4_payload_len: view(this.l4PayloadLen, 4),
      payload_offset: view(this.payloadOffset, 4),
      payload_cap: view(this.payloadCap, 2),
      payload_data: this.payloadData.subarray(0, this.payloadUsed),
      tunnel_type: view(this.tunnelType, 1),
      tunnel_id: view(this.tunnelId, 4),
      tcp_wscale: view(this.tcpWscale, 1),
      ifindex: view(this.ifindex, 4),
      icmp_type_code: view(this.icmpTypeCode, 2),
    };
  }

  /**
   * The PacketBatch message, byte for byte what protobufjs writes for `toMessage()` (every field
   * in field order, empty columns included), into one new buffer: the columns are copied once,
   * straight from the typed arrays. A new buffer per batch because the transport sends it
   * without copying and may still hold it after the send resolves.
   */
  encode(): Buffer {
    const n = this.count;
    const payloadLen = this.payloadUsed;
    let size = 1 + varintSize32(n) + 2 + varintSize32(payloadLen) + payloadLen;
    for (const c of this.wireColumns) {
      const len = n * c.width;
      size += varintSize32(tagOf(c.field, WIRE_LEN)) + varintSize32(len) + len;
    }
    // 10 bytes of room past the end for the writer's room checks (see writeInto).
    const out = Buffer.allocUnsafe(size + 10);
    const w = this.writer;
    w.writeInto(out);
    w.uint32(tagOf(FIELD_COUNT, WIRE_VARINT));
    w.uint32(n);
    for (const c of this.wireColumns) {
      // payload_data (19) goes between payload_cap (18) and tunnel_type (20).
      if (c.field === FIELD_PAYLOAD_DATA + 1) {
        w.uint32(tagOf(FIELD_PAYLOAD_DATA, WIRE_LEN));
        w.bytes(this.payloadData, 0, payloadLen);
      }
      w.uint32(tagOf(c.field, WIRE_LEN));
      w.bytes(c.bytes, 0, n * c.width);
    }
    if (w.buf !== out || w.pos !== size) throw new Error(`PacketBatch.encode: wrote ${w.pos} bytes, sized ${size}`);
    return out.subarray(0, size);
  }

  /**
   * Fills this batch from a PacketBatch message, copying each column once from `bytes` into the
   * reused typed arrays (the columns in the message are not aligned for typed-array access), with
   * no message object in between. Unknown fields are skipped; a field given twice counts once,
   * the last time, as in protobuf. Throws on a malformed batch; the caller counts it as a dropped
   * batch.
   */
  decode(bytes: Uint8Array): void {
    const start = this.fieldStart, length = this.fieldLength;
    start.fill(-1);
    length.fill(0);
    let n = 0;
    const rd = this.reader.reset(bytes);
    const end = bytes.length;
    try {
      while (rd.pos < end) {
        const tag = rd.uint32();
        const field = tag >>> 3, wire = tag & 7;
        if (field === 0) throw new ProtoWireError(`field 0 at byte ${rd.pos}`);
        if (field <= MAX_FIELD && wire !== (field === FIELD_COUNT ? WIRE_VARINT : WIRE_LEN)) {
          throw new ProtoWireError(`field ${field} has wire type ${wire}`);
        }
        if (field === FIELD_COUNT) {
          n = rd.uint64(); // not wrapped to 32 bits: a count past the capacity is refused below
        } else if (field <= MAX_FIELD) {
          const len = rd.uint32();
          if (rd.hi !== 0 || len > end - rd.pos) throw new ProtoWireError(`field ${field} runs past the end`);
          start[field] = rd.pos;
          length[field] = len;
          rd.pos += len;
        } else rd.skip(wire);
      }
    } catch (err) {
      if (err instanceof ProtoWireError) throw new ProtoWireError(`packet batch: ${err.message}`);
      throw err;
    }
    if (n > this.capacity) throw new Error(`packet batch of ${n} exceeds capacity ${this.capacity}`);
    // Before any copy: a batch refused half-way still leaves its rows marked for clearing.
    if (n > this.dirtyRows) this.dirtyRows = n;
    for (const c of this.wireColumns) {
      const len = length[c.field];
      if (len !== n * c.width) throw new Error(`packet batch column ${c.name}: ${len} bytes for ${n} rows`);
      if (len > 0) c.bytes.set(bytes.subarray(start[c.field], start[c.field] + len));
    }
    const dataLen = length[FIELD_PAYLOAD_DATA];
    if (dataLen > this.payloadData.length) this.payloadData = Buffer.allocUnsafe(dataLen);
    if (dataLen > 0) {
      const from = start[FIELD_PAYLOAD_DATA];
      this.payloadData.set(bytes.subarray(from, from + dataLen), 0);
    }
    this.payloadUsed = dataLen;
    for (let i = 0; i < n; i++) {
      if (this.payloadOffset[i] + this.payloadCap[i] > dataLen) {
        throw new Error(`packet batch row ${i}: payload outside payload_data`);
      }
    }
    this.count = n;
  }
}

/** Formats a 16-byte address at `off` as text (dotted quad for v4-mapped addresses). */
export function formatIp(addr: Uint8Array, off = 0): string {
  let v4 = addr[off + 10] === 0xff && addr[off + 11] === 0xff;
  for (let k = 0; v4 && k < 10; k++) if (addr[off + k] !== 0) v4 = false;
  if (v4) return `${addr[off + 12]}.${addr[off + 13]}.${addr[off + 14]}.${addr[off + 15]}`;
  const words: number[] = [];
  for (let k = 0; k < 8; k++) words.push((addr[off + 2 * k] << 8) | addr[off + 2 * k + 1]);
  // Longest run of zero words (length >= 2) becomes "::", as RFC 5952 says.
  let bestStart = -1, bestLen = 0;
  for (let k = 0; k < 8;) {
    if (words[k] !== 0) { k++; continue; }
    let j = k;
    while (j < 8 && words[j] === 0) j++;
    if (j - k > bestLen && j - k >= 2) { bestStart = k; bestLen = j - k; }
    k = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLen))}`;
}
