#include "bpf_ring_reader.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

namespace flowtap {

int BpfRingReader::Open(int fd, uint32_t size) {
  Close();
  if (fd < 0 || size == 0 || (size & (size - 1)) != 0) return EINVAL;
  pageSize_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* consumer = mmap(nullptr, pageSize_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (consumer == MAP_FAILED) return errno;
  void* producer = mmap(nullptr, pageSize_ + 2 * static_cast<size_t>(size), PROT_READ, MAP_SHARED, fd, static_cast<off_t>(pageSize_));
  if (producer == MAP_FAILED) {
    int e = errno;
    munmap(consumer, pageSize_);
    return e;
  }
  fd_ = fd;
  size_ = size;
  mask_ = size - 1;
  consumerPos_ = static_cast<uint64_t*>(consumer);
  producerMap_ = producer;
  producerPos_ = static_cast<uint64_t*>(producer);
  data_ = static_cast<uint8_t*>(producer) + pageSize_;
  cons_ = __atomic_load_n(consumerPos_, __ATOMIC_ACQUIRE);
  prod_ = cons_;
  return 0;
}

void BpfRingReader::Close() {
  if (consumerPos_ != nullptr) munmap(consumerPos_, pageSize_);
  if (producerMap_ != nullptr) munmap(producerMap_, pageSize_ + 2 * static_cast<size_t>(size_));
  consumerPos_ = nullptr;
  producerMap_ = nullptr;
  producerPos_ = nullptr;
  data_ = nullptr;
  fd_ = -1;
}

}  // namespace flowtap
