// MySQL: the stage's records against tshark's dissection of every corpus file, and edge cases
// written as small captures.
import test, { ExecutionContext } from 'ava';
import { flowtap } from '../../lib/proto';
import { MYSQL_COMMAND_NAMES, MYSQL_MAX_SQL } from '../../services/l7/parsers/mysql';
import { runStage } from './compare';
import { Agreement, decodeAs, hexText, matched, missing, pdmlFields, percent, rel } from './db-tshark';
import { PcapWriter } from './pcap-writer';
import { corpusFiles, tsharkFields } from './tshark';

const FILES = corpusFiles('mysql');
/** Full payloads, as tshark sees them; the 1024-byte cut of the capture stage is measured apart. */
const FULL = 65535;

interface Want {
  requests: string[];
  /** Requests tshark flags as invalid commands (its misreadings, see docs/l7/mysql.md). */
  invalid: string[];
  errorCodes: number[];
}

const COM_INIT_DB = 2, COM_FIELD_LIST = 4, COM_STMT_PREPARE = 22;

/** Requests as "type resource" and ERR codes, from tshark's PDML. */
function tsharkMysql(file: string): Want {
  const fields = pdmlFields(file, 'mysql', ['mysql.command', 'mysql.query', 'mysql.schema', 'mysql.table_name',
    'mysql.stmt_id', 'mysql.command.invalid', 'mysql.login_request', 'mysql.user', 'mysql.error_code'], decodeAs(file));
  const want: Want = { requests: [], invalid: [], errorCodes: [] };
  const statements = new Map<string, string>();
  const lastPrepare = new Map<number, string>();
  const requestFrames = new Set<number>();
  for (const f of fields) if (f.name === 'mysql.command' || f.name === 'mysql.login_request') requestFrames.add(f.frame);
  interface Req { cmd: number; resource: string; invalid: boolean; login: boolean; user: boolean }
  const reqs: Req[] = [];
  let cur: Req | undefined;
  for (const f of fields) {
    switch (f.name) {
      case 'mysql.command':
        cur = { cmd: Number(f.show), resource: '', invalid: false, login: false, user: false };
        reqs.push(cur);
        break;
      case 'mysql.login_request':
        cur = { cmd: -1, resource: '', invalid: false, login: true, user: false };
        reqs.push(cur);
        break;
      case 'mysql.user':
        if (cur?.login) { cur.resource = hexText(f.value); cur.user = true; }
        break;
      case 'mysql.query':
        if (cur !== undefined && requestFrames.has(f.frame)) {
          cur.resource = hexText(f.value, MYSQL_MAX_SQL);
          if (cur.cmd === COM_STMT_PREPARE) lastPrepare.set(f.stream, cur.resource);
        }
        break;
      case 'mysql.schema':
        if (cur?.cmd === COM_INIT_DB) cur.resource = hexText(f.value);
        break;
      case 'mysql.table_name':
        if (cur?.cmd === COM_FIELD_LIST) cur.resource = hexText(f.value);
        break;
      case 'mysql.stmt_id':
        if (!requestFrames.has(f.frame)) statements.set(`${f.stream}:${f.show}`, lastPrepare.get(f.stream) ?? '');
        else if (cur !== undefined) cur.resource = statements.get(`${f.stream}:${f.show}`) ?? '';
        break;
      case 'mysql.command.invalid':
        if (cur !== undefined) cur.invalid = true;
        break;
      case 'mysql.error_code':
        want.errorCodes.push(Number(f.show));
        break;
      default:
    }
  }
  for (const r of reqs) {
    if (r.login && r.resource === '') continue; // an SSL request: TLS follows
    const key = r.login ? `LOGIN ${r.resource}` : `${MYSQL_COMMAND_NAMES[r.cmd] ?? `COM_${r.cmd}`} ${r.resource}`;
    (r.invalid ? want.invalid : want.requests).push(key);
  }
  return want;
}

function stageKeys(logs: flowtap.IL7FlowLog[]): { requests: string[]; errorCodes: number[] } {
  const my = logs.filter((l) => l.l7_protocol === 'MySQL');
  return {
    requests: my.filter((l) => l.request_type !== '').map((l) => `${l.request_type} ${l.request_resource}`),
    errorCodes: my.filter((l) => l.response_code != null).map((l) => l.response_code!),
  };
}

const requestRows: Agreement[] = [];
const codeRows: Agreement[] = [];

function compareFile(t: ExecutionContext, file: string): void {
  const want = tsharkMysql(file);
  const run = runStage(file, {}, FULL);
  const got = stageKeys(run.logs);
  // The stage's requests that tshark does not read are among those it flags as invalid commands
  // (a compressed packet read as uncompressed; auth data read as a command: no request at all).
  const extra = missing(got.requests, want.requests);
  t.true(extra.length <= want.invalid.length, `requests tshark does not read: ${JSON.stringify(extra)} vs ${JSON.stringify(want.invalid)}`);
  t.deepEqual(missing(want.requests, got.requests), [], 'every request tshark reads is reported alike');
  t.deepEqual([...got.errorCodes].sort(), [...want.errorCodes].sort(), 'ERR codes');
  t.is(run.stage.sessionCount, 0);
  // Figures over the requests tshark reads (its invalid ones and their counterparts left out).
  requestRows.push({ file: rel(file), tshark: want.requests.length, stage: got.requests.length - extra.length, agree: matched(want.requests, got.requests) });
  codeRows.push({ file: rel(file), tshark: want.errorCodes.length, stage: got.errorCodes.length, agree: matched(want.errorCodes.map(String), got.errorCodes.map(String)) });
  const cut = stageKeys(runStage(file).logs);
  t.log(`${rel(file)}: tshark ${want.requests.length} requests (+${want.invalid.length} invalid), stage ${got.requests.length}; ` +
    `ERR ${want.errorCodes.length}/${got.errorCodes.length}; with 1024-byte payloads: ${matched(want.requests, cut.requests)} requests agree`);
}

test('the MySQL corpus is there', (t) => {
  t.true(FILES.length >= 8);
});

for (const file of FILES) test.serial(`MySQL equals tshark: ${rel(file)}`, (t) => compareFile(t, file));

test.serial('MySQL agreement over the corpus is at least 99 %', (t) => {
  const req = percent(requestRows), codes = percent(codeRows);
  t.log(`requests ${req.toFixed(2)} %, ERR codes ${codes.toFixed(2)} %`);
  for (const r of requestRows) t.log(`| ${r.file} | ${r.tshark} | ${r.stage} | ${r.agree} |`);
  t.true(requestRows.length === FILES.length);
  t.true(req >= 99);
  t.true(codes >= 99);
});

// --- edge cases -------------------------------------------------------------------------------

const C = '10.3.0.1', S = '10.3.0.2';

function packet(seq: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUIntLE(payload.length, 0, 3);
  h[3] = seq;
  return Buffer.concat([h, payload]);
}
const cmd = (code: number, text = '') => packet(0, Buffer.concat([Buffer.from([code]), Buffer.from(text)]));
const ok = (seq: number, affected = 0) => packet(seq, Buffer.from([0, affected, 0, 2, 0, 0, 0]));
const eof = (seq: number) => packet(seq, Buffer.from([0xfe, 0, 0, 2, 0]));
function err(seq: number, code: number, state: string, text: string): Buffer {
  const b = Buffer.alloc(3);
  b[0] = 0xff;
  b.writeUInt16LE(code, 1);
  return packet(seq, Buffer.concat([b, Buffer.from('#' + state + text)]));
}
function lenencStr(s: string): Buffer {
  return Buffer.concat([Buffer.from([s.length]), Buffer.from(s)]);
}
function columnDef(seq: number, name: string): Buffer {
  return packet(seq, Buffer.concat([lenencStr('def'), lenencStr('test'), lenencStr('t'), lenencStr('t'), lenencStr(name),
    lenencStr(name), Buffer.from([0x0c, 0x21, 0, 0xff, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0])]));
}
function resultSet(rows: string[][]): Buffer {
  const cols = rows[0].length;
  const parts = [packet(1, Buffer.from([cols]))];
  let seq = 2;
  for (let i = 0; i < cols; i++) parts.push(columnDef(seq++, `c${i}`));
  parts.push(eof(seq++));
  for (const r of rows) parts.push(packet(seq++, Buffer.concat(r.map(lenencStr))));
  parts.push(eof(seq++));
  return Buffer.concat(parts);
}

test('split and batched packets, result sets, ERR, mid-stream start; tshark agrees', (t) => {
  const w = new PcapWriter();
  const q1 = cmd(3, 'SELECT a, b FROM t');
  const rs = resultSet([['1', 'x'], ['2', 'y'], ['3', 'z']]);
  w.tcp(C, 40001, S, 3306)
    .c(cmd(3, 'SELEC oops'))
    .s(err(1, 1064, '42000', 'You have an error in your SQL syntax'))
    .c(q1.subarray(0, 3)).c(q1.subarray(3, 10)).c(q1.subarray(10)) // a command over three segments
    .s(rs.subarray(0, 30)).s(rs.subarray(30)) // a result set over two
    .c(Buffer.concat([cmd(14), cmd(14)])).s(Buffer.concat([ok(1), ok(1)])) // two in one segment
    .c(cmd(3, 'UPDATE t SET a = 1')).s(ok(1, 3))
    .c(cmd(1));
  const file = w.save('mysql-edges.pcap');
  const want = tsharkMysql(file);
  const run = runStage(file);
  const got = stageKeys(run.logs);
  t.deepEqual(got.requests, want.requests);
  t.deepEqual(got.errorCodes, [1064]);
  t.deepEqual(want.errorCodes, [1064]);
  const my = run.logs.filter((l) => l.l7_protocol === 'MySQL');
  t.is(my[0].response_status, 'client_error');
  t.is(my[0].response_exception, 'You have an error in your SQL syntax');
  t.is(my[1].response_result, '3 rows');
  t.is(my[1].response_status, 'ok');
  t.deepEqual([my[2].request_type, my[3].request_type], ['COM_PING', 'COM_PING']);
  t.is(my[3].response_status, 'ok');
  t.is(my[4].response_result, '3 affected');
  t.is(my[5].request_type, 'COM_QUIT');
  t.is(my[5].response_status, 'ok');
  t.is(run.stage.sessionCount, 0);
});

test('prepared statements: EXECUTE and CLOSE name the SQL prepared under their id', (t) => {
  const w = new PcapWriter();
  const prepOk = Buffer.concat([packet(1, Buffer.from([0, 7, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0])),
    columnDef(2, 'p'), eof(3), columnDef(4, 'c0'), eof(5)]);
  const execBody = Buffer.concat([Buffer.from([23, 7, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0]), Buffer.from([5, 0, 0, 0])]);
  w.tcp(C, 40002, S, 3306)
    .c(cmd(22, 'SELECT c0 FROM t WHERE id = ?')).s(prepOk)
    .c(packet(0, execBody)).s(resultSet([['v']]))
    .c(packet(0, Buffer.from([25, 7, 0, 0, 0])))
    .c(cmd(3, 'SELECT 1')).s(resultSet([['1']]));
  const file = w.save('mysql-stmt.pcap');
  const run = runStage(file);
  const my = run.logs.filter((l) => l.l7_protocol === 'MySQL');
  t.deepEqual(my.map((l) => `${l.request_type} ${l.request_resource} ${l.response_result}`), [
    'COM_STMT_PREPARE SELECT c0 FROM t WHERE id = ? statement 7',
    'COM_STMT_EXECUTE SELECT c0 FROM t WHERE id = ? 1 rows',
    'COM_STMT_CLOSE SELECT c0 FROM t WHERE id = ? ',
    'COM_QUERY SELECT 1 1 rows',
  ]);
  t.deepEqual(stageKeys(run.logs).requests, tsharkMysql(file).requests);
});

test('a capture starting mid-connection pairs from the first whole command', (t) => {
  const w = new PcapWriter();
  const rs = resultSet([['1']]);
  const conv = w.tcp(C, 40003, S, 3306);
  // The tail of an earlier answer, then a new exchange.
  conv.s(rs.subarray(12)).c(cmd(3, 'SELECT 2')).s(resultSet([['2'], ['3']]));
  const run = runStage(w.save('mysql-mid.pcap'));
  const my = run.logs.filter((l) => l.l7_protocol === 'MySQL');
  t.deepEqual(my.map((l) => `${l.request_type} ${l.response_result}`), ['COM_QUERY 2 rows']);
});

test('trace context from a sqlcommenter comment', (t) => {
  const w = new PcapWriter();
  const sql = "SELECT 1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',x-request-id='req%2042'*/";
  w.tcp(C, 40004, S, 3306).c(cmd(3, sql)).s(resultSet([['1']]));
  const file = w.save('mysql-trace.pcap');
  const [log] = runStage(file).logs.filter((l) => l.l7_protocol === 'MySQL');
  t.deepEqual(tsharkMysql(file).requests, [`COM_QUERY ${sql}`]);
  t.is(log.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
  t.is(log.span_id, '00f067aa0ba902b7');
  t.is(log.x_request_id, 'req 42');
});

test('compressed protocol mid-stream: the query tshark reads as COM_SLEEP is read, and its zlib answer', (t) => {
  const file = corpusFiles('mysql/deepflow/mysql-compressed-response.pcap')[0];
  const [[clientHex]] = tsharkFields(file, 'tcp.dstport == 30130 && tcp.len > 0', ['tcp.payload']);
  const [log] = runStage(file).logs.filter((l) => l.l7_protocol === 'MySQL');
  t.is(log.request_type, 'COM_QUERY');
  // The SQL is the client segment after the 7-byte compressed and 4-byte packet headers.
  t.is(log.request_resource, Buffer.from(clientHex, 'hex').subarray(12).toString('utf8'));
  t.is(log.response_status, 'ok');
  t.regex(log.response_result!, /^[1-9]\d* rows$/);
  t.deepEqual(tsharkMysql(file).invalid, ['COM_SLEEP ']);
});
