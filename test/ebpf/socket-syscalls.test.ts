// The other syscall families on real sockets (python3): sendmsg/recvmsg with several iovecs and
// writev/readv over TCP, sendto/recvfrom over unconnected UDP (peer taken from the sockaddr).
// tcpdump is the oracle for the bytes and the UDP peers.
import test from 'ava';
import { ebpfStatus } from '../../native/ebpf';
import { tsharkFields } from '../support/tshark';
import { collectRows, freePort, tracePython, Row } from './helpers';

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;

const SCRIPT = `
import os, socket, sys
tcp_port, udp_port = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', tcp_port)); srv.listen(1)
cli = socket.create_connection(('127.0.0.1', tcp_port))
conn, _ = srv.accept()
cli.sendmsg([b'PING-', b'sendmsg-', b'three'])
data, _, _, _ = conn.recvmsg(100)
assert data == b'PING-sendmsg-three', data
os.writev(conn.fileno(), [b'PONG-', b'writev'])
a, b = bytearray(5), bytearray(6)
got = os.readv(cli.fileno(), [a, b])
assert bytes(a + b) == b'PONG-writev', (got, a, b)
u_srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u_srv.bind(('127.0.0.1', udp_port))
u_cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u_cli.sendto(b'QUERY-udp', ('127.0.0.1', udp_port))
q, peer = u_srv.recvfrom(100)
u_srv.sendto(b'ANSWER-udp', peer)
r, _ = u_cli.recvfrom(100)
print(peer[1])
for s in (cli, conn, srv, u_cli, u_srv): s.close()
`;

// Sends and receives are reported from the sock/ tracepoints where the kernel has them (this
// one does), else from the syscall exits: both paths, the latter on both syscall hooks.
const VARIANTS: { name: string; config: { sockHooks?: boolean; syscallHook?: 'raw' | 'tracepoints' }; dataHook: string }[] = [
  { name: 'sock/ tracepoints', config: {}, dataHook: 'sock' },
  { name: 'syscall exits', config: { sockHooks: false }, dataHook: 'syscall-exit' },
  ...(process.arch === 'x64' ? [{ name: 'raw_syscalls exit', config: { sockHooks: false, syscallHook: 'raw' as const }, dataHook: 'syscall-exit' }] : []),
];

for (const variant of VARIANTS) maybe(`sendmsg/recvmsg, writev/readv and unconnected UDP sendto/recvfrom are traced with their bytes and peers (data from ${variant.name})`, async (t) => {
  const tcpPort = await freePort();
  const udpPort = await freePort();
  // processNames: the user-space name filter keeps only python3's records.
  const { collector, rows } = collectRows({ capBytes: 256, processNames: ['python3'], ...variant.config }, (r: Row) => [tcpPort, udpPort].includes(r.localPort) || [tcpPort, udpPort].includes(r.remotePort));
  t.true(collector.statusMessage.includes(variant.dataHook === 'sock' ? 'data from sock/ tracepoints' : 'data at syscall exits'), collector.statusMessage);
  try {
    const { py, pcap, lost: lostWhileTracing } = await tracePython(collector, `port ${tcpPort} or port ${udpPort}`, SCRIPT, [String(tcpPort), String(udpPort)]);
    t.is(py.code, 0, py.stderr);
    t.true(rows.length > 0 && rows.every((r) => r.comm === 'python3'), 'only python3 rows pass the name filter');
    const mine = rows.filter((r) => r.pid === py.pid && r.kind === 1);
    const find = (syscall: string) => mine.find((r) => r.syscall === syscall);

    // TCP payloads as the wire carried them.
    const tcp = tsharkFields(pcap, ['tcp.srcport', 'tcp.payload'], { filter: 'tcp.len > 0' });
    const fromClient = tcp.find((p) => Number(p[0]) !== tcpPort)!;
    const fromServer = tcp.find((p) => Number(p[0]) === tcpPort)!;
    const sendmsg = find('sendmsg')!;
    t.truthy(sendmsg);
    t.deepEqual(sendmsg.payload, Buffer.from(fromClient[1], 'hex'), 'sendmsg: three iovecs joined');
    t.is(sendmsg.localPort, Number(fromClient[0]));
    t.deepEqual(find('recvmsg')?.payload, Buffer.from(fromClient[1], 'hex'));
    t.deepEqual(find('writev')?.payload, Buffer.from(fromServer[1], 'hex'));
    t.deepEqual(find('readv')?.payload, Buffer.from(fromServer[1], 'hex'), 'readv: two iovecs joined');
    t.is(find('recvmsg')!.traceId, find('writev')!.traceId, 'the server thread\'s response carries the request\'s id');

    // UDP: the peers come from the syscall's sockaddr; tshark shows the client's port.
    const udp = tsharkFields(pcap, ['udp.srcport', 'udp.dstport', 'udp.payload'], { filter: 'udp' });
    t.is(udp.length, 2);
    const clientPort = Number(udp.find((p) => Number(p[1]) === udpPort)![0]);
    t.is(Number(py.stdout.trim()), clientPort);
    const sendto = mine.filter((r) => r.syscall === 'sendto' && r.protocol === 17);
    const recvfrom = mine.filter((r) => r.syscall === 'recvfrom' && r.protocol === 17);
    const q = sendto.find((r) => r.payload.toString() === 'QUERY-udp')!;
    t.truthy(q);
    t.is(q.localPort, clientPort);
    t.is(q.remotePort, udpPort, 'sendto: peer from the destination sockaddr');
    t.is(q.remote, '127.0.0.1');
    const srvIn = recvfrom.find((r) => r.payload.toString() === 'QUERY-udp')!;
    t.is(srvIn.localPort, udpPort);
    t.is(srvIn.remotePort, clientPort, 'recvfrom: peer from the source sockaddr');
    const ans = recvfrom.find((r) => r.payload.toString() === 'ANSWER-udp')!;
    t.is(ans.remotePort, udpPort);
    t.deepEqual(ans.payload, Buffer.from(udp.find((p) => Number(p[0]) === udpPort)![2], 'hex'));
    t.is(lostWhileTracing, 0, 'no event lost while tracing');
  } finally {
    collector.close();
  }
});

// dup2 over a socket's fd closes that socket without a close() the tracer sees, so its
// socket_info entry outlives it. A send on the reused fd must report the new socket, not the
// cached tuple of the old one (with the sock/ tracepoints the entry's socket is compared with the
// one the send went through; the syscall-exit path of older kernels keeps the stale tuple).
const DUP2_SCRIPT = `
import os, socket, sys
p1, p2 = int(sys.argv[1]), int(sys.argv[2])
l1 = socket.socket(); l1.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l1.bind(('127.0.0.1', p1)); l1.listen(1)
l2 = socket.socket(); l2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l2.bind(('127.0.0.1', p2)); l2.listen(1)
a = socket.create_connection(('127.0.0.1', p1)); ca, _ = l1.accept()
a.sendall(b'first-on-a')
assert ca.recv(100) == b'first-on-a'
b = socket.create_connection(('127.0.0.1', p2)); cb, _ = l2.accept()
os.dup2(b.fileno(), a.fileno())
os.write(a.fileno(), b'second-via-dup2')
assert cb.recv(100) == b'second-via-dup2'
print(a.fileno(), b.getsockname()[1])
`;

maybe('a send on an fd that dup2 pointed at another socket reports the new socket', async (t) => {
  const p1 = await freePort();
  const p2 = await freePort();
  const { collector, rows } = collectRows({ capBytes: 256 }, (r: Row) => [p1, p2].includes(r.localPort) || [p1, p2].includes(r.remotePort));
  try {
    const { py, pcap, lost } = await tracePython(collector, `port ${p1} or port ${p2}`, DUP2_SCRIPT, [String(p1), String(p2)]);
    t.is(py.code, 0, py.stderr);
    const [fd, bPort] = py.stdout.trim().split(' ').map(Number);
    // The oracle: the connection tcpdump saw carry the bytes.
    const wire = tsharkFields(pcap, ['tcp.srcport', 'tcp.dstport', 'tcp.payload'], { filter: 'tcp.len > 0' })
      .find((p) => Buffer.from(p[2], 'hex').toString() === 'second-via-dup2')!;
    t.truthy(wire);
    t.is(Number(wire[0]), bPort);
    t.is(Number(wire[1]), p2);
    const first = rows.find((r) => r.pid === py.pid && r.payload.toString() === 'first-on-a')!;
    const second = rows.find((r) => r.pid === py.pid && r.payload.toString() === 'second-via-dup2')!;
    t.truthy(first);
    t.truthy(second);
    t.is(second.fd, fd);
    t.is(first.fd, fd);
    t.is(second.localPort, bPort, 'the local port of the socket the bytes left by');
    t.is(second.remotePort, p2, 'the peer the wire shows');
    t.not(second.socketId, first.socketId, 'another socket, another socket_id');
    t.is(lost, 0);
  } finally {
    collector.close();
  }
});
