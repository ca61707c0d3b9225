// The flow map: MetaPacket batches in, per-second flow reports and L7 payloads out.
// Packets are matched to flows by the bidirectional 5-tuple + VLAN + tunnel, through a chained
// hash table over slot numbers; flow state lives in typed arrays (flow-slots.ts), and reports
// and payloads go out as one reused record each (flow-report.ts), so the per-packet path
// allocates nothing unless a caller asks for object copies (onFlow / onAppPayload).
// Time is the packets' own: `advance` and each packet's timestamp move the clock.
import { flowtap } from '../../lib/proto';
import { IPPROTO_TCP, IPPROTO_UDP, PacketBatch, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../../lib/packet-batch';
import { FlowMapConfig, FlowTimeouts, flowMapConfig } from './flow-config';
import { TimerWheel } from './timer-wheel';
import { FlowReport, PayloadReport, toAppPayload, toFlow } from './flow-report';
import { SERVER_L7, SERVER_SYNACK, ServiceTable, scoresClose, serverByPort } from './service-table';
import * as S from './flow-slots';
import {
  CLOSE_CLIENT_SOURCE_PORT_REUSE, CLOSE_TYPE_NAMES, MARK_ANY_PAYLOAD, MARK_FIN_CLIENT, MARK_FIN_SERVER,
  MARK_LAST_PAYLOAD_SERVER, MARK_NEW_REPORTED, MARK_QUEUE_LACK, MARK_SEQ_CLIENT, MARK_SEQ_SERVER,
  MARK_RST_OPENING, MARK_RTT_DONE, MARK_ZWIN_CLIENT, MARK_ZWIN_SERVER, DUPACK_SHIFT_CLIENT, DUPACK_SHIFT_SERVER, MARK_SRT_PENDING, MARK_SYN_SEEN, STATE_CLOSED, STATE_CLOSING, STATE_ESTABLISHED,
  STATE_NONE,
  STATE_RESET, STATE_SYN_RECEIVED, STATE_SYN_SENT, closeTypeOfRst, closeTypeOfTimeout, oppositeRstClose,
} from './close-type';

/** Names the L7 protocol of a flow from one of its payloads ("" while unknown). */
export type InferL7 = (flowId: number, payload: Uint8Array, fromClient: boolean, protocol: number, serverPort: number) => string;

/**
 * Where reports go. Each report is offered to the record callback (a reused record, valid only
 * during the call: encode or copy it) and to the object callback (a fresh copy), whichever is set.
 */
export interface FlowMapOutputs {
  /** Every flow active in a second (report_time = that second), and once more when it closes. */
  onFlow?(flow: flowtap.IFlow): void;
  onFlowReport?(report: FlowReport): void;
  /** Every packet with a captured L4 payload (the payload is a copy, safe to keep). */
  onAppPayload?(payload: flowtap.IAppPayload): void;
  onPayloadReport?(payload: PayloadReport): void;
}

/**
 * Drop reasons (counted, never thrown):
 * - flow_map_full: a packet would have opened a flow past `maxFlows`.
 * - non_ip: a row whose ip_version is neither 4 nor 6.
 * - bad_timestamp: a row whose timestamp is not a positive number.
 */
export type FlowDropReason = 'flow_map_full' | 'non_ip' | 'bad_timestamp';

const US = 1e6;
const INITIAL_CAPACITY = 1024;
/** Out-of-order window when the handshake rtt is unknown (tshark's default too). */
const OOO_DEFAULT_WINDOW_US = 3000;

function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

function endpointHash(w: Uint32Array, o: number, port: number): number {
  let h = Math.imul(port + 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ w[o], 0xcc9e2d51) + 0x1b873593;
  h = Math.imul(h ^ w[o + 1], 0xcc9e2d51) + 0x1b873593;
  h = Math.imul(h ^ w[o + 2], 0xcc9e2d51) + 0x1b873593;
  h = Math.imul(h ^ w[o + 3], 0xcc9e2d51);
  return mix32(h);
}

export class FlowMap {
  readonly drops: Record<FlowDropReason, number> = { flow_map_full: 0, non_ip: 0, bad_timestamp: 0 };
  /** Monotonic totals for Prometheus counters. */
  readonly totals = { packets: 0, flowsCreated: 0, flowsClosed: 0, reports: 0, payloads: 0, directionsCorrected: 0 };
  readonly config: FlowMapConfig;

  /** Server evidence per endpoint, for flows whose SYN was not seen. */
  readonly services: ServiceTable;
  private readonly slots: S.FlowSlots;
  private readonly wheel: TimerWheel;
  private buckets: Int32Array;      // slot + 1 of the chain head (0: empty)
  private bucketMask: number;
  private freeHead = 0;             // slot + 1 of the first free slot, chained through U_CHAIN (0: none)
  private used = 0;
  /** Per-second counters of the flows with packets in the current second. */
  private readonly deltas = new S.DeltaRows();
  private readonly flowReport = new FlowReport();
  private readonly payloadReport = new PayloadReport();
  private readonly wantPayloads: boolean;
  private curSec = -1;
  private clockUs = 0;
  private nextFlowId = 1;
  /** Set by createFlow: whether the packet that opened the flow came from its client. */
  private createdFromClient = true;
  private readonly expireSlot = (slot: number) => this.closeByTimeout(slot);
  private readonly deadlineOf = (slot: number) => this.slots.f64[slot * S.F64_STRIDE + S.F_END_US] + this.timeoutOf(slot);

  constructor(
    private readonly outputs: FlowMapOutputs,
    private readonly infer?: InferL7,
    config: Parameters<typeof flowMapConfig>[0] = {},
  ) {
    this.config = flowMapConfig(config);
    this.nextFlowId = this.config.firstFlowId;
    const cap = Math.max(1, Math.min(INITIAL_CAPACITY, this.config.maxFlows));
    this.slots = new S.FlowSlots(cap);
    this.services = new ServiceTable(this.config.serviceTableSize);
    this.wheel = new TimerWheel(cap, this.deadlineOf);
    for (let s = cap - 1; s >= 0; s--) this.pushFree(s);
    this.wantPayloads = this.config.emitPayloads && (outputs.onAppPayload !== undefined || outputs.onPayloadReport !== undefined);
    this.bucketMask = 0;
    this.buckets = new Int32Array(0);
    this.rebuildBuckets(cap);
  }

  /** Gauge: flows open now. */
  get flowsOpen(): number {
    return this.used;
  }

  /** The packet clock (µs): the latest timestamp seen or advanced to. */
  get nowUs(): number {
    return this.clockUs;
  }

  processBatch(b: PacketBatch): void {
    for (let i = 0; i < b.count; i++) this.processPacket(b, i);
  }

  /** Moves the clock: emits the reports of every second now complete, then expires flows. */
  advance(nowUs: number): void {
    if (!(nowUs > 0)) return;
    const sec = Math.floor(nowUs / US);
    if (this.curSec < 0) this.start(nowUs);
    if (sec > this.curSec) {
      this.emitSecond(this.curSec);
      this.curSec = sec;
    }
    if (nowUs > this.clockUs) this.clockUs = nowUs;
    this.wheel.expire(nowUs, this.expireSlot);
  }

  /** End of stream: reports the current second and closes every flow with the close type its timeout would give. */
  flush(): void {
    if (this.curSec < 0) return;
    this.emitSecond(this.curSec);
    const b = this.slots.u8;
    for (let slot = 0; slot < this.slots.capacity; slot++) {
      if (b[slot * S.U8_STRIDE + S.B_IPVER] !== 0) this.closeByTimeout(slot);
    }
  }

  /** The first time seen sets the current second and the timer wheel's cursor. */
  private start(nowUs: number): void {
    this.curSec = Math.floor(nowUs / US);
    this.wheel.expire(nowUs, this.expireSlot);
  }

  private processPacket(b: PacketBatch, i: number): void {
    const ts = b.timestampUs[i];
    if (!(ts > 0)) { this.drops.bad_timestamp++; return; }
    const ver = b.ipVersion[i];
    if (ver !== 4 && ver !== 6) { this.drops.non_ip++; return; }
    this.totals.packets++;
    if (this.curSec < 0) this.start(ts);
    else if (ts >= (this.curSec + 1) * US) this.advance(ts);
    if (ts > this.clockUs) this.clockUs = ts;

    const proto = b.protocol[i];
    const flags = proto === IPPROTO_TCP ? b.tcpFlags[i] : 0;
    const sport = b.portSrc[i];
    const dport = b.portDst[i];
    const vlan = this.config.vlanInKey ? b.vlan[i] : 0;
    const tunType = b.tunnelType[i];
    const tunId = b.tunnelId[i];
    const src = b.ipSrc32;
    const dst = b.ipDst32;
    const o = i * 4;
    const hash = mix32(((endpointHash(src, o, sport) + endpointHash(dst, o, dport)) >>> 0)
      ^ Math.imul(proto | (vlan << 8) | (tunType << 24), 0x27d4eb2f) ^ Math.imul(tunId, 0x165667b1));

    // Find the flow and the packet's direction in it.
    const u = this.slots.u32;
    const ip = this.slots.ip;
    const key = S.keyOf(proto, tunType, vlan);
    const portsFwd = (sport | (dport << 16)) >>> 0;
    const portsRev = (dport | (sport << 16)) >>> 0;
    let slot = -1;
    let fromClient = true;
    for (let s = this.buckets[hash & this.bucketMask] - 1; s >= 0; s = u[s * S.U32_STRIDE + S.U_CHAIN] - 1) {
      const ub = s * S.U32_STRIDE;
      if (u[ub + S.U_HASH] !== hash || u[ub + S.U_KEY] !== key || u[ub + S.U_TUN_ID] !== tunId) continue;
      const ib = s * S.IP_STRIDE;
      if (u[ub + S.U_PORTS] === portsFwd
        && ip[ib] === src[o] && ip[ib + 1] === src[o + 1] && ip[ib + 2] === src[o + 2] && ip[ib + 3] === src[o + 3]
        && ip[ib + 4] === dst[o] && ip[ib + 5] === dst[o + 1] && ip[ib + 6] === dst[o + 2] && ip[ib + 7] === dst[o + 3]) {
        slot = s; fromClient = true; break;
      }
      if (u[ub + S.U_PORTS] === portsRev
        && ip[ib] === dst[o] && ip[ib + 1] === dst[o + 1] && ip[ib + 2] === dst[o + 2] && ip[ib + 3] === dst[o + 3]
        && ip[ib + 4] === src[o] && ip[ib + 5] === src[o + 1] && ip[ib + 6] === src[o + 2] && ip[ib + 7] === src[o + 3]) {
        slot = s; fromClient = false; break;
      }
    }

    // A SYN on a finished 5-tuple, or with a new ISN on an established one, starts a new flow.
    if (slot >= 0 && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN) {
      const ub = slot * S.U32_STRIDE;
      const state = this.slots.u8[slot * S.U8_STRIDE + S.B_STATE];
      if (state === STATE_CLOSING || state === STATE_CLOSED || state === STATE_RESET) {
        this.closeByTimeout(slot);
        slot = -1;
      } else if (state === STATE_ESTABLISHED
        && (!(u[ub + S.U_MARKS] & MARK_SYN_SEEN) || u[ub + S.U_SYN_SEQ] !== b.tcpSeq[i] || !fromClient)) {
        this.close(slot, CLOSE_CLIENT_SOURCE_PORT_REUSE, this.curSec);
        slot = -1;
      }
    }
    if (slot < 0) {
      slot = this.createFlow(b, i, hash, flags);
      if (slot < 0) { this.drops.flow_map_full++; return; }
      fromClient = this.createdFromClient;
    }
    this.count(slot, b, i, ts, fromClient, flags);
  }

  private count(slot: number, b: PacketBatch, i: number, ts: number, fromClient: boolean, flags: number): void {
    const f64 = this.slots.f64;
    const u = this.slots.u32;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const l4 = b.l4PayloadLen[i];
    let row = u[ub + S.U_DELTA_ROW] - 1;
    if (row < 0) {
      row = this.deltas.take(slot);
      u[ub + S.U_DELTA_ROW] = row + 1;
    }
    const df = this.deltas.f64;
    const db = row * S.DF64_STRIDE;
    const du = this.deltas.u32;
    const dub = row * S.DU32_STRIDE;
    if (fromClient) {
      df[db + S.D_PKT_TX]++;
      df[db + S.D_BYTE_TX] += b.frameLen[i];
      df[db + S.D_L3_TX] += b.l3Len[i];
      df[db + S.D_L4_TX] += l4;
      du[dub + S.DU_FLAGS_TX] |= flags;
    } else {
      df[db + S.D_PKT_RX]++;
      df[db + S.D_BYTE_RX] += b.frameLen[i];
      df[db + S.D_L3_RX] += b.l3Len[i];
      df[db + S.D_L4_RX] += l4;
      du[dub + S.DU_FLAGS_RX] |= flags;
    }
    if (ts > f64[fb + S.F_END_US]) f64[fb + S.F_END_US] = ts;
    const proto = u[ub + S.U_KEY] & 0xff;
    if (proto === IPPROTO_TCP) this.tcpUpdate(slot, row, b, i, ts, fromClient, flags);
    if (l4 > 0) {
      this.responseTimes(slot, row, ts, fromClient);
      if (b.payloadCap[i] > 0) this.payload(slot, b, i, ts, fromClient);
    }
    this.wheel.schedule(slot, this.deadlineOf(slot));
  }

  /** The TCP state machine, handshake RTT, SRT and the sequence analysis of one packet. */
  private tcpUpdate(slot: number, row: number, b: PacketBatch, i: number, ts: number, fromClient: boolean, flags: number): void {
    const f64 = this.slots.f64;
    const u = this.slots.u32;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const bb = slot * S.U8_STRIDE;
    const df = this.deltas.f64;
    const db = row * S.DF64_STRIDE;
    const du = this.deltas.u32;
    const dub = row * S.DU32_STRIDE;
    const syn = (flags & TCP_SYN) !== 0;
    const ack = (flags & TCP_ACK) !== 0;
    const seq = b.tcpSeq[i];
    let state = this.slots.u8[bb + S.B_STATE];
    let marks = u[ub + S.U_MARKS];

    if (syn && !ack) {
      du[dub + S.DU_SYN]++;
      u[ub + S.U_SYN_TOTAL]++;
      if (!(marks & MARK_SYN_SEEN)) {
        marks |= MARK_SYN_SEEN;
        u[ub + S.U_SYN_SEQ] = seq;
        f64[fb + S.F_SYN_US] = ts;
        if (state === STATE_NONE) state = STATE_SYN_SENT;
      } else {
        // Measure the handshake from the SYN that got answered (the latest), as tshark does.
        if (state === STATE_SYN_SENT && fromClient) f64[fb + S.F_SYN_US] = ts;
        du[dub + S.DU_RETRANS_SYN]++;
      }
    } else if (syn && ack) {
      du[dub + S.DU_SYNACK]++;
      u[ub + S.U_SYNACK_TOTAL]++;
      if (u[ub + S.U_SYNACK_TOTAL] === 1) this.services.markServer(b.ipSrc32, i * 4, b.portSrc[i], IPPROTO_TCP, SERVER_SYNACK);
      if (u[ub + S.U_SYNACK_TOTAL] > 1) {
        du[dub + S.DU_RETRANS_SYNACK]++;
        if (state === STATE_ESTABLISHED && (marks & MARK_SYN_SEEN)) marks |= MARK_QUEUE_LACK;
      } else if (state === STATE_NONE || state === STATE_SYN_SENT) {
        state = STATE_SYN_RECEIVED;
        f64[fb + S.F_SYNACK_US] = ts;
        if (f64[fb + S.F_SYN_US] > 0) {
          df[db + S.D_RTT_SERVER] = ts - f64[fb + S.F_SYN_US];
          du[dub + S.DU_RTT_SERVER_N] = 1;
        }
      }
    } else if (ack && !(flags & TCP_RST) && fromClient && state === STATE_SYN_RECEIVED) {
      state = STATE_ESTABLISHED;
      const synAck = f64[fb + S.F_SYNACK_US];
      if (synAck > 0) {
        df[db + S.D_RTT_CLIENT] = ts - synAck;
        du[dub + S.DU_RTT_CLIENT_N] = 1;
      }
    }
    // Handshake rtt as tshark's initial_rtt: from the latest SYN to the first later segment that
    // carries an ACK without SYN, whichever side sent it: the handshake's last ACK, the server's
    // RST-ACK of a refused connection, or the client's ACK when the SYN-ACK was not captured.
    // A zero delta (timestamps too coarse) is kept as "not measurable" (tshark waits for the next ACK).
    if (ack && !syn && (marks & (MARK_SYN_SEEN | MARK_RTT_DONE)) === MARK_SYN_SEEN) {
      marks |= MARK_RTT_DONE;
      const rtt = ts - f64[fb + S.F_SYN_US];
      if (rtt > 0) {
        df[db + S.D_RTT] = rtt;
        u[ub + S.U_IRTT] = Math.min(rtt, 0xffffffff);
      }
    }
    if (state === STATE_NONE) state = STATE_ESTABLISHED; // start not captured: mid-stream
    if (flags & TCP_FIN) {
      du[dub + S.DU_FIN]++;
      marks |= fromClient ? MARK_FIN_CLIENT : MARK_FIN_SERVER;
      if (state !== STATE_RESET) {
        state = (marks & (MARK_FIN_CLIENT | MARK_FIN_SERVER)) === (MARK_FIN_CLIENT | MARK_FIN_SERVER) ? STATE_CLOSED : STATE_CLOSING;
      }
    }
    if ((flags & TCP_RST) && state !== STATE_RESET) {
      this.slots.u8[bb + S.B_RST_CLOSE] = closeTypeOfRst(state, fromClient);
      if (state === STATE_SYN_SENT || state === STATE_SYN_RECEIVED) marks |= MARK_RST_OPENING;
      state = STATE_RESET;
    }
    // Sequence analysis. A segment that starts below the highest sequence seen in its direction
    // is a (fast) retransmission when it starts where the peer's 2+ duplicate ACKs point; else
    // it is out of order when it came within one handshake rtt (3 ms when unknown) of the segment
    // that last advanced that sequence and is not a copy of it (reordering on the way, not a
    // resend); otherwise it is a retransmission. Keep-alives (one byte below the next sequence)
    // are neither. Same reading as tshark's tcp.analysis flags.
    const l4 = b.l4PayloadLen[i];
    const fin = (flags & TCP_FIN) !== 0;
    const ownZwin = fromClient ? MARK_ZWIN_CLIENT : MARK_ZWIN_SERVER;
    const peerZwin = fromClient ? MARK_ZWIN_SERVER : MARK_ZWIN_CLIENT;
    if (!(flags & (TCP_SYN | TCP_FIN | TCP_RST))) {
      if (b.tcpWindow[i] === 0) { du[dub + (fromClient ? S.DU_ZWIN_TX : S.DU_ZWIN_RX)]++; marks |= ownZwin; } else marks &= ~ownZwin;
    }
    const segLen = l4 + (syn ? 1 : 0) + (fin ? 1 : 0);
    // A zero-window probe (one byte at the next sequence while the peer's window is 0) is not
    // accepted by the peer: it does not move the sequence, so the data resent after it is no
    // retransmission (as tshark).
    const probe = l4 === 1 && !syn && !fin && (marks & peerZwin) !== 0
      && (marks & (fromClient ? MARK_SEQ_CLIENT : MARK_SEQ_SERVER)) !== 0
      && seq === u[ub + (fromClient ? S.U_NEXT_SEQ_TX : S.U_NEXT_SEQ_RX)];
    // Duplicate ACKs (a pure ACK repeating the sender's previous acknowledgement), for fast retransmissions.
    const peerDupShift = fromClient ? DUPACK_SHIFT_SERVER : DUPACK_SHIFT_CLIENT;
    if (ack) {
      const ownShift = fromClient ? DUPACK_SHIFT_CLIENT : DUPACK_SHIFT_SERVER;
      const lastAckIdx = ub + (fromClient ? S.U_LAST_ACK_TX : S.U_LAST_ACK_RX);
      const ackNo = b.tcpAck[i];
      if (ackNo === u[lastAckIdx] && segLen === 0 && !(flags & TCP_RST)) {
        const dups = (marks >>> ownShift) & 3;
        if (dups < 3) marks = (marks & ~(3 << ownShift)) | ((dups + 1) << ownShift);
      } else if (ackNo !== u[lastAckIdx]) {
        u[lastAckIdx] = ackNo;
        marks &= ~(3 << ownShift);
      }
    }
    if (segLen > 0 && !probe) {
      const seqMark = fromClient ? MARK_SEQ_CLIENT : MARK_SEQ_SERVER;
      const nextIdx = ub + (fromClient ? S.U_NEXT_SEQ_TX : S.U_NEXT_SEQ_RX);
      const timeIdx = fb + (fromClient ? S.F_NEXT_SEQ_TIME_TX : S.F_NEXT_SEQ_TIME_RX);
      const end = (seq + segLen) >>> 0;
      if (!(marks & seqMark)) {
        marks |= seqMark;
        u[nextIdx] = end;
        f64[timeIdx] = ts;
      } else {
        const next = u[nextIdx];
        if (((seq - next) | 0) < 0) {
          const keepAlive = l4 <= 1 && !syn && !fin && ((seq + 1) >>> 0) === next;
          const oooWindow = u[ub + S.U_IRTT] > 0 ? u[ub + S.U_IRTT] : OOO_DEFAULT_WINDOW_US;
          const fastRetrans = ((marks >>> peerDupShift) & 3) >= 2
            && seq === u[ub + (fromClient ? S.U_LAST_ACK_RX : S.U_LAST_ACK_TX)];
          if (keepAlive) {
            // neither
          } else if (fastRetrans) {
            du[dub + (fromClient ? S.DU_RETRANS_TX : S.DU_RETRANS_RX)]++;
          } else if (ts - f64[timeIdx] < oooWindow && end !== next) {
            du[dub + (fromClient ? S.DU_OOO_TX : S.DU_OOO_RX)]++;
          } else {
            du[dub + (fromClient ? S.DU_RETRANS_TX : S.DU_RETRANS_RX)]++;
          }
        }
        if (((end - next) | 0) > 0) { u[nextIdx] = end; f64[timeIdx] = ts; }
      }
    } else if (!(flags & TCP_RST) && (marks & (fromClient ? MARK_SEQ_CLIENT : MARK_SEQ_SERVER))) {
      // An empty segment ahead of the highest sequence: the segment before it was not captured.
      // Its data is in flight, so the highest sequence moves up (as tshark's nextseq does).
      const nextIdx = ub + (fromClient ? S.U_NEXT_SEQ_TX : S.U_NEXT_SEQ_RX);
      if (((seq - u[nextIdx]) | 0) > 0) {
        u[nextIdx] = seq;
        f64[fb + (fromClient ? S.F_NEXT_SEQ_TIME_TX : S.F_NEXT_SEQ_TIME_RX)] = ts;
      }
    }
    // SRT: from the client's data to the server's first packet acknowledging all of it.
    if (!fromClient && ack && (marks & MARK_SRT_PENDING) && (marks & MARK_SEQ_CLIENT)
      && ((b.tcpAck[i] - u[ub + S.U_NEXT_SEQ_TX]) | 0) >= 0) {
      const srt = ts - f64[fb + S.F_LAST_TX_PAYLOAD_US];
      df[db + S.D_SRT_SUM] += srt;
      if (srt > df[db + S.D_SRT_MAX]) df[db + S.D_SRT_MAX] = srt;
      du[dub + S.DU_SRT_N]++;
      marks &= ~MARK_SRT_PENDING;
    }
    this.slots.u8[bb + S.B_STATE] = state;
    u[ub + S.U_MARKS] = marks;
  }

  /** ART (client data -> server's first data) and CIT (server data -> client's next data). */
  private responseTimes(slot: number, row: number, ts: number, fromClient: boolean): void {
    const f64 = this.slots.f64;
    const u = this.slots.u32;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const df = this.deltas.f64;
    const db = row * S.DF64_STRIDE;
    const du = this.deltas.u32;
    const dub = row * S.DU32_STRIDE;
    let marks = u[ub + S.U_MARKS];
    if (fromClient) {
      if ((marks & MARK_LAST_PAYLOAD_SERVER) && f64[fb + S.F_LAST_RX_PAYLOAD_US] > 0) {
        const cit = ts - f64[fb + S.F_LAST_RX_PAYLOAD_US];
        df[db + S.D_CIT_SUM] += cit;
        if (cit > df[db + S.D_CIT_MAX]) df[db + S.D_CIT_MAX] = cit;
        du[dub + S.DU_CIT_N]++;
      }
      f64[fb + S.F_LAST_TX_PAYLOAD_US] = ts;
      marks = (marks & ~MARK_LAST_PAYLOAD_SERVER) | MARK_ANY_PAYLOAD;
      if ((u[ub + S.U_KEY] & 0xff) === IPPROTO_TCP) marks |= MARK_SRT_PENDING;
    } else {
      if (!(marks & MARK_LAST_PAYLOAD_SERVER) && (marks & MARK_ANY_PAYLOAD) && f64[fb + S.F_LAST_TX_PAYLOAD_US] > 0) {
        const art = ts - f64[fb + S.F_LAST_TX_PAYLOAD_US];
        df[db + S.D_ART_SUM] += art;
        if (art > df[db + S.D_ART_MAX]) df[db + S.D_ART_MAX] = art;
        du[dub + S.DU_ART_N]++;
      }
      f64[fb + S.F_LAST_RX_PAYLOAD_US] = ts;
      marks |= MARK_LAST_PAYLOAD_SERVER | MARK_ANY_PAYLOAD;
    }
    u[ub + S.U_MARKS] = marks;
  }

  private payload(slot: number, b: PacketBatch, i: number, ts: number, fromClient: boolean): void {
    const sl = this.slots;
    const u = sl.u32;
    const ub = slot * S.U32_STRIDE;
    const bb = slot * S.U8_STRIDE;
    const flowId = sl.f64[slot * S.F64_STRIDE + S.F_FLOW_ID];
    const wantInfer = sl.u8[bb + S.B_L7] === 0 && this.infer !== undefined && u[ub + S.U_INFER_TRIES] < this.config.inferMaxAttempts;
    if (!wantInfer && !this.wantPayloads) return;
    if (wantInfer && this.infer) {
      u[ub + S.U_INFER_TRIES]++;
      const name = this.infer(flowId, b.payload(i), fromClient, u[ub + S.U_KEY] & 0xff, u[ub + S.U_PORTS] >>> 16);
      if (name) {
        sl.setL7(slot, name);
        if (this.config.lastPayloadKind) fromClient = this.l7Direction(slot, fromClient, this.config.lastPayloadKind());
      }
    }
    if (!this.wantPayloads) return;
    this.totals.payloads++;
    const p = this.payloadReport;
    const ports = u[ub + S.U_PORTS];
    const key = u[ub + S.U_KEY];
    p.flow_id = flowId;
    p.timestamp_us = ts;
    p.ip_version = sl.u8[bb + S.B_IPVER];
    p.ipBytes = sl.ipBytes;
    p.ipOffset = slot * S.IP_STRIDE * 4;
    p.client_port = ports & 0xffff;
    p.server_port = ports >>> 16;
    p.protocol = key & 0xff;
    p.from_client = fromClient;
    p.l7_protocol = sl.l7Names[sl.u8[bb + S.B_L7]];
    p.tcp_seq = b.tcpSeq[i];
    p.payload_len = b.l4PayloadLen[i];
    p.payloadBytes = b.payloadData;
    p.payloadOffset = b.payloadOffset[i];
    p.payloadCap = b.payloadCap[i];
    p.vlan = key >>> 16;
    p.tunnel_type = (key >>> 8) & 0xff;
    p.tunnel_id = u[ub + S.U_TUN_ID];
    if (this.outputs.onPayloadReport) this.outputs.onPayloadReport(p);
    if (this.outputs.onAppPayload) this.outputs.onAppPayload(toAppPayload(p));
  }

  /**
   * An L7 parser recognised a payload as a request (kind 1) or a response (2): its receiver, or its
   * sender, is the server. For a flow whose handshake was not seen, this is evidence for the
   * service table and, while the flow has not been reported yet, turns the flow round when the
   * guess was wrong. Returns whether the packet now comes from the client.
   */
  private l7Direction(slot: number, fromClient: boolean, kind: number): boolean {
    if (kind !== 1 && kind !== 2) return fromClient;
    const u = this.slots.u32;
    const ub = slot * S.U32_STRIDE;
    if ((u[ub + S.U_MARKS] & MARK_SYN_SEEN) || u[ub + S.U_SYNACK_TOTAL] > 0) return fromClient;
    // A configured server port outranks a parser's reading.
    const clientPort = u[ub + S.U_PORTS] & 0xffff, serverPort = u[ub + S.U_PORTS] >>> 16;
    if (this.config.serverPorts.has(clientPort) || this.config.serverPorts.has(serverPort)) return fromClient;
    const senderIsClient = kind === 1;
    let serverSide = 1;
    if (senderIsClient !== fromClient) {
      if (u[ub + S.U_MARKS] & MARK_NEW_REPORTED) serverSide = 0; // already reported: only learn
      else { this.swapDirection(slot); fromClient = !fromClient; this.totals.directionsCorrected++; }
    }
    const ports = u[ub + S.U_PORTS];
    this.services.markServer(this.slots.ip, slot * S.IP_STRIDE + serverSide * 4, serverSide === 0 ? ports & 0xffff : ports >>> 16,
      u[ub + S.U_KEY] & 0xff, SERVER_L7);
    return fromClient;
  }

  /**
   * Exchanges client and server of a flow not yet reported (its key hash is symmetric, so it
   * stays in its bucket). Only called on a packet of the flow, so it has a delta row.
   */
  private swapDirection(slot: number): void {
    const f = this.slots.f64;
    const u = this.slots.u32;
    const ip = this.slots.ip;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const ib = slot * S.IP_STRIDE;
    const row = u[ub + S.U_DELTA_ROW] - 1;
    const df = this.deltas.f64;
    const db = row * S.DF64_STRIDE;
    const du = this.deltas.u32;
    const dub = row * S.DU32_STRIDE;
    const swapF = (a: number, b: number) => { const t = f[fb + a]; f[fb + a] = f[fb + b]; f[fb + b] = t; };
    const swapU = (a: number, b: number) => { const t = u[ub + a]; u[ub + a] = u[ub + b]; u[ub + b] = t; };
    const swapDF = (a: number, b: number) => { const t = df[db + a]; df[db + a] = df[db + b]; df[db + b] = t; };
    const swapDU = (a: number, b: number) => { const t = du[dub + a]; du[dub + a] = du[dub + b]; du[dub + b] = t; };
    for (let k = 0; k < 4; k++) { const t = ip[ib + k]; ip[ib + k] = ip[ib + 4 + k]; ip[ib + 4 + k] = t; }
    const ports = u[ub + S.U_PORTS];
    u[ub + S.U_PORTS] = ((ports >>> 16) | (ports << 16)) >>> 0;
    swapDF(S.D_PKT_TX, S.D_PKT_RX); swapDF(S.D_BYTE_TX, S.D_BYTE_RX); swapDF(S.D_L3_TX, S.D_L3_RX); swapDF(S.D_L4_TX, S.D_L4_RX);
    swapF(S.F_LAST_TX_PAYLOAD_US, S.F_LAST_RX_PAYLOAD_US); swapF(S.F_NEXT_SEQ_TIME_TX, S.F_NEXT_SEQ_TIME_RX);
    swapDU(S.DU_FLAGS_TX, S.DU_FLAGS_RX); swapU(S.U_NEXT_SEQ_TX, S.U_NEXT_SEQ_RX); swapDU(S.DU_RETRANS_TX, S.DU_RETRANS_RX);
    swapDU(S.DU_ZWIN_TX, S.DU_ZWIN_RX); swapDU(S.DU_OOO_TX, S.DU_OOO_RX); swapU(S.U_LAST_ACK_TX, S.U_LAST_ACK_RX);
    // Response times measured with the roles the wrong way round mean nothing: drop them.
    for (const k of [S.D_SRT_SUM, S.D_SRT_MAX, S.D_ART_SUM, S.D_ART_MAX, S.D_CIT_SUM, S.D_CIT_MAX]) df[db + k] = 0;
    du[dub + S.DU_SRT_N] = 0; du[dub + S.DU_ART_N] = 0; du[dub + S.DU_CIT_N] = 0;
    let m = u[ub + S.U_MARKS];
    const swapBits = (x: number, y: number) => {
      const hx = (m & x) !== 0, hy = (m & y) !== 0;
      m &= ~(x | y);
      if (hx) m |= y;
      if (hy) m |= x;
    };
    swapBits(MARK_FIN_CLIENT, MARK_FIN_SERVER);
    swapBits(MARK_SEQ_CLIENT, MARK_SEQ_SERVER);
    swapBits(MARK_ZWIN_CLIENT, MARK_ZWIN_SERVER);
    const dupC = (m >>> DUPACK_SHIFT_CLIENT) & 3, dupS = (m >>> DUPACK_SHIFT_SERVER) & 3;
    m = (m & ~((3 << DUPACK_SHIFT_CLIENT) | (3 << DUPACK_SHIFT_SERVER))) | (dupS << DUPACK_SHIFT_CLIENT) | (dupC << DUPACK_SHIFT_SERVER);
    m ^= MARK_LAST_PAYLOAD_SERVER;
    m &= ~MARK_SRT_PENDING;
    u[ub + S.U_MARKS] = m;
    const bb = slot * S.U8_STRIDE;
    const rst = this.slots.u8[bb + S.B_RST_CLOSE];
    if (rst !== 0) this.slots.u8[bb + S.B_RST_CLOSE] = oppositeRstClose(rst);
  }

  private timeoutOf(slot: number): number {
    const t: FlowTimeouts = this.config.timeouts;
    const proto = this.slots.u32[slot * S.U32_STRIDE + S.U_KEY] & 0xff;
    if (proto === IPPROTO_UDP) return t.udpUs;
    if (proto !== IPPROTO_TCP) return t.otherUs;
    switch (this.slots.u8[slot * S.U8_STRIDE + S.B_STATE]) {
      case STATE_SYN_SENT:
      case STATE_SYN_RECEIVED: return t.openingUs;
      case STATE_ESTABLISHED: return t.establishedUs;
      case STATE_CLOSING: return t.closingUs;
      case STATE_CLOSED: return t.finUs;
      case STATE_RESET: return this.slots.u32[slot * S.U32_STRIDE + S.U_MARKS] & MARK_RST_OPENING ? t.openingRstUs : t.rstUs;
      default: return t.otherUs;
    }
  }

  private pushFree(slot: number): void {
    this.slots.u32[slot * S.U32_STRIDE + S.U_CHAIN] = this.freeHead;
    this.freeHead = slot + 1;
  }

  /** Takes a free slot (growing the tables up to maxFlows) and fills the flow's key; -1 when full. */
  private createFlow(b: PacketBatch, i: number, hash: number, flags: number): number {
    if (this.freeHead === 0 && !this.growSlots()) return -1;
    const slot = this.freeHead - 1;
    const sl = this.slots;
    this.freeHead = sl.u32[slot * S.U32_STRIDE + S.U_CHAIN];
    this.used++;
    this.totals.flowsCreated++;
    sl.clear(slot);
    const sport = b.portSrc[i];
    const dport = b.portDst[i];
    const srcIsClient = this.sourceIsClient(b, i, flags);
    const proto = b.protocol[i];
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      this.services.countFlow(b.ipSrc32, i * 4, sport, proto);
      this.services.countFlow(b.ipDst32, i * 4, dport, proto);
    }
    this.createdFromClient = srcIsClient;
    const ub = slot * S.U32_STRIDE;
    const ib = slot * S.IP_STRIDE;
    const o = i * 4;
    const client = srcIsClient ? b.ipSrc32 : b.ipDst32;
    const server = srcIsClient ? b.ipDst32 : b.ipSrc32;
    for (let k = 0; k < 4; k++) { sl.ip[ib + k] = client[o + k]; sl.ip[ib + 4 + k] = server[o + k]; }
    const u = sl.u32;
    u[ub + S.U_HASH] = hash;
    u[ub + S.U_PORTS] = srcIsClient ? (sport | (dport << 16)) >>> 0 : (dport | (sport << 16)) >>> 0;
    u[ub + S.U_KEY] = S.keyOf(proto, b.tunnelType[i], this.config.vlanInKey ? b.vlan[i] : 0);
    u[ub + S.U_TUN_ID] = b.tunnelId[i];
    sl.u8[slot * S.U8_STRIDE + S.B_IPVER] = b.ipVersion[i];
    sl.u8[slot * S.U8_STRIDE + S.B_STATE] = STATE_NONE;
    const fb = slot * S.F64_STRIDE;
    sl.f64[fb + S.F_START_US] = b.timestampUs[i];
    sl.f64[fb + S.F_END_US] = b.timestampUs[i];
    sl.f64[fb + S.F_FLOW_ID] = this.nextFlowId++;
    const bucket = hash & this.bucketMask;
    u[ub + S.U_CHAIN] = this.buckets[bucket];
    this.buckets[bucket] = slot + 1;
    return slot;
  }
  /**
   * Who is the client when a flow starts with this packet: the SYN's sender, the SYN-ACK's
   * receiver. Without either: a configured server port; else the endpoint with the clearly
   * higher server score in the service table (SYN-ACKs, L7, flow count); else the port seen in
   * clearly more flows (any address); else the port rule
   * (below 32768, then below 1024, then the lower); else the first packet's sender.
   */
  private sourceIsClient(b: PacketBatch, i: number, flags: number): boolean {
    const proto = b.protocol[i];
    if (proto === IPPROTO_TCP && (flags & TCP_SYN)) return (flags & TCP_ACK) === 0;
    const sport = b.portSrc[i], dport = b.portDst[i];
    const ports = this.config.serverPorts;
    const srcServer = ports.has(sport);
    const dstServer = ports.has(dport);
    if (srcServer !== dstServer) return dstServer;
    if (proto === IPPROTO_TCP || proto === IPPROTO_UDP) {
      const sScore = this.services.score(b.ipSrc32, i * 4, sport, proto);
      const dScore = this.services.score(b.ipDst32, i * 4, dport, proto);
      if (!scoresClose(sScore, dScore)) return dScore > sScore;
      const sPort = this.services.portFlows(sport, proto);
      const dPort = this.services.portFlows(dport, proto);
      if (!scoresClose(sPort, dPort)) return dPort > sPort;
    }
    const byPort = serverByPort(sport, dport);
    return byPort === 0 ? true : byPort < 0;
  }

  private growSlots(): boolean {
    const old = this.slots.capacity;
    const cap = Math.min(old * 2, this.config.maxFlows);
    if (cap <= old) return false;
    this.slots.grow(cap);
    this.wheel.grow(cap);
    for (let s = cap - 1; s >= old; s--) this.pushFree(s);
    this.rebuildBuckets(cap);
    return true;
  }

  private rebuildBuckets(capacity: number): void {
    let size = 16;
    while (size < capacity * 2) size *= 2;
    this.buckets = new Int32Array(size);
    this.bucketMask = size - 1;
    const u = this.slots.u32;
    for (let s = 0; s < this.slots.capacity; s++) {
      if (this.slots.u8[s * S.U8_STRIDE + S.B_IPVER] === 0) continue;
      const ub = s * S.U32_STRIDE;
      const bucket = u[ub + S.U_HASH] & this.bucketMask;
      u[ub + S.U_CHAIN] = this.buckets[bucket];
      this.buckets[bucket] = s + 1;
    }
  }

  private emitSecond(sec: number): void {
    const u = this.slots.u32;
    const rows = this.deltas;
    for (let row = 0; row < rows.count; row++) {
      const slot = rows.slotOf[row];
      u[slot * S.U32_STRIDE + S.U_DELTA_ROW] = 0;
      this.report(slot, row, sec, 0);
    }
    rows.releaseAll();
  }

  private closeByTimeout(slot: number): void {
    const u = this.slots.u32;
    const bb = slot * S.U8_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const code = closeTypeOfTimeout(this.slots.u8[bb + S.B_STATE], u[ub + S.U_MARKS], u[ub + S.U_SYN_TOTAL],
      u[ub + S.U_SYNACK_TOTAL], this.slots.u8[bb + S.B_RST_CLOSE]);
    this.close(slot, code, this.curSec);
  }

  private close(slot: number, closeCode: number, reportSec: number): void {
    const u = this.slots.u32;
    const ub = slot * S.U32_STRIDE;
    this.wheel.cancel(slot);
    const row = u[ub + S.U_DELTA_ROW] - 1;
    this.report(slot, row, reportSec, closeCode);
    if (row >= 0) {
      u[ub + S.U_DELTA_ROW] = 0;
      const moved = this.deltas.release(row);
      if (moved >= 0) u[moved * S.U32_STRIDE + S.U_DELTA_ROW] = row + 1;
    }
    // Unlink from its hash chain.
    const bucket = u[ub + S.U_HASH] & this.bucketMask;
    let prev = -1;
    for (let s = this.buckets[bucket] - 1; s >= 0; s = u[s * S.U32_STRIDE + S.U_CHAIN] - 1) {
      if (s === slot) {
        if (prev < 0) this.buckets[bucket] = u[ub + S.U_CHAIN];
        else u[prev * S.U32_STRIDE + S.U_CHAIN] = u[ub + S.U_CHAIN];
        break;
      }
      prev = s;
    }
    this.slots.u8[slot * S.U8_STRIDE + S.B_IPVER] = 0; // marks the slot free
    this.pushFree(slot);
    this.used--;
    this.totals.flowsClosed++;
  }

  /** Reports a slot's counters since its previous report (`row`: its delta row, -1 when idle this second). */
  private report(slot: number, row: number, reportSec: number, closeCode: number): void {
    const sl = this.slots;
    const f = sl.f64;
    const u = sl.u32;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const bb = slot * S.U8_STRIDE;
    const isNew = (u[ub + S.U_MARKS] & MARK_NEW_REPORTED) === 0;
    u[ub + S.U_MARKS] |= MARK_NEW_REPORTED;
    this.totals.reports++;
    const r = this.flowReport;
    const ports = u[ub + S.U_PORTS];
    const key = u[ub + S.U_KEY];
    r.flow_id = f[fb + S.F_FLOW_ID];
    r.start_time = f[fb + S.F_START_US];
    r.end_time = f[fb + S.F_END_US];
    r.report_time = reportSec * US;
    r.ip_version = sl.u8[bb + S.B_IPVER];
    r.ipBytes = sl.ipBytes;
    r.ipOffset = slot * S.IP_STRIDE * 4;
    r.client_port = ports & 0xffff;
    r.server_port = ports >>> 16;
    r.protocol = key & 0xff;
    r.vlan = key >>> 16;
    r.tunnel_type = (key >>> 8) & 0xff;
    r.tunnel_id = u[ub + S.U_TUN_ID];
    r.l7_protocol = sl.l7Names[sl.u8[bb + S.B_L7]];
    r.is_new_flow = isNew;
    r.is_closed = closeCode !== 0;
    r.close_type = CLOSE_TYPE_NAMES[closeCode];
    if (row < 0) {
      r.packet_tx = 0; r.packet_rx = 0; r.byte_tx = 0; r.byte_rx = 0;
      r.l3_byte_tx = 0; r.l3_byte_rx = 0; r.l4_byte_tx = 0; r.l4_byte_rx = 0;
      r.tcp_flags_tx = 0; r.tcp_flags_rx = 0; r.syn_count = 0; r.synack_count = 0; r.fin_count = 0;
      r.rtt = 0; r.rtt_client_sum = 0; r.rtt_client_count = 0; r.rtt_client_max = 0;
      r.rtt_server_sum = 0; r.rtt_server_count = 0; r.rtt_server_max = 0;
      r.srt_sum = 0; r.srt_count = 0; r.srt_max = 0; r.art_sum = 0; r.art_count = 0; r.art_max = 0;
      r.cit_sum = 0; r.cit_count = 0; r.cit_max = 0;
      r.retrans_tx = 0; r.retrans_rx = 0; r.zero_win_tx = 0; r.zero_win_rx = 0;
      r.ooo_tx = 0; r.ooo_rx = 0; r.retrans_syn = 0; r.retrans_synack = 0;
    } else {
      const df = this.deltas.f64;
      const db = row * S.DF64_STRIDE;
      const du = this.deltas.u32;
      const dub = row * S.DU32_STRIDE;
      r.packet_tx = df[db + S.D_PKT_TX];
      r.packet_rx = df[db + S.D_PKT_RX];
      r.byte_tx = df[db + S.D_BYTE_TX];
      r.byte_rx = df[db + S.D_BYTE_RX];
      r.l3_byte_tx = df[db + S.D_L3_TX];
      r.l3_byte_rx = df[db + S.D_L3_RX];
      r.l4_byte_tx = df[db + S.D_L4_TX];
      r.l4_byte_rx = df[db + S.D_L4_RX];
      r.tcp_flags_tx = du[dub + S.DU_FLAGS_TX];
      r.tcp_flags_rx = du[dub + S.DU_FLAGS_RX];
      r.syn_count = du[dub + S.DU_SYN];
      r.synack_count = du[dub + S.DU_SYNACK];
      r.fin_count = du[dub + S.DU_FIN];
      r.rtt = df[db + S.D_RTT];
      r.rtt_client_sum = df[db + S.D_RTT_CLIENT];
      r.rtt_client_count = du[dub + S.DU_RTT_CLIENT_N];
      r.rtt_client_max = df[db + S.D_RTT_CLIENT];
      r.rtt_server_sum = df[db + S.D_RTT_SERVER];
      r.rtt_server_count = du[dub + S.DU_RTT_SERVER_N];
      r.rtt_server_max = df[db + S.D_RTT_SERVER];
      r.srt_sum = df[db + S.D_SRT_SUM];
      r.srt_count = du[dub + S.DU_SRT_N];
      r.srt_max = df[db + S.D_SRT_MAX];
      r.art_sum = df[db + S.D_ART_SUM];
      r.art_count = du[dub + S.DU_ART_N];
      r.art_max = df[db + S.D_ART_MAX];
      r.cit_sum = df[db + S.D_CIT_SUM];
      r.cit_count = du[dub + S.DU_CIT_N];
      r.cit_max = df[db + S.D_CIT_MAX];
      r.retrans_tx = du[dub + S.DU_RETRANS_TX];
      r.retrans_rx = du[dub + S.DU_RETRANS_RX];
      r.zero_win_tx = du[dub + S.DU_ZWIN_TX];
      r.zero_win_rx = du[dub + S.DU_ZWIN_RX];
      r.ooo_tx = du[dub + S.DU_OOO_TX];
      r.ooo_rx = du[dub + S.DU_OOO_RX];
      r.retrans_syn = du[dub + S.DU_RETRANS_SYN];
      r.retrans_synack = du[dub + S.DU_RETRANS_SYNACK];
    }
    if (this.outputs.onFlowReport) this.outputs.onFlowReport(r);
    if (this.outputs.onFlow) this.outputs.onFlow(toFlow(r));
  }
}
