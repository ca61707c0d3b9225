// Reading the stores back in the shape of the JSON lines, so a test can compare them exactly.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { TABLE_NAMES, tableColumns, type RecordType } from '../../services/sender/columns';
import { JSONL_FILES } from '../../services/sender/jsonl-sink';

export type Json = Record<string, unknown>;

export function readJsonlText(dir: string, type: RecordType): string[] {
  const file = path.join(dir, JSONL_FILES[type]);
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
}

/** A stored row as its JSON line: booleans back from 0/1; metric columns the row's table lacks left out. */
export function rowToJson(type: RecordType, row: Json): Json {
  const out: Json = {};
  for (const c of tableColumns()[type]) {
    let v = row[c.name];
    if (type === 'metrics' && v === null) continue;
    if (c.kind === 'bool' && v !== null) v = v === 1 || v === '1' || v === true;
    if (c.kind === 'int' && typeof v === 'string') v = Number(v); // ClickHouse quotes 64-bit ints
    out[c.name] = v;
  }
  return out;
}

export function readSqlite(file: string, type: RecordType): Json[] {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`SELECT * FROM ${TABLE_NAMES[type]} ORDER BY rowid`).all() as Json[]).map((r) => rowToJson(type, r));
  } finally {
    db.close();
  }
}

/** Rows in a canonical order, to compare stores that do not keep insertion order. */
export function canonical(rows: Json[]): string[] {
  return rows.map((r) => JSON.stringify(Object.keys(r).sort().map((k) => [k, r[k]]))).sort();
}
