// The socket tracer's record decoder on records laid out as the addon delivers them (entries
// [u32 record size, u32 payload offset, struct sock_event], then a payload area): every header
// field and every payload byte must come through, for payload sizes from 0 to the largest cap,
// and malformed records are counted, not decoded.
import test from 'ava';
import { SocketDataBatch } from '../../services/capture/ebpf-socket-batch';
import { ENTRY_BYTES, REC, SocketRecordDecoder } from '../../services/capture/ebpf-socket-records';

interface Spec { pid: number; tid: number; fd: number; socketId: number; traceId: number; payload: Buffer; kind?: number; comm?: string; size?: number; cap?: number }

interface Delivery { records: Buffer; headerBytes: number; payloadStart: number }

/** A delivery as the addon makes it: header entries, some slack, then the payloads back to back. */
function deliver(specs: Spec[]): Delivery {
  const headerBytes = specs.length * ENTRY_BYTES;
  const payloadStart = headerBytes + 64;
  const payloadBytes = specs.reduce((n, s) => n + s.payload.length, 0);
  const records = Buffer.alloc(payloadStart + payloadBytes, 0xee);
  let p = 0;
  specs.forEach((spec, i) => {
    const e = records.subarray(i * ENTRY_BYTES, (i + 1) * ENTRY_BYTES);
    e.writeUInt32LE(spec.size ?? REC.HEADER + spec.payload.length, 0);
    e.writeUInt32LE(p, 4);
    const r = e.subarray(8);
    r.fill(0);
    r.writeBigUInt64LE(5_000_000_000n, REC.TS_NS);
    r.writeBigUInt64LE(BigInt(spec.socketId), REC.SOCKET_ID);
    r.writeBigUInt64LE(BigInt(spec.traceId), REC.TRACE_ID);
    r.writeUInt32LE(spec.pid, REC.PID);
    r.writeUInt32LE(spec.tid, REC.TID);
    r.writeUInt32LE(spec.fd, REC.FD);
    r.writeUInt32LE(spec.payload.length + 7, REC.SYSCALL_LEN);
    r.writeUInt32LE(spec.cap ?? spec.payload.length, REC.CAP_LEN);
    r.writeUInt16LE(40000, REC.LOCAL_PORT);
    r.writeUInt16LE(80, REC.REMOTE_PORT);
    r[REC.KIND] = spec.kind ?? 1;
    r[REC.DIRECTION] = 1;
    r[REC.ROLE] = 1;
    r[REC.IP_VERSION] = 4;
    r[REC.PROTOCOL] = 6;
    r[REC.SYSCALL] = 1;
    Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]).copy(r, REC.LOCAL_ADDR);
    Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2]).copy(r, REC.REMOTE_ADDR);
    r.write(spec.comm ?? 'curl', REC.COMM, 'latin1');
    spec.payload.copy(records, payloadStart + p);
    p += spec.payload.length;
  });
  return { records, headerBytes, payloadStart };
}

/** Decodes a whole delivery the way the collector does: flush (here: collect) whenever decode stops. */
function decodeAll(d: Delivery, batch: SocketDataBatch, decoder = new SocketRecordDecoder()): Array<{ pid: number; payload: Buffer; batch: number }> {
  const rows: Array<{ pid: number; payload: Buffer; batch: number }> = [];
  let flushes = 0;
  const flush = (): void => {
    const wire = new SocketDataBatch();
    if (!wire.decode(batch.encode())) throw new Error('batch did not round-trip');
    for (let i = 0; i < wire.count; i++) rows.push({ pid: wire.pid[i], payload: Buffer.from(wire.payloadOf(i)), batch: flushes });
    flushes++;
    batch.reset();
  };
  let o = 0;
  while (o < d.headerBytes) {
    o = decoder.decode(d.records, o, d.headerBytes, d.payloadStart, batch);
    if (o < d.headerBytes || batch.full) flush();
  }
  flush();
  return rows;
}

const payloadOf = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, k) => (k * 31 + seed) & 0xff));

test('header fields and payloads of every size survive decoding, without copying the payloads', (t) => {
  const sizes = [0, 1, 2, 3, 4, 5, 47, 48, 49, 100, 511, 512, 1023, 1024, 1025, 4096, 8192];
  const specs: Spec[] = sizes.map((n, i) => ({ pid: 100 + i, tid: 200 + i, fd: 3 + i, socketId: 2 ** 40 + i, traceId: 2 ** 33 + i, payload: payloadOf(n, i) }));
  const d = deliver(specs);
  const batch = new SocketDataBatch();
  const decoder = new SocketRecordDecoder();
  t.is(decoder.decode(d.records, 0, d.headerBytes, d.payloadStart, batch), d.headerBytes);
  t.is(batch.count, specs.length);
  t.is(batch.payloadData.buffer, d.records.buffer, 'payloads are read where the addon put them');
  specs.forEach((s, i) => {
    t.is(batch.pid[i], s.pid);
    t.is(batch.tid[i], s.tid);
    t.is(batch.fd[i], s.fd);
    t.is(batch.socketId[i], s.socketId);
    t.is(batch.syscallTraceId[i], s.traceId);
    t.is(batch.syscallLen[i], s.payload.length + 7);
    t.is(batch.portLocal[i], 40000);
    t.is(batch.portRemote[i], 80);
    t.is(batch.commOf(i), 'curl');
    t.deepEqual([...batch.ipRemote.subarray(i * 16 + 12, i * 16 + 16)], [127, 0, 0, 2]);
    t.deepEqual(batch.payloadOf(i), s.payload, `payload of ${s.payload.length} B`);
  });
  // Through the wire form, as l7 receives it: exactly the payloads, nothing of the headers.
  const wire = batch.encode();
  const back = new SocketDataBatch();
  t.true(back.decode(wire));
  t.is(back.payloadUsed, sizes.reduce((a, b) => a + b, 0));
  specs.forEach((s, i) => t.deepEqual(back.payloadOf(i), s.payload));
  batch.reset();
  t.is(batch.payloadData.buffer === d.records.buffer, false, 'reset returns the batch to its own buffer');
});

test('a delivery larger than a batch goes out in several batches, each with only its own payloads', (t) => {
  const specs: Spec[] = Array.from({ length: 2500 }, (_, i) => ({ pid: i, tid: 1, fd: 3, socketId: 1, traceId: 1, payload: payloadOf(i % 300, i) }));
  const rows = decodeAll(deliver(specs), new SocketDataBatch(1024));
  t.is(rows.length, specs.length);
  t.deepEqual([...new Set(rows.map((r) => r.batch))], [0, 1, 2]);
  rows.forEach((r, i) => {
    t.is(r.pid, specs[i].pid);
    t.deepEqual(r.payload, specs[i].payload);
  });
});

test('rows left in a batch from another delivery go out before the next delivery is read', (t) => {
  const batch = new SocketDataBatch();
  const decoder = new SocketRecordDecoder();
  const first = deliver([{ pid: 1, tid: 1, fd: 3, socketId: 1, traceId: 1, payload: payloadOf(10, 1) }]);
  const second = deliver([{ pid: 2, tid: 1, fd: 3, socketId: 1, traceId: 1, payload: payloadOf(20, 2) }]);
  t.is(decoder.decode(first.records, 0, first.headerBytes, first.payloadStart, batch), first.headerBytes);
  t.is(decoder.decode(second.records, 0, second.headerBytes, second.payloadStart, batch), 0, 'nothing read until the batch is flushed');
  t.deepEqual(batch.payloadOf(0), payloadOf(10, 1));
});

test('short, inconsistent and unknown records are counted and skipped; filtered payloads never travel', (t) => {
  const good = { pid: 9, tid: 9, fd: 4, socketId: 3, traceId: 0, payload: payloadOf(20, 1) };
  const specs: Spec[] = [
    { ...good, size: 8, payload: Buffer.alloc(0) }, // shorter than the header
    good,
    { ...good, cap: 5000 }, // cap_len past the record's end
    { ...good, kind: 9 },
    { ...good, pid: 77, payload: Buffer.from('secret of an excluded process') }, // between two rows
    good,
  ];
  const d = deliver(specs);
  const decoder = new SocketRecordDecoder();
  decoder.excludePid(77);
  const batch = new SocketDataBatch();
  t.is(decoder.decode(d.records, 0, d.headerBytes, d.payloadStart, batch), d.headerBytes);
  t.is(batch.count, 2);
  t.deepEqual(batch.payloadOf(0), good.payload);
  t.deepEqual(batch.payloadOf(1), good.payload);
  t.is(decoder.drops.short_record, 2);
  t.is(decoder.drops.bad_kind, 1);
  t.is(decoder.drops.excluded_pid, 1);
  t.false(Buffer.from(batch.encode()).includes('secret'), 'the excluded payload is not in the message');
});

test('timestamps follow a step of the wall clock, but not the millisecond steps of Date.now()', (t) => {
  const spec: Spec = { pid: 1, tid: 1, fd: 3, socketId: 1, traceId: 1, payload: payloadOf(4, 1) };
  const d = deliver([spec]);
  const decoder = new SocketRecordDecoder();
  const stamp = (): number => {
    const batch = new SocketDataBatch();
    decoder.decode(d.records, 0, d.headerBytes, d.payloadStart, batch);
    return batch.timestampUs[0];
  };
  const realNow = Date.now;
  try {
    const first = stamp();
    Date.now = () => realNow() + 1; // Date.now() one tick ahead: granularity, not a step
    decoder.resyncClock();
    t.is(stamp(), first);
    Date.now = () => realNow() - 1;
    decoder.resyncClock();
    t.is(stamp(), first);
    Date.now = () => realNow() + 10_000; // the clock was stepped 10 s forward
    decoder.resyncClock();
    t.true(Math.abs(stamp() - first - 10_000_000) < 2_000, `moved by ${stamp() - first} µs`);
  } finally {
    Date.now = realNow;
  }
});

test('bytes after the last whole entry are counted and consumed, so the caller never loops on them', (t) => {
  const spec: Spec = { pid: 1, tid: 1, fd: 3, socketId: 1, traceId: 1, payload: payloadOf(8, 1) };
  const d = deliver([spec, spec]);
  const decoder = new SocketRecordDecoder();
  const batch = new SocketDataBatch();
  const end = d.headerBytes - 40; // the second entry cut short
  t.is(decoder.decode(d.records, 0, end, d.payloadStart, batch), end);
  t.is(batch.count, 1);
  t.is(decoder.drops.short_record, 1);
});
