// An AF_PACKET socket with a TPACKET_V3 receive ring, bound to one interface. Plain C++:
// no Node-API here, so the socket logic reads on its own; af_packet_socket.cc binds it to JS.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace flowtap {

struct RingOptions {
  std::string iface;
  uint32_t blockSize = 1u << 20;  // bytes; a multiple of the page size
  uint32_t blockCount = 64;
  uint32_t frameSize = 2048;      // TPACKET_V3 packs packets by size; kept for the kernel's geometry check
  uint32_t blockTimeoutMs = 100;  // a partly filled block is retired to user space after this long
  uint32_t snapLen = 262144;
  bool promisc = false;
  std::string filter;             // tcpdump syntax; empty = everything
  int32_t fanoutGroup = -1;       // -1 = no fanout
  bool fanoutDefrag = true;       // PACKET_FANOUT_FLAG_DEFRAG: members get reassembled IPv4 datagrams
};

// What went wrong, with the errno name so JS can branch on `err.code`.
class RingError : public std::runtime_error {
 public:
  RingError(const std::string& message, const char* code, int errnum)
      : std::runtime_error(message), code(code), errnum(errnum) {}
  const char* code;
  int errnum;
};

// Running totals: the kernel zeroes PACKET_STATISTICS on every read.
struct RingStats {
  uint64_t packets = 0;  // passed the filter (the kernel counts the dropped ones in too)
  uint64_t drops = 0;    // no room in the ring
  uint64_t freezes = 0;  // times the queue froze because the next block was still owned by user space
};

// Per-packet index entry: 8 u32 words, see the `INDEX_*` names.
constexpr uint32_t kIndexWords = 8;
enum IndexWord : uint32_t {
  kIndexOffset = 0,   // offset of the MAC header inside the block
  kIndexCaplen = 1,   // bytes present (tp_snaplen)
  kIndexOrigLen = 2,  // length on the wire (tp_len)
  kIndexTsSec = 3,
  kIndexTsNsec = 4,
  kIndexIfindex = 5,
  kIndexVlan = 6,     // low 16 bits: TCI the kernel stripped from the frame; high 16 bits: its TPID
  kIndexFlags = 7,    // see kFlag*
};
constexpr uint32_t kFlagVlanValid = 1u << 0;      // TP_STATUS_VLAN_VALID: kIndexVlan low half is meaningful
constexpr uint32_t kFlagVlanTpidValid = 1u << 1;  // TP_STATUS_VLAN_TPID_VALID: high half is meaningful
constexpr uint32_t kFlagChecksumNotReady = 1u << 2;  // TP_STATUS_CSUMNOTREADY (outgoing, offloaded)
constexpr uint32_t kFlagTruncated = 1u << 3;      // caplen < origlen
constexpr uint32_t kFlagPktTypeShift = 8;         // bits 8..15: sll_pkttype (0 host, 1 broadcast, 2 multicast, 3 other host, 4 outgoing)

class PacketRing {
 public:
  PacketRing() = default;
  PacketRing(const PacketRing&) = delete;
  PacketRing& operator=(const PacketRing&) = delete;
  ~PacketRing() { Close(); }

  void Open(const RingOptions& options);  // throws RingError; leaves nothing open on failure
  void Close();                           // idempotent

  bool IsOpen() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  int ifindex() const { return ifindex_; }
  uint32_t blockSize() const { return blockSize_; }
  uint32_t blockCount() const { return blockCount_; }
  uint8_t* Block(uint32_t block) const { return ring_ + static_cast<size_t>(block) * blockSize_; }

  // True when the kernel has retired the block to user space.
  bool BlockReady(uint32_t block) const;
  uint32_t PacketCount(uint32_t block) const;
  // Writes kIndexWords per packet (up to `capacity` packets); returns how many were written.
  // Entries that point outside the block are skipped and counted in `malformed`.
  uint32_t IndexBlock(uint32_t block, uint32_t* index, uint32_t capacity, uint32_t& malformed) const;
  // Hands the block back to the kernel.
  void ReleaseBlock(uint32_t block);

  // Reads and accumulates the kernel counters.
  const RingStats& ReadStats();
  // SO_ERROR: the pending socket error (e.g. ENETDOWN), cleared by reading it.
  int TakeSocketError();

 private:
  int fd_ = -1;
  int ifindex_ = 0;
  uint8_t* ring_ = nullptr;
  size_t ringBytes_ = 0;
  uint32_t blockSize_ = 0;
  uint32_t blockCount_ = 0;
  RingStats stats_;
};

}  // namespace flowtap
