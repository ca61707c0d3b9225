// DNS edge cases written as small captures: tshark dissects the same bytes the stage is fed.
import test from 'ava';
import { checkDns, runStage } from './compare';
import { PcapWriter } from './pcap-writer';
import { tsharkFields } from './tshark';

const C = '10.2.0.1', S = '10.2.0.53';

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter((p) => p !== '');
  return Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p)])), Buffer.from([0])]);
}

interface Rr { name: Buffer; type: number; data: Buffer }

function dnsMessage(id: number, flags: number, qname: string, qtype: number, answers: Rr[] = []): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(flags, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(answers.length, 6);
  const q = Buffer.concat([encodeName(qname), Buffer.from([0, qtype >> 8, qtype & 0xff, 0, 1].slice(1))]);
  const rrs = answers.map((a) => {
    const f = Buffer.alloc(10);
    f.writeUInt16BE(a.type, 0);
    f.writeUInt16BE(1, 2);
    f.writeUInt32BE(60, 4);
    f.writeUInt16BE(a.data.length, 8);
    return Buffer.concat([a.name, f, a.data]);
  });
  return Buffer.concat([h, q, ...rrs]);
}

const PTR_TO_QNAME = Buffer.from([0xc0, 12]);
const withLength = (m: Buffer) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]);

test('UDP: answers, NXDOMAIN, ServFail, unanswered query', (t) => {
  const w = new PcapWriter();
  w.udp(C, 33001, S, 53, dnsMessage(0x1111, 0x0100, 'www.example.com', 1))
    .wait(4000).udp(S, 53, C, 33001, dnsMessage(0x1111, 0x8180, 'www.example.com', 1, [
      { name: PTR_TO_QNAME, type: 5, data: encodeName('edge.example.net') },
      { name: encodeName('edge.example.net'), type: 1, data: Buffer.from([192, 0, 2, 7]) },
    ]))
    .udp(C, 33002, S, 53, dnsMessage(0x2222, 0x0100, 'nope.example.com', 28))
    .wait(2000).udp(S, 53, C, 33002, dnsMessage(0x2222, 0x8183, 'nope.example.com', 28))
    .udp(C, 33003, S, 53, dnsMessage(0x3333, 0x0100, 'example.com', 15))
    .wait(1000).udp(S, 53, C, 33003, dnsMessage(0x3333, 0x8182, 'example.com', 15))
    .udp(C, 33004, S, 53, dnsMessage(0x4444, 0x0100, 'lost.example.com', 16));
  const file = w.save('udp.pcap');
  const run = runStage(file);
  t.is(checkDns(t, file, run), 7);
  const by = (n: string) => run.logs.find((l) => l.request_domain === n)!;
  t.is(by('www.example.com').response_result, 'edge.example.net;192.0.2.7');
  t.is(by('www.example.com').response_duration, 4100);
  t.is(by('nope.example.com').response_status, 'client_error');
  t.is(by('nope.example.com').response_exception, 'NXDomain');
  t.is(by('nope.example.com').request_type, 'AAAA');
  t.is(by('example.com').response_status, 'server_error');
  t.is(by('example.com').request_type, 'MX');
  t.is(by('lost.example.com').response_status, 'timeout');
  t.is(by('lost.example.com').response_code, undefined);
});

test('TCP: messages split across segments and several in one segment', (t) => {
  const w = new PcapWriter();
  const q1 = withLength(dnsMessage(0xa001, 0x0100, 'one.example.org', 1));
  const q2 = withLength(dnsMessage(0xa002, 0x0100, 'two.example.org', 28));
  const r1 = withLength(dnsMessage(0xa001, 0x8180, 'one.example.org', 1,
    [{ name: PTR_TO_QNAME, type: 1, data: Buffer.from([198, 51, 100, 1]) }]));
  const r2 = withLength(dnsMessage(0xa002, 0x8180, 'two.example.org', 28,
    [{ name: PTR_TO_QNAME, type: 28, data: Buffer.from('20010db8000000000000000000000001', 'hex') }]));
  const both = Buffer.concat([q1, q2]);
  const answers = Buffer.concat([r1, r2]);
  w.tcp(C, 34001, S, 53)
    .c(both.subarray(0, q1.length + 1)) // q1 and half of q2's length
    .c(both.subarray(q1.length + 1, q1.length + 9)) // the rest of the length and part of the header
    .c(both.subarray(q1.length + 9))
    .s(answers.subarray(0, r1.length + 20)) // both answers, the second across two segments
    .s(answers.subarray(r1.length + 20));
  const file = w.save('tcp.pcap');
  const run = runStage(file);
  t.is(checkDns(t, file, run), 4);
  t.is(run.logs.length, 2);
  t.is(run.logs.find((l) => l.request_domain === 'two.example.org')?.response_result, '2001:db8::1');
  t.is(run.stage.bufferedBytes, 0);
});

test('compression pointer loops end in a counted parse error, as tshark finds them malformed', (t) => {
  const w = new PcapWriter();
  // The question name is a pointer to itself.
  const selfLoop = Buffer.concat([dnsMessage(0x5001, 0x0100, 'x', 1).subarray(0, 12), Buffer.from([0xc0, 12, 0, 1, 0, 1])]);
  // Two pointers that point at each other, in the answer name.
  const good = dnsMessage(0x5002, 0x8180, 'ok.example', 1);
  const loopRr = Buffer.concat([Buffer.from([0xc0, good.length + 2, 0xc0, good.length]), Buffer.from([0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4])]);
  const twoLoop = Buffer.concat([good, loopRr]);
  twoLoop.writeUInt16BE(1, 6);
  w.udp(C, 35001, S, 53, dnsMessage(0x5002, 0x0100, 'ok.example', 1))
    .udp(C, 35001, S, 53, selfLoop)
    .udp(S, 53, C, 35001, twoLoop);
  const file = w.save('loops.pcap');
  const run = runStage(file);
  // tshark flags both looping messages with an expert error or as malformed.
  const flagged = tsharkFields(file, '_ws.expert.severity >= 0x00800000 || _ws.malformed', ['frame.number']);
  t.true(flagged.length >= 1);
  // The looping question has no name to report: counted, not emitted; the answer's loop only
  // loses that answer, the response still pairs with its query.
  t.is(run.stage.drops.parse_error, 1);
  t.is(run.stage.drops.no_protocol, 0);
  const ok = run.logs.find((l) => l.request_domain === 'ok.example')!;
  t.is(ok.response_code, 0);
  t.is(ok.response_result, '');
});
