// Flow state stored by slot number in strided typed arrays (f64, u32, u8, ip words), so the
// per-packet path reads and writes numbers in place and a flow costs no JS object. The counters
// reported every second live apart, in `DeltaRows`, only for the flows active in the current
// second: most open flows are idle in any one second, so they do not pay for them.

// Float64 fields: times in µs (exact, whatever the flow's age) and the flow id.
export const F_START_US = 0;
export const F_END_US = 1;
export const F_FLOW_ID = 2;
export const F_SYN_US = 3;         // first SYN
export const F_SYNACK_US = 4;      // first SYN-ACK
export const F_LAST_TX_PAYLOAD_US = 5;
export const F_LAST_RX_PAYLOAD_US = 6;
export const F_NEXT_SEQ_TIME_TX = 7; // when the highest sequence last advanced, client direction
export const F_NEXT_SEQ_TIME_RX = 8;
export const F64_STRIDE = 9;

// Uint32 fields.
export const U_HASH = 0;
export const U_CHAIN = 1;          // next slot in the hash bucket (or the free list), +1 (0: end)
export const U_PORTS = 2;          // client port | server port << 16
export const U_KEY = 3;            // protocol | tunnel type << 8 | vlan << 16
export const U_TUN_ID = 4;
export const U_MARKS = 5;
export const U_DELTA_ROW = 6;      // row in DeltaRows, +1 (0: not active this second)
export const U_INFER_TRIES = 7;
export const U_SYN_TOTAL = 8;
export const U_SYNACK_TOTAL = 9;
export const U_SYN_SEQ = 10;       // client ISN, to tell a retransmitted SYN from port reuse
export const U_NEXT_SEQ_TX = 11;   // highest seq + len seen, client direction
export const U_NEXT_SEQ_RX = 12;
export const U_IRTT = 13;          // handshake rtt in µs, kept for the out-of-order threshold
export const U_LAST_ACK_TX = 14;   // the client's latest acknowledgement number (for duplicate ACKs)
export const U_LAST_ACK_RX = 15;
export const U32_STRIDE = 16;

// Uint8 fields.
export const B_IPVER = 0;          // 4 or 6; 0 marks a free slot
export const B_STATE = 1;
export const B_RST_CLOSE = 2;      // close type decided by the RST
export const B_L7 = 3;             // index into the L7 protocol names (0: unknown)
export const U8_STRIDE = 4;

/** Client address words 0..3, server address words 4..7. */
export const IP_STRIDE = 8;

export function keyOf(protocol: number, tunnelType: number, vlan: number): number {
  return (protocol | (tunnelType << 8) | (vlan << 16)) >>> 0;
}

export class FlowSlots {
  capacity: number;
  f64: Float64Array;
  u32: Uint32Array;
  u8: Uint8Array;
  ip: Uint32Array;
  /** Byte view of `ip` (same memory). */
  ipBytes: Uint8Array;
  /** L7 protocol names by index (B_L7); index 0 is "", unknown. Few names: kept for the run. */
  readonly l7Names: string[] = [''];
  private readonly l7Index = new Map<string, number>([['', 0]]);

  constructor(capacity: number) {
    this.capacity = capacity;
    this.f64 = new Float64Array(capacity * F64_STRIDE);
    this.u32 = new Uint32Array(capacity * U32_STRIDE);
    this.u8 = new Uint8Array(capacity * U8_STRIDE);
    this.ip = new Uint32Array(capacity * IP_STRIDE);
    this.ipBytes = new Uint8Array(this.ip.buffer);
  }

  grow(capacity: number): void {
    const f = new Float64Array(capacity * F64_STRIDE); f.set(this.f64); this.f64 = f;
    const u = new Uint32Array(capacity * U32_STRIDE); u.set(this.u32); this.u32 = u;
    const b = new Uint8Array(capacity * U8_STRIDE); b.set(this.u8); this.u8 = b;
    const p = new Uint32Array(capacity * IP_STRIDE); p.set(this.ip); this.ip = p;
    this.ipBytes = new Uint8Array(p.buffer);
    this.capacity = capacity;
  }

  l7Of(slot: number): string {
    return this.l7Names[this.u8[slot * U8_STRIDE + B_L7]];
  }

  setL7(slot: number, name: string): void {
    let index = this.l7Index.get(name);
    if (index === undefined) {
      // Names come from the protocol inference's fixed list; 255 distinct ones would be a bug there.
      if (this.l7Names.length > 255) throw new Error(`more than 255 L7 protocol names (${name})`);
      index = this.l7Names.length;
      this.l7Names.push(name);
      this.l7Index.set(name, index);
    }
    this.u8[slot * U8_STRIDE + B_L7] = index;
  }

  /**
   * A copy of the client (side 0) or server (side 1) address as 16 bytes, for a record that
   * leaves the stage. Copied per record rather than kept per flow: it halves the memory of a flow.
   */
  ipOf(slot: number, side: 0 | 1): Uint8Array {
    const o = slot * IP_STRIDE * 4 + side * 16;
    return this.ipBytes.slice(o, o + 16);
  }

  /** Zeroes a slot (loops: cheaper than fill() calls for so few elements). */
  clear(slot: number): void {
    const f = this.f64, u = this.u32, b = this.u8, p = this.ip;
    for (let k = slot * F64_STRIDE, end = k + F64_STRIDE; k < end; k++) f[k] = 0;
    for (let k = slot * U32_STRIDE, end = k + U32_STRIDE; k < end; k++) u[k] = 0;
    for (let k = slot * U8_STRIDE, end = k + U8_STRIDE; k < end; k++) b[k] = 0;
    for (let k = slot * IP_STRIDE, end = k + IP_STRIDE; k < end; k++) p[k] = 0;
  }
}

// DeltaRows Float64 fields: the counters a report carries and then starts again from 0.
export const D_PKT_TX = 0;
export const D_PKT_RX = 1;
export const D_BYTE_TX = 2;
export const D_BYTE_RX = 3;
export const D_L3_TX = 4;
export const D_L3_RX = 5;
export const D_L4_TX = 6;
export const D_L4_RX = 7;
export const D_RTT = 8;            // handshake rtt, reported once
export const D_RTT_CLIENT = 9;     // reported once
export const D_RTT_SERVER = 10;    // reported once
export const D_SRT_SUM = 11;
export const D_SRT_MAX = 12;
export const D_ART_SUM = 13;
export const D_ART_MAX = 14;
export const D_CIT_SUM = 15;
export const D_CIT_MAX = 16;
export const DF64_STRIDE = 17;

// DeltaRows Uint32 fields.
export const DU_FLAGS_TX = 0;
export const DU_FLAGS_RX = 1;
export const DU_SYN = 2;
export const DU_SYNACK = 3;
export const DU_FIN = 4;
export const DU_RTT_CLIENT_N = 5;
export const DU_RTT_SERVER_N = 6;
export const DU_SRT_N = 7;
export const DU_ART_N = 8;
export const DU_CIT_N = 9;
export const DU_RETRANS_TX = 10;
export const DU_RETRANS_RX = 11;
export const DU_ZWIN_TX = 12;
export const DU_ZWIN_RX = 13;
export const DU_OOO_TX = 14;
export const DU_OOO_RX = 15;
export const DU_RETRANS_SYN = 16;
export const DU_RETRANS_SYNACK = 17;
export const DU32_STRIDE = 18;

const MIN_ROWS = 1024;
/** Seconds over which the peak row count is taken before the table may shrink. */
const SHRINK_WINDOW_S = 64;

/**
 * The per-second counters of the flows active in the current second, one row each, rows
 * 0..count-1 in use in the order the flows became active. `slotOf[row]` is the row's flow slot.
 */
export class DeltaRows {
  capacity = MIN_ROWS;
  count = 0;
  f64 = new Float64Array(MIN_ROWS * DF64_STRIDE);
  u32 = new Uint32Array(MIN_ROWS * DU32_STRIDE);
  slotOf = new Int32Array(MIN_ROWS);
  private peak = 0;
  private secondsSincePeak = 0;

  /** A zeroed row for `slot`. */
  take(slot: number): number {
    if (this.count === this.capacity) this.resize(this.capacity * 2, true);
    const row = this.count++;
    const f = this.f64, u = this.u32;
    for (let k = row * DF64_STRIDE, end = k + DF64_STRIDE; k < end; k++) f[k] = 0;
    for (let k = row * DU32_STRIDE, end = k + DU32_STRIDE; k < end; k++) u[k] = 0;
    this.slotOf[row] = slot;
    return row;
  }

  /** Frees `row` by moving the last row into it; returns the moved row's slot, or -1 if none moved. */
  release(row: number): number {
    const last = --this.count;
    if (row === last) return -1;
    this.f64.copyWithin(row * DF64_STRIDE, last * DF64_STRIDE, (last + 1) * DF64_STRIDE);
    this.u32.copyWithin(row * DU32_STRIDE, last * DU32_STRIDE, (last + 1) * DU32_STRIDE);
    const moved = this.slotOf[last];
    this.slotOf[row] = moved;
    return moved;
  }

  /**
   * Frees every row (the second has been reported). After a burst the table shrinks back, once
   * a window of seconds has used at most an eighth of it; rows are empty then, so nothing is copied.
   */
  releaseAll(): void {
    if (this.count > this.peak) this.peak = this.count;
    this.count = 0;
    if (++this.secondsSincePeak < SHRINK_WINDOW_S) return;
    let size = MIN_ROWS;
    while (size < this.peak * 2) size *= 2;
    if (size * 4 <= this.capacity) this.resize(size, false);
    this.peak = 0;
    this.secondsSincePeak = 0;
  }

  private resize(capacity: number, keep: boolean): void {
    const f = new Float64Array(capacity * DF64_STRIDE);
    const u = new Uint32Array(capacity * DU32_STRIDE);
    const s = new Int32Array(capacity);
    if (keep) { f.set(this.f64); u.set(this.u32); s.set(this.slotOf); }
    this.f64 = f; this.u32 = u; this.slotOf = s;
    this.capacity = capacity;
  }
}
