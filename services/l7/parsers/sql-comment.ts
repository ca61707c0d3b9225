// Trace context in SQL comments, as sqlcommenter-style libraries write it:
//   SELECT ... /*traceparent='00-<trace>-<span>-01',x-request-id='abc'*/
// Values are URL-encoded. Only read when the SQL holds a comment (one indexOf otherwise).
import { L7Message } from '../parser';
import { traceHeader } from './trace-context';

const PAIR = /([A-Za-z0-9_.-]+)\s*=\s*'([^']*)'/g;

/** Fills msg.traceId / spanId / xRequestId from the SQL's comments, if they carry them. */
export function traceFromSqlComment(msg: L7Message, sql: string): void {
  let from = sql.indexOf('/*');
  while (from >= 0) {
    const to = sql.indexOf('*/', from + 2);
    const body = sql.slice(from + 2, to < 0 ? sql.length : to);
    for (const m of body.matchAll(PAIR)) {
      let value = m[2];
      if (value.includes('%')) {
        try { value = decodeURIComponent(value); } catch { /* left as sent */ }
      }
      traceHeader(msg, m[1].toLowerCase(), value);
    }
    if (to < 0) return;
    from = sql.indexOf('/*', to + 2);
  }
}
