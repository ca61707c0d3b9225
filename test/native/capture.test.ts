// Live capture on a veth: what the ring delivers equals what tcpreplay sent, frame by frame,
// compared with tshark's reading of the same corpus files.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { AfPacketSocket, FLAG_TRUNCATED, FLAG_VLAN_TPID_VALID, FLAG_VLAN_VALID, listInterfaces, packetTypeOf,
  PACKET_OTHERHOST } from '../../native/index';
import { collect, multiset } from './collect';
import { makeVethPair, replay, tsharkFrames, waitFor, sleep } from './veth';

const METHODS = 'http1/zeek/methods.pcap';

test.serial('frames captured equal the frames replayed (count, lengths, bytes, metadata)', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const sock = AfPacketSocket.open({ iface: pair.outside, blockSize: 1 << 16, blockCount: 16, blockTimeoutMs: 10 });
  t.teardown(() => sock.close());
  const got = collect(sock);
  const expected = tsharkFrames(METHODS);
  const t0 = Date.now() / 1000;

  const sent = await replay(pair, [METHODS]);
  t.is(sent, expected.length);
  t.true(await waitFor(() => got.frames.length >= sent, 5000), `captured ${got.frames.length} of ${sent}`);
  await sleep(100); // anything extra (a duplicate, a frame of our own) would show up here
  t.is(got.frames.length, expected.length);

  // Same frames, byte for byte (as multisets: packets may be handled on either CPU).
  const gotSet = multiset(got.frames.map((f) => f.bytes.toString('hex')));
  t.deepEqual(gotSet, multiset(expected.map((f) => f.hex)));
  t.deepEqual(got.frames.map((f) => f.origLen).sort((a, b) => a - b), expected.map((f) => f.len).sort((a, b) => a - b));
  t.deepEqual(got.frames.map((f) => f.bytes.length).sort((a, b) => a - b), expected.map((f) => f.len).sort((a, b) => a - b));

  // Metadata: our interface, live timestamps, the frames were not addressed to the veth.
  const ifindex = listInterfaces().find((i) => i.name === pair.outside)?.ifindex;
  t.is(sock.ifindex, ifindex ?? -1);
  t.true(got.frames.every((f) => f.ifindex === ifindex));
  const t1 = Date.now() / 1000;
  t.true(got.frames.every((f) => f.tsSec >= Math.floor(t0) - 1 && f.tsSec <= t1 + 1 && f.tsNsec < 1e9));
  t.true(got.frames.every((f) => packetTypeOf(f.flags) === PACKET_OTHERHOST || packetTypeOf(f.flags) <= 2));
  t.true(got.frames.every((f) => (f.flags & (FLAG_VLAN_VALID | FLAG_TRUNCATED)) === 0));
  t.true(got.blocks >= 1);

  // Kernel counters: everything passed the filter, nothing dropped; totals survive re-reads.
  const stats = sock.stats();
  t.deepEqual(stats, { packets: sent, drops: 0, freezes: 0 });
  t.deepEqual(sock.stats(), stats);
});

test.serial('snapLen truncates caplen and keeps the wire length', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const sock = AfPacketSocket.open({ iface: pair.outside, snapLen: 96, blockSize: 1 << 16, blockCount: 8, blockTimeoutMs: 10 });
  t.teardown(() => sock.close());
  const got = collect(sock);
  const expected = tsharkFrames(METHODS);
  const sent = await replay(pair, [METHODS]);
  t.true(await waitFor(() => got.frames.length >= sent, 5000));
  t.is(got.frames.length, expected.length);
  const cut = multiset(expected.map((f) => `${f.len}:${f.hex.slice(0, 192)}`));
  t.deepEqual(multiset(got.frames.map((f) => `${f.origLen}:${f.bytes.toString('hex')}`)), cut);
  const long = got.frames.filter((f) => f.origLen > 96);
  t.true(long.length > 0);
  t.true(long.every((f) => f.bytes.length === 96 && (f.flags & FLAG_TRUNCATED) !== 0));
});

test.serial('the kernel strips the outer 802.1Q tag into the index (TPACKET_V3 hv1.tp_vlan_tci)', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const sock = AfPacketSocket.open({ iface: pair.outside, blockSize: 1 << 16, blockCount: 4, blockTimeoutMs: 10 });
  t.teardown(() => sock.close());
  const got = collect(sock);
  const file = 'vlan/arkime/twovlan.pcap'; // QinQ-style: outer VLAN 201, inner VLAN 200
  const fields = execFileSync('tshark', ['-r', `${__dirname}/../../../../shared/corpus/${file}`, '-T', 'fields',
    '-E', 'separator=;', '-e', 'vlan.id', '-e', 'vlan.priority', '-e', 'eth.type'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .trim().split('\n').map((l) => l.split(';'));
  const expected = tsharkFrames(file);
  const sent = await replay(pair, [file]);
  t.true(await waitFor(() => got.frames.length >= sent, 5000));
  t.is(got.frames.length, expected.length);
  const outerTci = Number(fields[0][1].split(',')[0]) << 13 | Number(fields[0][0].split(',')[0]);
  const outerTpid = Number.parseInt(fields[0][2].split(',')[0], 16);
  t.is(outerTci & 0xfff, 201);
  for (const f of got.frames) {
    t.true((f.flags & FLAG_VLAN_VALID) !== 0);
    t.true((f.flags & FLAG_VLAN_TPID_VALID) !== 0);
    t.is(f.vlan & 0xffff, outerTci);
    t.is(f.vlan >>> 16, outerTpid);
    t.is(f.origLen, f.bytes.length);
  }
  // The delivered frame is the original with the 4 tag bytes after the MAC addresses removed.
  const untagged = expected.map((f) => f.hex.slice(0, 24) + f.hex.slice(32));
  t.deepEqual(multiset(got.frames.map((f) => f.bytes.toString('hex'))), multiset(untagged));
});

test('listInterfaces reads /sys/class/net like ip(8) does', (t) => {
  const ip = JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as
    Array<{ ifname: string; ifindex: number; flags: string[]; operstate: string }>;
  const ours = listInterfaces();
  t.deepEqual(ours.map((i) => [i.name, i.ifindex]).filter(([n]) => ip.some((l) => l.ifname === n)).sort(),
    ip.map((l) => [l.ifname, l.ifindex]).filter(([n]) => ours.some((i) => i.name === n)).sort());
  for (const link of ip) {
    const mine = ours.find((i) => i.name === link.ifname);
    if (!mine) continue;
    t.is(mine.up, link.flags.includes('UP'), link.ifname);
    t.is(mine.operstate, link.operstate.toLowerCase(), link.ifname);
  }
  t.true(ours.some((i) => i.name === 'lo' && i.ifindex === 1));
});
