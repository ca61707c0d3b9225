// The embedded store: one SQLite file (better-sqlite3) in WAL mode, so `flowtap query` and
// `flowtap top` read while the sender writes. One table per record type with the columns of
// docs/schema.md, an index on time, one transaction per batch, retention by age and by size.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { PROFILE_TABLE, RECORD_TYPES, TABLE_NAMES, profileColumns, storeTables, tableColumns, type Column, type RecordType } from './columns';
import { countDrop, type ProfileSinkBatch, type Sink, type SinkBatch } from './sink';

export const quoteIdent = (name: string): string => `"${name.replace(/"/g, '""')}"`;

function sqlType(c: Column): string {
  const t = c.kind === 'text' ? 'TEXT' : 'INTEGER';
  return c.nullable ? t : `${t} NOT NULL`;
}

/** Opens (and for a writer, creates) the store. Readers never create or change anything. */
export function openStore(file: string, readonly = false): Database.Database {
  if (readonly) {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    return db;
  }
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode: a crash loses no committed transaction, a power cut may lose the last few.
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  for (const { table, columns: tableCols, time } of storeTables()) {
    const cols = tableCols.map((c) => `${quoteIdent(c.name)} ${sqlType(c)}`).join(', ');
    db.exec(`CREATE TABLE IF NOT EXISTS ${table} (${cols})`);
    // A field added to the schema since the file was made becomes a column; old rows get 0/''/NULL.
    const have = new Set((db.prepare(`PRAGMA table_info(${table})`).all() as Array<{ name: string }>).map((c) => c.name));
    for (const c of tableCols) {
      if (have.has(c.name)) continue;
      const fill = c.nullable ? '' : c.kind === 'text' ? ` DEFAULT ''` : ' DEFAULT 0';
      db.exec(`ALTER TABLE ${table} ADD COLUMN ${quoteIdent(c.name)} ${sqlType(c)}${fill}`);
    }
    db.exec(`CREATE INDEX IF NOT EXISTS ${table}_by_time ON ${table} (${quoteIdent(time)})`);
  }
  return db;
}

export interface SqliteOptions {
  retentionHours?: number;
  maxBytes?: number;
  /** Transactions between retention checks. */
  retentionEvery?: number;
}

export class SqliteSink implements Sink {
  readonly name = 'sqlite';
  readonly drops = new Map<string, number>();
  /** Rows deleted by retention, by reason (age, size): not drops, the store working as configured. */
  readonly evicted = { age: 0, size: 0 };
  readonly written: Record<RecordType, number> = { l4: 0, l7: 0, metrics: 0 };
  readonly db: Database.Database;
  private readonly inserts = new Map<RecordType, (rows: ReadonlyArray<Record<string, unknown>>) => void>();
  private readonly columnNames: Record<RecordType, string[]>;
  private readonly values: Record<RecordType, unknown[]>;
  private readonly insertProfile: (rows: ReadonlyArray<Record<string, unknown>>) => void;
  profileRows = 0;
  private transactions = 0;
  private readonly retentionEvery: number;

  constructor(readonly file: string, private readonly options: SqliteOptions = {}) {
    this.db = openStore(file);
    this.retentionEvery = options.retentionEvery ?? 64;
    const columns = tableColumns();
    this.columnNames = { l4: [], l7: [], metrics: [] };
    this.values = { l4: [], l7: [], metrics: [] };
    for (const type of RECORD_TYPES) {
      const names = columns[type].map((c) => c.name);
      this.columnNames[type] = names;
      // One reused array of bound values per table: no object per row beyond the row itself.
      const values = (this.values[type] = new Array<unknown>(names.length).fill(null));
      const stmt = this.db.prepare(
        `INSERT INTO ${TABLE_NAMES[type]} (${names.map(quoteIdent).join(', ')}) VALUES (${names.map(() => '?').join(', ')})`,
      );
      this.inserts.set(type, this.db.transaction((rows: ReadonlyArray<Record<string, unknown>>) => {
        for (const row of rows) {
          for (let i = 0; i < names.length; i++) {
            const v = row[names[i]];
            values[i] = v === undefined ? null : typeof v === 'boolean' ? (v ? 1 : 0) : v;
          }
          stmt.run(values);
        }
      }));
    }
    this.insertProfile = this.insertMany(PROFILE_TABLE, profileColumns().map((c) => c.name));
  }

  private insertMany(table: string, names: string[]): (rows: ReadonlyArray<Record<string, unknown>>) => void {
    const values = new Array<unknown>(names.length).fill(null);
    const stmt = this.db.prepare(`INSERT INTO ${table} (${names.map(quoteIdent).join(', ')}) VALUES (${names.map(() => '?').join(', ')})`);
    return this.db.transaction((rows: ReadonlyArray<Record<string, unknown>>) => {
      for (const row of rows) {
        for (let i = 0; i < names.length; i++) values[i] = row[names[i]] ?? null;
        stmt.run(values);
      }
    });
  }

  /** Inserts one interval's profile rows in one transaction; a failure counts them as drops. */
  async writeProfile(batch: ProfileSinkBatch): Promise<void> {
    if (batch.count === 0) return;
    const rows = batch.rows();
    try {
      this.insertProfile(rows);
      this.profileRows += rows.length;
    } catch (err) {
      const code = ((err as { code?: string }).code ?? 'SQLITE_ERROR').toLowerCase();
      countDrop(this.drops, code.startsWith('sqlite_') ? `${code}_profile` : `sqlite_${code}_profile`, rows.length);
      return;
    }
    // Profile transactions count toward retention too: a collector may get profiles for a while alone.
    if (++this.transactions % this.retentionEvery === 0) this.applyRetention();
  }

  async write(batch: SinkBatch): Promise<void> {
    this.writeRows(batch.type, batch.rows());
  }

  /** Inserts rows in one transaction; a failure drops the batch and counts its rows. */
  writeRows(type: RecordType, rows: ReadonlyArray<Record<string, unknown>>): void {
    if (rows.length === 0) return;
    try {
      this.inserts.get(type)!(rows);
      this.written[type] += rows.length;
    } catch (err) {
      // SQLITE_FULL -> sqlite_full, ...
      const code = ((err as { code?: string }).code ?? 'SQLITE_ERROR').toLowerCase();
      countDrop(this.drops, code.startsWith('sqlite_') ? code : `sqlite_${code}`, rows.length);
      return;
    }
    if (++this.transactions % this.retentionEvery === 0) this.applyRetention();
  }

  /** Bytes in pages that hold data (freed pages are reused, so this is what grows). */
  usedBytes(): number {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const pages = this.db.pragma('page_count', { simple: true }) as number;
    const free = this.db.pragma('freelist_count', { simple: true }) as number;
    return (pages - free) * pageSize;
  }

  /**
   * Deletes rows older than the retention age, measured in data time from the newest row of
   * each table (so a replay of an old capture keeps its rows), then the oldest tenth of every
   * table while the used size is over the bound.
   */
  applyRetention(): void {
    const { retentionHours, maxBytes } = this.options;
    if (retentionHours) {
      for (const { table: t, time, unitSeconds } of storeTables()) {
        const col = quoteIdent(time);
        const newest = (this.db.prepare(`SELECT max(${col}) AS m FROM ${t}`).get() as { m: number | null }).m;
        if (newest === null) continue;
        const cutoff = newest - (retentionHours * 3600) / unitSeconds;
        this.evicted.age += this.db.prepare(`DELETE FROM ${t} WHERE ${col} < ?`).run(cutoff).changes;
      }
    }
    if (maxBytes) {
      for (let round = 0; round < 20 && this.usedBytes() > maxBytes; round++) {
        let deleted = 0;
        for (const { table: t, time } of storeTables()) {
          const n = Math.ceil(((this.db.prepare(`SELECT count(*) AS n FROM ${t}`).get() as { n: number }).n) / 10);
          if (n === 0) continue;
          deleted += this.db.prepare(
            `DELETE FROM ${t} WHERE rowid IN (SELECT rowid FROM ${t} ORDER BY ${quoteIdent(time)} LIMIT ?)`,
          ).run(n).changes;
        }
        this.evicted.size += deleted;
        if (deleted === 0) break;
      }
    }
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    if (!this.db.open) return;
    this.applyRetention();
    this.db.close();
  }
}
