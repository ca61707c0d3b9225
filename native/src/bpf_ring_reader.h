// Reader of a BPF ring buffer map (BPF_MAP_TYPE_RINGBUF) mapped into this process, one record at
// a time (Peek, Take), so that its records can be merged with other streams. Unlike libbpf's
// ring_buffer__consume, which publishes the consumer position after every record, the caller
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

  // The oldest committed record not yet taken (records the producer discarded are skipped), or
  // nullptr when there is none, or the next one is still being written (records after it wait
  // too). Take(size) moves past it; Publish() hands the space taken back to the producers.
  const uint8_t* Peek(uint32_t* size) {
    if (data_ == nullptr) return nullptr;
    for (;;) {
      if (cons_ >= prod_) {
        prod_ = __atomic_load_n(producerPos_, __ATOMIC_ACQUIRE);
        if (cons_ >= prod_) return nullptr;
      }
      const uint32_t* header = reinterpret_cast<const uint32_t*>(data_ + (cons_ & mask_));
      uint32_t len = __atomic_load_n(header, __ATOMIC_ACQUIRE);
      if (len & kBusyBit) return nullptr;
      uint32_t bytes = len & ~(kBusyBit | kDiscardBit);
      if (len & kDiscardBit) {
        cons_ += Stride(bytes);
        continue;
      }
      *size = bytes;
      // The data pages are mapped twice in a row, so a record that wraps is contiguous.
      return reinterpret_cast<const uint8_t*>(header) + kHeaderBytes;
    }
  }
  void Take(uint32_t size) { cons_ += Stride(size); }
  void Publish() {
    if (data_ != nullptr) __atomic_store_n(consumerPos_, cons_, __ATOMIC_RELEASE);
  }

 private:
  static constexpr uint32_t kBusyBit = 1u << 31;
  static constexpr uint32_t kDiscardBit = 1u << 30;
  static constexpr uint32_t kHeaderBytes = 8;
  static uint64_t Stride(uint32_t size) { return (size + kHeaderBytes + 7) & ~uint64_t(7); }

  int fd_ = -1;
  size_t pageSize_ = 0;
  uint32_t size_ = 0;
  uint64_t mask_ = 0;
  uint64_t* consumerPos_ = nullptr;  // first page, writable
  void* producerMap_ = nullptr;      // producer page + the data pages twice, read-only
  uint64_t* producerPos_ = nullptr;
  uint8_t* data_ = nullptr;
  uint64_t cons_ = 0;  // taken so far (published by Publish)
  uint64_t prod_ = 0;  // last producer position read
};

}  // namespace flowtap
