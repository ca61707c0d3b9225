// The eBPF path end to end for TLS and Redis: the socket tracer's TLS uprobes give l7 the
// plaintext of HTTPS (curl through libssl, node through its static OpenSSL), and its syscall
// probes give Redis commands between redis-cli and a real redis-server, each record carrying the
// processes at both ends.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { canTrace, freePort, sleep, startLiveAgent } from '../support/live-agent';

const hasRedis = spawnSync('redis-server', ['--version']).status === 0;
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

/** Runs a process to its end; resolves its pid and exit code. */
function run(cmd: string, args: string[]): Promise<{ pid: number; code: number | null; out: string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  return new Promise((resolve) => child.once('exit', (code) => resolve({ pid: child.pid!, code, out })));
}

async function waitListening(port: number): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) return true;
    await sleep(100);
  }
  return false;
}

/** Its 404 path says the status code comes from the response the tracer saw, not a default. */
const HTTPS_SERVER = `
const https = require('node:https'); const fs = require('node:fs');
const [key, cert, port] = process.argv.slice(1);
https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
  const missing = req.url.endsWith('/missing');
  res.writeHead(missing ? 404 : 200, { 'content-type': 'text/plain' });
  res.end(missing ? 'no\\n' : 'hello ' + req.url + '\\n');
}).listen(Number(port), '127.0.0.1');`;

/**
 * One connection per request (agent: false), one after the other in the same process: each new
 * connection can get the SSL* address of the one before it, freed, on another fd. The tracer must
 * learn the new fd instead of keeping the old one (which lost the plaintext once).
 */
const HTTPS_CLIENT = `
const https = require('node:https');
const [port, ...paths] = process.argv.slice(1);
const done = [];
(async () => {
  for (const p of paths) await new Promise((resolve, reject) => https.get({ host: '127.0.0.1', port: Number(port), path: p, rejectUnauthorized: false, agent: false },
    (res) => { done.push({ code: res.statusCode, clientPort: res.socket.localPort }); res.resume(); res.on('end', resolve); }).on('error', reject));
  console.log(JSON.stringify(done));
})().catch((e) => { console.error(e); process.exit(1); });`;

(canTrace && hasOpenssl ? test.serial : test.serial.skip)('HTTPS requests from curl and node appear in plaintext with is_tls and their processes, from eBPF', async (t) => {
  const agent = startLiveAgent(['curl', 'node'], 23000 + (process.pid % 300) * 10);
  const children: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of children) c.kill('SIGKILL');
    agent.kill();
  });
  const key = path.join(agent.dir, 'key.pem');
  const cert = path.join(agent.dir, 'cert.pem');
  const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
  t.is(gen.status, 0, 'openssl made a self-signed certificate');
  const port = await freePort();
  const server = spawn(process.execPath, ['-e', HTTPS_SERVER, key, cert, String(port)], { stdio: 'ignore' });
  children.push(server);
  t.true(await waitListening(port), 'the https server listens');
  t.true(await agent.waitTraced(), `the socket tracer is attached: ${agent.stderr()}`);
  await sleep(1500);

  const curlPaths = ['/curl/one', '/curl/missing'];
  const curlPids: number[] = [];
  // The status each client really got, as the expected response_code.
  const codes = new Map<string, number>();
  for (const p of curlPaths) {
    const r = await run('curl', ['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${port}${p}`]);
    t.is(r.code, 0, `curl ${p}`);
    curlPids.push(r.pid);
    codes.set(p, Number(r.out));
  }
  const nodePaths = ['/node/one', '/node/missing', '/node/three'];
  const nodeClient = await run(process.execPath, ['-e', HTTPS_CLIENT, String(port), ...nodePaths]);
  t.is(nodeClient.code, 0, 'the node client ran');
  const nodeDone = JSON.parse(nodeClient.out) as Array<{ code: number; clientPort: number }>;
  nodeDone.forEach((d, i) => codes.set(nodePaths[i], d.code));
  t.is(new Set(nodeDone.map((d) => d.clientPort)).size, nodePaths.length, 'the node client used a new connection per request');
  t.deepEqual([...codes.values()], [200, 404, 200, 404, 200], 'the server answered 404 on /missing');
  await sleep(1500);
  await agent.stop();

  const logs = agent.records('l7_flow_log').filter((l) => l.signal_source === 'ebpf' && l.server_port === port);
  const brief = JSON.stringify(logs.map((l) => [l.request_resource, l.is_tls, l.process_kname_0, l.process_id_0, l.process_kname_1, l.process_id_1, l.response_code]));
  const expectations: [string, string, number][] = [
    ...curlPaths.map((p, i): [string, string, number] => [p, 'curl', curlPids[i]]),
    ...nodePaths.map((p): [string, string, number] => [p, 'node', nodeClient.pid]),
  ];
  for (const [p, comm, pid] of expectations) {
    const expected = codes.get(p);
    const client = logs.find((l) => l.request_resource === p && l.process_id_0 === pid);
    t.truthy(client, `${comm}'s side of GET ${p}: ${brief}`);
    t.is(client?.process_kname_0, comm);
    t.is(client?.is_tls, true, `${comm} ${p} read through the TLS uprobes`);
    t.is(client?.request_type, 'GET');
    t.is(client?.response_code, expected, brief);
    const nodeIndex = nodePaths.indexOf(p);
    if (nodeIndex >= 0) t.is(client?.client_port, nodeDone[nodeIndex].clientPort, `node ${p} on its own connection`);
    const serverSide = logs.find((l) => l.request_resource === p && l.process_id_1 === server.pid);
    t.truthy(serverSide, `the server's side of GET ${p}: ${brief}`);
    t.is(serverSide?.process_kname_1, 'node');
    t.is(serverSide?.is_tls, true);
    t.is(serverSide?.response_code, expected);
  }
  // Ciphertext never reaches l7 as HTTP: nothing parsed carries TLS record bytes as a resource.
  t.false(logs.some((l) => l.is_tls !== true && l.l7_protocol === 'HTTP'), `no plaintext HTTP record without is_tls: ${brief}`);
});

(canTrace && hasRedis ? test.serial : test.serial.skip)('Redis commands between redis-cli and redis-server appear with their processes and errors, from eBPF', async (t) => {
  const agent = startLiveAgent(['redis-cli', 'redis-server'], 26000 + (process.pid % 300) * 10);
  const port = await freePort();
  const redisDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-redis-'));
  const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', redisDir], { stdio: 'ignore' });
  t.teardown(() => {
    server.kill('SIGKILL');
    agent.kill();
    fs.rmSync(redisDir, { recursive: true, force: true });
  });
  t.true(await waitListening(port), 'redis-server listens');
  t.true(await agent.waitTraced(), `the socket tracer is attached: ${agent.stderr()}`);
  await sleep(1500);

  const set = await run('redis-cli', ['-p', String(port), 'SET', 'k', 'v']);
  const get = await run('redis-cli', ['-p', String(port), 'GET', 'k']);
  // INCR on a string value: redis-server answers with an error reply.
  const incr = await run('redis-cli', ['-p', String(port), 'INCR', 'k']);
  t.is(set.out.trim(), 'OK');
  t.is(get.out.trim(), 'v');
  t.regex(incr.out, /ERR value is not an integer/, 'redis-server refused INCR');
  await sleep(1500);
  await agent.stop();

  const logs = agent.records('l7_flow_log').filter((l) => l.signal_source === 'ebpf' && l.server_port === port);
  const brief = JSON.stringify(logs.map((l) => [l.l7_protocol, l.request_type, l.request_resource, l.process_kname_0, l.process_id_0, l.process_kname_1, l.process_id_1, l.response_status, l.response_exception]));
  for (const [cmd, pid] of [['SET', set.pid], ['GET', get.pid], ['INCR', incr.pid]] as const) {
    const client = logs.find((l) => l.request_type === cmd && l.process_id_0 === pid);
    t.truthy(client, `redis-cli's side of ${cmd}: ${brief}`);
    t.is(client?.process_kname_0, 'redis-cli');
    t.is(client?.l7_protocol, 'Redis');
    t.false(client?.is_tls ?? true, 'syscall data is not TLS');
    const serverSide = logs.find((l) => l.request_type === cmd && l.process_id_1 === server.pid);
    t.truthy(serverSide, `redis-server's side of ${cmd}: ${brief}`);
    t.is(serverSide?.process_kname_1, 'redis-server');
    if (cmd === 'INCR') {
      // The error text the record carries is the one redis-cli printed.
      for (const side of [client, serverSide]) {
        t.regex(String(side?.response_exception ?? ''), /^ERR value is not an integer/, brief);
        t.true(incr.out.includes(String(side?.response_exception)), `${incr.out} vs ${brief}`);
      }
    } else {
      for (const side of [client, serverSide]) t.falsy(side?.response_exception, `${cmd} succeeded: ${brief}`);
    }
  }
});
