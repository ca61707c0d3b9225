// `flowtap query` and `flowtap top` on a SQLite store that a sink keeps writing to at the same
// time (WAL): answers match tshark's reading of the captures the rows were built from, and
// statements that would write are refused.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { topSnapshot } from '../../bin/top';
import { SinkBatch } from '../../services/sender/sink';
import { SqliteSink } from '../../services/sender/sqlite-sink';
import { corpusFile, tsharkConversations, tsharkFields } from '../support/tshark';
import { corpusRecords, syntheticL7 } from './corpus-records';

const FLOWTAP = path.resolve(__dirname, '..', '..', 'bin', 'flowtap.js');

function flowtapCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FLOWTAP, ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('query and top read the store while a writer is adding rows', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-query-'));
  const file = path.join(dir, 'flowtap.db');
  const records = corpusRecords(['http1/zeek/methods.pcap']);
  const sink = new SqliteSink(file);
  await sink.write(SinkBatch.fromRecords('l7', records.l7));
  await sink.write(SinkBatch.fromRecords('l4', records.l4));
  // Keep writing other rows (another server) while the readers run.
  let writing = true;
  let extra = 0;
  const writer = (async () => {
    while (writing) {
      const logs = syntheticL7(200, 1_000_000 + extra).map((l) => ({ ...l, ip_1: '10.9.9.9', start_time: 1_354_328_800_000_000 }));
      await sink.write(SinkBatch.fromRecords('l7', logs));
      extra += 200;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();

  try {
    const q = await flowtapCli(['query', `SELECT request_type, count(*) AS n FROM l7_flow_log WHERE ip_1 != '10.9.9.9' GROUP BY 1 ORDER BY 1`, '--db', file, '--format', 'jsonl']);
    t.is(q.code, 0, q.stderr);
    const byMethod: Record<string, number> = {};
    for (const line of q.stdout.trim().split('\n')) {
      const r = JSON.parse(line) as { request_type: string; n: number };
      byMethod[r.request_type] = r.n;
    }
    const expected: Record<string, number> = {};
    for (const [m] of tsharkFields(corpusFile('http1/zeek/methods.pcap'), ['http.request.method'], { filter: 'http.request' })) expected[m] = (expected[m] ?? 0) + 1;
    t.deepEqual(byMethod, expected, 'requests by method, as tshark counts them');

    const refused = await flowtapCli(['query', 'DELETE FROM l7_flow_log', '--db', file]);
    t.is(refused.code, 2);
    t.regex(refused.stderr, /only statements that return rows|readonly/i);

    // Top talkers: the client/server/port that tshark sees move the most bytes comes first.
    const convs = tsharkConversations(corpusFile('http1/zeek/methods.pcap'), 'tcp');
    const totals = new Map<string, number>();
    const ep = (s: string) => [s.slice(0, s.lastIndexOf(':')), Number(s.slice(s.lastIndexOf(':') + 1))] as const;
    for (const [key, side] of convs) {
      const [a, b] = key.split(' ').slice(1, 3).map(ep);
      const [client, server] = a[1] > b[1] ? [a, b] : [b, a];
      const talker = `${client[0]} ${server[0]}:${server[1]}`;
      totals.set(talker, (totals.get(talker) ?? 0) + side.bytes);
    }
    const [bestConv, bestBytes] = [...totals].sort((a, b) => b[1] - a[1])[0];
    const view = topSnapshot(new Database(file, { readonly: true }), 60, 5);
    const top = Object.fromEntries(view.talkers.columns.map((c, i) => [c, view.talkers.rows[0][i]]));
    t.is(top.bytes, bestBytes);
    t.is(`${top.client} ${top.server}:${top.port}`, bestConv);
    // Most failing endpoints: tshark's 4xx/5xx responses for the busiest failing URI.
    const failures = new Map<string, number>();
    const uriOfFrame = new Map(tsharkFields(corpusFile('http1/zeek/methods.pcap'), ['frame.number', 'http.request.uri'], { filter: 'http.request' }).map(([f, u]) => [f, u]));
    for (const [code, reqIn] of tsharkFields(corpusFile('http1/zeek/methods.pcap'), ['http.response.code', 'http.request_in'], { filter: 'http.response' })) {
      const uri = uriOfFrame.get(reqIn);
      if (uri !== undefined && Number(code) >= 400) failures.set(uri.split('?')[0], (failures.get(uri.split('?')[0]) ?? 0) + 1);
    }
    const failedCol = view.failing.columns.indexOf('failed');
    const topFailed = view.failing.rows.filter((r) => r[view.failing.columns.indexOf('server')] !== '10.9.9.9')[0];
    t.is(topFailed[failedCol], Math.max(...failures.values()));

    const cli = await flowtapCli(['top', '--db', file, '--once']);
    t.is(cli.code, 0, cli.stderr);
    t.regex(cli.stdout, /Top talkers/);
    t.true(cli.stdout.includes(String(bestBytes)), 'the top talker is printed');
  } finally {
    writing = false;
    await writer;
  }
  t.true(extra > 0, 'the writer wrote during the reads');
  await sink.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
