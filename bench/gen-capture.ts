// Writes a synthetic but well-formed Ethernet pcap of short HTTP/1.1 flows and DNS lookups, for
// benchmarks: every TCP flow has a full handshake, one request, one response and a FIN close;
// every DNS lookup is a query and its answer. Checksums are left zero (capture does not check them).
import fs from 'node:fs';

class PcapWriter {
  private buf = Buffer.alloc(1 << 22);
  private used = 0;
  private readonly fd: number;
  packets = 0;

  constructor(path: string) {
    this.fd = fs.openSync(path, 'w');
    const h = Buffer.alloc(24);
    h.writeUInt32LE(0xa1b2c3d4, 0);
    h.writeUInt16LE(2, 4);
    h.writeUInt16LE(4, 6);
    h.writeUInt32LE(262144, 16);
    h.writeUInt32LE(1, 20); // Ethernet
    fs.writeSync(this.fd, h);
  }

  frame(tsUs: number, bytes: Buffer, len: number): void {
    if (this.used + 16 + len > this.buf.length) this.flush();
    const b = this.buf;
    b.writeUInt32LE(Math.floor(tsUs / 1e6), this.used);
    b.writeUInt32LE(tsUs % 1e6, this.used + 4);
    b.writeUInt32LE(len, this.used + 8);
    b.writeUInt32LE(len, this.used + 12);
    bytes.copy(b, this.used + 16, 0, len);
    this.used += 16 + len;
    this.packets++;
  }

  flush(): void {
    fs.writeSync(this.fd, this.buf, 0, this.used);
    this.used = 0;
  }

  close(): void {
    this.flush();
    fs.closeSync(this.fd);
  }
}

/** Builds Ethernet + IPv4 + TCP/UDP frames into one scratch buffer. */
class FrameBuilder {
  readonly buf = Buffer.alloc(2048);

  ipv4(src: number, dst: number, proto: number, l4Len: number): number {
    const b = this.buf;
    b.fill(0, 0, 34);
    b.writeUInt16BE(0x0800, 12);
    b[14] = 0x45;
    b.writeUInt16BE(20 + l4Len, 16);
    b[22] = 64;
    b[23] = proto;
    b.writeUInt32BE(src >>> 0, 26);
    b.writeUInt32BE(dst >>> 0, 30);
    return 34;
  }

  tcp(src: number, dst: number, sport: number, dport: number, seq: number, ack: number, flags: number, payload?: Buffer): number {
    const plen = payload?.length ?? 0;
    const off = this.ipv4(src, dst, 6, 20 + plen);
    const b = this.buf;
    b.writeUInt16BE(sport, off);
    b.writeUInt16BE(dport, off + 2);
    b.writeUInt32BE(seq >>> 0, off + 4);
    b.writeUInt32BE(ack >>> 0, off + 8);
    b[off + 12] = 0x50;
    b[off + 13] = flags;
    b.writeUInt16BE(65535, off + 14);
    b.writeUInt32BE(0, off + 16);
    payload?.copy(b, off + 20);
    return off + 20 + plen;
  }

  udp(src: number, dst: number, sport: number, dport: number, payload: Buffer): number {
    const off = this.ipv4(src, dst, 17, 8 + payload.length);
    const b = this.buf;
    b.writeUInt16BE(sport, off);
    b.writeUInt16BE(dport, off + 2);
    b.writeUInt16BE(8 + payload.length, off + 4);
    b.writeUInt16BE(0, off + 6);
    payload.copy(b, off + 8);
    return off + 8 + payload.length;
  }
}

function dnsMessage(id: number, name: string, answer: boolean): Buffer {
  const labels = name.split('.').map((l) => Buffer.concat([Buffer.of(l.length), Buffer.from(l)]));
  const qname = Buffer.concat([...labels, Buffer.of(0)]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(answer ? 0x8180 : 0x0100, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answer ? 1 : 0, 6);
  const question = Buffer.concat([qname, Buffer.from([0, 1, 0, 1])]);
  if (!answer) return Buffer.concat([header, question]);
  const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 1, 2, 3]);
  return Buffer.concat([header, question, rr]);
}

export interface SyntheticCapture {
  packets: number;
  httpFlows: number;
  dnsLookups: number;
}

/**
 * Writes at least `minPackets` packets: four HTTP flows to every DNS lookup, flows spread over
 * 2000 clients and 50 servers, 20 µs apart, so that many flows are open at once.
 */
export function writeSyntheticCapture(path: string, minPackets: number): SyntheticCapture {
  const w = new PcapWriter(path);
  const f = new FrameBuilder();
  let ts = 1_700_000_000_000_000;
  let httpFlows = 0;
  let dnsLookups = 0;
  const dnsServer = 0x0a000035;
  for (let n = 0; w.packets < minPackets; n++) {
    const client = 0x0a010000 + (n % 2000);
    const sport = 10000 + (Math.floor(n / 2000) % 50000);
    if (n % 5 === 4) {
      const id = n & 0xffff;
      const name = `host${n % 997}.example.com`;
      let len = f.udp(client, dnsServer, sport, 53, dnsMessage(id, name, false));
      w.frame(ts, f.buf, len);
      ts += 20;
      len = f.udp(dnsServer, client, 53, sport, dnsMessage(id, name, true));
      w.frame(ts, f.buf, len);
      ts += 20;
      dnsLookups++;
      continue;
    }
    const server = 0x0a020000 + (n % 50);
    const req = Buffer.from(`GET /item/${n % 1000}?q=${n} HTTP/1.1\r\nHost: shop${n % 50}.example\r\nUser-Agent: bench\r\n\r\n`);
    const body = `{"ok":true,"n":${n}}`;
    const resp = Buffer.from(`HTTP/1.1 ${n % 17 === 0 ? "404 Not Found" : "200 OK"}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    const cs = (n * 7919) >>> 0;
    const ss = (n * 104729) >>> 0;
    const pkts: Array<[number, number, number, number, number, number, number, Buffer | undefined]> = [
      [client, server, sport, 80, cs, 0, 0x02, undefined],
      [server, client, 80, sport, ss, cs + 1, 0x12, undefined],
      [client, server, sport, 80, cs + 1, ss + 1, 0x10, undefined],
      [client, server, sport, 80, cs + 1, ss + 1, 0x18, req],
      [server, client, 80, sport, ss + 1, cs + 1 + req.length, 0x10, undefined],
      [server, client, 80, sport, ss + 1, cs + 1 + req.length, 0x18, resp],
      [client, server, sport, 80, cs + 1 + req.length, ss + 1 + resp.length, 0x11, undefined],
      [server, client, 80, sport, ss + 1 + resp.length, cs + 2 + req.length, 0x11, undefined],
      [client, server, sport, 80, cs + 2 + req.length, ss + 2 + resp.length, 0x10, undefined],
    ];
    for (const [s, d, sp, dp, seq, ack, flags, payload] of pkts) {
      const len = f.tcp(s, d, sp, dp, seq, ack, flags, payload);
      w.frame(ts, f.buf, len);
      ts += 20;
    }
    httpFlows++;
  }
  w.close();
  return { packets: w.packets, httpFlows, dnsLookups };
}

if (require.main === module) {
  const [out, count] = process.argv.slice(2);
  if (!out) {
    process.stderr.write('usage: node dist/bench/gen-capture.js <out.pcap> [packets]\n');
    process.exit(2);
  }
  const r = writeSyntheticCapture(out, Number(count ?? 1_000_000));
  console.log(`${out}: ${r.packets} packets, ${r.httpFlows} HTTP flows, ${r.dnsLookups} DNS lookups`);
}
