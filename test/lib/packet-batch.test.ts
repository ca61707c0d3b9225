import test from 'ava';
import { formatIp, PacketBatch } from '../../lib/packet-batch';
import protobuf from 'protobufjs/minimal';
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

/** PacketBatch's fields in proto/flowtap.proto, field number = index + 1. */
const PACKET_BATCH_FIELDS = ['count', 'timestamp_us', 'ip_src', 'ip_dst', 'port_src', 'port_dst', 'protocol',
  'ip_version', 'tcp_flags', 'tcp_seq', 'tcp_ack', 'tcp_window', 'vlan', 'frame_len', 'l3_len', 'l4_payload_len',
  'payload_offset', 'payload_cap', 'payload_data', 'tunnel_type', 'tunnel_id', 'tcp_wscale', 'ifindex', 'icmp_type_code'];

/** A full batch whose columns use the whole range of their types and whose payloads need 2-byte lengths. */
function busy(): PacketBatch {
  const b = new PacketBatch(300, 1024);
  const payload = Buffer.alloc(1024, 0x41);
  for (let k = 0; k < 300; k++) {
    const i = b.begin();
    b.timestampUs[i] = 1_700_000_000_123_456 + k * 997;
    PacketBatch.setIpv4(b.ipSrc, i, Buffer.from([10, k & 255, 1, 2]), 0);
    PacketBatch.setIpv6(b.ipDst, i, Buffer.from('fe800000000000000202b3fffe1e8329', 'hex'), 0);
    b.portSrc[i] = 65535 - k;
    b.protocol[i] = k % 2 ? 6 : 17;
    b.ipVersion[i] = 4;
    b.tcpFlags[i] = k & 0x3f;
    b.tcpSeq[i] = 0xffffffff - k;
    b.tcpAck[i] = k * 16777259;
    b.frameLen[i] = 60 + k;
    b.tunnelType[i] = k % 5;
    b.tunnelId[i] = 0x80000000 + k;
    if (k % 7 === 0) b.tcpWscale[i] = 14;
    b.icmpTypeCode[i] = 0x0300 + k;
    b.setPayload(i, payload, 0, k * 3);
    b.commit();
  }
  return b;
}

test('encode writes the bytes protobufjs writes for the same message', (t) => {
  const reference = (b: PacketBatch) => Buffer.from(flowtap.PacketBatch.encode(b.toMessage()).finish());
  for (const b of [new PacketBatch(4), sample(), busy()]) {
    t.true(Buffer.from(b.encode()).equals(reference(b)), `${b.count} rows`);
  }
});

test('decode reads fields in any order, skips unknown ones and takes the last of a repeated column', (t) => {
  const a = busy();
  const m = a.toMessage() as Record<string, unknown>;
  const w = protobuf.Writer.create();
  w.uint32((99 << 3) | 0).uint32(12345); // unknown varint
  w.uint32((100 << 3) | 2).bytes(Buffer.from('unknown'));
  w.uint32((5 << 3) | 2).bytes(Buffer.alloc(7)); // port_src, replaced by the later one
  for (let k = PACKET_BATCH_FIELDS.length - 1; k >= 0; k--) {
    const name = PACKET_BATCH_FIELDS[k], id = k + 1;
    if (name === 'count') w.uint32(id << 3).uint32(a.count);
    else w.uint32((id << 3) | 2).bytes(m[name] as Uint8Array);
  }
  w.uint32((101 << 3) | 5).fixed32(7); // unknown 32-bit
  const b = new PacketBatch(300);
  b.decode(w.finish());
  t.is(b.count, 300);
  t.deepEqual(b.toMessage(), a.toMessage());
});

test('a malformed batch is refused with a reason', (t) => {
  const body = busy().encode();
  const b = new PacketBatch(300);
  t.throws(() => b.decode(body.subarray(0, body.length - 1)), { message: /runs past the end/ });
  t.throws(() => b.decode(body.subarray(0, 2)), { message: /truncated varint/ });
  const wrongType = protobuf.Writer.create().uint32((2 << 3) | 0).uint32(5).finish();
  t.throws(() => b.decode(wrongType), { message: /field 2 has wire type 0/ });
  t.throws(() => b.decode(Buffer.from([0x00, 0x01])), { message: /field 0/ });
  // The batch still works after refusals.
  b.decode(body);
  t.is(b.count, 300);
});

test('a claimed row starts clean after a discarded row, a reset or a decode', (t) => {
  const b = new PacketBatch(4);
  const dirty = (i: number) => {
    b.portSrc[i] = 1; b.tcpSeq[i] = 2; b.tcpWscale[i] = 3; b.ipSrc32[i * 4 + 3] = 4; b.timestampUs[i] = 5;
  };
  const clean = (i: number) => b.portSrc[i] === 0 && b.tcpSeq[i] === 0 && b.tcpWscale[i] === 255
    && b.ipSrc32[i * 4 + 3] === 0 && b.timestampUs[i] === 0;
  dirty(b.begin()); // discarded: no commit
  t.true(clean(b.begin()));
  dirty(0);
  b.commit();
  dirty(b.begin());
  b.commit();
  b.reset();
  t.true(clean(b.begin()));
  b.commit();
  t.true(clean(b.begin()));
  b.decode(busy().encode().subarray(0, 0)); // an empty message is an empty batch
  t.is(b.count, 0);
  const three = new PacketBatch(4);
  three.decode(sample().encode());
  three.begin();
  t.is(three.count, 3);
  t.is(three.tcpWscale[3], 255);
  three.reset();
  t.is(three.begin(), 0);
  t.is(three.portSrc[0], 0);
  t.is(three.tcpWscale[0], 255);
});
