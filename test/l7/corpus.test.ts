// The L7 stage against real captures: what it reports must equal what tshark dissects.
import test from 'ava';
import * as path from 'node:path';
import { checkDns, checkHttp, runStage } from './compare';
import { corpusFiles, CORPUS, tsharkFields } from './tshark';

const HTTP_FILES = [
  ...corpusFiles('http1'), ...corpusFiles('vlan'), ...corpusFiles('mixed'), ...corpusFiles('ipv6/arkime'),
];
const DNS_FILES = [
  ...corpusFiles('dns'), ...corpusFiles('mixed'), ...corpusFiles('ip-fragments/ndpi/dns_fragmented.pcap'),
];

test('the corpus is there', (t) => {
  t.true(HTTP_FILES.length >= 8);
  t.true(DNS_FILES.length >= 6);
});

for (const file of HTTP_FILES) {
  test(`HTTP equals tshark: ${path.relative(CORPUS, file)}`, (t) => {
    const run = runStage(file);
    const n = checkHttp(t, file, run);
    t.true(n.requests > 0 || n.responses > 0 || path.basename(file) === 'twovlan.pcap');
    for (const l of run.logs) {
      t.regex(l.ip_0!, /^[0-9a-f.:]+$/);
      t.true(l.end_time! >= l.start_time!);
      if (l.l7_protocol === 'HTTP' && l.request_type !== '' && l.response_code != null) {
        t.is(l.response_duration, l.end_time! - l.start_time!);
      }
    }
  });
}

for (const file of DNS_FILES) {
  test(`DNS equals tshark: ${path.relative(CORPUS, file)}`, (t) => {
    const run = runStage(file);
    t.true(checkDns(t, file, run) > 0);
  });
}

test('IPv6 addresses are written compressed (ipv6/arkime/v6-http.pcap)', (t) => {
  const file = corpusFiles('ipv6/arkime/v6-http.pcap')[0];
  const run = runStage(file);
  const http = run.logs.filter((l) => l.l7_protocol === 'HTTP');
  t.true(http.length > 0);
  const [[src, dst]] = tsharkFields(file, 'http.request', ['ipv6.src', 'ipv6.dst']);
  t.is(http[0].ip_0, src);
  t.is(http[0].ip_1, dst);
});

test('VLAN id is carried (vlan/zeek/http-vlan-0.pcap)', (t) => {
  const file = corpusFiles('vlan/zeek/http-vlan-0.pcap')[0];
  const [[vlan]] = tsharkFields(file, 'http.request', ['vlan.id']);
  const run = runStage(file);
  t.is(run.logs.filter((l) => l.l7_protocol === 'HTTP')[0].vlan, Number(vlan.split(',')[0]));
});

// Beyond the files above: tunnels, mirrored (ERSPAN) traffic, TCP anomalies. tshark only shows a
// message once its body is complete, so here every request and response it shows must be among
// the stage's (which also reports those whose body the capture lost), and nothing may throw.
const MORE_FILES = [...corpusFiles('tunnels'), ...corpusFiles('tcp-anomalies'), ...corpusFiles('ip-fragments'),
  ...corpusFiles('http2/suricata-verify/http2-range.pcap')];
for (const file of MORE_FILES) {
  test(`every HTTP message and DNS query tshark shows is reported: ${path.relative(CORPUS, file)}`, (t) => {
    const run = runStage(file);
    const http = run.logs.filter((l) => l.l7_protocol === 'HTTP');
    const got = http.filter((l) => l.request_type !== '').map((l) => `${l.request_type} ${l.request_resource}`);
    for (const [m, u] of tsharkFields(file, 'http.request', ['http.request.method', 'http.request.uri'])) {
      const i = got.indexOf(`${m.split(',').pop()} ${u.split(',').pop()}`);
      t.true(i >= 0, `${m} ${u}`);
      if (i >= 0) got.splice(i, 1);
    }
    const codes = http.filter((l) => l.response_code != null).map((l) => l.response_code);
    for (const [c] of tsharkFields(file, 'http.response', ['http.response.code'])) {
      const i = codes.indexOf(Number(c.split(',').pop()));
      t.true(i >= 0, `response ${c}`);
      if (i >= 0) codes.splice(i, 1);
    }
    const queries = run.logs.filter((l) => l.l7_protocol === 'DNS' && (l.request_length ?? 0) > 0 && l.server_port === 53)
      .map((l) => l.request_domain);
    for (const [name] of tsharkFields(file, 'dns.flags.response == 0 && !icmp && udp.port == 53', ['dns.qry.name'])) {
      const i = queries.indexOf(name);
      t.true(i >= 0, `query ${name}`);
      if (i >= 0) queries.splice(i, 1);
    }
    t.is(run.stage.sessionCount, 0);
  });
}
