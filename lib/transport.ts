// Batches between processes: ZeroMQ PUSH/PULL over IPC. Every message is two frames,
// [kind (1 byte, flowtap.MessageKind), protobuf body]. High-water marks bound each queue, and a
// send waits (never drops) when the receiver is behind, so back-pressure reaches capture, which
// is the one place that counts what it cannot keep.
import * as zmq from 'zeromq';
import { flowtap } from './proto';

export const Kind = flowtap.MessageKind;

export interface Envelope {
  kind: number;
  body: Buffer;
}

const KIND_FRAMES: Buffer[] = [];
function kindFrame(kind: number): Buffer {
  return (KIND_FRAMES[kind] ??= Buffer.of(kind));
}

/** The sending end towards one downstream service. Sends are serialised: one at a time. */
export class Outlet {
  private readonly socket: zmq.Push;
  private connected = false;
  /** ZeroMQ takes one send at a time per socket; later sends wait for earlier ones, in order. */
  private last: Promise<void> = Promise.resolve();

  constructor(readonly target: string, private readonly endpoint: string, highWaterMark: number) {
    // linger -1: on close, wait until queued batches are delivered (end of stream must arrive).
    this.socket = new zmq.Push({ sendHighWaterMark: highWaterMark, linger: -1 });
  }

  private ensureConnected(): void {
    if (this.connected) return;
    this.socket.connect(this.endpoint);
    this.connected = true;
  }

  send(kind: number, body: Uint8Array): Promise<void> {
    this.ensureConnected();
    const sent = this.last.then(() => this.socket.send([kindFrame(kind), body]));
    this.last = sent.catch(() => undefined);
    return sent;
  }

  async sendControl(kind: flowtap.Control.Kind, timeUs: number, source: string): Promise<void> {
    await this.send(Kind.CONTROL, flowtap.Control.encode({ kind, time_us: timeUs, source }).finish());
  }

  close(): void {
    this.socket.close();
  }
}

/** The receiving end of a service: one bound PULL socket that all its upstreams push to. */
export class Inlet {
  private readonly socket: zmq.Pull;

  constructor(private readonly endpoint: string, highWaterMark: number) {
    this.socket = new zmq.Pull({ receiveHighWaterMark: highWaterMark, linger: 0 });
  }

  async bind(): Promise<void> {
    await this.socket.bind(this.endpoint);
  }

  async *messages(): AsyncGenerator<Envelope> {
    for await (const frames of this.socket) {
      if (frames.length !== 2 || frames[0].length !== 1) {
        yield { kind: -1, body: frames[frames.length - 1] ?? Buffer.alloc(0) };
        continue;
      }
      yield { kind: frames[0][0], body: frames[1] };
    }
  }

  /** Ends messages() (its loop returns); safe to call twice. */
  close(): void {
    if (!this.socket.closed) this.socket.close();
  }
}
