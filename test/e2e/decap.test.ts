// Tunnels, VLANs and IP fragments through the five real processes: the flows are the inner
// ones, equal to tshark's innermost conversations, and fragmented DNS answers are parsed.
import test from 'ava';
import { replayFile, type ReplayResult } from '../support/replay';
import { conversationKey, corpusFile, tsharkFields, tsharkInnerConversations, tsharkInnerIcmpPackets, type ConversationSide } from '../support/tshark';

const FILES = [
  'tunnels/deepflow/decapsulate_erspan1.pcap',
  'tunnels/deepflow/ip6-vxlan.pcap',
  'tunnels/deepflow/ipip.pcap',
  'tunnels/deepflow/vmware-gre-teb.pcap',
  'tunnels/ndpi/vxlan.pcap',
  'tunnels/zeek/geneve.pcap',
  'tunnels/zeek/gre-sample.pcap',
  'tunnels/zeek/vxlan-encapsulated-http.pcap',
  'vlan/arkime/twovlan.pcap',
  'vlan/zeek/http-qinq-0.pcap',
  'vlan/zeek/http-vlan-0.pcap',
  'ip-fragments/deepflow/ip-fragment.pcap',
  'ip-fragments/ndpi/dns_fragmented.pcap',
  'ip-fragments/suricata-verify/frag-eth-vlan-ipv6-tcp.pcap',
  'ip-fragments/zeek/fragmented-4.pcap',
];

function ourConversations(l4: ReplayResult['l4']): Map<string, ConversationSide> {
  const out = new Map<string, ConversationSide>();
  const add = (key: string, packets: number, bytes: number) => {
    if (packets === 0) return;
    const side = out.get(key) ?? { packets: 0, bytes: 0 };
    side.packets += packets;
    side.bytes += bytes;
    out.set(key, side);
  };
  for (const f of l4) {
    if (f.protocol !== 6 && f.protocol !== 17) continue;
    add(conversationKey(f.protocol, f.ip_0, f.client_port, f.ip_1, f.server_port, f.ip_0, f.client_port), f.packet_tx, f.byte_tx);
    add(conversationKey(f.protocol, f.ip_0, f.client_port, f.ip_1, f.server_port, f.ip_1, f.server_port), f.packet_rx, f.byte_rx);
  }
  return out;
}

const sortedEntries = (m: Map<string, ConversationSide>) => Object.fromEntries([...m].sort());

// Each replay runs five processes: one at a time keeps the machine responsive.
for (const rel of FILES) {
  test.serial(`replay ${rel}: inner flows equal tshark's innermost conversations`, async (t) => {
    const file = corpusFile(rel);
    const r = await replayFile(file);
    t.is(r.code, 0, r.stderr);
    const theirs = tsharkInnerConversations(file);
    t.deepEqual(sortedEntries(ourConversations(r.l4)), sortedEntries(theirs));
    const icmp = r.l4.filter((f) => f.protocol === 1 || f.protocol === 58).reduce((n, f) => n + f.packet_tx + f.packet_rx, 0);
    t.is(icmp, tsharkInnerIcmpPackets(file), 'innermost ICMP packets');
    t.true(theirs.size > 0 || icmp > 0, 'the file has inner flows');
    if (rel.startsWith('tunnels/')) {
      t.true(r.l4.some((f) => f.tunnel_type !== 0), 'flows carry their tunnel type');
    }
  });
}

test.serial('tunnel type and id are part of the flow and of the log', async (t) => {
  const r = await replayFile(corpusFile('tunnels/zeek/vxlan-encapsulated-http.pcap'));
  t.is(r.code, 0, r.stderr);
  const vnis = tsharkFields(corpusFile('tunnels/zeek/vxlan-encapsulated-http.pcap'), ['vxlan.vni'], { filter: 'vxlan' }).map(([v]) => Number(v));
  const http = r.l4.filter((f) => f.server_port === 80);
  t.is(http.length, 1);
  t.is(http[0].tunnel_type, 1, 'VXLAN');
  t.is(http[0].tunnel_id, vnis[0]);
});

test.serial('fragmented DNS answers are reassembled and parsed', async (t) => {
  const file = corpusFile('ip-fragments/ndpi/dns_fragmented.pcap');
  const r = await replayFile(file);
  t.is(r.code, 0, r.stderr);
  // Answers tshark could only read after reassembly: their frames list the fragments.
  const reassembled = tsharkFields(file, ['dns.id', 'dns.flags.rcode', 'dns.qry.name'], { filter: 'dns.flags.response == 1 && (ip.fragment || ipv6.fragment)' });
  t.true(reassembled.length > 0, 'the file has fragmented DNS answers');
  const answered = new Set(r.l7.filter((l) => l.l7_protocol === 'DNS' && l.response_code !== null).map((l) => `${l.request_domain} ${l.response_code}`));
  for (const [, rcode, name] of reassembled) t.true(answered.has(`${name} ${rcode}`), `answer for ${name} (rcode ${rcode})`);
});
