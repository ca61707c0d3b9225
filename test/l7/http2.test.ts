// HTTP/2 and gRPC: every corpus capture against tshark's dissection of it (with the README's
// decode-as rule), and real exchanges between Node's own HTTP/2 client and server (nghttp2's
// HPACK encoder: Huffman strings, dynamic table), written to pcaps that tshark dissects too.
import test, { ExecutionContext } from 'ava';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as path from 'node:path';
import { flowtap } from '../../lib/proto';
import { L7Message, ParseContext } from '../../services/l7/parser';
import { http2Parser, http2UpgradeParser } from '../../services/l7/parsers/http2';
import { HpackDecoder, huffmanDecode } from '../../services/l7/parsers/hpack';
import { L7Stage } from '../../services/l7/stage';
import { runStage, StageRun } from './compare';
import { PcapWriter } from './pcap-writer';
import { CORPUS, corpusFiles, sorted, tshark } from './tshark';
import { startRecordingRelay, type Chunk } from './recording-relay';

/** The README's decode-as column for a corpus file ("" if none). */
function decodeAs(file: string): string {
  const rel = path.relative(CORPUS, file);
  const readme = fs.readFileSync(path.join(CORPUS, 'README.md'), 'utf8');
  for (const line of readme.split('\n')) {
    const cols = line.split('|').map((c) => c.trim());
    if (cols[1] === rel) return cols[8] ?? '';
  }
  return '';
}

interface TsharkHttp2 {
  /** "method path authority" of each request header block. */
  requests: string[];
  /** gRPC requests among them (content-type application/grpc). */
  grpcRequests: number;
  /** Per answered stream: grpc-status for gRPC streams that have one, else the final :status. */
  codes: number[];
}

/** HTTP/2 header blocks as tshark dissects them, folded into requests and per-stream answers. */
function tsharkHttp2(file: string, rule: string): TsharkHttp2 {
  const args = ['-r', file, ...(rule ? ['-d', rule] : []), '-Y', 'http2', '-T', 'pdml'];
  const pdml = tshark(args);
  const re = /<field name="(tcp\.stream|http2\.stream|http2\.type|http2\.streamid|http2\.header\.name|http2\.header\.value)"[^>]*? show="([^"]*)"/g;
  type Block = { key: string; headers: Map<string, string> };
  const blocks: Block[] = [];
  let conn = '', cur: Block | null = null, prev: Block | null = null, name = '', type = '';
  for (const [, field, show] of pdml.matchAll(re)) {
    if (field === 'tcp.stream') conn = show;
    else if (field === 'http2.stream') cur = null;
    else if (field === 'http2.type') type = show;
    else if (field === 'http2.streamid') {
      // tshark lists a CONTINUATION's fields under it: they belong to the block its HEADERS began.
      const key = `${conn}/${show}`;
      cur = type === '9' && prev !== null && prev.key === key ? prev : { key, headers: new Map() };
      prev = cur;
    }
    else if (field === 'http2.header.name') name = unescape(show);
    else if (cur !== null) {
      if (cur.headers.size === 0) blocks.push(cur);
      if (!cur.headers.has(name)) cur.headers.set(name, unescape(show));
    }
  }
  const out: TsharkHttp2 = { requests: [], grpcRequests: 0, codes: [] };
  const streams = new Map<string, { grpc: boolean; status: number; grpcStatus: number }>();
  for (const b of blocks) {
    const h = b.headers;
    let s = streams.get(b.key);
    if (s === undefined) { s = { grpc: false, status: -1, grpcStatus: -1 }; streams.set(b.key, s); }
    if ((h.get('content-type') ?? '').startsWith('application/grpc')) s.grpc = true;
    if (h.has(':method')) {
      out.requests.push(`${h.get(':method')} ${h.get(':path') ?? ''} ${h.get(':authority') ?? h.get('host') ?? ''}`);
      if (s.grpc) out.grpcRequests++;
    }
    const st = Number(h.get(':status') ?? -1);
    if (st >= 200) s.status = st;
    if (h.has('grpc-status')) s.grpcStatus = Number(h.get('grpc-status'));
  }
  for (const s of streams.values()) {
    if (s.grpc && s.grpcStatus >= 0) out.codes.push(s.grpcStatus);
    else if (s.status >= 0) out.codes.push(s.status);
  }
  return out;
}

function unescape(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

/** Items of `want` also in `got`, as multisets. */
function matched(got: string[], want: string[]): number {
  const left = [...got];
  let n = 0;
  for (const w of want) {
    const i = left.indexOf(w);
    if (i >= 0) { n++; left.splice(i, 1); }
  }
  return n;
}

export interface Agreement { requests: number; requestsMatched: number; codes: number; codesMatched: number }

/** The stage's HTTP/2 and gRPC records equal tshark's requests and answers. */
function checkHttp2(t: ExecutionContext, file: string, run: StageRun, rule: string): Agreement {
  const want = tsharkHttp2(file, rule);
  const logs = run.logs.filter((l) => l.l7_protocol === 'HTTP2' || l.l7_protocol === 'gRPC');
  const gotReq = logs.filter((l) => l.request_type !== '')
    .map((l) => `${l.request_type} ${l.request_resource} ${l.request_domain}`);
  t.deepEqual(sorted(gotReq), sorted(want.requests), 'method, path and authority of every request');
  t.is(logs.filter((l) => l.request_type !== '' && l.l7_protocol === 'gRPC').length, want.grpcRequests, 'gRPC requests');
  const gotCodes = logs.filter((l) => l.response_code != null).map((l) => String(l.response_code));
  const wantCodes = want.codes.map(String);
  t.deepEqual(sorted(gotCodes), sorted(wantCodes), 'response code of every answered stream');
  for (const l of logs) {
    t.is(l.version, '2');
    if (l.request_type !== '') t.is(l.endpoint, l.request_resource!.split('?')[0]);
  }
  t.is(run.stage.sessionCount, 0);
  return {
    requests: want.requests.length, requestsMatched: matched(gotReq, want.requests),
    codes: wantCodes.length, codesMatched: matched(gotCodes, wantCodes),
  };
}

// ---- corpus ---------------------------------------------------------------------------------

const FILES = corpusFiles('http2');
const totals: Agreement = { requests: 0, requestsMatched: 0, codes: 0, codesMatched: 0 };

test('the HTTP/2 corpus is there', (t) => {
  t.true(FILES.length >= 8);
});

for (const file of FILES) {
  test.serial(`HTTP/2 equals tshark: ${path.relative(CORPUS, file)}`, (t) => {
    const rule = decodeAs(file);
    const run = runStage(file);
    const a = checkHttp2(t, file, run, rule);
    t.true(a.requests + a.codes > 0, 'tshark sees HTTP/2 messages in the file');
    for (const k of Object.keys(totals) as (keyof Agreement)[]) totals[k] += a[k];
    t.log(`${path.relative(CORPUS, file)}: requests ${a.requestsMatched}/${a.requests}, codes ${a.codesMatched}/${a.codes}`);
  });
}

test.serial('HTTP/2 corpus agreement is at least 99 %', (t) => {
  t.true(totals.requests >= 10);
  t.true(totals.requestsMatched / totals.requests >= 0.99);
  t.true(totals.codesMatched / totals.codes >= 0.99);
  t.log(`all files: requests ${totals.requestsMatched}/${totals.requests}, codes ${totals.codesMatched}/${totals.codes}`);
});

test('gRPC: service path, grpc-status from the trailers (grpc-server-stream.pcap)', (t) => {
  const file = corpusFiles('http2/deepflow/grpc-server-stream.pcap')[0];
  const run = runStage(file);
  const [log] = run.logs.filter((l) => l.l7_protocol === 'gRPC');
  t.is(log.request_resource, '/timeseriesquery.TimeSeriesQueryService/ServerStreamQuery');
  t.is(log.response_code, 0);
  t.is(log.response_status, 'ok');
  // The answer is the trailers' frame, not the first response HEADERS: compare with tshark's time.
  const [last] = tshark(['-r', file, '-d', 'tcp.port==9001,http2', '-Y', 'http2.header.name == "grpc-status"', '-T', 'fields', '-e', 'frame.time_epoch'])
    .trim().split('\n');
  t.is(log.end_time, Math.round(Number(last) * 1e6));
});

test('h2c upgrade: the HTTP/1.1 request and its 101, then the HTTP/2 answer on stream 1 (http2-range.pcap)', (t) => {
  const file = corpusFiles('http2/suricata-verify/http2-range.pcap')[0];
  const run = runStage(file);
  const http1 = run.logs.filter((l) => l.l7_protocol === 'HTTP' && l.response_code === 101);
  const h2 = run.logs.filter((l) => l.l7_protocol === 'HTTP2');
  const upgrades = tshark(['-r', file, '-Y', 'http.response.code == 101', '-T', 'fields', '-e', 'frame.number']).trim().split('\n');
  t.is(http1.length, upgrades.length);
  t.is(h2.length, upgrades.length);
  for (const l of h2) t.is(l.response_code, 206);
});

// ---- Node's own HTTP/2: real HPACK from nghttp2 ---------------------------------------------


/**
 * Runs `client` against a Node HTTP/2 server with `handler`, through a TCP relay that records
 * the bytes of each direction in the order they pass.
 */
type StreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void;

async function record(handler: StreamHandler, client: (session: http2.ClientHttp2Session) => Promise<void>): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  const server = http2.createServer();
  server.on('stream', handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const relay = await startRecordingRelay(port, chunks);
  const session = http2.connect(`http://127.0.0.1:${relay.port}`);
  await client(session);
  await new Promise<void>((r) => session.close(r));
  await relay.close();
  await new Promise<void>((r) => server.close(() => r()));
  return chunks;
}

function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<void> {
  return new Promise((resolve) => {
    const req = session.request(headers, { endStream: body === undefined });
    req.on('response', () => undefined);
    req.on('data', () => undefined);
    req.on('end', () => resolve());
    req.on('close', () => resolve());
    req.on('error', () => resolve());
    if (body !== undefined) req.end(body);
  });
}

const PORT = 50051;

/** The recorded bytes as a pcap (segments of at most 1400 B), for tshark and the stage alike. */
function toPcap(chunks: Chunk[], name: string, split = 1400): string {
  const w = new PcapWriter();
  const conv = w.tcp('10.2.0.1', 41000, '10.2.0.2', PORT);
  const first = [true, true];
  for (const c of chunks) {
    // Each direction's first segment stays whole: the stage infers the protocol from it.
    const dir = c.fromClient ? 0 : 1;
    const size = first[dir] ? 1400 : split;
    first[dir] = false;
    for (let i = 0; i < c.data.length; i += size) {
      const part = c.data.subarray(i, i + size);
      if (c.fromClient) conv.c(part, 100); else conv.s(part, 100);
    }
  }
  return w.save(name);
}

const GRPC_HANDLER: StreamHandler = (stream, headers) => {
  stream.on('data', () => undefined);
  stream.on('error', () => undefined);
  stream.on('end', () => {
    const url = String(headers[':path']);
    if (url.startsWith('/demo.Store/')) {
      // gRPC: 200 with content-type application/grpc, the status in the trailers.
      const code = url.endsWith('/Missing') ? 5 : url.endsWith('/Crash') ? 13 : 0;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => {
        stream.sendTrailers(code === 0 ? { 'grpc-status': '0' } : code === 5 ? { 'grpc-status': '5', 'grpc-message': 'no such item' } : { 'grpc-status': String(code) });
      });
      stream.end(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
      return;
    }
    const status = url.startsWith('/missing') ? 404 : url.startsWith('/fail') ? 503 : 200;
    stream.respond({ ':status': status, 'content-type': 'text/plain', 'x-request-id': 'resp-rid' });
    stream.end('x'.repeat(url.startsWith('/big') ? 5000 : 10));
  });
};

async function exchange(): Promise<Chunk[]> {
  return record(GRPC_HANDLER, async (s) => {
    // Several requests on one connection: later ones reference the dynamic table.
    for (let i = 0; i < 4; i++) {
      await request(s, { ':method': 'GET', ':path': `/items/${i}?q=${'é'.length}x${i}`, ':authority': 'shop.example:8443',
        'user-agent': 'flowtap-test/1.0', traceparent: `00-${'4bf92f3577b34da6a3ce929d0e0e473' + i}-00f067aa0ba902b7-01` });
    }
    await request(s, { ':method': 'POST', ':path': '/demo.Store/Get', ':authority': 'shop.example:8443', 'content-type': 'application/grpc',
      te: 'trailers', 'x-b3-traceid': '80f198ee56343ba864fe8b2a57d3eff7', 'x-b3-spanid': 'e457b5a2e4d86bd1' }, 'abc');
    await request(s, { ':method': 'POST', ':path': '/demo.Store/Missing', ':authority': 'shop.example:8443', 'content-type': 'application/grpc',
      te: 'trailers', 'uber-trace-id': 'abcdef0123456789:1122334455667788:0:1' }, 'abc');
    await request(s, { ':method': 'POST', ':path': '/demo.Store/Crash', ':authority': 'shop.example:8443', 'content-type': 'application/grpc',
      te: 'trailers', sw8: `1-${Buffer.from('trace-sw8').toString('base64')}-${Buffer.from('segment-1').toString('base64')}-3-c2Vydg==-aW5zdA==-L2E=-YWRkcg==` }, 'abc');
    await Promise.all([request(s, { ':method': 'GET', ':path': '/missing', ':authority': 'shop.example:8443', 'x-request-id': 'rid-42' }),
      request(s, { ':method': 'DELETE', ':path': '/fail/now', ':authority': 'shop.example:8443', b3: 'aaaabbbbccccdddd-1111222233334444-1' }),
      request(s, { ':method': 'GET', ':path': '/big', ':authority': 'other.example' })]);
  });
}

let recorded: Promise<Chunk[]> | undefined;
const nodeExchange = (): Promise<Chunk[]> => (recorded ??= exchange());

test('Huffman code: Node\'s encoder output decodes to every byte value it can send', async (t) => {
  const values: string[] = [];
  for (let c = 0; c < 256; c++) if (c === 9 || (c >= 32 && c !== 127)) values.push('abc' + String.fromCharCode(c).repeat(3) + 'xyz');
  const chunks = await record((stream) => { stream.respond({ ':status': 200 }); stream.end(); }, async (s) => {
    for (let i = 0; i < values.length; i += 60) {
      const h: http2.OutgoingHttpHeaders = { ':path': '/' };
      values.slice(i, i + 60).forEach((v, k) => { h[`x-v${k}`] = v; });
      await request(s, h);
    }
  });
  const client = Buffer.concat(chunks.filter((c) => c.fromClient).map((c) => c.data));
  const seen: string[] = [];
  const dec = new HpackDecoder();
  dec.startFresh();
  let huffmanStrings = 0;
  for (let p = 24; p + 9 <= client.length;) {
    const len = client.readUIntBE(p, 3), type = client[p + 3];
    if (type === 1) {
      dec.decode(client, p + 9, p + 9 + len, true, (n, v) => { if (n.startsWith('x-v')) seen.push(v); });
      for (let q = p + 9; q < p + 9 + len; q++) if (client[q] & 0x80) huffmanStrings++;
    }
    p += 9 + len;
  }
  t.deepEqual(sorted(seen), sorted(values));
  t.true(huffmanStrings > 0);
  t.is(huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4), null, 'EOS inside a string is an error');
});

test('Node client and server: the stage equals tshark, gRPC codes, trace context', async (t) => {
  const chunks = await nodeExchange();
  const file = toPcap(chunks, 'node-h2.pcap');
  const run = runStage(file);
  const a = checkHttp2(t, file, run, `tcp.port==${PORT},http2`);
  t.is(a.requests, 10);
  const by = (p: string) => run.logs.find((l) => l.request_resource === p)!;
  t.is(by('/demo.Store/Get').l7_protocol, 'gRPC');
  t.is(by('/demo.Store/Get').response_code, 0);
  t.is(by('/demo.Store/Get').trace_id, '80f198ee56343ba864fe8b2a57d3eff7');
  t.is(by('/demo.Store/Get').span_id, 'e457b5a2e4d86bd1');
  t.is(by('/demo.Store/Missing').response_code, 5);
  t.is(by('/demo.Store/Missing').response_status, 'client_error');
  t.is(by('/demo.Store/Missing').response_exception, 'no such item');
  t.is(by('/demo.Store/Missing').trace_id, 'abcdef0123456789');
  t.is(by('/demo.Store/Crash').response_status, 'server_error');
  t.is(by('/demo.Store/Crash').response_exception, 'INTERNAL');
  t.is(by('/demo.Store/Crash').trace_id, 'trace-sw8');
  t.is(by('/demo.Store/Crash').span_id, 'segment-1-3');
  t.is(by('/items/2?q=1x2').trace_id, '4bf92f3577b34da6a3ce929d0e0e4732');
  t.is(by('/items/2?q=1x2').endpoint, '/items/2');
  t.is(by('/items/2?q=1x2').l7_protocol, 'HTTP2');
  t.is(by('/missing').response_status, 'client_error');
  t.is(by('/missing').x_request_id, 'rid-42');
  t.is(by('/fail/now').response_code, 503);
  t.is(by('/fail/now').trace_id, 'aaaabbbbccccdddd');
  t.is(by('/fail/now').span_id, '1111222233334444');
  t.is(by('/big').request_domain, 'other.example');
  for (const l of run.logs) t.true(l.response_duration! > 0);
});

test('frames split across segments (every 7 bytes) give the same records', async (t) => {
  const chunks = await nodeExchange();
  const whole = runStage(toPcap(chunks, 'node-h2-whole.pcap'));
  const file = toPcap(chunks, 'node-h2-split.pcap', 7);
  const split = runStage(file);
  const view = (r: StageRun) => sorted(r.logs.map((l) => `${l.request_type} ${l.request_resource} ${l.response_code} ${l.trace_id}`));
  t.deepEqual(view(split), view(whole));
  checkHttp2(t, file, split, `tcp.port==${PORT},http2`);
});

test('mid-connection start: later blocks are read as far as the table allows, the rest counted', async (t) => {
  const chunks = await nodeExchange();
  // Drop everything before the second request's HEADERS on the client side (the preface, the
  // first request), and the server's bytes before its second answer.
  const client = Buffer.concat(chunks.filter((c) => c.fromClient).map((c) => c.data));
  const server = Buffer.concat(chunks.filter((c) => !c.fromClient).map((c) => c.data));
  const frames = (b: Buffer, from: number) => {
    const out: { at: number; type: number; sid: number }[] = [];
    for (let p = from; p + 9 <= b.length; p += 9 + b.readUIntBE(p, 3)) out.push({ at: p, type: b[p + 3], sid: b.readUInt32BE(p + 5) });
    return out;
  };
  const cStart = frames(client, 24).filter((f) => f.type === 1)[1].at;
  const sStart = frames(server, 0).filter((f) => f.type === 1 && f.sid === 3)[0].at;
  const before = { ...http2Parser.drops };
  const logs: flowtap.IL7FlowLog[] = [];
  const stage = new L7Stage((l) => logs.push(l), () => undefined);
  const base: flowtap.IAppPayload = { flow_id: 7, ip_version: 4, ip_0: new Uint8Array(16), ip_1: new Uint8Array(16),
    client_port: 41000, server_port: PORT, protocol: 6, l7_protocol: '' };
  let ts = 1_700_000_000_000_000;
  // Interleave: a client frame run, then the server's; 1400-byte segments.
  const segs: flowtap.IAppPayload[] = [];
  for (let p = cStart; p < client.length; p += 1400) segs.push({ ...base, from_client: true, tcp_seq: 1000 + p, payload: client.subarray(p, p + 1400), payload_len: Math.min(1400, client.length - p) });
  for (let p = sStart; p < server.length; p += 1400) segs.push({ ...base, from_client: false, tcp_seq: 9000 + p, payload: server.subarray(p, p + 1400), payload_len: Math.min(1400, server.length - p) });
  segs.sort((x, y) => (x.from_client === y.from_client ? 0 : x.from_client ? -1 : 1));
  for (const s of segs) { s.timestamp_us = (ts += 1000); stage.push(s); }
  stage.flush();
  const reqs = logs.filter((l) => l.request_type !== '');
  t.true(reqs.length >= 8, `${reqs.length} requests read without the connection start`);
  // :method and literal paths are readable; the authority, indexed since the first request, is not.
  t.true(reqs.every((l) => l.request_type === 'GET' || l.request_type === 'POST' || l.request_type === 'DELETE'));
  t.true(reqs.some((l) => l.request_resource === '/items/1?q=1x1'));
  t.true(http2Parser.drops.hpack_unknown_reference > before.hpack_unknown_reference);
  t.true(logs.filter((l) => l.response_code != null).length >= 8);
});

test('RST_STREAM ends a stream with its reason; bad frames are counted, never thrown', (t) => {
  const st = http2Parser.newFlowState();
  const msgs: L7Message[] = [];
  const ctx: ParseContext = { protocol: 6, fromClient: true, serverPort: 443, truncated: false };
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  t.is(http2Parser.parse(preface, 0, preface.length, ctx, st, (m) => msgs.push(m)), 24);
  // HEADERS stream 1: :method GET (static 2), :path / (static 4), :authority literal "a.b".
  const block = Buffer.from([0x82, 0x84, 0x41, 0x03, 0x61, 0x2e, 0x62]);
  const hdr = Buffer.concat([Buffer.from([0, 0, block.length, 1, 0x05, 0, 0, 0, 1]), block]);
  t.is(http2Parser.parse(hdr, 0, hdr.length, ctx, st, (m) => msgs.push(m)), hdr.length);
  t.is(http2Parser.parse(hdr, 0, 5, ctx, st, (m) => msgs.push(m)), 0, 'a partial frame header needs more');
  const rst = Buffer.from([0, 0, 4, 3, 0, 0, 0, 0, 1, 0, 0, 0, 8]);
  ctx.fromClient = false;
  t.is(http2Parser.parse(rst, 0, rst.length, ctx, st, (m) => msgs.push(m)), rst.length);
  t.is(msgs.length, 2);
  t.is(msgs[0].requestDomain, 'a.b');
  t.is(msgs[1].responseException, 'RST_STREAM CANCEL');
  t.is(msgs[1].responseStatus, 'client_error');
  const bad = Buffer.from([0, 0, 4, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0]); // SETTINGS on a stream, length 4
  const drops = http2Parser.drops.bad_frame;
  t.is(http2Parser.parse(bad, 0, bad.length, ctx, st, () => undefined), -1);
  t.is(http2Parser.drops.bad_frame, drops + 1);
  t.is(http2Parser.check(Buffer.from('SSH-2.0-OpenSSH_9.6\r\n'), 0, 21, ctx), 0, 'text is not a frame');
  const get = Buffer.from('GET / HTTP/1.1\r\nHost: h\r\n\r\n');
  t.is(http2UpgradeParser.check(get, 0, get.length, ctx), 0, 'plain HTTP/1.1 is left to the HTTP/1 parser');
  const up = Buffer.from('GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n');
  t.is(http2UpgradeParser.check(up, 0, up.length, ctx), 1, 'an h2c upgrade request is inferred as HTTP2');
});

test('h2c upgrade declined (200): the connection stays HTTP/1.1 and every answer is reported', (t) => {
  const w = new PcapWriter();
  w.tcp('10.2.0.1', 41001, '10.2.0.2', 8081)
    .c('GET /first HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n')
    .s('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
    .c('GET /second HTTP/1.1\r\nHost: h\r\n\r\n')
    .s('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
  const file = w.save('h2c-declined.pcap');
  const run = runStage(file);
  const want = tshark(['-r', file, '-Y', 'http.response', '-T', 'fields', '-e', 'http.response.code']).trim().split('\n').map(Number);
  const logs = run.logs.filter((l) => l.l7_protocol === 'HTTP');
  t.deepEqual(logs.map((l) => l.response_code), want);
  t.deepEqual(logs.map((l) => l.request_resource), ['/first', '/second']);
});

/** An HPACK string literal without Huffman coding. */
function lit(s: string): Buffer {
  return Buffer.concat([Buffer.from([s.length]), Buffer.from(s, 'latin1')]);
}

function frame(type: number, flags: number, sid: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type; h[4] = flags; h.writeUInt32BE(sid, 5);
  return Buffer.concat([h, payload]);
}

test('padding, priority and CONTINUATION; a second request reusing the dynamic table; gRPC error', (t) => {
  // :method POST, :scheme http, :path /pkg.Svc/Call (incremental), :authority svc:1 (incremental),
  // content-type application/grpc (incremental), split between HEADERS and CONTINUATION.
  const block = Buffer.concat([Buffer.from([0x83, 0x86, 0x44]), lit('/pkg.Svc/Call'), Buffer.from([0x41]), lit('svc:1'),
    Buffer.from([0x5f]), lit('application/grpc')]);
  const padded = Buffer.concat([Buffer.from([3]), Buffer.from([0, 0, 0, 0, 15]), block.subarray(0, 10), Buffer.alloc(3)]);
  const client1 = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(4, 0, 0, Buffer.alloc(0)),
    frame(1, 0x08 | 0x20, 1, padded), frame(9, 0x04, 1, block.subarray(10)), frame(0, 0x01, 1, Buffer.from([0, 0, 0, 0, 0]))]);
  // Stream 3: everything indexed from the dynamic table (62: content-type, 63: :authority, 64: :path).
  const client2 = Buffer.concat([frame(1, 0x04, 3, Buffer.from([0x83, 0x86, 0xc0, 0xbf, 0xbe])), frame(0, 0x01, 3, Buffer.from([0, 0, 0, 0, 0]))]);
  const resp = (sid: number, code: string, message: string) => Buffer.concat([
    frame(1, 0x04, sid, Buffer.concat([Buffer.from([0x88, 0x5f]), lit('application/grpc')])),
    frame(0, 0, sid, Buffer.from([0, 0, 0, 0, 0])),
    frame(1, 0x05, sid, Buffer.concat([Buffer.from([0x00]), lit('grpc-status'), lit(code), Buffer.from([0x00]), lit('grpc-message'), lit(message)])),
  ]);
  const w = new PcapWriter();
  w.tcp('10.2.0.1', 41002, '10.2.0.2', 50052)
    .c(client1).s(Buffer.concat([frame(4, 0, 0, Buffer.alloc(0)), frame(4, 1, 0, Buffer.alloc(0))])).s(resp(1, '7', 'denied'))
    .c(client2).s(resp(3, '0', ''));
  const file = w.save('h2-continuation.pcap');
  const run = runStage(file);
  const a = checkHttp2(t, file, run, 'tcp.port==50052,http2');
  t.deepEqual([a.requestsMatched, a.codesMatched], [2, 2]);
  const logs = run.logs.filter((l) => l.l7_protocol === 'gRPC');
  t.is(logs.length, 2);
  const denied = logs.find((l) => l.response_code === 7)!;
  t.is(denied.request_resource, '/pkg.Svc/Call');
  t.is(denied.response_status, 'client_error');
  t.is(denied.response_exception, 'denied');
  const ok = logs.find((l) => l.response_code === 0)!;
  t.is(ok.request_domain, 'svc:1');
  t.is(ok.endpoint, '/pkg.Svc/Call');
});
