// TLS handshakes: every corpus capture that carries TLS against tshark's dissection of it, and
// real handshakes between Node's TLS client and server (OpenSSL), written to pcaps tshark reads.
import test, { ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { cipherSuiteName, tlsParser, tlsVersionName } from '../../services/l7/parsers/tls';
import { runStage, StageRun } from './compare';
import { PcapWriter } from './pcap-writer';
import { CORPUS, corpusFiles, sorted, tshark } from './tshark';
import { startRecordingRelay, type Chunk } from './recording-relay';

interface TsharkTls {
  /** "sni alpn,alpn" per ClientHello. */
  hellos: string[];
  /** "cipher version" per ServerHello. */
  serverHellos: string[];
  /** Descriptions of plaintext alerts. */
  alerts: number[];
}

function tsharkTls(file: string): TsharkTls {
  const pdml = tshark(['-r', file, '-Y', 'tls', '-T', 'pdml']);
  const re = /<field name="(tls\.handshake\.type|tls\.handshake\.version|tls\.handshake\.ciphersuite|tls\.handshake\.extensions_server_name|tls\.handshake\.extensions_alpn_str|tls\.handshake\.extensions\.supported_version|tls\.alert_message\.desc)"[^>]*? show="([^"]*)"/g;
  type Msg = { type: number; sni: string; alpn: string[]; cipher: number; version: number; supported: number };
  const msgs: Msg[] = [];
  const alerts: number[] = [];
  let cur: Msg | null = null;
  for (const [, field, show] of pdml.matchAll(re)) {
    if (field === 'tls.handshake.type') {
      cur = { type: Number(show), sni: '', alpn: [], cipher: -1, version: 0, supported: 0 };
      msgs.push(cur);
    } else if (field === 'tls.alert_message.desc') alerts.push(Number(show));
    else if (cur === null) continue;
    else if (field === 'tls.handshake.version' && cur.version === 0) cur.version = Number(show);
    else if (field === 'tls.handshake.ciphersuite' && cur.cipher < 0) cur.cipher = Number(show);
    else if (field === 'tls.handshake.extensions_server_name') cur.sni = show;
    else if (field === 'tls.handshake.extensions_alpn_str') cur.alpn.push(show);
    else if (field === 'tls.handshake.extensions.supported_version' && cur.type === 2) cur.supported = Number(show);
  }
  return {
    hellos: msgs.filter((m) => m.type === 1).map((m) => `${m.sni} ${m.alpn.join(',')}`),
    serverHellos: msgs.filter((m) => m.type === 2)
      .map((m) => `${cipherSuiteName(m.cipher)} ${tlsVersionName(m.supported || m.version)}`),
    alerts,
  };
}

interface Agreement { hellos: number; hellosMatched: number; serverHellos: number; serverHellosMatched: number }

function matched(got: string[], want: string[]): number {
  const left = [...got];
  let n = 0;
  for (const w of want) {
    const i = left.indexOf(w);
    if (i >= 0) { n++; left.splice(i, 1); }
  }
  return n;
}

/** The stage's TLS records against tshark; `exact` asserts equality, else only returns figures. */
function checkTls(t: ExecutionContext, file: string, run: StageRun, exact: boolean): Agreement {
  const want = tsharkTls(file);
  const logs = run.logs.filter((l) => l.l7_protocol === 'TLS');
  const gotHellos = logs.filter((l) => l.request_type === 'ClientHello').map((l) => `${l.request_domain} ${l.request_resource}`);
  const gotServer = logs.filter((l) => l.response_result !== '').map((l) => `${l.response_result} ${l.version}`);
  if (exact) {
    t.deepEqual(sorted(gotHellos), sorted(want.hellos), 'SNI and ALPN of every ClientHello');
    t.deepEqual(sorted(gotServer), sorted(want.serverHellos), 'cipher suite and version of every ServerHello');
    for (const l of logs) {
      if (l.response_exception !== '') t.true(want.alerts.includes(l.response_code!), `alert ${l.response_exception}`);
      if (l.request_type === 'ClientHello') t.is(l.endpoint, l.request_domain);
    }
    t.is(run.stage.sessionCount, 0);
  }
  return {
    hellos: want.hellos.length, hellosMatched: matched(gotHellos, want.hellos),
    serverHellos: want.serverHellos.length, serverHellosMatched: matched(gotServer, want.serverHellos),
  };
}

// ---- corpus ---------------------------------------------------------------------------------

const FILES = [
  ...corpusFiles('tls'), ...corpusFiles('mixed/tcpreplay/test.pcap'), ...corpusFiles('tunnels/deepflow/decapsulate_erspan1.pcap'),
  ...corpusFiles('tunnels/deepflow/ip6-vxlan.pcap'), ...corpusFiles('tunnels/deepflow/ipip.pcap'), ...corpusFiles('tunnels/ndpi/vxlan.pcap'),
];
const full: Agreement = { hellos: 0, hellosMatched: 0, serverHellos: 0, serverHellosMatched: 0 };
const cut: Agreement = { hellos: 0, hellosMatched: 0, serverHellos: 0, serverHellosMatched: 0 };

test('the TLS corpus is there', (t) => {
  t.true(FILES.length >= 12);
});

for (const file of FILES) {
  test.serial(`TLS equals tshark: ${path.relative(CORPUS, file)}`, (t) => {
    // Whole segments: what tshark sees. Then cut at 1024 B as the capture stage does by default,
    // where a ClientHello's SNI/ALPN may lie beyond the cut (large post-quantum key shares).
    const a = checkTls(t, file, runStage(file, {}, 65535), true);
    const b = checkTls(t, file, runStage(file), false);
    for (const k of Object.keys(full) as (keyof Agreement)[]) { full[k] += a[k]; cut[k] += b[k]; }
    t.log(`${path.relative(CORPUS, file)}: ClientHello ${a.hellosMatched}/${a.hellos} (cut 1024: ${b.hellosMatched}), ` +
      `ServerHello ${a.serverHellosMatched}/${a.serverHellos} (cut 1024: ${b.serverHellosMatched})`);
  });
}

test.serial('TLS corpus agreement is at least 99 % (whole payloads)', (t) => {
  t.true(full.hellos >= 15);
  t.true(full.hellosMatched / full.hellos >= 0.99);
  t.true(full.serverHellosMatched / full.serverHellos >= 0.99);
  t.log(`whole: ClientHello ${full.hellosMatched}/${full.hellos}, ServerHello ${full.serverHellosMatched}/${full.serverHellos}; ` +
    `cut 1024: ClientHello ${cut.hellosMatched}/${cut.hellos}, ServerHello ${cut.serverHellosMatched}/${cut.serverHellos}`);
});

test('a handshake failure alert answers the ClientHello (decapsulate_erspan1.pcap)', (t) => {
  const file = corpusFiles('tunnels/deepflow/decapsulate_erspan1.pcap')[0];
  const run = runStage(file, {}, 65535);
  const failed = run.logs.filter((l) => l.l7_protocol === 'TLS' && l.response_exception === 'handshake_failure');
  t.is(failed.length, 1);
  t.is(failed[0].request_type, 'ClientHello');
  t.is(failed[0].response_code, 40);
  t.is(failed[0].response_status, 'server_error');
});

// ---- Node's TLS: real OpenSSL handshakes ----------------------------------------------------


let certs: { key: Buffer; cert: Buffer } | undefined;
function selfSigned(): { key: Buffer; cert: Buffer } {
  if (certs) return certs;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=svc.example'], { stdio: 'ignore' });
  certs = { key: fs.readFileSync(path.join(dir, 'k.pem')), cert: fs.readFileSync(path.join(dir, 'c.pem')) };
  return certs;
}

/** One handshake (and a little data) through a relay that records both directions. */
async function handshake(serverOpts: tls.TlsOptions, clientOpts: tls.ConnectionOptions): Promise<Chunk[]> {
  const chunks: Chunk[] = [];
  const server = tls.createServer({ ...selfSigned(), ...serverOpts }, (s) => { s.on('error', () => undefined); s.end('pong'); });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const relay = await startRecordingRelay(port, chunks);
  await new Promise<void>((resolve) => {
    const c = tls.connect({ host: '127.0.0.1', port: relay.port, rejectUnauthorized: false, ...clientOpts });
    c.on('data', () => undefined);
    c.on('error', () => resolve());
    c.on('close', () => resolve());
  });
  await relay.close();
  await new Promise<void>((r) => server.close(() => r()));
  return chunks;
}

function toPcap(chunks: Chunk[], name: string, split: number, port = 443): string {
  const w = new PcapWriter();
  const conv = w.tcp('10.3.0.1', 42000, '10.3.0.2', port);
  for (const c of chunks) {
    for (let i = 0; i < c.data.length; i += split) {
      const part = c.data.subarray(i, i + split);
      if (c.fromClient) conv.c(part, 100); else conv.s(part, 100);
    }
  }
  return w.save(name);
}

test('TLS 1.3 and 1.2 handshakes from OpenSSL equal tshark, records split across segments', async (t) => {
  const v13 = await handshake({ ALPNProtocols: ['h2'] }, { servername: 'svc.example', ALPNProtocols: ['h2', 'http/1.1'] });
  const v12 = await handshake({ maxVersion: 'TLSv1.2', ALPNProtocols: ['http/1.1'] },
    { servername: 'legacy.example', ALPNProtocols: ['http/1.1'], ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
  for (const [chunks, sni, version, cipher] of [[v13, 'svc.example', '1.3', 'TLS_AES_256_GCM_SHA384'],
    [v12, 'legacy.example', '1.2', 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256']] as const) {
    for (const split of [1400, 50]) {
      const file = toPcap(chunks, `tls-${version}-${split}.pcap`, split);
      const run = runStage(file);
      checkTls(t, file, run, true);
      const logs = run.logs.filter((l) => l.l7_protocol === 'TLS');
      t.is(logs.length, 1, `one handshake, nothing from the encrypted records (split ${split})`);
      t.is(logs[0].request_domain, sni);
      t.is(logs[0].version, version);
      t.is(logs[0].response_result, cipher);
      t.is(logs[0].response_status, 'ok');
      t.true(logs[0].response_duration! > 0);
    }
  }
});

test('a version mismatch: the server\'s protocol_version alert answers the ClientHello', async (t) => {
  const chunks = await handshake({ maxVersion: 'TLSv1.2' }, { servername: 'new.example', minVersion: 'TLSv1.3' });
  const file = toPcap(chunks, 'tls-alert.pcap', 1400);
  const run = runStage(file);
  checkTls(t, file, run, true);
  const [log] = run.logs.filter((l) => l.l7_protocol === 'TLS');
  t.is(log.request_domain, 'new.example');
  t.is(log.response_code, 70);
  t.is(log.response_exception, 'protocol_version');
  t.is(log.response_status, 'server_error');
});

test('a ClientHello never answered times out after 15 s; mid-stream records report nothing', async (t) => {
  const chunks = await handshake({}, { servername: 'svc.example' });
  const w = new PcapWriter();
  const conv = w.tcp('10.3.0.1', 42001, '10.3.0.2', 443);
  conv.c(chunks.find((c) => c.fromClient)!.data);
  w.wait(20_000_000);
  // Another connection seen from its middle: application data only.
  const late = w.tcp('10.3.0.1', 42002, '10.3.0.2', 443);
  late.c(Buffer.concat([Buffer.from([23, 3, 3, 0, 5]), Buffer.from('abcde')]));
  const run = runStage(w.save('tls-timeout.pcap'));
  const logs = run.logs.filter((l) => l.l7_protocol === 'TLS');
  t.is(logs.length, 1);
  t.is(logs[0].response_status, 'timeout');
  t.is(tlsParser.sessionTimeoutUs, 15_000_000);
});

test('bad records are counted, never thrown', (t) => {
  const st = tlsParser.newFlowState();
  const ctx = { protocol: 6, fromClient: true, serverPort: 443, truncated: false };
  const before = tlsParser.drops.bad_record;
  t.is(tlsParser.parse(Buffer.from('GET / HTTP/1.1\r\n'), 0, 16, ctx, st, () => undefined), -1);
  t.is(tlsParser.drops.bad_record, before + 1);
  // A ClientHello whose lengths overrun: read as far as valid, one message.
  const hello = Buffer.from([22, 3, 1, 0, 12, 1, 0, 0, 8, 3, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  let n = 0;
  t.is(tlsParser.parse(hello, 0, hello.length, ctx, st, () => { n++; }), hello.length);
  t.is(n, 1);
});
