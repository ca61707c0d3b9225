#include "packet_ring.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "bpf_filter.h"

namespace flowtap {

namespace {

const char* ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case EINVAL: return "EINVAL";
    case ENOMEM: return "ENOMEM";
    case ENETDOWN: return "ENETDOWN";
    case EBUSY: return "EBUSY";
    case EADDRINUSE: return "EADDRINUSE";
    case EALREADY: return "EALREADY";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    default: return "EUNKNOWN";
  }
}

[[noreturn]] void Fail(const std::string& what, int err) {
  throw RingError(what + ": " + strerror(err), ErrnoName(err), err);
}

}  // namespace

void PacketRing::Open(const RingOptions& o) {
  Close();
  if (o.iface.empty() || o.iface.size() >= IFNAMSIZ) {
    throw RingError("interface '" + o.iface + "' does not exist", "ENODEV", ENODEV);
  }
  unsigned int ifindex = if_nametoindex(o.iface.c_str());
  if (ifindex == 0) throw RingError("interface '" + o.iface + "' does not exist", "ENODEV", ENODEV);
  if (o.snapLen < 64 || o.snapLen > 262144) {
    throw RingError("snapLen must be between 64 and 262144", "EINVAL", EINVAL);
  }
  long page = sysconf(_SC_PAGESIZE);
  if (o.blockSize == 0 || o.blockSize % page != 0) {
    throw RingError("blockSize must be a positive multiple of the page size (" + std::to_string(page) + ")",
                    "EINVAL", EINVAL);
  }
  if (o.frameSize < TPACKET3_HDRLEN || o.frameSize % TPACKET_ALIGNMENT != 0 || o.frameSize > o.blockSize) {
    throw RingError("frameSize must be a multiple of 16, at least " + std::to_string(TPACKET3_HDRLEN) +
                    " and at most blockSize", "EINVAL", EINVAL);
  }
  if (o.blockCount == 0 || static_cast<uint64_t>(o.blockCount) * o.blockSize > (1ull << 34)) {
    throw RingError("blockCount must be positive and the ring at most 16 GiB", "EINVAL", EINVAL);
  }
  if (o.fanoutGroup > 0xffff) throw RingError("fanoutGroup must be 0..65535", "EINVAL", EINVAL);

  // Compile before opening anything, so a typo gets libpcap's message even without privileges.
  std::vector<sock_filter> program;
  std::string filterError = CompileFilter(o.filter, static_cast<int>(o.snapLen), program);
  if (!filterError.empty()) {
    throw RingError("bad filter '" + o.filter + "': " + filterError, "EINVAL", EINVAL);
  }

  // Protocol 0: the socket receives nothing until bind() names ETH_P_ALL, so no packet slips
  // in before the filter and the ring are in place.
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    int err = errno;
    if (err == EPERM || err == EACCES) {
      Fail("opening an AF_PACKET socket needs CAP_NET_RAW (run as root or grant the capability)", err);
    }
    Fail("socket(AF_PACKET)", err);
  }
  fd_ = fd;
  ifindex_ = static_cast<int>(ifindex);
  try {
    sock_fprog fprog{};
    fprog.len = static_cast<unsigned short>(program.size());
    fprog.filter = program.data();
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) != 0) Fail("SO_ATTACH_FILTER", errno);

    int version = TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) Fail("PACKET_VERSION V3", errno);

    tpacket_req3 req{};
    req.tp_block_size = o.blockSize;
    req.tp_block_nr = o.blockCount;
    req.tp_frame_size = o.frameSize;
    req.tp_frame_nr = (o.blockSize / o.frameSize) * o.blockCount;
    req.tp_retire_blk_tov = o.blockTimeoutMs;
    req.tp_sizeof_priv = 0;
    req.tp_feature_req_word = 0;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0) {
      int err = errno;
      Fail("PACKET_RX_RING (" + std::to_string(o.blockCount) + " blocks of " + std::to_string(o.blockSize) +
           " bytes)", err);
    }
    ringBytes_ = static_cast<size_t>(o.blockSize) * o.blockCount;
    void* ring = mmap(nullptr, ringBytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ring == MAP_FAILED) {
      ringBytes_ = 0;
      Fail("mmap of the packet ring", errno);
    }
    ring_ = static_cast<uint8_t*>(ring);
    blockSize_ = o.blockSize;
    blockCount_ = o.blockCount;

    sockaddr_ll addr{};
    addr.sll_family = AF_PACKET;
    addr.sll_protocol = htons(ETH_P_ALL);
    addr.sll_ifindex = ifindex_;
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      int err = errno;
      if (err == ENODEV || err == ENXIO) {
        throw RingError("interface '" + o.iface + "' does not exist", "ENODEV", err);
      }
      Fail("bind to interface '" + o.iface + "'", err);
    }

    if (o.promisc) {
      packet_mreq mreq{};
      mreq.mr_ifindex = ifindex_;
      mreq.mr_type = PACKET_MR_PROMISC;
      // The membership (and the promiscuous count on the device) goes away with the socket.
      if (setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq) != 0) {
        Fail("PACKET_ADD_MEMBERSHIP promiscuous on '" + o.iface + "'", errno);
      }
    }

    if (o.fanoutGroup >= 0) {
      // Hash mode keeps both directions of a flow on one socket (the kernel's flow hash is
      // symmetric). Non-first fragments carry no ports, so they would hash elsewhere than the
      // first one: DEFRAG has the kernel reassemble IPv4 datagrams before hashing, and the
      // members then receive the reassembled datagram (one frame, longer than the MTU)
      // instead of its fragments.
      uint32_t mode = PACKET_FANOUT_HASH | (o.fanoutDefrag ? PACKET_FANOUT_FLAG_DEFRAG : 0);
      uint32_t fanout = static_cast<uint32_t>(o.fanoutGroup) | mode << 16;
      if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof fanout) != 0) {
        int err = errno;
        if (err == EINVAL || err == EALREADY) {
          Fail("PACKET_FANOUT group " + std::to_string(o.fanoutGroup) +
               " (the group exists with another mode, or on another interface/protocol)", err);
        }
        Fail("PACKET_FANOUT group " + std::to_string(o.fanoutGroup), err);
      }
    }
  } catch (...) {
    Close();
    throw;
  }
}

void PacketRing::Close() {
  if (ring_ != nullptr) {
    munmap(ring_, ringBytes_);
    ring_ = nullptr;
    ringBytes_ = 0;
  }
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

bool PacketRing::BlockReady(uint32_t block) const {
  auto* desc = reinterpret_cast<tpacket_block_desc*>(Block(block));
  // Acquire: the packets the kernel wrote must be visible once we see the status flip.
  return (__atomic_load_n(&desc->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) != 0;
}

uint32_t PacketRing::PacketCount(uint32_t block) const {
  return reinterpret_cast<tpacket_block_desc*>(Block(block))->hdr.bh1.num_pkts;
}

uint32_t PacketRing::IndexBlock(uint32_t block, uint32_t* index, uint32_t capacity, uint32_t& malformed) const {
  const uint8_t* base = Block(block);
  const auto* desc = reinterpret_cast<const tpacket_block_desc*>(base);
  const uint32_t total = desc->hdr.bh1.num_pkts;
  uint32_t offset = desc->hdr.bh1.offset_to_first_pkt;
  uint32_t written = 0;
  constexpr uint32_t kSllOffset = TPACKET_ALIGN(sizeof(tpacket3_hdr));
  for (uint32_t i = 0; i < total && written < capacity; i++) {
    if (offset == 0 || static_cast<uint64_t>(offset) + TPACKET3_HDRLEN > blockSize_) {
      malformed += total - i;
      break;
    }
    const auto* hdr = reinterpret_cast<const tpacket3_hdr*>(base + offset);
    const auto* sll = reinterpret_cast<const sockaddr_ll*>(base + offset + kSllOffset);
    const uint64_t macStart = static_cast<uint64_t>(offset) + hdr->tp_mac;
    if (macStart + hdr->tp_snaplen > blockSize_) {
      malformed++;
    } else {
      uint32_t* e = index + static_cast<size_t>(written) * kIndexWords;
      e[kIndexOffset] = static_cast<uint32_t>(macStart);
      e[kIndexCaplen] = hdr->tp_snaplen;
      e[kIndexOrigLen] = hdr->tp_len;
      e[kIndexTsSec] = hdr->tp_sec;
      e[kIndexTsNsec] = hdr->tp_nsec;
      e[kIndexIfindex] = static_cast<uint32_t>(sll->sll_ifindex);
      uint32_t flags = static_cast<uint32_t>(sll->sll_pkttype) << kFlagPktTypeShift;
      uint32_t vlan = 0;
      if (hdr->tp_status & TP_STATUS_VLAN_VALID) {
        flags |= kFlagVlanValid;
        vlan = hdr->hv1.tp_vlan_tci;
      }
      if (hdr->tp_status & TP_STATUS_VLAN_TPID_VALID) {
        flags |= kFlagVlanTpidValid;
        vlan |= static_cast<uint32_t>(hdr->hv1.tp_vlan_tpid) << 16;
      }
      if (hdr->tp_status & TP_STATUS_CSUMNOTREADY) flags |= kFlagChecksumNotReady;
      if (hdr->tp_snaplen < hdr->tp_len) flags |= kFlagTruncated;
      e[kIndexVlan] = vlan;
      e[kIndexFlags] = flags;
      written++;
    }
    if (hdr->tp_next_offset == 0) {
      if (i + 1 < total) malformed += total - i - 1;
      break;
    }
    offset += hdr->tp_next_offset;
  }
  return written;
}

void PacketRing::ReleaseBlock(uint32_t block) {
  auto* desc = reinterpret_cast<tpacket_block_desc*>(Block(block));
  // Release: our reads of the block are done before the kernel may overwrite it.
  __atomic_store_n(&desc->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
}

const RingStats& PacketRing::ReadStats() {
  if (fd_ < 0) return stats_;
  tpacket_stats_v3 st{};
  socklen_t len = sizeof st;
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0) {
    stats_.packets += st.tp_packets;
    stats_.drops += st.tp_drops;
    stats_.freezes += st.tp_freeze_q_cnt;
  }
  return stats_;
}

int PacketRing::TakeSocketError() {
  if (fd_ < 0) return 0;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

}  // namespace flowtap
