// The corpus has no zero window: a written capture supplies them (a receiver that stops reading,
// probes, a window update, a retransmission, reordering, a RST), and tshark reads it as the oracle.
import test from 'ava';
import * as fs from 'node:fs';
import { fileAgreement } from './agreement';
import { tshark } from './tshark-packets';
import { Frame, pcapFile, tmpFile } from '../capture/capture-writer';

const SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10;

/** An Ethernet + IPv4 + TCP frame (checksums left 0: tshark does not check them by default). */
function tcpFrame(ts: number, fromClient: boolean, flags: number, seq: number, ack: number, win: number, len: number): Frame {
  const data = Buffer.alloc(14 + 20 + 20 + len, 0x61);
  data.writeUInt16BE(0x0800, 12);
  const ip = 14;
  data[ip] = 0x45; data[ip + 1] = 0;
  data.writeUInt16BE(40 + len, ip + 2);
  data.writeUInt16BE(0, ip + 4); data.writeUInt16BE(0x4000, ip + 6);
  data[ip + 8] = 64; data[ip + 9] = 6; data.writeUInt16BE(0, ip + 10);
  const [src, dst] = fromClient ? [[10, 9, 0, 1], [10, 9, 0, 2]] : [[10, 9, 0, 2], [10, 9, 0, 1]];
  Buffer.from(src).copy(data, ip + 12); Buffer.from(dst).copy(data, ip + 16);
  const t = ip + 20;
  data.writeUInt16BE(fromClient ? 45000 : 8080, t); data.writeUInt16BE(fromClient ? 8080 : 45000, t + 2);
  data.writeUInt32BE(seq >>> 0, t + 4); data.writeUInt32BE(ack >>> 0, t + 8);
  data[t + 12] = 5 << 4; data[t + 13] = flags; data.writeUInt16BE(win, t + 14);
  data.writeUInt32BE(0, t + 16);
  return { data, origLen: data.length, timestampUs: Math.round(ts * 1e6), linkType: 1 };
}

test('zero windows, probes, retransmissions and reordering agree with tshark on a written capture', async (t) => {
  const T = 1_700_000_000;
  const C = 1000, S = 5000; // ISNs
  const c = (dt: number, f: number, seq: number, ack: number, len = 0, win = 65535) => tcpFrame(T + dt, true, f, C + seq, S + ack, win, len);
  const s = (dt: number, f: number, seq: number, ack: number, len = 0, win = 65535) => tcpFrame(T + dt, false, f, S + seq, C + ack, win, len);
  const frames = [
    c(0, SYN, 0, 0), s(0.010, SYN | ACK, 0, 1), c(0.020, ACK, 1, 1),
    c(0.030, ACK | PSH, 1, 1, 1000), s(0.040, ACK, 1, 1001, 0, 0),       // server window 0
    c(0.300, ACK, 1001, 1, 1), s(0.310, ACK, 1, 1001, 0, 0),              // probe, still 0
    c(0.900, ACK, 1001, 1, 1), s(0.910, ACK, 1, 1001, 0, 8192),           // probe, window opens
    c(0.920, ACK | PSH, 1001, 1, 500), c(0.921, ACK | PSH, 1501, 1, 500), // two segments
    s(0.930, ACK | PSH, 1, 2001, 300),
    c(1.500, ACK | PSH, 1501, 301, 500),                                  // retransmission 580 ms later
    s(1.510, ACK | PSH, 301, 2001, 300, 0),                               // data with window 0 from the server
    c(1.600, ACK, 2001, 601, 0, 0),                                       // client window 0
    c(1.700, ACK | PSH, 2101, 601, 100), c(1.7001, ACK | PSH, 2001, 601, 100), // reordered pair (< rtt apart)
    s(1.710, ACK, 601, 2201, 0),
    c(2.000, RST | ACK, 2201, 601),
  ];
  const file = tmpFile('zero-window.pcap');
  fs.writeFileSync(file, pcapFile(frames, 1, true, false));
  const zw = tshark(['-r', file, '-Y', 'tcp.analysis.zero_window', '-T', 'fields', '-e', 'frame.number']).split('\n').filter(Boolean);
  t.true(zw.length >= 3, `tshark sees zero windows (${zw.length})`);
  const a = await fileAgreement(file);
  t.is(a.flows.length, 1);
  const f = a.flows[0];
  t.log(`tshark zero windows ${[...f.stream.zwin]}, retrans ${[...f.stream.retrans]}; ours zwin ${f.ours?.zwinTx}/${f.ours?.zwinRx} retrans ${f.ours?.retransTx}/${f.ours?.retransRx}`);
  t.true(f.zwinOk, `zero windows: ours tx ${f.ours?.zwinTx} rx ${f.ours?.zwinRx}, tshark ${[...f.stream.zwin]}`);
  t.true(f.retransOk, `retransmissions: ours tx ${f.ours?.retransTx} rx ${f.ours?.retransRx}, tshark ${[...f.stream.retrans]}`);
  t.true(f.rttOk, `rtt ${f.ours?.rttUs} vs ${f.stream.rttUs}`);
  t.true(f.closeOk, `close ${f.ours?.closeType} vs ${f.expectedClose}`);
  t.is(f.ours?.closeType, 'tcp_client_rst');
  t.deepEqual([f.ours?.retransTx, f.ours?.retransRx], [1, 0], 'the resend, not the data after the probes');
  t.deepEqual([f.ours?.zwinTx, f.ours?.zwinRx], [1, 3]);
});
