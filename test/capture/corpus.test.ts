// Every corpus capture, read and decoded, against tshark's view of every frame computed now:
// frame count, and per IP packet (innermost for tunnels) the timestamp, addresses, ports,
// protocol, frame length, TCP flags/raw seq/ack/window/window scale, L4 payload length and
// bytes, ICMP type/code, outer VLAN and tunnel type/id.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { CORPUS, tsharkFrames } from './tshark-oracle';
import { decodeFile } from './decode-file';
import { compareWithTshark } from './compare';

const files = execFileSync('find', [CORPUS, '-type', 'f', '(', '-name', '*.pcap', '-o', '-name', '*.pcapng', '-o', '-name', '*.gz', ')'])
  .toString().trim().split('\n').filter(Boolean).sort();

/** Drops that stand for a frame that gave no row (the others count fragments a second time). */
const PER_FRAME_DROPS = ['unsupported_link_type', 'truncated_l2', 'non_ip', 'truncated_ip', 'bad_ip_header',
  'truncated_l4', 'bad_tcp_header', 'fragment_held', 'fragment_bad', 'batch_full'] as const;

test('the corpus is there', (t) => {
  t.true(files.length >= 80, `found ${files.length} capture files under ${CORPUS}`);
});

for (const file of files) {
  test(`matches tshark: ${path.relative(CORPUS, file)}`, async (t) => {
    const expected = tsharkFrames(file);
    const got = await decodeFile(file);
    t.is(got.frames, expected.length, 'frames read == tshark frame count');
    const diffs = compareWithTshark(expected, got);
    t.deepEqual(diffs.slice(0, 20), [], `${diffs.length} differences`);
    // Every frame is either a row or a counted drop.
    let dropped = 0;
    for (const k of PER_FRAME_DROPS) dropped += got.decoder.drops[k];
    t.is(got.rows.size + dropped, got.frames, JSON.stringify(got.decoder.drops));
    t.is(got.decoder.drops.batch_full, 0);
  });
}
