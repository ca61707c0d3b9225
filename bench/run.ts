// `npm run bench [name]`: the benchmarks, each printing its figures. They go into
// docs/benchmarks.md by hand, with the date and the machine, so a regression shows in review.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { replay } from '../bin/replay';
import { writeSyntheticCapture } from './gen-capture';
import { measureTransport } from './transport';

const REPLAY_PACKETS = 1_000_000;

async function benchTransport(): Promise<void> {
  for (const encoding of ['rows', 'columns'] as const) {
    const packets = encoding === 'rows' ? 1_000_000 : 4_000_000;
    const r = await measureTransport(encoding, packets);
    console.log(`transport ${encoding.padEnd(8)} ${Math.round(r.packetsPerSecond).toLocaleString('en')} packets/s  ${r.bytesPerPacket.toFixed(1)} B/packet`);
  }
}

/** `flowtap replay` end to end, five processes, on a generated capture of short HTTP flows and DNS. */
async function benchReplay(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-bench-'));
  try {
    const file = path.join(dir, 'synthetic.pcap');
    const gen = writeSyntheticCapture(file, REPLAY_PACKETS);
    const runs: number[] = [];
    for (let k = 0; k < 3; k++) {
      const s = await replay({ file, outDir: path.join(dir, 'out'), logLevel: 'warn' });
      if (s.packets !== gen.packets) throw new Error(`replay read ${s.packets} of ${gen.packets} packets`);
      runs.push(s.packetsPerSecond);
      console.log(`replay run ${k + 1}: ${s.packets} packets, ${s.flows} flows, ${s.l7Records} L7 records in ${s.seconds.toFixed(2)} s: ${Math.round(s.packetsPerSecond).toLocaleString('en')} packets/s`);
    }
    runs.sort((a, b) => a - b);
    console.log(`replay end to end (median of 3) ${Math.round(runs[1]).toLocaleString('en')} packets/s  (${gen.httpFlows} HTTP flows, ${gen.dnsLookups} DNS lookups)`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const BENCHES: Record<string, () => Promise<void>> = { transport: benchTransport, replay: benchReplay };

async function main(): Promise<void> {
  const only = process.argv[2];
  if (only && !BENCHES[only]) throw new Error(`no benchmark "${only}"; there are: ${Object.keys(BENCHES).join(', ')}`);
  for (const [name, run] of Object.entries(BENCHES)) if (!only || only === name) await run();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
