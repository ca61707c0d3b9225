// Shared assertions: the stage's records for a capture against tshark's dissection of it.
import type { ExecutionContext } from 'ava';
import { flowtap } from '../../lib/proto';
import { L7Stage, L7StageOptions } from '../../services/l7/stage';
import { appPayloads, sorted, tsharkDns, tsharkFields } from './tshark';

export interface StageRun {
  logs: flowtap.IL7FlowLog[];
  meters: flowtap.IAppMeter[];
  stage: L7Stage;
}

export function runStage(file: string, opts: L7StageOptions = {}, cut = 1024): StageRun {
  const logs: flowtap.IL7FlowLog[] = [];
  const meters: flowtap.IAppMeter[] = [];
  const stage = new L7Stage((l) => logs.push(l), (m) => meters.push(m), opts);
  stage.pushBatch(appPayloads(file, cut));
  stage.flush();
  return { logs, meters, stage };
}

// The stage reports a message when its headers are in, without waiting for its body. tshark by
// default reports a response only once its body is complete, so a capture that ends mid-body
// shows none (vlan/arkime/twovlan.pcap); with body reassembly off it shows it, but then loses
// track of the stream after a body spanning segments. So the stage must equal tshark under one of
// the two settings.
const NO_BODY = ['-o', 'http.desegment_body:FALSE'];

/** Every value of each field, zipped across the messages of one frame (pipelining). */
function perMessage(file: string, filter: string, fields: string[], opts: string[]): string[][] {
  const out: string[][] = [];
  for (const row of tsharkFields(file, filter, fields, opts)) {
    const cols = row.map((c) => c.split(','));
    for (let i = 0; i < cols[0].length; i++) out.push(cols.map((c) => c[i] ?? ''));
  }
  return out;
}

function equalsOneOf<T>(t: ExecutionContext, got: T[], wants: T[][], what: string): T[] {
  const g = sorted(got);
  const match = wants.find((w) => JSON.stringify(sorted(w)) === JSON.stringify(g));
  if (match !== undefined) { t.pass(); return match; }
  t.deepEqual(g, sorted(wants[0]), what);
  return wants[0];
}

/** Requests (method, URI, Host), response codes and meters equal tshark's; returns the counts. */
export function checkHttp(t: ExecutionContext, file: string, run: StageRun): { requests: number; responses: number } {
  const http = run.logs.filter((l) => l.l7_protocol === 'HTTP');
  const fields = ['http.request.method', 'http.request.uri', 'http.host'];
  const reqs = (opts: string[]) => perMessage(file, 'http.request', fields, opts).map(([m, u, h]) => `${m} ${u} ${h}`);
  const gotReq = http.filter((l) => l.request_type !== '')
    .map((l) => `${l.request_type} ${l.request_resource} ${l.request_domain}`);
  const wantReq = equalsOneOf(t, gotReq, [reqs([]), reqs(NO_BODY)], 'method, URI and Host of every request');
  // 1xx interim answers (100 Continue) are part of their request's exchange, not a response.
  const codes = (opts: string[]) => perMessage(file, 'http.response', ['http.response.code'], opts)
    .map(([c]) => Number(c)).filter((c) => c >= 200 || c === 101);
  const gotCodes = http.filter((l) => l.response_code != null).map((l) => l.response_code!);
  const wantCodes = equalsOneOf(t, gotCodes, [codes([]), codes(NO_BODY)], 'status code of every response');
  for (const l of http) {
    const code = l.response_code ?? undefined;
    const want = code === undefined ? 'timeout' : code >= 500 ? 'server_error' : code >= 400 ? 'client_error' : 'ok';
    t.is(l.response_status, want);
  }
  const meters = run.meters.filter((m) => m.l7_protocol === 'HTTP');
  t.is(meters.reduce((s, m) => s + (m.request ?? 0), 0), wantReq.length, 'meter requests');
  t.is(meters.reduce((s, m) => s + (m.response ?? 0), 0), wantCodes.length, 'meter responses');
  t.is(run.stage.sessionCount, 0);
  t.is(run.stage.bufferedBytes, 0);
  return { requests: wantReq.length, responses: wantCodes.length };
}

/** Query names and types, rcodes and response times equal tshark's (port 53 only). */
export function checkDns(t: ExecutionContext, file: string, run: StageRun): number {
  // mDNS/LLMNR share DNS's format but not its sessions.
  const dns = run.logs.filter((l) => l.l7_protocol === 'DNS' && l.server_port === 53);
  const want = tsharkDns(file, 'dns && !icmp && !icmpv6 && (udp.port == 53 || tcp.port == 53)');
  const wantQ = want.filter((m) => !m.response).map((m) => `${m.name} ${m.type}`);
  const gotQ = dns.filter((l) => (l.request_length ?? 0) > 0).map((l) => `${l.request_domain} ${l.request_type}`);
  t.deepEqual(sorted(gotQ), sorted(wantQ), 'name and type of every query');
  // A log names its query (the request's question): responses are compared by rcode, as a real
  // server may answer with another question (mixed/tcpreplay/test.pcap does).
  const wantR = want.filter((m) => m.response).map((m) => m.rcode);
  const gotR = dns.filter((l) => l.response_code != null).map((l) => l.response_code);
  t.deepEqual(sorted(gotR), sorted(wantR), 'rcode of every response');
  const wantLone = want.filter((m) => m.response && m.time === '').map((m) => `${m.name} ${m.type}`);
  const gotLone = dns.filter((l) => l.response_code != null && (l.request_length ?? 0) === 0)
    .map((l) => `${l.request_domain} ${l.request_type}`);
  for (const g of gotLone) t.true(wantLone.includes(g), `${g}: tshark also found no query`);
  // Every response time tshark measures (dns.time) is one of ours. A retried query (same id) is
  // answered by the second response in the stage, which tshark leaves unpaired.
  const wantTimes = want.filter((m) => m.response && m.time !== '').map((m) => Math.round(Number(m.time) * 1e6));
  const gotTimes = dns.filter((l) => l.response_code != null && (l.request_length ?? 0) > 0).map((l) => l.response_duration!);
  const retries = want.filter((m, i) => !m.response && want.some((o, j) => j < i && !o.response && o.id === m.id && o.name === m.name)).length;
  for (const w of wantTimes) t.true(gotTimes.includes(w), `dns.time ${w} µs is a response_duration`);
  t.true(gotTimes.length >= wantTimes.length && gotTimes.length <= wantTimes.length + retries);
  for (const l of dns) {
    const rc = l.response_code ?? undefined;
    if (rc === undefined) t.is(l.response_status, 'timeout');
    else t.is(l.response_status, rc === 0 ? 'ok' : rc === 3 || rc === 1 ? 'client_error' : 'server_error');
  }
  return want.length;
}
