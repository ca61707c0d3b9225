// Redis serialization protocol, RESP2 and RESP3 (redis.io "Redis serialization protocol
// specification"). A request is an array of bulk strings or an inline command line; a response is
// any one RESP value, optionally preceded by RESP3 attributes ('|'). One `parse` call reads one
// value. Pairing is by order (pipelining keeps order); out-of-band data is not a response:
// RESP3 pushes ('>') and, in RESP2, the "message"/"pmessage"/"smessage" arrays a subscribed
// connection receives, plus the extra confirmations of a SUBSCRIBE naming several channels. Those
// are counted in `RedisFlowState.pushes`, never emitted, so they do not shift the pairing.
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_LOST, PARSE_NEED_MORE, newMessage,
} from '../parser';

const CR = 13, LF = 10, SP = 32;
/** request_resource is cut to this many characters (arguments may be large values). */
export const REDIS_MAX_RESOURCE = 256;
/** Deepest nesting of aggregates read; deeper is taken as garbage. */
const MAX_DEPTH = 16;
/** A value longer than this (bytes) is not waited for: it is reported and its rest skipped. */
const MAX_BUFFERED = 16 * 1024;
const NEED = -1, BAD = -2;

/** Commands accepted as inline (telnet-style) requests: a closed list keeps inference strict. */
const INLINE_COMMANDS = new Set([
  'PING', 'ECHO', 'GET', 'SET', 'DEL', 'EXISTS', 'INCR', 'DECR', 'KEYS', 'INFO', 'AUTH', 'SELECT',
  'QUIT', 'PUBLISH', 'SUBSCRIBE', 'PSUBSCRIBE', 'UNSUBSCRIBE', 'PUNSUBSCRIBE', 'MGET', 'MSET',
  'HGET', 'HSET', 'HGETALL', 'LPUSH', 'RPUSH', 'LPOP', 'RPOP', 'LRANGE', 'SADD', 'SMEMBERS', 'ZADD',
  'ZRANGE', 'EXPIRE', 'TTL', 'TYPE', 'DBSIZE', 'FLUSHALL', 'FLUSHDB', 'CONFIG', 'CLIENT', 'HELLO',
  'MONITOR', 'MULTI', 'EXEC', 'DISCARD', 'WATCH', 'SCAN', 'COMMAND', 'APPEND', 'STRLEN', 'SETEX',
]);
const SUBSCRIBE_REPLIES = new Set(['subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe']);
const PUSHED_MESSAGES = new Set(['message', 'pmessage', 'smessage']);

/** What one connection remembers. */
export class RedisFlowState {
  /** Requests not answered yet: 1 = a (un)subscribe command (its reply looks like a push), 0 = other. */
  readonly pending: number[] = [];
  /** A (P/S)SUBSCRIBE was seen: arrays named "message" from the server are pushes. */
  subscribed = false;
  /** Out-of-band values from the server (pushes, pub/sub messages, extra confirmations). */
  pushes = 0;
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Index of the CR of a CRLF at or after `from`, or -1. */
function crlf(d: Buffer, from: number, end: number): number {
  let i = d.indexOf(LF, from);
  if (i < 0 || i >= end) return -1;
  return i > from && d[i - 1] === CR ? i - 1 : i;
}

/** Signed decimal of d[a, b); NaN if not one. */
function decimal(d: Buffer, a: number, b: number): number {
  let neg = false;
  if (a < b && (d[a] === 45 || d[a] === 43)) { neg = d[a] === 45; a++; }
  if (a === b || b - a > 15) return NaN;
  let v = 0;
  for (let i = a; i < b; i++) {
    if (!isDigit(d[i])) return NaN;
    v = v * 10 + d[i] - 48;
  }
  return neg ? -v : v;
}

function lineEndOf(d: Buffer, e: number): number {
  return d[e] === CR ? e + 2 : e + 1;
}

/**
 * Offset just past the RESP value at `pos`, or NEED (incomplete) / BAD (not RESP). Reused by
 * requests and responses; a bulk whose bytes are not all there yet is NEED.
 */
export function skipValue(d: Buffer, pos: number, end: number, depth: number): number {
  if (pos >= end) return NEED;
  if (depth > MAX_DEPTH) return BAD;
  const t = d[pos];
  const e = crlf(d, pos + 1, end);
  if (e < 0) return end - pos > 4096 ? BAD : NEED;
  const next = lineEndOf(d, e);
  switch (t) {
    case 43: case 45: case 58: case 95: case 44: case 35: case 40: // + - : _ , # (
      return next;
    case 36: case 33: case 61: { // $ ! = : length-prefixed
      const n = decimal(d, pos + 1, e);
      if (Number.isNaN(n) || n < -1) return BAD;
      if (n === -1) return next;
      if (next + n + 2 > end) return NEED;
      return next + n + 2;
    }
    case 42: case 126: case 62: case 37: case 124: { // * ~ > % |
      let n = decimal(d, pos + 1, e);
      if (Number.isNaN(n) || n < -1) return BAD;
      if (n === -1) return next;
      if (t === 37 || t === 124) n *= 2; // maps and attributes hold key-value pairs
      let p = next;
      for (let i = 0; i < n; i++) {
        p = skipValue(d, p, end, depth + 1);
        if (p < 0) return p;
      }
      return p;
    }
    default:
      return BAD;
  }
}

/** "GET" for a bulk string `$3\r\nget\r\n` at `pos` (upper-cased), or "" if it is not a bulk. */
function bulkText(d: Buffer, pos: number, end: number, maxLen: number, upper: boolean): string {
  if (pos >= end || d[pos] !== 36) return '';
  const e = crlf(d, pos + 1, end);
  if (e < 0) return '';
  const n = decimal(d, pos + 1, e);
  if (!(n >= 0)) return '';
  const a = lineEndOf(d, e);
  const b = Math.min(a + n, end, a + maxLen);
  const s = d.toString('latin1', a, b);
  return upper ? s.toUpperCase() : s;
}

function looksLikeInline(d: Buffer, start: number, end: number): number {
  // Returns the length of a known command name followed by a space or the line end, else 0.
  let i = start;
  while (i < end && i - start < 12) {
    const c = d[i] | 0x20;
    if (c < 97 || c > 122) break;
    i++;
  }
  if (i === start || i >= end || (d[i] !== SP && d[i] !== CR && d[i] !== LF)) return 0;
  return INLINE_COMMANDS.has(d.toString('latin1', start, i).toUpperCase()) ? i - start : 0;
}

export class RedisParser implements L7Parser<RedisFlowState> {
  readonly name = 'Redis';
  readonly pairsById = false;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;

  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    if (end - start < 3) return CHECK_NONE;
    const t = d[start];
    if (t === 42) {
      // A request: *<n>\r\n$<len>\r\n<command>
      let i = start + 1;
      while (i < end && isDigit(d[i])) i++;
      if (i === start + 1 || i + 2 >= end || d[i] !== CR || d[i + 1] !== LF) return CHECK_NONE;
      return d[i + 2] === 36 ? CHECK_REQUEST : d[i + 2] === 42 || d[i + 2] === 58 ? CHECK_RESPONSE : CHECK_NONE;
    }
    if (looksLikeInline(d, start, end) > 0) return CHECK_REQUEST;
    // A response: a type byte and a well-formed first line.
    const e = crlf(d, start + 1, end);
    if (e < 0 || d[e] !== CR) return CHECK_NONE;
    switch (t) {
      case 43: // + : a status word ("OK", "PONG", "QUEUED"); a line with spaces is more likely POP3's "+OK ..."
        for (let i = start + 1; i < e; i++) if (d[i] <= 32 || d[i] > 126) return CHECK_NONE;
        return e > start + 1 ? CHECK_RESPONSE : CHECK_NONE;
      case 45: // - : an error code word in capitals, then the message
        if (!(d[start + 1] >= 65 && d[start + 1] <= 90)) return CHECK_NONE;
        for (let i = start + 1; i < e; i++) if (d[i] < 32 || d[i] > 126) return CHECK_NONE;
        return CHECK_RESPONSE;
      case 58: case 36: // : $
        return Number.isNaN(decimal(d, start + 1, e)) ? CHECK_NONE : CHECK_RESPONSE;
      default:
        return CHECK_NONE;
    }
  }

  newFlowState(): RedisFlowState {
    return new RedisFlowState();
  }

  resync(state: RedisFlowState, fromClient: boolean): void {
    if (!fromClient) state.pending.length = 0;
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: RedisFlowState, emit: Emit): number {
    return ctx.fromClient ? this.request(d, start, end, ctx, st, emit) : this.response(d, start, end, ctx, st, emit);
  }

  private request(d: Buffer, start: number, end: number, ctx: ParseContext, st: RedisFlowState, emit: Emit): number {
    const t = d[start];
    if (t !== 42) return this.inline(d, start, end, ctx, st, emit);
    let stop = skipValue(d, start, end, 0);
    if (stop === BAD) return PARSE_INVALID;
    const whole = stop !== NEED;
    if (!whole && !ctx.truncated && end - start < MAX_BUFFERED) return PARSE_NEED_MORE;
    if (!whole) stop = end;
    // Arguments as far as they are there, joined by spaces up to REDIS_MAX_RESOURCE.
    const e = crlf(d, start + 1, end);
    const n = e < 0 ? NaN : decimal(d, start + 1, e);
    if (!(n >= 1)) return n === 0 || n === -1 ? lineEndOf(d, e) - start : PARSE_INVALID;
    const msg = newMessage('request');
    let p = lineEndOf(d, e);
    let resource = '';
    for (let i = 0; i < n && p < stop && resource.length < REDIS_MAX_RESOURCE; i++) {
      const arg = bulkText(d, p, stop, REDIS_MAX_RESOURCE, i === 0);
      if (i === 0) {
        if (d[p] !== 36) return PARSE_INVALID;
        msg.requestType = arg;
      }
      resource = i === 0 ? arg : resource + ' ' + arg;
      const q = skipValue(d, p, stop, 1);
      if (q < 0) break;
      p = q;
    }
    msg.requestResource = resource.length > REDIS_MAX_RESOURCE ? resource.slice(0, REDIS_MAX_RESOURCE) : resource;
    msg.length = stop - start;
    this.noteRequest(st, msg.requestType);
    emit(msg);
    return whole ? stop - start : PARSE_LOST;
  }

  private inline(d: Buffer, start: number, end: number, ctx: ParseContext, st: RedisFlowState, emit: Emit): number {
    const e = crlf(d, start, end);
    if (e < 0) {
      if (!ctx.truncated && end - start < 4096) return looksLikeInline(d, start, end) > 0 || end - start < 12 ? PARSE_NEED_MORE : PARSE_INVALID;
      return PARSE_INVALID;
    }
    const n = looksLikeInline(d, start, end);
    if (n === 0) return e === start ? lineEndOf(d, e) - start : PARSE_INVALID; // blank lines are ignored by servers
    const msg = newMessage('request');
    msg.requestType = d.toString('latin1', start, start + n).toUpperCase();
    const b = Math.min(e, start + REDIS_MAX_RESOURCE);
    msg.requestResource = msg.requestType + d.toString('latin1', start + n, b);
    msg.length = lineEndOf(d, e) - start;
    this.noteRequest(st, msg.requestType);
    emit(msg);
    return msg.length;
  }

  private noteRequest(st: RedisFlowState, command: string): void {
    const sub = command.endsWith('SUBSCRIBE');
    if (command === 'SUBSCRIBE' || command === 'PSUBSCRIBE' || command === 'SSUBSCRIBE') st.subscribed = true;
    if (st.pending.length < 1024) st.pending.push(sub ? 1 : 0);
  }

  private response(d: Buffer, start: number, end: number, ctx: ParseContext, st: RedisFlowState, emit: Emit): number {
    let pos = start;
    // RESP3 attributes describe the reply that follows them.
    while (pos < end && d[pos] === 124) {
      const a = skipValue(d, pos, end, 0);
      if (a === BAD) return PARSE_INVALID;
      if (a === NEED) return ctx.truncated || end - start >= MAX_BUFFERED ? PARSE_LOST : PARSE_NEED_MORE;
      pos = a;
    }
    if (pos >= end) return PARSE_NEED_MORE;
    const t0 = d[pos];
    if (t0 === 36 || t0 === 61) {
      // A bulk reply is not buffered: once its length is read, its bytes are skipped.
      const e0 = crlf(d, pos + 1, end);
      if (e0 < 0) return end - pos > 64 ? PARSE_INVALID : ctx.truncated ? PARSE_LOST : PARSE_NEED_MORE;
      const n = decimal(d, pos + 1, e0);
      if (Number.isNaN(n) || n < -1) return PARSE_INVALID;
      const msg = newMessage('response');
      msg.responseStatus = 'ok';
      const body = lineEndOf(d, e0);
      msg.length = n < 0 ? 0 : n;
      if (n < 0) msg.responseResult = 'nil';
      if (st.pending.length > 0) st.pending.shift();
      emit(msg);
      return body - start + (n < 0 ? 0 : n + 2);
    }
    let stop = skipValue(d, pos, end, 0);
    if (stop === BAD) return PARSE_INVALID;
    const whole = stop !== NEED;
    if (!whole && !ctx.truncated && end - start < MAX_BUFFERED) return PARSE_NEED_MORE;
    if (!whole) stop = end;
    const t = d[pos];
    if (t === 62 || this.isPubSubPush(d, pos, stop, st)) {
      st.pushes++;
      return whole ? stop - start : PARSE_LOST;
    }
    const msg = newMessage('response');
    msg.length = stop - start;
    msg.responseStatus = 'ok';
    const e = crlf(d, pos + 1, stop);
    const lineEnd = e < 0 ? stop : e;
    if (t === 45) {
      msg.responseStatus = 'server_error';
      msg.responseException = d.toString('latin1', pos + 1, Math.min(lineEnd, pos + 1 + REDIS_MAX_RESOURCE));
    } else if (t === 33) {
      // Blob error: "!<len>\r\n<code and message>"
      msg.responseStatus = 'server_error';
      const a = e < 0 ? stop : lineEndOf(d, e);
      msg.responseException = d.toString('latin1', a, Math.min(stop, a + REDIS_MAX_RESOURCE)).replace(/\r\n$/, '');
    } else if (t === 43 || t === 58 || t === 44 || t === 35 || t === 40) {
      msg.responseResult = d.toString('latin1', pos + 1, Math.min(lineEnd, pos + 1 + REDIS_MAX_RESOURCE));
    } else if (t === 42 || t === 95) {
      // Null array: a miss, worth telling apart from an empty value.
      if (t === 95 || (e >= 0 && e === pos + 3 && d[pos + 1] === 45 && d[pos + 2] === 49)) msg.responseResult = 'nil';
    }
    if (st.pending.length > 0) st.pending.shift();
    emit(msg);
    return whole ? stop - start : PARSE_LOST;
  }

  /** A RESP2 pub/sub delivery, or a further confirmation of a multi-channel (un)subscribe. */
  private isPubSubPush(d: Buffer, pos: number, stop: number, st: RedisFlowState): boolean {
    if (d[pos] !== 42) return false;
    const e = crlf(d, pos + 1, stop);
    if (e < 0) return false;
    const kind = bulkText(d, lineEndOf(d, e), stop, 16, false).toLowerCase();
    if (st.subscribed && PUSHED_MESSAGES.has(kind)) return true;
    if (SUBSCRIBE_REPLIES.has(kind)) return !(st.pending.length > 0 && st.pending[0] === 1);
    return false;
  }
}

export const redisParser = new RedisParser();
