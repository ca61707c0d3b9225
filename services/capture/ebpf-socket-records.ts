// Decodes the socket tracer's ring-buffer records (layout: struct sock_event in bpf/socket_trace.h)
// into SocketDataBatch rows. Records arrive as the addon delivers them (native/ebpf.ts
// EbpfBatchCallback): 112-byte entries [u32 record size, u32 payload offset, 104-byte header], and
// the captured bytes in a payload area of the same Buffer. Reads fields at fixed offsets and
// leaves payloads where they lie (the batch borrows them): no object and no copy per record.
import { SocketDataBatch } from './ebpf-socket-batch';

/** Byte offsets in struct sock_event; keep in step with bpf/socket_trace.h. */
export const REC = {
  TS_NS: 0, SOCKET_ID: 8, TRACE_ID: 16, PID: 24, TID: 28, FD: 32, SYSCALL_LEN: 36, CAP_LEN: 40,
  LOCAL_PORT: 44, REMOTE_PORT: 46, KIND: 48, DIRECTION: 49, ROLE: 50, IP_VERSION: 51, PROTOCOL: 52,
  SYSCALL: 53, IS_TLS: 54, LOCAL_ADDR: 56, REMOTE_ADDR: 72, COMM: 88, HEADER: 104,
} as const;

/** Wall-clock steps smaller than this are Date.now()'s own granularity, not a step. */
const CLOCK_STEP_US = 3000;

const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** One delivered entry: the 8-byte prefix and the header. */
export const ENTRY_BYTES = 8 + REC.HEADER;

/**
 * Why a record was not turned into a row (counted, never thrown):
 * - `short_record`: shorter than the header, or its cap_len runs past its end (or the payload area's);
 * - `bad_kind`: kind outside 1..4 (object and decoder out of step);
 * - `excluded_pid`: from a process the user-space filter drops (e.g. a pid that raced the kernel filter);
 * - `excluded_comm`: from a process whose name is not in the configured list.
 */
export type SocketRecordDropReason = 'short_record' | 'bad_kind' | 'excluded_pid' | 'excluded_comm';

export class SocketRecordDecoder {
  readonly drops: Record<SocketRecordDropReason, number> = { short_record: 0, bad_kind: 0, excluded_pid: 0, excluded_comm: 0 };
  /** Microseconds to add to CLOCK_MONOTONIC µs to get epoch µs (bpf_ktime_get_ns is CLOCK_MONOTONIC). */
  private monoToEpochUs = 0;
  private readonly excluded = new Set<number>();

  constructor() {
    // performance.timeOrigin + now() is the wall clock in µs precision on the monotonic clock.
    this.monoToEpochUs = (performance.timeOrigin + performance.now()) * 1000 - monotonicUs();
  }

  /**
   * Follows steps of the wall clock (NTP, an operator): call once per delivery. Date.now() has
   * 1 ms steps, so the offset moves only when it is off by more than CLOCK_STEP_US; re-reading it
   * every delivery made timestamps jitter by up to 1 ms and reordered one thread's rows.
   */
  resyncClock(): void {
    const drift = Date.now() * 1000 - (monotonicUs() + this.monoToEpochUs);
    if (drift > CLOCK_STEP_US || drift < -CLOCK_STEP_US) this.monoToEpochUs += drift;
  }

  excludePid(pid: number): void {
    this.excluded.add(pid);
  }

  /** 16-byte NUL-padded process names to keep (empty: all); compared bytewise, no string per record. */
  private comms: Buffer[] = [];

  /** Keeps only records of processes with these names (comm, at most 15 characters). */
  onlyComms(names: string[]): void {
    this.comms = names.map((n) => {
      const b = Buffer.alloc(16);
      b.write(n.slice(0, 15), 'latin1');
      return b;
    });
  }

  private commWanted(records: Buffer, at: number): boolean {
    // Compare up to the name's NUL only: the kernel leaves whatever was in the buffer after it.
    let len = 0;
    while (len < 16 && records[at + len] !== 0) len++;
    for (const c of this.comms) {
      if ((len === 16 || c[len] === 0) && records.compare(c, 0, len, at, at + len) === 0) return true;
    }
    return false;
  }

  private src: Buffer | undefined;
  private u32: Uint32Array = new Uint32Array(0);
  private u16: Uint16Array = new Uint16Array(0);
  /** u32 views of the batch's 16-byte columns (addresses, comm), remade when the batch changes them. */
  private ipLocalOf: Uint8Array | undefined;
  private ipLocal32: Uint32Array = new Uint32Array(0);
  private ipRemote32: Uint32Array = new Uint32Array(0);
  private comm32: Uint32Array = new Uint32Array(0);

  private batchViewsFor(batch: SocketDataBatch): void {
    if (batch.ipLocal === this.ipLocalOf) return;
    const u32Of = (a: Uint8Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length >>> 2);
    this.ipLocalOf = batch.ipLocal;
    this.ipLocal32 = u32Of(batch.ipLocal);
    this.ipRemote32 = u32Of(batch.ipRemote);
    this.comm32 = u32Of(batch.comm);
  }

  /** Typed views over the delivery buffer, remade only when the addon hands a different Buffer. */
  private viewsFor(records: Buffer): void {
    if (records === this.src) return;
    this.src = records;
    const aligned = records.byteOffset % 4 === 0;
    const base = aligned ? records : Buffer.from(records); // a copy is 8-aligned (never with the addon)
    this.u32 = new Uint32Array(base.buffer, base.byteOffset, base.length >>> 2);
    this.u16 = new Uint16Array(base.buffer, base.byteOffset, base.length >>> 1);
  }

  /**
   * Appends the entries at [start, end) of `records` to `batch`, stopping when the batch is full.
   * Returns the offset of the first entry not consumed (`end` when all were): the caller then
   * flushes the batch and calls again. Entries start at
   * 8-aligned offsets, so header fields are read through u32/u16 views of the buffer; payloads
   * stay in `records` from `payloadStart` on, and the batch borrows them (valid while `records` is).
   */
  decode(records: Buffer, start: number, end: number, payloadStart: number, batch: SocketDataBatch): number {
    // A batch's payloads are one run of one delivery: rows from another call go out first.
    if (batch.count > 0 && batch.payloadSource !== records) return start;
    this.viewsFor(records);
    this.batchViewsFor(batch);
    const u32 = this.u32;
    const u16 = this.u16;
    const ipLocal = this.ipLocal32, ipRemote = this.ipRemote32, comm = this.comm32;
    const monoToEpochUs = this.monoToEpochUs;
    // Where the batch's payload run starts in `records` (set when its first row is added).
    let payloadBase = batch.count > 0 ? batch.payloadData.byteOffset - records.byteOffset : 0;
    let o = start;
    for (; o + ENTRY_BYTES <= end; o += ENTRY_BYTES) {
      const size = u32[o >>> 2];
      const payloadAt = payloadStart + u32[(o >>> 2) + 1];
      const r = o + 8;
      const w = r >>> 2;
      const cap = u32[w + (REC.CAP_LEN >>> 2)];
      if (size < REC.HEADER || REC.HEADER + cap > size || payloadAt + cap > records.length) {
        this.drops.short_record++;
        continue;
      }
      const kind = records[r + REC.KIND];
      if (kind < 1 || kind > 4) {
        this.drops.bad_kind++;
        continue;
      }
      const pid = u32[w + (REC.PID >>> 2)];
      if (this.excluded.size > 0 && this.excluded.has(pid)) {
        this.drops.excluded_pid++;
        records.fill(0, payloadAt, payloadAt + cap); // its bytes may lie inside what the batch sends
        continue;
      }
      if (this.comms.length > 0 && !this.commWanted(records, r + REC.COMM)) {
        this.drops.excluded_comm++;
        records.fill(0, payloadAt, payloadAt + cap);
        continue;
      }
      if (batch.full) return o;
      if (batch.count === 0) {
        batch.borrowPayloads(records, payloadAt);
        payloadBase = payloadAt;
      }
      const i = batch.count++;
      // u64 as two u32 words, kept in doubles (exact below 2^53).
      const tsNs = u32[w + 1] * 4294967296 + u32[w];
      batch.timestampUs[i] = Math.floor(tsNs / 1000) + monoToEpochUs;
      batch.socketId[i] = u32[w + 3] * 4294967296 + u32[w + 2];
      batch.syscallTraceId[i] = u32[w + 5] * 4294967296 + u32[w + 4];
      batch.pid[i] = pid;
      batch.tid[i] = u32[w + (REC.TID >>> 2)];
      batch.fd[i] = u32[w + (REC.FD >>> 2)];
      batch.syscallLen[i] = u32[w + (REC.SYSCALL_LEN >>> 2)];
      batch.portLocal[i] = u16[(r + REC.LOCAL_PORT) >>> 1];
      batch.portRemote[i] = u16[(r + REC.REMOTE_PORT) >>> 1];
      batch.kind[i] = kind;
      batch.direction[i] = records[r + REC.DIRECTION];
      batch.role[i] = records[r + REC.ROLE];
      batch.ipVersion[i] = records[r + REC.IP_VERSION];
      batch.protocol[i] = records[r + REC.PROTOCOL];
      batch.syscall[i] = records[r + REC.SYSCALL];
      batch.isTls[i] = records[r + REC.IS_TLS];
      // Four u32 words per 16-byte field (all 4-aligned in the record and the batch), not
      // subarray().set(): a subarray is an object per call, three per record.
      for (let k = 0, d = i * 4, la = w + (REC.LOCAL_ADDR >>> 2), ra = w + (REC.REMOTE_ADDR >>> 2), ca = w + (REC.COMM >>> 2); k < 4; k++, d++) {
        ipLocal[d] = u32[la + k];
        ipRemote[d] = u32[ra + k];
        comm[d] = u32[ca + k];
      }
      // Payload areas are filled in entry order, so a batch's payloads are one run from its first.
      const rel = payloadAt - payloadBase;
      batch.payloadOffset[i] = rel;
      batch.payloadCap[i] = cap;
      batch.payloadUsed = rel + cap;
    }
    // Bytes left that make no whole entry (the addon never sends them): counted, not looped on.
    if (o < end) this.drops.short_record++;
    return end;
  }
}
