// Which endpoint (address, port, protocol) of a flow is the server, when the flow's SYN was not
// seen. Evidence per endpoint, strongest first: it sent a SYN-ACK; an L7 parser saw the other
// side send it a request; the number of flows it took part in (a server's port is in many flows,
// a client's ephemeral port in one). The flow count is also kept per port alone (address
// 0.0.0.0/::), for a service port shared by many servers, each seen in few flows. Fixed-size open-addressing table in typed arrays: no
// allocation per lookup; when a probe window is full its weakest entry is replaced (counted).

const PROBE = 8;
// Words 0..3: the address.
const W_KEY = 4;             // port | protocol << 16 | USED
// Evidence flags << FLAGS_SHIFT | flows seen with this endpoint (saturating at MAX_FLOWS): read as
// one number it is the entry's strength, flags first, so eviction compares a single word.
const W_EVIDENCE = 5;
const STRIDE = 6;
const USED = 1 << 24;
const FLAGS_SHIFT = 20;
const MAX_FLOWS = (1 << FLAGS_SHIFT) - 1;
const ANY_ADDRESS = new Uint32Array(4);

/** The endpoint sent a SYN-ACK. */
export const SERVER_SYNACK = 1;
/** The endpoint received a payload an L7 parser recognised as a request (or sent a response). */
export const SERVER_L7 = 2;

function endpointSlot(ip: Uint32Array, o: number, key: number): number {
  let h = Math.imul(key ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ ip[o], 0xcc9e2d51) + 0x1b873593;
  h = Math.imul(h ^ ip[o + 1], 0xcc9e2d51) + 0x1b873593;
  h = Math.imul(h ^ ip[o + 2], 0xcc9e2d51) + 0x1b873593;
  h = Math.imul(h ^ ip[o + 3], 0xcc9e2d51);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

export class ServiceTable {
  /** Entries replaced because their probe window was full. */
  evicted = 0;
  private readonly w: Uint32Array;
  private readonly mask: number;

  /** `capacity` is rounded up to a power of two (6 words, 24 bytes each). */
  constructor(capacity = 65536) {
    let size = 16;
    while (size < capacity) size *= 2;
    this.mask = size - 1;
    this.w = new Uint32Array(size * STRIDE);
  }

  /** Records server evidence (SERVER_SYNACK, SERVER_L7) for the endpoint at ip[o..o+3]:port. */
  markServer(ip: Uint32Array, o: number, port: number, protocol: number, evidence: number): void {
    const e = this.entry(ip, o, port, protocol, true);
    this.w[e + W_EVIDENCE] |= evidence << FLAGS_SHIFT;
  }

  /** Counts one more flow for the endpoint, and for its port on any address. */
  countFlow(ip: Uint32Array, o: number, port: number, protocol: number): void {
    const e = this.entry(ip, o, port, protocol, true);
    if ((this.w[e + W_EVIDENCE] & MAX_FLOWS) < MAX_FLOWS) this.w[e + W_EVIDENCE]++;
    const p = this.entry(ANY_ADDRESS, 0, port, protocol, true);
    if ((this.w[p + W_EVIDENCE] & MAX_FLOWS) < MAX_FLOWS) this.w[p + W_EVIDENCE]++;
  }

  /** Flows seen on this port, any address. */
  portFlows(port: number, protocol: number): number {
    const e = this.entry(ANY_ADDRESS, 0, port, protocol, false);
    return e < 0 ? 0 : this.w[e + W_EVIDENCE] & MAX_FLOWS;
  }

  /** The endpoint's server score: SYN-ACK above L7 above the flow count; 0 when unknown. */
  score(ip: Uint32Array, o: number, port: number, protocol: number): number {
    const e = this.entry(ip, o, port, protocol, false);
    if (e < 0) return 0;
    const v = this.w[e + W_EVIDENCE];
    const f = v >>> FLAGS_SHIFT;
    return ((f & SERVER_SYNACK) ? 4 * (MAX_FLOWS + 1) : 0) + ((f & SERVER_L7) ? 2 * (MAX_FLOWS + 1) : 0) + (v & MAX_FLOWS);
  }

  /** The entry's word offset; -1 when absent and `create` is false. */
  private entry(ip: Uint32Array, o: number, port: number, protocol: number, create: boolean): number {
    const w = this.w;
    const key = (port & 0xffff) | ((protocol & 0xff) << 16) | USED;
    const h = endpointSlot(ip, o, key);
    let weakest = -1;
    let weakestScore = Infinity;
    for (let k = 0; k < PROBE; k++) {
      const e = ((h + k) & this.mask) * STRIDE;
      if (w[e + W_KEY] === 0) {
        if (!create) return -1;
        weakest = e; weakestScore = -1;
        break;
      }
      if (w[e + W_KEY] === key && w[e] === ip[o] && w[e + 1] === ip[o + 1] && w[e + 2] === ip[o + 2] && w[e + 3] === ip[o + 3]) return e;
      const s = w[e + W_EVIDENCE];
      if (s < weakestScore) { weakestScore = s; weakest = e; }
    }
    if (!create) return -1;
    if (weakestScore >= 0) this.evicted++;
    w[weakest] = ip[o]; w[weakest + 1] = ip[o + 1]; w[weakest + 2] = ip[o + 2]; w[weakest + 3] = ip[o + 3];
    w[weakest + W_KEY] = key;
    w[weakest + W_EVIDENCE] = 0;
    return weakest;
  }
}

/** Scores this close (within 1/8 of the larger, or 1) say nothing: the port decides. */
export function scoresClose(a: number, b: number): boolean {
  return Math.abs(a - b) <= Math.max(1, Math.max(a, b) >>> 3);
}

/**
 * Port rule when the evidence is even: a port below 32768 (outside Linux's ephemeral range) is
 * the server's; when both are, a port below 1024, else the lower. Returns 1 when `portA` is the
 * server, -1 when `portB` is, 0 when the ports do not say.
 */
export function serverByPort(portA: number, portB: number): number {
  if (portA === portB) return 0;
  const a = portA > 0 && portA < 32768, b = portB > 0 && portB < 32768;
  if (a !== b) return a ? 1 : -1;
  if (!a) return 0;
  const wa = portA < 1024, wb = portB < 1024;
  if (wa !== wb) return wa ? 1 : -1;
  return portA < portB ? 1 : -1;
}
