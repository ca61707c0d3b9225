// `flowtap replay` over the five real processes, checked against tshark's reading of the same
// corpus files: conversation totals exactly, HTTP and DNS transactions field by field.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { conversationKey, corpusFile, tsharkConversations, tsharkFields } from '../support/tshark';
import { replayFile, runFlowtap, type ReplayResult } from '../support/replay';

const HTTP_FILES = [
  'http1/zeek/get.pcap',
  'http1/zeek/post.pcap',
  'http1/zeek/methods.pcap',
  'http1/deepflow/http.pcap',
  'http1/arkime/http-content-gzip.pcap',
];
const DNS_FILES = [
  'dns/deepflow/a-and-ns.pcap',
  'dns/deepflow/dns-tcp-multi.pcap',
  'dns/deepflow/nxdomain.pcap',
  'dns/tcpdump/dns_tcp.pcap',
];

/** Packets and bytes sent by each endpoint of each conversation, from our L4 flow log. */
function ourConversations(l4: ReplayResult['l4'], protocol: number): Map<string, { packets: number; bytes: number }> {
  const out = new Map<string, { packets: number; bytes: number }>();
  const add = (key: string, packets: number, bytes: number) => {
    const side = out.get(key) ?? { packets: 0, bytes: 0 };
    side.packets += packets;
    side.bytes += bytes;
    out.set(key, side);
  };
  for (const f of l4) {
    if (f.protocol !== protocol) continue;
    if (f.packet_tx > 0) add(conversationKey(protocol, f.ip_0, f.client_port, f.ip_1, f.server_port, f.ip_0, f.client_port), f.packet_tx, f.byte_tx);
    if (f.packet_rx > 0) add(conversationKey(protocol, f.ip_0, f.client_port, f.ip_1, f.server_port, f.ip_1, f.server_port), f.packet_rx, f.byte_rx);
  }
  return out;
}

const sorted = <T>(xs: T[]) => [...xs].sort((a, b) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0));

function assertConversations(t: import('ava').ExecutionContext, file: string, r: ReplayResult): void {
  for (const [proto, num] of [['tcp', 6], ['udp', 17]] as const) {
    const theirs = tsharkConversations(file, proto);
    const ours = ourConversations(r.l4, num);
    t.deepEqual(Object.fromEntries([...ours].sort()), Object.fromEntries([...theirs].sort()), `${proto} conversations of ${file}`);
  }
}

for (const rel of HTTP_FILES) {
  test.serial(`replay ${rel}: flows and HTTP transactions agree with tshark`, async (t) => {
    const file = corpusFile(rel);
    const r = await replayFile(file);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^\d+ packets, \d+ flows, \d+ L7 records, [\d.]+ s, \d+ packets\/s\n$/);
    assertConversations(t, file, r);

    const requests = tsharkFields(file, ['http.request.method', 'http.request.uri'], { filter: 'http.request' });
    const responses = tsharkFields(file, ['http.response.code'], { filter: 'http.response' });
    const http = r.l7.filter((l) => l.l7_protocol === 'HTTP');
    t.true(requests.length > 0, 'the file has HTTP requests');
    t.deepEqual(sorted(http.filter((l) => l.request_type).map((l) => `${l.request_type} ${l.request_resource}`)),
      sorted(requests.map(([m, u]) => `${m} ${u}`)), 'methods and URIs');
    t.deepEqual(sorted(http.filter((l) => l.response_code !== null).map((l) => String(l.response_code))),
      sorted(responses.map(([c]) => c)), 'status codes');
    for (const l of http) {
      if (l.response_code !== null && l.request_type) t.true(l.end_time >= l.start_time && l.response_duration === l.end_time - l.start_time);
    }
  });
}

/** tshark's names of DNS types, from its verbose dissection: "Type: AAAA (IPv6 Address) (28)". */
function tsharkDnsTypeNames(file: string): Map<string, string> {
  const text = execFileSync('tshark', ['-r', file, '-n', '-V', '-Y', 'dns'], { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  const names = new Map<string, string>();
  for (const m of text.matchAll(/^\s+Type: (\S+) \(.*\) \((\d+)\)$/gm)) names.set(m[2], m[1]);
  return names;
}

function tsharkDnsQueries(file: string): { queries: string[]; rcodes: string[] } {
  const typeNames = tsharkDnsTypeNames(file);
  const rows = tsharkFields(file, ['dns.flags.response', 'dns.qry.name', 'dns.qry.type', 'dns.flags.rcode'], { filter: 'dns' });
  const queries: string[] = [];
  const rcodes: string[] = [];
  for (const [isResponse, names, types, rcode] of rows) {
    // Several DNS messages in one TCP segment show up as comma-joined fields.
    const flags = isResponse.split(',');
    const nameList = names.split(',');
    const typeList = types.split(',');
    const rcodeList = rcode.split(',');
    flags.forEach((flag, i) => {
      if (flag === '0' || flag === 'False') queries.push(`${typeNames.get(typeList[i]) ?? typeList[i]} ${nameList[i]}`);
      else rcodes.push(rcodeList[i]);
    });
  }
  return { queries, rcodes };
}

for (const rel of DNS_FILES) {
  test.serial(`replay ${rel}: flows and DNS transactions agree with tshark`, async (t) => {
    const file = corpusFile(rel);
    const r = await replayFile(file);
    t.is(r.code, 0, r.stderr);
    assertConversations(t, file, r);
    const { queries, rcodes } = tsharkDnsQueries(file);
    const dns = r.l7.filter((l) => l.l7_protocol === 'DNS');
    t.true(queries.length > 0, 'the file has DNS queries');
    t.deepEqual(sorted(dns.filter((l) => l.request_type).map((l) => `${l.request_type} ${l.request_domain}`)), sorted(queries), 'query types and names');
    t.deepEqual(sorted(dns.filter((l) => l.response_code !== null).map((l) => String(l.response_code))), sorted(rcodes), 'rcodes');
  });
}

test.serial('replay: metrics add up to the flows', async (t) => {
  const r = await replayFile(corpusFile('http1/zeek/methods.pcap'));
  t.is(r.code, 0, r.stderr);
  const sum = (rows: Array<Record<string, any>>, f: string) => rows.reduce((s, x) => s + Number(x[f] ?? 0), 0);
  const edge1m = r.metrics.filter((m) => m.table === 'network_map.1m');
  const edge1s = r.metrics.filter((m) => m.table === 'network_map.1s');
  t.true(edge1m.length > 0 && edge1s.length > 0);
  for (const f of ['byte_tx', 'byte_rx', 'packet_tx', 'packet_rx']) {
    t.is(sum(edge1m, f), sum(r.l4, f), `network_map.1m ${f}`);
    t.is(sum(edge1s, f), sum(r.l4, f), `network_map.1s ${f}`);
  }
  t.is(sum(edge1m, 'new_flow'), new Set(r.l4.map((l) => l.flow_id)).size, 'new_flow counts every flow once');
});

test.serial('replay: a missing file, a directory and a non-capture file fail with a reason', async (t) => {
  const missing = await replayFile('/nonexistent/capture.pcap');
  t.is(missing.code, 2);
  t.regex(missing.stderr, /nonexistent\/capture\.pcap: cannot open: no such file/);
  const dir = await replayFile('/tmp');
  t.is(dir.code, 2);
  t.regex(dir.stderr, /not a regular file/);
  const text = await replayFile(corpusFile('README.md'));
  t.is(text.code, 2);
  t.regex(text.stderr, /not a pcap, pcapng or gzip file/);
});

test.serial('replay: a service that dies makes the command fail with its name, not hang', async (t) => {
  // A harmless V8 flag with a value of this test's own marks its five processes in `ps`.
  const marker = `--max-old-space-size=${5000 + (process.pid % 5000)}`;
  const running = runFlowtap(['replay', corpusFile('http1/zeek/methods.pcap'), '--out', fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-kill-'))],
    { FLOWTAP_NODE_ARGS: marker });
  // Kill the flow process as soon as it exists.
  let killed = false;
  for (let i = 0; i < 200 && !killed; i++) {
    try {
      execFileSync('pkill', ['-9', '-f', '--', `${marker} .*services/flow/main.js`]);
      killed = true;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  t.true(killed, 'found the flow process');
  const r = await running;
  t.is(r.code, 1);
  t.regex(r.stderr, /flowtap-flow was killed by SIGKILL/);
  const left = spawnSync('pgrep', ['-f', '--', marker]);
  t.is(left.status, 1, 'no service is left running');
});
