// Dubbo 2 protocol (dubbo.apache.org, "Dubbo protocol" spec). A 16-byte header: magic 0xdabb,
// a flag byte (0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization id), a status
// byte (responses), a 64-bit request id and the body length. Requests pair with responses by id.
// With Hessian2 serialization (id 2) the request body starts with four strings: dubbo version,
// service path, service version, method name, which give request_resource and request_type.
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Message, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, ResponseStatus, newMessage,
} from '../parser';
import { traceHeader } from './trace-context';

const MAGIC_HI = 0xda, MAGIC_LO = 0xbb;
const FLAG_REQUEST = 0x80, FLAG_TWO_WAY = 0x40, FLAG_EVENT = 0x20;
const SERIALIZATION_HESSIAN2 = 2;
export const DUBBO_MAX_BODY = 8 << 20;
const MIN_HEAD = 512;

/** Status byte names (Dubbo's Response constants). */
export const DUBBO_STATUS = new Map<number, string>([
  [20, 'OK'], [30, 'CLIENT_TIMEOUT'], [31, 'SERVER_TIMEOUT'], [35, 'CHANNEL_INACTIVE'], [40, 'BAD_REQUEST'],
  [50, 'BAD_RESPONSE'], [60, 'SERVICE_NOT_FOUND'], [70, 'SERVICE_ERROR'], [80, 'SERVER_ERROR'],
  [90, 'CLIENT_ERROR'], [100, 'SERVER_THREADPOOL_EXHAUSTED_ERROR'],
]);

function statusOf(code: number): ResponseStatus {
  if (code === 20) return 'ok';
  if (code === 30 || code === 40 || code === 60 || code === 90) return 'client_error';
  return DUBBO_STATUS.has(code) ? 'server_error' : 'unknown';
}

export class DubboFlowState {}

/**
 * Trace keys as Hessian2 compact strings. Attachments (a string map after the arguments) are not
 * walked: the body is searched for these keys, each followed by its string value.
 */
const TRACE_KEYS = ['traceparent', 'sw8', 'uber-trace-id', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-request-id']
  .map((k) => ({ name: k, encoded: Buffer.concat([Buffer.from([k.length]), Buffer.from(k, 'latin1')]) }));

/** Hessian2 string reader over one body; `bad` when a value is not a string or is cut. */
class Hessian {
  d: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;
  bad = false;
  reset(d: Buffer, pos: number, end: number): void { this.d = d; this.pos = pos; this.end = end; this.bad = false; }

  /** A string (compact 0x00-0x1f, medium 0x30-0x33, 'S' final chunk; 'N' null) -> text. */
  string(): string {
    if (this.bad || this.pos >= this.end) { this.bad = true; return ''; }
    const d = this.d, t = d[this.pos];
    let chars: number;
    if (t <= 0x1f) { chars = t; this.pos += 1; } else if (t >= 0x30 && t <= 0x33) {
      if (this.pos + 2 > this.end) { this.bad = true; return ''; }
      chars = ((t - 0x30) << 8) + d[this.pos + 1];
      this.pos += 2;
    } else if (t === 0x53) {
      if (this.pos + 3 > this.end) { this.bad = true; return ''; }
      chars = d.readUInt16BE(this.pos + 1);
      this.pos += 3;
    } else if (t === 0x4e) { this.pos += 1; return ''; } else { this.bad = true; return ''; }
    // Lengths count characters (UTF-16 units); walk UTF-8 lead bytes to find the byte length.
    const s = this.pos;
    let p = s;
    for (let i = 0; i < chars; i++) {
      if (p >= this.end) { this.bad = true; return ''; }
      const c = d[p];
      p += c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    }
    if (p > this.end) { this.bad = true; return ''; }
    this.pos = p;
    return d.toString('utf8', s, p);
  }
}

export class DubboParser implements L7Parser<DubboFlowState> {
  readonly name = 'Dubbo';
  readonly pairsById = true;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  private readonly h = new Hessian();

  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    if (end - start < 16 || d[start] !== MAGIC_HI || d[start + 1] !== MAGIC_LO) return CHECK_NONE;
    const flag = d[start + 2];
    if ((flag & 0x1f) === 0) return CHECK_NONE;
    const len = d.readInt32BE(start + 12);
    if (len < 0 || len > DUBBO_MAX_BODY) return CHECK_NONE;
    if ((flag & FLAG_REQUEST) === 0) return DUBBO_STATUS.has(d[start + 3]) ? CHECK_RESPONSE : CHECK_NONE;
    return CHECK_REQUEST;
  }

  newFlowState(): DubboFlowState { return new DubboFlowState(); }

  resync(_state: DubboFlowState, _fromClient: boolean): void {
    // Nothing is kept between messages.
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, _st: DubboFlowState, emit: Emit): number {
    const avail = end - start;
    if (avail < 16) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    if (d[start] !== MAGIC_HI || d[start + 1] !== MAGIC_LO) return PARSE_INVALID;
    const len = d.readInt32BE(start + 12);
    if (len < 0 || len > DUBBO_MAX_BODY) return PARSE_INVALID;
    const total = 16 + len;
    if (avail < total && avail < MIN_HEAD && !ctx.truncated) return PARSE_NEED_MORE;
    const flag = d[start + 2], status = d[start + 3];
    // 53 bits of the 64-bit id: enough to keep concurrent requests apart.
    const pid = (d.readUInt32BE(start + 4) & 0x1fffff) * 4294967296 + d.readUInt32BE(start + 8);
    const bodyEnd = Math.min(end, start + total);
    const isRequest = (flag & FLAG_REQUEST) !== 0;
    const msg = newMessage(isRequest ? 'request' : 'response');
    msg.pairId = pid;
    msg.length = len;
    const h = this.h;
    h.reset(d, start + 16, bodyEnd);
    if (isRequest) {
      if ((flag & FLAG_TWO_WAY) === 0) msg.oneWay = true;
      if ((flag & FLAG_EVENT) !== 0) msg.requestType = 'heartbeat';
      else if ((flag & 0x1f) === SERIALIZATION_HESSIAN2) {
        msg.version = h.string();
        const service = h.string();
        h.string(); // service version
        const method = h.string();
        if (!h.bad) {
          msg.requestResource = service;
          msg.requestType = method;
          msg.endpoint = `${service}/${method}`;
        } else if (service !== '') msg.requestResource = service;
        this.traceContext(d, start + 16, bodyEnd, msg);
      }
    } else {
      msg.responseCode = status;
      msg.responseStatus = (flag & FLAG_EVENT) !== 0 && status === 20 ? 'ok' : statusOf(status);
      if (status !== 20) {
        // An error response's body is the error message as a string.
        msg.responseException = (flag & 0x1f) === SERIALIZATION_HESSIAN2 ? h.string() : '';
        if (msg.responseException === '') msg.responseException = DUBBO_STATUS.get(status) ?? '';
      }
    }
    emit(msg);
    return total;
  }

  /** traceparent, sw8, b3, ... and x-request-id from the attachments, as far as the bytes go. */
  private traceContext(d: Buffer, from: number, end: number, msg: L7Message): void {
    const h = this.h;
    for (const k of TRACE_KEYS) {
      const i = d.indexOf(k.encoded, from);
      if (i < 0 || i + k.encoded.length >= end) continue;
      h.reset(d, i + k.encoded.length, end);
      const value = h.string();
      if (!h.bad && value !== '') traceHeader(msg, k.name, value);
    }
  }
}

export const dubboParser = new DubboParser();
