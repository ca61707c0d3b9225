// MetaPacket batches stored by column: one typed array per field, reused from batch to batch,
// so that decoding a frame or reading a packet never allocates. The wire form is the
// PacketBatch message in proto/flowtap.proto (one `bytes` field per column).
import { flowtap } from './proto';

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
    this.tcpWscale = new Uint8Array(capacity);
    this.ifindex = new Uint32Array(capacity);
    this.icmpTypeCode = new Uint16Array(capacity);
    this.payloadData = Buffer.allocUnsafe(Math.max(capacity * Math.min(payloadCut, 256), payloadCut * 4));
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  reset(): void {
    this.count = 0;
    this.payloadUsed = 0;
  }

  /**
   * Claims the next row, zeroes its per-packet fields and returns its index. The decoder then
   * fills the columns at that index and calls `commit` (or simply does not, to discard it).
   */
  begin(): number {
    const i = this.count;
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
    this.payloadOffset[i] = this.payloadUsed;
    this.payloadCap[i] = 0;
    this.tunnelType[i] = 0;
    this.tunnelId[i] = 0;
    this.tcpWscale[i] = WSCALE_ABSENT;
    this.ifindex[i] = 0;
    this.icmpTypeCode[i] = 0;
    return i;
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

  encode(): Uint8Array {
    return flowtap.PacketBatch.encode(this.toMessage()).finish();
  }

  /**
   * Fills this batch from a decoded message, copying each column once into the reused typed
   * arrays (the message's views are not aligned for typed-array access). Throws on a malformed
   * batch; the caller counts it as a dropped batch.
   */
  loadMessage(m: flowtap.PacketBatch): void {
    const n = m.count;
    if (n > this.capacity) throw new Error(`packet batch of ${n} exceeds capacity ${this.capacity}`);
    const copy = (dst: ArrayBufferView, src: Uint8Array, width: number, name: string) => {
      if (src.length !== n * width) throw new Error(`packet batch column ${name}: ${src.length} bytes for ${n} rows`);
      new Uint8Array(dst.buffer, dst.byteOffset, n * width).set(src);
    };
    copy(this.timestampUs, m.timestamp_us, 8, 'timestamp_us');
    copy(this.ipSrc, m.ip_src, 16, 'ip_src');
    copy(this.ipDst, m.ip_dst, 16, 'ip_dst');
    copy(this.portSrc, m.port_src, 2, 'port_src');
    copy(this.portDst, m.port_dst, 2, 'port_dst');
    copy(this.protocol, m.protocol, 1, 'protocol');
    copy(this.ipVersion, m.ip_version, 1, 'ip_version');
    copy(this.tcpFlags, m.tcp_flags, 1, 'tcp_flags');
    copy(this.tcpSeq, m.tcp_seq, 4, 'tcp_seq');
    copy(this.tcpAck, m.tcp_ack, 4, 'tcp_ack');
    copy(this.tcpWindow, m.tcp_window, 2, 'tcp_window');
    copy(this.vlan, m.vlan, 2, 'vlan');
    copy(this.frameLen, m.frame_len, 4, 'frame_len');
    copy(this.l3Len, m.l3_len, 4, 'l3_len');
    copy(this.l4PayloadLen, m.l4_payload_len, 4, 'l4_payload_len');
    copy(this.payloadOffset, m.payload_offset, 4, 'payload_offset');
    copy(this.payloadCap, m.payload_cap, 2, 'payload_cap');
    copy(this.tunnelType, m.tunnel_type, 1, 'tunnel_type');
    copy(this.tunnelId, m.tunnel_id, 4, 'tunnel_id');
    copy(this.tcpWscale, m.tcp_wscale, 1, 'tcp_wscale');
    copy(this.ifindex, m.ifindex, 4, 'ifindex');
    copy(this.icmpTypeCode, m.icmp_type_code, 2, 'icmp_type_code');
    const data = m.payload_data;
    if (data.length > this.payloadData.length) this.payloadData = Buffer.allocUnsafe(data.length);
    this.payloadData.set(data, 0);
    this.payloadUsed = data.length;
    for (let i = 0; i < n; i++) {
      if (this.payloadOffset[i] + this.payloadCap[i] > data.length) {
        throw new Error(`packet batch row ${i}: payload outside payload_data`);
      }
    }
    this.count = n;
  }

  decode(bytes: Uint8Array): void {
    this.loadMessage(flowtap.PacketBatch.decode(bytes));
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
