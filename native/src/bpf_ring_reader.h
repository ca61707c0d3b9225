// Reader of a BPF ring buffer map (BPF_MAP_TYPE_RINGBUF) mapped into this process. Unlike
// libbpf's ring_buffer__consume, which publishes the consumer position after every record, it
// publishes it once per pass: the position shares a cache line with what every producer reads on
// each reserve, so a store per record moved that line between the CPUs once per event.
#pragma once
#include <cstddef>
#include <cstdint>

namespace flowtap {

class BpfRingReader {
 public:
  BpfRingReader() = default;
  BpfRingReader(const BpfRingReader&) = delete;
  BpfRingReader& operator=(const BpfRingReader&) = delete;
  ~BpfRingReader() { Close(); }

  // Maps the ring of map `fd` (data size `size`, a power of two). Returns 0 or an errno.
  int Open(int fd, uint32_t size);
  void Close();
  bool open() const { return data_ != nullptr; }
  // Pollable: readable when the kernel side asked for a wakeup.
  int fd() const { return fd_; }

  // Hands each committed record to onRecord(const uint8_t* data, uint32_t size), oldest first,
  // until the ring is empty or onRecord returns false (that record stays for the next pass).
  // Records the producer discarded are skipped. Returns the records handed over.
  template <typename F>
  uint32_t Consume(F&& onRecord) {
    if (data_ == nullptr) return 0;
    uint64_t cons = __atomic_load_n(consumerPos_, __ATOMIC_RELAXED);  // only this reader writes it
    uint64_t prod = __atomic_load_n(producerPos_, __ATOMIC_ACQUIRE);
    uint32_t handed = 0;
    while (cons < prod) {
      const uint32_t* header = reinterpret_cast<const uint32_t*>(data_ + (cons & mask_));
      uint32_t len = __atomic_load_n(header, __ATOMIC_ACQUIRE);
      if (len & kBusyBit) break;  // reserved, not yet committed: records after it wait too
      uint32_t size = len & ~(kBusyBit | kDiscardBit);
      if (!(len & kDiscardBit)) {
        // The data pages are mapped twice in a row, so a record that wraps is contiguous.
        if (!onRecord(reinterpret_cast<const uint8_t*>(header) + kHeaderBytes, size)) break;
        handed++;
      }
      cons += (size + kHeaderBytes + 7) & ~uint64_t(7);
      if (cons == prod) prod = __atomic_load_n(producerPos_, __ATOMIC_ACQUIRE);
    }
    __atomic_store_n(consumerPos_, cons, __ATOMIC_RELEASE);
    return handed;
  }

 private:
  static constexpr uint32_t kBusyBit = 1u << 31;
  static constexpr uint32_t kDiscardBit = 1u << 30;
  static constexpr uint32_t kHeaderBytes = 8;

  int fd_ = -1;
  size_t pageSize_ = 0;
  uint32_t size_ = 0;
  uint64_t mask_ = 0;
  uint64_t* consumerPos_ = nullptr;  // first page, writable
  void* producerMap_ = nullptr;      // producer page + the data pages twice, read-only
  uint64_t* producerPos_ = nullptr;
  uint8_t* data_ = nullptr;
};

}  // namespace flowtap
