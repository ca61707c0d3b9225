// `npm run bench [-- name ...]`: the benchmarks, each in a process of its own so one does not warm
// up or litter the heap of the next. Figures go into docs/benchmarks.md by hand, with the date
// and the machine's load, so that a regression shows in review.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { replay } from '../bin/replay';
import { writeSyntheticCapture } from './gen-capture';
import { measureTransport } from './transport';

const DIST = path.resolve(__dirname, '..');
// Startup of the five processes (~1 CPU-second together) weighs on a 1 M-packet replay; the
// larger capture shows the rate once it is spread over more packets.
const REPLAY_SIZES = [1_000_000, 3_000_000];

async function benchTransport(): Promise<void> {
  for (const encoding of ['rows', 'columns'] as const) {
    const packets = encoding === 'rows' ? 1_000_000 : 4_000_000;
    const r = await measureTransport(encoding, packets);
    console.log(`transport ${encoding.padEnd(8)} ${Math.round(r.packetsPerSecond).toLocaleString('en')} packets/s  ${r.bytesPerPacket.toFixed(1)} B/packet`);
  }
}

/** `flowtap replay` end to end, five processes, on generated captures of short HTTP flows and DNS. */
async function benchReplay(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-bench-'));
  try {
    for (const size of REPLAY_SIZES) {
      const file = path.join(dir, 'synthetic.pcap');
      const gen = writeSyntheticCapture(file, size);
      const runs: number[] = [];
      for (let k = 0; k < 3; k++) {
        const s = await replay({ file, outDir: path.join(dir, 'out'), logLevel: 'warn' });
        if (s.packets !== gen.packets) throw new Error(`replay read ${s.packets} of ${gen.packets} packets`);
        runs.push(s.packetsPerSecond);
        console.log(`replay run ${k + 1}: ${s.packets} packets, ${s.flows} flows, ${s.l7Records} L7 records in ${s.seconds.toFixed(2)} s: ${Math.round(s.packetsPerSecond).toLocaleString('en')} packets/s`);
      }
      runs.sort((a, b) => a - b);
      console.log(`replay end to end, ${gen.packets.toLocaleString('en')} packets (median of 3) ${Math.round(runs[1]).toLocaleString('en')} packets/s  (${gen.httpFlows} HTTP flows, ${gen.dnsLookups} DNS lookups)`);
      fs.rmSync(path.join(dir, 'out'), { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs a compiled script of the project in a fresh node and prints what it prints. */
function script(rel: string, args: string[] = [], nodeArgs: string[] = []): () => Promise<void> {
  return async () => {
    const res = spawnSync(process.execPath, [...nodeArgs, path.join(DIST, rel), ...args], { stdio: 'inherit' });
    if (res.status !== 0) throw new Error(`${rel} exited with ${res.status ?? res.signal}`);
  };
}

async function benchSinks(): Promise<void> {
  const { measureSinks } = await import('./sink-rates');
  console.log('sinks', JSON.stringify(await measureSinks({ rows: 200_000 })));
}

async function benchQuadruple(): Promise<void> {
  const { measureQuadruple } = await import('./quadruple-bench');
  console.log('quadruple', JSON.stringify(measureQuadruple()));
}

async function benchEbpf(): Promise<void> {
  const { measureEbpfOverhead } = await import('./ebpf-overhead');
  // Fifteen short pairs: on a shared VM single runs move by more than the tracer costs, and the
  // median of the paired losses comes with an interval that says how far the noise leaves it open.
  console.log('ebpf overhead', JSON.stringify(await measureEbpfOverhead(3, 15)));
}

const BENCHES: Record<string, () => Promise<void>> = {
  transport: benchTransport,
  capture: script('bench/capture-decode.js', ['2']),
  flow: script('bench/flow-bench.js', ['1000000'], ['--expose-gc']),
  quadruple: benchQuadruple,
  l7: script('test/l7/bench.js', ['300000']),
  sinks: benchSinks,
  replay: benchReplay,
  addon: script('test/native/capture-bench.js'),
  live: script('bench/live.js'),
  ebpf: benchEbpf,
};

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  for (const name of wanted) {
    if (!BENCHES[name]) throw new Error(`no benchmark "${name}"; there are: ${Object.keys(BENCHES).join(', ')}`);
  }
  for (const [name, run] of Object.entries(BENCHES)) {
    if (wanted.length > 0 && !wanted.includes(name)) continue;
    console.log(`== ${name}`);
    await run();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
