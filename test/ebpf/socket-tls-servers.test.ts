// HTTPS on loopback against servers that use the system libssl.so.3 through its socket BIO:
// Debian's nginx (master + one worker) and `openssl s_server`, each asked by curl (libssl.so.3)
// and by a Node https client (OpenSSL linked into node, memory BIOs) on separate connections.
// Both ends of each connection must be reported in plaintext with is_tls by the process that
// made the SSL_read/SSL_write call, on the right 5-tuple and direction, and the ciphertext of the
// same bytes must not be reported as well (but for the handshake's, see handshakeReadAhead).
// nginx is tested already running when the collector starts (TLS 1.2, its default) and started
// after it (TLS 1.3): the uprobe belongs to libssl's inode, so a process that maps the library
// later is covered without a rescan. The oracle is tshark decrypting tcpdump's capture with the
// clients' key logs. The collector traces only the test's servers and clients (include mode, each
// added before it makes its first TLS call): the record areas are the machine's, and another test's burst
// must not cost this one its rows.
//
// openssl s_server is tested in its default mode (stdin/stdout relay), where apps/s_server.c's
// sv_body() calls the exported SSL_read()/SSL_write() itself; the test reads the request on
// s_server's stdout and types the response on its stdin. Its -www, -WWW, -HTTP and -rev modes
// are invisible to the tracer: www_body()/rev_body() stack a BIO_f_buffer() on a BIO_f_ssl() and
// do BIO_gets()/BIO_puts()/BIO_write() on it, and the SSL BIO's ssl_read()/ssl_write()
// (ssl/bio_ssl.c) call ssl_read_internal()/ssl_write_internal(), which libssl does not export:
// neither SSL_read(_ex) nor SSL_write(_ex) runs. Counted with uprobes on those functions' entry
// in Debian 12's libssl.so.3 (OpenSSL 3.0), one curl request each: the default mode runs
// SSL_read 2 times (the request, then the close), SSL_write once, SSL_do_handshake once; -www
// and -rev run SSL_read, SSL_read_ex, SSL_write and SSL_write_ex 0 times. Such a server's
// syscalls are reported as they are: ciphertext, is_tls 0.
import test, { ExecutionContext } from 'ava';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ebpfStatus } from '../../native/ebpf';
import { tsharkFields } from '../support/tshark';
import { EbpfCollector } from '../../services/capture/ebpf-collector';
import { collectRows, freePort, startTcpdump, waitFor, waitListening, Row } from './helpers';

const EGRESS = 0, INGRESS = 1;
const KIND_DATA = 1;
const IPPROTO_TCP = 6;
const TLS12 = '0x0303', TLS13 = '0x0304';
/** Include mode from the start; the test's own pid stands in until the servers and clients come. */
const TRACED = { capBytes: 4096, includePids: [process.pid] };
const available = ebpfStatus();
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p));
const maybe = available.available ? test.serial : test.serial.skip;
const maybeNginx = available.available && NGINX ? test.serial : test.serial.skip;
if (!available.available) console.log(available.message);
if (!NGINX) console.log('nginx not installed (apt-get install nginx): the nginx tests are skipped');

interface TlsDir { dir: string; key: string; cert: string; keylog: string; port: number }

async function tlsDir(): Promise<TlsDir> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-tls-srv-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  return { dir, key, cert, keylog: path.join(dir, 'keys.log'), port: await freePort() };
}

/**
 * The process answering TLS: its pid and comm as the tracer must report them, and the server's
 * other processes (nginx's master), traced too so that a row of theirs would show.
 */
interface TlsServer { pid: number; comm: string; others: number[]; stop: () => void; log: () => string }

/**
 * nginx in a private prefix: master + 1 worker in the foreground, answering `hello <uri>`.
 * `protocols`: its ssl_protocols (Debian's 1.22 offers TLS 1.0-1.2 by default; 1.3 from 1.23.4).
 */
async function startNginx(d: TlsDir, protocols?: string): Promise<TlsServer> {
  const conf = path.join(d.dir, 'nginx.conf');
  const errorLog = path.join(d.dir, 'error.log');
  const temp = (name: string) => `${name}_temp_path ${path.join(d.dir, name)};`;
  fs.writeFileSync(conf, `
daemon off;
master_process on;
worker_processes 1;
pid ${path.join(d.dir, 'nginx.pid')};
error_log ${errorLog} info;
events { worker_connections 64; }
http {
  access_log ${path.join(d.dir, 'access.log')};
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  server {
    listen 127.0.0.1:${d.port} ssl;
    ssl_certificate ${d.cert};
    ssl_certificate_key ${d.key};
    ${protocols ? `ssl_protocols ${protocols};` : ''}
    location / { default_type text/plain; return 200 "hello $uri\\n"; }
  }
}
`);
  // -e: the error log before the configuration is read (else the compiled-in /var/log path).
  const master = spawn(NGINX!, ['-p', d.dir, '-c', conf, '-e', errorLog], { stdio: 'ignore' });
  const log = () => (fs.existsSync(errorLog) ? fs.readFileSync(errorLog, 'utf8') : '');
  const children = () => {
    try {
      return fs.readFileSync(`/proc/${master.pid}/task/${master.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  await waitListening(d.port);
  if (!(await waitFor(() => children().length === 1, 5000))) throw new Error(`nginx worker not seen: ${log()}`);
  return { pid: children()[0], comm: 'nginx', others: [master.pid!], stop: () => master.kill('SIGTERM'), log };
}

/** What one client did: its pid, comm, and the path it asked for. */
interface Exchange { pid: number; comm: string; uri: string; code: number; stderr: string }

/** Adds a process to the collector's include list. */
type Trace = (pid: number) => void;

/**
 * Runs a client that waits for a line on stdin before it connects: `trace` gets its pid first.
 * (`sh -c 'read; exec ...'` keeps the pid; exec gives it the client's comm.)
 */
function gatedClient(cmd: string, env: NodeJS.ProcessEnv, trace: Trace, comm: string, uri: string): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const c = spawn('sh', ['-c', `read go && exec ${cmd}`], { stdio: ['pipe', 'ignore', 'pipe'], env });
    let stderr = '';
    c.stderr!.on('data', (b: Buffer) => { stderr += b; });
    c.on('error', reject);
    c.on('close', (code) => resolve({ code: code ?? -1, pid: c.pid!, comm, uri, stderr }));
    trace(c.pid!);
    c.stdin!.end('go\n');
  });
}

const shellQuote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

function curlGet(d: TlsDir, uri: string, trace: Trace): Promise<Exchange> {
  const cmd = ['curl', '-sk', '--http1.1', '-o', '/dev/null', `https://127.0.0.1:${d.port}${uri}`].map(shellQuote).join(' ');
  return gatedClient(cmd, { ...process.env, SSLKEYLOGFILE: d.keylog }, trace, 'curl', uri);
}

function nodeGet(d: TlsDir, uri: string, trace: Trace): Promise<Exchange> {
  // No process.exit: node writes the key log asynchronously; agent: false closes the socket at the end.
  const script = `require('https').get({ host: '127.0.0.1', port: ${d.port}, path: ${JSON.stringify(uri)}, rejectUnauthorized: false, agent: false },
    (res) => res.resume()).on('error', (e) => { console.error(e); process.exitCode = 1; });`;
  const cmd = [process.execPath, `--tls-keylog=${d.keylog}`, '-e', script].map(shellQuote).join(' ');
  return gatedClient(cmd, process.env, trace, 'node', uri);
}

const text = (rows: Row[]) => Buffer.concat(rows.map((r) => r.payload)).toString('latin1');

/**
 * Checks one client's exchange with `server` against tshark's decryption of the capture: the
 * request and response in plaintext with is_tls on both ends, each by its own process, on the
 * connection tshark saw, and none of the ciphertext that carried them reported. Returns the rows
 * of the one known exception (see handshakeReadAhead).
 */
function checkExchange(t: ExecutionContext, rows: Row[], d: TlsDir, server: TlsServer, client: Exchange, wire: string[][]): Row[] {
  const request = wire.find((w) => w[2] === client.uri);
  if (!request) {
    t.fail(`tshark saw no request for ${client.uri}: ${JSON.stringify(wire.map((w) => w.slice(0, 4)))}`);
    return [];
  }
  const clientPort = Number(request[0]);
  t.is(Number(request[1]), d.port);
  const response = wire.find((w) => w[3] === '200' && Number(w[0]) === d.port && Number(w[1]) === clientPort);
  t.truthy(response, `tshark saw the 200 response to ${client.uri}`);
  const body = `hello ${client.uri}\n`;

  // The client's end.
  const mine = rows.filter((r) => r.pid === client.pid && r.localPort === clientPort && r.remotePort === d.port);
  const sent = mine.filter((r) => r.isTls === 1 && r.direction === EGRESS);
  const got = mine.filter((r) => r.isTls === 1 && r.direction === INGRESS);
  t.true(sent.length >= 1 && got.length >= 1, `${client.comm}: plaintext both ways (${sent.length} out, ${got.length} in)`);
  const tcpLoopback = (r: Row) => r.protocol === IPPROTO_TCP && r.local === '127.0.0.1' && r.remote === '127.0.0.1';
  t.true(mine.every((r) => r.comm === client.comm && tcpLoopback(r)), `${client.comm}: comm and 5-tuple`);
  t.true(sent.every((r) => r.syscall === 'SSL_write') && got.every((r) => r.syscall === 'SSL_read'));
  t.true(text(sent).startsWith(`GET ${client.uri} HTTP/1.1\r\n`), `${client.comm} request: ${JSON.stringify(text(sent).slice(0, 40))}`);
  t.true(text(got).startsWith('HTTP/1.1 200 OK\r\n') && text(got).endsWith(`\r\n\r\n${body}`), `${client.comm} response: ${JSON.stringify(text(got))}`);

  // The server's end of the same connection, by the process that called SSL_read/SSL_write.
  const serverEnd = rows.filter((r) => r.localPort === d.port && r.remotePort === clientPort);
  t.deepEqual([...new Set(serverEnd.map((r) => r.pid))], [server.pid], `the server end of ${client.comm}'s connection is ${server.comm} ${server.pid}'s`);
  const srv = serverEnd.filter((r) => r.pid === server.pid);
  const srvIn = srv.filter((r) => r.isTls === 1 && r.direction === INGRESS);
  const srvOut = srv.filter((r) => r.isTls === 1 && r.direction === EGRESS);
  t.true(srvIn.length >= 1 && srvOut.length >= 1, `${server.comm} for ${client.comm}: plaintext both ways (${srvIn.length} in, ${srvOut.length} out)`);
  t.true(srv.every((r) => r.comm === server.comm && tcpLoopback(r)), `${server.comm}: comm and 5-tuple`);
  t.true(srvIn.every((r) => r.syscall === 'SSL_read') && srvOut.every((r) => r.syscall === 'SSL_write'));
  t.is(text(srvIn), text(sent), `${server.comm} read what ${client.comm} wrote`);
  t.is(text(srvOut), text(got), `${client.comm} read what ${server.comm} wrote`);
  if (srvIn.length > 0 && srvOut.length > 0) t.is(srvOut[0].traceId, srvIn[0].traceId, 'the response carries the request\'s syscall_trace_id');

  // No ciphertext of the exchange: once a socket's plaintext is reported, none of its data rows
  // is ciphertext, and the TLS records that carried the request and response (their last 16
  // bytes, the AEAD tag, as tshark saw them on the wire) appear in no row at all. "Once" is in
  // ring order, which is program order within one thread (each side here is one thread):
  // timestampUs is not, its epoch offset is re-read per delivery at Date.now()'s 1 ms resolution.
  for (const [who, side] of [[client.comm, mine], [server.comm, srv]] as Array<[string, Row[]]>) {
    const firstTls = side.findIndex((r) => r.isTls === 1);
    const late = side.filter((r, i) => r.kind === KIND_DATA && !r.isTls && firstTls >= 0 && i > firstTls);
    t.is(late.length, 0, `${who}: ciphertext reported after the plaintext: ${JSON.stringify(late.map((r) => [r.syscall, r.syscallLen]))}`);
  }
  const readAhead: Row[] = [];
  for (const frame of [request, response]) {
    if (!frame || frame[4] === '') continue;
    const tag = Buffer.from(frame[4].replace(/:/g, ''), 'hex').subarray(-16);
    const leaks = rows.filter((r) => r.payload.includes(tag));
    const known: Row[] = frame === request ? leaks.filter((r) => handshakeReadAhead(r, srv)) : [];
    readAhead.push(...known);
    t.is(leaks.length - known.length, 0, `the ciphertext carrying ${frame[2] || frame[3]} is not reported: ${JSON.stringify(leaks.map((r) => [r.comm, r.syscall, r.syscallLen]))}`);
  }
  return readAhead;
}

/**
 * The one place the first request's ciphertext is reported, by design: a server with read-ahead
 * (nginx sets it) that gets the client's first application record in the same segment as the
 * handshake's last flight (TLS 1.3: Node's client writes Finished and request at once) reads both
 * in one syscall inside SSL_do_handshake, and the SSL_read that returns the request from the
 * library's buffer makes none. That read belongs to the handshake, whose records the tracer
 * reports as plain data on purpose (the L7 TLS parser reads SNI, versions and cipher from them,
 * and skips application records by length); claiming SSL_do_handshake's syscalls like
 * SSL_read's would hide the request's ciphertext but also the whole handshake. True for such a
 * row of `server` (the server's rows of the connection, in ring order): an ingress read before
 * its first plaintext row.
 */
function handshakeReadAhead(r: Row, server: Row[]): boolean {
  const at = server.indexOf(r);
  const firstTls = server.findIndex((x) => x.isTls === 1);
  return at >= 0 && r.isTls === 0 && r.direction === INGRESS && (firstTls < 0 || at < firstTls);
}

/** tshark's HTTP rows of the capture, decrypted: [srcport, dstport, uri, status, tcp payload]. */
function decryptedHttp(pcap: string, keylog: string): string[][] {
  const size = fs.existsSync(pcap) ? fs.statSync(pcap).size : -1;
  if (size <= 24) throw new Error(`tcpdump wrote no packets (${pcap}: ${size} bytes)`);
  return tsharkFields(pcap, ['tcp.srcport', 'tcp.dstport', 'http.request.uri', 'http.response.code', 'tcp.payload'], {
    filter: 'http', prefs: [`tls.keylog_file:${keylog}`],
  });
}

/**
 * curl then a Node client against `server` (one connection each); `answer` is called while a
 * client waits for its response. Returns, after all checks, the handshake reads that carried a
 * first request record (handshakeReadAhead).
 */
async function exerciseServer(t: ExecutionContext, d: TlsDir, server: TlsServer, collector: EbpfCollector, rows: Row[],
  tlsVersion: string, answer: (uri: string) => Promise<void> = async () => undefined): Promise<Row[]> {
  const trace: Trace = (pid) => collector.tracePid(pid, 'trace');
  for (const pid of [server.pid, ...server.others]) trace(pid);
  const dump = await startTcpdump(`tcp port ${d.port}`);
  const [curl] = await Promise.all([curlGet(d, '/from-curl', trace), answer('/from-curl')]);
  t.is(curl.code, 0, `curl: ${curl.stderr} ${server.log()}`);
  const [node] = await Promise.all([nodeGet(d, '/from-node', trace), answer('/from-node')]);
  t.is(node.code, 0, node.stderr);
  await dump.stop();
  await waitFor(() => rows.filter((r) => r.pid === server.pid && r.isTls && r.direction === EGRESS).length >= 2, 5000);
  const lost = collector.drops.ringbuf_full;

  const wire = decryptedHttp(dump.file, d.keylog);
  // The version each ServerHello chose (TLS 1.3 says so in its supported_versions extension).
  const versions = tsharkFields(dump.file, ['tls.handshake.version', 'tls.handshake.extensions.supported_version'], { filter: 'tls.handshake.type == 2' })
    .map(([legacy, chosen]) => chosen || legacy);
  t.deepEqual(versions, [tlsVersion, tlsVersion], 'the TLS version negotiated on both connections');
  const readAhead = [curl, node].flatMap((client) => checkExchange(t, rows, d, server, client, wire));
  if (readAhead.length > 0) t.log(`${readAhead.length} handshake read(s) carried the first request record (read-ahead)`);
  t.is(lost, 0, 'no event lost while tracing');
  t.false(fs.readFileSync(dump.file).includes('GET /from-'), 'the capture is encrypted');
  return readAhead;
}

maybeNginx('nginx running before the collector, TLS 1.2: curl and Node clients, both ends in plaintext with is_tls', async (t) => {
  t.timeout(60_000);
  const d = await tlsDir();
  const server = await startNginx(d);
  const { collector, rows } = collectRows(TRACED, (r: Row) => r.localPort === d.port || r.remotePort === d.port);
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    const libssl = fs.readFileSync(`/proc/${server.pid}/maps`, 'latin1').split('\n').map((l) => l.slice(l.indexOf('/'))).find((f) => /\/libssl\.so/.test(f));
    t.truthy(libssl, 'the nginx worker maps libssl');
    t.true(collector.tlsFiles.includes(fs.realpathSync(libssl!)), `nginx's libssl probed: ${collector.tlsFiles.join(', ')} ${collector.tlsLastError}`);
    await exerciseServer(t, d, server, collector, rows, TLS12);
    t.is(collector.drops.tls_no_fd, 0, 'no TLS call without its socket');
  } finally {
    collector.close();
    server.stop();
    fs.rmSync(d.dir, { recursive: true, force: true });
  }
});

maybeNginx('nginx started after the collector (no rescan), TLS 1.3: curl and Node clients, both ends in plaintext with is_tls', async (t) => {
  t.timeout(60_000);
  const d = await tlsDir();
  const { collector, rows } = collectRows(TRACED, (r: Row) => r.localPort === d.port || r.remotePort === d.port);
  let server: TlsServer | undefined;
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    server = await startNginx(d, 'TLSv1.3');
    await exerciseServer(t, d, server, collector, rows, TLS13);
    t.is(collector.drops.tls_no_fd, 0, 'no TLS call without its socket');
  } finally {
    collector.close();
    server?.stop();
    fs.rmSync(d.dir, { recursive: true, force: true });
  }
});

/** openssl s_server in its default mode: prints what it reads, sends what it gets on stdin. */
async function startSServer(d: TlsDir): Promise<TlsServer & { received: () => string; type: (s: string) => void }> {
  const child: ChildProcess = spawn('openssl', ['s_server', '-quiet', '-accept', `127.0.0.1:${d.port}`, '-cert', d.cert, '-key', d.key], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => { out += b.toString('latin1'); });
  child.stderr!.on('data', (b: Buffer) => { err += b.toString('latin1'); });
  child.stdin!.on('error', () => undefined);
  // Probing the port with a plain TCP connect would cost s_server a failed handshake: wait for
  // the listening socket in /proc instead.
  const hexPort = d.port.toString(16).toUpperCase().padStart(4, '0');
  const listening = () => fs.readFileSync('/proc/net/tcp', 'latin1').split('\n').some((l) => l.includes(`0100007F:${hexPort} 00000000:0000 0A`));
  if (!(await waitFor(listening, 5000))) throw new Error(`s_server not listening: ${err}`);
  return {
    pid: child.pid!, comm: 'openssl', others: [], stop: () => child.kill(), log: () => err,
    received: () => out, type: (s) => child.stdin!.write(s),
  };
}

maybe('openssl s_server (default mode): curl and Node clients, both ends in plaintext with is_tls', async (t) => {
  t.timeout(60_000);
  const d = await tlsDir();
  const { collector, rows } = collectRows(TRACED, (r: Row) => r.localPort === d.port || r.remotePort === d.port);
  let server: Awaited<ReturnType<typeof startSServer>> | undefined;
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    const s = server = await startSServer(d);
    // Answers each request once s_server has printed it (one connection at a time).
    const answer = async (uri: string): Promise<void> => {
      const complete = () => {
        const at = s.received().indexOf(`GET ${uri} HTTP/1.1\r\n`);
        return at >= 0 && s.received().indexOf('\r\n\r\n', at) > 0;
      };
      const seen = await waitFor(complete, 10_000);
      if (!seen) throw new Error(`s_server did not print the request for ${uri}: ${JSON.stringify(s.received())} ${s.log()}`);
      const body = `hello ${uri}\n`;
      s.type(`HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    };
    await exerciseServer(t, d, s, collector, rows, TLS13, answer);
    t.is(collector.drops.tls_no_fd, 0, 'no TLS call without its socket');
  } finally {
    collector.close();
    server?.stop();
    fs.rmSync(d.dir, { recursive: true, force: true });
  }
});
