// Errors, ring overrun, an interface going down, and close(): the socket's life outside the happy path.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { AfPacketSocket, CaptureError, listInterfaces } from '../../native/index';
import { collect } from './collect';
import { makeVethPair, replay, setLink, sleep, waitFor, waitLinkUp } from './veth';

const METHODS = 'http1/zeek/methods.pcap';

/** What tcpdump (the same libpcap) says about an expression, without the "tcpdump: " prefix. */
function tcpdumpError(expression: string): string {
  try {
    execFileSync('tcpdump', ['-d', expression], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr: Buffer }).stderr);
    const line = stderr.split('\n').find((l) => l.startsWith('tcpdump: '));
    if (line) return line.slice('tcpdump: '.length);
  }
  throw new Error(`tcpdump accepted '${expression}'`);
}

test('a non-existent interface is named in the error', (t) => {
  const err = t.throws(() => AfPacketSocket.open({ iface: 'ft-nope0' })) as CaptureError;
  t.is(err.message, "interface 'ft-nope0' does not exist");
  t.is(err.code, 'ENODEV');
  const long = t.throws(() => AfPacketSocket.open({ iface: 'x'.repeat(40) })) as CaptureError;
  t.is(long.code, 'ENODEV');
});

test("a bad filter gives libpcap's message, the same tcpdump prints", (t) => {
  for (const expression of ['tcp portt 80', 'port 99999', 'host']) {
    const err = t.throws(() => AfPacketSocket.open({ iface: 'lo', filter: expression })) as CaptureError;
    t.is(err.message, `bad filter '${expression}': ${tcpdumpError(expression)}`);
    t.is(err.code, 'EINVAL');
  }
});

test('bad ring geometry and options are refused before anything is opened', (t) => {
  t.is((t.throws(() => AfPacketSocket.open({ iface: 'lo', blockSize: 1000 })) as CaptureError).code, 'EINVAL');
  t.is((t.throws(() => AfPacketSocket.open({ iface: 'lo', frameSize: 100 })) as CaptureError).code, 'EINVAL');
  t.is((t.throws(() => AfPacketSocket.open({ iface: 'lo', snapLen: 10 })) as CaptureError).code, 'EINVAL');
  t.throws(() => AfPacketSocket.open({ iface: 'lo', blockCount: -1 }), { instanceOf: RangeError });
  t.throws(() => AfPacketSocket.open({ iface: 42 as unknown as string }), { instanceOf: TypeError });
});

test('without CAP_NET_RAW the error says so', (t) => {
  // A child whose bounding set lacks CAP_NET_RAW: root without the capability.
  const script = `const { AfPacketSocket } = require(${JSON.stringify(require.resolve('../../native/index'))});
    try { AfPacketSocket.open({ iface: 'lo' }); console.log('opened'); } catch (e) { console.log(e.code + ' ' + e.message); }`;
  const out = execFileSync('setpriv', ['--bounding-set', '-net_raw', '--inh-caps', '-net_raw', process.execPath, '-e', script],
    { encoding: 'utf8' }).trim();
  t.regex(out, /^EPERM opening an AF_PACKET socket needs CAP_NET_RAW/);
});

test.serial('a ring overrun shows as drops, and capture resumes once blocks are released', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  // Two 4 KiB blocks: about 20 of methods.pcap's frames fit before the ring is full.
  const sock = AfPacketSocket.open({ iface: pair.outside, blockSize: 4096, blockCount: 2, blockTimeoutMs: 5 });
  t.teardown(() => sock.close());
  const held: Array<() => void> = [];
  const views = new Set<Buffer>();
  let delivered = 0;
  sock.onBlock((block, _index, count, done) => {
    views.add(block);
    delivered += count;
    held.push(done); // never released while traffic flows
  });
  const sent = await replay(pair, [METHODS]);
  await waitFor(() => held.length >= 2, 2000);
  await sleep(100);
  const cpuBefore = process.cpuUsage();
  await sleep(300); // both blocks held and the kernel still wanting them: the loop must not spin
  const cpu = process.cpuUsage(cpuBefore);
  t.true(cpu.user + cpu.system < 100_000, `event loop busy while blocks held: ${JSON.stringify(cpu)}`);

  const stats = sock.stats();
  t.is(held.length, 2);
  t.is(sock.heldBlocks, 2);
  t.true(stats.drops > 0);
  t.true(stats.freezes >= 1);
  t.is(stats.packets, sent);             // the kernel counts dropped packets in tp_packets
  t.is(delivered + stats.drops, sent);   // every packet either reached JS or is counted as dropped
  t.deepEqual(sock.drops(), { ring_full: stats.drops, malformed_ring_entry: 0 });

  for (const done of held.splice(0)) {
    done();
    done(); // a second release is harmless
  }
  // Released blocks go back to the kernel and new traffic flows again.
  sock.onBlock((block, _index, count, done) => {
    views.add(block);
    delivered += count;
    done();
  });
  const before = delivered;
  const again = await replay(pair, ['dns/deepflow/a-and-ns.pcap']);
  t.true(await waitFor(() => delivered - before >= again, 3000));
  t.is(delivered - before, again);
  t.is(sock.stats().drops, stats.drops);
  // Zero copy: every delivery is one of the two views over the ring's two blocks.
  t.is(views.size, 2);
  t.true([...views].every((v) => v.length === 4096));
});

test.serial('an interface going down is reported as ENETDOWN, and capture resumes when it comes back', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const sock = AfPacketSocket.open({ iface: pair.outside, blockSize: 1 << 16, blockCount: 16, blockTimeoutMs: 10 });
  t.teardown(() => sock.close());
  const errors: CaptureError[] = [];
  sock.onError((err) => errors.push(err));
  const got = collect(sock);

  setLink(pair, 'down');
  t.true(await waitFor(() => errors.length > 0, 3000));
  t.is(errors[0].code, 'ENETDOWN');
  t.is(errors[0].message, `interface '${pair.outside}' went down (Network is down)`);
  t.true(sock.down);

  setLink(pair, 'up');
  t.true(await waitLinkUp(pair));
  const sent = await replay(pair, [METHODS]);
  t.true(await waitFor(() => got.frames.length >= sent, 5000), `${got.frames.length} of ${sent} after up, ${JSON.stringify(sock.stats())}`);
  t.false(sock.down);
  t.is(errors.length, 1);
});

test.serial('close() unmaps the ring, empties held views, and is safe to repeat', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const sock = AfPacketSocket.open({ iface: pair.outside, blockSize: 1 << 16, blockCount: 4, blockTimeoutMs: 10 });
  let kept: Buffer | undefined;
  let keptIndex: Uint32Array | undefined;
  let keptCount = 0;
  sock.onBlock((block, index, count) => {
    kept ??= block; // held, never released
    keptIndex ??= index;
    keptCount ||= count;
  });
  const sent = await replay(pair, ['dns/deepflow/a-and-ns.pcap']);
  t.true(await waitFor(() => kept !== undefined, 3000));
  t.is(keptCount, sent);
  t.is(kept?.length, 1 << 16);
  const firstFrameLen = keptIndex?.[1];
  t.is(firstFrameLen, 92); // tshark: frame 1 of a-and-ns.pcap is 92 bytes
  sock.close();
  t.is(kept?.length, 0);   // detached: reading it cannot touch unmapped memory
  sock.close();
  sock.release(0);
  t.deepEqual(sock.stats(), { packets: sent, drops: 0, freezes: 0 });
  t.is(sock.heldBlocks, 0);
});

test.serial('promisc puts the interface in promiscuous mode only while the socket is open', (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const promiscuity = (): number => (JSON.parse(execFileSync('ip', ['-j', '-d', 'link', 'show', 'dev', pair.outside],
    { encoding: 'utf8' })) as Array<{ promiscuity: number }>)[0].promiscuity;
  t.is(promiscuity(), 0);
  const plain = AfPacketSocket.open({ iface: pair.outside, blockSize: 1 << 16, blockCount: 2 });
  t.is(promiscuity(), 0);
  const sock = AfPacketSocket.open({ iface: pair.outside, promisc: true, blockSize: 1 << 16, blockCount: 2 });
  t.is(promiscuity(), 1);
  sock.close();
  t.is(promiscuity(), 0);
  plain.close();
});

/** Packet sockets bound to an interface, from the kernel's own table. */
function packetSocketsOn(ifindex: number): number {
  return readFileSync('/proc/net/packet', 'utf8').trim().split('\n').slice(1)
    .filter((line) => Number(line.trim().split(/\s+/)[4]) === ifindex).length;
}

test.serial('a deleted interface reports ENETDOWN and cannot be reopened', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const sock = AfPacketSocket.open({ iface: pair.outside, blockSize: 1 << 16, blockCount: 2 });
  t.teardown(() => sock.close());
  const ifindex = sock.ifindex;
  t.is(packetSocketsOn(ifindex), 1);
  const errors: CaptureError[] = [];
  sock.onError((err) => errors.push(err));
  sock.onBlock((_b, _i, _c, done) => done());
  pair.remove();
  t.true(await waitFor(() => errors.length > 0, 3000));
  t.is(errors[0].code, 'ENETDOWN');
  const err = t.throws(() => AfPacketSocket.open({ iface: pair.outside })) as CaptureError;
  t.is(err.message, `interface '${pair.outside}' does not exist`);
  t.is(packetSocketsOn(ifindex), 0); // the kernel unbound it
});

test.serial('a worker thread that exits with a socket open leaves no socket behind', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const ifindex = listInterfaces().find((i) => i.name === pair.outside)?.ifindex ?? -1;
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const { AfPacketSocket } = require(workerData.wrapper);
    const sock = AfPacketSocket.open({ iface: workerData.iface, blockSize: 1 << 16, blockCount: 2 });
    sock.onBlock((_b, _i, _c, done) => done());
    parentPort.postMessage('open');`,
  { eval: true, workerData: { wrapper: require.resolve('../../native/index'), iface: pair.outside } });
  await new Promise((resolve) => worker.once('message', resolve));
  t.is(packetSocketsOn(ifindex), 1);
  await worker.terminate(); // the open socket would keep the worker alive forever otherwise
  t.is(packetSocketsOn(ifindex), 0);
});
