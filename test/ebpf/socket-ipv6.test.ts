// IPv6 sockets and v4-mapped ones: the tracer reads the addresses and ports from the kernel socket
// (fill_tuple), which takes a different path for AF_INET6. A python3 TCP exchange over ::1, then
// an IPv4 client of a dual-stack server (its accepted socket is AF_INET6 with v4-mapped
// addresses, reported like an IPv4 one, as the packet path does). tcpdump is the oracle.
import test from 'ava';
import { ebpfStatus } from '../../native/ebpf';
import { tsharkFields } from '../support/tshark';
import { collectRows, freePort, tracePython, Row } from './helpers';

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;
const EGRESS = 0, INGRESS = 1; // SOCK_DIR_* (bpf/socket_trace.h)

const SCRIPT = `
import socket, sys
v6_port, dual_port = int(sys.argv[1]), int(sys.argv[2])
def exchange(cli, conn, tag):
    cli.sendall(b'PING-' + tag)
    assert conn.recv(100) == b'PING-' + tag
    conn.sendall(b'PONG-' + tag)
    assert cli.recv(100) == b'PONG-' + tag
srv = socket.socket(socket.AF_INET6); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('::1', v6_port)); srv.listen(1)
cli = socket.create_connection(('::1', v6_port)); conn, _ = srv.accept()
exchange(cli, conn, b'v6')
dual = socket.socket(socket.AF_INET6); dual.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
dual.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
dual.bind(('::', dual_port)); dual.listen(1)
cli4 = socket.create_connection(('127.0.0.1', dual_port)); conn4, _ = dual.accept()
exchange(cli4, conn4, b'mapped')
for s in (cli, conn, srv, cli4, conn4, dual): s.close()
`;

/** The tracer's text form of an IPv6 address (eight uncompressed hex groups) from tshark's. */
function expandV6(addr: string): string {
  const [head, tail] = addr.includes('::') ? addr.split('::') : [addr, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((g) => parseInt(g, 16).toString(16)).join(':');
}

maybe('IPv6 and v4-mapped sockets are reported with the addresses and ports on the wire', async (t) => {
  const v6Port = await freePort();
  const dualPort = await freePort();
  const ports = [v6Port, dualPort];
  const { collector, rows } = collectRows({ capBytes: 64, processNames: ['python3'] },
    (r: Row) => ports.includes(r.localPort) || ports.includes(r.remotePort));
  try {
    const { py, pcap, lost: lostWhileTracing } = await tracePython(collector, `port ${v6Port} or port ${dualPort}`, SCRIPT, [String(v6Port), String(dualPort)]);
    t.is(py.code, 0, py.stderr);

    // Each payload as the wire carried it: [ip src, ip dst, src port, dst port].
    const wire = new Map<string, string[]>();
    for (const [src6, dst6, src4, dst4, sport, dport, payload] of tsharkFields(pcap,
      ['ipv6.src', 'ipv6.dst', 'ip.src', 'ip.dst', 'tcp.srcport', 'tcp.dstport', 'tcp.payload'], { filter: 'tcp.len > 0' })) {
      wire.set(Buffer.from(payload, 'hex').toString(), src6 ? [expandV6(src6), expandV6(dst6), sport, dport] : [src4, dst4, sport, dport]);
    }
    t.is(wire.size, 4, `tcpdump saw the four payloads: ${[...wire.keys()].join(', ')}`);
    t.is(wire.get('PING-v6')?.[0], expandV6('::1'), 'the v6 exchange went over IPv6');
    t.is(wire.get('PING-mapped')?.[0], '127.0.0.1', 'the dual-stack exchange went over IPv4');

    const mine = rows.filter((r) => r.pid === py.pid && r.kind === 1);
    for (const [text, [src, dst, sport, dport]] of wire) {
      const sent = mine.find((r) => r.direction === EGRESS && r.payload.toString() === text);
      const received = mine.find((r) => r.direction === INGRESS && r.payload.toString() === text);
      t.truthy(sent && received, `${text}: sent and received rows`);
      if (!sent || !received) continue;
      t.deepEqual([sent.local, sent.remote, sent.localPort, sent.remotePort], [src, dst, Number(sport), Number(dport)], `${text}: sender's tuple`);
      t.deepEqual([received.local, received.remote, received.localPort, received.remotePort], [dst, src, Number(dport), Number(sport)], `${text}: receiver's tuple`);
    }
    // The accepted sockets: their tuple is read once, at accept, from the same kernel fields.
    for (const [port, text] of [[v6Port, 'PING-v6'], [dualPort, 'PING-mapped']] as const) {
      const accept = rows.find((r) => r.pid === py.pid && r.kind === 3 && r.localPort === port);
      const [src, , sport] = wire.get(text) ?? [];
      t.deepEqual([accept?.remote, accept?.remotePort], [src, Number(sport)], `accept on ${port}: the client's address and port`);
    }
    t.is(lostWhileTracing, 0, 'no event lost while tracing');
  } finally {
    collector.close();
  }
});
