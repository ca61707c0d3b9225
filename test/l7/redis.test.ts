// Redis: the stage's records against tshark's dissection of every corpus file, and edge cases
// written as small captures.
import test, { ExecutionContext } from 'ava';
import { flowtap } from '../../lib/proto';
import { REDIS_MAX_RESOURCE, RedisFlowState, redisParser } from '../../services/l7/parsers/redis';
import { L7Message, ParseContext } from '../../services/l7/parser';
import { runStage } from './compare';
import { Agreement, decodeAs, matched, missing, pdmlFields, percent, rel } from './db-tshark';
import { PcapWriter } from './pcap-writer';
import { corpusFiles, tsharkFields } from './tshark';

const FILES = corpusFiles('redis');
/** Server ports of the corpus (6379, and the decode-as port of django-cloud). */
const SERVER_PORTS = new Set([6379, 10625]);

interface Want {
  /** Commands as "NAME args", from the arrays of bulk strings tshark dissects. */
  requests: string[];
  /** Inline commands: lines of client payloads tshark leaves undissected. */
  inline: string[];
  errors: string[];
}

function tsharkRedis(file: string): Want {
  const opts = decodeAs(file);
  const fields = pdmlFields(file, 'resp', ['resp.array.length', 'resp.bulk_string.value', 'resp.error'], opts);
  const want: Want = { requests: [], inline: [], errors: [] };
  let args: string[] = [], left = 0;
  const done = () => {
    if (args.length === 0) return;
    const [name, ...rest] = args;
    want.requests.push(`${name.toUpperCase()} ${[name.toUpperCase(), ...rest].join(' ').slice(0, REDIS_MAX_RESOURCE)}`);
    args = [];
  };
  for (const f of fields) {
    if (f.name === 'resp.error') { want.errors.push(f.show); continue; }
    if (SERVER_PORTS.has(f.srcPort)) continue;
    if (f.name === 'resp.array.length') {
      if (left > 0) continue; // nested: not a command
      done();
      left = Number(f.show);
    } else if (left > 0) {
      args.push(Buffer.from(f.value, 'hex').toString('latin1'));
      if (--left === 0) done();
    }
  }
  done();
  const ports = [...SERVER_PORTS].map((p) => `tcp.dstport == ${p}`).join(' || ');
  for (const [hex] of tsharkFields(file, `tcp.len > 0 && !resp.array && (${ports})`, ['tcp.payload'], opts)) {
    for (const line of Buffer.from(hex, 'hex').toString('latin1').split('\r\n')) {
      const m = /^([A-Za-z]+)(.*)$/.exec(line);
      if (m) want.inline.push(`${m[1].toUpperCase()} ${(m[1].toUpperCase() + m[2]).slice(0, REDIS_MAX_RESOURCE)}`);
    }
  }
  return want;
}

function stageKeys(logs: flowtap.IL7FlowLog[]): { requests: string[]; errors: string[]; logs: flowtap.IL7FlowLog[] } {
  const r = logs.filter((l) => l.l7_protocol === 'Redis');
  return {
    requests: r.filter((l) => l.request_type !== '').map((l) => `${l.request_type} ${l.request_resource}`),
    errors: r.filter((l) => (l.response_exception ?? '') !== '').map((l) => l.response_exception!),
    logs: r,
  };
}

const rows: Agreement[] = [];
const errorRows: Agreement[] = [];

function compareFile(t: ExecutionContext, file: string): void {
  const want = tsharkRedis(file);
  const run = runStage(file);
  const got = stageKeys(run.logs);
  const all = [...want.requests, ...want.inline];
  t.deepEqual(missing(all, got.requests), [], 'every command is reported alike');
  t.deepEqual(missing(got.requests, all), [], 'and no other');
  t.deepEqual([...got.errors].sort(), [...want.errors].sort(), 'error replies');
  // Pushes and pub/sub messages do not shift the pairing: every reply has its command.
  t.deepEqual(got.logs.filter((l) => l.request_type === ''), [], 'no reply without its command');
  t.is(run.stage.sessionCount, 0);
  rows.push({ file: rel(file), tshark: want.requests.length, stage: got.requests.length - want.inline.length, agree: matched(want.requests, got.requests) });
  errorRows.push({ file: rel(file), tshark: want.errors.length, stage: got.errors.length, agree: matched(want.errors, got.errors) });
  t.log(`${rel(file)}: tshark ${want.requests.length} commands (+${want.inline.length} inline it does not dissect), ` +
    `stage ${got.requests.length}; errors ${want.errors.length}/${got.errors.length}; ` +
    `timeouts ${got.logs.filter((l) => l.response_status === 'timeout').length}`);
}

test('the Redis corpus is there', (t) => {
  t.true(FILES.length >= 6);
});

for (const file of FILES) test.serial(`Redis equals tshark: ${rel(file)}`, (t) => compareFile(t, file));

test.serial('Redis agreement over the corpus is at least 99 %', (t) => {
  t.log(`commands ${percent(rows).toFixed(2)} %, errors ${percent(errorRows).toFixed(2)} %`);
  for (const r of rows) t.log(`| ${r.file} | ${r.tshark} | ${r.stage} | ${r.agree} |`);
  t.is(rows.length, FILES.length);
  t.true(percent(rows) >= 99);
  t.true(percent(errorRows) >= 99);
});

test('pubsub.pcap: deliveries are not replies, and every command is answered', (t) => {
  const run = runStage(corpusFiles('redis/zeek/pubsub.pcap')[0]);
  const r = stageKeys(run.logs).logs;
  t.true(r.length > 0);
  for (const l of r) t.not(l.response_status, 'timeout', `${l.request_resource}`);
  const pub = r.find((l) => l.request_type === 'PUBLISH')!;
  t.is(pub.response_result, '2'); // two subscribers got it: tshark's integer reply of that frame
});

// --- edge cases -------------------------------------------------------------------------------

const C = '10.5.0.1', S = '10.5.0.2';

function command(...args: string[]): string {
  return `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('');
}

test('pipelined commands split anywhere, RESP3 replies, errors, pushes', (t) => {
  const w = new PcapWriter();
  const pipeline = command('SET', 'k', 'v') + command('GET', 'k') + command('HGETALL', 'h') + command('GET', 'nope') + command('INCR', 'k');
  const replies = '+OK\r\n$1\r\nv\r\n%2\r\n+f\r\n:1\r\n+g\r\n,2.5\r\n_\r\n' +
    '>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2\r\nhi\r\n' + // a RESP3 push between replies
    '|1\r\n+ttl\r\n:5\r\n-ERR value is not an integer or out of range\r\n';
  const conv = w.tcp(C, 42001, S, 6379);
  for (let i = 0; i < pipeline.length; i += 7) conv.c(pipeline.slice(i, i + 7));
  conv.s(replies.slice(0, 10)).s(replies.slice(10, 40)).s(replies.slice(40));
  conv.c(command('PING')).s('!21\r\nSYNTAX invalid syntax\r\n');
  const file = w.save('redis-edges.pcap');
  const run = runStage(file);
  const got = stageKeys(run.logs);
  // (tshark's RESP dissector does not reassemble commands split this finely: checked by hand.)
  t.deepEqual(got.requests, ['SET SET k v', 'GET GET k', 'HGETALL HGETALL h', 'GET GET nope', 'INCR INCR k', 'PING PING']);
  t.deepEqual(got.logs.map((l) => `${l.request_type}|${l.response_status}|${l.response_result}|${l.response_exception}`), [
    'SET|ok|OK|', 'GET|ok||', 'HGETALL|ok||', 'GET|ok|nil|',
    'INCR|server_error||ERR value is not an integer or out of range', 'PING|server_error||SYNTAX invalid syntax',
  ]);
  t.deepEqual(tsharkRedis(file).errors, ['ERR value is not an integer or out of range']);
});

test('parser: a push and a multi-channel SUBSCRIBE do not take replies; inline commands', (t) => {
  const st: RedisFlowState = redisParser.newFlowState();
  const out: L7Message[] = [];
  const ctx: ParseContext = { protocol: 6, fromClient: true, serverPort: 6379, truncated: false };
  const feed = (fromClient: boolean, s: string) => {
    ctx.fromClient = fromClient;
    const b = Buffer.from(s, 'latin1');
    let p = 0;
    while (p < b.length) {
      const n = redisParser.parse(b, p, b.length, ctx, st, (m) => out.push(m));
      if (n <= 0) break;
      p += n;
    }
  };
  feed(true, command('SUBSCRIBE', 'a', 'b'));
  feed(false, '*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n');
  feed(false, '*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n');
  feed(false, '*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n');
  feed(true, 'PING\r\nPING hello\r\n');
  feed(false, '+PONG\r\n$5\r\nhello\r\n');
  t.deepEqual(out.map((m) => `${m.kind}:${m.requestType || m.responseResult}`), [
    'request:SUBSCRIBE', 'response:', 'request:PING', 'request:PING', 'response:PONG', 'response:',
  ]);
  t.is(st.pushes, 2);
  t.is(out[3].requestResource, 'PING hello');
});
