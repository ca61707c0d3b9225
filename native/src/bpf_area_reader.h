// Reader of the socket tracer's per-CPU record areas (one BPF array map, BPF_F_MMAPABLE, with an
// element per possible CPU, mapped into this process), merged with its TLS ring buffer. Each
// element is a control block (the programs' head, the reader's tail), the area and a slack where
// a record that starts near the area's end runs on, so every record is contiguous. Layout:
// struct area_ctl in bpf/socket_trace.h, mirrored here.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bpf_ring_reader.h"

namespace flowtap {

// struct sock_event (bpf/socket_trace.h): 104 bytes, ts_ns at 0, cap_len at 40; a record is one
// and its captured bytes, at most SOCK_TRACE_MAX_CAP.
constexpr size_t kEventHeader = 104;
constexpr uint32_t kMaxCap = 8192;

class BpfAreaReader {
 public:
  // Offsets in struct area_ctl (bpf/socket_trace.h): the programs' head, the reader's tail and pass.
  static constexpr size_t kCtlBytes = 128;
  static constexpr size_t kHeadOffset = 0;
  static constexpr size_t kTailOffset = 64;
  static constexpr size_t kPassOffset = 72;
  static constexpr size_t kSlackBytes = 20480 - kCtlBytes;  // AREA_SLACK
  // Element size for an area of `areaBytes` (a power of two): what the loader gives the map.
  static constexpr size_t ElementBytes(size_t areaBytes) { return kCtlBytes + areaBytes + kSlackBytes; }

  BpfAreaReader() = default;
  BpfAreaReader(const BpfAreaReader&) = delete;
  BpfAreaReader& operator=(const BpfAreaReader&) = delete;
  ~BpfAreaReader() { Close(); }

  // Maps the `cpus` elements of map `fd` (areas of `areaBytes`). Returns 0 or an errno.
  int Open(int fd, uint32_t cpus, size_t areaBytes);
  void Close();
  bool open() const { return base_ != nullptr; }
  // Records found malformed (a length past the largest record): the rest of that CPU's records
  // up to its head were skipped with it.
  uint64_t corrupt() const { return corrupt_; }

  // Hands records to onRecord(const uint8_t* record, uint32_t size) in the order of their
  // timestamps, merging the CPUs' areas and `ring` (the TLS probes' records; its 8-byte wakeup
  // records are skipped), until all are empty up to `watermarkNs` or onRecord returns false
  // (that record stays for the next pass). Returns false in that case.
  //
  // Why by timestamp: a thread that moves between CPUs leaves its records in several areas, and
  // taking one area after another would deliver its later records first. A record's timestamp
  // (a send's syscall entry, a receive's exit) is never later than its commit, and a thread's next
  // record starts after that commit, so the merge keeps every thread's records in program order,
  // provided each pass stops at a watermark read before the heads: a record committed after the
  // heads were read may be older than records that are already visible, but never older than the
  // watermark (CLOCK_MONOTONIC, as bpf_ktime_get_ns).
  template <typename F>
  bool Consume(uint64_t watermarkNs, BpfRingReader& ring, F&& onRecord) {
    if (base_ == nullptr) return true;
    heap_.clear();
    for (uint32_t cpu = 0; cpu < cpus_; cpu++) {
      uint8_t* element = Element(cpu);
      tails_[cpu] = __atomic_load_n(reinterpret_cast<uint64_t*>(element + kTailOffset), __ATOMIC_RELAXED);  // only this reader writes it
      heads_[cpu] = __atomic_load_n(reinterpret_cast<uint64_t*>(element + kHeadOffset), __ATOMIC_ACQUIRE);
      Queue(cpu, watermarkNs);
    }
    QueueRing(ring, watermarkNs);
    bool complete = true;
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end(), Later);
      uint32_t stream = heap_.back().stream;
      heap_.pop_back();
      if (stream == kRing) {
        uint32_t size = 0;
        const uint8_t* record = ring.Peek(&size);  // the one QueueRing saw
        if (!onRecord(record, size)) {
          complete = false;
          break;
        }
        ring.Take(size);
        QueueRing(ring, watermarkNs);
        continue;
      }
      const uint8_t* record = Record(stream);
      uint32_t size = RecordBytes(record);  // checked by Queue
      if (!onRecord(record, size)) {
        complete = false;
        break;
      }
      tails_[stream] += (size + 7) & ~uint64_t(7);
      Queue(stream, watermarkNs);
    }
    ring.Publish();
    for (uint32_t cpu = 0; cpu < cpus_; cpu++) {
      uint8_t* element = Element(cpu);
      __atomic_store_n(reinterpret_cast<uint64_t*>(element + kTailOffset), tails_[cpu], __ATOMIC_RELEASE);
      uint64_t* pass = reinterpret_cast<uint64_t*>(element + kPassOffset);
      __atomic_store_n(pass, *pass + 1, __ATOMIC_RELAXED);
    }
    return complete;
  }

 private:
  static constexpr size_t kCapLenOffset = 40;
  static constexpr uint64_t kFutureNs = 1000000000;
  static constexpr uint32_t kRing = UINT32_MAX;  // the ring's place in the merge
  static constexpr uint32_t kWakeupBytes = 8;

  // A stream's next record in the merge: a CPU's area (0 .. cpus - 1) or the ring (kRing).
  struct Next {
    uint64_t ts;
    uint32_t stream;
  };
  static bool Later(const Next& a, const Next& b) { return a.ts > b.ts || (a.ts == b.ts && a.stream > b.stream); }

  uint8_t* Element(uint32_t cpu) const { return base_ + static_cast<size_t>(cpu) * elementBytes_; }
  const uint8_t* Record(uint32_t cpu) const { return Element(cpu) + kCtlBytes + (tails_[cpu] & mask_); }

  // A record's size in its area (header and captured bytes), 0 if malformed.
  static uint32_t RecordBytes(const uint8_t* record) {
    uint32_t capLen;
    memcpy(&capLen, record + kCapLenOffset, sizeof(capLen));
    return capLen > kMaxCap ? 0 : static_cast<uint32_t>(kEventHeader) + capLen;
  }

  // Puts the CPU's next record in the merge if it is visible and not newer than the watermark.
  void Queue(uint32_t cpu, uint64_t watermarkNs) {
    if (tails_[cpu] >= heads_[cpu]) return;
    const uint8_t* record = Record(cpu);
    uint32_t size = RecordBytes(record);
    if (size == 0 || heads_[cpu] - tails_[cpu] < size) {
      corrupt_++;
      tails_[cpu] = heads_[cpu];  // nothing after it can be framed: skip to the head
      return;
    }
    Push(record, cpu, watermarkNs);
  }

  // The same for the ring's next record. Anything shorter than a header but a wakeup goes first,
  // for the decoder to count as malformed.
  void QueueRing(BpfRingReader& ring, uint64_t watermarkNs) {
    uint32_t size = 0;
    const uint8_t* record;
    while ((record = ring.Peek(&size)) != nullptr && size == kWakeupBytes) ring.Take(size);
    if (record == nullptr) return;
    if (size < kEventHeader) {
      heap_.push_back({0, kRing});
      std::push_heap(heap_.begin(), heap_.end(), Later);
      return;
    }
    Push(record, kRing, watermarkNs);
  }

  void Push(const uint8_t* record, uint32_t stream, uint64_t watermarkNs) {
    uint64_t ts;
    memcpy(&ts, record, sizeof(ts));
    if (ts > watermarkNs) {
      // Committed since the watermark: the next pass. A stamp far ahead of the clock cannot come
      // from the programs; it must not hold the stream's records back for good.
      if (ts - watermarkNs < kFutureNs) return;
      ts = watermarkNs;
    }
    heap_.push_back({ts, stream});
    std::push_heap(heap_.begin(), heap_.end(), Later);
  }

  uint8_t* base_ = nullptr;
  size_t mapBytes_ = 0;
  size_t elementBytes_ = 0;
  uint64_t mask_ = 0;
  uint32_t cpus_ = 0;
  uint64_t corrupt_ = 0;
  std::vector<uint64_t> tails_, heads_;  // per CPU, during a pass
  std::vector<Next> heap_;               // each stream's next record, soonest on top
};

}  // namespace flowtap
