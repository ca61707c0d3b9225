#include "bpf_area_reader.h"

#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

namespace flowtap {

int BpfAreaReader::Open(int fd, uint32_t cpus, size_t areaBytes) {
  Close();
  if (fd < 0 || cpus == 0 || areaBytes == 0 || (areaBytes & (areaBytes - 1)) != 0) return EINVAL;
  size_t element = ElementBytes(areaBytes);
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  size_t bytes = (element * cpus + page - 1) / page * page;
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) return errno;
  base_ = static_cast<uint8_t*>(base);
  mapBytes_ = bytes;
  elementBytes_ = element;
  mask_ = areaBytes - 1;
  cpus_ = cpus;
  tails_.assign(cpus, 0);
  heads_.assign(cpus, 0);
  heap_.reserve(cpus + 1);
  return 0;
}

void BpfAreaReader::Close() {
  if (base_ != nullptr) munmap(base_, mapBytes_);
  base_ = nullptr;
  mapBytes_ = 0;
  cpus_ = 0;
}

}  // namespace flowtap
