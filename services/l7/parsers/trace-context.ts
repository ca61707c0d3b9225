// Trace context carried in headers (HTTP/2, gRPC metadata): W3C traceparent, B3 (single `b3`
// header and x-b3-*), Jaeger uber-trace-id, SkyWalking sw8, and x-request-id. Header names are
// lower case (HTTP/2 requires it). The first header that gives an id wins.
import { L7Message } from '../parser';

/** Fills msg.traceId / spanId / xRequestId from one header; returns whether it was one of them. */
export function traceHeader(msg: L7Message, name: string, value: string): boolean {
  switch (name) {
    case 'traceparent': {
      // version "-" trace-id (32 hex) "-" parent-id (16 hex) "-" flags
      if (value.length >= 55 && value[2] === '-' && value[35] === '-' && value[52] === '-') {
        setIds(msg, value.slice(3, 35), value.slice(36, 52));
      }
      return true;
    }
    case 'b3': {
      // trace-id "-" span-id ["-" sampled ["-" parent]]; a lone "0"/"1"/"d" is only a decision.
      const a = value.indexOf('-');
      if (a > 0) {
        const b = value.indexOf('-', a + 1);
        setIds(msg, value.slice(0, a), value.slice(a + 1, b < 0 ? value.length : b));
      }
      return true;
    }
    case 'x-b3-traceid': if (msg.traceId === '') msg.traceId = value; return true;
    case 'x-b3-spanid': if (msg.spanId === '') msg.spanId = value; return true;
    case 'uber-trace-id': {
      // trace-id ":" span-id ":" parent-span-id ":" flags (":" may be sent as "%3A")
      const v = value.includes('%3A') || value.includes('%3a') ? value.replace(/%3a/gi, ':') : value;
      const parts = v.split(':');
      if (parts.length >= 2) setIds(msg, parts[0], parts[1]);
      return true;
    }
    case 'sw8': {
      // sample "-" base64(trace-id) "-" base64(segment-id) "-" span-id "-" ...
      const parts = value.split('-');
      if (parts.length >= 4) setIds(msg, fromBase64(parts[1]), `${fromBase64(parts[2])}-${parts[3]}`);
      return true;
    }
    case 'x-request-id': if (msg.xRequestId === '') msg.xRequestId = value; return true;
    default: return false;
  }
}

function setIds(msg: L7Message, trace: string, span: string): void {
  if (msg.traceId === '') msg.traceId = trace;
  if (msg.spanId === '') msg.spanId = span;
}

function fromBase64(s: string): string {
  return Buffer.from(s, 'base64').toString('latin1');
}
