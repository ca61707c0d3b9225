// A real `flowtap collector` process under bad input: random bytes and frames that are cut,
// oversized, of an unknown version, type or encoder, badly compressed or with undecodable
// records are each counted by reason (Prometheus) and close their own connection, while a
// well-behaved agent sending at the same time loses nothing.
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { flowtap } from '../../lib/proto';
import { CollectorSink } from '../../services/sender/collector-sink';
import { Encoder, encodeFrame, HEADER_BYTES } from '../../services/sender/frame';
import { SinkBatch } from '../../services/sender/sink';
import { syntheticL7 } from '../sender/corpus-records';
import { scrapeDrops, startCollector } from './processes';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends `bytes`, optionally ends the connection; resolves with whether the collector closed it and what it answered. */
function attack(port: number, bytes: Buffer, end: boolean): Promise<{ closedByPeer: boolean; answer: number }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let answer = 0;
    let ended = false;
    s.on('data', (d) => { answer += d.length; });
    s.on('error', () => { /* reset by the collector */ });
    s.on('connect', () => {
      s.write(bytes, () => {
        if (end) {
          ended = true;
          setTimeout(() => s.destroy(), 100);
        }
      });
    });
    s.on('close', () => resolve({ closedByPeer: !ended, answer }));
    setTimeout(() => s.destroy(), 5000);
  });
}

function l7Records(n: number, first: number): Uint8Array[] {
  return syntheticL7(n, first).map((r) => flowtap.L7FlowLog.encode(r).finish());
}

test('malformed frames are counted by reason and rejected; a good agent at the same time loses nothing', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-malformed-'));
  const db = path.join(dir, 'collector.db');
  const collector = await startCollector(db);
  const good = new CollectorSink({
    host: '127.0.0.1', port: collector.port, agentId: 1, encoder: Encoder.ZSTD, spoolDir: path.join(dir, 'spool'),
    spoolMaxBytes: 64 << 20, reconnectMinMs: 100, reconnectMaxMs: 1000,
  });
  let sent = 0;
  let stop = false;
  const goodAgent = (async () => {
    while (!stop) {
      await good.write(SinkBatch.fromRecords('l7', syntheticL7(100, sent + 1)));
      sent += 100;
      await sleep(20);
    }
  })();

  const valid = encodeFrame(flowtap.MessageKind.L7_LOG_BATCH, l7Records(20, 1_000_000), 66, 1, 1, Encoder.ZSTD);
  const withByte = (at: number, v: number) => { const f = Buffer.from(valid); f[at] = v; return f; };
  const randomFrames: Buffer[] = [];
  for (let i = 0; i < 20; i++) randomFrames.push(crypto.randomBytes(200 + i * 37));
  // A frame whose records are not L7 logs: a record length that runs past the end.
  const badRecords = encodeFrame(flowtap.MessageKind.L7_LOG_BATCH, [Buffer.from([0xff, 0xff, 0xff])], 66, 1, 1, Encoder.NONE);
  badRecords.writeUInt32BE(999, HEADER_BYTES);
  const badCompression = Buffer.from(valid);
  badCompression.fill(0x41, HEADER_BYTES + 4);
  const cases: Array<{ name: string; bytes: Buffer; end: boolean; reason?: string }> = [
    { name: 'truncated', bytes: valid.subarray(0, valid.length - 10), end: true, reason: 'truncated_frame' },
    { name: 'truncated header', bytes: valid.subarray(0, 10), end: true, reason: 'truncated_frame' },
    { name: 'version', bytes: withByte(4, 9), end: false, reason: 'unknown_version' },
    { name: 'type', bytes: withByte(5, 1), end: false, reason: 'unknown_type' },
    { name: 'encoder', bytes: withByte(6, 7), end: false, reason: 'unknown_encoder' },
    { name: 'compression', bytes: badCompression, end: false, reason: 'bad_compression' },
    { name: 'records', bytes: badRecords, end: false, reason: 'bad_record_length' },
    { name: 'too large', bytes: Buffer.from([0x7f, 0, 0, 0, 1, 4, 0, 0]), end: false, reason: 'frame_too_large' },
    { name: 'too small', bytes: Buffer.from([0, 0, 0, 5, 1]), end: false, reason: 'frame_too_small' },
  ];
  const expected: Record<string, number> = {};
  for (const c of cases) {
    const r = await attack(collector.port, c.bytes, c.end);
    t.is(r.answer, 0, `${c.name}: no acknowledgement`);
    if (!c.end) t.true(r.closedByPeer, `${c.name}: the collector closed the connection`);
    expected[c.reason!] = (expected[c.reason!] ?? 0) + 1;
  }
  // Random bytes: whatever each is taken for, it is rejected and counted once.
  let randomAcks = 0;
  for (const bytes of randomFrames) randomAcks += (await attack(collector.port, bytes, true)).answer;
  t.is(randomAcks, 0);
  await sleep(300);
  stop = true;
  await goodAgent;
  t.true(await good.drain(20_000));
  const drops = await scrapeDrops(collector.metricsPort);
  await good.close();
  await collector.stop();

  // Random frames may add to any reason, so each crafted one is there at least; the total is exact.
  for (const [reason, n] of Object.entries(expected)) t.true((drops[reason] ?? 0) >= n, `${reason}: ${drops[reason]} >= ${n}`);
  const total = Object.values(drops).reduce((a, b) => a + b, 0);
  t.is(total, cases.length + randomFrames.length, `one drop per bad connection: ${JSON.stringify(drops)}`);
  const d = new Database(db, { readonly: true });
  const stored = d.prepare('SELECT count(*) AS n, count(DISTINCT flow_id) AS u, max(flow_id) AS hi FROM l7_flow_log').get() as { n: number; u: number; hi: number };
  d.close();
  t.is(good.stats.connects, 1, 'the good agent was never disconnected');
  t.deepEqual(stored, { n: sent, u: sent, hi: sent }, 'every record of the good agent, none of the attackers');
  fs.rmSync(dir, { recursive: true, force: true });
});
