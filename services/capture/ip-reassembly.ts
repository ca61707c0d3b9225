// IPv4 and IPv6 fragment reassembly with bounded memory and a timeout in packet time.
// Fragments are rare, so this path may allocate (a key string and a copy per fragment); the
// common path (unfragmented packets) never enters here. Overlapping fragments: the copy that
// arrived last wins, as in tshark, so that rows agree with the tool operators check them against.

/**
 * Fragments that never became part of a datagram, counted per fragment:
 * - fragment_bad: refused on arrival: impossible (beyond 65535 bytes, a second different end,
 *   empty, not a multiple of 8 before the end) or bigger than the whole byte budget
 * and, for fragments that were held and then given up (the decoder already counted them as
 * fragment_held when they arrived):
 * - fragment_timeout: the datagram was not complete within `timeoutUs` of its first fragment
 * - fragment_overflow: the table was full (datagrams or bytes); the oldest datagram was evicted
 * - fragment_unfinished: still incomplete when `flushAll` was called (end of stream)
 */
export type FragmentDropReason = 'fragment_timeout' | 'fragment_overflow' | 'fragment_bad' | 'fragment_unfinished';

const MAX_DATAGRAM = 65535;

/** What `add` did with a fragment. */
export const FRAGMENT_DROPPED = -1;
export const FRAGMENT_HELD = 0;
export const FRAGMENT_COMPLETE = 1;

interface PendingDatagram {
  key: string;
  firstUs: number;
  /** Payload length once the last fragment (MF = 0) was seen; -1 before. */
  totalLen: number;
  bytes: number;
  frameLenSum: number;
  fragments: { offset: number; data: Buffer }[];
}

export interface ReassemblyLimits {
  maxDatagrams: number;
  maxBytes: number;
  timeoutUs: number;
}

export const DEFAULT_REASSEMBLY_LIMITS: ReassemblyLimits = {
  maxDatagrams: 1024,
  maxBytes: 8 * 1024 * 1024,
  timeoutUs: 30_000_000,
};

export class IpReassembler {
  readonly drops: Record<FragmentDropReason, number> = {
    fragment_timeout: 0, fragment_overflow: 0, fragment_bad: 0, fragment_unfinished: 0,
  };
  /** Reassembled payload (L4 header onwards) after `add` returned true; reused. */
  readonly out = Buffer.allocUnsafe(MAX_DATAGRAM);
  outLen = 0;
  /** Sum of the wire lengths of the frames that made the datagram. */
  outFrameLenSum = 0;
  /** Insertion order is age order, so expiry looks only at the head. */
  private readonly pending = new Map<string, PendingDatagram>();
  private bytesHeld = 0;

  constructor(readonly limits: ReassemblyLimits = DEFAULT_REASSEMBLY_LIMITS) {}

  get datagramsHeld(): number {
    return this.pending.size;
  }

  /** Payload bytes held for incomplete datagrams (bounded by limits.maxBytes). */
  get bytesHeldNow(): number {
    return this.bytesHeld;
  }

  /**
   * Adds one fragment: `buf[start .. start + len)` is its payload at byte `offset` of the
   * datagram's payload, `more` its MF flag. Returns FRAGMENT_COMPLETE when this fragment
   * completes the datagram, whose payload is then in `out[0 .. outLen)`; FRAGMENT_HELD while it
   * waits for the others; FRAGMENT_DROPPED when counted in `drops`.
   */
  add(key: string, offset: number, more: boolean, buf: Buffer, start: number, len: number,
    nowUs: number, frameLen: number): number {
    this.expire(nowUs);
    const end = offset + len;
    if (end > MAX_DATAGRAM || (len === 0 && more) || (more && len % 8 !== 0)) {
      this.drops.fragment_bad++;
      return FRAGMENT_DROPPED;
    }
    let d = this.pending.get(key);
    if (!d) {
      while (this.pending.size >= this.limits.maxDatagrams) this.evictOldest();
      d = { key, firstUs: nowUs, totalLen: -1, bytes: 0, frameLenSum: 0, fragments: [] };
      this.pending.set(key, d);
    }
    if (!more) {
      if (d.totalLen >= 0 && d.totalLen !== end) { this.drops.fragment_bad++; return FRAGMENT_DROPPED; }
      d.totalLen = end;
    }
    if (d.totalLen >= 0 && end > d.totalLen) { this.drops.fragment_bad++; return FRAGMENT_DROPPED; }
    while (this.bytesHeld + len > this.limits.maxBytes && this.pending.size > 1) this.evictOldest(d);
    // Alone it does not fit: the datagram is bigger than the configured memory.
    if (this.bytesHeld + len > this.limits.maxBytes) { this.drops.fragment_bad++; return FRAGMENT_DROPPED; }
    d.fragments.push({ offset, data: Buffer.from(buf.subarray(start, start + len)) });
    d.bytes += len;
    d.frameLenSum += frameLen;
    this.bytesHeld += len;
    return d.totalLen >= 0 && this.tryComplete(d) ? FRAGMENT_COMPLETE : FRAGMENT_HELD;
  }

  private tryComplete(d: PendingDatagram): boolean {
    const frags = d.fragments.slice().sort((a, b) => a.offset - b.offset);
    let covered = 0;
    for (const f of frags) {
      if (f.offset > covered) return false;
      covered = Math.max(covered, f.offset + f.data.length);
    }
    if (covered < d.totalLen) return false;
    for (const f of d.fragments) f.data.copy(this.out, f.offset);
    this.outLen = d.totalLen;
    this.outFrameLenSum = d.frameLenSum;
    this.remove(d);
    return true;
  }

  private remove(d: PendingDatagram): void {
    this.pending.delete(d.key);
    this.bytesHeld -= d.bytes;
  }

  private evictOldest(keep?: PendingDatagram): void {
    for (const d of this.pending.values()) {
      if (d === keep) continue;
      this.drops.fragment_overflow += d.fragments.length;
      this.remove(d);
      return;
    }
  }

  /** Drops datagrams whose first fragment is older than the timeout (packet time). */
  expire(nowUs: number): void {
    for (const d of this.pending.values()) {
      if (nowUs - d.firstUs <= this.limits.timeoutUs) break;
      this.drops.fragment_timeout += d.fragments.length;
      this.remove(d);
    }
  }

  /** End of stream: everything still held is counted and released. */
  flushAll(): void {
    for (const d of this.pending.values()) this.drops.fragment_unfinished += d.fragments.length;
    this.pending.clear();
    this.bytesHeld = 0;
  }
}
