// MQTT 3.1, 3.1.1 and 5.0 (OASIS specs). A packet is a fixed header (type and flags, then the
// remaining length as a 1-4 byte varint) and a body. One `parse` call reads one packet.
//
// Pairing is by id: packets that carry a packet identifier pair by it (PUBLISH QoS 1 -> PUBACK,
// QoS 2 -> PUBREC, then PUBREL -> PUBCOMP, SUBSCRIBE -> SUBACK, UNSUBSCRIBE -> UNSUBACK); CONNECT
// -> CONNACK and PINGREQ -> PINGRESP get fixed ids of their own (several pings in a row answer in
// order). Identifiers are per sender, so the id also says which side asked. QoS 0 PUBLISH,
// DISCONNECT and AUTH get no answer: they are one-way requests.
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Parser, L7Message, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, ResponseStatus, newMessage,
} from '../parser';
import { traceHeader } from './trace-context';

const CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, PUBREC = 5, PUBREL = 6, PUBCOMP = 7;
const SUBSCRIBE = 8, SUBACK = 9, UNSUBSCRIBE = 10, UNSUBACK = 11, PINGREQ = 12, PINGRESP = 13;
const DISCONNECT = 14, AUTH = 15;

export const MQTT_TYPE_NAMES = [
  '', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC', 'PUBREL', 'PUBCOMP', 'SUBSCRIBE', 'SUBACK',
  'UNSUBSCRIBE', 'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'AUTH',
];

/** Exchanges an id belongs to (so that a PUBLISH id and a PUBREL id never meet). */
const X_PUBLISH = 1, X_PUBREL = 2, X_SUBSCRIBE = 3, X_UNSUBSCRIBE = 4, X_CONNECT = 5, X_PING = 6;

/** Topic filters listed for one SUBSCRIBE / UNSUBSCRIBE at most. */
const MAX_TOPICS = 16;
export const MQTT_MAX_PACKET = 1 << 28;
/** Packet start bytes wanted before a long packet is read. */
const MIN_HEAD = 256;

export class MqttFlowState {
  /** Protocol level from CONNECT: 3 (3.1), 4 (3.1.1), 5 (5.0); 0 while unknown. */
  level = 0;
}

/** Fixed header flags each type must have (PUBLISH: any but QoS 3); -1 = any. */
const REQUIRED_FLAGS = [-2, 0, 0, -1, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, 0];

/** Remaining length at `p` (1-4 bytes): sets `hdrLen`; -1 incomplete, -2 invalid. */
let hdrLen = 0;
function remainingLength(d: Buffer, p: number, end: number): number {
  let v = 0, mul = 1;
  for (let i = 0; i < 4; i++) {
    if (p + 1 + i >= end) return -1;
    const b = d[p + 1 + i];
    v += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) { hdrLen = 2 + i; return v; }
    mul *= 128;
  }
  return -2;
}

function validFirstByte(b: number): boolean {
  const type = b >> 4, flags = b & 15;
  const req = REQUIRED_FLAGS[type];
  if (req === -2) return false;
  if (req === -1) return (flags & 6) !== 6;
  return flags === req;
}

function statusOfConnack(code: number, level: number): ResponseStatus {
  if (code === 0) return 'ok';
  if (level === 5) {
    // 0x80 unspecified, 0x83 implementation specific, 0x88 server unavailable, 0x89 busy, 0x97 quota.
    return code === 0x80 || code === 0x83 || code === 0x88 || code === 0x89 || code === 0x97 ? 'server_error' : 'client_error';
  }
  return code === 3 ? 'server_error' : 'client_error'; // 3: server unavailable
}

/** Cursor over one packet's body; reads past the end set `bad`. */
class Body {
  d: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;
  bad = false;
  reset(d: Buffer, pos: number, end: number): void { this.d = d; this.pos = pos; this.end = end; this.bad = false; }
  u8(): number { if (this.pos >= this.end) { this.bad = true; return 0; } return this.d[this.pos++]; }
  u16(): number { if (this.pos + 2 > this.end) { this.bad = true; return 0; } const v = this.d.readUInt16BE(this.pos); this.pos += 2; return v; }
  str(): string {
    const n = this.u16();
    if (this.bad || n === 0) return '';
    if (this.pos + n > this.end) { this.bad = true; return ''; }
    const s = this.d.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  skip(n: number): void { if (this.pos + n > this.end) { this.bad = true; this.pos = this.end; } else this.pos += n; }
  varint(): number {
    let v = 0, mul = 1;
    for (let i = 0; i < 4; i++) {
      const b = this.u8();
      if (this.bad) return 0;
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 128;
    }
    this.bad = true;
    return 0;
  }
  /** Skips an MQTT 5 property block. */
  properties(): void { this.skip(this.varint()); }

  /**
   * Reads an MQTT 5 property block: user properties that carry trace context (traceparent, b3,
   * sw8, ..., x-request-id) and the reason string go to `msg`; the rest is skipped by its type.
   */
  readProperties(msg: L7Message): void {
    const n = this.varint();
    const end = this.pos + n;
    if (this.bad || end > this.end) { this.skip(n); return; }
    while (this.pos < end && !this.bad) {
      const id = this.varint();
      switch (id) {
        case 0x26: { // user property: a UTF-8 string pair
          const name = this.str(), value = this.str();
          if (!this.bad) traceHeader(msg, name.toLowerCase(), value);
          break;
        }
        case 0x1f: msg.responseException = this.str(); break; // reason string
        case 0x01: case 0x17: case 0x19: case 0x24: case 0x25: case 0x28: case 0x29: case 0x2a: this.skip(1); break;
        case 0x13: case 0x21: case 0x22: case 0x23: this.skip(2); break;
        case 0x02: case 0x11: case 0x18: case 0x27: this.skip(4); break;
        case 0x0b: this.varint(); break;
        case 0x03: case 0x08: case 0x09: case 0x12: case 0x15: case 0x16: case 0x1a: case 0x1c: this.skip(this.u16()); break;
        default: this.pos = end; // unknown property: the rest of the block cannot be walked
      }
    }
    this.pos = end;
  }
}

export class MqttParser implements L7Parser<MqttFlowState> {
  readonly name = 'MQTT';
  readonly pairsById = true;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  private readonly b = new Body();

  /**
   * A CONNECT naming the protocol, or a segment that is exactly a run of well-formed packets
   * (mid-stream start). Single bytes prove little, so PINGREQ/PINGRESP alone are accepted only
   * as the whole segment.
   */
  check(d: Buffer, start: number, end: number, _ctx: ParseContext): CheckResult {
    if (end - start < 2 || !validFirstByte(d[start])) return CHECK_NONE;
    const type = d[start] >> 4;
    if (type === CONNECT) {
      const n = remainingLength(d, start, end);
      if (n < 10) return CHECK_NONE;
      const p = start + hdrLen;
      if (p + 6 > end) return CHECK_NONE;
      const nameLen = d.readUInt16BE(p);
      if (nameLen === 4 && d.toString('latin1', p + 2, p + 6) === 'MQTT') return CHECK_REQUEST;
      if (nameLen === 6 && p + 8 <= end && d.toString('latin1', p + 2, p + 8) === 'MQIsdp') return CHECK_REQUEST;
      return CHECK_NONE;
    }
    let p = start, packets = 0;
    while (p < end && packets < 64) {
      if (!validFirstByte(d[p])) return CHECK_NONE;
      const n = remainingLength(d, p, end);
      if (n < 0) return CHECK_NONE;
      const t = d[p] >> 4;
      // Types with a fixed size must have it.
      if ((t === PINGREQ || t === PINGRESP) && n !== 0) return CHECK_NONE;
      if ((t === CONNACK || t === PUBACK || t === PUBREC || t === PUBREL || t === PUBCOMP || t === UNSUBACK) && n < 2) return CHECK_NONE;
      if ((t === SUBSCRIBE || t === UNSUBSCRIBE || t === SUBACK) && n < 3) return CHECK_NONE;
      if (t === PUBLISH && n < 3) return CHECK_NONE;
      p += hdrLen + n;
      packets++;
    }
    if (p !== end) return CHECK_NONE;
    return isResponseType(type) ? CHECK_RESPONSE : CHECK_REQUEST;
  }

  newFlowState(): MqttFlowState { return new MqttFlowState(); }

  resync(_state: MqttFlowState, _fromClient: boolean): void {
    // Packet ids stay valid across a gap; the protocol level stays known.
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: MqttFlowState, emit: Emit): number {
    if (end - start < 2) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const first = d[start];
    if (!validFirstByte(first)) return PARSE_INVALID;
    const n = remainingLength(d, start, end);
    if (n === -2) return PARSE_INVALID;
    if (n === -1) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const total = hdrLen + n;
    if (end - start < total && end - start < MIN_HEAD && !ctx.truncated) return PARSE_NEED_MORE;
    const b = this.b;
    b.reset(d, start + hdrLen, Math.min(end, start + total));
    const type = first >> 4;
    const msg = newMessage(isResponseType(type) ? 'response' : 'request');
    msg.requestType = MQTT_TYPE_NAMES[type];
    msg.length = n;
    if (st.level !== 0) msg.version = st.level === 5 ? '5.0' : st.level === 4 ? '3.1.1' : '3.1';
    // Ids are per sender: the asking side is this packet's side for a request, the other for a response.
    const askedByClient = msg.kind === 'request' ? ctx.fromClient : !ctx.fromClient;
    const side = askedByClient ? 0 : 1 << 16;
    const v5 = st.level === 5;
    switch (type) {
      case CONNECT: {
        b.str(); // protocol name
        st.level = b.u8();
        msg.version = st.level === 5 ? '5.0' : st.level === 4 ? '3.1.1' : st.level === 3 ? '3.1' : String(st.level);
        b.skip(3); // connect flags, keep alive
        if (st.level === 5) b.properties();
        msg.requestDomain = b.str(); // client identifier
        msg.pairId = pairId(X_CONNECT, side, 0);
        break;
      }
      case CONNACK: {
        b.u8(); // acknowledge flags
        const code = b.u8();
        if (b.bad) return PARSE_INVALID;
        msg.responseCode = code;
        msg.responseStatus = statusOfConnack(code, st.level);
        if (st.level === 5 && b.pos < b.end) b.readProperties(msg);
        msg.pairId = pairId(X_CONNECT, side, 0);
        break;
      }
      case PUBLISH: {
        const qos = (first >> 1) & 3;
        msg.requestResource = b.str();
        if (qos === 0) msg.oneWay = true;
        else msg.pairId = pairId(X_PUBLISH, side, b.u16());
        if (v5 && !b.bad) b.readProperties(msg);
        break;
      }
      case PUBACK: case PUBREC: case PUBREL: case PUBCOMP: {
        const id = b.u16();
        if (b.bad) return PARSE_INVALID;
        msg.pairId = pairId(type === PUBREL || type === PUBCOMP ? X_PUBREL : X_PUBLISH, side, id);
        if (msg.kind === 'response') this.reasonCode(msg, n > 2 ? b.u8() : -1);
        if (v5 && n > 3) b.readProperties(msg);
        break;
      }
      case SUBSCRIBE: case UNSUBSCRIBE: {
        msg.pairId = pairId(type === SUBSCRIBE ? X_SUBSCRIBE : X_UNSUBSCRIBE, side, b.u16());
        if (v5) b.readProperties(msg);
        let topics = '';
        for (let i = 0; i < MAX_TOPICS && b.pos < b.end && !b.bad; i++) {
          const t = b.str();
          if (b.bad) break;
          topics = i === 0 ? t : topics + ',' + t;
          if (type === SUBSCRIBE) b.u8(); // requested QoS / options
        }
        msg.requestResource = topics;
        break;
      }
      case SUBACK: case UNSUBACK: {
        msg.pairId = pairId(type === SUBACK ? X_SUBSCRIBE : X_UNSUBSCRIBE, side, b.u16());
        if (b.bad) return PARSE_INVALID;
        if (v5) b.readProperties(msg);
        // 3.1.1 UNSUBACK has no payload; otherwise the first granted QoS / reason code.
        if (b.pos < b.end) this.reasonCode(msg, b.u8());
        else msg.responseStatus = 'ok';
        break;
      }
      case PINGREQ: case PINGRESP:
        msg.pairId = pairId(X_PING, side, 0);
        if (msg.kind === 'response') msg.responseStatus = 'ok';
        break;
      case DISCONNECT: case AUTH:
        msg.oneWay = true;
        if (v5 && n > 0) msg.responseResult = String(b.u8());
        break;
      default:
        return PARSE_INVALID;
    }
    emit(msg);
    return total;
  }

  /** MQTT 5 reason code / SUBACK return code: below 0x80 is success; -1: none sent (success). */
  private reasonCode(msg: L7Message, code: number): void {
    if (code < 0) { msg.responseStatus = 'ok'; return; }
    msg.responseCode = code;
    msg.responseStatus = code < 0x80 ? 'ok' : code === 0x80 || code === 0x83 || code === 0x97 ? 'server_error' : 'client_error';
  }
}

function isResponseType(type: number): boolean {
  return type === CONNACK || type === PUBACK || type === PUBREC || type === PUBCOMP ||
    type === SUBACK || type === UNSUBACK || type === PINGRESP;
}

function pairId(exchange: number, side: number, id: number): number {
  return exchange * (1 << 17) + side + id;
}

export const mqttParser = new MqttParser();
