// HTTP/2 (RFC 9113) and gRPC over it. One `parse` call reads one unit of a direction's stream:
// the client connection preface or one frame. Header blocks (HEADERS/PUSH_PROMISE plus
// CONTINUATION) are decoded with HPACK (hpack.ts), one dynamic table per direction; other frames
// are skipped by length, so DATA costs nothing.
//
// Messages: a request per stream-opening header block (:method, :authority, :path), a response
// per final (non-1xx) :status block. For gRPC (content-type application/grpc) the response waits
// for the trailers, whose grpc-status becomes response_code. Pairing is by stream id.
//
// h2c: a connection that starts as HTTP/1.1 with "Upgrade: h2c" is read as HTTP/1 (by the HTTP/1
// parser, records labelled "HTTP") until "101 Switching Protocols", then as HTTP/2. As tshark
// does, the upgraded request's answer on stream 1 is reported as an HTTP/2 response of its own.
// A second instance, `http2UpgradeParser`, infers only the preface and such upgrade requests, so
// the registry can try it before the HTTP/1 parser.
//
// Mid-connection captures: header blocks that reference dynamic-table entries inserted before the
// capture began are decoded as far as they can be (literal fields, static-table fields) and
// counted in `drops.hpack_unknown_reference`.
//
// `drops` reasons:
//   hpack_unknown_reference  a header block referenced dynamic-table entries never seen
//   hpack_error              a header block was not valid HPACK (the table is then forgotten)
//   header_block_cut         a header block longer than the captured bytes (read as far as it goes)
//   bad_frame                a frame header that is not HTTP/2 where a frame should start
//   stream_evicted           a stream forgotten because a connection held too many open ones
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Message, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, ResponseStatus, newMessage, statusFromHttpCode,
} from '../parser';
import { HPACK_ERROR, HPACK_UNKNOWN_REFERENCE, HpackDecoder } from './hpack';
import { Http1FlowState, http1Parser } from './http1';
import { traceHeader } from './trace-context';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const T_DATA = 0, T_HEADERS = 1, T_PRIORITY = 2, T_RST_STREAM = 3, T_SETTINGS = 4, T_PUSH_PROMISE = 5,
  T_PING = 6, T_GOAWAY = 7, T_WINDOW_UPDATE = 8, T_CONTINUATION = 9;
const F_END_STREAM = 0x1, F_ACK = 0x1, F_END_HEADERS = 0x4, F_PADDED = 0x8, F_PRIORITY = 0x20;
/** Flags each frame type defines; others set mean this is not a frame header (check only). */
const DEFINED_FLAGS = [0x09, 0x2d, 0, 0, 0x01, 0x0c, 0x01, 0, 0, 0x04];

/** Largest frame accepted (SETTINGS_MAX_FRAME_SIZE may reach 2^24-1; real peers stay far below). */
const MAX_FRAME = 1 << 20;
/** Inference from bare frames assumes the default SETTINGS_MAX_FRAME_SIZE: a stricter test. */
const CHECK_MAX_FRAME = 16384;
/** Largest header block kept across CONTINUATION frames. */
const MAX_HEADER_BLOCK = 64 * 1024;
/** Open streams remembered per connection. */
const MAX_STREAMS = 1024;

/** RFC 9113 section 7 error codes, for RST_STREAM. */
const ERROR_NAMES = [
  'NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT',
  'STREAM_CLOSED', 'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR',
  'CONNECT_ERROR', 'ENHANCE_YOUR_CALM', 'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED',
];

/** gRPC status codes (grpc/doc/statuscodes.md). */
export const GRPC_CODE_NAMES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE',
  'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED',
];
/** Codes caused by the caller (bad argument, missing rights...) count as client errors. */
const GRPC_CLIENT_CODES = new Set([1, 3, 5, 6, 7, 9, 11, 16]);

export function statusFromGrpcCode(code: number): ResponseStatus {
  if (code === 0) return 'ok';
  if (GRPC_CLIENT_CODES.has(code)) return 'client_error';
  return 'server_error';
}

class H2Stream {
  grpc = false;
  /** The final :status seen, waiting for gRPC trailers; -1 before. */
  httpStatus = -1;
  requestSeen = false;
  answered = false;
}

const MODE_UNKNOWN = 0, MODE_HTTP1 = 1, MODE_HTTP2 = 2;
const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const UPGRADE_H2C = /\r\nupgrade:[ \t]*h2c/i;

/** One direction of the connection. */
class Direction {
  /** HTTP/1 before an h2c upgrade, HTTP/2 after it or from the start. */
  mode = MODE_UNKNOWN;
  readonly hpack = new HpackDecoder();
  /** Header block being gathered across CONTINUATION frames. */
  block: Buffer = Buffer.alloc(0);
  blockLen = 0;
  /** Stream of that block (0: none open), its flags and frame type, and whether a part was cut. */
  blockStream = 0;
  blockEndStream = false;
  blockPush = false;
  blockCut = false;
  /** Seen the start of this direction (client preface; server's first SETTINGS after it). */
  started = false;
}

export class Http2FlowState {
  readonly dirs: [Direction, Direction] = [new Direction(), new Direction()];
  readonly streams = new Map<number, H2Stream>();
  /** The HTTP/1 parser's state while the connection is HTTP/1 (h2c upgrade). */
  h1: Http1FlowState | null = null;
}

/** The fields of one header block that matter. Reused: one block is decoded at a time. */
class BlockFields {
  method = ''; path = ''; authority = ''; status = -1; contentType = ''; grpcStatus = -1;
  grpcMessage = ''; contentLength = -1; count = 0;
  readonly trace = newMessage('request');
  reset(): void {
    this.method = ''; this.path = ''; this.authority = ''; this.status = -1; this.contentType = '';
    this.grpcStatus = -1; this.grpcMessage = ''; this.contentLength = -1; this.count = 0;
    this.trace.traceId = ''; this.trace.spanId = ''; this.trace.xRequestId = '';
  }
}

function parseSmallInt(v: string): number {
  if (v.length === 0 || v.length > 9) return -1;
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}

/** Whether d[p, p+9) can be a frame header (type known, flags defined, stream id rules). */
/** Inference also wants undefined flags clear (peers send them so; RFC 9113 says to ignore them). */
function plausibleFrameHeader(d: Buffer, p: number, maxLen: number, strictFlags: boolean): boolean {
  const len = (d[p] << 16) | (d[p + 1] << 8) | d[p + 2];
  const type = d[p + 3], flags = d[p + 4];
  const sid = d.readUInt32BE(p + 5);
  if (type > T_CONTINUATION || (strictFlags && (flags & ~DEFINED_FLAGS[type]) !== 0) || sid > 0x7fffffff || len > maxLen) return false;
  switch (type) {
    case T_DATA: case T_HEADERS: case T_CONTINUATION: return sid !== 0;
    case T_PRIORITY: return sid !== 0 && len === 5;
    case T_RST_STREAM: return sid !== 0 && len === 4;
    case T_SETTINGS: return sid === 0 && len % 6 === 0 && ((flags & F_ACK) === 0 || len === 0);
    case T_PUSH_PROMISE: return sid !== 0 && len >= 4;
    case T_PING: return sid === 0 && len === 8;
    case T_GOAWAY: return sid === 0 && len >= 8;
    case T_WINDOW_UPDATE: return len === 4;
    default: return false;
  }
}

function isPrefacePrefix(d: Buffer, start: number, end: number): boolean {
  const n = Math.min(end - start, PREFACE.length);
  for (let i = 0; i < n; i++) if (d[start + i] !== PREFACE[i]) return false;
  return n > 0;
}

export class Http2Parser implements L7Parser<Http2FlowState> {
  readonly name = 'HTTP2';
  readonly pairsById = true;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  readonly drops: Record<string, number> = {
    hpack_unknown_reference: 0, hpack_error: 0, header_block_cut: 0, bad_frame: 0, stream_evicted: 0,
  };
  private readonly fields = new BlockFields();
  private readonly sink = (name: string, value: string): void => this.onField(name, value);
  private curEmit: Emit | null = null;
  /** HTTP/1 messages before the upgrade: labelled HTTP, paired in order under id 0. */
  private readonly h1Emit = (msg: L7Message): void => {
    msg.l7Protocol = 'HTTP';
    msg.pairId = 0;
    this.curEmit!(msg);
  };

  readonly inferFirst: boolean;

  /** `upgradeOnly`: `check` accepts only the preface and HTTP/1.1 requests to upgrade to h2c. */
  constructor(private readonly upgradeOnly = false) {
    this.inferFirst = upgradeOnly;
  }

  check(d: Buffer, start: number, end: number, ctx: ParseContext): CheckResult {
    if (end - start >= PREFACE.length && isPrefacePrefix(d, start, end)) return CHECK_REQUEST;
    if (isUpgradeRequest(d, start, end, ctx)) return CHECK_REQUEST;
    if (isSwitchingProtocols(d, start, end)) return CHECK_RESPONSE;
    if (this.upgradeOnly) return CHECK_NONE;
    // HTTP/1 messages of a connection that asked for h2c (the server may decline): the stage
    // checks each direction's first bytes. Inference tries HTTP/1 before this parser anyway.
    const h1 = http1Parser.check(d, start, end, ctx);
    if (h1 !== CHECK_NONE) return h1;
    // Mid-connection: every whole frame header in the payload must be plausible, and the frames
    // must fill it (the last one may go on past it).
    if (end - start < 9) return CHECK_NONE;
    let p = start, frames = 0;
    while (p + 9 <= end && frames < 64) {
      if (!plausibleFrameHeader(d, p, CHECK_MAX_FRAME, true)) return CHECK_NONE;
      p += 9 + ((d[p] << 16) | (d[p + 1] << 8) | d[p + 2]);
      frames++;
    }
    if (p < end && p + 9 > end && frames < 64) return CHECK_NONE; // a partial frame header: misaligned
    return ctx.fromClient ? CHECK_REQUEST : CHECK_RESPONSE;
  }

  newFlowState(): Http2FlowState {
    return new Http2FlowState();
  }

  resync(st: Http2FlowState, fromClient: boolean): void {
    // Bytes were lost: header blocks among them may have changed the dynamic table.
    const dir = st.dirs[fromClient ? 0 : 1];
    dir.hpack.forget();
    dir.blockStream = 0;
    dir.blockLen = 0;
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: Http2FlowState, emit: Emit): number {
    const avail = end - start;
    const dirIdx = ctx.fromClient ? 0 : 1;
    const dir = st.dirs[dirIdx];
    if (d[start] === 0x50 && isPrefacePrefix(d, start, end)) {
      if (avail < PREFACE.length) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
      dir.mode = MODE_HTTP2;
      dir.hpack.startFresh();
      dir.started = true;
      // The server's table starts with the connection too.
      const other = st.dirs[1 - dirIdx];
      if (!other.started) { other.hpack.startFresh(); other.started = true; }
      return PREFACE.length;
    }
    if (dir.mode !== MODE_HTTP2) {
      if (dir.mode === MODE_UNKNOWN) {
        if (avail < 9 && !ctx.truncated) return PARSE_NEED_MORE;
        dir.mode = http1Parser.check(d, start, end, ctx) !== CHECK_NONE ? MODE_HTTP1 : MODE_HTTP2;
      }
      if (dir.mode === MODE_HTTP1) return this.parseHttp1(d, start, end, ctx, st, dir, emit);
    }
    if (avail < 9) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const len = (d[start] << 16) | (d[start + 1] << 8) | d[start + 2];
    const type = d[start + 3], flags = d[start + 4];
    const sid = d.readUInt32BE(start + 5) & 0x7fffffff;
    if (len > MAX_FRAME || (type <= T_CONTINUATION && !plausibleFrameHeader(d, start, MAX_FRAME, false))) {
      this.drops.bad_frame++;
      return PARSE_INVALID;
    }
    const total = 9 + len;
    if (type === T_HEADERS || type === T_PUSH_PROMISE || type === T_CONTINUATION) {
      // Wait for a whole frame up to the default maximum size (the stage buffers 32 KiB per
      // direction); a larger one is decoded as far as it was captured.
      if (avail < total && !ctx.truncated && len <= CHECK_MAX_FRAME) return PARSE_NEED_MORE;
      this.headerFrame(d, start + 9, Math.min(end, start + total), avail < total, type, flags, sid, len, ctx, st, dir, emit);
      return total;
    }
    if (type === T_RST_STREAM && avail >= total) this.rstStream(d.readUInt32BE(start + 9), sid, ctx, st, emit);
    return total;
  }

  /** HTTP/1 before the upgrade, read by the HTTP/1 parser; its 101 response switches to HTTP/2. */
  private parseHttp1(d: Buffer, start: number, end: number, ctx: ParseContext, st: Http2FlowState, dir: Direction,
    emit: Emit): number {
    const h1 = st.h1 ?? (st.h1 = http1Parser.newFlowState());
    if (h1.upgraded) return PARSE_INVALID; // neither HTTP/1 nor the preface after the upgrade
    this.curEmit = emit;
    const r = http1Parser.parse(d, start, end, ctx, h1, this.h1Emit);
    this.curEmit = null;
    if (!h1.upgraded) return r;
    // The 101 (or a CONNECT's 2xx) was just read: HTTP/2 frames follow its header block.
    const hdrEnd = d.indexOf(CRLFCRLF, start);
    if (hdrEnd < 0 || hdrEnd + 4 > end) return PARSE_INVALID;
    dir.mode = MODE_HTTP2;
    dir.hpack.startFresh();
    dir.started = true;
    return hdrEnd + 4 - start;
  }

  private headerFrame(d: Buffer, a: number, b: number, cut: boolean, type: number, flags: number, sid: number,
    len: number, ctx: ParseContext, st: Http2FlowState, dir: Direction, emit: Emit): void {
    if (type === T_CONTINUATION) {
      if (dir.blockStream !== sid) return; // its HEADERS frame was not seen
    } else {
      let p = a, stop = a + len;
      if (flags & F_PADDED) {
        if (p >= b) { this.cutBlock(dir); return; }
        stop -= d[p]; // the padding ends the payload; its length byte starts it
        p++;
      }
      if (type === T_HEADERS && (flags & F_PRIORITY)) p += 5;
      let target = sid;
      if (type === T_PUSH_PROMISE) {
        if (p + 4 > b) { this.cutBlock(dir); return; }
        target = d.readUInt32BE(p) & 0x7fffffff;
        p += 4;
      }
      if (stop < p) { this.drops.bad_frame++; return; }
      dir.blockStream = target;
      dir.blockEndStream = type === T_HEADERS && (flags & F_END_STREAM) !== 0;
      dir.blockPush = type === T_PUSH_PROMISE;
      dir.blockCut = false;
      dir.blockLen = 0;
      a = p;
      // Padding is never part of the block.
      if (b > stop) b = stop;
    }
    const endHeaders = (flags & F_END_HEADERS) !== 0;
    // One-frame blocks (the usual case) are decoded in place, without a copy.
    if (endHeaders && dir.blockLen === 0) {
      this.decodeBlock(d, a, Math.max(a, b), !cut && !dir.blockCut, sid, ctx, st, dir, emit);
      return;
    }
    const n = Math.max(0, b - a);
    if (dir.blockLen + n > MAX_HEADER_BLOCK) { dir.blockCut = true; }
    else {
      if (dir.block.length < dir.blockLen + n) {
        const grown = Buffer.allocUnsafe(Math.min(MAX_HEADER_BLOCK, Math.max(1024, (dir.blockLen + n) * 2)));
        dir.block.copy(grown, 0, 0, dir.blockLen);
        dir.block = grown;
      }
      d.copy(dir.block, dir.blockLen, a, a + n);
      dir.blockLen += n;
    }
    if (cut) dir.blockCut = true;
    if (endHeaders || cut) {
      this.decodeBlock(dir.block, 0, dir.blockLen, !dir.blockCut, dir.blockStream, ctx, st, dir, emit);
      dir.blockLen = 0;
      dir.blockStream = 0;
    }
  }

  private cutBlock(dir: Direction): void {
    this.drops.header_block_cut++;
    dir.hpack.forget();
    dir.blockStream = 0;
    dir.blockLen = 0;
  }

  private onField(name: string, value: string): void {
    const f = this.fields;
    f.count++;
    if (name.charCodeAt(0) === 58) { // ':'
      if (name === ':method') f.method = value;
      else if (name === ':path') f.path = value;
      else if (name === ':authority') f.authority = value;
      else if (name === ':status') f.status = parseSmallInt(value);
      return;
    }
    if (name === 'content-type') f.contentType = value;
    else if (name === 'grpc-status') f.grpcStatus = parseSmallInt(value);
    else if (name === 'grpc-message') f.grpcMessage = value;
    else if (name === 'content-length') f.contentLength = parseSmallInt(value);
    else if (name === 'host' && f.authority === '') f.authority = value;
    else traceHeader(f.trace, name, value);
  }

  private decodeBlock(d: Buffer, a: number, b: number, complete: boolean, sid: number, ctx: ParseContext,
    st: Http2FlowState, dir: Direction, emit: Emit): void {
    const f = this.fields;
    f.reset();
    const r = dir.hpack.decode(d, a, b, complete, this.sink);
    if (!complete) this.drops.header_block_cut++;
    else if (r === HPACK_ERROR) this.drops.hpack_error++;
    if (r === HPACK_UNKNOWN_REFERENCE) this.drops.hpack_unknown_reference++;
    const push = dir.blockPush;
    const endStream = dir.blockEndStream;
    dir.blockStream = 0;
    let s = st.streams.get(sid);
    const grpcType = f.contentType.startsWith('application/grpc');
    const isRequest = f.method !== '' || f.path !== '' || push ||
      (ctx.fromClient && f.status < 0 && (s === undefined || !s.requestSeen));
    if (isRequest) {
      if (s !== undefined && s.requestSeen) return; // request trailers
      if (s === undefined) s = this.newStream(st, sid);
      s.requestSeen = true;
      s.grpc = grpcType;
      const msg = newMessage('request');
      msg.version = '2';
      msg.requestType = f.method;
      msg.requestDomain = f.authority;
      msg.requestResource = f.path;
      const q = f.path.indexOf('?');
      msg.endpoint = q < 0 ? f.path : f.path.slice(0, q);
      msg.length = f.contentLength > 0 ? f.contentLength : 0;
      msg.pairId = sid;
      this.copyTrace(msg);
      if (grpcType) msg.l7Protocol = 'gRPC';
      emit(msg);
      return;
    }
    if (f.status >= 100 && f.status < 200) return; // interim (100 Continue, 103)
    if (s === undefined) {
      // A response to a request before the capture began; or trailers of an answered stream.
      if (f.status < 0 && f.grpcStatus < 0) return;
      s = this.newStream(st, sid);
    }
    if (s.answered) return;
    if (grpcType) s.grpc = true;
    if (f.status >= 0) {
      s.httpStatus = f.status;
      // gRPC answers at its trailers, unless this block ends the stream (trailers-only).
      if (s.grpc && f.grpcStatus < 0 && !endStream) return;
    }
    if (f.status < 0 && f.grpcStatus < 0 && s.httpStatus < 0) return; // nothing to report yet
    const msg = newMessage('response');
    msg.version = '2';
    msg.pairId = sid;
    if (f.grpcStatus >= 0) {
      s.grpc = true;
      msg.responseCode = f.grpcStatus;
      msg.responseStatus = statusFromGrpcCode(f.grpcStatus);
      if (f.grpcStatus !== 0) {
        msg.responseException = f.grpcMessage !== '' ? f.grpcMessage : GRPC_CODE_NAMES[f.grpcStatus] ?? `grpc-status ${f.grpcStatus}`;
      }
    } else {
      msg.responseCode = s.httpStatus;
      msg.responseStatus = statusFromHttpCode(s.httpStatus);
    }
    msg.length = f.contentLength > 0 ? f.contentLength : 0;
    this.copyTrace(msg);
    if (s.grpc) msg.l7Protocol = 'gRPC';
    s.answered = true;
    st.streams.delete(sid);
    emit(msg);
  }

  /** The flow ends: responses waiting for gRPC trailers that never came carry their HTTP status. */
  endFlow(st: Http2FlowState, emit: Emit): void {
    for (const [sid, s] of st.streams) {
      if (s.answered || s.httpStatus < 0) continue;
      const msg = newMessage('response');
      msg.version = '2';
      msg.pairId = sid;
      msg.responseCode = s.httpStatus;
      msg.responseStatus = statusFromHttpCode(s.httpStatus);
      if (s.grpc) msg.l7Protocol = 'gRPC';
      emit(msg);
    }
    st.streams.clear();
  }

  private rstStream(code: number, sid: number, ctx: ParseContext, st: Http2FlowState, emit: Emit): void {
    const s = st.streams.get(sid);
    if (s === undefined || s.answered || !s.requestSeen) return;
    // The stream ends without a (final) answer: report it as failed, with the reset's reason.
    const msg = newMessage('response');
    msg.version = '2';
    msg.pairId = sid;
    if (s.httpStatus >= 0) {
      msg.responseCode = s.httpStatus;
      msg.responseStatus = statusFromHttpCode(s.httpStatus);
    } else msg.responseStatus = ctx.fromClient || code === 8 ? 'client_error' : 'server_error';
    msg.responseException = `RST_STREAM ${ERROR_NAMES[code] ?? code}`;
    if (s.grpc) msg.l7Protocol = 'gRPC';
    st.streams.delete(sid);
    emit(msg);
  }

  private newStream(st: Http2FlowState, sid: number): H2Stream {
    if (st.streams.size >= MAX_STREAMS) {
      const oldest = st.streams.keys().next().value as number;
      st.streams.delete(oldest);
      this.drops.stream_evicted++;
    }
    const s = new H2Stream();
    st.streams.set(sid, s);
    return s;
  }

  private copyTrace(msg: L7Message): void {
    const t = this.fields.trace;
    msg.traceId = t.traceId; msg.spanId = t.spanId; msg.xRequestId = t.xRequestId;
  }
}

/** An HTTP/1.1 request carrying "Upgrade: h2c" (RFC 7540 3.2). */
function isUpgradeRequest(d: Buffer, start: number, end: number, ctx: ParseContext): boolean {
  if (http1Parser.check(d, start, end, ctx) !== CHECK_REQUEST) return false;
  const e = Math.min(end, start + 4096);
  const h = d.indexOf('h2c', start, 'latin1');
  if (h < 0 || h >= e) return false;
  return UPGRADE_H2C.test(d.toString('latin1', start, e));
}

const SWITCHING = Buffer.from(' 101', 'latin1');

/** "HTTP/1.1 101": the answer to an upgrade request (the stage re-checks a direction's first bytes). */
function isSwitchingProtocols(d: Buffer, start: number, end: number): boolean {
  return end - start >= 12 && d[start] === 0x48 && d[start + 1] === 0x54 && d[start + 4] === 0x2f &&
    d.compare(SWITCHING, 0, 4, start + 8, start + 12) === 0;
}

export const http2Parser = new Http2Parser();
/** The same parser, inferring only the preface and h2c upgrade requests: tried before HTTP/1. */
export const http2UpgradeParser = new Http2Parser(true);
