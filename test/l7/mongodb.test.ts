// MongoDB parser: the corpus against tshark's dissection, then edge cases on built messages.
import test from 'ava';
import * as path from 'node:path';
import { PdmlMessage, agreement, field, pdmlMessages, runFile, runMessaging, tableRow, tcpFlow } from './messaging-compare';
import { CORPUS, corpusFiles } from './tshark';

const FILES = corpusFiles('mongodb');
const DECODE_AS = ['-d', 'tcp.port==3717,mongo', '-d', 'tcp.port==27017,mongo'];

/** The first top-level element of the message's first document: [name, string value or '']. */
function firstElement(m: PdmlMessage): [string, string] {
  const i = m.fields.findIndex((f) => f[0] === 'mongo.element.name');
  if (i < 0) return ['', ''];
  const name = m.fields[i][1].replace(/^Element: /, '');
  const type = m.fields[i + 1]?.[1] ?? '';
  const value = type.startsWith('Type: String') ? m.fields.slice(i).find((f) => f[0] === 'mongo.element.value.string')?.[2] ?? '' : '';
  return [name, value];
}

/** The value of the element named `name` (an int or double), if the message has one. */
function elementNumber(m: PdmlMessage, name: string): string | undefined {
  const i = m.fields.findIndex((f) => f[0] === 'mongo.element.name' && f[1] === `Element: ${name}`);
  if (i < 0) return undefined;
  return m.fields.slice(i + 1).find((f) => f[0] === 'mongo.element.value.int' || f[0] === 'mongo.element.value.double')?.[2];
}

test('the MongoDB corpus is there', (t) => { t.true(FILES.length >= 2); });

for (const file of FILES) {
  test(`MongoDB equals tshark: ${path.relative(CORPUS, file)}`, (t) => {
    const want = pdmlMessages(file, 'mongo', DECODE_AS);
    const wantReq: string[] = [], wantCode: string[] = [];
    for (const m of want) {
      const op = Number(field(m, 'mongo.opcode'));
      const id = Number(field(m, 'mongo.request_id')), to = Number(field(m, 'mongo.response_to'));
      if (op === 1 || (op === 2013 && to !== 0)) {
        const code = elementNumber(m, 'code');
        if (code !== undefined) wantCode.push(`${to} ${Number(code)}`);
        continue;
      }
      const [name, value] = firstElement(m);
      wantReq.push(`${id} ${name} ${value}`);
    }
    const run = runFile('MongoDB', file);
    const rel = path.relative(CORPUS, file);
    const gotReq = run.messages.filter((m) => m.kind === 'request').map((m) => `${m.pairId} ${m.requestType} ${m.requestResource}`);
    const a = agreement(gotReq, wantReq);
    t.log(tableRow(rel, 'requests (id, command, collection)', a));
    t.deepEqual([a.missing, a.extra], [[], []]);
    const gotCode = run.messages.filter((m) => m.kind === 'response' && m.responseCode !== undefined).map((m) => `${m.pairId} ${m.responseCode}`);
    const b = agreement(gotCode, wantCode);
    t.log(tableRow(rel, 'reply error codes', b));
    t.deepEqual([b.missing, b.extra], [[], []]);
    const logs = run.logs.filter((l) => l.l7_protocol === 'MongoDB');
    t.is(logs.length, wantReq.length);
    t.is(logs.filter((l) => l.response_status === 'timeout').length, 0);
  });
}

// --- built messages ---
function cstr(s: string): Buffer { return Buffer.concat([Buffer.from(s), Buffer.from([0])]); }
/** A BSON document from [type, name, encoded value] elements. */
function doc(elems: [number, string, Buffer][]): Buffer {
  const body = Buffer.concat([...elems.map(([ty, n, v]) => Buffer.concat([Buffer.from([ty]), cstr(n), v])), Buffer.from([0])]);
  const h = Buffer.alloc(4); h.writeInt32LE(body.length + 4);
  return Buffer.concat([h, body]);
}
function bstr(s: string): Buffer { const b = cstr(s); const h = Buffer.alloc(4); h.writeInt32LE(b.length); return Buffer.concat([h, b]); }
function i32(v: number): Buffer { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; }
function dbl(v: number): Buffer { const b = Buffer.alloc(8); b.writeDoubleLE(v); return b; }
function opMsg(id: number, to: number, flags: number, sections: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeInt32LE(20 + sections.length); h.writeInt32LE(id, 4); h.writeInt32LE(to, 8); h.writeInt32LE(2013, 12); h.writeUInt32LE(flags, 16);
  return Buffer.concat([h, sections]);
}
const find = (id: number, coll: string) => opMsg(id, 0, 0, Buffer.concat([Buffer.from([0]), doc([[2, 'find', bstr(coll)], [2, '$db', bstr('shop')]])]));

test('an error reply: code, errmsg and ok:0 map to response_code, exception and server_error', (t) => {
  const reply = opMsg(900, 11, 0, Buffer.concat([Buffer.from([0]), doc([[1, 'ok', dbl(0)], [2, 'errmsg', bstr('ns not found')], [16, 'code', i32(26)]])]));
  const run = runMessaging('MongoDB', tcpFlow([[true, find(11, 'orders')], [false, reply]]));
  const l = run.logs.filter((x) => x.l7_protocol === 'MongoDB');
  t.is(l.length, 1);
  t.is(l[0].request_type, 'find');
  t.is(l[0].request_resource, 'orders');
  t.is(l[0].request_domain, 'shop');
  t.is(l[0].response_code, 26);
  t.is(l[0].response_status, 'server_error');
  t.is(l[0].response_exception, 'ns not found');
});

test('pipelined requests in one segment, replies split across segments and out of order', (t) => {
  const ok = (id: number, to: number) => opMsg(id, to, 0, Buffer.concat([Buffer.from([0]), doc([[1, 'ok', dbl(1)]])]));
  const r2 = ok(51, 2), r1 = ok(50, 1);
  const run = runMessaging('MongoDB', tcpFlow([[true, Buffer.concat([find(1, 'a'), find(2, 'b')])],
    [false, Buffer.concat([r2, r1.subarray(0, 7)])], [false, r1.subarray(7, 30)], [false, r1.subarray(30)]]));
  const l = run.logs.filter((x) => x.l7_protocol === 'MongoDB').map((x) => `${x.request_resource} ${x.response_status}`);
  t.deepEqual(l.sort(), ['a ok', 'b ok']);
  t.is(run.stage.sessionCount, 0);
});

test('kind 1 sections are skipped; moreToCome makes a one-way request', (t) => {
  const seq = Buffer.concat([Buffer.from([1]), i32(4 + 10 + 5), cstr('documents'), doc([])]);
  const insert = opMsg(7, 0, 2, Buffer.concat([seq, Buffer.from([0]), doc([[2, 'insert', bstr('logs')], [2, '$db', bstr('x')]])]));
  const run = runMessaging('MongoDB', tcpFlow([[true, insert]]));
  const l = run.logs.filter((x) => x.l7_protocol === 'MongoDB');
  t.is(l.length, 1);
  t.is(l[0].request_type, 'insert');
  t.is(l[0].request_resource, 'logs');
  t.is(l[0].response_status, 'ok');
});

test('a BSON document that lies about its length is read only as far as the bytes go', (t) => {
  const m = find(3, 'c');
  m.writeInt32LE(0x7fffffff, 21); // the body document's length
  const run = runMessaging('MongoDB', tcpFlow([[true, m], [true, find(4, 'd')]]));
  t.true(run.logs.some((l) => l.request_resource === 'd'));
});
