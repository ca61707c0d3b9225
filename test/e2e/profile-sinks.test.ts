// Real eBPF profiles to the remote sinks: the five services in live mode with the profiler on
// (1 s intervals) and sinks jsonl, collector and clickhouse, a real `flowtap collector` process
// and a real clickhouse-server. The intervals profile.jsonl holds must reach the collector's
// `profile` table and ClickHouse's, row for row.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { DEFAULT_PROFILE_OBJECT, ebpfStatus } from '../../native/ebpf';
import { ClickHouseClient } from '../../services/sender/clickhouse-sink';
import { startCollector } from '../collector/processes';
import { clickhouseInstalled, startClickHouse } from '../sender/clickhouse-server';
import { profileKeys, readSqliteProfile } from '../sender/profiles';
import { sleep, startAgent } from '../support/live-agent';

type Row = Record<string, unknown>;

const canProfile = process.getuid?.() === 0 && fs.existsSync('/sys/kernel/btf/vmlinux') && ebpfStatus(DEFAULT_PROFILE_OBJECT).available && clickhouseInstalled();

(canProfile ? test.serial : test.serial.skip)('live profiles reach the collector store and ClickHouse exactly as profile.jsonl has them', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-profsinks-'));
  const clickhouse = await startClickHouse();
  const collectorDb = path.join(dir, 'collector.db');
  const collector = await startCollector(collectorDb);
  const agent = startAgent({
    portBase: 24000 + (process.pid % 300) * 10,
    config: [
      'capture: { source: live, interfaces: ["ft-none*"] }',
      'ebpf: { process_names: ["ft-none"], profiler: true, profile_interval_s: 1 }',
      'sender:',
      '  output_dir: $DATA',
      '  sinks: [jsonl, collector, clickhouse]',
      `  collector: { address: "127.0.0.1:${collector.port}", spool_dir: ${path.join(dir, 'spool')} }`,
      `  clickhouse: { url: "${clickhouse.url}", database: live, flush_interval_ms: 200 }`,
    ],
  });
  const data = path.join(agent.dir, 'data');
  // Something on a CPU in every interval, whatever else the machine does.
  const busy = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
  t.teardown(async () => {
    busy.kill('SIGKILL');
    agent.kill();
    await collector.stop();
    await clickhouse.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const jsonlFile = path.join(data, 'profile.jsonl');
  const readJsonl = (): Row[] => (fs.existsSync(jsonlFile)
    ? fs.readFileSync(jsonlFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row) : []);
  const intervalsOf = (rows: Row[]) => new Set(rows.map((r) => Number(r.end_time)));

  // A few intervals in profile.jsonl (at most 20 s) ...
  let until = Date.now() + 20_000;
  while (Date.now() < until && intervalsOf(readJsonl()).size < 3) await sleep(250);
  const written = readJsonl();
  const ends = intervalsOf(written);
  t.true(ends.size >= 3, `intervals in profile.jsonl: ${ends.size}: ${agent.stderr()}`);
  // ... must then reach both remote stores (the collector acknowledges, ClickHouse flushes at 200 ms).
  const client = new ClickHouseClient({ url: clickhouse.url, user: 'default', password: '' });
  const fromClickHouse = async (): Promise<Row[]> => (await client.query('SELECT * FROM live.profile FORMAT JSONEachRow', undefined, { output_format_json_quote_64bit_integers: 0 }))
    .split('\n').filter(Boolean).map((l) => JSON.parse(l) as Row);
  const ofWritten = (rows: Row[]) => rows.filter((r) => ends.has(Number(r.end_time)));
  let central: Row[] = [];
  let ch: Row[] = [];
  until = Date.now() + 15_000;
  for (;;) {
    central = ofWritten(readSqliteProfile(collectorDb));
    ch = ofWritten(await fromClickHouse().catch(() => []));
    if ((central.length >= written.length && ch.length >= written.length) || Date.now() > until) break;
    await sleep(250);
  }
  await agent.stop();

  t.log(`${written.length} rows (stacks) in ${ends.size} intervals`);
  t.true(written.length > 0);
  t.true(written.every((r) => Number(r.sample_hz) === 99 && Number(r.count) > 0 && String(r.stack).startsWith(`${String(r.process_kname)};`)));
  t.deepEqual(profileKeys(central), profileKeys(written), 'the collector store');
  t.deepEqual(profileKeys(ch), profileKeys(written), 'ClickHouse');
});
