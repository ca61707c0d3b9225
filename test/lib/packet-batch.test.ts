import test from 'ava';
import { formatIp, PacketBatch } from '../../lib/packet-batch';
import { flowtap } from '../../lib/proto';

function sample(): PacketBatch {
  const b = new PacketBatch(8, 16);
  const payload = Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n');
  for (let k = 0; k < 3; k++) {
    const i = b.begin();
    b.timestampUs[i] = 1_700_000_000_000_000 + k;
    PacketBatch.setIpv4(b.ipSrc, i, Buffer.from([192, 168, 0, k]), 0);
    PacketBatch.setIpv6(b.ipDst, i, Buffer.from('20010db8000000000000000000000001', 'hex'), 0);
    b.portSrc[i] = 40000 + k;
    b.portDst[i] = 80;
    b.tcpSeq[i] = 0xfffffff0 + k;
    b.frameLen[i] = 100 + k;
    b.setPayload(i, payload, 0, payload.length);
    b.commit();
  }
  return b;
}

test('a batch survives encode and decode column by column, payloads cut to payloadCut', (t) => {
  const a = sample();
  const b = new PacketBatch(8);
  b.decode(a.encode());
  t.is(b.count, 3);
  for (let i = 0; i < 3; i++) {
    t.is(b.timestampUs[i], a.timestampUs[i]);
    t.is(formatIp(b.ipSrc, i * 16), `192.168.0.${i}`);
    t.is(formatIp(b.ipDst, i * 16), '2001:db8::1');
    t.is(b.portSrc[i], 40000 + i);
    t.is(b.tcpSeq[i], 0xfffffff0 + i);
    t.is(b.frameLen[i], 100 + i);
    t.is(b.payload(i).toString(), 'GET / HTTP/1.1\r\n');
  }
});

test('a batch whose columns disagree with its count is rejected, not read past', (t) => {
  const msg = sample().toMessage();
  const short = flowtap.PacketBatch.encode({ ...msg, port_src: Buffer.alloc(2) }).finish();
  t.throws(() => new PacketBatch(8).decode(short), { message: /column port_src: 2 bytes for 3 rows/ });
  const outside = flowtap.PacketBatch.encode({ ...msg, payload_data: Buffer.alloc(4) }).finish();
  t.throws(() => new PacketBatch(8).decode(outside), { message: /payload outside payload_data/ });
  t.throws(() => new PacketBatch(2).decode(sample().encode()), { message: /exceeds capacity/ });
});

test('IPv6 addresses are written as RFC 5952 says', (t) => {
  const v6 = (hex: string) => formatIp(Buffer.from(hex, 'hex'));
  t.is(v6('20010db8000000000000000000000001'), '2001:db8::1');
  t.is(v6('00000000000000000000000000000001'), '::1');
  t.is(v6('fe800000000000000202b3fffe1e8329'), 'fe80::202:b3ff:fe1e:8329');
  t.is(v6('20010db8000100000001000000000001'), '2001:db8:1:0:1::1');
  t.is(v6('00000000000000000000ffff0a000001'), '10.0.0.1');
});
