// A TCP relay on loopback that records both directions of what passes through it, so a test can
// turn real client/server traffic into segments for the l7 stage and a pcap for tshark.
import * as net from 'node:net';

export interface Chunk { fromClient: boolean; data: Buffer }

/** Listens on an ephemeral port and forwards each connection to `targetPort`, appending to `chunks`. */
export async function startRecordingRelay(targetPort: number, chunks: Chunk[]): Promise<{ port: number; close(): Promise<void> }> {
  const relay = net.createServer((c) => {
    const s = net.connect(targetPort, '127.0.0.1');
    c.on('data', (d) => { chunks.push({ fromClient: true, data: Buffer.from(d) }); s.write(d); });
    s.on('data', (d) => { chunks.push({ fromClient: false, data: Buffer.from(d) }); c.write(d); });
    c.on('close', () => s.destroy());
    s.on('close', () => c.destroy());
    c.on('error', () => undefined);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  return {
    port: (relay.address() as net.AddressInfo).port,
    close: () => new Promise<void>((r) => relay.close(() => r())),
  };
}
