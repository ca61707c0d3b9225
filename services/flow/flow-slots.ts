// Flow state stored by slot number in three strided typed arrays (f64, u32, ip words), so the
// per-packet path reads and writes numbers in place and a flow costs no JS object.

// Float64 fields (times in µs, byte counters that may pass 2^32).
export const F_START_US = 0;
export const F_END_US = 1;
export const F_FLOW_ID = 2;
export const F_PKT_TX = 3;     // per-report deltas from here ...
export const F_PKT_RX = 4;
export const F_BYTE_TX = 5;
export const F_BYTE_RX = 6;
export const F_L3_TX = 7;
export const F_L3_RX = 8;
export const F_L4_TX = 9;
export const F_L4_RX = 10;
export const F_RTT = 11;           // handshake rtt, reported once
export const F_RTT_CLIENT = 12;    // reported once
export const F_RTT_SERVER = 13;    // reported once
export const F_SRT_SUM = 14;
export const F_SRT_MAX = 15;
export const F_ART_SUM = 16;
export const F_ART_MAX = 17;
export const F_CIT_SUM = 18;
export const F_CIT_MAX = 19;       // ... to here
export const F_SYN_US = 20;        // first SYN
export const F_SYNACK_US = 21;     // first SYN-ACK
export const F_LAST_TX_PAYLOAD_US = 22;
export const F_LAST_RX_PAYLOAD_US = 23;
export const F_NEXT_SEQ_TIME_TX = 24; // when the highest sequence last advanced, client direction
export const F_NEXT_SEQ_TIME_RX = 25;
export const F64_STRIDE = 26;
export const F_DELTA_FIRST = F_PKT_TX;
export const F_DELTA_LAST = F_CIT_MAX;

// Uint32 fields.
export const U_HASH = 0;
export const U_CHAIN = 1;          // next slot in the hash bucket, +1 (0: end)
export const U_PORT0 = 2;          // client port
export const U_PORT1 = 3;          // server port
export const U_PROTO = 4;
export const U_IPVER = 5;
export const U_VLAN = 6;
export const U_TUN_TYPE = 7;
export const U_TUN_ID = 8;
export const U_STATE = 9;
export const U_RST_CLOSE = 10;     // close type decided by the RST
export const U_MARKS = 11;
export const U_ACTIVE_POS = 12;    // position in the active list, +1 (0: not active this second)
export const U_INFER_TRIES = 13;
export const U_SYN_TOTAL = 14;
export const U_SYNACK_TOTAL = 15;
export const U_SYN_SEQ = 16;       // client ISN, to tell a retransmitted SYN from port reuse
export const U_NEXT_SEQ_TX = 17;   // highest seq + len seen, client direction
export const U_NEXT_SEQ_RX = 18;
export const U_FLAGS_TX = 19;      // per-report deltas from here ...
export const U_FLAGS_RX = 20;
export const U_SYN = 21;
export const U_SYNACK = 22;
export const U_FIN = 23;
export const U_RTT_CLIENT_N = 24;
export const U_RTT_SERVER_N = 25;
export const U_SRT_N = 26;
export const U_ART_N = 27;
export const U_CIT_N = 28;
export const U_RETRANS_TX = 29;
export const U_RETRANS_RX = 30;
export const U_ZWIN_TX = 31;
export const U_ZWIN_RX = 32;
export const U_OOO_TX = 33;
export const U_OOO_RX = 34;
export const U_RETRANS_SYN = 35;
export const U_RETRANS_SYNACK = 36; // ... to here
export const U_IRTT = 37;          // handshake rtt in µs, kept for the out-of-order threshold
export const U_LAST_ACK_TX = 38;   // the client's latest acknowledgement number (for duplicate ACKs)
export const U_LAST_ACK_RX = 39;
export const U32_STRIDE = 40;
export const U_DELTA_FIRST = U_FLAGS_TX;
export const U_DELTA_LAST = U_RETRANS_SYNACK;

/** Client address words 0..3, server address words 4..7. */
export const IP_STRIDE = 8;

export class FlowSlots {
  capacity: number;
  f64: Float64Array;
  u32: Uint32Array;
  ip: Uint32Array;
  /** Byte view of `ip` (same memory). */
  ipBytes: Uint8Array;
  /** L7 protocol name per slot ("" while unknown): strings are shared, so no copy per flow. */
  l7: string[];

  constructor(capacity: number) {
    this.capacity = capacity;
    this.f64 = new Float64Array(capacity * F64_STRIDE);
    this.u32 = new Uint32Array(capacity * U32_STRIDE);
    this.ip = new Uint32Array(capacity * IP_STRIDE);
    this.ipBytes = new Uint8Array(this.ip.buffer);
    this.l7 = new Array<string>(capacity).fill('');
  }

  grow(capacity: number): void {
    const f = new Float64Array(capacity * F64_STRIDE); f.set(this.f64); this.f64 = f;
    const u = new Uint32Array(capacity * U32_STRIDE); u.set(this.u32); this.u32 = u;
    const p = new Uint32Array(capacity * IP_STRIDE); p.set(this.ip); this.ip = p;
    this.ipBytes = new Uint8Array(p.buffer);
    for (let s = this.capacity; s < capacity; s++) this.l7.push('');
    this.capacity = capacity;
  }

  /**
   * A copy of the client (side 0) or server (side 1) address as 16 bytes, for a record that
   * leaves the stage. Copied per record rather than kept per flow: it halves the memory of a flow.
   */
  ipOf(slot: number, side: 0 | 1): Uint8Array {
    const o = slot * IP_STRIDE * 4 + side * 16;
    return this.ipBytes.slice(o, o + 16);
  }

  clear(slot: number): void {
    this.f64.fill(0, slot * F64_STRIDE, (slot + 1) * F64_STRIDE);
    this.u32.fill(0, slot * U32_STRIDE, (slot + 1) * U32_STRIDE);
    this.ip.fill(0, slot * IP_STRIDE, (slot + 1) * IP_STRIDE);
    this.l7[slot] = '';
  }

  clearDeltas(slot: number): void {
    this.f64.fill(0, slot * F64_STRIDE + F_DELTA_FIRST, slot * F64_STRIDE + F_DELTA_LAST + 1);
    this.u32.fill(0, slot * U32_STRIDE + U_DELTA_FIRST, slot * U32_STRIDE + U_DELTA_LAST + 1);
  }
}
