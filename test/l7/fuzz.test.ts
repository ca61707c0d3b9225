// Fuzzing: random and mutated inputs must never throw out of a parser or the stage, and what they
// report must stay within the contract. Seeded, so a failure replays.
import test from 'ava';
import { flowtap } from '../../lib/proto';
import { L7Parser, L7Message, ParseContext, PARSE_INVALID, PARSE_LOST, PARSE_NEED_MORE } from '../../services/l7/parser';
import { DEFAULT_PARSERS } from '../../services/l7/registry';
import { L7Stage } from '../../services/l7/stage';
import { appPayloads, corpusFiles } from './tshark';

const PER_PARSER = 100_000;

function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Real payloads to mutate: HTTP and DNS from the corpus, plus hand-made tricky ones. */
let seedCache: Buffer[] | undefined;
/** Computed once per run: every test mutates the same seeds, and tshark is slow on a busy machine. */
function seeds(): Buffer[] {
  return (seedCache ??= computeSeeds());
}

function computeSeeds(): Buffer[] {
  const out: Buffer[] = [];
  for (const f of [...corpusFiles('http1/zeek/methods.pcap'), ...corpusFiles('http1/zeek/post.pcap'),
    ...corpusFiles('dns'), ...corpusFiles('mixed/zeek/wikipedia.pcap')]) {
    for (const p of appPayloads(f)) out.push(Buffer.from(p.payload as Uint8Array));
  }
  // Kafka, MQTT, MongoDB, AMQP captures, and Dubbo frames built from its spec (none captured):
  // calls, events and answers with every status.
  // These captures are small: their payloads go in several times to keep each protocol's share
  // of the pool (MQTT's many small packets need none).
  for (const [dir, copies] of [['kafka', 4], ['mqtt', 1], ['mongodb', 10], ['amqp', 8]] as const) {
    for (const p of corpusFiles(dir).flatMap((f) => appPayloads(f))) {
      for (let k = 0; k < copies; k++) out.push(Buffer.from(p.payload as Uint8Array));
    }
  }
  // MySQL, PostgreSQL, Redis and Memcached captures (the 20k-packet Memcached one: its first 300
  // payloads), plus RESP3 replies and Memcached lines the captures lack.
  for (const f of [...corpusFiles('mysql'), ...corpusFiles('redis'), ...corpusFiles('memcached/deepflow/memcached.pcap')]) {
    for (const p of appPayloads(f)) for (let k = 0; k < 2; k++) out.push(Buffer.from(p.payload as Uint8Array));
  }
  // PostgreSQL needs a client's query and its answers to emit anything: more copies of those.
  for (const p of corpusFiles('postgresql').flatMap((f) => appPayloads(f))) {
    for (let k = 0; k < 6; k++) out.push(Buffer.from(p.payload as Uint8Array));
  }
  const pgMessage = (type: string, body: string) => {
    const b = Buffer.alloc(5 + Buffer.byteLength(body, 'latin1'));
    b[0] = type.charCodeAt(0); b.writeUInt32BE(b.length - 1, 1); b.write(body, 5, 'latin1');
    return b;
  };
  for (let k = 0; k < 100; k++) {
    out.push(Buffer.concat([pgMessage('Q', 'SELECT 1\0'), pgMessage('P', 's\0SELECT $1\0\0\0'), pgMessage('B', '\0s\0\0\0\0\0\0\0'),
      pgMessage('E', '\0\0\0\0\0'), pgMessage('S', '')]));
    out.push(Buffer.concat([pgMessage('1', ''), pgMessage('2', ''), pgMessage('C', 'SELECT 1\0'),
      pgMessage('E', 'SERROR\0C42P01\0Mno such table\0\0'), pgMessage('Z', 'I')]));
  }
  for (const p of appPayloads(corpusFiles('memcached/deepflow/memcached-userdata.pcap')[0] ?? '').slice(0, 300)) {
    out.push(Buffer.from(p.payload as Uint8Array));
  }
  for (const text of ['%2\r\n+a\r\n:1\r\n~1\r\n#t\r\n', '|1\r\n+k\r\n:2\r\n>3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n',
    '!10\r\nERR broken\r\n=9\r\ntxt:hello\r\n(12345678901234567890\r\n,1.5\r\n_\r\n', 'PING\r\nSET k v\r\n',
    'cas k 0 0 1 99 noreply\r\nx\r\ngets a b\r\nms k 2 T0\r\nhi\r\n', 'VALUE a 0 1 7\r\nx\r\nEND\r\nSERVER_ERROR out of memory\r\n']) {
    for (let k = 0; k < 4; k++) out.push(Buffer.from(text, 'latin1'));
  }
  // HTTP/2 header blocks (gRPC, h2c upgrade, HPACK with Huffman), and TLS handshake records
  // (few, so each is added 8 times to keep the TLS share of the mutations).
  for (const f of corpusFiles('http2')) {
    for (const p of appPayloads(f)) {
      const b = Buffer.from(p.payload as Uint8Array);
      if (b.length >= 9 && (b[0] === 0x50 || b[3] === 1 || b[0] === 0x47)) out.push(b);
    }
  }
  for (const f of corpusFiles('tls')) {
    for (const p of appPayloads(f)) {
      const b = Buffer.from(p.payload as Uint8Array);
      if (b[0] === 22 && (b[5] === 1 || b[5] === 2)) for (let k = 0; k < 8; k++) out.push(b);
    }
  }
  out.push(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'),
    Buffer.from('00000a0125000000010000000310828441036122623f7f', 'hex')]));
  out.push(Buffer.from([21, 3, 3, 0, 2, 2, 40]));
  for (let i = 0; i < 480; i++) {
    const call = i % 2 === 0;
    const body = Buffer.from(call ? '\x052.0.2\x18org.demo.GreetingService\x050.0.0\x08sayHello' : '\x0fno provider fou', 'latin1');
    const h = Buffer.alloc(16);
    h.writeUInt16BE(0xdabb); h[2] = call ? 0xc2 | (i & 4 ? 0x20 : 0) : 0x02; h[3] = call ? 0 : 10 * (2 + (i % 9));
    h.writeUInt32BE(i, 8); h.writeInt32BE(body.length, 12);
    out.push(Buffer.concat([h, body]));
  }
  out.push(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nffffffffffff\r\n0\r\n\r\n'));
  out.push(Buffer.from('POST / HTTP/1.1\r\nContent-Length: 99999999999999999\r\ntraceparent: 00-\r\n\r\n'));
  out.push(Buffer.from('00200001010000010000000000000000c00c0001000100', 'hex'));
  return out;
}

function mutate(r: () => number, src: Buffer): Buffer {
  let b = Buffer.from(src);
  const n = 1 + Math.floor(r() * 8);
  for (let i = 0; i < n; i++) {
    const pos = Math.floor(r() * (b.length + 1));
    switch (Math.floor(r() * 7)) {
      case 0: if (b.length) b[pos % b.length] = Math.floor(r() * 256); break;
      case 1: if (b.length) b[pos % b.length] = 0xc0; break; // a compression pointer
      case 2: b = Buffer.concat([b.subarray(0, pos), Buffer.from([13, 10, 58, 32, 48].slice(0, 1 + Math.floor(r() * 5))), b.subarray(pos)]); break;
      case 3: b = b.subarray(0, pos); break;
      case 4: b = Buffer.concat([b.subarray(0, pos), b.subarray(Math.min(b.length, pos + 1 + Math.floor(r() * 16)))]); break;
      case 5: b = Buffer.concat([b, b.subarray(0, Math.floor(r() * b.length))]); break;
      default: if (b.length > 1) b.writeUInt16BE(Math.floor(r() * 65536), pos % (b.length - 1)); break;
    }
  }
  return b;
}

function randomBytes(r: () => number): Buffer {
  const b = Buffer.alloc(Math.floor(r() * 300));
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
  // Some start like the protocols, so the fuzzing gets past the first checks.
  const pick = r();
  if (pick < 0.2) Buffer.from('GET / HTTP/1.1\r\n').copy(b);
  else if (pick < 0.4) Buffer.from('HTTP/1.1 200 OK\r\n').copy(b);
  else if (pick < 0.5 && b.length >= 14) { b.writeUInt16BE(1, 4); b.writeUInt16BE(0, 2); }
  return b;
}

const STATUSES = new Set(['ok', 'client_error', 'server_error', 'timeout', 'unknown']);

function validMessage(m: L7Message): boolean {
  return (m.kind === 'request' || m.kind === 'response') && STATUSES.has(m.responseStatus) &&
    typeof m.requestDomain === 'string' && typeof m.requestResource === 'string' &&
    // response_code is an int32: Kafka's -1, MongoDB's 11000 or MySQL's 1045 are real codes.
    (m.responseCode === undefined || (Number.isInteger(m.responseCode) && m.responseCode >= -2147483648 && m.responseCode <= 2147483647)) &&
    m.length >= 0 && m.requestDomain.length <= 64 * 1024;
}

function fuzzParser(parser: L7Parser, seed: number): { runs: number; thrown: number; bad: number; messages: number } {
  const r = rng(seed);
  const corpus = seeds();
  const ctx: ParseContext = { protocol: 6, fromClient: true, serverPort: 0, truncated: false };
  let state = parser.newFlowState();
  let thrown = 0, bad = 0, messages = 0;
  const emit = (m: L7Message) => { messages++; if (!validMessage(m)) bad++; };
  for (let i = 0; i < PER_PARSER; i++) {
    const buf = i % 2 === 0 ? randomBytes(r) : mutate(r, corpus[Math.floor(r() * corpus.length)]);
    ctx.protocol = r() < 0.5 ? 6 : 17;
    ctx.fromClient = r() < 0.5;
    ctx.truncated = r() < 0.3;
    if (i % 50 === 0) state = parser.newFlowState();
    try {
      parser.check(buf, 0, buf.length, ctx);
      // Walk the buffer as the stage does: units until the end, need-more or an error.
      let pos = Math.floor(r() * 4) === 0 ? Math.floor(r() * buf.length) : 0;
      for (let guard = 0; pos < buf.length && guard < 10_000; guard++) {
        const n = parser.parse(buf, pos, buf.length, ctx, state, emit);
        if (!(n > 0 || n === PARSE_NEED_MORE || n === PARSE_INVALID || n === PARSE_LOST)) { bad++; break; }
        if (n <= 0) break;
        pos += n;
      }
      if (r() < 0.05) parser.resync(state, ctx.fromClient);
    } catch {
      thrown++;
    }
  }
  return { runs: PER_PARSER, thrown, bad, messages };
}

// A name may appear twice (HTTP2: an inference-only instance first); the stage runs the last.
for (const parser of DEFAULT_PARSERS.filter((p, i, all) => !all.slice(i + 1).some((q) => q.name === p.name))) {
  test(`${parser.name}: ${PER_PARSER} random and mutated inputs, nothing thrown`, (t) => {
    const res = fuzzParser(parser, 0x5eed + parser.name.length);
    t.is(res.thrown, 0);
    t.is(res.bad, 0);
    t.true(res.messages > 1000, `the fuzzing reached the message code (${res.messages} messages)`);
  });
}

test('stage: 50k mutated payloads over random flows, sequence numbers and cuts', (t) => {
  const r = rng(0xfeed);
  const corpus = seeds();
  let logs = 0;
  const stage = new L7Stage(() => { logs++; }, () => undefined, { maxBufferPerDirection: 4096, maxSessions: 500 });
  const names = ['', '', 'HTTP', 'DNS', 'MySQL', 'HTTP2', 'TLS'];
  let thrown = 0;
  let now = 1_700_000_000_000_000;
  for (let i = 0; i < 50_000; i++) {
    const buf = mutate(r, corpus[Math.floor(r() * corpus.length)]);
    now += Math.floor(r() * 20_000);
    const p: flowtap.IAppPayload = {
      flow_id: Math.floor(r() * 64), timestamp_us: now, ip_version: 4, ip_0: new Uint8Array(16), ip_1: new Uint8Array(16),
      client_port: 40000, server_port: r() < 0.5 ? 80 : 53, protocol: r() < 0.8 ? 6 : 17, from_client: r() < 0.5,
      l7_protocol: names[Math.floor(r() * names.length)], tcp_seq: Math.floor(r() * 4096),
      payload_len: buf.length + (r() < 0.2 ? Math.floor(r() * 3000) : 0), payload: buf,
    };
    try {
      stage.push(p);
      if (i % 997 === 0) stage.tick(now);
    } catch {
      thrown++;
    }
  }
  stage.flush();
  t.is(thrown, 0);
  t.true(logs > 100);
  t.is(stage.sessionCount, 0);
  t.is(stage.bufferedBytes, 0);
});
