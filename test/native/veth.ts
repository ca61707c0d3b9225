// Test fixtures for live capture: a veth pair whose far end sits in a network namespace made
// for the test, tcpreplay into it, and tshark as the oracle for what a capture file holds.
import { execFile, execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const CORPUS = path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'corpus');

export interface VethPair {
  /** Namespace holding `inside`; made for this pair only. */
  ns: string;
  /** Root-namespace end, where the tests capture. */
  outside: string;
  /** Namespace end, where tcpreplay sends from. */
  inside: string;
  remove(): void;
}

let pairsMade = 0;

/**
 * Namespaces left by a test process that crashed before its teardown (pid gone). Deleting a
 * namespace destroys the veth end inside it, and with it the pair.
 */
function removeStaleNamespaces(): void {
  for (const line of sh(['ip', 'netns', 'list']).split('\n')) {
    const m = /^(ft-test-(\d+)-\d+)/.exec(line);
    if (!m || Number(m[2]) === process.pid) continue;
    try {
      process.kill(Number(m[2]), 0);
    } catch {
      try { sh(['ip', 'netns', 'del', m[1]]); } catch { /* another run got there first */ }
    }
  }
}

function sh(args: string[]): string {
  return execFileSync(args[0], args.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Makes a veth pair with one end in a fresh namespace. The root-side end is kept quiet and
 * inert so that the count of captured frames is exactly what was replayed, and replayed
 * frames go nowhere: no IPv6 (no router/neighbour solicitations), NOARP, strict reverse-path
 * filtering (no route points at the veth, so no replayed IPv4 packet reaches a socket).
 * tcpreplay counts a frame as sent even when veth drops it, so tests compare with the capture.
 */
export function makeVethPair(): VethPair {
  if (pairsMade === 0) removeStaleNamespaces();
  pairsMade++;
  const tag = `${process.pid % 100000}x${pairsMade}`;
  const ns = `ft-test-${process.pid}-${pairsMade}`;
  const outside = `ftc${tag}`;
  const inside = `ftr${tag}`;
  const remove = (): void => {
    try { sh(['ip', 'link', 'del', outside]); } catch { /* already gone with the namespace */ }
    try { sh(['ip', 'netns', 'del', ns]); } catch { /* never made */ }
  };
  try {
    sh(['ip', 'netns', 'add', ns]);
    sh(['ip', 'link', 'add', outside, 'type', 'veth', 'peer', 'name', inside, 'netns', ns]);
    sh(['sysctl', '-qw', `net.ipv6.conf.${outside}.disable_ipv6=1`]);
    sh(['sysctl', '-qw', `net.ipv4.conf.${outside}.rp_filter=1`]);
    sh(['ip', 'netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${inside}.disable_ipv6=1`]);
    // Largest MTU: corpus files hold frames captured before segmentation offload (4 KiB and more),
    // which veth would drop as too long for a 1500-byte MTU.
    sh(['ip', 'link', 'set', outside, 'mtu', '65535', 'arp', 'off', 'up']);
    sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', inside, 'mtu', '65535', 'arp', 'off', 'up']);
  } catch (err) {
    remove();
    throw err;
  }
  return { ns, outside, inside, remove };
}

/** Replays pcap files out of the namespace end; resolves with the packets tcpreplay says it sent. */
export async function replay(pair: VethPair, files: string[], speed: string[] = ['--topspeed']): Promise<number> {
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', pair.ns, 'tcpreplay', '-q', '-i', pair.inside,
    ...speed, ...files.map((f) => path.join(CORPUS, f))], { maxBuffer: 1 << 24 });
  const m = /Successful packets:\s+(\d+)/.exec(stdout);
  if (!m) throw new Error(`tcpreplay output not understood: ${stdout}`);
  return Number(m[1]);
}

export function setLink(pair: VethPair, state: 'up' | 'down'): void {
  sh(['ip', 'link', 'set', pair.outside, state]);
}

/**
 * Both ends report operstate up. After a carrier change the kernel reattaches a device's
 * queueing discipline from its link-watch work (up to a second later); until then the
 * namespace end silently drops what tcpreplay sends.
 */
export async function waitLinkUp(pair: VethPair, timeoutMs = 3000): Promise<boolean> {
  const state = (args: string[]): string => { try { return sh(args).trim(); } catch { return 'gone'; } };
  return waitFor(() => state(['cat', `/sys/class/net/${pair.outside}/operstate`]) === 'up' &&
    state(['ip', 'netns', 'exec', pair.ns, 'cat', `/sys/class/net/${pair.inside}/operstate`]) === 'up', timeoutMs);
}

export interface TsharkFrame {
  len: number;
  hex: string;
}

/** Every frame of a corpus file as tshark reads it. */
export function tsharkFrames(file: string, displayFilter?: string): TsharkFrame[] {
  const args = ['-r', path.join(CORPUS, file), '-T', 'json', '-x', '-j', 'frame'];
  if (displayFilter) args.push('-Y', displayFilter);
  const out = execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] });
  const rows = JSON.parse(out) as Array<{ _source: { layers: { frame_raw: [string]; frame: Record<string, string> } } }>;
  return rows.map((r) => ({ len: Number(r._source.layers.frame['frame.len']), hex: r._source.layers.frame_raw[0] }));
}

/** One field of the frames matching a display filter. */
export function tsharkFields(file: string, displayFilter: string, field: string): string[] {
  const out = execFileSync('tshark', ['-r', path.join(CORPUS, file), '-Y', displayFilter, '-T', 'fields', '-e', field],
    { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter((l) => l.trim() !== '');
}

/** `tshark -r F -Y FILTER | wc -l` */
export function tsharkCount(file: string, displayFilter: string): number {
  const out = execFileSync('tshark', ['-r', path.join(CORPUS, file), '-Y', displayFilter],
    { encoding: 'utf8', maxBuffer: 1 << 26, stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `ready()` or the deadline; returns whether it became ready. */
export async function waitFor(ready: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}
