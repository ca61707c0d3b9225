// The L7 stage: AppPayloads in, l7_flow_log records and per-flow per-second AppMeters out.
// No sockets, no timers: packet timestamps are the clock, `tick(nowUs)` advances it when the wire
// is idle, and `flush()` ends the stream.
//
// Per flow it keeps the parser's state, one byte stream per direction (TCP only: in-order check by
// sequence number, a small buffer for a message that spans segments, a count of body bytes to skip)
// and the open sessions (requests waiting for their response).
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
}

export type L7LogSink = (log: flowtap.IL7FlowLog) => void;
export type AppMeterSink = (meter: flowtap.IAppMeter) => void;

export const DROP_REASONS = [
  'parse_error', 'unsupported_protocol', 'no_protocol', 'bad_transport', 'tcp_retransmission',
  'tcp_gap', 'unsynced_segment', 'buffer_flow_full', 'buffer_total_full', 'session_evicted',
  'flow_evicted',
] as const;
export type DropReason = typeof DROP_REASONS[number];

const EMPTY = Buffer.alloc(0);

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

class Session {
  /** A later request with the same id (a retransmitted query): answered after this one. */
  nextSameId: Session | null = null;
  constructor(readonly flow: Flow, readonly startUs: number, readonly req: L7Message, readonly deadlineUs: number) {}
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

class Flow {
  readonly streams: [Stream, Stream] = [new Stream(), new Stream()];
  readonly queue: Session[] = [];
  readonly byId = new Map<number, Session>();
  readonly meter = new Meter();
  lastUs = 0;
  openCount = 0;

  constructor(
    readonly flowId: number,
    readonly parserIndex: number,
    readonly parser: L7Parser,
    readonly state: unknown,
    readonly ip0: Uint8Array,
    readonly ip1: Uint8Array,
    readonly ip0Text: string,
    readonly ip1Text: string,
    readonly ipVersion: number,
    readonly clientPort: number,
    readonly serverPort: number,
    readonly protocol: number,
    readonly vlan: number,
  ) {}
}

export class L7Stage {
  readonly drops: Record<DropReason, number>;
  private readonly parsers: readonly L7Parser[];
  private readonly timeouts: number[];
  private readonly open: Set<Session>[];
  private readonly flows = new Map<number, Flow>();
  private readonly dirtyMeters = new Set<Flow>();
  private readonly inference: ProtocolInference;
  private readonly maxFlows: number;
  private readonly maxSessions: number;
  private readonly maxBufferPerDirection: number;
  private readonly maxBufferTotal: number;
  private readonly flowIdleUs: number;
  private readonly sameIdRetryUs: number;
  private readonly ctx: ParseContext = { protocol: 6, fromClient: true, serverPort: 0, truncated: false };
  private sessionTotal = 0;
  private bufferedTotal = 0;
  private nowUs = 0;
  private lastSweepUs = 0;
  // The flow and time the parser's messages belong to, set before each parse call.
  private curFlow: Flow | null = null;
  private curUs = 0;
  private readonly emit: Emit = (msg) => this.onMessage(msg);

  constructor(private readonly onLog: L7LogSink, private readonly onMeter: AppMeterSink, opts: L7StageOptions = {}) {
    this.parsers = opts.parsers ?? DEFAULT_PARSERS;
    this.timeouts = this.parsers.map((p) => opts.sessionTimeoutUs?.[p.name] ?? p.sessionTimeoutUs);
    this.open = this.parsers.map(() => new Set<Session>());
    this.inference = opts.inference ?? new ProtocolInference({ parsers: this.parsers });
    this.maxFlows = opts.maxFlows ?? 65536;
    this.maxSessions = opts.maxSessions ?? 65536;
    this.maxBufferPerDirection = opts.maxBufferPerDirection ?? 32 * 1024;
    this.maxBufferTotal = opts.maxBufferTotal ?? 64 * 1024 * 1024;
    this.flowIdleUs = opts.flowIdleUs ?? 300_000_000;
    this.sameIdRetryUs = opts.sameIdRetryUs ?? 5_000_000;
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

  push(p: flowtap.IAppPayload): void {
    const t = Number(p.timestamp_us ?? 0);
    if (t > this.nowUs) this.nowUs = t;
    const raw = p.payload;
    if (raw == null || raw.length === 0) return;
    const data = Buffer.isBuffer(raw) ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.length);
    const flowId = Number(p.flow_id ?? 0);
    const fromClient = p.from_client === true;
    const protocol = p.protocol ?? 0;
    let flow = this.flows.get(flowId);
    if (flow === undefined) {
      const created = this.newFlow(flowId, p, data, fromClient, protocol, t);
      if (created === undefined) return;
      flow = created;
    }
    flow.lastUs = t;
    let wireLen = p.payload_len ?? 0;
    if (wireLen < data.length) wireLen = data.length;
    this.curFlow = flow;
    this.curUs = t;
    if (protocol === 6) this.onTcp(flow, fromClient, (p.tcp_seq ?? 0) >>> 0, data, wireLen);
    else this.onUdp(flow, fromClient, data, wireLen);
    this.curFlow = null;
    if (t - this.lastSweepUs >= 10_000_000) this.tick(t);
  }

  /** Advances packet time: times out sessions, emits finished seconds of meters, forgets idle flows. */
  tick(nowUs: number): void {
    if (nowUs > this.nowUs) this.nowUs = nowUs;
    const now = this.nowUs;
    for (let i = 0; i < this.open.length; i++) {
      for (const s of this.open[i]) {
        if (s.deadlineUs > now) break;
        this.expire(s, s.deadlineUs);
      }
    }
    const second = Math.floor(now / 1e6);
    for (const f of this.dirtyMeters) if (f.meter.second < second) this.emitMeter(f);
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
      for (const s of this.open[i]) this.expire(s, Math.min(s.deadlineUs, Math.max(this.nowUs, s.startUs)));
    }
    for (const f of this.dirtyMeters) this.emitMeter(f);
    for (const f of this.flows.values()) this.dropFlow(f);
  }

  /** The flow closed: its open requests time out now and its state goes. */
  closeFlow(flowId: number): void {
    const f = this.flows.get(flowId);
    if (f === undefined) return;
    this.endParser(f, this.nowUs);
    this.expireFlowSessions(f, this.nowUs);
    if (this.dirtyMeters.has(f)) this.emitMeter(f);
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

  private newFlow(flowId: number, p: flowtap.IAppPayload, data: Buffer, fromClient: boolean, protocol: number, t: number): Flow | undefined {
    if (protocol !== 6 && protocol !== 17) { this.drops.bad_transport++; return undefined; }
    let name = p.l7_protocol ?? '';
    if (name === '') {
      name = this.inference.infer(flowId, data, fromClient, protocol, p.server_port ?? 0, t);
      if (name === '') { this.drops.no_protocol++; return undefined; }
    }
    let idx = -1;
    for (let i = 0; i < this.parsers.length; i++) if (this.parsers[i].name === name) idx = i;
    if (idx < 0) { this.drops.unsupported_protocol++; return undefined; }
    const parser = this.parsers[idx];
    if (protocol === 6 ? !parser.overTcp : !parser.overUdp) { this.drops.bad_transport++; return undefined; }
    if (this.flows.size >= this.maxFlows) {
      const oldest = this.flows.values().next().value as Flow;
      this.expireFlowSessions(oldest, t);
      if (this.dirtyMeters.has(oldest)) this.emitMeter(oldest);
      this.dropFlow(oldest);
      this.drops.flow_evicted++;
    }
    const ip0 = Uint8Array.from(p.ip_0 ?? new Uint8Array(16));
    const ip1 = Uint8Array.from(p.ip_1 ?? new Uint8Array(16));
    const f = new Flow(flowId, idx, parser, parser.newFlowState(), ip0, ip1,
      ip0.length === 16 ? formatIp(ip0) : '', ip1.length === 16 ? formatIp(ip1) : '',
      p.ip_version ?? 0, p.client_port ?? 0, p.server_port ?? 0, protocol, p.vlan ?? 0);
    this.flows.set(flowId, f);
    this.inference.forget(flowId);
    return f;
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
      const s = new Session(flow, t, msg, t + this.timeouts[flow.parserIndex]);
      if (flow.parser.pairsById) {
        // The same id asked again soon (a retry): the first answer goes to the first ask, as
        // tshark does. Asked again later: the earlier ask is taken as unanswered.
        let last = flow.byId.get(msg.pairId);
        while (last !== undefined && t - last.startUs > this.sameIdRetryUs) {
          this.expire(last, t);
          last = flow.byId.get(msg.pairId);
        }
        if (last === undefined) flow.byId.set(msg.pairId, s);
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
      s = flow.byId.get(msg.pairId);
      if (s !== undefined) this.unlinkById(flow, s);
    } else s = flow.queue.shift();
    m.response++;
    if (msg.responseStatus === 'client_error') m.clientError++;
    else if (msg.responseStatus === 'server_error') m.serverError++;
    if (s === undefined) {
      this.emitLog(flow, null, msg, t, t);
      return;
    }
    this.open[flow.parserIndex].delete(s);
    flow.openCount--;
    this.sessionTotal--;
    const rrt = t > s.startUs ? t - s.startUs : 0;
    m.rrtSum += rrt;
    m.rrtCount++;
    if (rrt > m.rrtMax) m.rrtMax = rrt;
    this.emitLog(flow, s.req, msg, s.startUs, t);
  }

  /** Reports an unanswered request as a timeout and forgets it. */
  private expire(s: Session, atUs: number): void {
    const flow = s.flow;
    this.open[flow.parserIndex].delete(s);
    this.unlink(flow, s);
    flow.openCount--;
    this.sessionTotal--;
    this.meterAt(flow, atUs).timeout++;
    this.emitLog(flow, s.req, null, s.startUs, s.startUs);
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
    const head = flow.byId.get(s.req.pairId);
    if (head === s) {
      if (s.nextSameId === null) flow.byId.delete(s.req.pairId);
      else flow.byId.set(s.req.pairId, s.nextSameId);
    } else {
      for (let p: Session | null = head ?? null; p !== null; p = p.nextSameId) {
        if (p.nextSameId === s) { p.nextSameId = s.nextSameId; break; }
      }
    }
    s.nextSameId = null;
  }

  private expireFlowSessions(f: Flow, atUs: number): void {
    const all: Session[] = [...f.queue];
    for (const head of f.byId.values()) for (let p: Session | null = head; p !== null; p = p.nextSameId) all.push(p);
    for (const s of all) this.expire(s, atUs);
  }

  private evictOldestSession(): void {
    let oldest: Session | undefined;
    for (const set of this.open) {
      const first = set.values().next().value as Session | undefined;
      if (first !== undefined && (oldest === undefined || first.startUs < oldest.startUs)) oldest = first;
    }
    if (oldest === undefined) return;
    const flow = oldest.flow;
    this.open[flow.parserIndex].delete(oldest);
    this.unlink(flow, oldest);
    flow.openCount--;
    this.sessionTotal--;
    this.drops.session_evicted++;
  }

  private dropFlow(f: Flow): void {
    for (const st of f.streams) { this.bufferedTotal -= st.bufLen; st.bufLen = 0; st.buf = EMPTY; }
    if (this.dirtyMeters.has(f)) this.emitMeter(f);
    // Sessions still open (flush/evict paths expire them first) would leak their count.
    for (const s of f.queue) { this.open[f.parserIndex].delete(s); this.sessionTotal--; }
    for (const head of f.byId.values()) {
      for (let p: Session | null = head; p !== null; p = p.nextSameId) { this.open[f.parserIndex].delete(p); this.sessionTotal--; }
    }
    f.queue.length = 0;
    f.byId.clear();
    f.openCount = 0;
    this.flows.delete(f.flowId);
  }

  /** The flow's meter for the second of `tUs`, emitting the previous second if it differs. */
  private meterAt(flow: Flow, tUs: number): Meter {
    const second = Math.floor(tUs / 1e6);
    const m = flow.meter;
    if (m.second !== second) {
      if (this.dirtyMeters.has(flow)) this.emitMeter(flow);
      m.second = second;
    }
    this.dirtyMeters.add(flow);
    return m;
  }

  private emitMeter(f: Flow): void {
    const m = f.meter;
    this.dirtyMeters.delete(f);
    this.onMeter({
      flow_id: f.flowId, time: m.second, ip_version: f.ipVersion, ip_0: f.ip0, ip_1: f.ip1,
      server_port: f.serverPort, protocol: f.protocol, l7_protocol: f.parser.name, endpoint: '',
      request: m.request, response: m.response, client_error: m.clientError, server_error: m.serverError,
      timeout: m.timeout, rrt_sum: m.rrtSum, rrt_count: m.rrtCount, rrt_max: m.rrtMax,
    });
    m.request = 0; m.response = 0; m.clientError = 0; m.serverError = 0; m.timeout = 0;
    m.rrtSum = 0; m.rrtCount = 0; m.rrtMax = 0;
  }

  private emitLog(f: Flow, req: L7Message | null, resp: L7Message | null, startUs: number, endUs: number): void {
    // DNS answers repeat the question, so a lone response still names what was asked.
    const q = req ?? resp!;
    const log: flowtap.IL7FlowLog = {
      flow_id: f.flowId, start_time: startUs, end_time: endUs,
      ip_0: f.ip0Text, ip_1: f.ip1Text, client_port: f.clientPort, server_port: f.serverPort,
      protocol: f.protocol, l7_protocol: req?.l7Protocol || resp?.l7Protocol || f.parser.name,
      version: req !== null && req.version !== '' ? req.version : resp?.version ?? '',
      request_type: q.requestType, request_domain: q.requestDomain,
      request_resource: q.requestResource, endpoint: q.endpoint,
      response_status: resp === null ? (req?.oneWay === true ? 'ok' : 'timeout') : resp.responseStatus,
      response_exception: resp?.responseException ?? '',
      response_result: resp?.responseResult ?? '',
      response_duration: req !== null && resp !== null ? endUs - startUs : 0,
      request_length: req?.length ?? 0, response_length: resp?.length ?? 0,
      trace_id: req?.traceId || resp?.traceId || '',
      span_id: req?.spanId || resp?.spanId || '',
      x_request_id: req?.xRequestId || resp?.xRequestId || '',
      vlan: f.vlan, signal_source: 'packet', sampled: false,
    };
    if (resp !== null && resp.responseCode !== undefined) log.response_code = resp.responseCode;
    this.onLog(log);
  }
}
