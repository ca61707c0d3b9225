// The contract every L7 protocol parser implements. Parsers are stateless objects; whatever a
// protocol must remember about a connection (e.g. HTTP's queue of request methods, to know that a
// response to HEAD has no body) lives in a per-flow state object the parser creates and the stage
// keeps. Parsers never throw on bad input: they return PARSE_INVALID and the stage counts it.

/** `check` answers: not this protocol, or a request / response of it. */
export const CHECK_NONE = 0;
export const CHECK_REQUEST = 1;
export const CHECK_RESPONSE = 2;
export type CheckResult = typeof CHECK_NONE | typeof CHECK_REQUEST | typeof CHECK_RESPONSE;

/**
 * `parse` returns the number of stream bytes consumed (> 0), or one of these. A consumed count
 * larger than the bytes given means "the message goes on for that many bytes: skip them" (a body
 * whose length is known, or Infinity for "until the connection closes").
 */
export const PARSE_NEED_MORE = 0;
/** Not a message of this protocol here: the stage drops its buffer and resynchronises. */
export const PARSE_INVALID = -1;
/** Emitted what could be read, but the message's end is unknown: resynchronise after it. */
export const PARSE_LOST = -2;

export type ResponseStatus = 'ok' | 'client_error' | 'server_error' | 'timeout' | 'unknown';

export type MessageKind = 'request' | 'response';

/** One parsed request or response, with the l7_flow_log fields its side carries. */
export interface L7Message {
  kind: MessageKind;
  version: string;
  requestType: string;
  requestDomain: string;
  requestResource: string;
  endpoint: string;
  /** undefined when the protocol carries no code in this message. */
  responseCode: number | undefined;
  responseStatus: ResponseStatus;
  responseException: string;
  responseResult: string;
  /** Bytes of the message as the protocol counts them (HTTP: Content-Length; DNS: message size). */
  length: number;
  /** Pairs a response with its request when the protocol has an id (DNS transaction id); -1 if none. */
  pairId: number;
  traceId: string;
  spanId: string;
  xRequestId: string;
  /**
   * A request that gets no response by design (MQTT QoS 0 PUBLISH, AMQP Basic.Publish, MongoDB
   * moreToCome): the stage reports it at once with response_status "ok" and no duration.
   */
  oneWay?: boolean;
  /**
   * The record's l7_protocol when it differs from the parser's name (the HTTP/2 parser reports
   * gRPC calls as "gRPC"); unset: the parser's name.
   */
  l7Protocol?: string;
}

export function newMessage(kind: MessageKind): L7Message {
  return {
    kind, version: '', requestType: '', requestDomain: '', requestResource: '', endpoint: '',
    responseCode: undefined, responseStatus: 'unknown', responseException: '', responseResult: '',
    length: 0, pairId: -1, traceId: '', spanId: '', xRequestId: '', oneWay: false,
  };
}

/** What a parser may know about the payload besides its bytes. */
export interface ParseContext {
  /** IANA protocol number: 6 (TCP) or 17 (UDP). */
  protocol: number;
  fromClient: boolean;
  serverPort: number;
  /**
   * The bytes given end where the capture cut the segment (payload shorter than on the wire), so
   * waiting for more will not complete a message: parse what is there.
   */
  truncated: boolean;
}

export type Emit = (msg: L7Message) => void;

export interface L7Parser<FlowState = unknown> {
  /** The l7_protocol name used in records ("HTTP", "DNS"). */
  readonly name: string;
  /** Responses pair with requests by `pairId` (true) or in order of arrival (false). */
  readonly pairsById: boolean;
  /** After this long without a response, a request is reported with status "timeout". */
  readonly sessionTimeoutUs: number;
  /**
   * Optional: inference tries this parser before a server's already known protocol (its check
   * must be strict: the HTTP/2 preface or an h2c upgrade request).
   */
  readonly inferFirst?: boolean;
  /** Which transports the protocol runs on. */
  readonly overTcp: boolean;
  readonly overUdp: boolean;
  /** Cheap: looks at the first bytes only. Inference from the payload, never from the port. */
  check(payload: Buffer, start: number, end: number, ctx: ParseContext): CheckResult;
  newFlowState(): FlowState;
  /** Forgets the partial message of one direction (after a gap in the stream). */
  resync(state: FlowState, fromClient: boolean): void;
  /**
   * Parses messages from `data[start, end)`, which starts at a message boundary of the direction
   * `ctx.fromClient`; calls `emit` per message. For UDP, one call per datagram.
   */
  parse(data: Buffer, start: number, end: number, ctx: ParseContext, state: FlowState, emit: Emit): number;
  /**
   * Optional: the flow ends (closed, or the end of the input); emit what the state still holds
   * (HTTP/2: a gRPC response whose trailers never came is reported with its HTTP status).
   */
  endFlow?(state: FlowState, emit: Emit): void;
}

/** Status classes that HTTP-like codes map to. */
export function statusFromHttpCode(code: number): ResponseStatus {
  if (code >= 400 && code < 500) return 'client_error';
  if (code >= 500 && code < 600) return 'server_error';
  if (code >= 100 && code < 400) return 'ok';
  return 'unknown';
}
