// Socket events stored by column, reused from batch to batch (like lib/packet-batch.ts), with
// their wire form SocketDataBatch (proto/flowtap.proto). The capture process fills one from the
// eBPF ring buffer; l7 decodes the message into one and reads rows by index without allocating.
import { flowtap } from '../../lib/proto';

export const SOCKET_BATCH_DEFAULT_CAPACITY = 1024;

export const SOCKET_KIND_DATA = 1;
export const SOCKET_KIND_CONNECT = 2;
export const SOCKET_KIND_ACCEPT = 3;
export const SOCKET_KIND_CLOSE = 4;

export const DIRECTION_EGRESS = 0;
export const DIRECTION_INGRESS = 1;

export const ROLE_UNKNOWN = 0;
export const ROLE_CLIENT = 1;
export const ROLE_SERVER = 2;

/** `syscall` column values, by name. */
export const SYSCALL_NAMES = ['', 'read', 'write', 'readv', 'writev', 'sendto', 'recvfrom', 'sendmsg', 'recvmsg',
  'sendmmsg', 'recvmmsg', 'connect', 'accept', 'accept4', 'close', 'SSL_read', 'SSL_write'] as const;

export class SocketDataBatch {
  count = 0;
  capacity: number;
  timestampUs!: Float64Array;
  socketId!: Float64Array;
  syscallTraceId!: Float64Array;
  pid!: Uint32Array;
  tid!: Uint32Array;
  fd!: Uint32Array;
  /** 16 bytes per row, NUL-padded. */
  comm!: Uint8Array;
  /** 16 bytes per row; IPv4 is v4-mapped. */
  ipLocal!: Uint8Array;
  ipRemote!: Uint8Array;
  portLocal!: Uint16Array;
  portRemote!: Uint16Array;
  protocol!: Uint8Array;
  ipVersion!: Uint8Array;
  kind!: Uint8Array;
  direction!: Uint8Array;
  role!: Uint8Array;
  syscall!: Uint8Array;
  isTls!: Uint8Array;
  syscallLen!: Uint32Array;
  payloadOffset!: Uint32Array;
  payloadCap!: Uint32Array;
  payloadData: Buffer;
  payloadUsed = 0;
  /** The batch's own payload buffer; payloadData is a borrowed view instead after borrowPayloads(). */
  private ownPayloads: Buffer;
  /** The Buffer payloads are borrowed from, undefined while they are the batch's own. */
  payloadSource: Buffer | undefined;

  /**
   * The own payload buffer starts empty and grows in decode() to the largest message: the
   * capture process only borrows payloads, so a buffer made up front sat unused there.
   */
  constructor(capacity = SOCKET_BATCH_DEFAULT_CAPACITY, payloadBytes = 0) {
    this.capacity = capacity;
    this.allocColumns(capacity);
    this.payloadData = this.ownPayloads = Buffer.allocUnsafe(payloadBytes);
  }

  /**
   * Payload offsets count from `source[start]` until reset(): the capture process reads payloads
   * where the addon put them instead of copying each one. `source` must outlive the batch's use.
   */
  borrowPayloads(source: Buffer, start: number): void {
    this.payloadData = source.subarray(start);
    this.payloadSource = source;
    this.payloadUsed = 0;
  }

  private allocColumns(capacity: number): void {
    this.capacity = capacity;
    this.timestampUs = new Float64Array(capacity);
    this.socketId = new Float64Array(capacity);
    this.syscallTraceId = new Float64Array(capacity);
    this.pid = new Uint32Array(capacity);
    this.tid = new Uint32Array(capacity);
    this.fd = new Uint32Array(capacity);
    this.comm = new Uint8Array(capacity * 16);
    this.ipLocal = new Uint8Array(capacity * 16);
    this.ipRemote = new Uint8Array(capacity * 16);
    this.portLocal = new Uint16Array(capacity);
    this.portRemote = new Uint16Array(capacity);
    this.protocol = new Uint8Array(capacity);
    this.ipVersion = new Uint8Array(capacity);
    this.kind = new Uint8Array(capacity);
    this.direction = new Uint8Array(capacity);
    this.role = new Uint8Array(capacity);
    this.syscall = new Uint8Array(capacity);
    this.isTls = new Uint8Array(capacity);
    this.syscallLen = new Uint32Array(capacity);
    this.payloadOffset = new Uint32Array(capacity);
    this.payloadCap = new Uint32Array(capacity);
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  reset(): void {
    this.count = 0;
    this.payloadUsed = 0;
    this.payloadData = this.ownPayloads;
    this.payloadSource = undefined;
  }

  /** The process name of row i (allocates a string: for logs and tests, not per event). */
  commOf(i: number): string {
    let end = i * 16;
    const stop = end + 16;
    while (end < stop && this.comm[end] !== 0) end++;
    return Buffer.from(this.comm.buffer, this.comm.byteOffset + i * 16, end - i * 16).toString('latin1');
  }

  /** The captured payload of row i, as a view (no copy) valid until the batch is reused. */
  payloadOf(i: number): Buffer {
    return this.payloadData.subarray(this.payloadOffset[i], this.payloadOffset[i] + this.payloadCap[i]);
  }

  /** The wire message; columns are views of this batch's memory (encode before reuse). */
  toMessage(): flowtap.ISocketDataBatch {
    const n = this.count;
    const bytes = (a: ArrayBufferView, width: number): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, n * width);
    return {
      count: n,
      timestamp_us: bytes(this.timestampUs, 8),
      socket_id: bytes(this.socketId, 8),
      syscall_trace_id: bytes(this.syscallTraceId, 8),
      pid: bytes(this.pid, 4),
      tid: bytes(this.tid, 4),
      fd: bytes(this.fd, 4),
      comm: bytes(this.comm, 16),
      ip_local: bytes(this.ipLocal, 16),
      ip_remote: bytes(this.ipRemote, 16),
      port_local: bytes(this.portLocal, 2),
      port_remote: bytes(this.portRemote, 2),
      protocol: bytes(this.protocol, 1),
      ip_version: bytes(this.ipVersion, 1),
      kind: bytes(this.kind, 1),
      direction: bytes(this.direction, 1),
      role: bytes(this.role, 1),
      syscall: bytes(this.syscall, 1),
      is_tls: bytes(this.isTls, 1),
      syscall_len: bytes(this.syscallLen, 4),
      payload_offset: bytes(this.payloadOffset, 4),
      payload_cap: bytes(this.payloadCap, 4),
      payload_data: this.payloadData.subarray(0, this.payloadUsed),
    };
  }

  encode(): Uint8Array {
    return flowtap.SocketDataBatch.encode(this.toMessage()).finish();
  }

  /**
   * Fills this batch from a wire message (one copy per column; grows when needed). Returns false,
   * leaving the batch empty, when a column's length disagrees with `count` (a malformed message).
   */
  decode(body: Uint8Array): boolean {
    const m = flowtap.SocketDataBatch.decode(body);
    const n = m.count;
    this.reset();
    if (n > this.capacity) this.allocColumns(n);
    const cols: Array<[Uint8Array, ArrayBufferView, number]> = [
      [m.timestamp_us, this.timestampUs, 8], [m.socket_id, this.socketId, 8], [m.syscall_trace_id, this.syscallTraceId, 8],
      [m.pid, this.pid, 4], [m.tid, this.tid, 4], [m.fd, this.fd, 4], [m.comm, this.comm, 16],
      [m.ip_local, this.ipLocal, 16], [m.ip_remote, this.ipRemote, 16], [m.port_local, this.portLocal, 2],
      [m.port_remote, this.portRemote, 2], [m.protocol, this.protocol, 1], [m.ip_version, this.ipVersion, 1],
      [m.kind, this.kind, 1], [m.direction, this.direction, 1], [m.role, this.role, 1], [m.syscall, this.syscall, 1],
      [m.is_tls, this.isTls, 1], [m.syscall_len, this.syscallLen, 4], [m.payload_offset, this.payloadOffset, 4],
      [m.payload_cap, this.payloadCap, 4],
    ];
    for (const [src, , width] of cols) {
      if (src.length !== n * width) return false;
    }
    for (const [src, dst] of cols) new Uint8Array(dst.buffer, dst.byteOffset, src.length).set(src);
    const data = m.payload_data;
    for (let i = 0; i < n; i++) {
      if (this.payloadOffset[i] + this.payloadCap[i] > data.length) return false;
    }
    if (data.length > this.payloadData.length) this.payloadData = this.ownPayloads = Buffer.allocUnsafe(data.length);
    this.payloadData.set(data);
    this.payloadUsed = data.length;
    this.count = n;
    return true;
  }
}
