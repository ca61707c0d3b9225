// The kernel-side pid filter changed at run time. Each traced thread keeps its process's verdict
// in its task storage (no hash lookup per syscall) until the loader bumps the filter generation:
// a process already being traced must stop being traced when it is skipped, and come back when
// it is forgotten, without restarting its threads.
import test from 'ava';
import { spawn } from 'node:child_process';
import { ebpfStatus } from '../../native/ebpf';
import { collectRows, freePort, sleep, waitFor, Row } from './helpers';

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;
if (!available.available) console.log(available.message);

// One process, both ends: an HTTP server and a keep-alive client asking it every 20 ms.
const CHILD = `
  const http = require('http');
  const port = Number(process.argv[1]);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  http.createServer((req, res) => res.end('pong')).listen(port, '127.0.0.1', () => {
    setInterval(() => http.get({ port, host: '127.0.0.1', agent }, (res) => res.resume()), 20);
  });`;

maybe('a process skipped, then forgotten, at run time stops and resumes being traced', async (t) => {
  const port = await freePort();
  const child = spawn(process.execPath, ['-e', CHILD, String(port)], { stdio: 'ignore' });
  const keep = (r: Row) => r.pid === child.pid && r.kind === 1 && (r.localPort === port || r.remotePort === port);
  const { collector, rows } = collectRows({ capBytes: 256, tls: false }, keep);
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    t.true(await waitFor(() => rows.length >= 8, 10000), 'the running process is traced');

    collector.tracePid(child.pid!, 'skip');
    await sleep(100); // requests in flight when the filter changed
    collector.drain();
    rows.length = 0;
    await sleep(600); // about 30 requests
    collector.drain();
    t.is(rows.length, 0, 'no event after the process was skipped');

    collector.tracePid(child.pid!, 'forget');
    t.true(await waitFor(() => { collector.drain(); return rows.length >= 8; }, 5000), 'traced again once forgotten');
    t.true(rows.some((r) => r.payload.toString('latin1').startsWith('GET / HTTP/1.1')), 'with its payloads');
  } finally {
    collector.close();
    child.kill();
  }
});
