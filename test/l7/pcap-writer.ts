// Writes small Ethernet/IPv4 pcap files for parser edge cases, so that tshark can dissect exactly
// the bytes the stage is fed and serve as the oracle for them too.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export class PcapWriter {
  private readonly chunks: Buffer[] = [];
  private timeUs = 1_700_000_000_000_000;

  constructor() {
    const h = Buffer.alloc(24);
    h.writeUInt32LE(0xa1b2c3d4, 0);
    h.writeUInt16LE(2, 4);
    h.writeUInt16LE(4, 6);
    h.writeUInt32LE(262144, 16);
    h.writeUInt32LE(1, 20); // Ethernet
    this.chunks.push(h);
  }

  /** Moves the clock on by `us` before the next packet. */
  wait(us: number): this {
    this.timeUs += us;
    return this;
  }

  private frame(l4: Buffer, proto: number, src: string, dst: string): void {
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + l4.length, 2);
    ip.writeUInt16BE(0x4000, 6);
    ip[8] = 64;
    ip[9] = proto;
    src.split('.').forEach((x, i) => { ip[12 + i] = Number(x); });
    dst.split('.').forEach((x, i) => { ip[16 + i] = Number(x); });
    let sum = 0;
    for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    ip.writeUInt16BE(~sum & 0xffff, 10);
    const eth = Buffer.from('0200000000010200000000020800', 'hex');
    const rec = Buffer.alloc(16);
    const len = eth.length + ip.length + l4.length;
    this.timeUs += 100;
    rec.writeUInt32LE(Math.floor(this.timeUs / 1e6), 0);
    rec.writeUInt32LE(this.timeUs % 1e6, 4);
    rec.writeUInt32LE(len, 8);
    rec.writeUInt32LE(len, 12);
    this.chunks.push(rec, eth, ip, l4);
  }

  udp(src: string, sport: number, dst: string, dport: number, payload: Buffer): this {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(sport, 0);
    h.writeUInt16BE(dport, 2);
    h.writeUInt16BE(8 + payload.length, 4);
    this.frame(Buffer.concat([h, payload]), 17, src, dst);
    return this;
  }

  tcpRaw(src: string, sport: number, dst: string, dport: number, seq: number, ack: number, flags: number, payload: Buffer): this {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(sport, 0);
    h.writeUInt16BE(dport, 2);
    h.writeUInt32BE(seq >>> 0, 4);
    h.writeUInt32BE(ack >>> 0, 8);
    h[12] = 5 << 4;
    h[13] = flags;
    h.writeUInt16BE(65535, 14);
    this.frame(Buffer.concat([h, payload]), 6, src, dst);
    return this;
  }

  /** A TCP connection after its handshake; `c`/`s` send the next bytes of each direction. */
  tcp(client: string, cport: number, server: string, sport: number): TcpConversation {
    return new TcpConversation(this, client, cport, server, sport);
  }

  save(name: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-l7-'));
    const file = path.join(dir, name);
    fs.writeFileSync(file, Buffer.concat(this.chunks));
    return file;
  }
}

export class TcpConversation {
  private cseq = 1000;
  private sseq = 50000;

  constructor(private readonly w: PcapWriter, private readonly client: string, private readonly cport: number,
    private readonly server: string, private readonly sport: number) {
    w.tcpRaw(client, cport, server, sport, this.cseq - 1, 0, 0x02, Buffer.alloc(0));
    w.tcpRaw(server, sport, client, cport, this.sseq - 1, this.cseq, 0x12, Buffer.alloc(0));
    w.tcpRaw(client, cport, server, sport, this.cseq, this.sseq, 0x10, Buffer.alloc(0));
  }

  c(data: string | Buffer, waitUs = 1000): this {
    const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    this.w.wait(waitUs).tcpRaw(this.client, this.cport, this.server, this.sport, this.cseq, this.sseq, 0x18, b);
    this.cseq += b.length;
    return this;
  }

  /** The server closes its side. */
  serverFin(waitUs = 1000): this {
    this.w.wait(waitUs).tcpRaw(this.server, this.sport, this.client, this.cport, this.sseq, this.cseq, 0x11, Buffer.alloc(0));
    this.sseq += 1;
    return this;
  }

  s(data: string | Buffer, waitUs = 1000): this {
    const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
    this.w.wait(waitUs).tcpRaw(this.server, this.sport, this.client, this.cport, this.sseq, this.cseq, 0x18, b);
    this.sseq += b.length;
    return this;
  }
}
