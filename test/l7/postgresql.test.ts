// PostgreSQL: the stage's records against tshark's dissection of every corpus file, and edge
// cases written as small captures.
import test, { ExecutionContext } from 'ava';
import { flowtap } from '../../lib/proto';
import { PG_MAX_SQL } from '../../services/l7/parsers/postgresql';
import { runStage } from './compare';
import { Agreement, decodeAs, hexText, matched, missing, pdmlFields, percent, rel } from './db-tshark';
import { PcapWriter } from './pcap-writer';
import { corpusFiles } from './tshark';

const FILES = corpusFiles('postgresql');
const FULL = 65535;

interface Want {
  requests: string[];
  /** SQLSTATEs of ErrorResponses. */
  codes: string[];
  /** CommandComplete tags. */
  tags: string[];
}

const REQUEST_TYPES: Record<string, string> = {
  'Simple query': 'QUERY', Execute: 'EXECUTE', 'Startup message': 'STARTUP', 'SSL request': 'SSL_REQUEST',
  'GSS encrypt request': 'GSSENC_REQUEST', Termination: 'TERMINATE', 'Cancel request': 'CANCEL',
};

/** Requests as "type resource", error SQLSTATEs and tags, from tshark's PDML. */
function tsharkPg(file: string): Want {
  const fields = pdmlFields(file, 'pgsql', ['pgsql.type', 'pgsql.query', 'pgsql.statement', 'pgsql.portal',
    'pgsql.parameter_name', 'pgsql.parameter_value', 'pgsql.code', 'pgsql.tag'], decodeAs(file));
  const want: Want = { requests: [], codes: [], tags: [] };
  const statements = new Map<string, string>();
  const portals = new Map<string, string>();
  let type = '', stmt = '', portal = '', param = '', user = '', database = '';
  const flush = () => {
    if (type === 'Startup message') want.requests.push(`STARTUP ${user} ${database || user}`);
    type = '';
  };
  for (const f of fields) {
    const k = `${f.stream}:`;
    switch (f.name) {
      case 'pgsql.type':
        flush();
        type = f.show; stmt = ''; portal = ''; user = ''; database = '';
        if (REQUEST_TYPES[type] !== undefined && type !== 'Simple query' && type !== 'Execute' && type !== 'Startup message') {
          want.requests.push(`${REQUEST_TYPES[type]} `);
        }
        break;
      case 'pgsql.query': {
        const sql = hexText(f.value, PG_MAX_SQL);
        if (type === 'Simple query') want.requests.push(`QUERY ${sql}`);
        else if (type === 'Parse') statements.set(k + stmt, sql);
        break;
      }
      case 'pgsql.statement':
        stmt = hexText(f.value);
        if (type === 'Bind') portals.set(k + portal, statements.get(k + stmt) ?? '');
        break;
      case 'pgsql.portal':
        portal = hexText(f.value);
        if (type === 'Execute') want.requests.push(`EXECUTE ${portals.get(k + portal) ?? ''}`);
        break;
      case 'pgsql.parameter_name': param = f.show; break;
      case 'pgsql.parameter_value':
        if (param === 'user') user = hexText(f.value);
        else if (param === 'database') database = hexText(f.value);
        break;
      case 'pgsql.code': if (type === 'Error') want.codes.push(f.show); break;
      case 'pgsql.tag': want.tags.push(f.show); break;
      default:
    }
  }
  flush();
  return want;
}

function stageKeys(logs: flowtap.IL7FlowLog[]): Want {
  const pg = logs.filter((l) => l.l7_protocol === 'PostgreSQL');
  return {
    requests: pg.filter((l) => l.request_type !== '').map((l) => l.request_type === 'STARTUP'
      ? `STARTUP ${l.request_resource} ${l.request_domain}` : `${l.request_type} ${l.request_resource}`),
    codes: pg.filter((l) => /^[0-9A-Z]{5}: /.test(l.response_exception ?? '') && l.response_result !== 'SKIPPED').map((l) => l.response_exception!.slice(0, 5)),
    tags: pg.filter((l) => l.response_status === 'ok' && (l.request_type === 'QUERY' || l.request_type === 'EXECUTE') &&
      l.response_result !== '').map((l) => l.response_result!),
  };
}

const requestRows: Agreement[] = [];
const codeRows: Agreement[] = [];

function compareFile(t: ExecutionContext, file: string): void {
  const want = tsharkPg(file);
  const run = runStage(file, {}, FULL);
  const got = stageKeys(run.logs);
  t.deepEqual(missing(want.requests, got.requests), [], 'every request tshark reads is reported alike');
  t.deepEqual(missing(got.requests, want.requests), [], 'and no other');
  t.deepEqual([...got.codes].sort(), [...want.codes].sort(), 'SQLSTATE of every ErrorResponse');
  // One tag per Execute / single-statement query: the same tags as tshark's CommandCompletes.
  t.deepEqual([...got.tags].sort(), [...want.tags].sort(), 'CommandComplete tags');
  t.is(run.stage.sessionCount, 0);
  requestRows.push({ file: rel(file), tshark: want.requests.length, stage: got.requests.length, agree: matched(want.requests, got.requests) });
  codeRows.push({ file: rel(file), tshark: want.codes.length + want.tags.length, stage: got.codes.length + got.tags.length,
    agree: matched(want.codes, got.codes) + matched(want.tags, got.tags) });
  const cut = runStage(file).logs.filter((l) => l.l7_protocol === 'PostgreSQL');
  t.log(`${rel(file)}: tshark ${want.requests.length} requests, stage ${got.requests.length}; errors ${want.codes.length}; ` +
    `tags ${want.tags.length}; with 1024-byte payloads ${cut.filter((l) => l.response_status === 'unknown').length} answers lost in the cut`);
}

test('the PostgreSQL corpus is there', (t) => {
  t.true(FILES.length >= 7);
});

for (const file of FILES) test.serial(`PostgreSQL equals tshark: ${rel(file)}`, (t) => compareFile(t, file));

test.serial('PostgreSQL agreement over the corpus is at least 99 %', (t) => {
  const req = percent(requestRows), codes = percent(codeRows);
  t.log(`requests ${req.toFixed(2)} %, SQLSTATEs and tags ${codes.toFixed(2)} %`);
  for (const r of requestRows) t.log(`| ${r.file} | ${r.tshark} | ${r.stage} | ${r.agree} |`);
  t.is(requestRows.length, FILES.length);
  t.true(req >= 99);
  t.true(codes >= 99);
});

test('psql-login-fail: the failed login is one STARTUP answered by 28P01', (t) => {
  const run = runStage(corpusFiles('postgresql/zeek/psql-login-fail.pcap')[0]);
  const [log] = run.logs.filter((l) => l.l7_protocol === 'PostgreSQL');
  t.is(log.request_type, 'STARTUP');
  t.is(log.response_status, 'client_error');
  t.regex(log.response_exception!, /^28P01: password authentication failed/);
  t.is(log.response_result, 'FATAL');
});

// --- edge cases -------------------------------------------------------------------------------

const C = '10.4.0.1', S = '10.4.0.2';

function msg(type: string, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const h = Buffer.alloc(5);
  h[0] = type.charCodeAt(0);
  h.writeUInt32BE(b.length + 4, 1);
  return Buffer.concat([h, b]);
}
const z = (s: string) => s + '\0';
const query = (sql: string) => msg('Q', z(sql));
const parse = (name: string, sql: string) => msg('P', Buffer.concat([Buffer.from(z(name) + z(sql)), Buffer.alloc(2)]));
const bind = (portal: string, name: string) => msg('B', Buffer.concat([Buffer.from(z(portal) + z(name)), Buffer.alloc(6)]));
const execute = (portal: string) => msg('E', Buffer.concat([Buffer.from(z(portal)), Buffer.alloc(4)]));
const sync = () => msg('S', '');
const complete = (tag: string) => msg('C', z(tag));
const ready = () => msg('Z', 'I');
const error = (code: string, text: string) => msg('E', `SERROR\0VERROR\0C${code}\0M${text}\0\0`);
const parseComplete = () => msg('1', ''), bindComplete = () => msg('2', '');

test('simple and extended queries, errors, batches split and merged; tshark agrees', (t) => {
  const w = new PcapWriter();
  const big = query('SELECT ' + 'x, '.repeat(200) + '1');
  const batch = Buffer.concat([parse('s1', 'SELECT $1::int'), bind('', 's1'), execute(''), bind('p2', 's1'), execute('p2'), sync()]);
  w.tcp(C, 41001, S, 5432)
    .c(query('SELECT 1')).s(Buffer.concat([complete('SELECT 1'), ready()]))
    .c(big.subarray(0, 100)).c(big.subarray(100)).s(complete('SELECT 1')).s(ready()) // split query, split answer
    .c(query('SELEC')).s(Buffer.concat([error('42601', 'syntax error at or near "SELEC"'), ready()]))
    .c(batch.subarray(0, 20)).c(batch.subarray(20))
    .s(Buffer.concat([parseComplete(), bindComplete(), complete('SELECT 1'), bindComplete(), complete('SELECT 1'), ready()]))
    // An error in a batch: the server skips the rest up to Sync.
    .c(Buffer.concat([bind('', 'nope'), execute(''), bind('', 's1'), execute(''), sync()]))
    .s(Buffer.concat([error('26000', 'prepared statement "nope" does not exist'), ready()]))
    .c(msg('X', ''));
  const file = w.save('pg-edges.pcap');
  const want = tsharkPg(file);
  const run = runStage(file);
  const got = stageKeys(run.logs);
  t.deepEqual(got.requests, want.requests);
  t.deepEqual(got.codes, want.codes);
  const pg = run.logs.filter((l) => l.l7_protocol === 'PostgreSQL');
  t.deepEqual(pg.map((l) => `${l.request_type}|${l.response_status}|${l.response_result}`), [
    'QUERY|ok|SELECT 1', 'QUERY|ok|SELECT 1', 'QUERY|client_error|ERROR',
    'EXECUTE|ok|SELECT 1', 'EXECUTE|ok|SELECT 1',
    'EXECUTE|client_error|ERROR', 'EXECUTE|client_error|SKIPPED', 'TERMINATE|ok|',
  ]);
  t.is(pg[3].request_resource, 'SELECT $1::int');
  t.is(pg[4].request_resource, 'SELECT $1::int');
  t.is(pg[6].request_resource, 'SELECT $1::int');
  t.regex(pg[2].response_exception!, /^42601: syntax error/);
  t.is(run.stage.sessionCount, 0);
});

test('startup with SSL refused, then a plain startup; mid-stream start', (t) => {
  const w = new PcapWriter();
  const ssl = Buffer.alloc(8);
  ssl.writeUInt32BE(8, 0);
  ssl.writeUInt32BE(80877103, 4);
  const params = Buffer.from('user\0alice\0database\0shop\0\0');
  const startup = Buffer.alloc(8);
  startup.writeUInt32BE(8 + params.length, 0);
  startup.writeUInt32BE(196608, 4);
  const authOk = msg('R', Buffer.alloc(4));
  w.tcp(C, 41002, S, 5432).c(ssl).s('N').c(Buffer.concat([startup, params]))
    .s(Buffer.concat([authOk, msg('S', 'client_encoding\0UTF8\0'), msg('K', Buffer.alloc(8)), ready()]));
  // Mid-stream: the tail of some answer, then a query.
  w.tcp(C, 41003, S, 5432).s(Buffer.concat([msg('D', Buffer.alloc(6)), complete('SELECT 9'), ready()]))
    .c(query('SELECT 2')).s(Buffer.concat([complete('SELECT 1'), ready()]));
  const file = w.save('pg-startup.pcap');
  const run = runStage(file);
  const pg = run.logs.filter((l) => l.l7_protocol === 'PostgreSQL');
  t.deepEqual(stageKeys(run.logs).requests, tsharkPg(file).requests);
  const line = (l: flowtap.IL7FlowLog) => `${l.request_type}|${l.request_domain}|${l.request_resource}|${l.response_status}|${l.response_result}`;
  t.true(pg.map(line).includes('SSL_REQUEST|||ok|N'));
  t.true(pg.map(line).includes('STARTUP|shop|alice|ok|'));
  t.true(pg.map(line).includes('QUERY||SELECT 2|ok|SELECT 1'));
});

test('trace context from a sqlcommenter comment, on Query and on Execute', (t) => {
  const w = new PcapWriter();
  const sql = "SELECT $1 /*traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'*/";
  w.tcp(C, 41004, S, 5432)
    .c(query('SELECT 1 /*x-request-id=\'r1\'*/')).s(Buffer.concat([complete('SELECT 1'), ready()]))
    .c(Buffer.concat([parse('', sql), bind('', ''), execute(''), sync()]))
    .s(Buffer.concat([parseComplete(), bindComplete(), complete('SELECT 1'), ready()]));
  const file = w.save('pg-trace.pcap');
  const pg = runStage(file).logs.filter((l) => l.l7_protocol === 'PostgreSQL');
  t.deepEqual(stageKeys(pg).requests, tsharkPg(file).requests);
  t.is(pg[0].x_request_id, 'r1');
  t.is(pg[1].trace_id, '0af7651916cd43dd8448eb211c80319c');
  t.is(pg[1].span_id, 'b7ad6b7169203331');
});
