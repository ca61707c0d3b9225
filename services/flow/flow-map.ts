// The flow map: MetaPacket batches in, per-second flow reports and L7 payloads out.
// Packets are matched to flows by the bidirectional 5-tuple + VLAN + tunnel, through a chained
// hash table over slot numbers; flow state lives in typed arrays (flow-slots.ts), so the
// per-packet path allocates nothing except for payload packets (the AppPayload it emits).
// Time is the packets' own: `advance` and each packet's timestamp move the clock.
import { flowtap } from '../../lib/proto';
import { IPPROTO_TCP, IPPROTO_UDP, PacketBatch, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../../lib/packet-batch';
import { FlowMapConfig, FlowTimeouts, flowMapConfig } from './flow-config';
import { TimerWheel } from './timer-wheel';
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

export interface FlowMapOutputs {
  /** Every flow active in a second (report_time = that second), and once more when it closes. */
  onFlow(flow: flowtap.IFlow): void;
  /** Every packet with a captured L4 payload (the payload is a copy, safe to keep). */
  onAppPayload?(payload: flowtap.IAppPayload): void;
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
  private freeSlots: Int32Array;
  private freeCount = 0;
  private used = 0;
  private active: Int32Array;       // slots with packets in the current second
  private activeCount = 0;
  private curSec = -1;
  private clockUs = 0;
  private nextFlowId = 1;
  /** Set by createFlow: whether the packet that opened the flow came from its client. */
  private createdFromClient = true;
  private readonly expireSlot = (slot: number) => this.closeByTimeout(slot);

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
    this.wheel = new TimerWheel(cap);
    this.freeSlots = new Int32Array(cap);
    for (let s = cap - 1; s >= 0; s--) this.freeSlots[this.freeCount++] = s;
    this.active = new Int32Array(cap);
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
    const u = this.slots.u32;
    for (let slot = 0; slot < this.slots.capacity; slot++) {
      if (u[slot * S.U32_STRIDE + S.U_IPVER] !== 0) this.closeByTimeout(slot);
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
    let slot = -1;
    let fromClient = true;
    for (let s = this.buckets[hash & this.bucketMask] - 1; s >= 0; s = u[s * S.U32_STRIDE + S.U_CHAIN] - 1) {
      const ub = s * S.U32_STRIDE;
      if (u[ub + S.U_HASH] !== hash || u[ub + S.U_PROTO] !== proto || u[ub + S.U_VLAN] !== vlan
        || u[ub + S.U_TUN_TYPE] !== tunType || u[ub + S.U_TUN_ID] !== tunId) continue;
      const ib = s * S.IP_STRIDE;
      if (u[ub + S.U_PORT0] === sport && u[ub + S.U_PORT1] === dport
        && ip[ib] === src[o] && ip[ib + 1] === src[o + 1] && ip[ib + 2] === src[o + 2] && ip[ib + 3] === src[o + 3]
        && ip[ib + 4] === dst[o] && ip[ib + 5] === dst[o + 1] && ip[ib + 6] === dst[o + 2] && ip[ib + 7] === dst[o + 3]) {
        slot = s; fromClient = true; break;
      }
      if (u[ub + S.U_PORT0] === dport && u[ub + S.U_PORT1] === sport
        && ip[ib] === dst[o] && ip[ib + 1] === dst[o + 1] && ip[ib + 2] === dst[o + 2] && ip[ib + 3] === dst[o + 3]
        && ip[ib + 4] === src[o] && ip[ib + 5] === src[o + 1] && ip[ib + 6] === src[o + 2] && ip[ib + 7] === src[o + 3]) {
        slot = s; fromClient = false; break;
      }
    }

    // A SYN on a finished 5-tuple, or with a new ISN on an established one, starts a new flow.
    if (slot >= 0 && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN) {
      const ub = slot * S.U32_STRIDE;
      const state = u[ub + S.U_STATE];
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
    if (fromClient) {
      f64[fb + S.F_PKT_TX]++;
      f64[fb + S.F_BYTE_TX] += b.frameLen[i];
      f64[fb + S.F_L3_TX] += b.l3Len[i];
      f64[fb + S.F_L4_TX] += l4;
      u[ub + S.U_FLAGS_TX] |= flags;
    } else {
      f64[fb + S.F_PKT_RX]++;
      f64[fb + S.F_BYTE_RX] += b.frameLen[i];
      f64[fb + S.F_L3_RX] += b.l3Len[i];
      f64[fb + S.F_L4_RX] += l4;
      u[ub + S.U_FLAGS_RX] |= flags;
    }
    if (ts > f64[fb + S.F_END_US]) f64[fb + S.F_END_US] = ts;
    if (u[ub + S.U_ACTIVE_POS] === 0) {
      this.active[this.activeCount++] = slot;
      u[ub + S.U_ACTIVE_POS] = this.activeCount;
    }
    const proto = u[ub + S.U_PROTO];
    if (proto === IPPROTO_TCP) this.tcpUpdate(slot, b, i, ts, fromClient, flags);
    if (l4 > 0) {
      this.responseTimes(slot, ts, fromClient);
      if (b.payloadCap[i] > 0) this.payload(slot, b, i, ts, fromClient);
    }
    this.wheel.schedule(slot, f64[fb + S.F_END_US] + this.timeoutOf(slot));
  }

  /** The TCP state machine, handshake RTT, SRT and the sequence analysis of one packet. */
  private tcpUpdate(slot: number, b: PacketBatch, i: number, ts: number, fromClient: boolean, flags: number): void {
    const f64 = this.slots.f64;
    const u = this.slots.u32;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const syn = (flags & TCP_SYN) !== 0;
    const ack = (flags & TCP_ACK) !== 0;
    const seq = b.tcpSeq[i];
    let state = u[ub + S.U_STATE];
    let marks = u[ub + S.U_MARKS];

    if (syn && !ack) {
      u[ub + S.U_SYN]++;
      u[ub + S.U_SYN_TOTAL]++;
      if (!(marks & MARK_SYN_SEEN)) {
        marks |= MARK_SYN_SEEN;
        u[ub + S.U_SYN_SEQ] = seq;
        f64[fb + S.F_SYN_US] = ts;
        if (state === STATE_NONE) state = STATE_SYN_SENT;
      } else {
        // Measure the handshake from the SYN that got answered (the latest), as tshark does.
        if (state === STATE_SYN_SENT && fromClient) f64[fb + S.F_SYN_US] = ts;
        u[ub + S.U_RETRANS_SYN]++;
      }
    } else if (syn && ack) {
      u[ub + S.U_SYNACK]++;
      u[ub + S.U_SYNACK_TOTAL]++;
      if (u[ub + S.U_SYNACK_TOTAL] === 1) this.services.markServer(b.ipSrc32, i * 4, b.portSrc[i], IPPROTO_TCP, SERVER_SYNACK);
      if (u[ub + S.U_SYNACK_TOTAL] > 1) {
        u[ub + S.U_RETRANS_SYNACK]++;
        if (state === STATE_ESTABLISHED && (marks & MARK_SYN_SEEN)) marks |= MARK_QUEUE_LACK;
      } else if (state === STATE_NONE || state === STATE_SYN_SENT) {
        state = STATE_SYN_RECEIVED;
        f64[fb + S.F_SYNACK_US] = ts;
        if (f64[fb + S.F_SYN_US] > 0) {
          f64[fb + S.F_RTT_SERVER] = ts - f64[fb + S.F_SYN_US];
          u[ub + S.U_RTT_SERVER_N] = 1;
        }
      }
    } else if (ack && !(flags & TCP_RST) && fromClient && state === STATE_SYN_RECEIVED) {
      state = STATE_ESTABLISHED;
      const synAck = f64[fb + S.F_SYNACK_US];
      if (synAck > 0) {
        f64[fb + S.F_RTT_CLIENT] = ts - synAck;
        u[ub + S.U_RTT_CLIENT_N] = 1;
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
        f64[fb + S.F_RTT] = rtt;
        u[ub + S.U_IRTT] = Math.min(rtt, 0xffffffff);
      }
    }
    if (state === STATE_NONE) state = STATE_ESTABLISHED; // start not captured: mid-stream
    if (flags & TCP_FIN) {
      u[ub + S.U_FIN]++;
      marks |= fromClient ? MARK_FIN_CLIENT : MARK_FIN_SERVER;
      if (state !== STATE_RESET) {
        state = (marks & (MARK_FIN_CLIENT | MARK_FIN_SERVER)) === (MARK_FIN_CLIENT | MARK_FIN_SERVER) ? STATE_CLOSED : STATE_CLOSING;
      }
    }
    if ((flags & TCP_RST) && state !== STATE_RESET) {
      u[ub + S.U_RST_CLOSE] = closeTypeOfRst(state, fromClient);
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
      if (b.tcpWindow[i] === 0) { u[ub + (fromClient ? S.U_ZWIN_TX : S.U_ZWIN_RX)]++; marks |= ownZwin; } else marks &= ~ownZwin;
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
            u[ub + (fromClient ? S.U_RETRANS_TX : S.U_RETRANS_RX)]++;
          } else if (ts - f64[timeIdx] < oooWindow && end !== next) {
            u[ub + (fromClient ? S.U_OOO_TX : S.U_OOO_RX)]++;
          } else {
            u[ub + (fromClient ? S.U_RETRANS_TX : S.U_RETRANS_RX)]++;
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
      f64[fb + S.F_SRT_SUM] += srt;
      if (srt > f64[fb + S.F_SRT_MAX]) f64[fb + S.F_SRT_MAX] = srt;
      u[ub + S.U_SRT_N]++;
      marks &= ~MARK_SRT_PENDING;
    }
    u[ub + S.U_STATE] = state;
    u[ub + S.U_MARKS] = marks;
  }

  /** ART (client data -> server's first data) and CIT (server data -> client's next data). */
  private responseTimes(slot: number, ts: number, fromClient: boolean): void {
    const f64 = this.slots.f64;
    const u = this.slots.u32;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    let marks = u[ub + S.U_MARKS];
    if (fromClient) {
      if ((marks & MARK_LAST_PAYLOAD_SERVER) && f64[fb + S.F_LAST_RX_PAYLOAD_US] > 0) {
        const cit = ts - f64[fb + S.F_LAST_RX_PAYLOAD_US];
        f64[fb + S.F_CIT_SUM] += cit;
        if (cit > f64[fb + S.F_CIT_MAX]) f64[fb + S.F_CIT_MAX] = cit;
        u[ub + S.U_CIT_N]++;
      }
      f64[fb + S.F_LAST_TX_PAYLOAD_US] = ts;
      marks = (marks & ~MARK_LAST_PAYLOAD_SERVER) | MARK_ANY_PAYLOAD;
      if (u[ub + S.U_PROTO] === IPPROTO_TCP) marks |= MARK_SRT_PENDING;
    } else {
      if (!(marks & MARK_LAST_PAYLOAD_SERVER) && (marks & MARK_ANY_PAYLOAD) && f64[fb + S.F_LAST_TX_PAYLOAD_US] > 0) {
        const art = ts - f64[fb + S.F_LAST_TX_PAYLOAD_US];
        f64[fb + S.F_ART_SUM] += art;
        if (art > f64[fb + S.F_ART_MAX]) f64[fb + S.F_ART_MAX] = art;
        u[ub + S.U_ART_N]++;
      }
      f64[fb + S.F_LAST_RX_PAYLOAD_US] = ts;
      marks |= MARK_LAST_PAYLOAD_SERVER | MARK_ANY_PAYLOAD;
    }
    u[ub + S.U_MARKS] = marks;
  }

  private payload(slot: number, b: PacketBatch, i: number, ts: number, fromClient: boolean): void {
    const u = this.slots.u32;
    const ub = slot * S.U32_STRIDE;
    const flowId = this.slots.f64[slot * S.F64_STRIDE + S.F_FLOW_ID];
    const wantInfer = this.slots.l7[slot] === '' && this.infer !== undefined && u[ub + S.U_INFER_TRIES] < this.config.inferMaxAttempts;
    const wantPayload = this.config.emitPayloads && this.outputs.onAppPayload !== undefined;
    if (!wantInfer && !wantPayload) return;
    const data = b.payload(i);
    if (wantInfer && this.infer) {
      u[ub + S.U_INFER_TRIES]++;
      const name = this.infer(flowId, data, fromClient, u[ub + S.U_PROTO], u[ub + S.U_PORT1]);
      if (name) {
        this.slots.l7[slot] = name;
        if (this.config.lastPayloadKind) fromClient = this.l7Direction(slot, fromClient, this.config.lastPayloadKind());
      }
    }
    if (!wantPayload || !this.outputs.onAppPayload) return;
    this.totals.payloads++;
    this.outputs.onAppPayload({
      flow_id: flowId,
      timestamp_us: ts,
      ip_version: u[ub + S.U_IPVER],
      ip_0: this.slots.ipOf(slot, 0),
      ip_1: this.slots.ipOf(slot, 1),
      client_port: u[ub + S.U_PORT0],
      server_port: u[ub + S.U_PORT1],
      protocol: u[ub + S.U_PROTO],
      from_client: fromClient,
      l7_protocol: this.slots.l7[slot],
      tcp_seq: b.tcpSeq[i],
      payload_len: b.l4PayloadLen[i],
      payload: Buffer.from(data),
      vlan: u[ub + S.U_VLAN],
      tunnel_type: u[ub + S.U_TUN_TYPE],
      tunnel_id: u[ub + S.U_TUN_ID],
    });
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
    if (this.config.serverPorts.has(u[ub + S.U_PORT0]) || this.config.serverPorts.has(u[ub + S.U_PORT1])) return fromClient;
    const senderIsClient = kind === 1;
    let serverSide = 1;
    if (senderIsClient !== fromClient) {
      if (u[ub + S.U_MARKS] & MARK_NEW_REPORTED) serverSide = 0; // already reported: only learn
      else { this.swapDirection(slot); fromClient = !fromClient; this.totals.directionsCorrected++; }
    }
    this.services.markServer(this.slots.ip, slot * S.IP_STRIDE + serverSide * 4, u[ub + S.U_PORT0 + serverSide], u[ub + S.U_PROTO], SERVER_L7);
    return fromClient;
  }

  /** Exchanges client and server of a flow not yet reported (its key hash is symmetric, so it stays in its bucket). */
  private swapDirection(slot: number): void {
    const f = this.slots.f64;
    const u = this.slots.u32;
    const ip = this.slots.ip;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const ib = slot * S.IP_STRIDE;
    const swapF = (a: number, b: number) => { const t = f[fb + a]; f[fb + a] = f[fb + b]; f[fb + b] = t; };
    const swapU = (a: number, b: number) => { const t = u[ub + a]; u[ub + a] = u[ub + b]; u[ub + b] = t; };
    for (let k = 0; k < 4; k++) { const t = ip[ib + k]; ip[ib + k] = ip[ib + 4 + k]; ip[ib + 4 + k] = t; }
    swapU(S.U_PORT0, S.U_PORT1);
    swapF(S.F_PKT_TX, S.F_PKT_RX); swapF(S.F_BYTE_TX, S.F_BYTE_RX); swapF(S.F_L3_TX, S.F_L3_RX); swapF(S.F_L4_TX, S.F_L4_RX);
    swapF(S.F_LAST_TX_PAYLOAD_US, S.F_LAST_RX_PAYLOAD_US); swapF(S.F_NEXT_SEQ_TIME_TX, S.F_NEXT_SEQ_TIME_RX);
    swapU(S.U_FLAGS_TX, S.U_FLAGS_RX); swapU(S.U_NEXT_SEQ_TX, S.U_NEXT_SEQ_RX); swapU(S.U_RETRANS_TX, S.U_RETRANS_RX);
    swapU(S.U_ZWIN_TX, S.U_ZWIN_RX); swapU(S.U_OOO_TX, S.U_OOO_RX); swapU(S.U_LAST_ACK_TX, S.U_LAST_ACK_RX);
    // Response times measured with the roles the wrong way round mean nothing: drop them.
    for (const k of [S.F_SRT_SUM, S.F_SRT_MAX, S.F_ART_SUM, S.F_ART_MAX, S.F_CIT_SUM, S.F_CIT_MAX]) f[fb + k] = 0;
    u[ub + S.U_SRT_N] = 0; u[ub + S.U_ART_N] = 0; u[ub + S.U_CIT_N] = 0;
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
    if (u[ub + S.U_RST_CLOSE] !== 0) u[ub + S.U_RST_CLOSE] = oppositeRstClose(u[ub + S.U_RST_CLOSE]);
  }

  private timeoutOf(slot: number): number {
    const t: FlowTimeouts = this.config.timeouts;
    const ub = slot * S.U32_STRIDE;
    const proto = this.slots.u32[ub + S.U_PROTO];
    if (proto === IPPROTO_UDP) return t.udpUs;
    if (proto !== IPPROTO_TCP) return t.otherUs;
    switch (this.slots.u32[ub + S.U_STATE]) {
      case STATE_SYN_SENT:
      case STATE_SYN_RECEIVED: return t.openingUs;
      case STATE_ESTABLISHED: return t.establishedUs;
      case STATE_CLOSING: return t.closingUs;
      case STATE_CLOSED: return t.finUs;
      case STATE_RESET: return this.slots.u32[ub + S.U_MARKS] & MARK_RST_OPENING ? t.openingRstUs : t.rstUs;
      default: return t.otherUs;
    }
  }

  /** Takes a free slot (growing the tables up to maxFlows) and fills the flow's key; -1 when full. */
  private createFlow(b: PacketBatch, i: number, hash: number, flags: number): number {
    if (this.freeCount === 0 && !this.growSlots()) return -1;
    const slot = this.freeSlots[--this.freeCount];
    this.used++;
    this.totals.flowsCreated++;
    const sl = this.slots;
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
    u[ub + S.U_PORT0] = srcIsClient ? sport : dport;
    u[ub + S.U_PORT1] = srcIsClient ? dport : sport;
    u[ub + S.U_PROTO] = b.protocol[i];
    u[ub + S.U_IPVER] = b.ipVersion[i];
    u[ub + S.U_VLAN] = this.config.vlanInKey ? b.vlan[i] : 0;
    u[ub + S.U_TUN_TYPE] = b.tunnelType[i];
    u[ub + S.U_TUN_ID] = b.tunnelId[i];
    u[ub + S.U_STATE] = STATE_NONE;
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
    const free = new Int32Array(cap);
    free.set(this.freeSlots.subarray(0, this.freeCount));
    this.freeSlots = free;
    for (let s = cap - 1; s >= old; s--) this.freeSlots[this.freeCount++] = s;
    const active = new Int32Array(cap);
    active.set(this.active.subarray(0, this.activeCount));
    this.active = active;
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
      const ub = s * S.U32_STRIDE;
      if (u[ub + S.U_IPVER] === 0) continue;
      const bucket = u[ub + S.U_HASH] & this.bucketMask;
      u[ub + S.U_CHAIN] = this.buckets[bucket];
      this.buckets[bucket] = s + 1;
    }
  }

  private emitSecond(sec: number): void {
    const u = this.slots.u32;
    const n = this.activeCount;
    this.activeCount = 0;
    for (let k = 0; k < n; k++) {
      const slot = this.active[k];
      u[slot * S.U32_STRIDE + S.U_ACTIVE_POS] = 0;
      this.outputs.onFlow(this.report(slot, sec, 0));
    }
  }

  private closeByTimeout(slot: number): void {
    const ub = slot * S.U32_STRIDE;
    const u = this.slots.u32;
    const code = closeTypeOfTimeout(u[ub + S.U_STATE], u[ub + S.U_MARKS], u[ub + S.U_SYN_TOTAL],
      u[ub + S.U_SYNACK_TOTAL], u[ub + S.U_RST_CLOSE]);
    this.close(slot, code, this.curSec);
  }

  private close(slot: number, closeCode: number, reportSec: number): void {
    const u = this.slots.u32;
    const ub = slot * S.U32_STRIDE;
    this.wheel.cancel(slot);
    const pos = u[ub + S.U_ACTIVE_POS];
    if (pos !== 0) {
      const last = this.active[--this.activeCount];
      this.active[pos - 1] = last;
      u[last * S.U32_STRIDE + S.U_ACTIVE_POS] = pos;
      u[ub + S.U_ACTIVE_POS] = 0;
    }
    this.outputs.onFlow(this.report(slot, reportSec, closeCode));
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
    u[ub + S.U_IPVER] = 0; // marks the slot free
    this.freeSlots[this.freeCount++] = slot;
    this.used--;
    this.totals.flowsClosed++;
  }

  /** Builds the report of a slot's deltas since its previous report, and clears them. */
  private report(slot: number, reportSec: number, closeCode: number): flowtap.IFlow {
    const sl = this.slots;
    const f = sl.f64;
    const u = sl.u32;
    const fb = slot * S.F64_STRIDE;
    const ub = slot * S.U32_STRIDE;
    const isNew = (u[ub + S.U_MARKS] & MARK_NEW_REPORTED) === 0;
    u[ub + S.U_MARKS] |= MARK_NEW_REPORTED;
    this.totals.reports++;
    const flow: flowtap.IFlow = {
      flow_id: f[fb + S.F_FLOW_ID],
      start_time: f[fb + S.F_START_US],
      end_time: f[fb + S.F_END_US],
      report_time: reportSec * US,
      ip_version: u[ub + S.U_IPVER],
      ip_0: sl.ipOf(slot, 0),
      ip_1: sl.ipOf(slot, 1),
      client_port: u[ub + S.U_PORT0],
      server_port: u[ub + S.U_PORT1],
      protocol: u[ub + S.U_PROTO],
      vlan: u[ub + S.U_VLAN],
      tunnel_type: u[ub + S.U_TUN_TYPE],
      tunnel_id: u[ub + S.U_TUN_ID],
      l7_protocol: sl.l7[slot],
      is_new_flow: isNew,
      is_closed: closeCode !== 0,
      close_type: CLOSE_TYPE_NAMES[closeCode],
      packet_tx: f[fb + S.F_PKT_TX],
      packet_rx: f[fb + S.F_PKT_RX],
      byte_tx: f[fb + S.F_BYTE_TX],
      byte_rx: f[fb + S.F_BYTE_RX],
      l3_byte_tx: f[fb + S.F_L3_TX],
      l3_byte_rx: f[fb + S.F_L3_RX],
      l4_byte_tx: f[fb + S.F_L4_TX],
      l4_byte_rx: f[fb + S.F_L4_RX],
      tcp_flags_tx: u[ub + S.U_FLAGS_TX],
      tcp_flags_rx: u[ub + S.U_FLAGS_RX],
      syn_count: u[ub + S.U_SYN],
      synack_count: u[ub + S.U_SYNACK],
      fin_count: u[ub + S.U_FIN],
      rtt: f[fb + S.F_RTT],
      rtt_client_sum: f[fb + S.F_RTT_CLIENT],
      rtt_client_count: u[ub + S.U_RTT_CLIENT_N],
      rtt_client_max: f[fb + S.F_RTT_CLIENT],
      rtt_server_sum: f[fb + S.F_RTT_SERVER],
      rtt_server_count: u[ub + S.U_RTT_SERVER_N],
      rtt_server_max: f[fb + S.F_RTT_SERVER],
      srt_sum: f[fb + S.F_SRT_SUM],
      srt_count: u[ub + S.U_SRT_N],
      srt_max: f[fb + S.F_SRT_MAX],
      art_sum: f[fb + S.F_ART_SUM],
      art_count: u[ub + S.U_ART_N],
      art_max: f[fb + S.F_ART_MAX],
      cit_sum: f[fb + S.F_CIT_SUM],
      cit_count: u[ub + S.U_CIT_N],
      cit_max: f[fb + S.F_CIT_MAX],
      retrans_tx: u[ub + S.U_RETRANS_TX],
      retrans_rx: u[ub + S.U_RETRANS_RX],
      zero_win_tx: u[ub + S.U_ZWIN_TX],
      zero_win_rx: u[ub + S.U_ZWIN_RX],
      ooo_tx: u[ub + S.U_OOO_TX],
      ooo_rx: u[ub + S.U_OOO_RX],
      retrans_syn: u[ub + S.U_RETRANS_SYN],
      retrans_synack: u[ub + S.U_RETRANS_SYNACK],
    };
    sl.clearDeltas(slot);
    return flow;
  }
}
