// Settings of the flow stage. Times are in µs because the packets' own clock is.

export interface FlowTimeouts {
  /** TCP after the handshake completed (or mid-stream), no FIN/RST yet. */
  establishedUs: number;
  /** TCP while the handshake is under way (SYN or SYN-ACK seen, not the final ACK). */
  openingUs: number;
  /**
   * TCP after a FIN from one side only (half-closed); idle this long, it closes as
   * client_half_close / server_half_close. As long as established: the other side may go on
   * sending for long (corpus tls/zeek/tls13_wolfssl.pcap: the server's FIN comes 10 s after the client's).
   */
  closingUs: number;
  /** TCP after FINs from both sides: waits for the last ACK and stragglers before reporting finish. */
  finUs: number;
  /** TCP after a RST on an established flow: long, so retransmissions after it do not open a new flow. */
  rstUs: number;
  /** TCP after a RST during the handshake (refused or aborted connection): nothing more will come. */
  openingRstUs: number;
  /** UDP flows. */
  udpUs: number;
  /** Other IP protocols. */
  otherUs: number;
}

export interface FlowMapConfig {
  timeouts: FlowTimeouts;
  /** Concurrent flows past which new flows are dropped (drops.flow_map_full). */
  maxFlows: number;
  /** Ports that are servers whatever their number (used when the SYN was not seen). */
  serverPorts: ReadonlySet<number>;
  /** Payload packets per flow offered to `infer` before the flow is left without an L7 protocol. */
  inferMaxAttempts: number;
  /** Emit an AppPayload for every payload packet (the l7 process's input). */
  emitPayloads: boolean;
  /**
   * The first flow_id handed out (then +1 per flow). A service that restarts should pass
   * something unique per start (e.g. start seconds * 2^20) so ids do not repeat downstream.
   */
  firstFlowId: number;
  /**
   * Whether the VLAN id is part of the flow key (default true: the same addresses on two VLANs
   * may be two networks). Off for links where only one direction is tagged (a trunk whose return
   * path is the native VLAN), which would otherwise split each connection in two; flows then
   * report vlan 0.
   */
  vlanInKey: boolean;
  /** Endpoints the service table (server evidence for SYN-less flows) holds. */
  serviceTableSize: number;
  /**
   * Optional: after `infer` named a flow's protocol, whether that payload was a request (1) or a
   * response (2), 0 unknown (ProtocolInference.lastCheck). Lets L7 settle client and server.
   */
  lastPayloadKind?: () => number;
}

export const DEFAULT_FLOW_TIMEOUTS: FlowTimeouts = {
  establishedUs: 300e6,
  openingUs: 5e6,
  closingUs: 300e6,
  finUs: 2e6,
  rstUs: 35e6,
  openingRstUs: 1e6,
  udpUs: 5e6,
  otherUs: 5e6,
};

export const DEFAULT_FLOW_MAP_CONFIG: FlowMapConfig = {
  timeouts: DEFAULT_FLOW_TIMEOUTS,
  maxFlows: 65535,
  serverPorts: new Set<number>(),
  inferMaxAttempts: 16,
  emitPayloads: true,
  firstFlowId: 1,
  vlanInKey: true,
  serviceTableSize: 65536,
};

/** Merges a partial config over the defaults (timeouts merged field by field). */
export function flowMapConfig(partial: Partial<Omit<FlowMapConfig, 'timeouts'>> & { timeouts?: Partial<FlowTimeouts> } = {}): FlowMapConfig {
  return {
    ...DEFAULT_FLOW_MAP_CONFIG,
    ...partial,
    timeouts: { ...DEFAULT_FLOW_TIMEOUTS, ...(partial.timeouts ?? {}) },
  };
}
