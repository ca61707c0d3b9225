// A burst of 100k short TCP connections from a traced process must leave no socket-map entry
// behind, and every connect/accept/close must reach user space (or be counted as lost).
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ebpfStatus } from '../../native/ebpf';
import { EbpfCollector } from '../../services/capture/ebpf-collector';
import { SOCKET_KIND_ACCEPT, SOCKET_KIND_CLOSE, SOCKET_KIND_CONNECT } from '../../services/capture/ebpf-socket-batch';
import { waitFor } from './helpers';

const CONNECTIONS = 100_000;
const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;

// The load generator is C (test/ebpf/conn-burst.c, built here): a Node one spends most of the
// time in JS and makes the test slow on a busy machine.
const SOURCE = path.resolve(__dirname, '..', '..', '..', 'test', 'ebpf', 'conn-burst.c');

maybe(`${CONNECTIONS / 1000}k short connections leave no socket-map entries`, async (t) => {
  t.timeout(110_000);
  const bin = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-burst-')), 'conn-burst');
  execFileSync('clang', ['-O2', '-pthread', '-o', bin, SOURCE]);
  const child = spawn(bin, [String(CONNECTIONS), '4'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  t.true(await waitFor(() => out.includes('ready'), 10_000), 'child ready');

  const seen = { connect: 0, accept: 0, close: 0, other: 0 };
  const socketIds = new Set<number>();
  const collector = EbpfCollector.start({ includePids: [child.pid!], capBytes: 64 }, (batch) => {
    for (let i = 0; i < batch.count; i++) {
      const k = batch.kind[i];
      if (k === SOCKET_KIND_CONNECT) seen.connect++;
      else if (k === SOCKET_KIND_ACCEPT) seen.accept++;
      else if (k === SOCKET_KIND_CLOSE) { seen.close++; socketIds.add(batch.socketId[i]); }
      else seen.other++;
    }
  });
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    const t0 = Date.now();
    child.stdin!.write('go\n');
    t.true(await waitFor(() => out.includes('{'), 100_000, 100), 'child finished');
    const seconds = (Date.now() - t0) / 1000;
    const report = JSON.parse(out.slice(out.indexOf('{'))) as { connected: number; accepted: number; failed: number };
    t.is(report.connected, CONNECTIONS);
    t.is(report.accepted, CONNECTIONS);
    collector.drain();
    const drops = collector.drops;
    const lost = drops.ringbuf_full + drops.active_map_full;
    t.log(`${CONNECTIONS} connections in ${seconds.toFixed(1)} s; events: ${JSON.stringify(seen)}; lost: ${lost}; socket-map full: ${drops.socket_map_full}`);
    // What the child counted is the oracle for what the tracer must have seen.
    t.is(lost, 0, 'no event lost');
    t.true(seen.other >= 2 * CONNECTIONS, 'the byte each server sent, sent and received');
    t.is(seen.connect, CONNECTIONS);
    t.is(seen.accept, CONNECTIONS);
    t.is(seen.close, 2 * CONNECTIONS);
    t.is(socketIds.size, 2 * CONNECTIONS, 'every socket got its own id');
    // The child is still running with its listening socket open: nothing of the burst may remain.
    t.is(collector.mapCounts().socketInfo, 0, 'socket map empty after the burst');
  } finally {
    child.stdin!.end();
    await new Promise((resolve) => child.once('close', resolve));
    collector.close();
    fs.rmSync(path.dirname(bin), { recursive: true, force: true });
  }
});
