// HTTP requests per second through L7Stage on one core: `node dist/test/l7/bench.js [pairs]`.
// Input: 1000 keep-alive connections, each a run of request/response pairs with browser-like
// headers (~350 B requests, responses with a 4 KB body cut to 1024 B as the capture cuts it).
import { flowtap } from '../../lib/proto';
import { L7Stage } from '../../services/l7/stage';
import { ipToBytes } from './tshark';

const pairs = Number(process.argv[2] ?? 500_000);
const flows = 1000;
const req = (i: number) => Buffer.from(`GET /api/v1/items/${i}?page=2&sort=desc HTTP/1.1\r\nHost: shop.example.com\r\n` +
  'User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n' +
  'Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\n' +
  'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n');
const body = 4096;
const resp = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${body}\r\n` +
  'Date: Tue, 24 Nov 2026 02:00:00 GMT\r\nServer: nginx\r\nX-Request-ID: 6f1c2a\r\n\r\n'), Buffer.alloc(body, 0x61)]);
const respCut = resp.subarray(0, 1024);

// Build the payload records once: the bench measures the stage, not the generator.
const items: flowtap.IAppPayload[] = [];
const seq = new Array(flows).fill(0).map(() => [1000, 50000]);
const ip0 = ipToBytes('10.0.0.1'), ip1 = ipToBytes('10.0.0.2');
let t = 1_700_000_000_000_000;
const total = Math.min(pairs, 200_000);
for (let i = 0; i < total; i++) {
  const f = i % flows;
  const q = req(i);
  const base = { flow_id: f + 1, ip_version: 4, ip_0: ip0, ip_1: ip1, client_port: 30000 + f, server_port: 80, protocol: 6, l7_protocol: 'HTTP', vlan: 0 };
  items.push({ ...base, timestamp_us: (t += 10), from_client: true, tcp_seq: seq[f][0], payload_len: q.length, payload: q });
  seq[f][0] += q.length;
  items.push({ ...base, timestamp_us: (t += 500), from_client: false, tcp_seq: seq[f][1], payload_len: resp.length, payload: respCut });
  seq[f][1] += resp.length;
}

let logs = 0;
const stage = new L7Stage(() => { logs++; }, () => undefined);
const rounds = Math.ceil(pairs / total);
let elapsed = 0n;
for (let r = 0; r < rounds; r++) {
  if (r > 0) {
    // Replay as new connections later in the same capture (not timed).
    for (const it of items) { it.flow_id = (it.flow_id as number) + flows; it.timestamp_us = (it.timestamp_us as number) + (t - 1_700_000_000_000_000); }
  }
  const start = process.hrtime.bigint();
  stage.pushBatch(items);
  if (r === rounds - 1) stage.flush();
  elapsed += process.hrtime.bigint() - start;
}
const secs = Number(elapsed) / 1e9;
console.log(JSON.stringify({ pairs: rounds * total, logs, seconds: +secs.toFixed(3), requests_per_s: Math.round(logs / secs),
  drops: Object.fromEntries(Object.entries(stage.drops).filter(([, v]) => v > 0)) }));
