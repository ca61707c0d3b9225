// A recording of the messages the l7 service took, in order, for bench/l7-bench.ts: each one as
// [kind u8][body length u32le][body]. The service writes one when FLOWTAP_L7_RECORD names a file.
import fs from 'node:fs';

export interface RecordedMessage { kind: number; body: Buffer }

export class MessageRecorder {
  private readonly fd: number;
  private readonly head = Buffer.alloc(5);

  constructor(file: string) {
    this.fd = fs.openSync(file, 'w');
  }

  write(kind: number, body: Uint8Array): void {
    this.head[0] = kind;
    this.head.writeUInt32LE(body.length, 1);
    fs.writeSync(this.fd, this.head);
    fs.writeSync(this.fd, body);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

export function readRecording(file: string): RecordedMessage[] {
  const all = fs.readFileSync(file);
  const out: RecordedMessage[] = [];
  let off = 0;
  while (off + 5 <= all.length) {
    const len = all.readUInt32LE(off + 1);
    if (off + 5 + len > all.length) throw new Error(`${file}: truncated at byte ${off}`);
    out.push({ kind: all[off], body: all.subarray(off + 5, off + 5 + len) });
    off += 5 + len;
  }
  return out;
}
