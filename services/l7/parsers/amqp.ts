// AMQP 0-9-1 (the 0-9-1 specification and its XML method table). A connection opens with the
// protocol header "AMQP\0\0\x09\x01"; then frames: type (1 method, 2 content header, 3 content
// body, 8 heartbeat), channel, payload size, payload, frame-end 0xCE. One `parse` call reads one
// frame; only method frames become messages.
//
// Synchronous methods pair with their -Ok on the same channel (pair id: channel and class, since
// a channel has one synchronous request of a class open at a time). Asynchronous ones (Publish,
// Deliver, Return, Ack, Nack, Reject, ...) are one-way requests. When a peer answers a pending
// request with Channel.Close / Connection.Close instead of its -Ok (a failed declare, a refused
// vhost), that request is answered with the Close's reply code and text; the Close itself is a
// request whose Close-Ok answer carries the same code.
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Message, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, ResponseStatus, newMessage,
} from '../parser';

const FRAME_METHOD = 1, FRAME_HEADER = 2, FRAME_BODY = 3, FRAME_HEARTBEAT = 8, FRAME_END = 0xce;
const PROTOCOL_HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');
export const AMQP_MAX_FRAME = 16 << 20;
const MIN_HEAD = 256;

const KIND_REQUEST = 1, KIND_RESPONSE = 2, KIND_ONE_WAY = 3;

/** class id -> name, and per class: method id -> [name, kind]. */
const CLASSES = new Map<number, [string, Map<number, [string, number]>]>();
function cls(id: number, name: string, methods: [number, string, number][]): void {
  CLASSES.set(id, [name, new Map(methods.map(([m, n, k]) => [m, [`${name}.${n}`, k]]))]);
}
const R = KIND_REQUEST, O = KIND_RESPONSE, A = KIND_ONE_WAY;
cls(10, 'Connection', [[10, 'Start', R], [11, 'Start-Ok', O], [20, 'Secure', R], [21, 'Secure-Ok', O],
  [30, 'Tune', R], [31, 'Tune-Ok', O], [40, 'Open', R], [41, 'Open-Ok', O], [50, 'Close', R], [51, 'Close-Ok', O],
  [60, 'Blocked', A], [61, 'Unblocked', A], [70, 'Update-Secret', R], [71, 'Update-Secret-Ok', O]]);
cls(20, 'Channel', [[10, 'Open', R], [11, 'Open-Ok', O], [20, 'Flow', R], [21, 'Flow-Ok', O], [40, 'Close', R], [41, 'Close-Ok', O]]);
cls(40, 'Exchange', [[10, 'Declare', R], [11, 'Declare-Ok', O], [20, 'Delete', R], [21, 'Delete-Ok', O],
  [30, 'Bind', R], [31, 'Bind-Ok', O], [40, 'Unbind', R], [51, 'Unbind-Ok', O]]);
cls(50, 'Queue', [[10, 'Declare', R], [11, 'Declare-Ok', O], [20, 'Bind', R], [21, 'Bind-Ok', O],
  [30, 'Purge', R], [31, 'Purge-Ok', O], [40, 'Delete', R], [41, 'Delete-Ok', O], [50, 'Unbind', R], [51, 'Unbind-Ok', O]]);
cls(60, 'Basic', [[10, 'Qos', R], [11, 'Qos-Ok', O], [20, 'Consume', R], [21, 'Consume-Ok', O], [30, 'Cancel', R],
  [31, 'Cancel-Ok', O], [40, 'Publish', A], [50, 'Return', A], [60, 'Deliver', A], [70, 'Get', R], [71, 'Get-Ok', O],
  [72, 'Get-Empty', O], [80, 'Ack', A], [90, 'Reject', A], [100, 'Recover-Async', A], [110, 'Recover', R],
  [111, 'Recover-Ok', O], [120, 'Nack', A]]);
cls(85, 'Confirm', [[10, 'Select', R], [11, 'Select-Ok', O]]);
cls(90, 'Tx', [[10, 'Select', R], [11, 'Select-Ok', O], [20, 'Commit', R], [21, 'Commit-Ok', O], [30, 'Rollback', R], [31, 'Rollback-Ok', O]]);

function methodOf(classId: number, methodId: number): [string, number] | undefined {
  return CLASSES.get(classId)?.[1].get(methodId);
}

/** Reply codes (spec's constants): 200 ok; soft errors and the client's protocol errors; server faults. */
function statusOfReply(code: number): ResponseStatus {
  if (code === 200) return 'ok';
  if (code === 320 || code === 506 || code === 540 || code === 541) return 'server_error';
  return code >= 300 && code < 600 ? 'client_error' : 'unknown';
}

export class AmqpFlowState {
  /** channel -> pair id * 2 + (asked by client ? 1 : 0) of its pending synchronous request. */
  readonly pending = new Map<number, number>();
  /** channel -> reply code and text of the Close awaiting its Close-Ok. */
  readonly closeCode = new Map<number, number>();
  readonly closeText = new Map<number, string>();
}

export class AmqpParser implements L7Parser<AmqpFlowState> {
  readonly name = 'AMQP';
  readonly pairsById = true;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;

  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    const len = end - start;
    if (len >= 8 && d.compare(PROTOCOL_HEADER, 0, 8, start, start + 8) === 0) return CHECK_REQUEST;
    if (len < 12 || d[start] !== FRAME_METHOD) return CHECK_NONE;
    const size = d.readUInt32BE(start + 3);
    if (size < 4 || size > AMQP_MAX_FRAME) return CHECK_NONE;
    if (start + 7 + size < end && d[start + 7 + size] !== FRAME_END) return CHECK_NONE;
    if (start + 7 + size >= end && len < 512) return CHECK_NONE; // a short segment must hold the frame
    const m = methodOf(d.readUInt16BE(start + 7), d.readUInt16BE(start + 9));
    if (m === undefined) return CHECK_NONE;
    return m[1] === KIND_RESPONSE ? CHECK_RESPONSE : CHECK_REQUEST;
  }

  newFlowState(): AmqpFlowState { return new AmqpFlowState(); }

  resync(_state: AmqpFlowState, _fromClient: boolean): void {
    // Channels and their pending requests stay valid across a gap.
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: AmqpFlowState, emit: Emit): number {
    const avail = end - start;
    if (avail < 8) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    if (d[start] === 0x41) { // 'A': the protocol header (or a server's reply naming its version)
      return d.compare(PROTOCOL_HEADER, 0, 4, start, start + 4) === 0 ? 8 : PARSE_INVALID;
    }
    const type = d[start];
    if (type !== FRAME_METHOD && type !== FRAME_HEADER && type !== FRAME_BODY && type !== FRAME_HEARTBEAT) return PARSE_INVALID;
    const channel = d.readUInt16BE(start + 1);
    const size = d.readUInt32BE(start + 3);
    if (size > AMQP_MAX_FRAME) return PARSE_INVALID;
    const total = size + 8;
    if (avail < total && avail < MIN_HEAD && !ctx.truncated) return PARSE_NEED_MORE;
    if (avail >= total && d[start + total - 1] !== FRAME_END) return PARSE_INVALID;
    if (type !== FRAME_METHOD) return total;
    if (size < 4 || avail < 11) return PARSE_INVALID;
    const classId = d.readUInt16BE(start + 7), methodId = d.readUInt16BE(start + 9);
    const m = methodOf(classId, methodId);
    if (m === undefined) return PARSE_INVALID;
    const args = start + 11, argsEnd = Math.min(end, start + 7 + size);
    const [name, kind] = m;
    const pid = channel * 65536 + classId;
    const askedByUs = ctx.fromClient ? 1 : 0;
    const isClose = (classId === 10 && methodId === 50) || (classId === 20 && methodId === 40);
    let code = -1, text = '';
    if (isClose) {
      code = argsEnd - args >= 2 ? d.readUInt16BE(args) : -1;
      if (code > 999) code = -1; // reply codes are three digits: anything else is not one
      text = shortStr(d, args + 2, argsEnd);
      // A Close from the side that was asked: the pending request failed with this code.
      const p = st.pending.get(channel);
      if (p !== undefined && (p & 1) !== askedByUs) {
        st.pending.delete(channel);
        const failed = newMessage('response');
        failed.pairId = (p - (p & 1)) / 2;
        failed.requestType = name;
        if (code >= 0) failed.responseCode = code;
        failed.responseStatus = statusOfReply(code);
        failed.responseException = text;
        emit(failed);
      }
      st.closeCode.set(channel, code);
      st.closeText.set(channel, text);
    }
    const msg = newMessage(kind === KIND_RESPONSE ? 'response' : 'request');
    msg.requestType = name;
    msg.version = '0-9-1';
    msg.length = size;
    msg.pairId = pid;
    // A synchronous method sent with no-wait gets no -Ok: it is one-way too.
    if (kind === KIND_ONE_WAY || (kind === KIND_REQUEST && noWait(d, args, argsEnd, classId, methodId))) msg.oneWay = true;
    // The Close carries its reply code itself (the stage reports it from the Close-Ok; the
    // request's own code is for whoever records the parser's messages).
    // So does a Basic.Return (why the message came back, e.g. 312 NO_ROUTE).
    if (classId === 60 && methodId === 50 && argsEnd - args >= 2) { code = d.readUInt16BE(args); text = shortStr(d, args + 2, argsEnd); }
    if ((isClose || classId === 60) && code >= 100 && code <= 999) { msg.responseCode = code; msg.responseException = text; }
    if (kind === KIND_REQUEST && !msg.oneWay) st.pending.set(channel, pid * 2 + askedByUs);
    if (kind === KIND_RESPONSE) {
      st.pending.delete(channel);
      msg.responseStatus = 'ok';
      if ((classId === 10 && methodId === 51) || (classId === 20 && methodId === 41)) {
        const c = st.closeCode.get(channel);
        if (c !== undefined && c >= 0) {
          msg.responseCode = c;
          msg.responseStatus = statusOfReply(c);
          if (c !== 200) msg.responseException = st.closeText.get(channel) ?? '';
        }
        st.closeCode.delete(channel);
        st.closeText.delete(channel);
      }
    }
    this.resource(d, args, argsEnd, classId, methodId, msg);
    emit(msg);
    return total;
  }

  /** The exchange, routing key or queue a method names. */
  private resource(d: Buffer, a: number, end: number, classId: number, methodId: number, msg: L7Message): void {
    if (classId === 10 && methodId === 40) { msg.requestDomain = shortStr(d, a, end); return; } // vhost
    if (classId === 40 && (methodId === 10 || methodId === 20)) { msg.requestResource = shortStr(d, a + 2, end); return; }
    if (classId === 50 && methodId <= 50 && methodId % 10 === 0) { msg.requestResource = shortStr(d, a + 2, end); return; }
    if (classId === 50 && methodId === 11) { msg.requestResource = shortStr(d, a, end); return; } // Declare-Ok
    if (classId === 60) {
      if (methodId === 20 || methodId === 70) { msg.requestResource = shortStr(d, a + 2, end); return; } // queue
      let p = -1;
      if (methodId === 40) p = a + 2; // reserved, exchange, routing-key
      else if (methodId === 60) { // consumer-tag, delivery-tag, redelivered, exchange, routing-key
        p = skipShortStr(d, a, end);
        if (p >= 0) p += 9;
      } else if (methodId === 50) p = skipShortStr(d, a + 2, end); // reply-code, reply-text, exchange, rk
      if (p < 0 || p >= end) return;
      const ex = shortStr(d, p, end);
      const q = skipShortStr(d, p, end);
      const rk = q >= 0 ? shortStr(d, q, end) : '';
      msg.requestResource = ex === '' ? rk : rk === '' ? ex : `${ex}/${rk}`;
    }
  }
}

/**
 * The no-wait bit of the synchronous methods that have one: its octet follows the listed short
 * strings (after a 2-byte reserved field for most), at the given bit.
 */
function noWait(d: Buffer, a: number, end: number, classId: number, methodId: number): boolean {
  let reserved = 2, strings = 0, bit = -1;
  if (classId === 40) { // Exchange
    if (methodId === 10) { strings = 2; bit = 4; } else if (methodId === 20) { strings = 1; bit = 1; } else if (methodId === 30 || methodId === 40) { strings = 3; bit = 0; }
  } else if (classId === 50) { // Queue
    if (methodId === 10) { strings = 1; bit = 4; } else if (methodId === 20) { strings = 3; bit = 0; } else if (methodId === 30) { strings = 1; bit = 0; } else if (methodId === 40) { strings = 1; bit = 2; }
  } else if (classId === 60) { // Basic
    if (methodId === 20) { strings = 2; bit = 3; } else if (methodId === 30) { reserved = 0; strings = 1; bit = 0; }
  } else if (classId === 85 && methodId === 10) { reserved = 0; bit = 0; } // Confirm.Select
  if (bit < 0) return false;
  let p = a + reserved;
  for (let i = 0; i < strings && p >= 0; i++) p = skipShortStr(d, p, end);
  return p >= 0 && p < end && (d[p] & (1 << bit)) !== 0;
}

/** A short string (octet length) at `p`, '' if cut. */
function shortStr(d: Buffer, p: number, end: number): string {
  if (p >= end) return '';
  const n = d[p];
  if (p + 1 + n > end) return '';
  return d.toString('utf8', p + 1, p + 1 + n);
}

function skipShortStr(d: Buffer, p: number, end: number): number {
  if (p >= end) return -1;
  const q = p + 1 + d[p];
  return q > end ? -1 : q;
}

export const amqpParser = new AmqpParser();
