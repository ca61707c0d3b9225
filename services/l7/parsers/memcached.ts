// Memcached text protocol (memcached's doc/protocol.txt), classic and meta commands. One `parse`
// call reads one line; a storage command's or a VALUE's data block is returned as bytes to skip,
// never buffered. A retrieval answer (VALUE ... END) and a stats answer (STAT ... END) are one
// response, emitted at END. Pairing is by order. A command sent with "noreply" (and "quit") gets
// no answer: it is emitted as `oneWay`, so it is logged at once and does not shift the pairing.
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, newMessage,
} from '../parser';

const CR = 13, LF = 10, SP = 32;
/** A line longer than this without its end is not memcached (keys are at most 250 bytes). */
const MAX_LINE = 2048;
export const MEMCACHED_MAX_RESOURCE = 256;

const KIND_STORAGE = 1, KIND_CAS = 2, KIND_RETRIEVAL = 3, KIND_KEYED = 4, KIND_OTHER = 5, KIND_META_SET = 6, KIND_QUIT = 7, KIND_UNKNOWN = 8;
const COMMANDS = new Map<string, number>([
  ['set', KIND_STORAGE], ['add', KIND_STORAGE], ['replace', KIND_STORAGE], ['append', KIND_STORAGE],
  ['prepend', KIND_STORAGE], ['cas', KIND_CAS],
  ['get', KIND_RETRIEVAL], ['gets', KIND_RETRIEVAL], ['gat', KIND_RETRIEVAL], ['gats', KIND_RETRIEVAL],
  ['delete', KIND_KEYED], ['incr', KIND_KEYED], ['decr', KIND_KEYED], ['touch', KIND_KEYED],
  ['mg', KIND_KEYED], ['md', KIND_KEYED], ['ma', KIND_KEYED], ['ms', KIND_META_SET],
  ['stats', KIND_OTHER], ['version', KIND_OTHER], ['verbosity', KIND_OTHER], ['flush_all', KIND_OTHER],
  ['mn', KIND_OTHER], ['me', KIND_KEYED], ['lru_crawler', KIND_OTHER], ['slabs', KIND_OTHER],
  ['watch', KIND_OTHER], ['shutdown', KIND_OTHER], ['cache_memlimit', KIND_OTHER], ['misbehave', KIND_OTHER],
  ['quit', KIND_QUIT],
]);

/** Response lines that end an answer, and their status. VALUE/STAT/ITEM lines do not. */
const FINAL = new Map<string, 'ok' | 'client_error' | 'server_error'>([
  ['END', 'ok'], ['STORED', 'ok'], ['NOT_STORED', 'ok'], ['EXISTS', 'ok'], ['NOT_FOUND', 'ok'],
  ['DELETED', 'ok'], ['TOUCHED', 'ok'], ['OK', 'ok'], ['RESET', 'ok'], ['VERSION', 'ok'],
  ['ERROR', 'client_error'], ['CLIENT_ERROR', 'client_error'], ['SERVER_ERROR', 'server_error'],
  // meta protocol
  ['HD', 'ok'], ['VA', 'ok'], ['EN', 'ok'], ['NF', 'ok'], ['NS', 'ok'], ['EX', 'ok'], ['MN', 'ok'], ['ME', 'ok'],
]);
const CONTINUED = new Set(['VALUE', 'STAT', 'ITEM', 'CONFIG']);

/** What one connection remembers. */
export class MemcachedFlowState {
  /** Items (VALUE lines) of the retrieval answer being read. */
  values = 0;
  /** The retrieval answer in progress was already emitted (its END was cut off the capture). */
  answered = false;
}

/** Reused per parser: the words of one line, as [start, end) offsets. */
class Words {
  readonly start = new Int32Array(24);
  readonly end = new Int32Array(24);
  count = 0;

  split(d: Buffer, a: number, b: number): void {
    this.count = 0;
    let i = a;
    while (i < b && this.count < 24) {
      while (i < b && d[i] === SP) i++;
      if (i >= b) break;
      const s = i;
      while (i < b && d[i] !== SP) i++;
      this.start[this.count] = s;
      this.end[this.count] = i;
      this.count++;
    }
  }
}

function lineEnd(d: Buffer, from: number, end: number): number {
  const i = d.indexOf(LF, from);
  return i < 0 || i >= end ? -1 : i;
}

/** Non-negative decimal of d[a, b); -1 if not one. */
function unsigned(d: Buffer, a: number, b: number): number {
  if (a >= b || b - a > 15) return -1;
  let v = 0;
  for (let i = a; i < b; i++) {
    const c = d[i];
    if (c < 48 || c > 57) return -1;
    v = v * 10 + c - 48;
  }
  return v;
}

function commandWord(d: Buffer, start: number, end: number): string {
  let i = start;
  while (i < end && i - start < 16 && ((d[i] >= 97 && d[i] <= 122) || d[i] === 95)) i++;
  if (i === start || i >= end || (d[i] !== SP && d[i] !== CR && d[i] !== LF)) return '';
  return d.toString('latin1', start, i);
}

function responseWord(d: Buffer, start: number, end: number): string {
  let i = start;
  while (i < end && i - start < 14 && ((d[i] >= 65 && d[i] <= 90) || d[i] === 95)) i++;
  if (i === start || i >= end || (d[i] !== SP && d[i] !== CR && d[i] !== LF)) return '';
  return d.toString('latin1', start, i);
}

function isNumberLine(d: Buffer, start: number, end: number): boolean {
  let i = start;
  while (i < end && d[i] >= 48 && d[i] <= 57) i++;
  return i > start && i + 1 < end && d[i] === CR && d[i + 1] === LF;
}

export class MemcachedParser implements L7Parser<MemcachedFlowState> {
  readonly name = 'Memcached';
  readonly pairsById = false;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  private readonly words = new Words();

  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    const cmd = commandWord(d, start, end);
    if (cmd !== '') {
      const kind = COMMANDS.get(cmd);
      if (kind === undefined) return CHECK_NONE;
      // Strict shapes: a storage command has key, flags, exptime and bytes; retrieval needs a key.
      const lf = lineEnd(d, start, end);
      if (lf < 0) return CHECK_NONE;
      const w = this.words;
      w.split(d, start, d[lf - 1] === CR ? lf - 1 : lf);
      if (kind === KIND_STORAGE || kind === KIND_CAS) {
        if (w.count < (kind === KIND_CAS ? 6 : 5)) return CHECK_NONE;
        for (let k = 2; k < 5; k++) if (unsigned(d, w.start[k], w.end[k]) < 0) return CHECK_NONE;
        return CHECK_REQUEST;
      }
      if (kind === KIND_RETRIEVAL || kind === KIND_KEYED) return w.count >= 2 ? CHECK_REQUEST : CHECK_NONE;
      return CHECK_REQUEST;
    }
    const word = responseWord(d, start, end);
    if (word === 'VALUE') {
      const lf = lineEnd(d, start, end);
      if (lf < 0) return CHECK_NONE;
      const w = this.words;
      w.split(d, start, d[lf - 1] === CR ? lf - 1 : lf);
      return w.count >= 4 && unsigned(d, w.start[3], w.end[3]) >= 0 ? CHECK_RESPONSE : CHECK_NONE;
    }
    if (word === 'STORED' || word === 'NOT_STORED' || word === 'DELETED' || word === 'NOT_FOUND' ||
      word === 'SERVER_ERROR' || word === 'CLIENT_ERROR' || word === 'TOUCHED' || word === 'STAT') {
      return lineEnd(d, start, end) >= 0 ? CHECK_RESPONSE : CHECK_NONE;
    }
    return CHECK_NONE;
  }

  newFlowState(): MemcachedFlowState {
    return new MemcachedFlowState();
  }

  resync(state: MemcachedFlowState, fromClient: boolean): void {
    if (!fromClient) { state.values = 0; state.answered = false; }
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: MemcachedFlowState, emit: Emit): number {
    const lf = lineEnd(d, start, end);
    if (lf < 0) {
      if (ctx.truncated || end - start > MAX_LINE) return PARSE_INVALID;
      return PARSE_NEED_MORE;
    }
    const le = lf > start && d[lf - 1] === CR ? lf - 1 : lf;
    const next = lf + 1 - start;
    // A stray empty line (a client's extra CRLF) is skipped.
    if (le === start) return next;
    // The words say which side wrote the line; the flow's guess of the client may be wrong.
    const cmd = commandWord(d, start, end);
    const kind = cmd === '' ? undefined : COMMANDS.get(cmd);
    if (kind !== undefined) return this.request(d, start, le, next, cmd, kind, emit);
    // An unknown command still gets an answer (ERROR): report it, so that the pairing holds.
    if (cmd !== '' && ctx.fromClient) return this.request(d, start, le, next, cmd, KIND_UNKNOWN, emit);
    return this.response(d, start, le, next, end, ctx, st, emit);
  }

  private request(d: Buffer, start: number, le: number, next: number, cmd: string, kind: number, emit: Emit): number {
    const w = this.words;
    w.split(d, start, le);
    const msg = newMessage('request');
    msg.requestType = cmd;
    let skip = 0;
    if (kind === KIND_STORAGE || kind === KIND_CAS) {
      // A malformed length: the server answers CLIENT_ERROR and reads no data block.
      const bytes = w.count >= 5 ? unsigned(d, w.start[4], w.end[4]) : -1;
      msg.length = bytes < 0 ? 0 : bytes;
      skip = bytes < 0 ? 0 : bytes + 2;
    } else if (kind === KIND_META_SET) {
      const bytes = w.count >= 3 ? unsigned(d, w.start[2], w.end[2]) : -1;
      msg.length = bytes < 0 ? 0 : bytes;
      skip = bytes < 0 ? 0 : bytes + 2;
    }
    // request_resource: the key, or the keys of a multi-get.
    if (w.count >= 2 && kind !== KIND_OTHER && kind !== KIND_QUIT && kind !== KIND_UNKNOWN) {
      const last = kind === KIND_RETRIEVAL ? w.count - 1 : 1;
      const first = cmd === 'gat' || cmd === 'gats' ? 2 : 1;
      const b = Math.min(w.end[Math.max(first, last)], w.start[first] + MEMCACHED_MAX_RESOURCE);
      if (first < w.count) msg.requestResource = d.toString('latin1', w.start[first], b);
      msg.endpoint = first < w.count ? d.toString('latin1', w.start[first], Math.min(w.end[first], w.start[first] + MEMCACHED_MAX_RESOURCE)) : '';
    } else if ((kind === KIND_OTHER || kind === KIND_UNKNOWN) && w.count >= 2) {
      msg.requestResource = d.toString('latin1', w.start[1], Math.min(le, w.start[1] + MEMCACHED_MAX_RESOURCE));
    }
    const lastWord = w.count > 1 ? d.toString('latin1', w.start[w.count - 1], w.end[w.count - 1]) : '';
    // noreply (classic) / q flag (meta: quiet mode answers only failures, so pairing is unknowable)
    if (kind === KIND_QUIT || lastWord === 'noreply') msg.oneWay = true;
    emit(msg);
    return next + skip;
  }

  private response(d: Buffer, start: number, le: number, next: number, end: number, ctx: ParseContext, st: MemcachedFlowState, emit: Emit): number {
    let word = responseWord(d, start, le + 1);
    if (word === '' && isNumberLine(d, start, le + 2)) word = '#';
    if (CONTINUED.has(word)) {
      if (word !== 'VALUE') return next;
      const w = this.words;
      w.split(d, start, le);
      const bytes = w.count >= 4 ? unsigned(d, w.start[3], w.end[3]) : -1;
      if (bytes < 0) return PARSE_INVALID;
      st.values++;
      // The capture cut this segment before END: answer now, or END may never be seen and every
      // later answer would pair with the wrong request.
      if (ctx.truncated && !st.answered && start + next + bytes + 7 > end) {
        st.answered = true;
        const msg = newMessage('response');
        msg.responseStatus = 'ok';
        msg.responseResult = `${st.values} hit`;
        msg.length = next + bytes + 2;
        emit(msg);
      }
      return next + bytes + 2;
    }
    const status = word === '#' ? 'ok' : FINAL.get(word);
    if (status === undefined) return PARSE_INVALID;
    if (word === 'END' && st.answered) {
      st.answered = false;
      st.values = 0;
      return next;
    }
    const msg = newMessage('response');
    msg.responseStatus = status;
    if (status !== 'ok') {
      msg.responseException = d.toString('latin1', start, Math.min(le, start + MEMCACHED_MAX_RESOURCE));
    } else if (word === 'END') {
      msg.responseResult = st.values > 0 ? `${st.values} hit` : 'END';
    } else {
      msg.responseResult = d.toString('latin1', start, Math.min(le, start + MEMCACHED_MAX_RESOURCE));
    }
    if (word === 'VERSION') msg.version = d.toString('latin1', Math.min(start + 8, le), le);
    msg.length = next;
    st.values = 0;
    st.answered = false;
    emit(msg);
    return next;
  }
}

export const memcachedParser = new MemcachedParser();
