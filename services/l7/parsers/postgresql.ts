// PostgreSQL frontend/backend protocol v3 (postgresql.org docs, "Frontend/Backend Protocol").
// One `parse` call reads one message; a message longer than what is there is read as far as it
// goes and its rest skipped. Requests: StartupMessage ("STARTUP", database -> request_domain,
// user -> request_resource), SSLRequest / GSSENCRequest, simple Query ("QUERY", the SQL), each
// Execute of the extended protocol ("EXECUTE", the SQL its portal was bound from), CancelRequest
// and Terminate (one-way). Responses, by order:
//   QUERY    at ReadyForQuery: the last CommandComplete tag -> response_result, or the error;
//   EXECUTE  at its CommandComplete / EmptyQueryResponse / PortalSuspended / ErrorResponse;
//            Executes the server skipped after an error in the same Sync get that error at
//            ReadyForQuery, with response_result "SKIPPED";
//   STARTUP  at ReadyForQuery (ok) or ErrorResponse (e.g. 28P01, a failed login);
//   SSL/GSS  the one-byte answer 'S'/'G' (then TLS/GSS: the rest is not read) or 'N'.
// ErrorResponse: SQLSTATE and message -> response_exception "SQLSTATE: message"; the SQLSTATE
// class says client_error or server_error. response_code is not set (SQLSTATE is not a number).
// Trace context: sqlcommenter comments in the SQL (traceparent, x-request-id, ...).
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Message, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, ResponseStatus, newMessage,
} from '../parser';
import { traceFromSqlComment } from './sql-comment';

const PROTOCOL_3 = 196608, SSL_CODE = 80877103, GSS_CODE = 80877104, CANCEL_CODE = 80877102;
/** SQL text kept per statement / reported per request. */
export const PG_MAX_SQL = 1024;
/** Named statements and portals remembered per connection. */
const MAX_NAMES = 256;
/** A message claiming more than this is garbage (the server's own limit is 1 GiB; be stricter). */
const MAX_MESSAGE = 64 * 1024 * 1024;

const P_QUERY = 1, P_EXECUTE = 2, P_SYNC = 3, P_STARTUP = 4, P_SSL = 5;
const FRONTEND_TYPES = 'QPBEDSCHFfdcXp';
const BACKEND_TYPES = 'RKSZTDCEINnstGHWdcA1230v';

class Pending {
  constructor(readonly kind: number) {}
}
const PENDING = [new Pending(0), new Pending(P_QUERY), new Pending(P_EXECUTE), new Pending(P_SYNC), new Pending(P_STARTUP), new Pending(P_SSL)];

export class PostgresFlowState {
  /** Startup done (typed messages from the client) once the client sends any typed message. */
  started = false;
  /** After SSL/GSS was accepted the stream is encrypted. */
  encrypted = false;
  readonly statements = new Map<string, string>();
  readonly portals = new Map<string, string>();
  /** What the server still owes, in order. */
  readonly pending: Pending[] = [];
  /** Collected for the answer in progress. */
  lastTag = '';
  error: L7Message | null = null;
  /** The server's stream had a gap: the answers of some requests were lost. */
  serverGap = false;
  /** Requests whose answer was lost in a gap (reported with status "unknown"). */
  lostAnswers = 0;
}

function cstr(d: Buffer, a: number, b: number): number {
  const z = d.indexOf(0, a);
  return z < 0 || z >= b ? b : z;
}

function remember(map: Map<string, string>, key: string, value: string): void {
  if (!map.has(key) && map.size >= MAX_NAMES) map.delete(map.keys().next().value as string);
  map.set(key, value);
}

function statusOfSqlState(code: string): ResponseStatus {
  const cls = code.slice(0, 2);
  // Connection, resources, operator intervention, system and internal errors are the server's.
  if (cls === '08' || cls === '53' || cls === '54' || cls === '55' || cls === '57' || cls === '58' || cls === 'XX' || cls === 'F0' || cls === 'HV' || cls === 'P0') return 'server_error';
  return 'client_error';
}

export class PostgresParser implements L7Parser<PostgresFlowState> {
  readonly name = 'PostgreSQL';
  readonly pairsById = false;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;

  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    // The answer to SSLRequest / GSSENCRequest: one byte, alone in its segment.
    if (end - start === 1) return d[start] === 83 || d[start] === 78 || d[start] === 71 ? CHECK_RESPONSE : CHECK_NONE;
    if (end - start < 5) return CHECK_NONE;
    const t = d[start];
    if (t === 0) {
      if (end - start < 8) return CHECK_NONE;
      const len = d.readUInt32BE(start), code = d.readUInt32BE(start + 4);
      if (len === 8 && (code === SSL_CODE || code === GSS_CODE)) return CHECK_REQUEST;
      if (len === 16 && code === CANCEL_CODE) return CHECK_REQUEST;
      if (len > 8 && len < 10000 && code === PROTOCOL_3 && d.indexOf('user\0', start + 8, 'latin1') >= 0) return CHECK_REQUEST;
      return CHECK_NONE;
    }
    const len = d.readUInt32BE(start + 1);
    if (len < 4 || len > MAX_MESSAGE) return CHECK_NONE;
    const body = start + 5, bodyEnd = Math.min(end, start + 1 + len);
    switch (t) {
      case 81: // Q: SQL text ending with NUL
        return len > 5 && printable(d, body, Math.min(bodyEnd, body + 16)) ? CHECK_REQUEST : CHECK_NONE;
      case 80: // P: statement name NUL, query NUL
        return len > 6 && cstr(d, body, bodyEnd) < bodyEnd && printable(d, cstr(d, body, bodyEnd) + 1, Math.min(bodyEnd, cstr(d, body, bodyEnd) + 17)) ? CHECK_REQUEST : CHECK_NONE;
      case 82: // R: authentication request with a small code
        return len >= 8 && end - start >= 9 && d.readUInt32BE(body) <= 12 ? CHECK_RESPONSE : CHECK_NONE;
      case 69: // E: ErrorResponse (fields start with a letter code) or Execute (portal NUL, int32)
        if (body < end && d[body] === 83 && len > 10) return CHECK_RESPONSE;
        return len >= 9 && cstr(d, body, bodyEnd) === start + len - 4 ? CHECK_REQUEST : CHECK_NONE;
      case 49: case 50: // ParseComplete / BindComplete
        return len === 4 && (end - start === 5 || BACKEND_TYPES.includes(String.fromCharCode(d[start + 5]))) ? CHECK_RESPONSE : CHECK_NONE;
      case 67: // CommandComplete: an upper-case tag
        return len > 5 && body < end && d[body] >= 65 && d[body] <= 90 && d[start + len] === 0 ? CHECK_RESPONSE : CHECK_NONE;
      case 90: // ReadyForQuery: I, T or E
        return len === 5 && end - start >= 6 && (d[body] === 73 || d[body] === 84 || d[body] === 69) ? CHECK_RESPONSE : CHECK_NONE;
      default:
        return CHECK_NONE;
    }
  }

  newFlowState(): PostgresFlowState {
    return new PostgresFlowState();
  }

  resync(state: PostgresFlowState, fromClient: boolean): void {
    // The requests stay pending: which of them the gap answered is decided at the next answer.
    if (!fromClient) {
      state.serverGap = true;
      state.lastTag = '';
      state.error = null;
    }
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: PostgresFlowState, emit: Emit): number {
    if (st.encrypted) return Infinity;
    return ctx.fromClient ? this.frontend(d, start, end, ctx, st, emit) : this.backend(d, start, end, ctx, st, emit);
  }

  private frontend(d: Buffer, start: number, end: number, ctx: ParseContext, st: PostgresFlowState, emit: Emit): number {
    if (end - start < 5) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const t = d[start];
    if (t === 0) return this.untyped(d, start, end, ctx, st, emit);
    if (!FRONTEND_TYPES.includes(String.fromCharCode(t))) return PARSE_INVALID;
    const len = d.readUInt32BE(start + 1);
    if (len < 4 || len > MAX_MESSAGE) return PARSE_INVALID;
    const total = len + 1;
    // Small messages are waited for; a long one (a big query) is read as far as it goes.
    if (end - start < total && !ctx.truncated && end - start < 16 * 1024) return PARSE_NEED_MORE;
    st.started = true;
    const body = start + 5, bodyEnd = Math.min(end, start + total);
    switch (t) {
      case 81: { // Query
        const msg = newMessage('request');
        msg.requestType = 'QUERY';
        msg.requestResource = d.toString('utf8', body, Math.min(cstr(d, body, bodyEnd), body + PG_MAX_SQL));
        traceFromSqlComment(msg, msg.requestResource);
        msg.length = len;
        this.expect(st, P_QUERY);
        emit(msg);
        break;
      }
      case 80: { // Parse: name, query
        const n = cstr(d, body, bodyEnd);
        const name = d.toString('utf8', body, n);
        const q = Math.min(n + 1, bodyEnd);
        remember(st.statements, name, d.toString('utf8', q, Math.min(cstr(d, q, bodyEnd), q + PG_MAX_SQL)));
        break;
      }
      case 66: { // Bind: portal, statement
        const p = cstr(d, body, bodyEnd);
        const s0 = Math.min(p + 1, bodyEnd);
        const s = cstr(d, s0, bodyEnd);
        remember(st.portals, d.toString('utf8', body, p), st.statements.get(d.toString('utf8', s0, s)) ?? '');
        break;
      }
      case 69: { // Execute: portal
        const p = cstr(d, body, bodyEnd);
        const msg = newMessage('request');
        msg.requestType = 'EXECUTE';
        msg.requestResource = st.portals.get(d.toString('utf8', body, p)) ?? '';
        traceFromSqlComment(msg, msg.requestResource);
        this.expect(st, P_EXECUTE);
        emit(msg);
        break;
      }
      case 83: // Sync
        this.expect(st, P_SYNC);
        break;
      case 88: { // Terminate
        const msg = newMessage('request');
        msg.requestType = 'TERMINATE';
        msg.oneWay = true;
        emit(msg);
        break;
      }
      default: // Describe, Close, Flush, password/SASL, copy data: nothing to report
        break;
    }
    return total;
  }

  /** Startup, SSLRequest, GSSENCRequest, CancelRequest: int32 length, int32 code. */
  private untyped(d: Buffer, start: number, end: number, ctx: ParseContext, st: PostgresFlowState, emit: Emit): number {
    if (end - start < 8) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const len = d.readUInt32BE(start), code = d.readUInt32BE(start + 4);
    if (len < 8 || len > 10000) return PARSE_INVALID;
    if (end - start < len && !ctx.truncated) return PARSE_NEED_MORE;
    const msg = newMessage('request');
    msg.length = len;
    if (code === SSL_CODE || code === GSS_CODE) {
      msg.requestType = code === SSL_CODE ? 'SSL_REQUEST' : 'GSSENC_REQUEST';
      this.expect(st, P_SSL);
    } else if (code === CANCEL_CODE) {
      msg.requestType = 'CANCEL';
      msg.oneWay = true;
    } else if (code >>> 16 === 3) {
      msg.requestType = 'STARTUP';
      msg.version = `3.${code & 0xffff}`;
      // Parameters: name NUL value NUL ..., ending with an empty name.
      const stop = Math.min(end, start + len);
      let p = start + 8, user = '', database = '';
      while (p < stop && d[p] !== 0) {
        const k = cstr(d, p, stop);
        const v = Math.min(k + 1, stop);
        const ve = cstr(d, v, stop);
        if (k - p === 4 && d.toString('latin1', p, k) === 'user') user = d.toString('utf8', v, Math.min(ve, v + 256));
        else if (k - p === 8 && d.toString('latin1', p, k) === 'database') database = d.toString('utf8', v, Math.min(ve, v + 256));
        p = ve + 1;
      }
      msg.requestResource = user;
      // The server's default database is the user's name.
      msg.requestDomain = database !== '' ? database : user;
      this.expect(st, P_STARTUP);
    } else return PARSE_INVALID;
    emit(msg);
    return len;
  }

  private expect(st: PostgresFlowState, kind: number): void {
    if (st.pending.length < 1024) st.pending.push(PENDING[kind]);
  }

  private backend(d: Buffer, start: number, end: number, ctx: ParseContext, st: PostgresFlowState, emit: Emit): number {
    if (st.serverGap) { st.serverGap = false; this.dropLostBatches(st, emit); }
    const head = st.pending.length > 0 ? st.pending[0].kind : 0;
    const t = d[start];
    if (head === P_SSL && (t === 83 || t === 78 || t === 71)) {
      st.pending.shift();
      const msg = newMessage('response');
      msg.responseStatus = 'ok';
      msg.responseResult = t === 78 ? 'N' : String.fromCharCode(t);
      msg.length = 1;
      emit(msg);
      if (t !== 78) { st.encrypted = true; return Infinity; }
      return 1;
    }
    if (end - start < 5) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    if (!BACKEND_TYPES.includes(String.fromCharCode(t))) return PARSE_INVALID;
    const len = d.readUInt32BE(start + 1);
    if (len < 4 || len > MAX_MESSAGE) return PARSE_INVALID;
    const total = len + 1;
    // Data rows can be long: only messages whose content is read are waited for.
    const wanted = t === 67 || t === 69 || t === 90;
    if (wanted && end - start < total && !ctx.truncated && end - start < 16 * 1024) return PARSE_NEED_MORE;
    const body = start + 5, bodyEnd = Math.min(end, start + total);
    switch (t) {
      case 67: // CommandComplete
        st.lastTag = d.toString('latin1', body, Math.min(cstr(d, body, bodyEnd), body + 64));
        if (head === P_EXECUTE) this.answer(st, emit, st.lastTag, null);
        else if (head !== P_QUERY) this.lone(emit, st.lastTag, null);
        break;
      case 73: case 115: // EmptyQueryResponse, PortalSuspended
        if (head === P_EXECUTE) this.answer(st, emit, t === 73 ? 'EMPTY' : 'SUSPENDED', null);
        break;
      case 69: { // ErrorResponse
        const err = this.errorOf(d, body, bodyEnd);
        if (head === P_EXECUTE || head === P_STARTUP) {
          st.error = err;
          this.answer(st, emit, '', err);
        } else if (head === P_QUERY || head === P_SYNC) st.error = err;
        else this.lone(emit, '', err);
        break;
      }
      case 90: // ReadyForQuery: the end of a query, a Sync's batch or the startup
        this.readyForQuery(st, emit);
        break;
      default:
        break;
    }
    return total;
  }

  /**
   * After a gap in the server's stream the server is answering the newest batch (clients wait
   * for ReadyForQuery before the next one): the older batches' answers were in the gap. They get
   * a response with status "unknown", so the stage's order pairing stays right.
   */
  private dropLostBatches(st: PostgresFlowState, emit: Emit): void {
    let batches = 0;
    for (let i = 0; i < st.pending.length; i++) {
      const k = st.pending[i].kind;
      if (k !== P_EXECUTE || i === st.pending.length - 1) batches++;
    }
    while (batches > 1 && st.pending.length > 0) {
      const k = st.pending.shift()!.kind;
      if (k !== P_EXECUTE) batches--;
      if (k === P_SYNC) continue;
      st.lostAnswers++;
      emit(newMessage('response'));
    }
  }

  /** Answers the request at the head of `pending`. */
  private answer(st: PostgresFlowState, emit: Emit, tag: string, err: L7Message | null): void {
    st.pending.shift();
    if (err !== null) { emit(cloneError(err)); return; }
    const msg = newMessage('response');
    msg.responseStatus = 'ok';
    msg.responseResult = tag;
    emit(msg);
  }

  private lone(emit: Emit, tag: string, err: L7Message | null): void {
    if (err !== null) { emit(err); return; }
    const msg = newMessage('response');
    msg.responseStatus = 'ok';
    msg.responseResult = tag;
    emit(msg);
  }

  private readyForQuery(st: PostgresFlowState, emit: Emit): void {
    while (st.pending.length > 0) {
      const k = st.pending[0].kind;
      if (k === P_SYNC) { st.pending.shift(); break; }
      if (k === P_SSL) break;
      if (k === P_EXECUTE) {
        // Skipped by the server after an earlier error of the batch.
        const e = st.error ?? null;
        if (e !== null) {
          // Not executed: the batch failed before it. Same error, marked as skipped.
          const skipped = cloneError(e);
          skipped.responseResult = 'SKIPPED';
          this.answer(st, emit, '', skipped);
        } else this.answer(st, emit, st.lastTag, null);
        continue;
      }
      this.answer(st, emit, st.lastTag, st.error);
      if (k === P_QUERY || k === P_STARTUP) break;
    }
    st.lastTag = '';
    st.error = null;
  }

  /** ErrorResponse fields: S severity, C SQLSTATE, M message. */
  private errorOf(d: Buffer, p: number, stop: number): L7Message {
    let code = '', text = '', severity = '';
    while (p < stop && d[p] !== 0) {
      const f = d[p];
      const e = cstr(d, p + 1, stop);
      if (f === 67) code = d.toString('latin1', p + 1, Math.min(e, p + 6));
      else if (f === 77) text = d.toString('utf8', p + 1, Math.min(e, p + 1 + 512));
      else if (f === 83 && severity === '') severity = d.toString('latin1', p + 1, Math.min(e, p + 16));
      p = e + 1;
    }
    const msg = newMessage('response');
    msg.responseStatus = code === '' ? (severity === 'FATAL' || severity === 'PANIC' ? 'server_error' : 'client_error') : statusOfSqlState(code);
    msg.responseException = code !== '' ? `${code}: ${text}` : text;
    msg.responseResult = severity;
    return msg;
  }
}

function cloneError(e: L7Message): L7Message {
  return { ...e };
}

function printable(d: Buffer, a: number, b: number): boolean {
  if (a >= b) return false;
  for (let i = a; i < b; i++) {
    const c = d[i];
    if (c === 0) return i > a;
    if (c < 32 && c !== 9 && c !== 10 && c !== 13) return false;
  }
  return true;
}

export const postgresParser = new PostgresParser();
