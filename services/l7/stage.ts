// The L7 stage: AppPayloads in, l7_flow_log records and per-flow per-second AppMeters out.
// No sockets, no timers: packet timestamps are the clock, `tick(nowUs)` advances it when the wire
// is idle, and `flush()` ends the stream.
//
// Per flow it keeps the parser's state, one byte stream per direction (TCP only: in-order check by
// sequence number, a small buffer for a message that spans segments, a count of body bytes to skip)
// and the open sessions (requests waiting for their response). Flow and session objects are
// pooled, and with `reuseRecords` the sinks get one reused record each: per payload the stage
// allocates one view of the payload, besides what the parsers make.
//
// `drops` reasons (bad or unusable input; never thrown):
//   parse_error          payload is not the flow's protocol where a message should start
//   unsupported_protocol l7_protocol names a protocol with no parser here
//   no_protocol          l7_protocol empty and inference found none (yet)
//   bad_transport        neither TCP nor UDP, or the protocol does not run over it
//   tcp_retransmission   a segment entirely already seen
//   tcp_gap              bytes missing in a direction (lost or not captured): resynchronise
//   unsynced_segment     segment skipped while waiting for a message start after a gap
//   buffer_flow_full     a message needed more than maxBufferPerDirection bytes
//   buffer_total_full    all flows together hold maxBufferTotal bytes
//   session_evicted      an open request dropped because maxSessions were open
//   flow_evicted         a flow's state dropped because maxFlows were held
import { flowtap } from '../../lib/proto';
import { formatIp } from '../../lib/packet-batch';
import {
  CHECK_NONE, Emit, L7Message, L7Parser, PARSE_INVALID, PARSE_NEED_MORE, ParseContext,
} from './parser';
import { DEFAULT_PARSERS } from './registry';
import { ProtocolInference } from './inference';
import { AppPayloadRecord } from './wire';

export interface L7StageOptions {
  parsers?: readonly L7Parser[];
  /** Flows whose state is held at once (default 65536). */
  maxFlows?: number;
  /** Requests waiting for a response, all flows together (default 65536). */
  maxSessions?: number;
  /** Bytes one direction may buffer for a message spanning segments (default 32 KiB). */
  maxBufferPerDirection?: number;
  /** Bytes all flows may buffer together (default 64 MiB). */
  maxBufferTotal?: number;
  /** Overrides of the parsers' session timeouts, by protocol name, in µs. */
  sessionTimeoutUs?: Record<string, number>;
  /** A flow with no open session and no payload for this long is forgotten (default 300 s). */
  flowIdleUs?: number;
  /**
   * A request reusing an open request's id within this time is a retry, answered in turn; later
   * it replaces it, the earlier being reported as a timeout (default 5 s, as tshark's DNS).
   */
  sameIdRetryUs?: number;
  /** Inference for payloads whose l7_protocol is empty (default: one of our own). */
  inference?: ProtocolInference;
  /**
   * Hand the sinks one reused L7LogRecord / AppMeterRecord, overwritten by the next record, instead
   * of a new object each (default false). For sinks that encode or copy what they get at once.
   */
  reuseRecords?: boolean;
}

const EMPTY = Buffer.alloc(0);

export type L7LogSink = (log: flowtap.IL7FlowLog) => void;
export type AppMeterSink = (meter: flowtap.IAppMeter) => void;

/** An l7_flow_log record with every field of flowtap.L7FlowLog set (response_code null: absent). */
export class L7LogRecord {
  flow_id = 0;
  start_time = 0;
  end_time = 0;
  ip_0 = '';
  ip_1 = '';
  client_port = 0;
  server_port = 0;
  protocol = 0;
  l7_protocol = '';
  version = '';
  request_type = '';
  request_domain = '';
  request_resource = '';
  endpoint = '';
  response_code: number | null = null;
  response_status = '';
  response_exception = '';
  response_result = '';
  response_duration = 0;
  request_length = 0;
  response_length = 0;
  trace_id = '';
  span_id = '';
  x_request_id = '';
  vlan = 0;
  signal_source = 'packet';
  sampled = false;
  process_id_0 = 0;
  process_id_1 = 0;
  process_kname_0 = '';
  process_kname_1 = '';
  syscall_trace_id_request = 0;
  syscall_trace_id_response = 0;
  is_tls = false;
}

/** An AppMeter with every field set. */
export class AppMeterRecord {
  flow_id = 0;
  time = 0;
  ip_version = 0;
  ip_0: Uint8Array = EMPTY;
  ip_1: Uint8Array = EMPTY;
  server_port = 0;
  protocol = 0;
  l7_protocol = '';
  endpoint = '';
  request = 0;
  response = 0;
  client_error = 0;
  server_error = 0;
  timeout = 0;
  rrt_sum = 0;
  rrt_count = 0;
  rrt_max = 0;
}

export const DROP_REASONS = [
  'parse_error', 'unsupported_protocol', 'no_protocol', 'bad_transport', 'tcp_retransmission',
  'tcp_gap', 'unsynced_segment', 'buffer_flow_full', 'buffer_total_full', 'session_evicted',
  'flow_evicted',
] as const;
export type DropReason = typeof DROP_REASONS[number];

/** Flow objects kept for reuse after their flow ends, at most. */
const FLOW_POOL_MAX = 16384;
/** Text forms of IPv4 addresses kept, at most (the cache starts again when full). */
const IP_TEXT_CACHE_MAX = 65536;

/** One direction's byte stream (TCP). */
class Stream {
  hasSeq = false;
  nextSeq = 0;
  /** Stream bytes still to pass over (a body); Infinity until the connection closes. */
  skip = 0;
  /** Out of step with message boundaries: wait for a segment that starts a message. */
  lost = true;
  buf: Buffer = EMPTY;
  bufLen = 0;
}

/** An open request. Reused once answered or expired (see L7Stage.sessionPool). */
class Session {
  flow: Flow = undefined as unknown as Flow;
  startUs = 0;
  req: L7Message = undefined as unknown as L7Message;
  deadlineUs = 0;
  /** A later request with the same id (a retransmitted query): answered after this one. */
  nextSameId: Session | null = null;
  // Neighbours in the open list of the session's parser (oldest first).
  prevOpen: Session | null = null;
  nextOpen: Session | null = null;
}

/** The open requests of one parser, oldest first: a list through the sessions themselves. */
class OpenList {
  head: Session | null = null;
  tail: Session | null = null;

  add(s: Session): void {
    s.prevOpen = this.tail;
    s.nextOpen = null;
    if (this.tail === null) this.head = s; else this.tail.nextOpen = s;
    this.tail = s;
  }

  remove(s: Session): void {
    if (s.prevOpen === null) this.head = s.nextOpen; else s.prevOpen.nextOpen = s.nextOpen;
    if (s.nextOpen === null) this.tail = s.prevOpen; else s.nextOpen.prevOpen = s.prevOpen;
    s.prevOpen = null;
    s.nextOpen = null;
  }
}

class Meter {
  second = -1;
  request = 0;
  response = 0;
  clientError = 0;
  serverError = 0;
  timeout = 0;
  rrtSum = 0;
  rrtCount = 0;
  rrtMax = 0;
}

/** One flow's state; reused for another flow once it ends (see L7Stage.flowPool). */
class Flow {
  readonly streams: [Stream, Stream] = [new Stream(), new Stream()];
  readonly queue: Session[] = [];
  /** Open requests by pair id, for parsers that pair by id (created on first use). */
  byId: Map<number, Session> | null = null;
  readonly meter = new Meter();
  /** The meter holds counts not yet emitted (the flow is in L7Stage's dirty list). */
  meterDirty = false;
  // Neighbours in the list of flows with dirty meters (in the order they became dirty).
  prevDirty: Flow | null = null;
  nextDirty: Flow | null = null;
  lastUs = 0;
  openCount = 0;
  flowId = 0;
  parserIndex = 0;
  parser: L7Parser = undefined as unknown as L7Parser;
  state: unknown = null;
  /** Addresses as received (16 bytes, IPv4 v4-mapped), owned by the flow. */
  ip0: Uint8Array = new Uint8Array(16);
  ip1: Uint8Array = new Uint8Array(16);
  ip0Text = '';
  ip1Text = '';
  ipVersion = 0;
  clientPort = 0;
  serverPort = 0;
  protocol = 0;
  vlan = 0;
}

export class L7Stage {
  readonly drops: Record<DropReason, number>;
  private readonly parsers: readonly L7Parser[];
  /** The parsers' names, read from one array rather than from fourteen parser classes. */
  private readonly parserNames: readonly string[];
  private readonly timeouts: number[];
  private readonly open: OpenList[];
  private readonly flows = new Map<number, Flow>();
  // Flows whose meters hold counts, in the order they got them.
  private dirtyHead: Flow | null = null;
  private dirtyTail: Flow | null = null;
  private readonly inference: ProtocolInference;
  private readonly maxFlows: number;
  private readonly maxSessions: number;
  private readonly maxBufferPerDirection: number;
  private readonly maxBufferTotal: number;
  private readonly flowIdleUs: number;
  private readonly sameIdRetryUs: number;
  private readonly reuseRecords: boolean;
  private readonly ctx: ParseContext = { protocol: 6, fromClient: true, serverPort: 0, truncated: false };
  private sessionTotal = 0;
  private bufferedTotal = 0;
  private nowUs = 0;
  private lastSweepUs = 0;
  // The flow and time the parser's messages belong to, set before each parse call.
  private curFlow: Flow | null = null;
  private curUs = 0;
  private readonly emit: Emit = (msg) => this.onMessage(msg);
  /** Ended flows' objects, reused by new flows: a flow then costs no allocation of its own. */
  private readonly flowPool: Flow[] = [];
  private readonly flowPoolMax: number;
  private readonly sessionPool: Session[] = [];
  private readonly ipText = new Map<number, string>();
  private readonly logRecord = new L7LogRecord();
  private readonly meterRecord = new AppMeterRecord();
  /** push() fills this from the object it gets. */
  private readonly objectRecord = new AppPayloadRecord();

  constructor(private readonly onLog: L7LogSink, private readonly onMeter: AppMeterSink, opts: L7StageOptions = {}) {
    this.parsers = opts.parsers ?? DEFAULT_PARSERS;
    this.parserNames = this.parsers.map((p) => p.name);
    this.timeouts = this.parsers.map((p) => opts.sessionTimeoutUs?.[p.name] ?? p.sessionTimeoutUs);
    this.open = this.parsers.map(() => new OpenList());
    this.inference = opts.inference ?? new ProtocolInference({ parsers: this.parsers });
    this.maxFlows = opts.maxFlows ?? 65536;
    this.maxSessions = opts.maxSessions ?? 65536;
    this.maxBufferPerDirection = opts.maxBufferPerDirection ?? 32 * 1024;
    this.maxBufferTotal = opts.maxBufferTotal ?? 64 * 1024 * 1024;
    this.flowIdleUs = opts.flowIdleUs ?? 300_000_000;
    this.sameIdRetryUs = opts.sameIdRetryUs ?? 5_000_000;
    this.reuseRecords = opts.reuseRecords ?? false;
    this.flowPoolMax = Math.min(FLOW_POOL_MAX, this.maxFlows);
    const drops = {} as Record<DropReason, number>;
    for (const r of DROP_REASONS) drops[r] = 0;
    this.drops = drops;
  }

  /** Gauges: what the stage holds now. */
  get flowCount(): number { return this.flows.size; }
  get sessionCount(): number { return this.sessionTotal; }
  get bufferedBytes(): number { return this.bufferedTotal; }

  pushBatch(items: readonly flowtap.IAppPayload[]): void {
    for (let i = 0; i < items.length; i++) this.push(items[i]);
  }

  /** One payload as a message object (copied into a record first; pushRecord is the fast path). */
  push(p: flowtap.IAppPayload): void {
    this.pushRecord(this.objectRecord.setFromObject(p));
  }

  /** One payload; the record and the buffer it points into are not kept after the call. */
  pushRecord(p: AppPayloadRecord): void {
    const t = p.timestampUs;
    if (t > this.nowUs) this.nowUs = t;
    const buf = p.payloadBuf, start = p.payloadStart, end = p.payloadEnd;
    if (end === start) return;
    const flowId = p.flowId;
    const fromClient = p.fromClient;
    const protocol = p.protocol;
    let flow = this.flows.get(flowId);
    if (flow === undefined) {
      const created = this.newFlow(p, t);
      if (created === undefined) return;
      flow = created;
    }
    flow.lastUs = t;
    // Parsers get a view of the payload alone: what lies beyond it is none of theirs, and their
    // searches (indexOf) then stop at its end.
    const data = start === 0 && end === buf.length ? buf : buf.subarray(start, end);
    let wireLen = p.payloadLen;
    if (wireLen < data.length) wireLen = data.length;
    this.curFlow = flow;
    this.curUs = t;
    if (protocol === 6) this.onTcp(flow, fromClient, p.tcpSeq >>> 0, data, wireLen);
    else this.onUdp(flow, fromClient, data, wireLen);
    this.curFlow = null;
    if (t - this.lastSweepUs >= 10_000_000) this.tick(t);
  }

  /** Advances packet time: times out sessions, emits finished seconds of meters, forgets idle flows. */
  tick(nowUs: number): void {
    if (nowUs > this.nowUs) this.nowUs = nowUs;
    const now = this.nowUs;
    for (let i = 0; i < this.open.length; i++) {
      const list = this.open[i];
      for (let s = list.head; s !== null && s.deadlineUs <= now; s = list.head) this.expire(s, s.deadlineUs);
    }
    const second = Math.floor(now / 1e6);
    for (let f = this.dirtyHead; f !== null;) {
      const next = f.nextDirty;
      if (f.meter.second < second) this.emitMeter(f);
      f = next;
    }
    if (now - this.lastSweepUs >= 10_000_000) {
      this.lastSweepUs = now;
      for (const f of this.flows.values()) {
        if (f.openCount === 0 && now - f.lastUs > this.flowIdleUs) this.dropFlow(f);
      }
    }
  }

  /** End of stream: every open request is reported as a timeout, every meter emitted, state cleared. */
  flush(): void {
    for (const f of this.flows.values()) this.endParser(f, f.lastUs);
    for (let i = 0; i < this.open.length; i++) {
      const list = this.open[i];
      for (let s = list.head; s !== null; s = list.head) this.expire(s, Math.min(s.deadlineUs, Math.max(this.nowUs, s.startUs)));
    }
    while (this.dirtyHead !== null) this.emitMeter(this.dirtyHead);
    for (const f of this.flows.values()) this.dropFlow(f);
  }

  /** The flow closed: its open requests time out now and its state goes. */
  closeFlow(flowId: number): void {
    const f = this.flows.get(flowId);
    if (f === undefined) return;
    this.endParser(f, this.nowUs);
    if (f.openCount > 0) this.expireFlowSessions(f, this.nowUs);
    if (f.meterDirty) this.emitMeter(f);
    this.dropFlow(f);
  }

  /** Lets the parser emit what its flow state still holds, as of time `t`. */
  private endParser(f: Flow, t: number): void {
    if (f.parser.endFlow === undefined) return;
    this.curFlow = f;
    this.curUs = t;
    f.parser.endFlow(f.state, this.emit);
    this.curFlow = null;
  }

  private newFlow(p: AppPayloadRecord, t: number): Flow | undefined {
    const protocol = p.protocol;
    if (protocol !== 6 && protocol !== 17) { this.drops.bad_transport++; return undefined; }
    const flowId = p.flowId;
    let name = p.l7Protocol;
    if (name === '') {
      name = this.inference.infer(flowId, p.payloadBuf.subarray(p.payloadStart, p.payloadEnd), p.fromClient, protocol, p.serverPort, t);
      if (name === '') { this.drops.no_protocol++; return undefined; }
    }
    let idx = -1;
    const names = this.parserNames;
    for (let i = 0; i < names.length; i++) if (names[i] === name) idx = i;
    if (idx < 0) { this.drops.unsupported_protocol++; return undefined; }
    const parser = this.parsers[idx];
    if (protocol === 6 ? !parser.overTcp : !parser.overUdp) { this.drops.bad_transport++; return undefined; }
    if (this.flows.size >= this.maxFlows) {
      const oldest = this.flows.values().next().value as Flow;
      this.expireFlowSessions(oldest, t);
      if (oldest.meterDirty) this.emitMeter(oldest);
      this.dropFlow(oldest);
      this.drops.flow_evicted++;
    }
    const f = this.flowPool.pop() ?? new Flow();
    f.flowId = flowId;
    f.parserIndex = idx;
    f.parser = parser;
    f.state = parser.newFlowState();
    f.ip0 = this.ownAddress(f.ip0, p.ipBuf, p.ip0Start, p.ip0End);
    f.ip1 = this.ownAddress(f.ip1, p.ipBuf, p.ip1Start, p.ip1End);
    f.ip0Text = f.ip0.length === 16 ? this.formatAddress(f.ip0) : '';
    f.ip1Text = f.ip1.length === 16 ? this.formatAddress(f.ip1) : '';
    f.ipVersion = p.ipVersion;
    f.clientPort = p.clientPort;
    f.serverPort = p.serverPort;
    f.protocol = protocol;
    f.vlan = p.vlan;
    f.lastUs = 0;
    f.openCount = 0;
    f.meter.second = -1;
    this.flows.set(flowId, f);
    this.inference.forget(flowId);
    return f;
  }

  /**
   * `buf[start, end)` copied into the pooled flow's array `into` when it fits. Meters handed out
   * as objects keep the flow's arrays, so without reuseRecords every flow gets arrays of its own.
   */
  private ownAddress(into: Uint8Array, buf: Buffer, start: number, end: number): Uint8Array {
    const n = end - start;
    const dst = this.reuseRecords && into.length === n ? into : new Uint8Array(n);
    for (let k = 0; k < n; k++) dst[k] = buf[start + k];
    return dst;
  }

  /** Text of a 16-byte address; IPv4 (v4-mapped) ones come from a cache. */
  private formatAddress(a: Uint8Array): string {
    let v4 = a[10] === 0xff && a[11] === 0xff;
    for (let k = 0; v4 && k < 10; k++) if (a[k] !== 0) v4 = false;
    if (!v4) return formatIp(a);
    const key = ((a[12] << 24) | (a[13] << 16) | (a[14] << 8) | a[15]) >>> 0;
    let text = this.ipText.get(key);
    if (text === undefined) {
      if (this.ipText.size >= IP_TEXT_CACHE_MAX) this.ipText.clear();
      text = formatIp(a);
      this.ipText.set(key, text);
    }
    return text;
  }

  private onUdp(flow: Flow, fromClient: boolean, data: Buffer, wireLen: number): void {
    const ctx = this.ctx;
    ctx.protocol = 17; ctx.fromClient = fromClient; ctx.serverPort = flow.serverPort;
    ctx.truncated = wireLen > data.length;
    const r = flow.parser.parse(data, 0, data.length, ctx, flow.state, this.emit);
    if (r < 0) this.drops.parse_error++;
  }

  private onTcp(flow: Flow, fromClient: boolean, seq: number, data: Buffer, wireLen: number): void {
    const st = flow.streams[fromClient ? 0 : 1];
    if (st.hasSeq) {
      const d = (seq - st.nextSeq) | 0;
      if (d < 0) {
        if (d + wireLen <= 0) { this.drops.tcp_retransmission++; return; }
        // Overlap: keep only the new bytes.
        const trim = -d;
        wireLen -= trim;
        st.nextSeq = (st.nextSeq + wireLen) >>> 0;
        if (trim >= data.length) { this.loseSync(flow, st, fromClient); return; }
        this.feed(flow, st, fromClient, data.subarray(trim), wireLen);
        return;
      }
      if (d > 0) {
        // Missing bytes inside a body being skipped cost nothing; elsewhere they break the stream.
        if (st.skip >= d) st.skip -= d;
        else { this.drops.tcp_gap++; this.loseSync(flow, st, fromClient); }
      }
    }
    st.hasSeq = true;
    st.nextSeq = (seq + wireLen) >>> 0;
    this.feed(flow, st, fromClient, data, wireLen);
  }

  private loseSync(flow: Flow, st: Stream, fromClient: boolean): void {
    this.bufferedTotal -= st.bufLen;
    st.bufLen = 0;
    st.skip = 0;
    st.lost = true;
    flow.parser.resync(flow.state, fromClient);
  }

  /** Feeds one in-order segment: `data` are its captured bytes, `wireLen` its length on the wire. */
  private feed(flow: Flow, st: Stream, fromClient: boolean, data: Buffer, wireLen: number): void {
    const cut = wireLen - data.length;
    let off = 0;
    if (st.skip > 0) {
      if (st.skip >= wireLen) { st.skip -= wireLen; return; }
      off = st.skip;
      st.skip = 0;
      if (off >= data.length) { this.loseSync(flow, st, fromClient); return; }
    }
    const ctx = this.ctx;
    ctx.protocol = 6; ctx.fromClient = fromClient; ctx.serverPort = flow.serverPort; ctx.truncated = cut > 0;
    const parser = flow.parser;
    if (st.lost) {
      if (parser.check(data, off, data.length, ctx) === CHECK_NONE) { this.drops.unsynced_segment++; return; }
      st.lost = false; // the parser was reset when the stream was lost
    }
    let src = data, pos = off, end = data.length;
    if (st.bufLen > 0) {
      const n = data.length - off;
      if (st.bufLen + n > this.maxBufferPerDirection) { this.drops.buffer_flow_full++; this.loseSync(flow, st, fromClient); return; }
      if (this.bufferedTotal + n > this.maxBufferTotal) { this.drops.buffer_total_full++; this.loseSync(flow, st, fromClient); return; }
      this.reserve(st, st.bufLen + n);
      data.copy(st.buf, st.bufLen, off);
      st.bufLen += n;
      this.bufferedTotal += n;
      src = st.buf; pos = 0; end = st.bufLen;
    }
    let lost = false, cutCovered = false;
    while (pos < end) {
      const r = parser.parse(src, pos, end, ctx, flow.state, this.emit);
      if (r > 0) {
        if (pos + r <= end) { pos += r; continue; }
        // The message goes on past the captured bytes: the cut part of this segment comes first.
        const beyond = pos + r - end;
        pos = end;
        if (beyond >= cut) { st.skip = beyond - cut; cutCovered = true; } else lost = true;
        break;
      }
      if (r === PARSE_NEED_MORE && cut === 0) break;
      if (r === PARSE_INVALID) this.drops.parse_error++;
      lost = true;
      pos = end;
      break;
    }
    if (!lost && pos === end && cut > 0 && !cutCovered) lost = true; // bytes after the cut are unknown
    if (lost) { this.loseSync(flow, st, fromClient); return; }
    const rest = end - pos;
    if (rest === 0) {
      this.bufferedTotal -= st.bufLen;
      st.bufLen = 0;
      return;
    }
    if (src === st.buf) {
      // Keep the unparsed tail at the front of the buffer.
      if (pos > 0) {
        st.buf.copyWithin(0, pos, end);
        this.bufferedTotal -= pos;
        st.bufLen = rest;
      }
      return;
    }
    if (rest > this.maxBufferPerDirection) { this.drops.buffer_flow_full++; this.loseSync(flow, st, fromClient); return; }
    if (this.bufferedTotal + rest > this.maxBufferTotal) { this.drops.buffer_total_full++; this.loseSync(flow, st, fromClient); return; }
    this.reserve(st, rest);
    data.copy(st.buf, 0, pos, end);
    st.bufLen = rest;
    this.bufferedTotal += rest;
  }

  private reserve(st: Stream, n: number): void {
    if (st.buf.length >= n) return;
    let cap = Math.max(256, st.buf.length * 2);
    while (cap < n) cap *= 2;
    const b = Buffer.allocUnsafe(Math.min(cap, Math.max(n, this.maxBufferPerDirection)));
    if (st.bufLen > 0) st.buf.copy(b, 0, 0, st.bufLen);
    st.buf = b;
  }

  private onMessage(msg: L7Message): void {
    const flow = this.curFlow!;
    const t = this.curUs;
    const m = this.meterAt(flow, t);
    if (msg.kind === 'request') {
      m.request++;
      // No response will come: report it now rather than as a timeout later.
      if (msg.oneWay === true) { this.emitLog(flow, msg, null, t, t); return; }
      if (this.sessionTotal >= this.maxSessions) this.evictOldestSession();
      const s = this.sessionPool.pop() ?? new Session();
      s.flow = flow; s.startUs = t; s.req = msg; s.deadlineUs = t + this.timeouts[flow.parserIndex];
      if (flow.parser.pairsById) {
        // The same id asked again soon (a retry): the first answer goes to the first ask, as
        // tshark does. Asked again later: the earlier ask is taken as unanswered.
        const byId = flow.byId ??= new Map<number, Session>();
        let last = byId.get(msg.pairId);
        while (last !== undefined && t - last.startUs > this.sameIdRetryUs) {
          this.expire(last, t);
          last = byId.get(msg.pairId);
        }
        if (last === undefined) byId.set(msg.pairId, s);
        else {
          while (last.nextSameId !== null) last = last.nextSameId;
          last.nextSameId = s;
        }
      } else flow.queue.push(s);
      this.open[flow.parserIndex].add(s);
      flow.openCount++;
      this.sessionTotal++;
      return;
    }
    let s: Session | undefined;
    if (flow.parser.pairsById) {
      s = flow.byId?.get(msg.pairId);
      if (s !== undefined) this.unlinkById(flow, s);
    } else s = flow.queue.shift();
    m.response++;
    if (msg.responseStatus === 'client_error') m.clientError++;
    else if (msg.responseStatus === 'server_error') m.serverError++;
    if (s === undefined) {
      this.emitLog(flow, null, msg, t, t);
      return;
    }
    this.open[flow.parserIndex].remove(s);
    flow.openCount--;
    this.sessionTotal--;
    const rrt = t > s.startUs ? t - s.startUs : 0;
    m.rrtSum += rrt;
    m.rrtCount++;
    if (rrt > m.rrtMax) m.rrtMax = rrt;
    this.emitLog(flow, s.req, msg, s.startUs, t);
    this.releaseSession(s);
  }

  /** A session out of every list goes back to the pool. */
  private releaseSession(s: Session): void {
    s.req = undefined as unknown as L7Message;
    s.flow = undefined as unknown as Flow;
    s.nextSameId = null;
    if (this.sessionPool.length < 1024) this.sessionPool.push(s);
  }

  /** Reports an unanswered request as a timeout and forgets it. */
  private expire(s: Session, atUs: number): void {
    const flow = s.flow;
    this.open[flow.parserIndex].remove(s);
    this.unlink(flow, s);
    flow.openCount--;
    this.sessionTotal--;
    this.meterAt(flow, atUs).timeout++;
    this.emitLog(flow, s.req, null, s.startUs, s.startUs);
    this.releaseSession(s);
  }

  /** Takes a session out of its flow's pairing structures. */
  private unlink(flow: Flow, s: Session): void {
    if (flow.parser.pairsById) this.unlinkById(flow, s);
    else {
      const i = flow.queue.indexOf(s);
      if (i >= 0) flow.queue.splice(i, 1);
    }
  }

  private unlinkById(flow: Flow, s: Session): void {
    const byId = flow.byId;
    if (byId === null) return;
    const head = byId.get(s.req.pairId);
    if (head === s) {
      if (s.nextSameId === null) byId.delete(s.req.pairId);
      else byId.set(s.req.pairId, s.nextSameId);
    } else {
      for (let p: Session | null = head ?? null; p !== null; p = p.nextSameId) {
        if (p.nextSameId === s) { p.nextSameId = s.nextSameId; break; }
      }
    }
    s.nextSameId = null;
  }

  private expireFlowSessions(f: Flow, atUs: number): void {
    const all: Session[] = [...f.queue];
    if (f.byId !== null) {
      for (const head of f.byId.values()) for (let p: Session | null = head; p !== null; p = p.nextSameId) all.push(p);
    }
    for (const s of all) this.expire(s, atUs);
  }

  private evictOldestSession(): void {
    let oldest: Session | null = null;
    for (const list of this.open) {
      const first = list.head;
      if (first !== null && (oldest === null || first.startUs < oldest.startUs)) oldest = first;
    }
    if (oldest === null) return;
    const flow = oldest.flow;
    this.open[flow.parserIndex].remove(oldest);
    this.unlink(flow, oldest);
    flow.openCount--;
    this.sessionTotal--;
    this.drops.session_evicted++;
    this.releaseSession(oldest);
  }

  /** Forgets a flow (its meter emitted first) and keeps its object for a new flow. */
  private dropFlow(f: Flow): void {
    for (const st of f.streams) {
      this.bufferedTotal -= st.bufLen;
      st.bufLen = 0;
      st.buf = EMPTY;
      st.hasSeq = false; st.nextSeq = 0; st.skip = 0; st.lost = true;
    }
    if (f.meterDirty) this.emitMeter(f);
    // Sessions still open (flush/evict paths expire them first) would leak their count.
    if (f.openCount > 0 || f.queue.length > 0 || (f.byId !== null && f.byId.size > 0)) {
      const list = this.open[f.parserIndex];
      for (const s of f.queue) { list.remove(s); this.sessionTotal--; this.releaseSession(s); }
      if (f.byId !== null) {
        for (const head of f.byId.values()) {
          for (let p: Session | null = head; p !== null;) {
            const next: Session | null = p.nextSameId;
            list.remove(p);
            this.sessionTotal--;
            this.releaseSession(p);
            p = next;
          }
        }
        f.byId.clear();
      }
      f.queue.length = 0;
    }
    f.openCount = 0;
    this.flows.delete(f.flowId);
    f.state = null;
    if (this.flowPool.length < this.flowPoolMax) this.flowPool.push(f);
  }

  /** The flow's meter for the second of `tUs`, emitting the previous second if it differs. */
  private meterAt(flow: Flow, tUs: number): Meter {
    const second = Math.floor(tUs / 1e6);
    const m = flow.meter;
    if (m.second !== second) {
      if (flow.meterDirty) this.emitMeter(flow);
      m.second = second;
    }
    if (!flow.meterDirty) {
      flow.meterDirty = true;
      flow.prevDirty = this.dirtyTail;
      flow.nextDirty = null;
      if (this.dirtyTail === null) this.dirtyHead = flow; else this.dirtyTail.nextDirty = flow;
      this.dirtyTail = flow;
    }
    return m;
  }

  private emitMeter(f: Flow): void {
    const m = f.meter;
    f.meterDirty = false;
    if (f.prevDirty === null) this.dirtyHead = f.nextDirty; else f.prevDirty.nextDirty = f.nextDirty;
    if (f.nextDirty === null) this.dirtyTail = f.prevDirty; else f.nextDirty.prevDirty = f.prevDirty;
    f.prevDirty = null;
    f.nextDirty = null;
    const r = this.reuseRecords ? this.meterRecord : new AppMeterRecord();
    r.flow_id = f.flowId; r.time = m.second; r.ip_version = f.ipVersion; r.ip_0 = f.ip0; r.ip_1 = f.ip1;
    r.server_port = f.serverPort; r.protocol = f.protocol; r.l7_protocol = f.parser.name; r.endpoint = '';
    r.request = m.request; r.response = m.response; r.client_error = m.clientError; r.server_error = m.serverError;
    r.timeout = m.timeout; r.rrt_sum = m.rrtSum; r.rrt_count = m.rrtCount; r.rrt_max = m.rrtMax;
    this.onMeter(this.reuseRecords ? r : { ...r });
    m.request = 0; m.response = 0; m.clientError = 0; m.serverError = 0; m.timeout = 0;
    m.rrtSum = 0; m.rrtCount = 0; m.rrtMax = 0;
  }

  private emitLog(f: Flow, req: L7Message | null, resp: L7Message | null, startUs: number, endUs: number): void {
    // DNS answers repeat the question, so a lone response still names what was asked.
    const q = req ?? resp!;
    const r = this.logRecord;
    r.flow_id = f.flowId; r.start_time = startUs; r.end_time = endUs;
    r.ip_0 = f.ip0Text; r.ip_1 = f.ip1Text; r.client_port = f.clientPort; r.server_port = f.serverPort;
    r.protocol = f.protocol; r.l7_protocol = req?.l7Protocol || resp?.l7Protocol || f.parser.name;
    r.version = req !== null && req.version !== '' ? req.version : resp?.version ?? '';
    r.request_type = q.requestType; r.request_domain = q.requestDomain;
    r.request_resource = q.requestResource; r.endpoint = q.endpoint;
    r.response_code = resp !== null && resp.responseCode !== undefined ? resp.responseCode : null;
    r.response_status = resp === null ? (req?.oneWay === true ? 'ok' : 'timeout') : resp.responseStatus;
    r.response_exception = resp?.responseException ?? '';
    r.response_result = resp?.responseResult ?? '';
    r.response_duration = req !== null && resp !== null ? endUs - startUs : 0;
    r.request_length = req?.length ?? 0; r.response_length = resp?.length ?? 0;
    r.trace_id = req?.traceId || resp?.traceId || '';
    r.span_id = req?.spanId || resp?.spanId || '';
    r.x_request_id = req?.xRequestId || resp?.xRequestId || '';
    r.vlan = f.vlan; r.sampled = false;
    if (this.reuseRecords) { this.onLog(r); return; }
    const log: flowtap.IL7FlowLog = {
      flow_id: r.flow_id, start_time: r.start_time, end_time: r.end_time,
      ip_0: r.ip_0, ip_1: r.ip_1, client_port: r.client_port, server_port: r.server_port,
      protocol: r.protocol, l7_protocol: r.l7_protocol, version: r.version,
      request_type: r.request_type, request_domain: r.request_domain,
      request_resource: r.request_resource, endpoint: r.endpoint,
      response_status: r.response_status, response_exception: r.response_exception,
      response_result: r.response_result, response_duration: r.response_duration,
      request_length: r.request_length, response_length: r.response_length,
      trace_id: r.trace_id, span_id: r.span_id, x_request_id: r.x_request_id,
      vlan: r.vlan, signal_source: 'packet', sampled: false,
    };
    if (r.response_code !== null) log.response_code = r.response_code;
    this.onLog(log);
  }
}
