// ClickHouse over its HTTP interface: tables created at start, rows buffered per table and
// inserted in batches as JSONEachRow. The DDL keeps to what old servers (Debian's 18.16)
// understand - MergeTree with PARTITION BY/ORDER BY, Nullable - and suits current ones too;
// on a cluster, point `url` at a node and put Distributed tables over these. Profiles are one
// more table; their drops carry the suffix _profile (rows of the other tables have none).
import { storeTables, type Column, type RecordType, type StoreTable, type TableKey } from './columns';
import { countDrop, type ProfileSinkBatch, type Row, type Sink, type SinkBatch } from './sink';

export interface ClickHouseOptions {
  url: string;
  database: string;
  user: string;
  password: string;
  batchRows: number;
  flushIntervalMs: number;
  /** Rows buffered per table at most while inserts fail; past it, rows are dropped and counted. */
  maxBufferedRows?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

function chType(c: Column): string {
  const t = c.kind === 'text' ? 'String' : c.kind === 'bool' ? 'UInt8' : `${c.signed ? 'Int' : 'UInt'}${c.bits}`;
  return c.nullable ? `Nullable(${t})` : t;
}

function storeTable(key: TableKey): StoreTable {
  return storeTables().find((t) => t.key === key)!;
}

export function createTableSql(database: string, key: TableKey): string {
  const { table, columns, time: timeColumn, unitSeconds } = storeTable(key);
  const cols = columns.map((c) => `\`${c.name}\` ${chType(c)}`).join(', ');
  const time = `\`${timeColumn}\``;
  const seconds = unitSeconds === 1 ? time : `intDiv(${time}, 1000000)`;
  return `CREATE TABLE IF NOT EXISTS ${database}.${table} (${cols}) ` +
    `ENGINE = MergeTree() PARTITION BY toYYYYMMDD(toDateTime(${seconds})) ORDER BY (${time})`;
}

/** A drop reason for rows of `key`: profile drops are told apart by a suffix. */
const dropReason = (reason: string, key: TableKey): string => (key === 'profile' ? `${reason}_profile` : reason);

/** JSONEachRow wants 0/1 for UInt8. */
const boolsAsInts = (_key: string, v: unknown): unknown => (typeof v === 'boolean' ? (v ? 1 : 0) : v);

export class ClickHouseClient {
  constructor(private readonly opts: Pick<ClickHouseOptions, 'url' | 'user' | 'password'>) {}

  /** Runs one statement; `body` follows the query (INSERT data). Resolves to the response text. */
  async query(sql: string, body?: string, settings: Record<string, string | number> = {}): Promise<string> {
    const url = new URL(this.opts.url);
    url.searchParams.set('user', this.opts.user);
    if (this.opts.password) url.searchParams.set('password', this.opts.password);
    for (const [k, v] of Object.entries(settings)) url.searchParams.set(k, String(v));
    let res: Response;
    if (body === undefined) {
      res = await fetch(url, { method: 'POST', body: sql });
    } else {
      url.searchParams.set('query', sql);
      res = await fetch(url, { method: 'POST', body });
    }
    const text = await res.text();
    if (!res.ok) throw new Error(`ClickHouse ${res.status}: ${text.slice(0, 300)}`);
    return text;
  }
}

export class ClickHouseSink implements Sink {
  readonly name = 'clickhouse';
  readonly drops = new Map<string, number>();
  readonly written: Record<RecordType, number> = { l4: 0, l7: 0, metrics: 0 };
  readonly client: ClickHouseClient;
  profileRows = 0;
  /** JSON lines waiting for an INSERT, per table. */
  private readonly buffers: Record<TableKey, string[]> = { l4: [], l7: [], metrics: [], profile: [] };
  private tablesReady = false;
  private flushing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private readonly maxBuffered: number;

  constructor(private readonly opts: ClickHouseOptions) {
    this.client = new ClickHouseClient(opts);
    this.maxBuffered = opts.maxBufferedRows ?? opts.batchRows * 20;
    this.timer = setInterval(() => void this.flush(), opts.flushIntervalMs);
    this.timer.unref();
  }

  /** Creates the database and tables; idempotent. */
  async createTables(): Promise<void> {
    if (this.tablesReady) return;
    await this.client.query(`CREATE DATABASE IF NOT EXISTS ${this.opts.database}`);
    for (const { key, table, columns } of storeTables()) {
      await this.client.query(createTableSql(this.opts.database, key));
      // Fields added to the schema since the table was made become columns (defaults for old rows).
      const have = new Set((await this.client.query(
        `SELECT name FROM system.columns WHERE database = '${this.opts.database}' AND table = '${table}' FORMAT TabSeparated`,
      )).split('\n').filter(Boolean));
      for (const c of columns) {
        if (!have.has(c.name)) await this.client.query(`ALTER TABLE ${this.opts.database}.${table} ADD COLUMN \`${c.name}\` ${chType(c)}`);
      }
    }
    this.tablesReady = true;
  }

  async write(batch: SinkBatch): Promise<void> {
    this.append(batch.type, batch.rows());
    if (this.buffers[batch.type].length >= this.opts.batchRows) await this.flush();
  }

  /** Buffers one interval's stacks for the profile table. */
  async writeProfile(batch: ProfileSinkBatch): Promise<void> {
    this.append('profile', batch.rows());
    if (this.buffers.profile.length >= this.opts.batchRows) await this.flush();
  }

  append(key: TableKey, rows: readonly Row[]): void {
    const buf = this.buffers[key];
    for (const row of rows) {
      if (buf.length >= this.maxBuffered) {
        countDrop(this.drops, dropReason('clickhouse_buffer_full', key));
        continue;
      }
      buf.push(JSON.stringify(row, boolsAsInts));
    }
  }

  /** Inserts everything buffered; one flush at a time. A failed insert keeps its rows for the next. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.insertAll());
    return this.flushing;
  }

  private async insertAll(): Promise<void> {
    try {
      await this.createTables();
    } catch (err) {
      this.opts.log?.('clickhouse unavailable', { error: (err as Error).message });
      return;
    }
    for (const { key, table } of storeTables()) {
      const buf = this.buffers[key];
      while (buf.length > 0) {
        const n = Math.min(buf.length, this.opts.batchRows);
        const body = buf.slice(0, n).join('\n') + '\n';
        try {
          await this.client.query(`INSERT INTO ${this.opts.database}.${table} FORMAT JSONEachRow`, body);
        } catch (err) {
          const msg = (err as Error).message;
          this.opts.log?.('clickhouse insert failed', { table, error: msg });
          // A server that rejects the data (4xx) will reject it again: drop and count; else retry later.
          if (/^ClickHouse 4\d\d/.test(msg)) {
            countDrop(this.drops, dropReason('clickhouse_rejected', key), n);
            buf.splice(0, n);
            continue;
          }
          return;
        }
        buf.splice(0, n);
        if (key === 'profile') this.profileRows += n;
        else this.written[key] += n;
      }
    }
  }

  /** Rows buffered in every table, profiles included. */
  get bufferedRows(): number {
    return this.buffers.l4.length + this.buffers.l7.length + this.buffers.metrics.length + this.buffers.profile.length;
  }

  pendingRows(): number {
    return this.bufferedRows;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    for (const { key } of storeTables()) {
      const left = this.buffers[key].length;
      if (left > 0) countDrop(this.drops, dropReason('clickhouse_unsent_at_close', key), left);
    }
  }
}
