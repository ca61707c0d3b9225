// Settings of the flow stage. Times are in µs because the packets' own clock is.

export interface FlowTimeouts {
  /** TCP after the handshake completed, no FIN/RST yet. */
  establishedUs: number;
  /** TCP while the handshake is under way (SYN or SYN-ACK seen, not the final ACK). */
  openingUs: number;
  /** TCP after FINs from both sides, waiting for stragglers before the flow is reported closed. */
  closingUs: number;
  /**
   * TCP after a FIN from one side only. The other side may go on sending for long (a client that
   * shuts down its write side, then reads a long response), so this is as long as established.
   */
  halfClosedUs: number;
  /** TCP after a RST: long, because a RST may be followed by retransmissions that must not open a new flow. */
  rstUs: number;
  /** UDP flows. */
  udpUs: number;
  /** Other IP protocols, and TCP flows whose start was not seen and that carry no state yet. */
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
}

export const DEFAULT_FLOW_TIMEOUTS: FlowTimeouts = {
  establishedUs: 300e6,
  openingUs: 5e6,
  closingUs: 5e6,
  halfClosedUs: 300e6,
  rstUs: 35e6,
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
};

/** Merges a partial config over the defaults (timeouts merged field by field). */
export function flowMapConfig(partial: Partial<Omit<FlowMapConfig, 'timeouts'>> & { timeouts?: Partial<FlowTimeouts> } = {}): FlowMapConfig {
  return {
    ...DEFAULT_FLOW_MAP_CONFIG,
    ...partial,
    timeouts: { ...DEFAULT_FLOW_TIMEOUTS, ...(partial.timeouts ?? {}) },
  };
}
