// HTTPS on loopback: a Node https server (OpenSSL linked into node, memory BIOs) against curl
// (libssl.so.3, socket BIO) and a Node https client. The tracer's TLS uprobes must report the
// plaintext on both sides, marked is_tls, with the right process and 5-tuple. (openssl s_server
// -www cannot serve here: it reads through an SSL BIO, which never calls the exported SSL_read.) The oracle is tshark decrypting tcpdump's capture
// with the clients' TLS key logs (SSLKEYLOGFILE for curl, --tls-keylog for node).
import test from 'ava';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ebpfStatus } from '../../native/ebpf';
import { tsharkFields } from '../support/tshark';
import { collectRows, freePort, run, startTcpdump, waitFor, waitListening, Row } from './helpers';

const EGRESS = 0, INGRESS = 1;
const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;

/** A temp dir with a self-signed key and certificate, and a Node https server answering
 * `hello <url>` on a free port, listening when this returns: it runs before the tracer's probes
 * exist (a running process), while the clients the tests start come after them. */
async function startHttpsServer(): Promise<{ dir: string; port: number; server: ChildProcess }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-tls-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
  const port = await freePort();
  const serverScript = `const fs = require('fs');
    require('https').createServer({ key: fs.readFileSync(${JSON.stringify(key)}), cert: fs.readFileSync(${JSON.stringify(cert)}) },
      (req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('hello ' + req.url); }).listen(${port}, '127.0.0.1');`;
  const server = spawn(process.execPath, ['-e', serverScript], { stdio: 'ignore' });
  await waitListening(port);
  return { dir, port, server };
}

maybe('HTTPS from curl and from a Node https client to a Node https server appears in plaintext with is_tls', async (t) => {
  t.timeout(60_000);
  const { dir, port, server } = await startHttpsServer();
  const { collector, rows } = collectRows({ capBytes: 4096 }, (r: Row) => r.localPort === port || r.remotePort === port);
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    t.true(collector.tlsFiles.some((f) => /libssl\.so/.test(f)), `libssl probed: ${collector.tlsFiles.join(', ')} ${collector.tlsLastError}`);
    t.true(collector.tlsFiles.includes(fs.realpathSync(process.execPath)), 'the node binary probed');
    const dump = await startTcpdump(`tcp port ${port}`);
    const keylog = path.join(dir, 'keys.log');
    const curl = await new Promise<{ code: number; pid: number }>((resolve) => {
      const c = spawn('curl', ['-sk', '-o', '/dev/null', `https://127.0.0.1:${port}/from-curl`], { stdio: 'ignore', env: { ...process.env, SSLKEYLOGFILE: keylog } });
      c.on('close', (code) => resolve({ code: code ?? -1, pid: c.pid! }));
    });
    t.is(curl.code, 0);
    // No process.exit: node writes the key log asynchronously; agent: false closes the socket at the end.
    const nodeClient = `require('https').get({ host: '127.0.0.1', port: ${port}, path: '/from-node', rejectUnauthorized: false, agent: false },
      (res) => res.resume()).on('error', (e) => { console.error(e); process.exitCode = 1; });`;
    const node = await run(process.execPath, [`--tls-keylog=${keylog}`, '-e', nodeClient]);
    t.is(node.code, 0, node.stderr);
    await dump.stop();
    await waitFor(() => rows.filter((r) => r.isTls && r.direction === INGRESS && r.remotePort === port).length >= 2, 5000);
    collector.drain();
    // Stop tracing before tshark: execFileSync blocks this event loop, and the ring would overflow
    // with everything else the machine does meanwhile.
    const lostWhileTracing = collector.drops.ringbuf_full;
    collector.close();

    // Oracle: tshark decrypts the TLS with the key logs.
    const http = tsharkFields(dump.file, ['tcp.srcport', 'tcp.dstport', 'http.request.uri', 'http.response.code'], {
      filter: 'http', prefs: [`tls.keylog_file:${keylog}`],
    });
    const requests = http.filter((h) => h[2] !== '');
    t.is(requests.length, 2, JSON.stringify(http));
    for (const [client, uri, pid, comm] of [
      [requests.find((h) => h[2] === '/from-curl')!, '/from-curl', curl.pid, 'curl'],
      [requests.find((h) => h[2] === '/from-node')!, '/from-node', node.pid, 'node'],
    ] as Array<[string[], string, number, string]>) {
      const clientPort = Number(client[0]);
      const mine = rows.filter((r) => r.pid === pid && r.localPort === clientPort && r.remotePort === port);
      const sent = mine.filter((r) => r.isTls === 1 && r.direction === EGRESS);
      t.true(sent.length >= 1, `${comm}: plaintext request traced`);
      t.is(sent[0].comm, comm);
      t.is(sent[0].syscall, 'SSL_write');
      t.true(sent[0].payload.toString('latin1').startsWith(`GET ${uri} HTTP/1.1\r\n`), `${comm} request: ${JSON.stringify(sent[0].payload.toString('latin1').slice(0, 40))}`);
      const got = mine.filter((r) => r.isTls === 1 && r.direction === INGRESS);
      t.true(got.some((r) => r.payload.toString('latin1').startsWith('HTTP/1.1 200 OK')), `${comm}: plaintext response traced`);
      t.true(got.some((r) => r.payload.toString('latin1').includes(`hello ${uri}`)), `${comm}: plaintext body traced`);
      // Once the socket is known as TLS, no ciphertext of it is reported as application data. In
      // delivery order, which is program order for one thread although it moves between CPUs.
      const firstTls = mine.findIndex((r) => r.isTls === 1);
      t.false(mine.some((r, i) => r.kind === 1 && !r.isTls && i > firstTls), `${comm}: no ciphertext after the plaintext`);
      // The server side: node read the same request in plaintext, with its own pid.
      const srv = rows.filter((r) => r.pid === server.pid && r.remotePort === clientPort && r.isTls === 1);
      const srvIn = srv.find((r) => r.direction === INGRESS);
      t.truthy(srvIn, `the server read ${uri} in plaintext`);
      t.true(srvIn!.payload.toString('latin1').startsWith(`GET ${uri} HTTP/1.1`));
      t.is(srvIn!.comm, 'node');
      t.is(srvIn!.localPort, port);
      t.true(srv.some((r) => r.direction === EGRESS && r.traceId === srvIn!.traceId && r.payload.toString('latin1').startsWith('HTTP/1.1 200 OK')),
        'the response carries the request\'s syscall_trace_id');
    }
    // The wire itself never shows the plaintext request.
    const wire = fs.readFileSync(dump.file);
    t.false(wire.includes('GET /from-curl'), 'the capture is encrypted');
    t.is(lostWhileTracing, 0, 'no event lost while tracing');
  } finally {
    server.kill();
    collector.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// One Node process, one connection per request, one after the other: Node frees each
// connection's SSL* and the next connection often gets the same address on another fd, so the
// tracer must not keep the SSL* -> fd of the closed connection (it once lost all plaintext after
// the first connection, counted as tls_no_fd).
maybe('sequential HTTPS connections from one Node process each appear in plaintext', async (t) => {
  t.timeout(60_000);
  const { dir, port, server } = await startHttpsServer();
  const { collector, rows } = collectRows({ capBytes: 4096 }, (r: Row) => r.localPort === port || r.remotePort === port);
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    const paths = ['/first', '/second', '/third', '/fourth'];
    const client = `const https = require('https'); const out = [];
      (async () => {
        for (const p of ${JSON.stringify(paths)}) await new Promise((resolve, reject) => https.get({ host: '127.0.0.1', port: ${port}, path: p, rejectUnauthorized: false, agent: false },
          (res) => { let body = ''; res.on('data', (d) => { body += d; }); res.on('end', () => { out.push([res.socket.localPort, body]); resolve(); }); }).on('error', reject));
        console.log(JSON.stringify(out));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const node = await run(process.execPath, ['-e', client]);
    t.is(node.code, 0, node.stderr);
    const seen = JSON.parse(node.stdout) as Array<[number, string]>;
    t.is(new Set(seen.map(([p]) => p)).size, paths.length, 'a new connection per request');
    await waitFor(() => rows.filter((r) => r.pid === node.pid && r.isTls && r.direction === INGRESS).length >= paths.length, 5000);
    collector.drain();
    for (const [i, uri] of paths.entries()) {
      const [clientPort, body] = seen[i];
      t.is(body, `hello ${uri}`);
      const mine = rows.filter((r) => r.pid === node.pid && r.localPort === clientPort && r.isTls === 1);
      const sent = mine.filter((r) => r.direction === EGRESS).map((r) => r.payload.toString('latin1')).join('');
      const got = mine.filter((r) => r.direction === INGRESS).map((r) => r.payload.toString('latin1')).join('');
      t.true(sent.startsWith(`GET ${uri} HTTP/1.1\r\n`), `connection ${i + 1}: request ${JSON.stringify(sent.slice(0, 30))}`);
      t.true(got.startsWith('HTTP/1.1 200 OK\r\n') && got.includes(`\r\nhello ${uri}\r\n`), `connection ${i + 1}: response ${JSON.stringify(got.slice(-30))}`);
      t.true(mine.every((r) => r.comm === 'node' && r.remotePort === port));
      // The server's side of the same connection, in plaintext too.
      const srv = rows.filter((r) => r.pid === server.pid && r.remotePort === clientPort && r.isTls === 1);
      t.true(srv.some((r) => r.direction === INGRESS && r.payload.toString('latin1').startsWith(`GET ${uri} `)), `server read ${uri}`);
    }
    t.is(collector.drops.tls_no_fd, 0, 'no TLS call without its socket');
  } finally {
    server.kill();
    collector.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
