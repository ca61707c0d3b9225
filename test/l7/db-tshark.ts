// Test helpers for the MySQL, PostgreSQL, Redis and Memcached comparisons: tshark's dissection as
// an ordered list of fields (PDML), and the agreement figures the tests report.
import * as path from 'node:path';
import { CORPUS, tshark } from './tshark';

export interface PdmlField {
  frame: number;
  stream: number;
  srcPort: number;
  name: string;
  show: string;
  /** The field's raw bytes (hex), when PDML gives them. */
  value: string;
}

const FIELD_RE = /<field name="([^"]+)"([^>]*?)\/?>/g;
const ATTR_RE = / (show|value)="([^"]*)"/g;

/** Every field named in `names` (plus frame, stream and source port), in dissection order. */
export function pdmlFields(file: string, filter: string, names: string[], opts: string[] = []): PdmlField[] {
  const want = new Set(names);
  const pdml = tshark(['-r', file, ...opts, '-Y', filter, '-T', 'pdml']);
  const out: PdmlField[] = [];
  let frame = 0, stream = -1, srcPort = 0;
  for (const m of pdml.matchAll(FIELD_RE)) {
    const name = m[1];
    if (name !== 'frame.number' && name !== 'tcp.stream' && name !== 'tcp.srcport' && !want.has(name)) continue;
    let show = '', value = '';
    for (const a of m[2].matchAll(ATTR_RE)) {
      if (a[1] === 'show') show = unescapeXml(a[2]);
      else value = a[2];
    }
    if (name === 'frame.number') { frame = Number(show); continue; }
    if (name === 'tcp.stream') { stream = Number(show); continue; }
    if (name === 'tcp.srcport') { srcPort = Number(show); continue; }
    out.push({ frame, stream, srcPort, name, show, value });
  }
  return out;
}

function unescapeXml(s: string): string {
  return s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'")
    .replace(/&#x([0-9a-fA-F]+);/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))).replace(/&amp;/g, '&');
}

/** UTF-8 text of a PDML hex value without its trailing NUL, cut to `maxBytes` as the parsers cut. */
export function hexText(hex: string, maxBytes = Infinity): string {
  const b = Buffer.from(hex, 'hex');
  const z = b.indexOf(0);
  return b.toString('utf8', 0, Math.min(z < 0 ? b.length : z, maxBytes));
}

/** Size of the multiset intersection of two lists of keys. */
export function matched(a: string[], b: string[]): number {
  const counts = new Map<string, number>();
  for (const x of a) counts.set(x, (counts.get(x) ?? 0) + 1);
  let n = 0;
  for (const x of b) {
    const c = counts.get(x) ?? 0;
    if (c > 0) { n++; counts.set(x, c - 1); }
  }
  return n;
}

/** Keys in `a` missing from `b` (multiset difference), for failure messages. */
export function missing(a: string[], b: string[]): string[] {
  const counts = new Map<string, number>();
  for (const x of b) counts.set(x, (counts.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const c = counts.get(x) ?? 0;
    if (c > 0) counts.set(x, c - 1);
    else out.push(x);
  }
  return out;
}

export interface Agreement {
  file: string;
  /** What tshark dissects (requests, or responses' codes). */
  tshark: number;
  stage: number;
  /** Found on both sides. */
  agree: number;
}

/** agree / max(tshark, stage), as a percentage of the larger side. */
export function percent(rows: Agreement[]): number {
  let agree = 0, total = 0;
  for (const r of rows) { agree += r.agree; total += Math.max(r.tshark, r.stage); }
  return total === 0 ? 100 : (100 * agree) / total;
}

export function rel(file: string): string {
  return path.relative(CORPUS, file);
}

/** The corpus README's decode-as rules, by file (relative path). */
export const DECODE_AS: Record<string, string[]> = {
  'mysql/deepflow/mysql-compressed-response.pcap': ['-d', 'tcp.port==30130,mysql'],
  'mysql/deepflow/mysql-statement.pcap': ['-d', 'tcp.port==30130,mysql'],
  'postgresql/deepflow/pgsql-all.pcap': ['-d', 'tcp.port==8000,pgsql'],
  'redis/zeek/django-cloud.pcapng': ['-d', 'tcp.port==10625,resp'],
};

export function decodeAs(file: string): string[] {
  return DECODE_AS[rel(file)] ?? [];
}
