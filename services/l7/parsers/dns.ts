// DNS (RFC 1035) over UDP (one message per datagram) and TCP (each message after a 2-byte
// length, several per segment or one across segments). Requests and responses pair by the
// transaction id.
//
// response_status from the rcode (our choice, close to the DeepFlow agent's): NoError -> ok;
// FormErr (1) and NXDomain (3) -> client_error (the question was malformed or names nothing);
// every other non-zero rcode (ServFail, NotImp, Refused, YXDomain, ...) -> server_error (the
// server could not or would not answer a valid question).
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, ResponseStatus, newMessage,
} from '../parser';
import { formatIp } from '../../../lib/packet-batch';

const HEADER_LEN = 12;
/** A name has at most 255 bytes; following more pointers than this means a loop. */
const MAX_POINTER_JUMPS = 64;
const MAX_NAME_CHARS = 1024;
/** Answers copied into response_result at most. */
const MAX_ANSWERS = 16;

/** Type names as Wireshark shows them (RFC 1035, 3596, 2782, 4034, 9460, ...). */
const TYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 3: 'MD', 4: 'MF', 5: 'CNAME', 6: 'SOA', 7: 'MB', 8: 'MG', 9: 'MR', 10: 'NULL',
  11: 'WKS', 12: 'PTR', 13: 'HINFO', 14: 'MINFO', 15: 'MX', 16: 'TXT', 17: 'RP', 18: 'AFSDB',
  19: 'X25', 20: 'ISDN', 21: 'RT', 22: 'NSAP', 23: 'NSAP-PTR', 24: 'SIG', 25: 'KEY', 26: 'PX',
  27: 'GPOS', 28: 'AAAA', 29: 'LOC', 30: 'NXT', 31: 'EID', 32: 'NIMLOC', 33: 'SRV', 34: 'ATMA',
  35: 'NAPTR', 36: 'KX', 37: 'CERT', 38: 'A6', 39: 'DNAME', 40: 'SINK', 41: 'OPT', 42: 'APL',
  43: 'DS', 44: 'SSHFP', 45: 'IPSECKEY', 46: 'RRSIG', 47: 'NSEC', 48: 'DNSKEY', 49: 'DHCID',
  50: 'NSEC3', 51: 'NSEC3PARAM', 52: 'TLSA', 53: 'SMIMEA', 55: 'HIP', 56: 'NINFO', 57: 'RKEY',
  58: 'TALINK', 59: 'CDS', 60: 'CDNSKEY', 61: 'OPENPGPKEY', 62: 'CSYNC', 63: 'ZONEMD', 64: 'SVCB',
  65: 'HTTPS', 99: 'SPF', 100: 'UINFO', 101: 'UID', 102: 'GID', 103: 'UNSPEC', 104: 'NID',
  105: 'L32', 106: 'L64', 107: 'LP', 108: 'EUI48', 109: 'EUI64', 249: 'TKEY', 250: 'TSIG',
  251: 'IXFR', 252: 'AXFR', 253: 'MAILB', 254: 'MAILA', 255: '*', 256: 'URI', 257: 'CAA',
  32768: 'TA', 32769: 'DLV',
};

export function dnsTypeName(t: number): string {
  return TYPE_NAMES[t] ?? `Unknown (${t})`;
}

const RCODE_NAMES = ['NoError', 'FormErr', 'ServFail', 'NXDomain', 'NotImp', 'Refused', 'YXDomain',
  'YXRRSet', 'NXRRSet', 'NotAuth', 'NotZone', 'DSOTYPENI'];

export function dnsRcodeName(r: number): string {
  return RCODE_NAMES[r] ?? `RCode${r}`;
}

export function dnsStatus(rcode: number): ResponseStatus {
  if (rcode === 0) return 'ok';
  if (rcode === 1 || rcode === 3) return 'client_error';
  return 'server_error';
}

/** Result of reading one name: its text and the offset just past it in the record. */
class NameReader {
  text = '';
  next = -1;
  /** The last failed read ran into the end of the bytes (a cut), not into bad data. */
  hitEnd = false;

  /**
   * Reads the name at `off` of the message d[msg, end). Pointers must stay inside the message and
   * their number is bounded, so a pointer loop ends in failure (returns false) instead of hanging.
   */
  read(d: Buffer, msg: number, end: number, off: number): boolean {
    let pos = off, jumps = 0, next = -1;
    let text = '';
    this.hitEnd = false;
    for (;;) {
      if (pos >= end) { this.hitEnd = true; return false; }
      const len = d[pos];
      if (len === 0) {
        if (next < 0) next = pos + 1;
        break;
      }
      if ((len & 0xc0) === 0xc0) {
        if (pos + 1 >= end) { this.hitEnd = true; return false; }
        if (++jumps > MAX_POINTER_JUMPS) return false;
        if (next < 0) next = pos + 2;
        pos = msg + (((len & 0x3f) << 8) | d[pos + 1]);
        continue;
      }
      if ((len & 0xc0) !== 0) return false; // 0x40/0x80: obsolete/extended label types
      if (pos + 1 + len > end) { this.hitEnd = true; return false; }
      if (text.length > 0) text += '.';
      text += d.toString('latin1', pos + 1, pos + 1 + len);
      if (text.length > MAX_NAME_CHARS) return false;
      pos += 1 + len;
    }
    this.text = text.length === 0 ? '<Root>' : text;
    this.next = next;
    return true;
  }
}

export class DnsParser implements L7Parser<null> {
  readonly name = 'DNS';
  readonly pairsById = true;
  readonly sessionTimeoutUs = 15_000_000;
  readonly overTcp = true;
  readonly overUdp = true;
  private readonly names = new NameReader();

  /**
   * A message start: a sane header (opcode in use, Z bit clear, no rcode in a query, the counts a
   * query or response has) and a whole first question (labels, then a known class), or for an
   * mDNS-style answer-only response a whole first answer header. Over TCP the 2-byte length must
   * hold at least that much. Flow inference relies on this being strict.
   */
  check(d: Buffer, start: number, end: number, ctx: ParseContext): CheckResult {
    let s = start;
    if (ctx.protocol === 6) {
      if (end - s < 2 + HEADER_LEN + 5) return CHECK_NONE;
      const len = d.readUInt16BE(s);
      if (len < HEADER_LEN + 5) return CHECK_NONE;
      s += 2;
      if (end > s + len) end = s + len;
    } else if (end - s < HEADER_LEN + 5) return CHECK_NONE;
    const flags = d.readUInt16BE(s + 2);
    const opcode = (flags >> 11) & 0xf;
    // Query, inverse query, status, notify, update
    if (opcode > 5 || opcode === 3 || (flags & 0x0040) !== 0) return CHECK_NONE;
    const qd = d.readUInt16BE(s + 4), an = d.readUInt16BE(s + 6);
    const ns = d.readUInt16BE(s + 8), ar = d.readUInt16BE(s + 10);
    const isResponse = (flags & 0x8000) !== 0;
    // Queries ask one question; mDNS queries may carry known answers and probes authorities.
    if (!isResponse && ((flags & 0xf) !== 0 || qd !== 1 || an > 16 || ns > 16 || ar > 4)) return CHECK_NONE;
    if (isResponse && (qd > 1 || (qd === 0 && an === 0) || (flags & 0xf) > 10)) return CHECK_NONE;
    if (!this.names.read(d, s, end, s + HEADER_LEN) || this.names.next + 4 > end) return CHECK_NONE;
    const typ = d.readUInt16BE(this.names.next);
    const cls = d.readUInt16BE(this.names.next + 2) & 0x7fff;
    if (typ === 0 || (cls !== 1 && cls !== 3 && cls !== 4 && cls !== 254 && cls !== 255)) return CHECK_NONE;
    return isResponse ? CHECK_RESPONSE : CHECK_REQUEST;
  }

  newFlowState(): null {
    return null;
  }

  resync(): void {
    // No state across messages.
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, _st: null, emit: Emit): number {
    if (ctx.protocol !== 6) {
      return this.message(d, start, end, end - start, emit) ? end - start : PARSE_INVALID;
    }
    if (end - start < 2) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const len = d.readUInt16BE(start);
    if (len < HEADER_LEN) return PARSE_INVALID;
    const avail = end - start - 2;
    if (avail < len && !ctx.truncated) return PARSE_NEED_MORE;
    // A cut message is parsed as far as its bytes go; the rest is skipped by the stage.
    return this.message(d, start + 2, Math.min(end, start + 2 + len), len, emit) ? 2 + len : PARSE_INVALID;
  }

  /** Parses one message in d[s, end) whose full size is `size`; false when it is not DNS. */
  private message(d: Buffer, s: number, end: number, size: number, emit: Emit): boolean {
    if (end - s < HEADER_LEN) return false;
    const id = d.readUInt16BE(s);
    const flags = d.readUInt16BE(s + 2);
    const qd = d.readUInt16BE(s + 4);
    const an = d.readUInt16BE(s + 6);
    const isResponse = (flags & 0x8000) !== 0;
    const msg = newMessage(isResponse ? 'response' : 'request');
    msg.pairId = id;
    msg.length = size;
    let pos = s + HEADER_LEN;
    // The first question names the request; further questions are skipped.
    for (let q = 0; q < qd; q++) {
      if (!this.names.read(d, s, end, pos) || this.names.next + 4 > end) {
        if (q === 0) return false;
        break;
      }
      if (q === 0) {
        msg.requestDomain = this.names.text;
        msg.requestResource = this.names.text;
        msg.requestType = dnsTypeName(d.readUInt16BE(this.names.next));
      }
      pos = this.names.next + 4;
    }
    if (qd === 0 && !isResponse) return false;
    if (isResponse) {
      const rcode = flags & 0xf;
      msg.responseCode = rcode;
      msg.responseStatus = dnsStatus(rcode);
      if (rcode !== 0) msg.responseException = dnsRcodeName(rcode);
      msg.responseResult = this.answers(d, s, end, pos, an);
    }
    emit(msg);
    return true;
  }

  /** Answer data as text, ';' separated: addresses for A/AAAA, names for CNAME/NS/PTR/MX. */
  private answers(d: Buffer, s: number, end: number, pos: number, an: number): string {
    let out = '';
    for (let a = 0; a < an && a < MAX_ANSWERS; a++) {
      if (!this.names.read(d, s, end, pos)) break;
      const rr = this.names.next;
      if (rr + 10 > end) break;
      const type = d.readUInt16BE(rr);
      const rdlen = d.readUInt16BE(rr + 8);
      const rd = rr + 10;
      if (rd + rdlen > end) break;
      let value = '';
      if (type === 1 && rdlen === 4) value = `${d[rd]}.${d[rd + 1]}.${d[rd + 2]}.${d[rd + 3]}`;
      else if (type === 28 && rdlen === 16) value = formatIp(d, rd);
      else if ((type === 5 || type === 2 || type === 12) && this.names.read(d, s, end, rd)) value = this.names.text;
      else if (type === 15 && rdlen > 2 && this.names.read(d, s, end, rd + 2)) value = this.names.text;
      if (value !== '') out = out === '' ? value : `${out};${value}`;
      pos = rd + rdlen;
    }
    return out;
  }
}

export const dnsParser = new DnsParser();
