#include "bpf_filter.h"

#include <pcap/pcap.h>

namespace flowtap {

// libpcap is the reference compiler for tcpdump's filter syntax and Debian ships it
// (libpcap-dev), so the expressions users already know from tcpdump mean exactly the same
// here. pcap_open_dead gives a compiler context for Ethernet without opening a device;
// SOCK_RAW packet sockets present frames from the MAC header, which is what DLT_EN10MB
// code expects. Caveat: without a live Linux handle libpcap cannot use the kernel's VLAN
// ancillary loads, and the kernel strips the outer 802.1Q tag before the filter runs, so
// `vlan` primitives test the in-frame ethertype only (they match inner/QinQ tags, not the
// stripped outer one).
std::string CompileFilter(const std::string& expression, int snapLen, std::vector<sock_filter>& program) {
  pcap_t* dead = pcap_open_dead(DLT_EN10MB, snapLen);
  if (dead == nullptr) return "pcap_open_dead failed";
  bpf_program compiled{};
  std::string error;
  if (pcap_compile(dead, &compiled, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    error = pcap_geterr(dead);
    if (error.empty()) error = "invalid filter expression";
  } else {
    // bpf_insn and sock_filter share one layout (code, jt, jf, k); copy field by field anyway.
    program.resize(compiled.bf_len);
    for (u_int i = 0; i < compiled.bf_len; i++) {
      program[i].code = compiled.bf_insns[i].code;
      program[i].jt = compiled.bf_insns[i].jt;
      program[i].jf = compiled.bf_insns[i].jf;
      program[i].k = compiled.bf_insns[i].k;
    }
    pcap_freecode(&compiled);
  }
  pcap_close(dead);
  return error;
}

}  // namespace flowtap
