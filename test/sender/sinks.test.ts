// The jsonl, sqlite and collector sinks fed the same batches of records built from tshark's
// reading of corpus captures: the SQLite file and the collector's store hold exactly the rows
// of the JSON lines, and the counts match tshark's.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { CollectorServer } from '../../services/collector/server';
import { RECORD_TYPES } from '../../services/sender/columns';
import { CollectorSink } from '../../services/sender/collector-sink';
import { Encoder } from '../../services/sender/frame';
import { JsonlSink } from '../../services/sender/jsonl-sink';
import { SinkBatch, type Sink } from '../../services/sender/sink';
import { SqliteSink } from '../../services/sender/sqlite-sink';
import { corpusFile, tsharkFields } from '../support/tshark';
import { corpusRecords, syntheticL7 } from './corpus-records';
import { canonical, readJsonlText, readSqlite } from './stores';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-sinks-'));

function batchesOf(records: ReturnType<typeof corpusRecords>, size = 50): SinkBatch[] {
  const out: SinkBatch[] = [];
  for (const type of RECORD_TYPES) {
    const list = records[type] as SinkBatch['records'];
    for (let i = 0; i < list.length; i += size) out.push(SinkBatch.fromRecords(type, list.slice(i, i + size)));
  }
  return out;
}

test('sqlite and the collector store hold exactly the rows of the JSON lines', async (t) => {
  const dir = tmp();
  const records = corpusRecords();
  // The inputs are tshark's: one L7 log per HTTP request it sees.
  const tsharkRequests = ['http1/zeek/methods.pcap', 'mixed/zeek/wikipedia.pcap', 'http1/zeek/post.pcap']
    .map((f) => tsharkFields(corpusFile(f), ['frame.number'], { filter: 'http.request' }).length)
    .reduce((a, b) => a + b, 0);
  t.is(records.l7.length, tsharkRequests);
  t.true(records.l4.length > 30);

  const collectorStore = new SqliteSink(path.join(dir, 'collector.db'));
  const server = new CollectorServer({ host: '127.0.0.1', port: 0, sinks: [collectorStore] });
  const port = await server.listen();
  const jsonl = new JsonlSink(path.join(dir, 'jsonl'), true);
  const sqlite = new SqliteSink(path.join(dir, 'agent.db'));
  const collector = new CollectorSink({
    host: '127.0.0.1', port, agentId: 7, encoder: Encoder.ZSTD, spoolDir: path.join(dir, 'spool'),
    spoolMaxBytes: 64 << 20, reconnectMinMs: 50, reconnectMaxMs: 500,
  });
  const sinks: Sink[] = [jsonl, sqlite, collector];
  for (const batch of batchesOf(records)) for (const sink of sinks) await sink.write(batch);
  t.true(await collector.drain(10_000), 'the collector acknowledged every frame');
  for (const sink of sinks) await sink.close();
  await server.close();
  await collectorStore.close();

  for (const type of RECORD_TYPES) {
    const lines = readJsonlText(path.join(dir, 'jsonl'), type);
    t.is(lines.length, records[type].length, `${type}: every record has its line`);
    const agentRows = readSqlite(path.join(dir, 'agent.db'), type);
    const collectorRows = readSqlite(path.join(dir, 'collector.db'), type);
    if (type === 'metrics') {
      // Metric rows carry their table's columns only; compare as objects.
      t.deepEqual(agentRows, lines.map((l) => JSON.parse(l)), 'metrics in sqlite');
    } else {
      // Same columns in the same order: byte-for-byte the JSON lines.
      t.deepEqual(agentRows.map((r) => JSON.stringify(r)), lines, `${type} in sqlite`);
    }
    t.deepEqual(canonical(collectorRows), canonical(lines.map((l) => JSON.parse(l))), `${type} in the collector store`);
  }
  // A spot check against tshark itself: the methods seen in methods.pcap, by count.
  const db = new Database(path.join(dir, 'collector.db'), { readonly: true });
  const methods = Object.fromEntries((db.prepare(`SELECT request_type AS m, count(*) AS n FROM l7_flow_log WHERE request_domain = 'www.google.com' GROUP BY 1`).all() as Array<{ m: string; n: number }>).map((r) => [r.m, r.n]));
  db.close();
  const expected: Record<string, number> = {};
  for (const [m, host] of tsharkFields(corpusFile('http1/zeek/methods.pcap'), ['http.request.method', 'http.host'], { filter: 'http.request' })) {
    if (host === 'www.google.com') expected[m] = (expected[m] ?? 0) + 1;
  }
  t.deepEqual(methods, expected);
  t.is(server.drops.size, 0);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('jsonl rotation keeps every row across the current and rotated files, and no more files than asked', async (t) => {
  const dir = tmp();
  const sink = new JsonlSink(dir, { truncate: true, rotateBytes: 20_000, keepFiles: 50 });
  const logs = syntheticL7(600, 1);
  for (let i = 0; i < logs.length; i += 40) await sink.write(SinkBatch.fromRecords('l7', logs.slice(i, i + 40)));
  await sink.close();
  const files = fs.readdirSync(dir).filter((f) => f.startsWith('l7_flow_log.jsonl'));
  t.true(files.length > 3, `rotated into ${files.length} files`);
  for (const f of files) t.true(fs.statSync(path.join(dir, f)).size <= 20_000 + 40 * 400);
  // Oldest first: .N ... .1, then the current file.
  const order = files.filter((f) => f !== 'l7_flow_log.jsonl').sort((a, b) => Number(b.split('.').pop()) - Number(a.split('.').pop()));
  const ids = [...order, 'l7_flow_log.jsonl'].flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).flow_id));
  t.deepEqual(ids, logs.map((l) => l.flow_id));

  const dir2 = tmp();
  const kept = new JsonlSink(dir2, { truncate: true, rotateBytes: 20_000, keepFiles: 2 });
  for (let i = 0; i < logs.length; i += 40) await kept.write(SinkBatch.fromRecords('l7', logs.slice(i, i + 40)));
  await kept.close();
  t.deepEqual(fs.readdirSync(dir2).filter((f) => f.startsWith('l7_flow_log')).sort(), ['l7_flow_log.jsonl', 'l7_flow_log.jsonl.1', 'l7_flow_log.jsonl.2']);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(dir2, { recursive: true, force: true });
});

test('sqlite retention: rows older than the age go, measured from the newest row; size stays under the bound', async (t) => {
  const dir = tmp();
  const aged = new SqliteSink(path.join(dir, 'age.db'), { retentionHours: 1, retentionEvery: 1 });
  // 3 hours of logs, one every 10 s of data time.
  const logs = syntheticL7(1080, 1).map((l, i) => ({ ...l, start_time: 1_700_000_000_000_000 + i * 10e6 }));
  for (let i = 0; i < logs.length; i += 60) await aged.write(SinkBatch.fromRecords('l7', logs.slice(i, i + 60)));
  const newest = logs[logs.length - 1].start_time as number;
  const kept = aged.db.prepare('SELECT count(*) AS n, min(start_time) AS lo FROM l7_flow_log').get() as { n: number; lo: number };
  t.is(kept.n, logs.filter((l) => (l.start_time as number) >= newest - 3600e6).length);
  t.true(kept.lo >= newest - 3600e6);
  t.is(aged.evicted.age, logs.length - kept.n);
  await aged.close();

  const bound = 512 * 1024;
  const sized = new SqliteSink(path.join(dir, 'size.db'), { maxBytes: bound, retentionEvery: 1 });
  const many = syntheticL7(20_000, 1);
  for (let i = 0; i < many.length; i += 500) await sized.write(SinkBatch.fromRecords('l7', many.slice(i, i + 500)));
  t.true(sized.usedBytes() <= bound, `${sized.usedBytes()} bytes used`);
  t.true(sized.evicted.size > 0);
  const left = sized.db.prepare('SELECT count(*) AS n, min(flow_id) AS lo, max(flow_id) AS hi FROM l7_flow_log').get() as { n: number; lo: number; hi: number };
  t.is(left.hi, 20_000, 'the newest rows stay');
  t.is(left.n + sized.evicted.size, 20_000);
  await sized.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('a store made by an older schema gains the new fields as columns and takes new rows', async (t) => {
  const dir = tmp();
  const file = path.join(dir, 'old.db');
  const old = new Database(file);
  old.exec('CREATE TABLE l4_flow_log (flow_id INTEGER NOT NULL, start_time INTEGER NOT NULL, end_time INTEGER NOT NULL)');
  old.exec('INSERT INTO l4_flow_log VALUES (1, 10, 20)');
  old.close();
  const sink = new SqliteSink(file);
  const records = corpusRecords(['http1/zeek/get.pcap']).l4;
  await sink.write(SinkBatch.fromRecords('l4', records));
  t.deepEqual(sink.drops, new Map());
  const rows = sink.db.prepare('SELECT flow_id, byte_tx, ip_0 FROM l4_flow_log ORDER BY rowid').all();
  t.deepEqual(rows, [{ flow_id: 1, byte_tx: 0, ip_0: '' }, ...records.map((r) => ({ flow_id: r.flow_id, byte_tx: r.byte_tx, ip_0: r.ip_0 }))]);
  await sink.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
