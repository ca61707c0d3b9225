// MongoDB wire protocol (mongodb.com/docs/manual/reference/mongodb-wire-protocol). Every message
// has a 16-byte little-endian header: messageLength, requestID, responseTo, opCode. A reply names
// its request in responseTo, so pairing is by id. The command is the first key of the body
// document (OP_MSG section kind 0, or the OP_QUERY document on "<db>.$cmd"), its value the
// collection when it is a string; replies carry ok / errmsg / code at their top level.
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Message, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, newMessage,
} from '../parser';
import { BsonReader, BSON_STRING } from './bson';

export const OP_REPLY = 1, OP_UPDATE = 2001, OP_INSERT = 2002, OP_QUERY = 2004, OP_GET_MORE = 2005;
export const OP_DELETE = 2006, OP_KILL_CURSORS = 2007, OP_COMPRESSED = 2012, OP_MSG = 2013;

const OP_NAMES = new Map<number, string>([
  [OP_REPLY, 'OP_REPLY'], [OP_UPDATE, 'OP_UPDATE'], [OP_INSERT, 'OP_INSERT'], [OP_QUERY, 'OP_QUERY'],
  [OP_GET_MORE, 'OP_GET_MORE'], [OP_DELETE, 'OP_DELETE'], [OP_KILL_CURSORS, 'OP_KILL_CURSORS'],
  [OP_COMPRESSED, 'OP_COMPRESSED'], [OP_MSG, 'OP_MSG'],
]);

export const MONGO_MAX_MESSAGE = 48 << 20;
/** Bytes of a long message's start read before it is skipped. */
const MIN_HEAD = 512;
const MSG_MORE_TO_COME = 2;

export class MongoFlowState {}

function isRequestOp(op: number): boolean {
  return op === OP_QUERY || op === OP_MSG || op === OP_GET_MORE || op === OP_INSERT || op === OP_UPDATE ||
    op === OP_DELETE || op === OP_KILL_CURSORS || op === OP_COMPRESSED;
}

export class MongoParser implements L7Parser<MongoFlowState> {
  readonly name = 'MongoDB';
  readonly pairsById = true;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  private readonly bson = new BsonReader();

  /** A header with a known opCode, a sane length, and a body that starts as its opCode says. */
  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    if (end - start < 21) return CHECK_NONE;
    const len = d.readInt32LE(start), op = d.readInt32LE(start + 12), to = d.readInt32LE(start + 8);
    if (len < 21 || len > MONGO_MAX_MESSAGE || !OP_NAMES.has(op)) return CHECK_NONE;
    const body = start + 16;
    if (op === OP_MSG) {
      if ((d.readUInt32LE(body) & 0xfffc) !== 0) return CHECK_NONE; // unknown required flag bits
      if (end - body < 5 || d[body + 4] > 1) return CHECK_NONE; // section kind 0 or 1
      return to === 0 ? CHECK_REQUEST : CHECK_RESPONSE;
    }
    if (op === OP_REPLY) return len >= 36 ? CHECK_RESPONSE : CHECK_NONE; // responseTo may be 0: request 0
    if (op === OP_QUERY) {
      // fullCollectionName: "<db>.<collection>" as a C string.
      const nul = d.indexOf(0, body + 4);
      if (nul < 0 || nul >= end) return CHECK_NONE;
      return d.indexOf(46, body + 4) > body + 4 && d.indexOf(46, body + 4) < nul ? CHECK_REQUEST : CHECK_NONE;
    }
    return to === 0 && isRequestOp(op) ? CHECK_REQUEST : CHECK_NONE;
  }

  newFlowState(): MongoFlowState { return new MongoFlowState(); }

  resync(_state: MongoFlowState, _fromClient: boolean): void {
    // Nothing is kept between messages.
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, _st: MongoFlowState, emit: Emit): number {
    const avail = end - start;
    if (avail < 16) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const len = d.readInt32LE(start);
    const op = d.readInt32LE(start + 12);
    if (len < 16 || len > MONGO_MAX_MESSAGE || !OP_NAMES.has(op)) return PARSE_INVALID;
    if (avail < len && avail < MIN_HEAD && !ctx.truncated) return PARSE_NEED_MORE;
    const msgEnd = Math.min(end, start + len);
    const requestId = d.readInt32LE(start + 4), responseTo = d.readInt32LE(start + 8);
    const body = start + 16;
    const isResponse = op === OP_REPLY || (op === OP_MSG && responseTo !== 0) ||
      (op === OP_COMPRESSED && responseTo !== 0);
    const msg = newMessage(isResponse ? 'response' : 'request');
    msg.length = len;
    msg.pairId = isResponse ? responseTo : requestId;
    switch (op) {
      case OP_MSG: this.opMsg(d, body, msgEnd, msg); break;
      case OP_QUERY: this.opQuery(d, body, msgEnd, msg); break;
      case OP_REPLY:
        msg.requestType = 'OP_REPLY';
        this.reply(d, body + 20, msgEnd, msg);
        break;
      case OP_COMPRESSED: {
        // The compressed message is not inflated: its original opCode is all that is reported.
        const orig = msgEnd - body >= 4 ? d.readInt32LE(body) : 0;
        msg.requestType = OP_NAMES.get(orig) ?? 'OP_COMPRESSED';
        msg.version = 'compressed';
        if (isResponse) msg.responseStatus = 'ok';
        break;
      }
      default:
        msg.requestType = OP_NAMES.get(op)!;
        if (op === OP_GET_MORE || op === OP_UPDATE || op === OP_INSERT || op === OP_DELETE) {
          // int32 zero/flags, then fullCollectionName
          msg.requestResource = collectionOf(d, body + 4, msgEnd);
        }
        // Only OP_GET_MORE is answered among the legacy writes and kills.
        if (op !== OP_GET_MORE) msg.oneWay = true;
    }
    emit(msg);
    return len;
  }

  private opMsg(d: Buffer, body: number, end: number, msg: L7Message): void {
    if (body + 4 > end) return;
    const flags = d.readUInt32LE(body);
    if (msg.kind === 'request' && (flags & MSG_MORE_TO_COME) !== 0) msg.oneWay = true;
    // Sections: kind 0 is the command body; kind 1 a document sequence (skipped).
    let p = body + 4;
    while (p < end) {
      const kind = d[p];
      if (kind === 0) {
        if (msg.kind === 'request') this.command(d, p + 1, end, msg);
        else this.reply(d, p + 1, end, msg);
        return;
      }
      if (kind !== 1 || p + 5 > end) return;
      const size = d.readInt32LE(p + 1);
      if (size < 5) return;
      p += 1 + size;
    }
  }

  private opQuery(d: Buffer, body: number, end: number, msg: L7Message): void {
    // flags, fullCollectionName, numberToSkip, numberToReturn, query document
    const nul = d.indexOf(0, body + 4);
    if (nul < 0 || nul >= end) { msg.requestType = 'OP_QUERY'; return; }
    const full = d.toString('utf8', body + 4, nul);
    const dot = full.indexOf('.');
    msg.requestDomain = dot > 0 ? full.slice(0, dot) : '';
    const coll = dot >= 0 ? full.slice(dot + 1) : full;
    if (coll === '$cmd') this.command(d, nul + 9, end, msg);
    else { msg.requestType = 'OP_QUERY'; msg.requestResource = coll; }
    if (msg.requestType === '') msg.requestType = 'OP_QUERY';
  }

  /** Command name (first key), its collection (a string first value) and $db. */
  private command(d: Buffer, doc: number, end: number, msg: L7Message): void {
    const r = this.bson;
    if (!r.open(d, doc, end)) return;
    let first = true;
    while (r.next()) {
      if (first) {
        msg.requestType = r.name();
        if (r.type === BSON_STRING) msg.requestResource = r.string();
        first = false;
      } else if (r.nameIs('$db')) {
        msg.requestDomain = r.string();
        break;
      }
    }
  }

  /** ok, errmsg and code of a reply document. */
  private reply(d: Buffer, doc: number, end: number, msg: L7Message): void {
    const r = this.bson;
    let ok = NaN, code = NaN, errmsg = '';
    if (r.open(d, doc, end)) {
      while (r.next()) {
        if (r.nameIs('ok')) ok = r.number();
        else if (r.nameIs('code')) code = r.number();
        else if (r.nameIs('errmsg')) errmsg = r.string();
      }
    }
    // Codes are int32 (a double or int64 holding one is accepted).
    if (Number.isInteger(code) && code >= -2147483648 && code <= 2147483647) msg.responseCode = code;
    msg.responseException = errmsg;
    // No "ok" (a cut reply, a legacy query answer) counts as success, as the driver would see rows.
    msg.responseStatus = ok === 0 ? 'server_error' : 'ok';
  }
}

/** "<db>.<collection>" at `p` -> the collection part. */
function collectionOf(d: Buffer, p: number, end: number): string {
  const nul = d.indexOf(0, p);
  if (p >= end || nul < 0 || nul >= end) return '';
  const full = d.toString('utf8', p, nul);
  const dot = full.indexOf('.');
  return dot >= 0 ? full.slice(dot + 1) : full;
}

export const mongoParser = new MongoParser();
