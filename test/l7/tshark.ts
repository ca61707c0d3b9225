// Test helpers: AppPayload records built from tshark's own per-packet view of a capture (so the
// L7 stage is tested without the capture and flow stages), and tshark's answers to compare with.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { flowtap } from '../../lib/proto';

export const CORPUS = path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'corpus');

export function corpusFiles(dir: string): string[] {
  const root = path.join(CORPUS, dir);
  if (!fs.existsSync(root)) return [];
  if (fs.statSync(root).isFile()) return [root];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(pcap|pcapng|cap)(\.gz)?$/.test(e.name)) out.push(p);
    }
  };
  walk(root);
  return out.sort();
}

export function tshark(args: string[]): string {
  return execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
}

/** "1700000000.123456789" -> µs, exactly (no float rounding of the fraction). */
export function epochToUs(s: string): number {
  const [sec, frac = ''] = s.split('.');
  return Number(sec) * 1e6 + Number((frac + '000000').slice(0, 6));
}

export function ipToBytes(text: string): Uint8Array {
  const b = new Uint8Array(16);
  if (text.includes('.') && !text.includes(':')) {
    b[10] = 0xff; b[11] = 0xff;
    text.split('.').forEach((x, i) => { b[12 + i] = Number(x); });
    return b;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const hw = head ? head.split(':') : [];
  const tw = tail ? tail.split(':') : [];
  const words = tail === undefined ? hw : [...hw, ...new Array(8 - hw.length - tw.length).fill('0'), ...tw];
  words.forEach((w, i) => { const v = parseInt(w, 16); b[2 * i] = v >> 8; b[2 * i + 1] = v & 0xff; });
  return b;
}

const WELL_KNOWN_SERVER_PORTS = new Set([53, 80, 8080, 8000, 3128]);

/**
 * One AppPayload per TCP segment or UDP datagram with payload, as the flow stage would send them:
 * client = SYN sender, else the side not on a well-known port, else the first sender. Payloads are
 * cut to `cut` bytes with `payload_len` the length on the wire, as the capture stage does.
 */
export function appPayloads(file: string, cut = 1024): flowtap.IAppPayload[] {
  const fields = ['frame.time_epoch', 'ip.src', 'ipv6.src', 'ip.dst', 'ipv6.dst', 'tcp.srcport', 'tcp.dstport',
    'udp.srcport', 'udp.dstport', 'tcp.seq_raw', 'tcp.flags.syn', 'tcp.flags.ack', 'tcp.payload', 'udp.payload', 'vlan.id'];
  const out = tshark(['-r', file, '-Y', '(tcp || udp) && !icmp && !icmpv6', '-T', 'fields', '-E', 'separator=/t',
    ...fields.flatMap((f) => ['-e', f])]);
  const flows = new Map<string, { id: number; client: string; cport: number; server: string; sport: number }>();
  const items: flowtap.IAppPayload[] = [];
  for (const line of out.split('\n')) {
    if (line === '') continue;
    // Tunnelled frames list outer and inner headers: the innermost are the flow's.
    const c = line.split('\t').map((x) => { const v = x.split(','); return v[v.length - 1]; });
    const isTcp = c[5] !== '';
    const src = c[1] || c[2], dst = c[3] || c[4];
    const sport = Number(isTcp ? c[5] : c[7]), dport = Number(isTcp ? c[6] : c[8]);
    if (!src || !dst || Number.isNaN(sport)) continue;
    const a = `${src}|${sport}`, b = `${dst}|${dport}`;
    const key = `${isTcp ? 6 : 17}|${a < b ? a + '|' + b : b + '|' + a}`;
    let f = flows.get(key);
    const payloadHex = isTcp ? c[12] : c[13];
    if (f === undefined) {
      const synOnly = isTcp && c[10] === '1' && c[11] === '0';
      let srcIsClient = true;
      if (!synOnly) {
        if (WELL_KNOWN_SERVER_PORTS.has(sport) && !WELL_KNOWN_SERVER_PORTS.has(dport)) srcIsClient = false;
        // Mid-connection capture: who sends a status line first is the server.
        if (payloadHex.startsWith('485454502f312e')) srcIsClient = false;
      }
      f = srcIsClient ? { id: flows.size + 1, client: src, cport: sport, server: dst, sport: dport }
        : { id: flows.size + 1, client: dst, cport: dport, server: src, sport: sport };
      flows.set(key, f);
    }
    if (!payloadHex) continue;
    const payload = Buffer.from(payloadHex, 'hex');
    const fromClient = src === f.client && sport === f.cport;
    items.push({
      flow_id: f.id, timestamp_us: epochToUs(c[0]), ip_version: f.client.includes(':') ? 6 : 4,
      ip_0: ipToBytes(f.client), ip_1: ipToBytes(f.server), client_port: f.cport, server_port: f.sport,
      protocol: isTcp ? 6 : 17, from_client: fromClient, l7_protocol: '',
      tcp_seq: isTcp ? Number(c[9]) >>> 0 : 0, payload_len: payload.length,
      payload: payload.length > cut ? payload.subarray(0, cut) : payload, vlan: Number(c[14] || 0),
    });
  }
  return items;
}

export interface TsharkDnsMessage {
  frame: number;
  id: number;
  response: boolean;
  name: string;
  type: string;
  rcode: number | undefined;
  /** dns.time of a response: seconds since its query, as text. */
  time: string;
}

/** DNS messages as tshark dissects them (PDML: type names as tshark shows them). */
export function tsharkDns(file: string, filter: string): TsharkDnsMessage[] {
  const pdml = tshark(['-r', file, '-Y', filter, '-T', 'pdml']);
  const msgs: TsharkDnsMessage[] = [];
  let frame = 0;
  let cur: TsharkDnsMessage | undefined;
  const re = /<field name="(frame\.number|dns\.id|dns\.flags\.response|dns\.flags\.rcode|dns\.qry\.name|dns\.qry\.type|dns\.time)" showname="([^"]*)"[^>]*? show="([^"]*)"/g;
  for (const m of pdml.matchAll(re)) {
    const [, name, showname, show] = m;
    if (name === 'frame.number') { frame = Number(show); continue; }
    if (name === 'dns.id') {
      cur = { frame, id: parseInt(show, 16), response: false, name: '', type: '', rcode: undefined, time: '' };
      msgs.push(cur);
      continue;
    }
    if (cur === undefined) continue;
    if (name === 'dns.flags.response') cur.response = show === '1';
    else if (name === 'dns.flags.rcode') cur.rcode = Number(show);
    else if (name === 'dns.qry.name' && cur.name === '') cur.name = unescapeXml(show);
    else if (name === 'dns.qry.type' && cur.type === '') cur.type = showname.replace(/^Type: /, '').split(' ')[0];
    else if (name === 'dns.time') cur.time = show;
  }
  return msgs;
}

function unescapeXml(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

/** Rows of tshark -T fields output (one array of column strings per frame). */
export function tsharkFields(file: string, filter: string, fields: string[], opts: string[] = []): string[][] {
  const out = tshark(['-r', file, ...opts, '-Y', filter, '-T', 'fields', '-E', 'separator=/t', ...fields.flatMap((f) => ['-e', f])]);
  return out.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
}

export function sorted<T>(xs: T[]): T[] {
  return [...xs].sort((a, b) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0));
}
