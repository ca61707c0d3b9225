// `npm run bench`: every benchmark, printed as a table. Figures go into docs/benchmarks.md by hand,
// with the date and the machine, so that a regression is visible in review.
import { measureTransport } from './transport';

async function main(): Promise<void> {
  const only = process.argv[2];
  if (!only || only === 'transport') {
    for (const encoding of ['rows', 'columns'] as const) {
      const packets = encoding === 'rows' ? 1_000_000 : 4_000_000;
      const r = await measureTransport(encoding, packets);
      console.log(`transport ${encoding.padEnd(8)} ${Math.round(r.packetsPerSecond).toLocaleString('en')} packets/s  ${r.bytesPerPacket.toFixed(1)} B/packet`);
    }
  }
}

void main();
