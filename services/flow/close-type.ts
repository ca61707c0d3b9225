// Flow states and close types. Close-type names are DeepFlow's, so its users read them as they
// expect; what each means *here* is written next to it.

/** TCP (and generic) flow states kept per flow slot. */
export const STATE_NONE = 0;          // UDP and other protocols: no state, idle timeout only
export const STATE_SYN_SENT = 1;      // client SYN seen
export const STATE_SYN_RECEIVED = 2;  // server SYN-ACK seen, final ACK not yet
export const STATE_ESTABLISHED = 3;   // handshake done, or a flow whose start was not captured
export const STATE_CLOSING = 4;       // a FIN from one side only
export const STATE_CLOSED = 5;        // FINs from both sides
export const STATE_RESET = 6;         // a RST seen (the close type was decided then)

export const CLOSE_NONE = 0;
/** Index = close code; the text goes on Flow.close_type and L4FlowLog.close_type. */
export const CLOSE_TYPE_NAMES = [
  '',
  'finish',                   // FINs from both sides
  'tcp_server_rst',           // server RST on an established (or mid-stream) flow
  'tcp_client_rst',           // client RST on an established (or mid-stream) flow
  'timeout',                  // idle past its state's timeout, nothing more specific applies
  'forced_report',            // not from the flow map: the quadruple's per-minute L4 log of a flow still open
  'client_syn_repeat',        // handshake timed out after the client sent the SYN more than once
  'server_syn_ack_repeat',    // handshake timed out after the server sent the SYN-ACK more than once
  'server_half_close',        // only the server sent a FIN, then the flow went idle
  'client_half_close',        // only the client sent a FIN, then the flow went idle
  'client_source_port_reuse', // a new SYN (other ISN) on an established 5-tuple ended the old flow
  'server_reset',             // server answered the SYN with a RST (connection refused)
  'server_queue_lack',        // server repeated its SYN-ACK after the client's ACK (accept queue full)
  'client_establish_reset',   // client RST between the SYN-ACK and the handshake's final ACK
  'server_establish_reset',   // server RST after its own SYN-ACK, before the final ACK
  'tcp_fin_client_rst',       // client RST after a FIN had been sent
] as const;

export type CloseTypeName = (typeof CLOSE_TYPE_NAMES)[number];

export const CLOSE_FINISH = 1;
export const CLOSE_TCP_SERVER_RST = 2;
export const CLOSE_TCP_CLIENT_RST = 3;
export const CLOSE_TIMEOUT = 4;
export const CLOSE_FORCED_REPORT = 5;
export const CLOSE_CLIENT_SYN_REPEAT = 6;
export const CLOSE_SERVER_SYN_ACK_REPEAT = 7;
export const CLOSE_SERVER_HALF_CLOSE = 8;
export const CLOSE_CLIENT_HALF_CLOSE = 9;
export const CLOSE_CLIENT_SOURCE_PORT_REUSE = 10;
export const CLOSE_SERVER_RESET = 11;
export const CLOSE_SERVER_QUEUE_LACK = 12;
export const CLOSE_CLIENT_ESTABLISH_RESET = 13;
export const CLOSE_SERVER_ESTABLISH_RESET = 14;
export const CLOSE_TCP_FIN_CLIENT_RST = 15;

/** The close type a RST gives, from the state the flow was in and who sent it. */
export function closeTypeOfRst(state: number, fromClient: boolean): number {
  switch (state) {
    case STATE_SYN_SENT:
      return fromClient ? CLOSE_TCP_CLIENT_RST : CLOSE_SERVER_RESET;
    case STATE_SYN_RECEIVED:
      return fromClient ? CLOSE_CLIENT_ESTABLISH_RESET : CLOSE_SERVER_ESTABLISH_RESET;
    case STATE_CLOSING:
    case STATE_CLOSED:
      return fromClient ? CLOSE_TCP_FIN_CLIENT_RST : CLOSE_TCP_SERVER_RST;
    default:
      return fromClient ? CLOSE_TCP_CLIENT_RST : CLOSE_TCP_SERVER_RST;
  }
}

/** The close type of the same RST with client and server exchanged (a flow turned round by L7). */
export function oppositeRstClose(code: number): number {
  switch (code) {
    case CLOSE_TCP_CLIENT_RST: return CLOSE_TCP_SERVER_RST;
    case CLOSE_TCP_SERVER_RST: return CLOSE_TCP_CLIENT_RST;
    case CLOSE_TCP_FIN_CLIENT_RST: return CLOSE_TCP_SERVER_RST;
    default: return code;
  }
}

/** Bits of the per-flow `marks` word. */
export const MARK_FIN_CLIENT = 1;
export const MARK_FIN_SERVER = 2;
export const MARK_QUEUE_LACK = 4;
export const MARK_SYN_SEEN = 8;
export const MARK_NEW_REPORTED = 16;   // the first report (is_new_flow) has gone out
export const MARK_SEQ_CLIENT = 32;     // next-sequence tracking has started, client direction
export const MARK_SEQ_SERVER = 64;
export const MARK_LAST_PAYLOAD_SERVER = 128; // direction of the last payload (for art/cit)
export const MARK_SRT_PENDING = 256;   // client data not yet acknowledged by the server
export const MARK_ANY_PAYLOAD = 512;
export const MARK_RTT_DONE = 1024;     // the handshake rtt has been measured (or cannot be)
export const MARK_RST_OPENING = 2048;  // the RST came during the handshake (short linger)
export const MARK_ZWIN_CLIENT = 4096;  // the client's last advertised window was 0
export const MARK_ZWIN_SERVER = 8192;
/** Duplicate ACKs in a row from the client (2 bits, saturating at 3), then from the server. */
export const DUPACK_SHIFT_CLIENT = 14;
export const DUPACK_SHIFT_SERVER = 16;

/** The close type a timeout gives, from the state and the flow's marks and totals. */
export function closeTypeOfTimeout(state: number, marks: number, synTotal: number, synAckTotal: number, rstClose: number): number {
  switch (state) {
    case STATE_RESET:
      return rstClose;
    case STATE_CLOSED:
      return CLOSE_FINISH;
    case STATE_CLOSING:
      return marks & MARK_FIN_CLIENT ? CLOSE_CLIENT_HALF_CLOSE : CLOSE_SERVER_HALF_CLOSE;
    case STATE_SYN_SENT:
      return synTotal > 1 ? CLOSE_CLIENT_SYN_REPEAT : CLOSE_TIMEOUT;
    case STATE_SYN_RECEIVED:
      return synAckTotal > 1 ? CLOSE_SERVER_SYN_ACK_REPEAT : CLOSE_TIMEOUT;
    case STATE_ESTABLISHED:
      return marks & MARK_QUEUE_LACK ? CLOSE_SERVER_QUEUE_LACK : CLOSE_TIMEOUT;
    default:
      return CLOSE_TIMEOUT;
  }
}
