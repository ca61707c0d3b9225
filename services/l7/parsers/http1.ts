// HTTP/1.0 and 1.1 (RFC 9112). One `parse` call reads one unit of a direction's byte stream: a
// header block (emitting the message), one chunk-size line, or one trailer line. Bodies are never
// buffered: the parser returns their length as bytes to skip, so a cut payload (1024 B per
// segment) costs nothing. Messages are emitted when their headers end.
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_LOST, PARSE_NEED_MORE, newMessage, statusFromHttpCode,
} from '../parser';

const CR = 13, LF = 10, SP = 32, HTAB = 9, COLON = 58;

/** Methods from the IANA HTTP method registry plus a few seen in the wild (SSDP, Cisco CCM). */
const METHODS = [
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'ACL', 'BASELINE-CONTROL', 'BIND', 'CHECKIN', 'CHECKOUT', 'COPY', 'LABEL', 'LINK', 'LOCK',
  'MERGE', 'MKACTIVITY', 'MKCALENDAR', 'MKCOL', 'MKREDIRECTREF', 'MKWORKSPACE', 'MOVE',
  'ORDERPATCH', 'PROPFIND', 'PROPPATCH', 'REBIND', 'REPORT', 'SEARCH', 'UNBIND', 'UNCHECKOUT',
  'UNLINK', 'UNLOCK', 'UPDATE', 'UPDATEREDIRECTREF', 'VERSION-CONTROL', 'PURGE',
  'M-SEARCH', 'NOTIFY', 'SUBSCRIBE', 'UNSUBSCRIBE', 'CCM_POST', 'CCM_GET',
];
/** Methods grouped by first byte, so a check compares against a handful at most. */
const METHODS_BY_FIRST: (string[] | undefined)[] = new Array(256);
for (const m of METHODS) (METHODS_BY_FIRST[m.charCodeAt(0)] ??= []).push(m);

/** Header block larger than this without its end: report what was read and resynchronise. */
export const HTTP_MAX_HEADER_BYTES = 16 * 1024;

/** The known method at `start` when a space or the line end follows it, else ''. */
function methodAt(d: Buffer, start: number, end: number): string {
  const cands = METHODS_BY_FIRST[d[start]];
  if (cands === undefined) return '';
  for (const m of cands) {
    const n = m.length;
    if (start + n >= end) continue;
    const after = d[start + n];
    if (after !== SP && after !== CR && after !== LF) continue;
    let k = 1;
    while (k < n && d[start + k] === m.charCodeAt(k)) k++;
    if (k === n) return m;
  }
  return '';
}

/** d[a, b) as text; the usual versions without a new string each. */
function versionText(d: Buffer, a: number, b: number): string {
  if (b - a === 3 && d[a] === 49 && d[a + 1] === 46) {
    if (d[a + 2] === 49) return '1.1';
    if (d[a + 2] === 48) return '1.0';
  }
  return d.toString('latin1', a, b);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** "HTTP/d.d SP ddd": the status line's fixed prefix (13 bytes). */
function isStatusLine(d: Buffer, s: number, end: number): boolean {
  return end - s >= 12 && d[s] === 72 && d[s + 1] === 84 && d[s + 2] === 84 && d[s + 3] === 80 &&
    d[s + 4] === 47 && d[s + 5] === 49 && d[s + 6] === 46 && isDigit(d[s + 7]) && d[s + 8] === SP &&
    isDigit(d[s + 9]) && isDigit(d[s + 10]) && isDigit(d[s + 11]);
}

/** "HTTP/" at `start` (or the start of it, when fewer bytes are there yet). */
function startsLikeResponse(d: Buffer, s: number, end: number): boolean {
  const lit = 'HTTP/';
  for (let k = 0; k < 5; k++) {
    if (s + k >= end) return k > 0;
    if (d[s + k] !== lit.charCodeAt(k)) return false;
  }
  return true;
}

/** Case-insensitive compare of d[a, b) with a lower-case ASCII literal. */
function eqLower(d: Buffer, a: number, b: number, lit: string): boolean {
  if (b - a !== lit.length) return false;
  for (let k = 0; k < lit.length; k++) {
    let c = d[a + k];
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lit.charCodeAt(k)) return false;
  }
  return true;
}

function containsLower(d: Buffer, a: number, b: number, lit: string): boolean {
  for (let i = a; i + lit.length <= b; i++) if (eqLower(d, i, i + lit.length, lit)) return true;
  return false;
}

/** Index of the LF ending the line that starts at `from`, or -1. */
function lineEnd(d: Buffer, from: number, end: number): number {
  const i = d.indexOf(LF, from);
  return i < 0 || i >= end ? -1 : i;
}

/** Decimal value of d[a, b) (spaces trimmed); -1 when not a number. */
function parseDecimal(d: Buffer, a: number, b: number): number {
  while (a < b && (d[a] === SP || d[a] === HTAB)) a++;
  while (b > a && (d[b - 1] === SP || d[b - 1] === HTAB || d[b - 1] === CR)) b--;
  if (a === b || b - a > 15) return -1;
  let v = 0;
  for (let i = a; i < b; i++) {
    if (!isDigit(d[i])) return -1;
    v = v * 10 + d[i] - 48;
  }
  return v;
}

/** Hex chunk size at the start of d[a, b) (extensions after ';' ignored); -1 when not hex. */
function parseChunkSize(d: Buffer, a: number, b: number): number {
  let v = 0, n = 0;
  for (let i = a; i < b; i++) {
    const c = d[i];
    let x: number;
    if (c >= 48 && c <= 57) x = c - 48;
    else if (c >= 97 && c <= 102) x = c - 87;
    else if (c >= 65 && c <= 70) x = c - 55;
    else break;
    if (++n > 12) return -1;
    v = v * 16 + x;
  }
  return n === 0 ? -1 : v;
}

const MODE_START = 0, MODE_CHUNK_SIZE = 1, MODE_TRAILER = 2;

/** Pending request kinds held at most; more requests before an answer are not remembered. */
const MAX_PENDING = 256;
/** Pending kinds packed 2 bits each into `pendingBits` (oldest lowest); later ones go to an array. */
const PACKED_PENDING = 15;

/**
 * What one connection remembers between calls. Scalars rather than arrays: one object per
 * connection is all a flow costs here, however many connections come and go.
 */
export class Http1FlowState {
  /** Where in a message the client's (0) and the server's (1) stream is. */
  mode0 = MODE_START;
  mode1 = MODE_START;
  /**
   * Requests not answered yet, oldest first: 1 = HEAD (response has no body), 2 = CONNECT,
   * 0 = other. The first PACKED_PENDING are in pendingBits, the rest in pendingMore.
   */
  pendingCount = 0;
  pendingBits = 0;
  pendingMore: number[] | null = null;
  /** After 101 Switching Protocols or a CONNECT tunnel the bytes are no longer HTTP. */
  upgraded = false;

  modeOf(dir: number): number {
    return dir === 0 ? this.mode0 : this.mode1;
  }

  setMode(dir: number, mode: number): void {
    if (dir === 0) this.mode0 = mode; else this.mode1 = mode;
  }

  /** Remembers a request's kind (up to MAX_PENDING unanswered). */
  pushPending(kind: number): void {
    const n = this.pendingCount;
    if (n >= MAX_PENDING) return;
    if (n < PACKED_PENDING) this.pendingBits |= kind << (2 * n);
    else (this.pendingMore ??= []).push(kind);
    this.pendingCount = n + 1;
  }

  /** The oldest unanswered request's kind, forgotten; 0 when none is pending. */
  shiftPending(): number {
    if (this.pendingCount === 0) return 0;
    const kind = this.pendingBits & 3;
    this.pendingBits >>>= 2;
    this.pendingCount--;
    const more = this.pendingMore;
    if (more !== null && more.length > 0) this.pendingBits |= more.shift()! << (2 * (PACKED_PENDING - 1));
    return kind;
  }

  clearPending(): void {
    this.pendingCount = 0;
    this.pendingBits = 0;
    if (this.pendingMore !== null) this.pendingMore.length = 0;
  }
}

/** Header values picked out of one header block. */
class Headers {
  contentLength = -1;
  chunked = false;
  host = '';
  traceId = '';
  spanId = '';
  xRequestId = '';
  complete = false;
  /** Offset just past the blank line ending the block. */
  end = 0;

  reset(): void {
    this.contentLength = -1; this.chunked = false; this.host = ''; this.traceId = '';
    this.spanId = ''; this.xRequestId = ''; this.complete = false; this.end = 0;
  }
}

export class Http1Parser implements L7Parser<Http1FlowState> {
  readonly name = 'HTTP';
  readonly pairsById = false;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  private readonly headers = new Headers();

  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    if (end - start < 4) return CHECK_NONE;
    if (isStatusLine(d, start, end)) return CHECK_RESPONSE;
    if (methodAt(d, start, end) !== '') return CHECK_REQUEST;
    return CHECK_NONE;
  }

  newFlowState(): Http1FlowState {
    return new Http1FlowState();
  }

  resync(state: Http1FlowState, fromClient: boolean): void {
    state.setMode(fromClient ? 0 : 1, MODE_START);
    // After a gap the request/response order is unknown; answers are paired by the stage's queue.
    if (!fromClient) state.clearPending();
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: Http1FlowState, emit: Emit): number {
    if (st.upgraded) return Infinity;
    const dir = ctx.fromClient ? 0 : 1;
    switch (st.modeOf(dir)) {
      case MODE_CHUNK_SIZE: return this.chunkLine(d, start, end, ctx, st, dir);
      case MODE_TRAILER: return this.trailerLine(d, start, end, ctx, st, dir);
      // Which side is the client is the flow stage's guess (a capture may start mid-connection):
      // the message itself says whether it is a request or a response.
      default: return startsLikeResponse(d, start, end) ? this.response(d, start, end, ctx, st, emit) : this.request(d, start, end, ctx, st, emit);
    }
  }

  private chunkLine(d: Buffer, start: number, end: number, ctx: ParseContext, st: Http1FlowState, dir: number): number {
    const lf = lineEnd(d, start, end);
    if (lf < 0) return ctx.truncated || end - start > 1024 ? PARSE_LOST : PARSE_NEED_MORE;
    // Tolerate the CRLF that ends the previous chunk's data when a sender puts it here.
    if (lf === start || (lf === start + 1 && d[start] === CR)) return lf + 1 - start;
    const size = parseChunkSize(d, start, lf);
    if (size < 0) return PARSE_INVALID;
    if (size === 0) {
      st.setMode(dir, MODE_TRAILER);
      return lf + 1 - start;
    }
    // The chunk's data and its CRLF follow; the next unit is the next chunk-size line.
    return lf + 1 - start + size + 2;
  }

  private trailerLine(d: Buffer, start: number, end: number, ctx: ParseContext, st: Http1FlowState, dir: number): number {
    const lf = lineEnd(d, start, end);
    if (lf < 0) return ctx.truncated || end - start > 4096 ? PARSE_LOST : PARSE_NEED_MORE;
    if (lf === start || (lf === start + 1 && d[start] === CR)) st.setMode(dir, MODE_START);
    return lf + 1 - start;
  }

  /** Reads header fields after the start line; sets `headers.complete` if the blank line was seen. */
  private readHeaders(d: Buffer, from: number, end: number): void {
    const h = this.headers;
    let pos = from;
    for (;;) {
      const lf = lineEnd(d, pos, end);
      if (lf < 0) { h.end = pos; return; }
      let e = lf;
      if (e > pos && d[e - 1] === CR) e--;
      if (e === pos) { h.complete = true; h.end = lf + 1; return; }
      const colon = d.indexOf(COLON, pos);
      if (colon > pos && colon < e) this.header(d, pos, colon, e);
      pos = lf + 1;
    }
  }

  private header(d: Buffer, a: number, colon: number, e: number): void {
    const h = this.headers;
    let v = colon + 1;
    while (v < e && (d[v] === SP || d[v] === HTAB)) v++;
    let ve = e;
    while (ve > v && (d[ve - 1] === SP || d[ve - 1] === HTAB)) ve--;
    const n = colon - a;
    if (n === 4 && eqLower(d, a, colon, 'host')) h.host = d.toString('latin1', v, ve);
    else if (n === 14 && eqLower(d, a, colon, 'content-length')) h.contentLength = parseDecimal(d, v, ve);
    else if (n === 17 && eqLower(d, a, colon, 'transfer-encoding')) h.chunked = containsLower(d, v, ve, 'chunked');
    else if (n === 11 && eqLower(d, a, colon, 'traceparent')) {
      // W3C trace context: version-traceid(32 hex)-parentid(16 hex)-flags
      if (ve - v >= 55 && d[v + 2] === 45 && d[v + 35] === 45) {
        h.traceId = d.toString('latin1', v + 3, v + 35);
        h.spanId = d.toString('latin1', v + 36, v + 52);
      }
    } else if (n === 12 && eqLower(d, a, colon, 'x-request-id')) h.xRequestId = d.toString('latin1', v, ve);
    else if (n === 12 && eqLower(d, a, colon, 'x-b3-traceid') && h.traceId === '') h.traceId = d.toString('latin1', v, ve);
    else if (n === 11 && eqLower(d, a, colon, 'x-b3-spanid') && h.spanId === '') h.spanId = d.toString('latin1', v, ve);
  }

  /** Finds the header block end or decides that it will not come. */
  private headerOutcome(d: Buffer, start: number, end: number, ctx: ParseContext, firstLf: number): number {
    this.readHeaders(d, firstLf + 1, end);
    if (this.headers.complete) return 1;
    return ctx.truncated || end - start >= HTTP_MAX_HEADER_BYTES ? PARSE_LOST : PARSE_NEED_MORE;
  }

  private request(d: Buffer, start: number, end: number, ctx: ParseContext, st: Http1FlowState, emit: Emit): number {
    if (end - start < 4) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const method = methodAt(d, start, end);
    const mlen = method.length;
    if (mlen === 0) return PARSE_INVALID;
    let lf = lineEnd(d, start, end);
    if (lf < 0 && !ctx.truncated && end - start < HTTP_MAX_HEADER_BYTES) return PARSE_NEED_MORE;
    this.headers.reset();
    // A request line longer than the capture cut is reported as far as it goes.
    const outcome = lf < 0 ? PARSE_LOST : this.headerOutcome(d, start, end, ctx, lf);
    if (outcome === PARSE_NEED_MORE) return PARSE_NEED_MORE;
    if (lf < 0) lf = end;
    const h = this.headers;

    let le = lf;
    if (le > start && d[le - 1] === CR) le--;
    // request-line = method SP request-target SP HTTP-version; tolerate a missing target/version.
    let u = start + mlen + 1;
    if (u > le) u = le;
    let ue = d.indexOf(SP, u);
    if (ue < 0 || ue > le) ue = le;
    let vs = ue + 1;
    if (vs > le) vs = le;
    const msg = newMessage('request');
    msg.requestType = method;
    msg.requestResource = d.toString('latin1', u, ue);
    let q = msg.requestResource.indexOf('?');
    if (q < 0) q = msg.requestResource.length;
    msg.endpoint = msg.requestResource.slice(0, q);
    msg.version = versionOf(d, vs, le);
    msg.requestDomain = h.host;
    msg.length = h.contentLength > 0 ? h.contentLength : 0;
    msg.traceId = h.traceId; msg.spanId = h.spanId; msg.xRequestId = h.xRequestId;
    const kind = mlen === 4 && d[start] === 72 ? 1 : mlen === 7 && d[start] === 67 && d[start + 1] === 79 ? 2 : 0;
    st.pushPending(kind);
    emit(msg);
    if (outcome === PARSE_LOST) return PARSE_LOST;
    if (h.chunked) {
      st.mode0 = MODE_CHUNK_SIZE;
      return h.end - start;
    }
    return h.end - start + (h.contentLength > 0 ? h.contentLength : 0);
  }

  private response(d: Buffer, start: number, end: number, ctx: ParseContext, st: Http1FlowState, emit: Emit): number {
    if (end - start < 12) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    if (!isStatusLine(d, start, end)) return PARSE_INVALID;
    const lf = lineEnd(d, start, end);
    if (lf < 0) return ctx.truncated || end - start >= HTTP_MAX_HEADER_BYTES ? PARSE_INVALID : PARSE_NEED_MORE;
    this.headers.reset();
    const outcome = this.headerOutcome(d, start, end, ctx, lf);
    if (outcome === PARSE_NEED_MORE) return PARSE_NEED_MORE;
    const h = this.headers;
    const code = (d[start + 9] - 48) * 100 + (d[start + 10] - 48) * 10 + (d[start + 11] - 48);
    // Interim answers (100 Continue, 102, 103) precede the real response of the same request.
    if (code >= 100 && code < 200 && code !== 101) {
      return outcome === PARSE_LOST ? PARSE_LOST : h.end - start;
    }
    let le = lf;
    if (le > start && d[le - 1] === CR) le--;
    const msg = newMessage('response');
    msg.version = versionText(d, start + 5, start + 8);
    msg.responseCode = code;
    msg.responseStatus = statusFromHttpCode(code);
    if (msg.responseStatus === 'client_error' || msg.responseStatus === 'server_error') {
      msg.responseException = start + 13 <= le ? d.toString('latin1', start + 13, le) : '';
    }
    msg.length = h.contentLength > 0 ? h.contentLength : 0;
    msg.traceId = h.traceId; msg.spanId = h.spanId; msg.xRequestId = h.xRequestId;
    const reqKind = st.shiftPending();
    emit(msg);
    if (outcome === PARSE_LOST) return PARSE_LOST;
    if (code === 101 || (reqKind === 2 && code >= 200 && code < 300)) {
      st.upgraded = true;
      return Infinity;
    }
    // RFC 9112 6.3: no body after HEAD, 1xx, 204 and 304, whatever the headers say.
    if (reqKind === 1 || code === 204 || code === 304) return h.end - start;
    if (h.chunked) {
      st.mode1 = MODE_CHUNK_SIZE;
      return h.end - start;
    }
    if (h.contentLength >= 0) return h.end - start + h.contentLength;
    // No length: the body runs until the server closes the connection.
    return Infinity;
  }
}

/** "HTTP/1.1" -> "1.1"; anything else as sent. */
function versionOf(d: Buffer, a: number, b: number): string {
  if (b - a >= 5 && d[a] === 72 && d[a + 1] === 84 && d[a + 2] === 84 && d[a + 3] === 80 && d[a + 4] === 47) a += 5;
  return versionText(d, a, b);
}

export const http1Parser = new Http1Parser();
