// Compiles a tcpdump-style filter expression to classic BPF for an AF_PACKET socket.
#pragma once
#include <linux/filter.h>
#include <string>
#include <vector>

namespace flowtap {

// Returns an empty string on success (program filled), else libpcap's error message.
// An empty expression compiles to "accept, truncated to snapLen", which is how the
// snap length is enforced on a TPACKET_V3 ring (the ring itself has no snap length).
std::string CompileFilter(const std::string& expression, int snapLen, std::vector<sock_filter>& program);

}  // namespace flowtap
