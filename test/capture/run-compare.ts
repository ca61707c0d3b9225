// Manual tool: node dist/test/capture/run-compare.js [file...] prints differences with tshark.
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { CORPUS, tsharkFrames } from './tshark-oracle';
import { decodeFile } from './decode-file';
import { compareWithTshark } from './compare';

async function main(): Promise<void> {
  let files = process.argv.slice(2);
  if (files.length === 0) {
    files = execFileSync('find', [CORPUS, '-type', 'f', '!', '-name', 'README.md']).toString().trim().split('\n').sort();
  }
  for (const f of files) {
    const got = await decodeFile(f);
    const diffs = compareWithTshark(tsharkFrames(f), got);
    const drops = Object.entries(got.decoder.drops).filter(([, v]) => v > 0).map(([k, v]) => `${k}=${v}`).join(' ');
    console.log(`${path.relative(CORPUS, f)}: frames ${got.frames} rows ${got.rows.size} diffs ${diffs.length} ${drops}`);
    for (const d of diffs.slice(0, 5)) console.log('   ', d);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
