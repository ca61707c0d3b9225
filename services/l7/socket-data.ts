// L7 from the eBPF socket tracer: each traced socket is a flow of its own, fed to the same
// parsers as packets, and its records carry the process that made the syscalls. One socket sees
// one side of a connection, so a loopback exchange between two traced processes gives two
// records (one from the client's socket, one from the server's), as in the DeepFlow agent.
import { flowtap } from '../../lib/proto';
import {
  DIRECTION_EGRESS, ROLE_CLIENT, ROLE_SERVER, SOCKET_KIND_CLOSE, SOCKET_KIND_DATA, SocketDataBatch,
} from '../capture/ebpf-socket-batch';
import { L7Stage, type L7StageOptions } from './stage';

interface SocketInfo {
  /** The traced process is the client of this socket. */
  isClient: boolean;
  pid: number;
  comm: string;
  isTls: boolean;
  /** Stream offsets per direction, standing in for TCP sequence numbers. */
  seqToServer: number;
  seqToClient: number;
  traceIdRequest: number;
  traceIdResponse: number;
}

export class SocketDataL7 {
  readonly stage: L7Stage;
  private readonly sockets = new Map<number, SocketInfo>();
  /**
   * tls_ciphertext: syscall data on a socket that also gives TLS plaintext (uprobes); the
   * plaintext copy of the same bytes is what l7 parses, so the ciphertext is left out.
   */
  readonly counters = { rows: 0, data: 0, closes: 0, tls_ciphertext: 0 };

  /** App meters are not produced from eBPF: the packet path already counts the same requests. */
  constructor(private readonly onLog: (log: flowtap.IL7FlowLog) => void, opts: L7StageOptions = {}) {
    this.stage = new L7Stage((log) => this.enrich(log), () => undefined, opts);
  }

  get socketCount(): number {
    return this.sockets.size;
  }

  push(b: SocketDataBatch): void {
    for (let i = 0; i < b.count; i++) {
      this.counters.rows++;
      const socketId = b.socketId[i];
      if (b.kind[i] === SOCKET_KIND_CLOSE) {
        this.counters.closes++;
        this.stage.closeFlow(socketId);
        this.sockets.delete(socketId);
        continue;
      }
      if (b.kind[i] !== SOCKET_KIND_DATA || b.payloadCap[i] === 0) continue;
      this.counters.data++;
      let info = this.sockets.get(socketId);
      if (info === undefined) {
        // Role from the tracer (connect: client, accept: server). Unknown (the socket predates
        // the tracer): a port below the ephemeral range (32768) against one inside it serves;
        // else the side that speaks first is taken as the client, as in most protocols.
        const role = b.role[i];
        const local = b.portLocal[i];
        const remote = b.portRemote[i];
        const isClient = role === ROLE_CLIENT ? true
          : role === ROLE_SERVER ? false
          : (local < 32768) !== (remote < 32768) ? local >= 32768
          : b.direction[i] === DIRECTION_EGRESS;
        info = { isClient, pid: b.pid[i], comm: b.commOf(i), isTls: false, seqToServer: 0, seqToClient: 0, traceIdRequest: 0, traceIdResponse: 0 };
        this.sockets.set(socketId, info);
      }
      if (b.isTls[i]) {
        if (!info.isTls) {
          // First plaintext on this socket: what the syscalls showed so far (the TLS handshake)
          // ends as a flow of its own, and the plaintext stream starts afresh at offset 0. Mixing
          // both streams in one flow made the parser take the plaintext for broken TLS records.
          this.stage.closeFlow(socketId);
          info.seqToServer = 0;
          info.seqToClient = 0;
          info.isTls = true;
        }
      } else if (info.isTls) {
        this.counters.tls_ciphertext++;
        continue;
      }
      const sent = b.direction[i] === DIRECTION_EGRESS;
      const fromClient = sent === info.isClient;
      const local = b.ipLocal.subarray(i * 16, i * 16 + 16);
      const remote = b.ipRemote.subarray(i * 16, i * 16 + 16);
      const len = b.syscallLen[i];
      const seq = fromClient ? info.seqToServer : info.seqToClient;
      if (fromClient) {
        info.seqToServer = (info.seqToServer + len) >>> 0;
        info.traceIdRequest = b.syscallTraceId[i];
      } else {
        info.seqToClient = (info.seqToClient + len) >>> 0;
        info.traceIdResponse = b.syscallTraceId[i];
      }
      this.stage.push({
        flow_id: socketId,
        timestamp_us: b.timestampUs[i],
        ip_version: b.ipVersion[i],
        ip_0: Buffer.from(info.isClient ? local : remote),
        ip_1: Buffer.from(info.isClient ? remote : local),
        client_port: info.isClient ? b.portLocal[i] : b.portRemote[i],
        server_port: info.isClient ? b.portRemote[i] : b.portLocal[i],
        protocol: b.protocol[i],
        from_client: fromClient,
        l7_protocol: '',
        tcp_seq: seq,
        payload_len: len,
        payload: Buffer.from(b.payloadOf(i)),
      });
    }
  }

  tick(nowUs: number): void {
    this.stage.tick(nowUs);
  }

  flush(): void {
    this.stage.flush();
    this.sockets.clear();
  }

  private enrich(log: flowtap.IL7FlowLog): void {
    const info = this.sockets.get(Number(log.flow_id));
    log.signal_source = 'ebpf';
    if (info) {
      if (info.isClient) {
        log.process_id_0 = info.pid;
        log.process_kname_0 = info.comm;
      } else {
        log.process_id_1 = info.pid;
        log.process_kname_1 = info.comm;
      }
      log.is_tls = info.isTls;
      // The ids of the latest request and response syscalls: exact for one request at a time,
      // approximate for pipelined ones.
      log.syscall_trace_id_request = info.traceIdRequest;
      log.syscall_trace_id_response = info.traceIdResponse;
    }
    this.onLog(log);
  }
}
