// `flowtap query "<SQL>"`: runs one read-only statement on the embedded store, while the agent
// writes (WAL mode lets readers and the writer work at once).
import fs from 'node:fs';
import { loadConfig } from '../lib/config';
import { openStore } from '../services/sender/sqlite-sink';
import { sqlitePath } from '../services/sender/sinks';

export const QUERY_USAGE = `usage:
  flowtap query "<SQL>" [--db <file>] [--format table|jsonl|csv]
      read-only SQL on the embedded store (default: sender.sqlite.path of the config,
      <output_dir>/flowtap.db); tables l4_flow_log, l7_flow_log, metrics (docs/storage.md)
`;

export class QueryError extends Error {}

export function defaultStorePath(): string {
  return sqlitePath(loadConfig().sender);
}

export type Cell = string | number | bigint | null | Buffer;

/** Runs `sql` read-only; refuses statements that would write. */
export function runReadOnly(file: string, sql: string): { columns: string[]; rows: Cell[][] } {
  if (!fs.existsSync(file)) throw new QueryError(`${file}: no such store (has the sender run with the sqlite sink?)`);
  const db = openStore(file, true);
  try {
    let stmt;
    try {
      stmt = db.prepare(sql);
    } catch (err) {
      throw new QueryError((err as Error).message);
    }
    if (!stmt.reader) throw new QueryError('only statements that return rows (SELECT, WITH, PRAGMA ...) are allowed');
    stmt.raw(true);
    const columns = stmt.columns().map((c) => c.name);
    return { columns, rows: stmt.all() as Cell[][] };
  } finally {
    db.close();
  }
}

const show = (v: Cell): string => (v === null ? 'NULL' : Buffer.isBuffer(v) ? v.toString('hex') : String(v));

export function formatTable(columns: string[], rows: Cell[][]): string {
  const widths = columns.map((c, i) => Math.min(60, Math.max(c.length, ...rows.map((r) => show(r[i]).length))));
  const line = (cells: string[]) => cells.map((c, i) => (c.length > widths[i] ? c.slice(0, widths[i] - 1) + '…' : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map((r) => line(r.map(show)))].join('\n') + '\n';
}

function csvCell(v: Cell): string {
  const s = v === null ? '' : show(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function runQuery(argv: string[]): void {
  const args = [...argv];
  let file: string | undefined;
  let format = 'table';
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--db' || args[i] === '--format') {
      const v = args[i + 1];
      if (v === undefined) throw new QueryError(`${args[i]} needs a value\n${QUERY_USAGE}`);
      if (args[i] === '--db') file = v;
      else format = v;
      args.splice(i--, 2);
    }
  }
  if (args.length !== 1 || !['table', 'jsonl', 'csv'].includes(format)) throw new QueryError(QUERY_USAGE);
  const { columns, rows } = runReadOnly(file ?? defaultStorePath(), args[0]);
  if (format === 'jsonl') {
    for (const r of rows) process.stdout.write(JSON.stringify(Object.fromEntries(columns.map((c, i) => [c, typeof r[i] === 'bigint' ? String(r[i]) : r[i]]))) + '\n');
  } else if (format === 'csv') {
    process.stdout.write([columns.map(csvCell).join(','), ...rows.map((r) => r.map(csvCell).join(','))].join('\n') + '\n');
  } else {
    process.stdout.write(formatTable(columns, rows));
    process.stdout.write(`(${rows.length} row${rows.length === 1 ? '' : 's'})\n`);
  }
}
