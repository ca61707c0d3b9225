// The ClickHouse sink against a real clickhouse-server (Debian's 18.16) that this file starts:
// tables are created, and the rows read back are exactly the JSON lines of the same batches,
// both from the sender's sink and through a collector writing to ClickHouse; the same for
// profile intervals (table `profile`), through a real collector process.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import YAML from 'yaml';
import { CollectorServer } from '../../services/collector/server';
import { ClickHouseClient, ClickHouseSink } from '../../services/sender/clickhouse-sink';
import { RECORD_TYPES, TABLE_NAMES, type RecordType } from '../../services/sender/columns';
import { CollectorSink } from '../../services/sender/collector-sink';
import { Encoder } from '../../services/sender/frame';
import { JsonlSink } from '../../services/sender/jsonl-sink';
import { ProfileSinkBatch, SinkBatch } from '../../services/sender/sink';
import { startClickHouse, type ClickHouseServer } from './clickhouse-server';
import { corpusRecords } from './corpus-records';
import { expectedProfileRows, profileKeys, readSqliteProfile, syntheticProfiles } from './profiles';
import { canonical, readJsonlText, readSqlite, rowToJson, type Json } from './stores';
import { startCollector } from '../collector/processes';
import { runFlowtap } from '../support/replay';
import { corpusFile } from '../support/tshark';

let server: ClickHouseServer | undefined;
test.before(async () => {
  server = await startClickHouse();
});
test.after.always(async () => {
  await server?.stop();
});

async function readTable(client: ClickHouseClient, db: string, type: RecordType): Promise<Json[]> {
  const text = await client.query(`SELECT * FROM ${db}.${TABLE_NAMES[type]} FORMAT JSONEachRow`, undefined, { output_format_json_quote_64bit_integers: 0 });
  return text.split('\n').filter(Boolean).map((l) => rowToJson(type, JSON.parse(l) as Json));
}

test('rows in ClickHouse, written by the sink and by a collector, are the rows of the JSON lines', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-chsink-'));
  const records = corpusRecords();
  const opts = { url: server!.url, user: 'default', password: '', batchRows: 100, flushIntervalMs: 200 };
  const direct = new ClickHouseSink({ ...opts, database: 'agent' });
  const viaCollector = new ClickHouseSink({ ...opts, database: 'central' });
  await viaCollector.createTables();
  const collector = new CollectorServer({ host: '127.0.0.1', port: 0, sinks: [viaCollector] });
  const port = await collector.listen();
  const toCollector = new CollectorSink({
    host: '127.0.0.1', port, agentId: 3, encoder: Encoder.ZSTD, spoolDir: path.join(dir, 'spool'),
    spoolMaxBytes: 64 << 20, reconnectMinMs: 50, reconnectMaxMs: 500,
  });
  const jsonl = new JsonlSink(path.join(dir, 'jsonl'), true);
  for (const type of RECORD_TYPES) {
    const list = records[type] as SinkBatch['records'];
    for (let i = 0; i < list.length; i += 40) {
      const batch = SinkBatch.fromRecords(type, list.slice(i, i + 40));
      for (const sink of [jsonl, direct, toCollector]) await sink.write(batch);
    }
  }
  t.true(await toCollector.drain(20_000));
  for (const sink of [jsonl, direct, toCollector]) await sink.close();
  await collector.close();
  await viaCollector.close();
  t.is(direct.drops.size, 0, JSON.stringify([...direct.drops]));
  const client = new ClickHouseClient(opts);
  for (const type of RECORD_TYPES) {
    const lines = readJsonlText(path.join(dir, 'jsonl'), type).map((l) => JSON.parse(l) as Json);
    t.true(lines.length > 0);
    t.deepEqual(canonical(await readTable(client, 'agent', type)), canonical(lines), `${type} from the sink`);
    t.deepEqual(canonical(await readTable(client, 'central', type)), canonical(lines), `${type} through the collector`);
  }
  // The engine and partitioning are what was asked for, on this server version.
  const ddl = await client.query(`SHOW CREATE TABLE agent.l7_flow_log`);
  t.regex(ddl, /MergeTree/);
  t.regex(ddl, /toYYYYMMDD/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('rows are kept while ClickHouse is unreachable, and counted as dropped if still unsent at close', async (t) => {
  const sink = new ClickHouseSink({ url: 'http://127.0.0.1:1', database: 'x', user: 'default', password: '', batchRows: 10, flushIntervalMs: 60_000 });
  const batch = SinkBatch.fromRecords('l4', corpusRecords(['http1/zeek/get.pcap']).l4);
  const profile = ProfileSinkBatch.fromMessage(syntheticProfiles(1, 7)[0]);
  await sink.write(batch);
  await sink.writeProfile(profile);
  await sink.flush();
  t.is(sink.pendingRows(), batch.count + 7, 'kept, not dropped');
  t.is(sink.drops.size, 0);
  await sink.close();
  t.is(sink.drops.get('clickhouse_unsent_at_close'), batch.count, 'what is left at close is counted');
  t.is(sink.drops.get('clickhouse_unsent_at_close_profile'), 7, 'profile rows apart');
});

test('profile rows in ClickHouse, from the sink and through a collector process, are exactly the stacks of the intervals', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-chprof-'));
  const intervals = syntheticProfiles(5, 90);
  const expected = expectedProfileRows(intervals);
  const opts = { url: server!.url, user: 'default', password: '' };
  // 50 rows per INSERT: each interval takes two.
  const direct = new ClickHouseSink({ ...opts, database: 'agentprof', batchRows: 50, flushIntervalMs: 60_000 });
  const collector = await startCollector(path.join(dir, 'collector.db'), 0, ['--clickhouse', server!.url, '--clickhouse-db', 'centralprof']);
  const toCollector = new CollectorSink({
    host: '127.0.0.1', port: collector.port, agentId: 4, encoder: Encoder.ZSTD, spoolDir: path.join(dir, 'spool'),
    spoolMaxBytes: 64 << 20, reconnectMinMs: 50, reconnectMaxMs: 500,
  });
  try {
    for (const interval of intervals) {
      const batch = ProfileSinkBatch.fromMessage(interval);
      await direct.writeProfile(batch);
      await toCollector.writeProfile(batch);
    }
    t.true(await toCollector.drain(20_000));
    await direct.close();
    await toCollector.close();
  } finally {
    await collector.stop();
  }
  t.is(direct.drops.size, 0, JSON.stringify([...direct.drops]));
  t.is(direct.profileRows, expected.length, 'clickhouse_rows_written_profile');
  const client = new ClickHouseClient(opts);
  const select = async (db: string) => (await client.query(`SELECT * FROM ${db}.profile FORMAT JSONEachRow`, undefined, { output_format_json_quote_64bit_integers: 0 }))
    .split('\n').filter(Boolean).map((l) => JSON.parse(l) as Json);
  const fromSink = await select('agentprof');
  t.deepEqual(Object.keys(fromSink[0]), ['start_time', 'end_time', 'sample_hz', 'pid', 'process_kname', 'stack', 'count'], 'the columns of docs/schema.md');
  t.deepEqual(profileKeys(fromSink), profileKeys(expected), 'from the sink');
  t.deepEqual(profileKeys(await select('centralprof')), profileKeys(expected), 'through the collector');
  t.deepEqual(profileKeys(readSqliteProfile(path.join(dir, 'collector.db'))), profileKeys(expected), 'and the collector\'s SQLite');
  // Counted per interval: the intervals' times are what the partitions and order use.
  const perInterval = await client.query('SELECT end_time, count(), sum(count) FROM agentprof.profile GROUP BY end_time ORDER BY end_time FORMAT TabSeparated');
  t.is(perInterval.trim().split('\n').length, intervals.length);
  const ddl = await client.query('SHOW CREATE TABLE agentprof.profile');
  t.regex(ddl, /MergeTree/);
  t.regex(ddl, /PARTITION BY toYYYYMMDD\(toDateTime\(intDiv\(end_time, 1000000\)\)\)/);
  t.regex(ddl, /ORDER BY end_time/);
  t.regex(ddl, /\bstack`? String,/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a replay of corpus files lands the same rows in sqlite, the collector store and ClickHouse as in the JSON lines', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-chreplay-'));
  const collector = await startCollector(path.join(dir, 'collector.db'));
  try {
    for (const [k, rel] of ['http1/zeek/get.pcap', 'dns/deepflow/a-and-ns.pcap'].entries()) {
      const out = path.join(dir, `out${k}`);
      const config = path.join(dir, `flowtap${k}.yaml`);
      fs.writeFileSync(config, YAML.stringify({
        sender: {
          sinks: ['jsonl', 'sqlite', 'collector', 'clickhouse'],
          collector: { address: `127.0.0.1:${collector.port}`, agent_id: 10 + k, spool_dir: path.join(dir, `spool${k}`) },
          clickhouse: { url: server!.url, database: 'replay', flush_interval_ms: 200 },
        },
      }));
      const r = await runFlowtap(['replay', corpusFile(rel), '--out', out, '--config', config]);
      t.is(r.code, 0, r.stderr);
    }
  } finally {
    await collector.stop();
  }
  const client = new ClickHouseClient({ url: server!.url, user: 'default', password: '' });
  let total = 0;
  for (const type of RECORD_TYPES) {
    const lines = [0, 1].flatMap((k) => readJsonlText(path.join(dir, `out${k}`), type).map((l) => JSON.parse(l) as Json));
    const agentDb = [0, 1].flatMap((k) => readSqlite(path.join(dir, `out${k}`, 'flowtap.db'), type));
    t.deepEqual(canonical(agentDb), canonical(lines), `${type}: sqlite`);
    t.deepEqual(canonical(readSqlite(path.join(dir, 'collector.db'), type)), canonical(lines), `${type}: collector`);
    t.deepEqual(canonical(await readTable(client, 'replay', type)), canonical(lines), `${type}: ClickHouse`);
    total += lines.length;
  }
  t.true(total > 0, 'the replay wrote rows');
  fs.rmSync(dir, { recursive: true, force: true });
});
