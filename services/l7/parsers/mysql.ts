// MySQL client/server protocol (dev.mysql.com "Client/Server Protocol"). One `parse` call reads
// one packet (3-byte length, sequence id, payload); a packet longer than what is there is read as
// far as it goes and its rest skipped. Per connection:
//   greeting (server, seq 0, protocol 10)   -> server version kept for `version`
//   handshake response (client, seq 1)      -> request "LOGIN" (user, database), answered by the
//                                              OK / ERR that ends authentication (login errors);
//                                              an SSL request switches the connection to TLS
//   command (client, seq 0)                 -> request "COM_<name>": COM_QUERY / STMT_PREPARE the
//                                              SQL, STMT_EXECUTE the SQL prepared under its id,
//                                              INIT_DB the schema
//   answer (server, seq 1, 2, ...)          -> OK (affected rows), ERR (code -> response_code,
//                                              message -> response_exception), result set (rows
//                                              counted), prepare OK (statement id remembered)
// A response's first packet has sequence id 1, so packets of a result set we lost track of are
// never taken for the next answer. COM_QUIT, COM_STMT_CLOSE and COM_STMT_SEND_LONG_DATA get no
// answer: they are one-way. Pairing is by order. Trace context: sqlcommenter comments in the SQL.
// Compressed protocol: recognised by its 7-byte header (also mid-stream); zlib payloads are
// inflated as far as captured; what cannot be read is counted in `compressedUnreadable`.
import * as zlib from 'node:zlib';
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, ResponseStatus, newMessage,
} from '../parser';
import { traceFromSqlComment } from './sql-comment';

export const MYSQL_MAX_SQL = 1024;
const MAX_STATEMENTS = 256;

/** Command names by command byte (request_type). */
export const MYSQL_COMMAND_NAMES: readonly string[] = [
  'COM_SLEEP', 'COM_QUIT', 'COM_INIT_DB', 'COM_QUERY', 'COM_FIELD_LIST', 'COM_CREATE_DB', 'COM_DROP_DB',
  'COM_REFRESH', 'COM_SHUTDOWN', 'COM_STATISTICS', 'COM_PROCESS_INFO', 'COM_CONNECT', 'COM_PROCESS_KILL',
  'COM_DEBUG', 'COM_PING', 'COM_TIME', 'COM_DELAYED_INSERT', 'COM_CHANGE_USER', 'COM_BINLOG_DUMP',
  'COM_TABLE_DUMP', 'COM_CONNECT_OUT', 'COM_REGISTER_SLAVE', 'COM_STMT_PREPARE', 'COM_STMT_EXECUTE',
  'COM_STMT_SEND_LONG_DATA', 'COM_STMT_CLOSE', 'COM_STMT_RESET', 'COM_SET_OPTION', 'COM_STMT_FETCH',
  'COM_DAEMON', 'COM_BINLOG_DUMP_GTID', 'COM_RESET_CONNECTION',
];
const COM_QUIT = 1, COM_INIT_DB = 2, COM_QUERY = 3, COM_FIELD_LIST = 4, COM_STATISTICS = 9, COM_PING = 14;
const COM_STMT_PREPARE = 22, COM_STMT_EXECUTE = 23, COM_STMT_SEND_LONG_DATA = 24, COM_STMT_CLOSE = 25;
const COM_BINLOG_DUMP = 18, COM_BINLOG_DUMP_GTID = 30;
/** The command that a LOGIN request stands for in the pending queue. */
const LOGIN = 256;

const CLIENT_CONNECT_WITH_DB = 0x8, CLIENT_COMPRESS = 0x20, CLIENT_PROTOCOL_41 = 0x200, CLIENT_SSL = 0x800;
const CLIENT_SECURE_CONNECTION = 0x8000, CLIENT_PLUGIN_AUTH_LENENC = 0x200000, CLIENT_DEPRECATE_EOF = 0x1000000;
const CLIENT_QUERY_ATTRIBUTES = 0x8000000;

const PHASE_COMMAND = 0, PHASE_LOGIN = 1, PHASE_AUTH = 2, PHASE_TLS = 3;
// Where the server is in an answer.
const RS_NONE = 0, RS_COLUMNS = 1, RS_COLUMNS_EOF = 2, RS_ROWS = 3, RS_UNTIL_EOF = 4, RS_PREPARE_DEFS = 5;

class Pending {
  constructor(readonly command: number, readonly sql: string) {}
}

export class MysqlFlowState {
  phase = PHASE_COMMAND;
  serverVersion = '';
  deprecateEof = false;
  compressed = false;
  /** Compressed packets whose content could not be inflated. */
  compressedUnreadable = 0;
  readonly pending: Pending[] = [];
  readonly statements = new Map<number, string>();
  rs = RS_NONE;
  columns = 0;
  seen = 0;
  rows = 0;
  /** The prepare OK waiting for its parameter and column definitions to end. */
  prepareDefs = 0;
  /** COM_QUERY carries query attributes (MySQL 8 CLIENT_QUERY_ATTRIBUTES). */
  queryAttributes = false;
  /** The server's stream had a gap: some answers were lost. */
  serverGap = false;
  /** Requests whose answer was lost in a gap (reported with status "unknown"). */
  lostAnswers = 0;
}

/** Length-encoded integer at `p`: value, and its size in `lenencSize`. */
let lenencSize = 0;
function lenenc(d: Buffer, p: number, end: number): number {
  if (p >= end) { lenencSize = 0; return -1; }
  const c = d[p];
  if (c < 0xfb) { lenencSize = 1; return c; }
  if (c === 0xfc && p + 3 <= end) { lenencSize = 3; return d.readUInt16LE(p + 1); }
  if (c === 0xfd && p + 4 <= end) { lenencSize = 4; return d.readUIntLE(p + 1, 3); }
  if (c === 0xfe && p + 9 <= end) { lenencSize = 9; return d.readUInt32LE(p + 1) + d.readUInt32LE(p + 5) * 4294967296; }
  lenencSize = 0;
  return -1;
}

function printable(d: Buffer, a: number, b: number): boolean {
  if (a >= b) return false;
  for (let i = a; i < b; i++) {
    const c = d[i];
    if (c < 32 && c !== 9 && c !== 10 && c !== 13) return false;
  }
  return true;
}

function cstrEnd(d: Buffer, a: number, b: number): number {
  const z = d.indexOf(0, a);
  return z < 0 || z >= b ? b : z;
}

function isZlib(d: Buffer, p: number, end: number): boolean {
  return p + 1 < end && d[p] === 0x78 && (d[p] * 256 + d[p + 1]) % 31 === 0;
}

export class MysqlParser implements L7Parser<MysqlFlowState> {
  readonly name = 'MySQL';
  readonly pairsById = false;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  private readonly inner: ParseContext = { protocol: 6, fromClient: true, serverPort: 0, truncated: true };

  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    if (end - start < 5) return CHECK_NONE;
    let len = d.readUIntLE(start, 3);
    let seq = d[start + 3];
    let p = start + 4;
    // Compressed header: length, seq, uncompressed length; then a plain packet or zlib.
    if (end - start >= 12 && d[start + 4] === 0 && d[start + 5] === 0 && d[start + 6] === 0 &&
      d.readUIntLE(start + 7, 3) + 4 === len) {
      len = d.readUIntLE(start + 7, 3); seq = d[start + 10]; p = start + 11;
    }
    else if (end - start >= 9 && d.readUIntLE(start + 4, 3) > len && isZlib(d, start + 7, end)) return CHECK_RESPONSE; // compressed
    if (len === 0 || len > 0xffffff) return CHECK_NONE;
    const t = d[p];
    const bodyEnd = Math.min(end, p + len);
    if (seq <= 1 && t === 0xff && len > 9 && len < 1024 && d[p + 3] === 35) return CHECK_RESPONSE; // ERR with '#' SQLSTATE
    if (seq === 0 && t === 0xff && len > 3 && len < 1024 && printable(d, p + 3, bodyEnd)) return CHECK_RESPONSE; // ERR before the greeting
    if (seq === 0) {
      if (t === 10 && len > 40) {
        // Greeting: protocol 10, a NUL-terminated version like "8.0.32".
        const z = cstrEnd(d, p + 1, bodyEnd);
        return z < bodyEnd && z > p + 2 && d[p + 1] >= 48 && d[p + 1] <= 57 && printable(d, p + 1, z) ? CHECK_RESPONSE : CHECK_NONE;
      }
      switch (t) {
        case COM_QUERY:
          // With CLIENT_QUERY_ATTRIBUTES the SQL follows a parameter count (0) and set count (1).
          if (len > 3 && d[p + 1] === 0 && d[p + 2] === 1) return printable(d, p + 3, Math.min(bodyEnd, p + 19)) ? CHECK_REQUEST : CHECK_NONE;
          return len > 1 && printable(d, p + 1, Math.min(bodyEnd, p + 17)) ? CHECK_REQUEST : CHECK_NONE;
        case COM_STMT_PREPARE: case COM_INIT_DB:
          return len > 1 && printable(d, p + 1, Math.min(bodyEnd, p + 17)) ? CHECK_REQUEST : CHECK_NONE;
        case COM_QUIT: case COM_PING: case COM_STATISTICS:
          return len === 1 ? CHECK_REQUEST : CHECK_NONE;
        case COM_STMT_CLOSE: return len === 5 ? CHECK_REQUEST : CHECK_NONE;
        case COM_STMT_EXECUTE: return len >= 10 && d[p + 5] <= 8 ? CHECK_REQUEST : CHECK_NONE;
        default: return CHECK_NONE;
      }
    }
    // Handshake response: capabilities with CLIENT_PROTOCOL_41, max packet, charset, 23 filler
    // bytes, zero but for the last 4 (MariaDB's extended capabilities).
    if (seq === 1 && len >= 32 && bodyEnd >= p + 32 && (d[p + 1] & 0x02) !== 0 && d.readUInt32LE(p + 9) === 0 &&
      d.readUInt32LE(p + 15) === 0 && d.readUInt32LE(p + 24) === 0) return CHECK_REQUEST;
    if (seq === 1 && t === 0 && len >= 7 && len < 64) return CHECK_RESPONSE; // OK
    // Result set: column count, then a column definition starting with catalog "def".
    if (seq === 1 && len === 1 && t > 0 && t < 0xfb && end - p >= 10 && d[p + 4] === 2 &&
      d[p + 5] === 3 && d[p + 6] === 100 && d[p + 7] === 101 && d[p + 8] === 102) return CHECK_RESPONSE;
    return CHECK_NONE;
  }

  newFlowState(): MysqlFlowState {
    return new MysqlFlowState();
  }

  resync(state: MysqlFlowState, fromClient: boolean): void {
    // The requests stay pending: which of them the gap answered is decided at the next answer.
    if (!fromClient) { state.rs = RS_NONE; state.serverGap = true; }
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: MysqlFlowState, emit: Emit): number {
    if (st.phase === PHASE_TLS) return Infinity;
    if (end - start < 4) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    if (!st.compressed && end - start >= 11 && this.looksCompressed(d, start, end)) st.compressed = true;
    if (st.compressed) return this.compressedPacket(d, start, end, ctx, st, emit);
    return this.packet(d, start, end, ctx, st, emit);
  }

  /** A compressed header whose content is a plain packet of the announced size, or zlib data. */
  private looksCompressed(d: Buffer, start: number, end: number): boolean {
    const clen = d.readUIntLE(start, 3), ulen = d.readUIntLE(start + 4, 3);
    if (ulen === 0) return clen >= 4 && d.readUIntLE(start + 7, 3) + 4 === clen;
    return ulen > clen && isZlib(d, start + 7, end);
  }

  private compressedPacket(d: Buffer, start: number, end: number, ctx: ParseContext, st: MysqlFlowState, emit: Emit): number {
    if (end - start < 7) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const clen = d.readUIntLE(start, 3), ulen = d.readUIntLE(start + 4, 3);
    const total = 7 + clen;
    if (end - start < total && !ctx.truncated && end - start < 16 * 1024) return PARSE_NEED_MORE;
    const stop = Math.min(end, start + total);
    let inner: Buffer;
    if (ulen === 0) inner = d.subarray(start + 7, stop);
    else {
      try {
        // A capture cut inside the stream still yields its beginning.
        inner = zlib.inflateSync(d.subarray(start + 7, stop), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
      } catch {
        st.compressedUnreadable++;
        return total;
      }
    }
    const ictx = this.inner;
    ictx.fromClient = ctx.fromClient; ictx.serverPort = ctx.serverPort;
    ictx.truncated = stop < start + total || inner.length < ulen;
    let p = 0;
    for (let guard = 0; p < inner.length && guard < 100_000; guard++) {
      const n = this.packet(inner, p, inner.length, ictx, st, emit);
      if (n <= 0) { if (n < 0) st.compressedUnreadable++; break; }
      p += n;
    }
    return total;
  }

  private packet(d: Buffer, start: number, end: number, ctx: ParseContext, st: MysqlFlowState, emit: Emit): number {
    if (end - start < 4) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const len = d.readUIntLE(start, 3);
    const seq = d[start + 3];
    const total = len + 4;
    // Short packets are waited for; a long one (a big query or row) is read as far as it goes.
    if (end - start < total && !ctx.truncated && end - start < 16 * 1024) return PARSE_NEED_MORE;
    const p = start + 4, bodyEnd = Math.min(end, start + total);
    if (ctx.fromClient) this.clientPacket(d, p, bodyEnd, len, seq, st, emit);
    else this.serverPacket(d, p, bodyEnd, len, seq, st, emit);
    return total;
  }

  private clientPacket(d: Buffer, p: number, stop: number, len: number, seq: number, st: MysqlFlowState, emit: Emit): void {
    if (st.phase === PHASE_LOGIN && seq === 1) { this.login(d, p, stop, len, st, emit); return; }
    // Auth data, or the rest of a packet of 16 MiB and more.
    if (seq !== 0 || len === 0 || p >= stop) return;
    if (st.phase === PHASE_AUTH) return;
    const cmd = d[p];
    const msg = newMessage('request');
    msg.version = st.serverVersion;
    msg.requestType = cmd < MYSQL_COMMAND_NAMES.length ? MYSQL_COMMAND_NAMES[cmd] : `COM_${cmd}`;
    msg.length = len;
    let sql = '';
    if (cmd === COM_QUERY || cmd === COM_STMT_PREPARE) {
      let q = p + 1;
      if (cmd === COM_QUERY && (st.queryAttributes || (q + 2 < stop && d[q] === 0 && d[q + 1] === 1))) {
        // parameter_count, parameter_set_count; with parameters, their types and values come
        // first: only the common case of none is read.
        const n = lenenc(d, q, stop);
        q += lenencSize;
        lenenc(d, q, stop);
        q += lenencSize;
        if (n !== 0) q = stop;
      }
      sql = d.toString('utf8', q, Math.min(stop, q + MYSQL_MAX_SQL));
      msg.requestResource = sql;
      traceFromSqlComment(msg, sql);
    } else if (cmd === COM_INIT_DB || cmd === COM_FIELD_LIST) {
      msg.requestResource = d.toString('utf8', p + 1, Math.min(cstrEnd(d, p + 1, stop), p + 1 + 256));
      if (cmd === COM_INIT_DB) msg.requestDomain = msg.requestResource;
    } else if ((cmd === COM_STMT_EXECUTE || cmd === COM_STMT_CLOSE || cmd === COM_STMT_SEND_LONG_DATA) && p + 5 <= stop) {
      const id = d.readUInt32LE(p + 1);
      msg.requestResource = st.statements.get(id) ?? '';
      traceFromSqlComment(msg, msg.requestResource);
      if (cmd === COM_STMT_CLOSE) st.statements.delete(id);
    }
    if (cmd === COM_QUIT || cmd === COM_STMT_CLOSE || cmd === COM_STMT_SEND_LONG_DATA) msg.oneWay = true;
    else if (st.pending.length < 1024) st.pending.push(new Pending(cmd, sql));
    emit(msg);
  }

  private login(d: Buffer, p: number, stop: number, len: number, st: MysqlFlowState, emit: Emit): void {
    if (stop - p < 4) return;
    const caps = d.readUInt32LE(p);
    if ((caps & CLIENT_SSL) !== 0 && len <= 36) { st.phase = PHASE_TLS; return; }
    st.phase = PHASE_AUTH;
    st.deprecateEof = (caps & CLIENT_DEPRECATE_EOF) !== 0;
    st.queryAttributes = (caps & CLIENT_QUERY_ATTRIBUTES) !== 0;
    const msg = newMessage('request');
    msg.requestType = 'LOGIN';
    msg.version = st.serverVersion;
    msg.length = len;
    if ((caps & CLIENT_PROTOCOL_41) !== 0) {
      let q = p + 32;
      const ue = cstrEnd(d, q, stop);
      msg.requestResource = d.toString('utf8', q, Math.min(ue, q + 256));
      q = ue + 1;
      let authLen: number;
      if ((caps & CLIENT_PLUGIN_AUTH_LENENC) !== 0) { authLen = lenenc(d, q, stop); q += lenencSize; }
      else if ((caps & CLIENT_SECURE_CONNECTION) !== 0) { authLen = q < stop ? d[q] : -1; q += 1; }
      else authLen = cstrEnd(d, q, stop) - q + 1;
      q += authLen;
      if (authLen >= 0 && (caps & CLIENT_CONNECT_WITH_DB) !== 0 && q < stop) {
        msg.requestDomain = d.toString('utf8', q, Math.min(cstrEnd(d, q, stop), q + 256));
      }
    }
    // Compression starts after authentication succeeds (noted in the LOGIN entry).
    st.pending.length = 0;
    st.pending.push(new Pending(LOGIN | (caps & CLIENT_COMPRESS), ''));
    emit(msg);
  }

  private serverPacket(d: Buffer, p: number, stop: number, len: number, seq: number, st: MysqlFlowState, emit: Emit): void {
    if (p >= stop) return;
    const t = d[p];
    if (seq === 0 && t === 10 && st.rs === RS_NONE) {
      // Greeting: a new connection (or a capture starting at one).
      const z = cstrEnd(d, p + 1, stop);
      st.serverVersion = d.toString('latin1', p + 1, Math.min(z, p + 64));
      st.phase = PHASE_LOGIN;
      st.pending.length = 0;
      return;
    }
    if (seq === 0 && t === 0xff && st.rs === RS_NONE) {
      // Refused before the greeting (1040 too many connections, 1130 host not allowed).
      st.pending.length = 0;
      this.finish(st, emit, this.error(d, p, stop));
      return;
    }
    if (st.phase === PHASE_AUTH) {
      // Auth switch (0xfe) and more-data (0x01) packets go on until OK or ERR.
      if (t !== 0 && t !== 0xff) return;
      const head = st.pending.length > 0 ? st.pending[0].command : LOGIN;
      st.phase = PHASE_COMMAND;
      if (t === 0 && (head & CLIENT_COMPRESS) !== 0) st.compressed = true;
      this.finish(st, emit, t === 0xff ? this.error(d, p, stop) : this.ok(d, p, stop, st));
      return;
    }
    const isEof = t === 0xfe && len < 9;
    switch (st.rs) {
      case RS_NONE: {
        if (seq !== 1) return; // the rest of an answer we did not follow
        if (st.serverGap) { st.serverGap = false; this.dropLostAnswers(st, emit); }
        const head = st.pending.length > 0 ? st.pending[0].command : -1;
        if (t === 0xff) { this.finish(st, emit, this.error(d, p, stop)); return; }
        if (head === COM_STMT_PREPARE && t === 0 && len >= 12 && stop - p >= 9) {
          const id = d.readUInt32LE(p + 1);
          const cols = d.readUInt16LE(p + 5), params = d.readUInt16LE(p + 7);
          if (st.statements.size >= MAX_STATEMENTS) st.statements.delete(st.statements.keys().next().value as number);
          st.statements.set(id, st.pending[0].sql);
          const msg = newMessage('response');
          msg.responseStatus = 'ok';
          msg.responseResult = `statement ${id}`;
          this.finish(st, emit, msg);
          st.prepareDefs = cols + params;
          if (st.prepareDefs > 0) st.rs = RS_PREPARE_DEFS;
          return;
        }
        if (t === 0 || isEof || head === COM_STATISTICS) { this.finish(st, emit, this.ok(d, p, stop, st)); return; }
        if (head === COM_FIELD_LIST) { st.rs = RS_UNTIL_EOF; return; }
        if (head === COM_BINLOG_DUMP || head === COM_BINLOG_DUMP_GTID) return;
        const n = lenenc(d, p, stop);
        if (n <= 0) { this.finish(st, emit, this.ok(d, p, stop, st)); return; }
        st.columns = n; st.seen = 0; st.rows = 0;
        st.rs = RS_COLUMNS;
        return;
      }
      case RS_PREPARE_DEFS:
        if (!isEof && --st.prepareDefs <= 0) st.rs = RS_NONE;
        return;
      case RS_UNTIL_EOF:
        if (isEof || t === 0xff) this.finish(st, emit, t === 0xff ? this.error(d, p, stop) : this.ok(d, p, stop, st));
        return;
      case RS_COLUMNS:
        if (t === 0xff) { this.finish(st, emit, this.error(d, p, stop)); return; }
        if (isEof) { st.rs = RS_ROWS; return; }
        if (++st.seen >= st.columns) st.rs = st.deprecateEof ? RS_ROWS : RS_COLUMNS_EOF;
        return;
      case RS_COLUMNS_EOF:
        st.rs = RS_ROWS;
        if (isEof) return;
        // No EOF after the definitions (CLIENT_DEPRECATE_EOF not seen at login): a row already.
        this.row(d, p, stop, len, t, st, emit);
        return;
      case RS_ROWS:
        this.row(d, p, stop, len, t, st, emit);
        return;
      default:
        st.rs = RS_NONE;
    }
  }

  /** A packet of the rows part: a row, the terminating EOF/OK, or an ERR. */
  private row(d: Buffer, p: number, stop: number, len: number, t: number, st: MysqlFlowState, emit: Emit): void {
    if (t === 0xff) { this.finish(st, emit, this.error(d, p, stop)); return; }
    if (t === 0xfe && (len < 9 || (st.deprecateEof && len < 0xffffff))) {
      const msg = newMessage('response');
      msg.responseStatus = 'ok';
      msg.responseResult = `${st.rows} rows`;
      // More result sets may follow (a CALL): their packets continue the sequence, so the
      // sequence-id rule of RS_NONE skips them.
      this.finish(st, emit, msg);
      return;
    }
    st.rows++;
  }

  /**
   * After a gap in the server's stream, the answer starting now is for the newest request
   * (clients wait for each answer): the older ones' answers were in the gap. They get a response
   * with status "unknown", so the stage's order pairing stays right.
   */
  private dropLostAnswers(st: MysqlFlowState, emit: Emit): void {
    while (st.pending.length > 1) {
      st.pending.shift();
      st.lostAnswers++;
      const msg = newMessage('response');
      msg.version = st.serverVersion;
      emit(msg);
    }
  }

  private finish(st: MysqlFlowState, emit: Emit, msg: ReturnType<typeof newMessage>): void {
    st.rs = RS_NONE;
    msg.version = st.serverVersion;
    if (st.pending.length > 0) st.pending.shift();
    emit(msg);
  }

  private ok(d: Buffer, p: number, stop: number, _st: MysqlFlowState): ReturnType<typeof newMessage> {
    const msg = newMessage('response');
    msg.responseStatus = 'ok';
    if (d[p] === 0) {
      const rows = lenenc(d, p + 1, stop);
      if (rows >= 0) msg.responseResult = `${rows} affected`;
    }
    return msg;
  }

  /** ERR: 0xff, code (2), optional '#' + SQLSTATE (5), message. */
  private error(d: Buffer, p: number, stop: number): ReturnType<typeof newMessage> {
    const msg = newMessage('response');
    if (p + 3 > stop) { msg.responseStatus = 'server_error'; return msg; }
    const code = d.readUInt16LE(p + 1);
    let m = p + 3;
    if (m < stop && d[m] === 35) m += 6;
    msg.responseCode = code;
    msg.responseStatus = statusOfCode(code);
    msg.responseException = m < stop ? d.toString('utf8', m, Math.min(stop, m + 512)) : '';
    msg.responseResult = `${code}`;
    return msg;
  }
}

/** Server errors are 1000-1999 and 3000+; client-side errors (2000-2999) never travel; the
 * common "your request was wrong" errors are the client's. */
function statusOfCode(code: number): ResponseStatus {
  // Access denied, unknown database/table/column, syntax errors, duplicates, constraint failures.
  if ((code >= 1044 && code <= 1075) || code === 1045 || code === 1049 || code === 1064 || code === 1062 ||
    code === 1142 || code === 1146 || code === 1149 || code === 1216 || code === 1217 || code === 1451 ||
    code === 1452 || code === 1054 || code === 1227 || code === 1130 || code === 1251) return 'client_error';
  return 'server_error';
}

export const mysqlParser = new MysqlParser();
