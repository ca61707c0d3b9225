// Memcached: the stage's records against tshark's dissection of every corpus file, and edge cases
// written as small captures.
import test, { ExecutionContext } from 'ava';
import { flowtap } from '../../lib/proto';
import { runStage } from './compare';
import { Agreement, matched, missing, percent, rel } from './db-tshark';
import { PcapWriter } from './pcap-writer';
import { corpusFiles, tshark, tsharkFields } from './tshark';

const FILES = corpusFiles('memcached');
const PORT = 11211;

interface Want {
  /** "command key(s)" of the first command of each client segment (tshark reads no more). */
  requests: string[];
  /** Command lines after the first in client segments: pipelining tshark does not dissect. */
  undissected: number;
  /** Per answer: "hit" (VALUE seen) or the response word (END, STORED, ...). */
  answers: string[];
}

const COMMAND_LINE = /^(get|gets|gat|gats|set|add|replace|append|prepend|cas|delete|incr|decr|touch|stats|version|quit|flush_all|verbosity|mg|ms|md|ma|mn)( |$)/;

function tsharkMemcached(file: string): Want {
  // -T fields (one row per frame) is fast on the 20k-packet file; keys never hold spaces.
  const out = tshark(['-r', file, '-Y', 'memcache', '-T', 'fields', '-E', 'separator=/t', '-E', 'aggregator=/s',
    '-e', 'tcp.srcport', '-e', 'memcache.command', '-e', 'memcache.key', '-e', 'memcache.response']);
  const want: Want = { requests: [], undissected: 0, answers: [] };
  for (const line of out.split('\n')) {
    if (line === '') continue;
    const [port, cmd, keys, word] = line.split('\t');
    if (Number(port) === PORT) want.answers.push(keys !== '' ? 'hit' : word.split(' ')[0]);
    else if (cmd !== '') want.requests.push(`${cmd.split(' ')[0]} ${keys}`);
  }
  for (const [hex] of tsharkFields(file, `tcp.len > 0 && tcp.dstport == ${PORT}`, ['tcp.payload'])) {
    const lines = Buffer.from(hex, 'hex').toString('latin1').split('\r\n').filter((l) => COMMAND_LINE.test(l));
    if (lines.length > 1) want.undissected += lines.length - 1;
  }
  return want;
}

function stageKeys(logs: flowtap.IL7FlowLog[]): { requests: string[]; answers: string[]; logs: flowtap.IL7FlowLog[] } {
  const m = logs.filter((l) => l.l7_protocol === 'Memcached');
  return {
    requests: m.filter((l) => l.request_type !== '').map((l) => `${l.request_type} ${l.request_resource}`),
    answers: m.filter((l) => l.response_status !== 'timeout' && l.request_type !== 'quit')
      .map((l) => (/^\d+ hit$/.test(l.response_result ?? '') ? 'hit' : l.response_result!)),
    logs: m,
  };
}

const rows: Agreement[] = [];
const answerRows: Agreement[] = [];

function compareFile(t: ExecutionContext, file: string): void {
  const want = tsharkMemcached(file);
  const run = runStage(file);
  const got = stageKeys(run.logs);
  t.deepEqual(missing(want.requests, got.requests).slice(0, 5), [], 'every command tshark reads is reported alike');
  t.is(got.requests.length, want.requests.length + want.undissected, 'plus the pipelined ones tshark skips');
  const agreeAnswers = matched(want.answers, got.answers);
  t.true(agreeAnswers >= 0.99 * want.answers.length, `answers: ${agreeAnswers} of ${want.answers.length}`);
  t.deepEqual(got.logs.filter((l) => l.request_type === ''), [], 'no answer without its command');
  t.is(run.stage.sessionCount, 0);
  rows.push({ file: rel(file), tshark: want.requests.length, stage: got.requests.length - want.undissected, agree: matched(want.requests, got.requests) });
  answerRows.push({ file: rel(file), tshark: want.answers.length, stage: got.answers.length, agree: agreeAnswers });
  t.log(`${rel(file)}: tshark ${want.requests.length} commands (+${want.undissected} pipelined it skips), stage ${got.requests.length}; ` +
    `answers tshark ${want.answers.length}, stage ${got.answers.length}, agree ${agreeAnswers}; ` +
    `timeouts ${got.logs.filter((l) => l.response_status === 'timeout').length}`);
}

test('the Memcached corpus is there', (t) => {
  t.true(FILES.length >= 2);
});

for (const file of FILES) test.serial(`Memcached equals tshark: ${rel(file)}`, (t) => compareFile(t, file));

test.serial('Memcached agreement over the corpus is at least 99 %', (t) => {
  t.log(`commands ${percent(rows).toFixed(2)} %, answers ${percent(answerRows).toFixed(2)} %`);
  for (const r of rows) t.log(`| ${r.file} | ${r.tshark} | ${r.stage} | ${r.agree} |`);
  for (const r of answerRows) t.log(`| ${r.file} answers | ${r.tshark} | ${r.stage} | ${r.agree} |`);
  t.is(rows.length, FILES.length);
  t.true(percent(rows) >= 99);
  t.true(percent(answerRows) >= 99);
});

// --- edge cases -------------------------------------------------------------------------------

const C = '10.6.0.1', S = '10.6.0.2';

test('storage data skipped by length, multi-get, noreply, errors, split lines', (t) => {
  const w = new PcapWriter();
  const value = 'x'.repeat(3000); // a data block over several segments, with CRLFs inside it
  const data = 'a\r\nb\r\nEND\r\n';
  w.tcp(C, 43001, S, PORT)
    .c(`set big 0 0 ${value.length}\r\n${value.slice(0, 1000)}`).c(value.slice(1000) + '\r\n').s('STORED\r\n')
    .c(`set tricky 1 0 ${data.length}\r\n${data}\r\n`).s('STORED\r\n')
    .c('get a b tricky\r\n')
    .s(`VALUE b 0 1\r\nB\r\nVALUE tric`).s(`ky 1 ${data.length}\r\n${data}\r\nEND\r\n`) // split in a VALUE line
    .c('set q 0 0 1 noreply\r\nz\r\nincr n 1\r\n').s('NOT_FOUND\r\n')
    .c('bogus\r\n').s('ERROR\r\n')
    .c('set k 0 0 zz\r\n').s('CLIENT_ERROR bad command line format\r\n')
    .c('version\r\n').s('VERSION 1.6.21\r\n');
  const file = w.save('memcached-edges.pcap');
  const run = runStage(file);
  const got = stageKeys(run.logs);
  t.deepEqual(got.logs.map((l) => `${l.request_type} ${l.request_resource}|${l.response_status}|${l.response_result}|${l.response_exception}`), [
    'set big|ok|STORED|', 'set tricky|ok|STORED|', 'get a b tricky|ok|2 hit|', 'set q|ok||', 'incr n|ok|NOT_FOUND|',
    'bogus |client_error||ERROR', 'set k|client_error||CLIENT_ERROR bad command line format',
    'version |ok|VERSION 1.6.21|',
  ]);
  t.is(run.stage.drops.parse_error, 0);
  const want = tsharkMemcached(file);
  t.deepEqual(missing(want.requests, got.requests), []);
});
