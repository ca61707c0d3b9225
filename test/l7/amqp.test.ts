// AMQP 0-9-1 parser: the corpus against tshark's dissection, then edge cases on built frames.
import test from 'ava';
import * as path from 'node:path';
import { PdmlMessage, agreement, field, pdmlMessages, runFile, runMessaging, tableRow, tcpFlow } from './messaging-compare';
import { CORPUS, corpusFiles } from './tshark';

const FILES = corpusFiles('amqp');

/** "Class: Exchange (40)" + "Method: Declare-Ok (11)" -> "Exchange.Declare-Ok". */
function methodName(m: PdmlMessage): string {
  const c = m.fields.find((f) => f[0] === 'amqp.method.class')?.[1] ?? '';
  const me = m.fields.find((f) => f[0] === 'amqp.method.method')?.[1] ?? '';
  return `${/: ([\w-]+)/.exec(c)?.[1]}.${/: ([\w-]+)/.exec(me)?.[1]}`;
}

/** What the method names, from tshark's argument fields: the queue, else exchange and routing key. */
function resourceOf(m: PdmlMessage): string {
  const q = field(m, 'amqp.method.arguments.queue');
  if (q !== undefined) return q;
  const ex = field(m, 'amqp.method.arguments.exchange') ?? '';
  const rk = field(m, 'amqp.method.arguments.routing_key') ?? '';
  return ex === '' ? rk : rk === '' ? ex : `${ex}/${rk}`;
}

test('the AMQP corpus is there', (t) => { t.true(FILES.length >= 3); });

for (const file of FILES) {
  test(`AMQP equals tshark: ${path.relative(CORPUS, file)}`, (t) => {
    const want = pdmlMessages(file, 'amqp').filter((m) => field(m, 'amqp.type') === '1');
    const wantReq: string[] = [], wantResp: string[] = [], wantCodes: string[] = [];
    for (const m of want) {
      const name = methodName(m);
      const code = field(m, 'amqp.method.arguments.reply_code');
      if (code !== undefined) wantCodes.push(`${name} ${code}`);
      if (/-Ok$|\.Get-Empty$/.test(name)) wantResp.push(name);
      else wantReq.push(`${name} ${resourceOf(m)}`);
    }
    const run = runFile('AMQP', file);
    const rel = path.relative(CORPUS, file);
    const reqs = run.messages.filter((m) => m.kind === 'request');
    const a = agreement(reqs.map((m) => `${m.requestType} ${m.requestResource}`), wantReq);
    t.log(tableRow(rel, 'requests (class.method, resource)', a));
    t.deepEqual([a.missing, a.extra], [[], []]);
    // A Close that answers a pending request also yields that request's (error) response.
    const resps = run.messages.filter((m) => m.kind === 'response' && !m.requestType.endsWith('.Close'));
    const b = agreement(resps.map((m) => m.requestType), wantResp);
    t.log(tableRow(rel, 'responses (-Ok methods)', b));
    t.deepEqual([b.missing, b.extra], [[], []]);
    const c = agreement(reqs.filter((m) => m.responseCode !== undefined).map((m) => `${m.requestType} ${m.responseCode}`), wantCodes);
    t.log(tableRow(rel, 'Close reply codes', c));
    t.deepEqual([c.missing, c.extra], [[], []]);
    // Logs: Close-Ok answers carry the Close's code; requests a Close refused carry it too.
    const logs = run.logs.filter((l) => l.l7_protocol === 'AMQP');
    for (const l of logs.filter((x) => x.request_type?.endsWith('.Close') && x.response_status !== 'timeout')) {
      t.true(wantCodes.includes(`${l.request_type} ${l.response_code}`));
    }
    const refused = want.filter((m) => methodName(m).endsWith('.Close') && field(m, 'amqp.method.arguments.reply_code') !== '200');
    t.is(logs.filter((l) => !l.request_type?.endsWith('.Close') && (l.response_code ?? 200) !== 200).length, refused.length);
  });
}

// --- built frames ---
function frame(type: number, channel: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(7); h[0] = type; h.writeUInt16BE(channel, 1); h.writeUInt32BE(payload.length, 3);
  return Buffer.concat([h, payload, Buffer.from([0xce])]);
}
function method(channel: number, cls: number, m: number, args: Buffer): Buffer {
  const h = Buffer.alloc(4); h.writeUInt16BE(cls); h.writeUInt16BE(m, 2);
  return frame(1, channel, Buffer.concat([h, args]));
}
function sstr(s: string): Buffer { return Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]); }
const HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');

test('a refused Queue.Declare: the Channel.Close reply code answers it, then Close-Ok closes', (t) => {
  const declare = method(3, 50, 10, Buffer.concat([Buffer.from([0, 0]), sstr('jobs'), Buffer.from([0]), Buffer.from([0, 0, 0, 0])]));
  const close = method(3, 20, 40, Buffer.concat([Buffer.from([0x01, 0x94]), sstr('NOT_FOUND - no queue'), Buffer.from([0, 50, 0, 10])]));
  const run = runMessaging('AMQP', tcpFlow([[true, Buffer.concat([HEADER, declare])], [false, close], [true, method(3, 20, 41, Buffer.alloc(0))]]));
  const logs = run.logs.filter((l) => l.l7_protocol === 'AMQP');
  const d = logs.find((l) => l.request_type === 'Queue.Declare');
  t.is(d?.request_resource, 'jobs');
  t.is(d?.response_code, 404);
  t.is(d?.response_status, 'client_error');
  t.is(d?.response_exception, 'NOT_FOUND - no queue');
  const c = logs.find((l) => l.request_type === 'Channel.Close');
  t.is(c?.response_code, 404);
  t.is(run.stage.sessionCount, 0);
});

test('frames split across segments and several per segment; content frames are skipped', (t) => {
  const pub = method(1, 60, 40, Buffer.concat([Buffer.from([0, 0]), sstr('ex'), sstr('rk'), Buffer.from([0])]));
  const hdr = frame(2, 1, Buffer.alloc(14)), body = frame(3, 1, Buffer.from('hello'));
  const all = Buffer.concat([pub, hdr, body, pub]);
  const run = runMessaging('AMQP', tcpFlow([[true, HEADER], [true, all.subarray(0, 10)], [true, all.subarray(10, 40)], [true, all.subarray(40)]]));
  const logs = run.logs.filter((l) => l.l7_protocol === 'AMQP');
  t.deepEqual(logs.map((l) => `${l.request_type} ${l.request_resource} ${l.response_status}`), ['Basic.Publish ex/rk ok', 'Basic.Publish ex/rk ok']);
});

test('mid-stream start on a method frame; a bad frame end is a counted parse error', (t) => {
  const ok = method(1, 60, 21, sstr('ctag'));
  const broken = Buffer.from(ok); broken[broken.length - 1] = 0;
  const consume = (q: string) => method(1, 60, 20, Buffer.concat([Buffer.from([0, 0]), sstr(q)]));
  const run = runMessaging('AMQP', tcpFlow([[true, consume('q')], [false, ok], [true, consume('r')], [false, broken], [true, consume('s')], [false, ok]]));
  t.true(run.stage.drops.parse_error >= 1);
  const logs = run.logs.filter((l) => l.l7_protocol === 'AMQP').map((l) => `${l.request_resource} ${l.response_status}`);
  // The broken answer is lost; the next Consume-Ok answers the oldest open Consume of the channel
  // (as the stage answers repeated ids in order), so the last one is left to time out.
  t.deepEqual(logs.sort(), ['q ok', 'r ok', 's timeout']);
});

test('no-wait declares and consumes get no -Ok: one-way, not a timeout', (t) => {
  const qDeclare = method(1, 50, 10, Buffer.concat([Buffer.from([0, 0]), sstr('jobs'), Buffer.from([0x10]), Buffer.from([0, 0, 0, 0])]));
  const xDeclare = method(1, 40, 10, Buffer.concat([Buffer.from([0, 0]), sstr('ex'), sstr('topic'), Buffer.from([0x10]), Buffer.from([0, 0, 0, 0])]));
  const consume = method(1, 60, 20, Buffer.concat([Buffer.from([0, 0]), sstr('jobs'), sstr('tag'), Buffer.from([0x08]), Buffer.from([0, 0, 0, 0])]));
  const waited = method(1, 50, 10, Buffer.concat([Buffer.from([0, 0]), sstr('other'), Buffer.from([0x02]), Buffer.from([0, 0, 0, 0])]));
  const run = runMessaging('AMQP', tcpFlow([[true, Buffer.concat([HEADER, qDeclare, xDeclare, consume, waited])]]));
  const logs = run.logs.filter((l) => l.l7_protocol === 'AMQP').map((l) => `${l.request_type} ${l.request_resource} ${l.response_status}`);
  t.deepEqual(logs.sort(), ['Basic.Consume jobs ok', 'Exchange.Declare ex ok', 'Queue.Declare jobs ok', 'Queue.Declare other timeout']);
});
