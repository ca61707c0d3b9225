// TLS (RFC 8446, RFC 5246) handshake only. One `parse` call reads one record. The ClientHello is
// the request (SNI, ALPN, offered versions), the ServerHello its response (chosen version, from
// supported_versions for TLS 1.3, and cipher suite); a plaintext alert that answers a ClientHello
// is a failed response. Everything after ChangeCipherSpec, and application data, is skipped by
// length. Pairing by order.
//
// `drops` reasons:
//   bad_record        a record header that is not TLS where a record should start
//   bad_handshake     a ClientHello/ServerHello whose fields overrun their lengths (read as far as valid)
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, newMessage,
} from '../parser';

const CT_CHANGE_CIPHER_SPEC = 20, CT_ALERT = 21, CT_HANDSHAKE = 22, CT_APPLICATION_DATA = 23, CT_HEARTBEAT = 24;
const HS_CLIENT_HELLO = 1, HS_SERVER_HELLO = 2;
const EXT_SERVER_NAME = 0, EXT_ALPN = 16, EXT_SUPPORTED_VERSIONS = 43;
/** RFC 8446 5.1: 2^14 plus expansion allowed for protected records. */
const MAX_RECORD = (1 << 14) + 2048;

/** Cipher suite names (IANA TLS registry) of the suites seen in practice. */
const CIPHER_NAMES = new Map<number, string>([
  [0x1301, 'TLS_AES_128_GCM_SHA256'], [0x1302, 'TLS_AES_256_GCM_SHA384'], [0x1303, 'TLS_CHACHA20_POLY1305_SHA256'],
  [0x1304, 'TLS_AES_128_CCM_SHA256'], [0x1305, 'TLS_AES_128_CCM_8_SHA256'],
  [0xc02b, 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'], [0xc02c, 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384'],
  [0xc02f, 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'], [0xc030, 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384'],
  [0xcca8, 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256'], [0xcca9, 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256'],
  [0xc009, 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA'], [0xc00a, 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA'],
  [0xc013, 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA'], [0xc014, 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA'],
  [0xc023, 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256'], [0xc024, 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384'],
  [0xc027, 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256'], [0xc028, 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384'],
  [0x009c, 'TLS_RSA_WITH_AES_128_GCM_SHA256'], [0x009d, 'TLS_RSA_WITH_AES_256_GCM_SHA384'],
  [0x009e, 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256'], [0x009f, 'TLS_DHE_RSA_WITH_AES_256_GCM_SHA384'],
  [0x002f, 'TLS_RSA_WITH_AES_128_CBC_SHA'], [0x0035, 'TLS_RSA_WITH_AES_256_CBC_SHA'],
  [0x003c, 'TLS_RSA_WITH_AES_128_CBC_SHA256'], [0x003d, 'TLS_RSA_WITH_AES_256_CBC_SHA256'],
  [0x0033, 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA'], [0x0039, 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA'],
  [0x000a, 'TLS_RSA_WITH_3DES_EDE_CBC_SHA'], [0x0005, 'TLS_RSA_WITH_RC4_128_SHA'], [0x0004, 'TLS_RSA_WITH_RC4_128_MD5'],
  [0xc011, 'TLS_ECDHE_RSA_WITH_RC4_128_SHA'], [0xc007, 'TLS_ECDHE_ECDSA_WITH_RC4_128_SHA'],
]);

/** Alert descriptions (RFC 8446 6). */
const ALERT_NAMES = new Map<number, string>([
  [0, 'close_notify'], [10, 'unexpected_message'], [20, 'bad_record_mac'], [22, 'record_overflow'],
  [40, 'handshake_failure'], [42, 'bad_certificate'], [43, 'unsupported_certificate'], [44, 'certificate_revoked'],
  [45, 'certificate_expired'], [46, 'certificate_unknown'], [47, 'illegal_parameter'], [48, 'unknown_ca'],
  [49, 'access_denied'], [50, 'decode_error'], [51, 'decrypt_error'], [70, 'protocol_version'],
  [71, 'insufficient_security'], [80, 'internal_error'], [86, 'inappropriate_fallback'], [90, 'user_canceled'],
  [109, 'missing_extension'], [110, 'unsupported_extension'], [112, 'unrecognized_name'],
  [113, 'bad_certificate_status_response'], [115, 'unknown_psk_identity'], [116, 'certificate_required'],
  [120, 'no_application_protocol'],
]);

export function cipherSuiteName(code: number): string {
  return CIPHER_NAMES.get(code) ?? `0x${code.toString(16).padStart(4, '0')}`;
}

/** 0x0303 -> "1.2"; SSL 3.0 -> "3.0". */
export function tlsVersionName(v: number): string {
  if (v === 0x0300) return '3.0';
  if (v >= 0x0301 && v <= 0x0304) return `1.${v - 0x0301}`;
  if ((v >> 8) === 0x7f) return '1.3'; // a TLS 1.3 draft (0x7f00 + draft number)
  return `0x${v.toString(16).padStart(4, '0')}`;
}

function isGrease(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);
}

class Side {
  /** After ChangeCipherSpec (or a TLS 1.3 ServerHello) handshake records are encrypted. */
  encrypted = false;
  /** Bytes of a handshake message that continue in the next handshake record(s). */
  hsRemaining = 0;
}

export class TlsFlowState {
  readonly sides: [Side, Side] = [new Side(), new Side()];
  /** ClientHellos not answered by a ServerHello or an alert yet. */
  pendingHellos = 0;
}

export class TlsParser implements L7Parser<TlsFlowState> {
  readonly name = 'TLS';
  readonly pairsById = false;
  readonly sessionTimeoutUs = 15_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  readonly drops: Record<string, number> = { bad_record: 0, bad_handshake: 0 };

  check(d: Buffer, start: number, end: number, ctx: ParseContext): CheckResult {
    if (end - start < 6 || !plausibleRecord(d, start)) return CHECK_NONE;
    if (d[start] === CT_HANDSHAKE) {
      const hs = d[start + 5];
      if (hs === HS_CLIENT_HELLO) return CHECK_REQUEST;
      if (hs === HS_SERVER_HELLO) return CHECK_RESPONSE;
    }
    // Later records (mid-connection, or after a gap): still TLS, nothing to report from them.
    return ctx.fromClient ? CHECK_REQUEST : CHECK_RESPONSE;
  }

  newFlowState(): TlsFlowState {
    return new TlsFlowState();
  }

  resync(st: TlsFlowState, fromClient: boolean): void {
    st.sides[fromClient ? 0 : 1].hsRemaining = 0;
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: TlsFlowState, emit: Emit): number {
    const avail = end - start;
    if (avail < 5) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    if (!plausibleRecord(d, start)) { this.drops.bad_record++; return PARSE_INVALID; }
    const type = d[start];
    const len = d.readUInt16BE(start + 3);
    const total = 5 + len;
    const side = st.sides[ctx.fromClient ? 0 : 1];
    if (type === CT_CHANGE_CIPHER_SPEC) { side.encrypted = true; return total; }
    if (type === CT_ALERT) {
      if (!side.encrypted && len === 2) {
        if (avail < total) return ctx.truncated ? total : PARSE_NEED_MORE;
        this.alert(d[start + 5], d[start + 6], ctx, st, emit);
      }
      return total;
    }
    if (type !== CT_HANDSHAKE || side.encrypted) return total;
    if (avail < total && !ctx.truncated) return PARSE_NEED_MORE;
    this.handshakeRecord(d, start + 5, Math.min(end, start + total), ctx, st, side, emit);
    return total;
  }

  private alert(level: number, desc: number, ctx: ParseContext, st: TlsFlowState, emit: Emit): void {
    // Only an alert that ends a handshake (no ServerHello yet) answers a request.
    if (st.pendingHellos === 0) return;
    st.pendingHellos--;
    const msg = newMessage('response');
    msg.requestType = 'Alert';
    msg.responseCode = desc;
    msg.responseException = ALERT_NAMES.get(desc) ?? `alert ${desc}`;
    msg.responseStatus = level === 2 || desc !== 0 ? (ctx.fromClient ? 'client_error' : 'server_error') : 'ok';
    emit(msg);
  }

  /** Handshake messages in one record's payload d[a, b) (b may be cut short by the capture). */
  private handshakeRecord(d: Buffer, a: number, b: number, ctx: ParseContext, st: TlsFlowState, side: Side, emit: Emit): void {
    let p = a;
    if (side.hsRemaining > 0) {
      const skip = Math.min(side.hsRemaining, b - a);
      side.hsRemaining -= skip;
      p += skip;
    }
    while (p + 4 <= b) {
      const hsType = d[p];
      const hsLen = (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3];
      const bodyEnd = Math.min(b, p + 4 + hsLen);
      if (hsType === HS_CLIENT_HELLO) this.clientHello(d, p + 4, bodyEnd, hsLen, st, emit);
      else if (hsType === HS_SERVER_HELLO) this.serverHello(d, p + 4, bodyEnd, st, side, emit);
      const next = p + 4 + hsLen;
      if (next > b) { side.hsRemaining = ctx.truncated ? 0 : next - b; return; }
      p = next;
    }
  }

  private clientHello(d: Buffer, a: number, b: number, hsLen: number, st: TlsFlowState, emit: Emit): void {
    const msg = newMessage('request');
    msg.requestType = 'ClientHello';
    msg.length = hsLen;
    // legacy_version(2) random(32) session_id<1> cipher_suites<2> compression<1> extensions<2>
    let p = a + 34;
    let ok = true;
    let offered = b - a >= 2 ? d.readUInt16BE(a) : 0;
    if (p < b) p += 1 + d[p]; else ok = false;
    if (ok && p + 2 <= b) p += 2 + d.readUInt16BE(p); else ok = false;
    if (ok && p < b) p += 1 + d[p]; else ok = false;
    let alpn = '';
    if (ok && p + 2 <= b) {
      const extEnd = Math.min(b, p + 2 + d.readUInt16BE(p));
      p += 2;
      while (p + 4 <= extEnd) {
        const type = d.readUInt16BE(p), len = d.readUInt16BE(p + 2);
        const s = p + 4, e = Math.min(extEnd, s + len);
        if (type === EXT_SERVER_NAME) msg.requestDomain = serverName(d, s, e);
        else if (type === EXT_ALPN) alpn = alpnList(d, s, e);
        else if (type === EXT_SUPPORTED_VERSIONS && s < e) {
          for (let q = s + 1; q + 2 <= Math.min(e, s + 1 + d[s]); q += 2) {
            const v = d.readUInt16BE(q);
            if (!isGrease(v) && v > offered && v <= 0x0304) offered = v;
          }
        }
        p = s + len;
      }
    } else if (b - a >= hsLen) this.drops.bad_handshake++;
    msg.requestResource = alpn;
    msg.endpoint = msg.requestDomain;
    // The log's version is the one the server chooses (the stage prefers a request's version,
    // so the highest version offered is kept here, in the request's own result field, unused).
    msg.responseResult = offered !== 0 ? tlsVersionName(offered) : '';
    st.pendingHellos++;
    emit(msg);
  }

  private serverHello(d: Buffer, a: number, b: number, st: TlsFlowState, side: Side, emit: Emit): void {
    const msg = newMessage('response');
    msg.responseStatus = 'ok';
    // legacy_version(2) random(32) session_id<1> cipher_suite(2) compression(1) extensions<2>
    let version = b - a >= 2 ? d.readUInt16BE(a) : 0;
    // TLS 1.3 drafts before 22 put the draft version here and have no session id or compression.
    const oldDraft = (version >> 8) === 0x7f && (version & 0xff) < 22;
    let p = a + 34;
    if (!oldDraft && p < b) p += 1 + d[p];
    if (p + 2 <= b) {
      msg.responseResult = cipherSuiteName(d.readUInt16BE(p));
      p += oldDraft ? 2 : 3;
      if (p + 2 <= b) {
        const extEnd = Math.min(b, p + 2 + d.readUInt16BE(p));
        p += 2;
        while (p + 4 <= extEnd) {
          const type = d.readUInt16BE(p), len = d.readUInt16BE(p + 2);
          if (type === EXT_SUPPORTED_VERSIONS && len === 2 && p + 6 <= extEnd) version = d.readUInt16BE(p + 4);
          p += 4 + len;
        }
      }
    } else this.drops.bad_handshake++;
    // supported_versions may lie beyond a capture cut (large key shares come first): the TLS
    // 1.3-only cipher suites (0x13xx) still tell the version.
    const tls13Suite = msg.responseResult.startsWith('TLS_AES_') || msg.responseResult.startsWith('TLS_CHACHA20_');
    if (version === 0x0303 && tls13Suite) version = 0x0304;
    msg.version = version !== 0 ? tlsVersionName(version) : '';
    // TLS 1.3 encrypts everything the server sends after its ServerHello.
    if (version === 0x0304 || (version >> 8) === 0x7f) side.encrypted = true;
    if (st.pendingHellos > 0) st.pendingHellos--;
    emit(msg);
  }
}

function plausibleRecord(d: Buffer, p: number): boolean {
  const t = d[p];
  return t >= CT_CHANGE_CIPHER_SPEC && t <= CT_HEARTBEAT && d[p + 1] === 3 && d[p + 2] <= 4 &&
    d.readUInt16BE(p + 3) <= MAX_RECORD && (t !== CT_APPLICATION_DATA || d.readUInt16BE(p + 3) > 0);
}

/** host_name of a server_name extension body d[a, b). */
function serverName(d: Buffer, a: number, b: number): string {
  // server_name_list<2> of { name_type(1), host_name<2> }
  let p = a + 2;
  while (p + 3 <= b) {
    const type = d[p], len = d.readUInt16BE(p + 1);
    if (type === 0) return d.toString('latin1', p + 3, Math.min(b, p + 3 + len));
    p += 3 + len;
  }
  return '';
}

/** Protocols of an ALPN extension body d[a, b), comma-separated. */
function alpnList(d: Buffer, a: number, b: number): string {
  let out = '';
  for (let p = a + 2; p < b;) {
    const len = d[p];
    if (p + 1 + len > b) break;
    out += (out === '' ? '' : ',') + d.toString('latin1', p + 1, p + 1 + len);
    p += 1 + len;
  }
  return out;
}

export const tlsParser = new TlsParser();
