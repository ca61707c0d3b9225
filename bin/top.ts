// `flowtap top`: a terminal view, refreshed every second, of the last minute of data in the
// embedded store: top talkers (L4 bytes), slowest endpoints and most failing endpoints (L7).
// "The last minute" is measured back from the newest row, so a store filled by a replay of an
// old capture shows its last minute, and a live agent's is the last minute of wall time.
import fs from 'node:fs';
import type Database from 'better-sqlite3';
import { openStore } from '../services/sender/sqlite-sink';
import { defaultStorePath, formatTable, QueryError, type Cell } from './query';

export const TOP_USAGE = `usage:
  flowtap top [--db <file>] [--window <seconds>] [--limit <n>] [--once]
      top talkers, slowest and most failing endpoints of the last minute, refreshed every second
`;

export interface TopView {
  talkers: { columns: string[]; rows: Cell[][] };
  slowest: { columns: string[]; rows: Cell[][] };
  failing: { columns: string[]; rows: Cell[][] };
}

function rows(db: Database.Database, sql: string, params: unknown[]): { columns: string[]; rows: Cell[][] } {
  const stmt = db.prepare(sql).raw(true);
  return { columns: stmt.columns().map((c) => c.name), rows: stmt.all(...params) as Cell[][] };
}

export function topSnapshot(db: Database.Database, windowSeconds = 60, limit = 10): TopView {
  const w = windowSeconds * 1e6;
  const talkers = rows(db, `
    WITH last AS (SELECT max(end_time) AS t FROM l4_flow_log)
    SELECT ip_0 AS client, ip_1 AS server, server_port AS port, protocol AS proto,
           sum(byte_tx) AS bytes_tx, sum(byte_rx) AS bytes_rx, sum(byte_tx + byte_rx) AS bytes,
           count(DISTINCT flow_id) AS flows
    FROM l4_flow_log, last WHERE end_time > last.t - ?
    GROUP BY ip_0, ip_1, server_port, protocol ORDER BY bytes DESC, client, server LIMIT ?`, [w, limit]);
  const endpoint = `l7_protocol AS proto, ip_1 AS server, server_port AS port, endpoint`;
  const recent = `WITH last AS (SELECT max(start_time) AS t FROM l7_flow_log)`;
  const slowest = rows(db, `${recent}
    SELECT ${endpoint}, count(*) AS requests, CAST(avg(response_duration) AS INTEGER) AS avg_us,
           max(response_duration) AS max_us
    FROM l7_flow_log, last WHERE start_time > last.t - ?
    GROUP BY l7_protocol, ip_1, server_port, endpoint ORDER BY avg_us DESC, requests DESC LIMIT ?`, [w, limit]);
  const failing = rows(db, `${recent}
    SELECT ${endpoint}, count(*) AS requests,
           sum(response_status IN ('client_error', 'server_error', 'timeout')) AS failed,
           round(100.0 * sum(response_status IN ('client_error', 'server_error', 'timeout')) / count(*), 1) AS failed_pct
    FROM l7_flow_log, last WHERE start_time > last.t - ?
    GROUP BY l7_protocol, ip_1, server_port, endpoint HAVING failed > 0
    ORDER BY failed DESC, failed_pct DESC LIMIT ?`, [w, limit]);
  return { talkers, slowest, failing };
}

export function renderTop(view: TopView, file: string, windowSeconds: number): string {
  const section = (title: string, t: { columns: string[]; rows: Cell[][] }) =>
    `${title}\n${t.rows.length ? formatTable(t.columns, t.rows) : '(none)\n'}`;
  return `flowtap top  ${file}  last ${windowSeconds} s of data  ${new Date().toISOString()}\n\n` +
    section('Top talkers (L4 bytes)', view.talkers) + '\n' +
    section('Slowest endpoints (L7 response time, µs)', view.slowest) + '\n' +
    section('Most failing endpoints (L7)', view.failing);
}

export async function runTop(argv: string[]): Promise<void> {
  const args = [...argv];
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    if (v === undefined) throw new QueryError(`${name} needs a value\n${TOP_USAGE}`);
    args.splice(i, 2);
    return v;
  };
  const file = opt('--db') ?? defaultStorePath();
  const windowSeconds = Number(opt('--window') ?? 60);
  const limit = Number(opt('--limit') ?? 10);
  const onceAt = args.indexOf('--once');
  if (onceAt >= 0) args.splice(onceAt, 1);
  if (args.length > 0 || !(windowSeconds > 0) || !(limit > 0)) throw new QueryError(TOP_USAGE);
  if (!fs.existsSync(file)) throw new QueryError(`${file}: no such store (has the sender run with the sqlite sink?)`);
  const db = openStore(file, true);
  const draw = () => renderTop(topSnapshot(db, windowSeconds, limit), file, windowSeconds);
  if (onceAt >= 0 || !process.stdout.isTTY) {
    process.stdout.write(draw());
    db.close();
    return;
  }
  const paint = () => process.stdout.write('\x1b[2J\x1b[H' + draw());
  paint();
  const timer = setInterval(paint, 1000);
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
  clearInterval(timer);
  db.close();
  process.stdout.write('\n');
}
