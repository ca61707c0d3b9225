// The cBPF filter (compiled by libpcap) and PACKET_FANOUT, checked against tshark on real traffic.
import test from 'ava';
import { AfPacketSocket } from '../../native/index';
import { collect, CapturedFrame, multiset } from './collect';
import { makeVethPair, replay, sleep, tsharkCount, tsharkFields, tsharkFrames, waitFor } from './veth';

const DNS_FILES = ['dns/deepflow/a-and-ns.pcap', 'mixed/zeek/wikipedia.pcap', 'http1/zeek/methods.pcap'];

/** IPv4 TCP/UDP endpoints of an Ethernet frame, direction-free, or undefined for anything else. */
function conversation(frame: Buffer): string | undefined {
  if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) return undefined;
  const ihl = (frame[14] & 0x0f) * 4;
  const proto = frame[23];
  if ((proto !== 6 && proto !== 17) || frame.length < 14 + ihl + 4) return undefined;
  const a = `${frame.subarray(26, 30).join('.')}:${frame.readUInt16BE(14 + ihl)}`;
  const b = `${frame.subarray(30, 34).join('.')}:${frame.readUInt16BE(14 + ihl + 2)}`;
  return `${proto} ${a < b ? `${a} ${b}` : `${b} ${a}`}`;
}

function udpPorts(frame: Buffer): [number, number] | undefined {
  if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800 || frame[23] !== 17) return undefined;
  const ihl = (frame[14] & 0x0f) * 4;
  return [frame.readUInt16BE(14 + ihl), frame.readUInt16BE(14 + ihl + 2)];
}

test.serial("filter 'udp port 53' delivers exactly tshark's udp.port==53 frames", async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const sock = AfPacketSocket.open({ iface: pair.outside, filter: 'udp port 53', blockSize: 1 << 16, blockCount: 8, blockTimeoutMs: 10 });
  t.teardown(() => sock.close());
  const got = collect(sock);
  const expectedCount = DNS_FILES.reduce((n, f) => n + tsharkCount(f, 'udp.port==53'), 0);
  const expectedFrames = DNS_FILES.flatMap((f) => tsharkFrames(f, 'udp.port==53'));
  t.is(expectedFrames.length, expectedCount);
  t.true(expectedCount > 20);

  const sent = await replay(pair, DNS_FILES);
  t.true(sent > expectedCount * 10);
  t.true(await waitFor(() => got.frames.length >= expectedCount, 5000));
  await sleep(150);
  t.is(got.frames.length, expectedCount);
  t.true(got.frames.every((f) => udpPorts(f.bytes)?.includes(53) === true));
  t.deepEqual(multiset(got.frames.map((f) => f.bytes.toString('hex'))), multiset(expectedFrames.map((f) => f.hex)));
  // The kernel counts only what passed the filter.
  t.deepEqual(sock.stats(), { packets: expectedCount, drops: 0, freezes: 0 });
});

test.serial('two sockets in one fanout group split the packets by flow, without duplicates', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const group = 1000 + (process.pid % 60000); // groups are per namespace: keep clear of other test runs
  const opts = { iface: pair.outside, fanoutGroup: group, blockSize: 1 << 16, blockCount: 8, blockTimeoutMs: 10 };
  const a = AfPacketSocket.open(opts);
  t.teardown(() => a.close());
  const b = AfPacketSocket.open(opts);
  t.teardown(() => b.close());
  const gotA = collect(a);
  const gotB = collect(b);
  const file = 'http1/zeek/methods.pcap';
  const expected = tsharkFrames(file);

  const sent = await replay(pair, [file]);
  t.is(sent, expected.length);
  t.true(await waitFor(() => gotA.frames.length + gotB.frames.length >= sent, 5000));
  await sleep(150);
  t.is(gotA.frames.length + gotB.frames.length, sent, JSON.stringify([a.stats(), b.stats()]));
  t.true(gotA.frames.length > 0 && gotB.frames.length > 0, `split ${gotA.frames.length}/${gotB.frames.length}`);
  const all: CapturedFrame[] = [...gotA.frames, ...gotB.frames];
  t.deepEqual(multiset(all.map((f) => f.bytes.toString('hex'))), multiset(expected.map((f) => f.hex)));

  // Hash mode: every conversation (both directions) lands on one socket only.
  const convA = new Set(gotA.frames.map((f) => conversation(f.bytes)).filter((c) => c !== undefined));
  const convB = new Set(gotB.frames.map((f) => conversation(f.bytes)).filter((c) => c !== undefined));
  t.true(convA.size + convB.size >= 40);
  t.deepEqual([...convA].filter((c) => convB.has(c)), []);
  t.is(a.stats().packets + b.stats().packets, sent);
});

test.serial('joining a fanout group from another interface is refused with a clear error', (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const group = 2000 + (process.pid % 60000);
  const a = AfPacketSocket.open({ iface: pair.outside, fanoutGroup: group, blockSize: 1 << 16, blockCount: 2 });
  t.teardown(() => a.close());
  // Same group id on the same interface with another snap length joins fine (mode and flags match).
  const b = AfPacketSocket.open({ iface: pair.outside, fanoutGroup: group, snapLen: 128, blockSize: 1 << 16, blockCount: 2 });
  b.close();
  // A different interface cannot join (fanout groups are per device and protocol).
  const err = t.throws(() => AfPacketSocket.open({ iface: 'lo', fanoutGroup: group, blockSize: 1 << 16, blockCount: 2 }));
  t.regex(err?.message ?? '', new RegExp(`^PACKET_FANOUT group ${group}`));
});

test.serial('with fanout DEFRAG the kernel delivers reassembled IPv4 datagrams, as tshark reassembles them', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const base = { iface: pair.outside, fanoutGroup: 3000 + (process.pid % 60000), blockSize: 1 << 16, blockCount: 4, blockTimeoutMs: 10 };
  const defrag = AfPacketSocket.open(base);
  t.teardown(() => defrag.close());
  const plain = AfPacketSocket.open({ ...base, fanoutGroup: base.fanoutGroup + 1, fanoutDefrag: false });
  t.teardown(() => plain.close());
  const gotDefrag = collect(defrag);
  const gotPlain = collect(plain);
  const file = 'ip-fragments/deepflow/ip-fragment.pcap';
  const reassembled = tsharkFields(file, 'ip.fragment.count', 'ip.reassembled.length').map(Number);
  const fragments = tsharkFrames(file);

  const sent = await replay(pair, [file]);
  t.is(sent, fragments.length);
  t.true(await waitFor(() => gotPlain.frames.length >= sent && gotDefrag.frames.length >= reassembled.length, 3000));
  await sleep(100);
  t.deepEqual(multiset(gotPlain.frames.map((f) => f.bytes.toString('hex'))), multiset(fragments.map((f) => f.hex)));
  t.is(gotDefrag.frames.length, reassembled.length);
  for (const [i, f] of gotDefrag.frames.entries()) {
    const ihl = (f.bytes[14] & 0x0f) * 4;
    t.is(f.bytes.length, 14 + ihl + reassembled[i]);
    t.is(f.bytes.readUInt16BE(14 + 2), ihl + reassembled[i]); // IP total length of the whole datagram
    t.is(f.bytes.readUInt16BE(14 + 6) & 0x3fff, 0);          // no MF flag, offset 0
  }
});
