// Protocol inference from payloads, against tshark's view of which protocol each conversation
// speaks, over real traffic of every protocol the corpus has.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ProtocolInference } from '../../services/l7/inference';
import { corpusFiles, CORPUS, tsharkFields } from './tshark';

const FILES = [
  ...corpusFiles('http1'), ...corpusFiles('dns'), ...corpusFiles('mixed'), ...corpusFiles('tls'),
  ...corpusFiles('mysql'), ...corpusFiles('redis'), ...corpusFiles('http2'), ...corpusFiles('mqtt'),
  ...corpusFiles('postgresql'), ...corpusFiles('kafka'), ...corpusFiles('ipv6/arkime'),
];

/** The corpus README's decode-as rules (servers on odd ports), by file. */
function decodeAsRules(): Map<string, string> {
  const rules = new Map<string, string>();
  for (const line of fs.readFileSync(path.join(CORPUS, 'README.md'), 'utf8').split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    if (cells.length > 3 && cells[cells.length - 2].includes('==')) rules.set(path.join(CORPUS, cells[1]), cells[cells.length - 2]);
  }
  return rules;
}
const DECODE_AS = decodeAsRules();

/**
 * tshark's protocol per conversation, named as ours: the application protocol when tshark sees
 * one, HTTP/2 before HTTP (an h2c upgrade starts as HTTP/1.1), TLS last (MySQL and PostgreSQL
 * start in plain text and switch to TLS). NetBIOS name service is handled by the caller.
 */
const TSHARK_NAMES: Array<[string, string]> = [
  ['mysql', 'MySQL'], ['pgsql', 'PostgreSQL'], ['resp', 'Redis'], ['memcache', 'Memcached'], ['kafka', 'Kafka'],
  ['mqtt', 'MQTT'], ['mongo', 'MongoDB'], ['amqp', 'AMQP'], ['http2', 'HTTP2'], ['http1', 'HTTP'],
  ['dns', 'DNS'], ['mdns', 'DNS'], ['llmnr', 'DNS'], ['tls', 'TLS'],
];

function expected(protocols: Set<string>): string {
  for (const [theirs, ours] of TSHARK_NAMES) if (protocols.has(theirs)) return ours;
  return '';
}

for (const file of FILES) {
  test(`inference agrees with tshark: ${path.relative(CORPUS, file)}`, (t) => {
    const rule = DECODE_AS.get(file);
    const rows = tsharkFields(file, '(tcp.len > 0 || udp.length > 8) && !icmp && !icmpv6',
      ['tcp.stream', 'udp.stream', 'frame.protocols', 'tcp.payload', 'udp.payload', 'tcp.dstport', 'udp.dstport'], rule ? ['-d', rule] : []);
    const streams = new Map<string, { protocols: Set<string>; inferred: string; tcp: boolean }>();
    const inference = new ProtocolInference();
    let id = 0;
    const ids = new Map<string, number>();
    for (const [ts, us, protos, tp, up, tdp, udp] of rows) {
      const tcp = ts !== '';
      const key = tcp ? `t${ts.split(',')[0]}` : `u${us.split(',')[0]}`;
      let s = streams.get(key);
      if (s === undefined) { s = { protocols: new Set(), inferred: '', tcp }; streams.set(key, s); ids.set(key, ++id); }
      const list = protos.split(':');
      for (const p of list) s.protocols.add(p);
      if (list.includes('http') && !list.includes('http2')) s.protocols.add('http1');
      const hex = (tcp ? tp : up).split(',')[0];
      if (!hex) continue;
      const payload = Buffer.from(hex, 'hex').subarray(0, 1024);
      const name = inference.infer(ids.get(key)!, payload, true, tcp ? 6 : 17, Number((tcp ? tdp : udp).split(',')[0]), 0);
      if (s.inferred === '') s.inferred = name;
    }
    t.true(streams.size > 0);
    for (const [key, s] of streams) {
      const want = expected(s.protocols);
      // NetBIOS name service is DNS's wire format: taking it for DNS is accepted.
      if (want === '' && s.protocols.has('nbns')) { t.true(s.inferred === '' || s.inferred === 'DNS'); continue; }
      t.is(s.inferred, want, `${key}: tshark sees ${[...s.protocols].slice(-3).join(':')}`);
    }
  });
}

const T0 = 1_700_000_000_000_000;
const junk = Buffer.from('SSH-2.0-OpenSSH_9.2p1 not a protocol we parse', 'latin1');
const get = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');

test('a flow is given up after its tries; forget() starts it over', (t) => {
  const inf = new ProtocolInference({ maxTriesPerFlow: 3 });
  for (let i = 0; i < 3; i++) t.is(inf.infer(1, junk, true, 6, 443, T0), '');
  t.is(inf.counters.failed, 3);
  t.is(inf.infer(1, get, true, 6, 443, T0), '');
  t.is(inf.counters.skipped_flow, 1);
  inf.forget(1);
  t.is(inf.infer(1, get, true, 6, 443, T0), 'HTTP');
  t.is(inf.infer(1, junk, true, 6, 443, T0), 'HTTP'); // known flows answer from the cache
});

test('a server that failed 128 times is skipped for 60 s, then tried again', (t) => {
  const inf = new ProtocolInference();
  for (let f = 0; f < 128; f++) t.is(inf.infer(f, junk, true, 6, 9000, T0 + f), '');
  t.is(inf.infer(1000, get, true, 6, 9000, T0 + 1000), '');
  t.is(inf.counters.skipped_server, 1);
  t.is(inf.infer(1001, get, true, 6, 9001, T0 + 1000), 'HTTP'); // another port is not affected
  t.is(inf.infer(1002, get, true, 6, 9000, T0 + 60_000_001), 'HTTP');
});

test('tables are bounded and evictions counted', (t) => {
  const inf = new ProtocolInference({ maxFlows: 100, maxServers: 10 });
  for (let f = 0; f < 250; f++) inf.infer(f, junk, true, 17, 1000 + f, T0);
  t.is(inf.flowCount, 100);
  t.is(inf.serverCount, 10);
  t.is(inf.counters.flow_evicted, 150);
  t.is(inf.counters.server_evicted, 240);
});

test('inferPayload answers as infer on each flow\'s first payload, with the same server memory and no flow table', (t) => {
  const perFlow = new ProtocolInference();
  const flowless = new ProtocolInference();
  const steps: Array<[number, Buffer, number, number]> = [];
  for (let f = 0; f < 128; f++) steps.push([f, junk, 9000, T0 + f]);
  steps.push([1000, get, 9000, T0 + 1000], [1001, get, 9001, T0 + 1000], [1002, get, 9000, T0 + 60_000_001], [1003, junk, 9000, T0 + 60_000_002]);
  for (const [flow, payload, port, now] of steps) {
    const want = perFlow.infer(flow, payload, true, 6, port, now);
    t.is(flowless.inferPayload(payload, true, 6, port, now), want, `flow ${flow}`);
    t.is(flowless.lastCheck, perFlow.lastCheck);
  }
  t.is(flowless.inferPayload(get, true, 6, 9000, T0 + 60_000_003), 'HTTP'); // the server is known again
  t.deepEqual(flowless.counters, { ...perFlow.counters, inferred: perFlow.counters.inferred + 1 });
  t.is(flowless.flowCount, 0);
  t.is(flowless.serverCount, perFlow.serverCount);
});
