// Which L7 protocol a flow speaks, from its payloads (never from the port alone). Used by the
// flow process on each payload of a flow whose protocol is still unknown.
//
// Unknown traffic must stay cheap, so failures are remembered twice:
// - per flow: after `maxTriesPerFlow` payloads that no parser recognised, the flow is given up;
// - per server (protocol, port and, when given, address): after `maxTriesPerServer` failed
//   payloads within `failTtlUs`, new flows to that server are not tried until the TTL passes
//   (as the DeepFlow agent does with 128 tries / 60 s).
// A server that once answered a protocol has that parser tried first. Both tables are bounded;
// the oldest entry is evicted and counted.
import { CHECK_NONE, L7Parser, ParseContext } from './parser';
import { DEFAULT_PARSERS } from './registry';

export interface InferenceOptions {
  parsers?: readonly L7Parser[];
  maxTriesPerFlow?: number;
  maxTriesPerServer?: number;
  failTtlUs?: number;
  maxFlows?: number;
  maxServers?: number;
}

/** recognise(): the server's failures say not to try. */
const SKIPPED = -2;

class FlowEntry {
  name = '';
  tries = 0;
}

class ServerEntry {
  fails = 0;
  firstFailUs = 0;
  /** Index into parsers of the protocol last recognised on this server, or -1. */
  known = -1;
}

export class ProtocolInference {
  private readonly parsers: readonly L7Parser[];
  private readonly maxTriesPerFlow: number;
  private readonly maxTriesPerServer: number;
  private readonly failTtlUs: number;
  private readonly maxFlows: number;
  private readonly maxServers: number;
  private readonly flowTable = new Map<number, FlowEntry>();
  private readonly serverTable = new Map<number, ServerEntry>();
  private readonly ctx: ParseContext = { protocol: 6, fromClient: true, serverPort: 0, truncated: false };
  private lastUs = 0;
  /**
   * What the payload of the last `infer` call that named a protocol was: CHECK_REQUEST or
   * CHECK_RESPONSE (as the recognising parser's check said); CHECK_NONE otherwise. Lets the flow
   * map tell client from server on a flow whose handshake it did not see.
   */
  lastCheck: number = CHECK_NONE;
  /**
   * Counters: `flow_evicted`, `server_evicted` (tables full), `skipped_flow` / `skipped_server`
   * (payloads not tried because the flow or the server gave up), `failed` (tried, no parser).
   */
  readonly counters: Record<string, number> = {
    flow_evicted: 0, server_evicted: 0, skipped_flow: 0, skipped_server: 0, failed: 0, inferred: 0,
  };

  constructor(opts: InferenceOptions = {}) {
    this.parsers = opts.parsers ?? DEFAULT_PARSERS;
    this.maxTriesPerFlow = opts.maxTriesPerFlow ?? 16;
    this.maxTriesPerServer = opts.maxTriesPerServer ?? 128;
    this.failTtlUs = opts.failTtlUs ?? 60_000_000;
    this.maxFlows = opts.maxFlows ?? 65536;
    this.maxServers = opts.maxServers ?? 16384;
  }

  get flowCount(): number { return this.flowTable.size; }
  get serverCount(): number { return this.serverTable.size; }

  /**
   * The protocol name ("HTTP", "DNS", ...) of the flow, or "" while unknown. `nowUs` (packet time)
   * ages the per-server failures; `serverIp` (16 bytes) narrows the server key to one address.
   */
  infer(flowId: number, payload: Uint8Array, fromClient: boolean, protocol: number, serverPort: number,
    nowUs?: number, serverIp?: Uint8Array): string {
    if (nowUs !== undefined && nowUs > this.lastUs) this.lastUs = nowUs;
    this.lastCheck = CHECK_NONE;
    let flow = this.flowTable.get(flowId);
    if (flow !== undefined) {
      if (flow.name !== '') return flow.name;
      if (flow.tries >= this.maxTriesPerFlow) { this.counters.skipped_flow++; return ''; }
    }
    if (payload.length === 0) return '';
    const found = this.recognise(payload, fromClient, protocol, serverPort, serverIp);
    if (found === SKIPPED) return '';
    if (flow === undefined) flow = this.addFlow(flowId);
    if (found >= 0) {
      flow.name = this.parsers[found].name;
      return flow.name;
    }
    flow.tries++;
    return '';
  }

  /**
   * As `infer`, for a caller that keeps each flow's protocol and tries itself (the flow map): no
   * per-flow table, so nothing to forget when the flow closes.
   */
  inferPayload(payload: Uint8Array, fromClient: boolean, protocol: number, serverPort: number,
    nowUs?: number, serverIp?: Uint8Array): string {
    if (nowUs !== undefined && nowUs > this.lastUs) this.lastUs = nowUs;
    this.lastCheck = CHECK_NONE;
    if (payload.length === 0) return '';
    const found = this.recognise(payload, fromClient, protocol, serverPort, serverIp);
    return found >= 0 ? this.parsers[found].name : '';
  }

  /** The index of the parser that recognises the payload, -1 for none, SKIPPED when the server gave up. */
  private recognise(payload: Uint8Array, fromClient: boolean, protocol: number, serverPort: number,
    serverIp: Uint8Array | undefined): number {
    const skey = serverKey(protocol, serverPort, serverIp);
    let server = this.serverTable.get(skey);
    if (server !== undefined && server.known < 0 && server.fails >= this.maxTriesPerServer) {
      if (this.lastUs - server.firstFailUs < this.failTtlUs) { this.counters.skipped_server++; return SKIPPED; }
      server.fails = 0;
    }
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.length);
    const ctx = this.ctx;
    ctx.protocol = protocol; ctx.fromClient = fromClient; ctx.serverPort = serverPort;
    let found = -1;
    // Parsers marked inferFirst (a protocol reached by upgrading another, e.g. h2c from HTTP/1.1)
    // go before the server's known protocol, which would otherwise always claim the flow.
    for (let i = 0; found < 0 && i < this.parsers.length; i++) {
      if (this.parsers[i].inferFirst === true && this.tryParser(i, buf)) found = i;
    }
    if (found < 0 && server !== undefined && server.known >= 0 && this.tryParser(server.known, buf)) found = server.known;
    for (let i = 0; found < 0 && i < this.parsers.length; i++) {
      if (server !== undefined && i === server.known) continue;
      if (this.tryParser(i, buf)) found = i;
    }
    if (server === undefined) server = this.addServer(skey);
    if (found >= 0) {
      server.known = found;
      server.fails = 0;
      this.counters.inferred++;
      return found;
    }
    this.counters.failed++;
    if (server.fails === 0) server.firstFailUs = this.lastUs;
    server.fails++;
    return -1;
  }

  /** Drops what is known about a flow (call on flow close). */
  forget(flowId: number): void {
    this.flowTable.delete(flowId);
  }

  private tryParser(i: number, buf: Buffer): boolean {
    const p = this.parsers[i];
    if (this.ctx.protocol === 6 ? !p.overTcp : this.ctx.protocol === 17 ? !p.overUdp : true) return false;
    const kind = p.check(buf, 0, buf.length, this.ctx);
    if (kind === CHECK_NONE) return false;
    this.lastCheck = kind;
    return true;
  }

  private addFlow(flowId: number): FlowEntry {
    if (this.flowTable.size >= this.maxFlows) {
      const oldest = this.flowTable.keys().next().value as number;
      this.flowTable.delete(oldest);
      this.counters.flow_evicted++;
    }
    const e = new FlowEntry();
    this.flowTable.set(flowId, e);
    return e;
  }

  private addServer(key: number): ServerEntry {
    if (this.serverTable.size >= this.maxServers) {
      const oldest = this.serverTable.keys().next().value as number;
      this.serverTable.delete(oldest);
      this.counters.server_evicted++;
    }
    const e = new ServerEntry();
    this.serverTable.set(key, e);
    return e;
  }
}

/** protocol, port and a 31-bit hash of the address packed into one exact integer (< 2^53). */
function serverKey(protocol: number, port: number, ip: Uint8Array | undefined): number {
  let h = 0;
  if (ip !== undefined) {
    for (let k = 0; k < ip.length; k++) h = (Math.imul(h, 31) + ip[k]) | 0;
    h &= 0x7fffffff;
  }
  return h * 0x400000 + ((protocol & 0x3f) << 16 | (port & 0xffff));
}
