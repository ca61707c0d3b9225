// eBPF profiles through the collector protocol to a real `flowtap collector` process: they land
// in its `profile` table exactly, also when they waited in the spool through a collector kill
// and restart, when an interval is bigger than a frame, and when a sender process that ran with
// the collector down is run again; past the spool's bound the counted drops equal the missing
// rows. The frame format the older senders use is still read as before.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { flowtap } from '../../lib/proto';
import { CollectorSink, type CollectorSinkOptions } from '../../services/sender/collector-sink';
import { Encoder, FrameError, HEADER_BYTES, decodeFrame, encodeFrame } from '../../services/sender/frame';
import { ProfileSinkBatch, SinkBatch } from '../../services/sender/sink';
import { syntheticL7 } from '../sender/corpus-records';
import { expectedProfileRows, profileKeys, readSqliteProfile, syntheticProfiles } from '../sender/profiles';
import { runSender, scrapeHeld, startCollector } from './processes';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-colprof-'));

function sinkTo(port: number, dir: string, more: Partial<CollectorSinkOptions> = {}): CollectorSink {
  return new CollectorSink({
    host: '127.0.0.1', port, agentId: 5, encoder: Encoder.ZSTD, spoolDir: path.join(dir, 'spool'),
    spoolMaxBytes: 64 << 20, reconnectMinMs: 100, reconnectMaxMs: 500, ...more,
  });
}

function storedL7Ids(db: string): number[] {
  const d = new Database(db, { readonly: true });
  try {
    return (d.prepare('SELECT flow_id FROM l7_flow_log ORDER BY flow_id').all() as Array<{ flow_id: number }>).map((r) => r.flow_id);
  } finally {
    d.close();
  }
}

test('a frame laid out by hand as docs/storage.md describes (L4 logs) decodes as before; a profile frame holds ProfileBatch messages', (t) => {
  const log = { flow_id: 77, start_time: 1_700_000_000_000_000, end_time: 1_700_000_001_000_000, ip_0: '10.0.0.1', ip_1: '10.0.0.2', server_port: 443, protocol: 6 };
  const record = flowtap.L4FlowLog.encode(log).finish();
  const frame = Buffer.alloc(HEADER_BYTES + 4 + record.length);
  frame.writeUInt32BE(frame.length, 0);
  frame[4] = 1; // version
  frame[5] = 7; // L4
  frame[6] = 0; // no compression
  frame.writeUInt32BE(12, 8); // agent
  frame.writeUInt32BE(34, 12); // epoch
  frame.writeUInt32BE(0, 16);
  frame.writeUInt32BE(56, 20); // seq
  frame.writeUInt32BE(1, 24);
  frame.writeUInt32BE(4 + record.length, 28);
  frame.writeUInt32BE(record.length, HEADER_BYTES);
  frame.set(record, HEADER_BYTES + 4);
  const old = decodeFrame(frame);
  t.is(old.type, 'l4');
  t.like(old.header, { agentId: 12, epoch: 34, seq: 56, recordCount: 1 });
  t.is(Number((old.records[0] as flowtap.L4FlowLog).flow_id), 77);
  t.is((old.records[0] as flowtap.L4FlowLog).ip_1, '10.0.0.2');

  const [interval] = syntheticProfiles(1, 5);
  const profile = decodeFrame(encodeFrame(9, [flowtap.ProfileBatch.encode(interval).finish()], 1, 2, 3, Encoder.ZSTD));
  t.is(profile.type, 'profile');
  const got = profile.records[0] as flowtap.ProfileBatch;
  t.is(Number(got.end_time), Number(interval.end_time));
  t.deepEqual(got.stacks.map((s) => s.stack), interval.stacks!.map((s) => s.stack));
  // Kinds that are not records of the protocol stay unknown (socket data, kind 8).
  const err = t.throws(() => decodeFrame(encodeFrame(8, [Buffer.from([8, 1])], 1, 2, 3, Encoder.NONE)));
  t.is((err as FrameError).reason, 'unknown_type');
});

test.serial('profiles reach a real collector, and those spooled while it was killed arrive after its restart', async (t) => {
  const dir = tmp();
  const db = path.join(dir, 'collector.db');
  let collector = await startCollector(db);
  const port = collector.port;
  const sink = sinkTo(port, dir);
  const intervals = syntheticProfiles(8, 40);
  let nextL7 = 1;
  // Profiles and L7 logs interleaved in one spool, as a live sender makes them.
  const send = async (from: number, to: number) => {
    for (const interval of intervals.slice(from, to)) {
      await sink.writeProfile(ProfileSinkBatch.fromMessage(interval));
      await sink.write(SinkBatch.fromRecords('l7', syntheticL7(50, nextL7)));
      nextL7 += 50;
    }
  };
  await send(0, 3);
  t.true(await sink.drain(20_000), 'first intervals acknowledged');
  await collector.stop('SIGKILL');
  await send(3, 8);
  await sleep(800); // reconnects fail meanwhile
  t.true(sink.spool.pendingFrames >= 10, `${sink.spool.pendingFrames} frames waiting in the spool`);
  collector = await startCollector(db, port);
  t.true(await sink.drain(20_000), 'drained after the restart');
  const held = await scrapeHeld(collector.metricsPort);
  await sink.close();
  await collector.stop();

  const expected = expectedProfileRows(intervals);
  // Everything before the kill was acknowledged, so nothing is sent twice: the rows are exact.
  t.deepEqual(profileKeys(readSqliteProfile(db)), profileKeys(expected));
  t.is(sink.profileRows, expected.length, 'rows spooled (collector_rows_written_profile)');
  t.is(held.records_profile, expectedProfileRows(intervals.slice(3)).length, 'the restarted collector counts the rows it stored');
  t.is(sink.drops.size, 0);
  t.deepEqual(storedL7Ids(db), Array.from({ length: nextL7 - 1 }, (_, i) => i + 1), 'the L7 logs around them too');
  fs.rmSync(dir, { recursive: true, force: true });
});

test.serial('an interval bigger than a frame is cut into frames of its stacks and stored whole', async (t) => {
  const dir = tmp();
  const db = path.join(dir, 'collector.db');
  const collector = await startCollector(db);
  const sink = sinkTo(collector.port, dir, { frameRawBytes: 8192 });
  const intervals = syntheticProfiles(2, 400, undefined, 20);
  const body = flowtap.ProfileBatch.encode(intervals[0]).finish();
  t.true(body.length > 8 * 8192, `an interval of ${body.length} bytes`);
  for (const interval of intervals) await sink.writeProfile(ProfileSinkBatch.fromMessage(interval));
  const frames = sink.spool.pendingFrames + sink.stats.framesSent;
  t.true(await sink.drain(20_000));
  const held = await scrapeHeld(collector.metricsPort);
  await sink.close();
  await collector.stop();
  t.true(frames >= 16, `${frames} frames`);
  t.is(held.frames_total, frames);
  const expected = expectedProfileRows(intervals);
  t.deepEqual(profileKeys(readSqliteProfile(db)), profileKeys(expected));
  t.is(held.records_profile, expected.length);
  fs.rmSync(dir, { recursive: true, force: true });
});

test.serial('past the spool bound, the profile rows counted as dropped are exactly the rows missing at the collector', async (t) => {
  const dir = tmp();
  const db = path.join(dir, 'collector.db');
  let collector = await startCollector(db);
  const port = collector.port;
  await collector.stop();
  const sink = sinkTo(port, dir, { encoder: Encoder.NONE, spoolMaxBytes: 128 * 1024 });
  const intervals = syntheticProfiles(60, 50);
  for (const interval of intervals) await sink.writeProfile(ProfileSinkBatch.fromMessage(interval));
  const dropped = sink.drops.get('collector_spool_full_profile') ?? 0;
  t.true(dropped > 0, 'the bound was reached');
  t.true(sink.spool.bytes <= 128 * 1024);
  collector = await startCollector(db, port);
  t.true(await sink.drain(20_000));
  await sink.close();
  await collector.stop();
  const expected = expectedProfileRows(intervals);
  const stored = readSqliteProfile(db);
  t.is(stored.length, expected.length - dropped, `${expected.length} written, ${dropped} dropped, ${stored.length} stored`);
  t.is(sink.profileRows, stored.length);
  // Whole intervals are refused (one frame each), so what is stored is whole intervals, the first among them.
  const storedEnds = new Set(stored.map((r) => r.end_time));
  t.true(storedEnds.has(Number(intervals[0].end_time)));
  t.deepEqual(profileKeys(stored), profileKeys(expectedProfileRows(intervals.filter((i) => storedEnds.has(Number(i.end_time))))));
  fs.rmSync(dir, { recursive: true, force: true });
});

test.serial('profiles a real sender process spooled with the collector down are delivered by its next run', async (t) => {
  const dir = tmp();
  const db = path.join(dir, 'collector.db');
  let collector = await startCollector(db);
  const port = collector.port;
  await collector.stop();
  const settings = {
    sinks: ['jsonl', 'collector'],
    output_dir: path.join(dir, 'out'),
    collector: { address: `127.0.0.1:${port}`, agent_id: 11, spool_dir: path.join(dir, 'spool'), drain_timeout_ms: 1000, reconnect_min_ms: 100, reconnect_max_ms: 400 },
  };
  const intervals = syntheticProfiles(6, 30);
  const first = await runSender(dir, settings, intervals.map((i) => ProfileSinkBatch.fromMessage(i)));
  t.is(first.code, 0, first.stderr);
  t.true(fs.readdirSync(path.join(dir, 'spool')).some((f) => f.startsWith('seg-')), 'frames left in the spool');
  collector = await startCollector(db, port);
  const second = await runSender(dir, { ...settings, collector: { ...settings.collector, drain_timeout_ms: 20_000 } }, []);
  t.is(second.code, 0, second.stderr);
  await collector.stop();
  const expected = profileKeys(expectedProfileRows(intervals));
  t.deepEqual(profileKeys(readSqliteProfile(db)), expected, 'the collector store');
  const jsonl = fs.readFileSync(path.join(dir, 'out', 'profile.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.deepEqual(profileKeys(jsonl), expected, 'profile.jsonl of the first run');
  t.false(fs.readdirSync(path.join(dir, 'spool')).some((f) => f.startsWith('seg-')), 'spool emptied');
  fs.rmSync(dir, { recursive: true, force: true });
});
