// FlowAggr: merges a flow's per-second reports into one L4FlowLog per flow per minute. A log
// goes out when the flow's first report of a later minute arrives, when the flow closes (at
// once, with its close type), or when the minute's window closes. A log of a flow still open
// says close_type "forced_report" (DeepFlow's name for the periodic report of a live flow).
//
// Health checks (optional): a TCP flow seen from its SYN that closed by a client RST right after
// the handshake (close type tcp_client_rst or client_establish_reset) with no payload either way
// is merged into one log per server (ip_1, server_port) per minute, emitted when the minute
// closes. That log has flow_id 0 and client_port 0, the first client's ip_0, and the summed
// counters of all the checks (syn_count = number of checks, one SYN each unless repeated).
import { flowtap } from '../../lib/proto';
import { formatIp } from '../../lib/packet-batch';

export interface FlowAcc {
  minute: number;        // start of the minute (s)
  lastSec: number;       // last second a report of this flow was counted in (for distinct counts)
  log: flowtap.IL4FlowLog;
  /** The flow's metric row keys (client, server, edge), built once and reused minute to minute. */
  rowKeys?: [string, string, string];
}

const n = (v: number | null | undefined): number => (v ? Number(v) : 0);

/** A closed flow's whole-life log that is a health check (see the header). */
export function isHealthCheck(l: flowtap.IL4FlowLog): boolean {
  return l.protocol === 6 && l.is_new_flow === true
    && (l.close_type === 'tcp_client_rst' || l.close_type === 'client_establish_reset')
    && n(l.syn_count) > 0 && n(l.synack_count) > 0 && n(l.l4_byte_tx) === 0 && n(l.l4_byte_rx) === 0;
}

export class FlowAggr {
  private readonly accs = new Map<number, FlowAcc>();
  /** Health-check logs being merged, by server and minute. */
  private readonly healthChecks = new Map<string, { minute: number; log: flowtap.IL4FlowLog }>();
  /** Flow logs merged into a health-check log, all time. */
  healthChecksMerged = 0;

  constructor(private readonly emit: (log: flowtap.IL4FlowLog) => void, private readonly aggregateHealthChecks = false) {}

  get size(): number {
    return this.accs.size + this.healthChecks.size;
  }

  /**
   * Adds a report of second `sec`; returns the accumulator and whether this is the flow's
   * first report in this minute / in this second (so windows can count distinct flows).
   */
  add(f: flowtap.IFlow, sec: number): { firstInMinute: boolean; firstInSecond: boolean; acc: FlowAcc } {
    const id = Number(f.flow_id);
    const minute = sec - (sec % 60);
    let acc = this.accs.get(id);
    let firstInMinute = false;
    if (acc && acc.minute < minute) {
      this.emit(acc.log);
      this.accs.delete(id);
      acc = this.newAcc(f, minute, acc);
      firstInMinute = true;
    } else if (!acc) {
      acc = this.newAcc(f, minute);
      firstInMinute = true;
    }
    const firstInSecond = acc.lastSec !== sec;
    acc.lastSec = sec;
    this.merge(acc.log, f);
    if (f.is_closed) {
      this.accs.delete(id);
      if (this.aggregateHealthChecks && isHealthCheck(acc.log)) this.addHealthCheck(acc.log, minute);
      else this.emit(acc.log);
    } else {
      this.accs.set(id, acc);
    }
    return { firstInMinute, firstInSecond, acc };
  }

  /** Emits the logs of every minute before `minuteEnd` (s). */
  closeMinutesBefore(minuteEnd: number): void {
    for (const [id, acc] of this.accs) {
      if (acc.minute < minuteEnd) { this.emit(acc.log); this.accs.delete(id); }
    }
    for (const [key, hc] of this.healthChecks) {
      if (hc.minute < minuteEnd) { this.emit(hc.log); this.healthChecks.delete(key); }
    }
  }

  flush(): void {
    for (const acc of this.accs.values()) this.emit(acc.log);
    this.accs.clear();
    for (const hc of this.healthChecks.values()) this.emit(hc.log);
    this.healthChecks.clear();
  }

  private addHealthCheck(log: flowtap.IL4FlowLog, minute: number): void {
    this.healthChecksMerged++;
    const key = `${log.ip_1}|${log.server_port}|${minute}`;
    const hc = this.healthChecks.get(key);
    if (!hc) {
      this.healthChecks.set(key, { minute, log: { ...log, flow_id: 0, client_port: 0 } });
      return;
    }
    // An L4FlowLog carries the same counter names as a Flow report, so the report merge applies.
    this.merge(hc.log, log as unknown as flowtap.IFlow);
    hc.log.start_time = Math.min(n(hc.log.start_time), n(log.start_time));
  }

  private newAcc(f: flowtap.IFlow, minute: number, previous?: FlowAcc): FlowAcc {
    const log: flowtap.IL4FlowLog = {
      flow_id: n(f.flow_id),
      start_time: n(f.start_time),
      end_time: n(f.end_time),
      ip_0: previous ? previous.log.ip_0 : formatIp(f.ip_0 ?? new Uint8Array(16)),
      ip_1: previous ? previous.log.ip_1 : formatIp(f.ip_1 ?? new Uint8Array(16)),
      client_port: n(f.client_port), server_port: n(f.server_port), protocol: n(f.protocol),
      l7_protocol: f.l7_protocol ?? '', close_type: 'forced_report',
      packet_tx: 0, packet_rx: 0, byte_tx: 0, byte_rx: 0, l3_byte_tx: 0, l3_byte_rx: 0, l4_byte_tx: 0, l4_byte_rx: 0,
      vlan: n(f.vlan), tunnel_type: n(f.tunnel_type), tunnel_id: n(f.tunnel_id),
      tcp_flags_tx: 0, tcp_flags_rx: 0, is_new_flow: false,
      rtt: 0, rtt_client_max: 0, rtt_server_max: 0, srt_max: 0, art_max: 0, cit_max: 0,
      retrans_tx: 0, retrans_rx: 0, zero_win_tx: 0, zero_win_rx: 0, ooo_tx: 0, ooo_rx: 0,
      syn_count: 0, synack_count: 0, fin_count: 0, sampled: false, retrans_syn: 0, retrans_synack: 0,
    };
    return { minute, lastSec: -1, log, rowKeys: previous?.rowKeys };
  }

  private merge(l: flowtap.IL4FlowLog, f: flowtap.IFlow): void {
    l.packet_tx = n(l.packet_tx) + n(f.packet_tx); l.packet_rx = n(l.packet_rx) + n(f.packet_rx);
    l.byte_tx = n(l.byte_tx) + n(f.byte_tx); l.byte_rx = n(l.byte_rx) + n(f.byte_rx);
    l.l3_byte_tx = n(l.l3_byte_tx) + n(f.l3_byte_tx); l.l3_byte_rx = n(l.l3_byte_rx) + n(f.l3_byte_rx);
    l.l4_byte_tx = n(l.l4_byte_tx) + n(f.l4_byte_tx); l.l4_byte_rx = n(l.l4_byte_rx) + n(f.l4_byte_rx);
    l.retrans_tx = n(l.retrans_tx) + n(f.retrans_tx); l.retrans_rx = n(l.retrans_rx) + n(f.retrans_rx);
    l.zero_win_tx = n(l.zero_win_tx) + n(f.zero_win_tx); l.zero_win_rx = n(l.zero_win_rx) + n(f.zero_win_rx);
    l.ooo_tx = n(l.ooo_tx) + n(f.ooo_tx); l.ooo_rx = n(l.ooo_rx) + n(f.ooo_rx);
    l.syn_count = n(l.syn_count) + n(f.syn_count); l.synack_count = n(l.synack_count) + n(f.synack_count);
    l.fin_count = n(l.fin_count) + n(f.fin_count);
    l.retrans_syn = n(l.retrans_syn) + n(f.retrans_syn);
    l.retrans_synack = n(l.retrans_synack) + n(f.retrans_synack);
    l.tcp_flags_tx = n(l.tcp_flags_tx) | n(f.tcp_flags_tx);
    l.tcp_flags_rx = n(l.tcp_flags_rx) | n(f.tcp_flags_rx);
    l.end_time = Math.max(n(l.end_time), n(f.end_time));
    if (f.is_new_flow) l.is_new_flow = true;
    if (n(f.rtt) > 0) l.rtt = n(f.rtt);
    l.rtt_client_max = Math.max(n(l.rtt_client_max), n(f.rtt_client_max));
    l.rtt_server_max = Math.max(n(l.rtt_server_max), n(f.rtt_server_max));
    l.srt_max = Math.max(n(l.srt_max), n(f.srt_max));
    l.art_max = Math.max(n(l.art_max), n(f.art_max));
    l.cit_max = Math.max(n(l.cit_max), n(f.cit_max));
    if (f.l7_protocol) l.l7_protocol = f.l7_protocol;
    if (f.is_closed) l.close_type = f.close_type ?? '';
  }
}
