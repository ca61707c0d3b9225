// Client and server of flows whose handshake was not captured: the corpus's TCP files with their
// SYN and SYN-ACK packets cut off, through the real decoder, the flow map, the service table and
// the real L7 inference; the right answer is tshark's (the SYN's sender in the uncut file).
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatIp, PacketBatch, TCP_SYN } from '../../lib/packet-batch';
import { flowtap } from '../../lib/proto';
import { FrameDecoder } from '../../services/capture/decode';
import { pumpCaptureFile } from '../../services/capture/file-pump';
import { FlowMap } from '../../services/flow/flow-map';
import { ProtocolInference } from '../../services/l7/inference';
import { theirTcpStreams } from './agreement';
import { CORPUS } from './tshark-packets';
import { ACK, SYNACK, batchOf, conn } from './packet-builder';

/** Server ports of the corpus's odd-port files, from the README's decode-as column (tcp.port==N). */
function decodeAsPorts(): Map<string, number> {
  const ports = new Map<string, number>();
  for (const line of fs.readFileSync(path.join(CORPUS, 'README.md'), 'utf8').split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const m = /tcp\.port==(\d+)/.exec(cells[cells.length - 2] ?? '');
    if (m && cells[1]) ports.set(cells[1], parseInt(m[1], 10));
  }
  return ports;
}

const endpoint = (ip: string, port: number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** Our client endpoint per endpoint pair, with the SYN/SYN-ACK rows removed from the input. */
async function midStreamClients(file: string, serverPorts: number[]): Promise<{ clients: Map<string, string>; map: FlowMap }> {
  const inference = new ProtocolInference();
  const clients = new Map<string, string>();
  const onFlow = (f: flowtap.IFlow) => {
    if (f.protocol !== 6 || !f.is_new_flow) return;
    const c = endpoint(formatIp(f.ip_0!), f.client_port!), s = endpoint(formatIp(f.ip_1!), f.server_port!);
    const key = c < s ? `${c}|${s}` : `${s}|${c}`;
    if (!clients.has(key)) clients.set(key, c);
  };
  const map: FlowMap = new FlowMap({ onFlow }, (id, payload, fromClient, proto, port) => inference.infer(id, payload, fromClient, proto, port, map.nowUs),
    { serverPorts: new Set(serverPorts), lastPayloadKind: () => inference.lastCheck });
  await pumpCaptureFile(file, new FrameDecoder(), new PacketBatch(256), (b) => {
    // Cut the handshake: a SYN row becomes a row the flow map skips (counted as non_ip).
    for (let i = 0; i < b.count; i++) if (b.protocol[i] === 6 && (b.tcpFlags[i] & TCP_SYN)) b.ipVersion[i] = 0;
    map.processBatch(b);
  });
  map.flush();
  return { clients, map };
}

const odd = decodeAsPorts();
const files = fs.readdirSync(CORPUS, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(pcap|pcapng)(\.gz)?$/.test(f)).sort();
const summary = { streams: 0, right: 0, wrong: [] as string[], unknown: 0, unknownRight: 0, unknownWrong: [] as string[] };

for (const rel of files) {
  test.serial(`mid-stream client and server: ${rel}`, async (t) => {
    const file = path.join(CORPUS, rel);
    // Streams whose client the uncut file shows and that have packets besides the handshake.
    const streams = theirTcpStreams(file).filter((s) => s.client !== '');
    const port = odd.get(rel);
    const { clients } = await midStreamClients(file, port ? [port] : []);
    let checked = 0;
    for (const s of streams) {
      const key = s.endpoints[0] < s.endpoints[1] ? `${s.endpoints[0]}|${s.endpoints[1]}` : `${s.endpoints[1]}|${s.endpoints[0]}`;
      const ours = clients.get(key);
      if (ours === undefined) continue; // only handshake packets
      // The server port is known when configured (decode-as), well known (< 1024), or the client's
      // is ephemeral (>= 32768); otherwise two registered ports face each other and only
      // evidence can tell (reported, not asserted).
      const server = s.endpoints[0] === s.client ? s.endpoints[1] : s.endpoints[0];
      const portOf = (e: string) => parseInt(e.slice(e.lastIndexOf(':') + 1), 10);
      const known = portOf(server) === port || portOf(server) < 1024 || portOf(s.client) >= 32768;
      const line = `${rel} stream ${s.stream}: client ${s.client}, ours ${ours}`;
      if (!known) {
        summary.unknown++;
        if (ours === s.client) summary.unknownRight++; else summary.unknownWrong.push(line);
        continue;
      }
      checked++;
      summary.streams++;
      if (ours === s.client) summary.right++;
      else summary.wrong.push(line);
      t.is(ours, s.client, line);
    }
    if (checked === 0) t.pass('no TCP stream with a handshake, more packets and a known server port');
  });
}

test.after.always('summary', () => {
  if (summary.streams === 0) return;
  console.log(`mid-stream, server port known: ${summary.right}/${summary.streams} streams right${summary.wrong.length ? '\n  ' + summary.wrong.join('\n  ') : ''}`);
  console.log(`mid-stream, server port not known: ${summary.unknownRight}/${summary.unknown} right${summary.unknownWrong.length ? '\n  ' + summary.unknownWrong.join('\n  ') : ''}`);
});

// Unit tests of the evidence, on hand-built packets.
const T = 1_700_000_000;
test('service table: a server seen answering a SYN is the server of later SYN-less flows, whatever its port', (t) => {
  const flows: flowtap.IFlow[] = [];
  const map = new FlowMap({ onFlow: (f) => flows.push(f) });
  const first = conn('10.0.0.1', 40001, '10.0.0.2', 50000);
  map.processBatch(batchOf([first.s(T, SYNACK, { seq: 1, ack: 2 })]));
  // Both ports >= 32768: without the table, the first sender (the server here) would be the client.
  const later = conn('10.0.0.3', 40002, '10.0.0.2', 50000);
  map.processBatch(batchOf([later.s(T + 1, ACK, { seq: 5, len: 10 })]));
  map.flush();
  const f = flows.find((x) => x.client_port === 40002 || x.server_port === 40002)!;
  t.is(f.server_port, 50000);
  t.is(formatIp(f.ip_1!), '10.0.0.2');
});

test('service table: the endpoint in many flows is the server; the port rule decides when scores are close', (t) => {
  const flows: flowtap.IFlow[] = [];
  const map = new FlowMap({ onFlow: (f) => flows.push(f) });
  // 20 clients on ports 40000+ talk to 10.1.0.9:45000 (both above 32768); their first packets go client -> server.
  for (let k = 0; k < 20; k++) map.processBatch(batchOf([conn(`10.1.0.${k + 10}`, 40000 + k, '10.1.0.9', 45000).c(T + k * 0.01, ACK, { seq: 1, len: 5 })]));
  // The next flow's first packet comes from the server: the counter says who is who.
  map.processBatch(batchOf([conn('10.1.0.99', 40099, '10.1.0.9', 45000).s(T + 1, ACK, { seq: 1, len: 5 })]));
  // A fresh pair, both unknown: the port below 32768 is the server even when it sends first.
  map.processBatch(batchOf([conn('10.2.0.1', 50123, '10.2.0.2', 8443).s(T + 1, ACK, { seq: 1, len: 5 })]));
  map.flush();
  const by = (port: number) => flows.find((x) => x.client_port === port || x.server_port === port)!;
  t.is(by(40099).server_port, 45000);
  t.is(by(50123).server_port, 8443);
  t.is(by(50123).client_port, 50123);
});

test('L7 turns a flow round: a request sent by the side guessed as server', (t) => {
  const flows: flowtap.IFlow[] = [];
  const payloads: flowtap.IAppPayload[] = [];
  const inference = new ProtocolInference();
  const map: FlowMap = new FlowMap({ onFlow: (f) => flows.push(f), onAppPayload: (p) => payloads.push(p) },
    (id, p, fc, proto, port) => inference.infer(id, p, fc, proto, port, map.nowUs), { lastPayloadKind: () => inference.lastCheck });
  // An HTTP server on 40080 (above 1024) and a client on 3000: the port rule guesses wrong.
  const k = conn('10.3.0.1', 3000, '10.3.0.2', 40080);
  const get = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
  const ok = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';
  // conn's "c" side is 10.3.0.1:3000, the real client; the map first takes 3000 as the server.
  map.processBatch(batchOf([k.c(T, ACK, { seq: 1, payload: get }), k.s(T + 0.01, ACK, { seq: 1, payload: ok })]));
  map.flush();
  t.is(map.totals.directionsCorrected, 1);
  t.is(flows[0].client_port, 3000);
  t.is(flows[0].server_port, 40080);
  t.is(flows[0].packet_tx, 1);
  t.is(flows[0].l4_byte_tx, get.length);
  t.is(flows[0].art_count, 1, 'response time measured with the corrected roles');
  t.deepEqual(payloads.map((p) => p.from_client), [true, false]);
});
