#include "ebpf_socket_tracer.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdlib>
#include <cstdio>

#include "ebpf_util.h"

namespace flowtap {

namespace {

// Mirrors struct sock_trace_config in bpf/socket_trace.h.
struct TraceConfig {
  uint32_t capBytes;
  uint32_t pidMode;
  uint32_t wakeupBytes;
  uint32_t tlsEnabled;
  uint32_t filterGen;  // bumped after each pid_filter change; 0 is never used (fresh thread state)
  uint32_t exitIo;     // raw_sys_exit reports data (no sock_ tracepoints on this kernel)
};
constexpr size_t kRecordPrefix = 8;     // u32 record size, u32 payload offset
constexpr size_t kEntryBytes = kRecordPrefix + kEventHeader;

uint64_t MonotonicNs() {
  timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec);
}

// Sets a `const volatile __u64` global of the object's .rodata before load (the verifier then
// knows it as a constant). False when the object has no such variable.
bool SetRodataU64(bpf_object* obj, const char* name, uint64_t value) {
  const btf* types = bpf_object__btf(obj);
  if (types == nullptr) return false;
  bpf_map* rodata = nullptr;
  bpf_map* map;
  bpf_object__for_each_map(map, obj) {
    const char* n = bpf_map__name(map);
    size_t len = strlen(n);
    if (bpf_map__is_internal(map) && len >= 7 && strcmp(n + len - 7, ".rodata") == 0) rodata = map;
  }
  int sec = btf__find_by_name_kind(types, ".rodata", BTF_KIND_DATASEC);
  if (rodata == nullptr || sec < 0) return false;
  const btf_type* t = btf__type_by_id(types, sec);
  const btf_var_secinfo* vars = btf_var_secinfos(t);
  size_t size = 0;
  const uint8_t* initial = static_cast<const uint8_t*>(bpf_map__initial_value(rodata, &size));
  if (initial == nullptr) return false;
  for (uint16_t i = 0; i < btf_vlen(t); i++) {
    const btf_type* var = btf__type_by_id(types, vars[i].type);
    if (strcmp(btf__name_by_offset(types, var->name_off), name) != 0) continue;
    if (vars[i].size != sizeof(value) || vars[i].offset + sizeof(value) > size) return false;
    std::vector<uint8_t> data(initial, initial + size);
    memcpy(data.data() + vars[i].offset, &value, sizeof(value));
    return bpf_map__set_initial_value(rodata, data.data(), size) == 0;
  }
  return false;
}

uint32_t OptU32(const Napi::Object& o, const char* key, uint32_t dflt) {
  if (!o.Has(key) || o.Get(key).IsUndefined()) return dflt;
  return o.Get(key).As<Napi::Number>().Uint32Value();
}

// Whether the kernel has sock/sock_send_length and sock/sock_recv_length (Linux 6.4+), from its
// BTF. One parse of vmlinux BTF (about 12 ms here): libbpf_find_vmlinux_btf_id parses it per call.
bool KernelHasSockLengthTracepoints() {
  struct btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) return false;
  bool has = btf__find_by_name_kind(vmlinux, "btf_trace_sock_send_length", BTF_KIND_TYPEDEF) > 0 &&
             btf__find_by_name_kind(vmlinux, "btf_trace_sock_recv_length", BTF_KIND_TYPEDEF) > 0;
  btf__free(vmlinux);
  return has;
}

}  // namespace

Napi::Function EbpfSocketTracer::Define(Napi::Env env) {
  return DefineClass(env, "EbpfSocketTracer",
                     {
                         InstanceMethod("start", &EbpfSocketTracer::Start),
                         InstanceMethod("counters", &EbpfSocketTracer::Counters),
                         InstanceMethod("mapCounts", &EbpfSocketTracer::MapCounts),
                         InstanceMethod("sweepSocketInfo", &EbpfSocketTracer::SweepSocketInfo),
                         InstanceMethod("setPidFilter", &EbpfSocketTracer::SetPidFilter),
                         InstanceMethod("drain", &EbpfSocketTracer::Drain),
                         InstanceMethod("attachTls", &EbpfSocketTracer::AttachTls),
                         InstanceMethod("close", &EbpfSocketTracer::Close),
                         InstanceMethod("ref", &EbpfSocketTracer::Ref),
                         InstanceMethod("unref", &EbpfSocketTracer::Unref),
                         InstanceMethod("sockHooks", &EbpfSocketTracer::SockHooks),
                     });
}

EbpfSocketTracer::EbpfSocketTracer(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<EbpfSocketTracer>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  if (!o.Has("objectPath") || !o.Get("objectPath").IsString()) throw Napi::TypeError::New(env, "objectPath expected");
  std::string path = o.Get("objectPath").As<Napi::String>().Utf8Value();
  uint32_t ringBytes = OptU32(o, "ringBytes", 2u << 20);
  uint32_t socketEntries = OptU32(o, "socketMapEntries", 65536);
  // Each CPU's record area is a power of two, 64 KiB to 256 MiB; the reader is woken early once a
  // quarter of one waits, unless told otherwise.
  uint32_t areaBytes = 64u << 10;
  while (areaBytes < ringBytes && areaBytes < (256u << 20)) areaBytes <<= 1;
  uint32_t wakeupBytes = OptU32(o, "wakeupBytes", areaBytes / 4);
  // Sends and receives are reported from sock/sock_{send,recv}_length (Linux 6.4+), which only
  // sockets reach; without them, from the syscall exits. sockHooks: 0 forces the exits (tests).
  sockHooks_ = OptU32(o, "sockHooks", 1) != 0 && KernelHasSockLengthTracepoints();
  TraceConfig cfg{std::min(OptU32(o, "capBytes", 4096), kMaxCap), OptU32(o, "pidMode", 0), wakeupBytes, 0, 1,
                  sockHooks_ ? 0u : 1u};
  flushMs_ = std::max<uint32_t>(OptU32(o, "flushIntervalMs", 10), 1);
  // One delivery buffer: the records' headers, then their captured bytes (payload area of
  // batchBytes; header room for about one 112 B entry per 900 payload bytes, at least 1024).
  payloadCap_ = std::max<uint32_t>(OptU32(o, "batchBytes", 1u << 20), 64u << 10);
  headerCap_ = std::max<size_t>(payloadCap_ / 8, 1024 * kEntryBytes) / kEntryBytes * kEntryBytes;
  batchSize_ = headerCap_ + payloadCap_;
  batch_ = static_cast<uint8_t*>(malloc(batchSize_));
  if (batch_ == nullptr) throw Napi::Error::New(env, "out of memory");
  batchView_ = Napi::Persistent(Napi::Buffer<uint8_t>::New(env, batch_, batchSize_, [](Napi::Env, uint8_t* p) { free(p); }));
  int cpus = libbpf_num_possible_cpus();

  EnsureTracefs();
  LibbpfLog log;
  obj_ = bpf_object__open_file(path.c_str(), nullptr);
  if (obj_ == nullptr) ThrowErrno(env, errno, "open " + path, log.text());
  bpf_map* events = bpf_object__find_map_by_name(obj_, "events");
  bpf_map* areas = bpf_object__find_map_by_name(obj_, "areas");
  bpf_map* socketInfo = bpf_object__find_map_by_name(obj_, "socket_info");
  if (events == nullptr || areas == nullptr || socketInfo == nullptr || cpus <= 0) {
    Release();
    ThrowErrno(env, EINVAL, "object lacks the events/areas/socket_info maps", "");
  }
  if (bpf_map__set_max_entries(areas, static_cast<uint32_t>(cpus)) || bpf_map__set_max_entries(events, areaBytes) ||
      bpf_map__set_value_size(areas, static_cast<uint32_t>(BpfAreaReader::ElementBytes(areaBytes))) ||
      !SetRodataU64(obj_, "area_mask", areaBytes - 1)) {
    Release();
    ThrowErrno(env, EINVAL, "size the record areas", "");
  }
  bpf_map__set_max_entries(socketInfo, socketEntries);
  // Two sets of syscall programs: raw_sys_enter/raw_sys_exit on the raw_syscalls tracepoints
  // (x86-64 numbers) or one program per syscalls/ tracepoint. Load only the chosen set; the
  // sock_ programs (where sends and receives are reported) serve both, and the io_exit_ ones
  // (the same from syscalls/ exits) stand in for them on kernels without the sock_ tracepoints.
  bool rawSyscalls = OptU32(o, "rawSyscalls", 1) != 0;
  {
    bpf_program* prog;
    bpf_object__for_each_program(prog, obj_) {
      const char* name = bpf_program__name(prog);
      if (strncmp(name, "tls_", 4) == 0) continue;
      bool load;
      if (strncmp(name, "sock_", 5) == 0) load = sockHooks_;
      else if (strncmp(name, "io_exit_", 8) == 0) load = !sockHooks_ && !rawSyscalls;
      else load = (strncmp(name, "raw_", 4) == 0) == rawSyscalls;
      bpf_program__set_autoload(prog, load);
    }
  }
  int err = LoadBpfObject(obj_);
  if (err) {
    Release();
    ThrowErrno(env, -err, "load " + path, log.text());
  }
  int configFd = bpf_object__find_map_fd_by_name(obj_, "trace_config");
  int idFd = bpf_object__find_map_fd_by_name(obj_, "id_gen");
  countersFd_ = bpf_object__find_map_fd_by_name(obj_, "counters");
  socketInfoFd_ = bpf_map__fd(socketInfo);
  socketInfoValueSize_ = bpf_map__value_size(socketInfo);
  configFd_ = configFd;
  pidFilterFd_ = bpf_object__find_map_fd_by_name(obj_, "pid_filter");
  uint32_t zero = 0, one = 1;
  // ids start at 1 (0 means "none"); socket ids carry the load time in their high bits so that
  // a restarted tracer does not reuse the ids of the previous run within l7's session window.
  uint64_t socketBase = (static_cast<uint64_t>(time(nullptr)) & 0xfffff) << 32 | 1;
  uint64_t traceBase = 1;
  bpf_map_update_elem(configFd, &zero, &cfg, BPF_ANY);
  bpf_map_update_elem(idFd, &zero, &socketBase, BPF_ANY);
  bpf_map_update_elem(idFd, &one, &traceBase, BPF_ANY);

  // Filters must be in place before the first event: pids come with the options.
  if (o.Has("pids") && o.Get("pids").IsArray()) {
    Napi::Array pids = o.Get("pids").As<Napi::Array>();
    uint8_t mark = cfg.pidMode == 1 ? 1 : 2;
    for (uint32_t i = 0; i < pids.Length(); i++) {
      uint32_t pid = pids.Get(i).As<Napi::Number>().Uint32Value();
      bpf_map_update_elem(pidFilterFd_, &pid, &mark, BPF_ANY);
    }
  }

  if (int e = ring_.Open(bpf_map__fd(events), bpf_map__max_entries(events))) {
    Release();
    ThrowErrno(env, e, "mmap the TLS ring", log.text());
  }
  if (int e = areas_.Open(bpf_map__fd(areas), static_cast<uint32_t>(cpus), areaBytes)) {
    Release();
    ThrowErrno(env, e, "mmap the record areas", log.text());
  }
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj_) {
    // TLS uprobes attach per library or binary, on request (attachTls).
    if (strncmp(bpf_program__name(prog), "tls_", 4) == 0 || !bpf_program__autoload(prog)) continue;
    bpf_link* link = bpf_program__attach(prog);
    if (link == nullptr) {
      int e = errno;
      std::string name = bpf_program__name(prog);
      Release();
      ThrowErrno(env, e, "attach " + name, log.text());
    }
    links_.push_back(link);
  }

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    Release();
    throw Napi::Error::New(env, "cannot get the libuv loop");
  }
  handles_ = new LoopHandles();
  handles_->owner = this;
  uv_poll_init(loop, &handles_->poll, ring_.fd());
  uv_timer_init(loop, &handles_->timer);
  handles_->poll.data = handles_;
  handles_->timer.data = handles_;
  handles_->closing = 0;
  cleanupHookAdded_ = napi_add_env_cleanup_hook(env, OnEnvCleanup, this) == napi_ok;
}

EbpfSocketTracer::~EbpfSocketTracer() {
  if (cleanupHookAdded_) napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
  closed_ = true;
  Release();
}

void EbpfSocketTracer::OnEnvCleanup(void* arg) {
  auto* self = static_cast<EbpfSocketTracer*>(arg);
  self->cleanupHookAdded_ = false;
  self->closed_ = true;
  self->Release();
}

// Stops delivery: the poll and timer handles go (freed once libuv has closed them).
void EbpfSocketTracer::CloseLoopHandles() {
  if (handles_ == nullptr) return;
  handles_->owner = nullptr;
  handles_->closing = 2;
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->poll), OnHandleClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->timer), OnHandleClosed);
  handles_ = nullptr;
}

// Detaches the programs first (no new events), then frees the ring and the object.
void EbpfSocketTracer::Release() {
  CloseLoopHandles();
  for (bpf_link* l : links_) bpf_link__destroy(l);
  links_.clear();
  ring_.Close();
  areas_.Close();
  if (obj_ != nullptr) bpf_object__close(obj_);
  obj_ = nullptr;
  countersFd_ = socketInfoFd_ = configFd_ = pidFilterFd_ = -1;
}

void EbpfSocketTracer::OnHandleClosed(uv_handle_t* handle) {
  auto* h = static_cast<LoopHandles*>(handle->data);
  if (--h->closing == 0) delete h;
}

void EbpfSocketTracer::OnTimer(uv_timer_t* timer) {
  auto* h = static_cast<LoopHandles*>(timer->data);
  EbpfSocketTracer* self = h->owner;
  if (self == nullptr || self->closed_) return;
  Napi::HandleScope scope(self->env_);
  try {
    self->DrainRecords();
  } catch (const Napi::Error& e) {
    napi_fatal_exception(self->env_, e.Value());
  }
}

// Splits the record: its header goes to the header area after an 8-byte prefix (record size,
// payload offset), its captured bytes to the payload area, so JS reads payloads where they lie.
bool EbpfSocketTracer::TakeRecord(const uint8_t* data, uint32_t size) {
  size_t payload = size > kEventHeader ? size - kEventHeader : 0;
  if (payload > payloadCap_) {
    oversize_++;  // can never fit: skipped (cannot happen with the shipped object)
    return true;
  }
  if (headerUsed_ + kEntryBytes > headerCap_ || payloadUsed_ + payload > payloadCap_) {
    batchFull_ = true;  // stays in the ring for the next pass
    return false;
  }
  uint8_t* at = batch_ + headerUsed_;
  uint32_t offset = static_cast<uint32_t>(payloadUsed_);
  memcpy(at, &size, 4);
  memcpy(at + 4, &offset, 4);
  size_t head = std::min<size_t>(size, kEventHeader);
  memcpy(at + kRecordPrefix, data, head);
  if (head < kEventHeader) memset(at + kRecordPrefix + head, 0, kEventHeader - head);  // short: JS drops it
  memcpy(batch_ + headerCap_ + payloadUsed_, data + head, payload);
  headerUsed_ += kEntryBytes;
  payloadUsed_ += payload;
  batchCount_++;
  return true;
}

void EbpfSocketTracer::Deliver() {
  if (batchCount_ == 0) return;
  uint32_t count = batchCount_;
  size_t headers = headerUsed_;
  size_t payloads = payloadUsed_;
  headerUsed_ = 0;
  payloadUsed_ = 0;
  batchCount_ = 0;
  if (!onBatch_.IsEmpty()) {
    onBatch_.MakeCallback(Value(), {batchView_.Value(), Napi::Number::New(env_, count), Napi::Number::New(env_, headers),
                                    Napi::Number::New(env_, headerCap_), Napi::Number::New(env_, payloads)},
                          *asyncContext_);
  }
}

uint32_t EbpfSocketTracer::DrainRecords() {
  uint32_t total = 0;
  // Bounded so a flood cannot starve the event loop; the timer comes back for the rest.
  for (int pass = 0; pass < 16 && !closed_ && areas_.open(); pass++) {
    batchFull_ = false;
    areas_.Consume(MonotonicNs(), ring_, [this](const uint8_t* data, uint32_t size) { return TakeRecord(data, size); });
    total += batchCount_;
    Deliver();
    if (!batchFull_) break;
  }
  return total;
}

void EbpfSocketTracer::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* h = static_cast<LoopHandles*>(handle->data);
  EbpfSocketTracer* self = h->owner;
  if (self == nullptr || self->closed_ || status < 0) return;
  Napi::HandleScope scope(self->env_);
  try {
    self->DrainRecords();
  } catch (const Napi::Error& e) {
    napi_fatal_exception(self->env_, e.Value());
  }
}

Napi::Value EbpfSocketTracer::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) throw Napi::Error::New(env, "tracer is closed");
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "callback function expected");
  onBatch_ = Napi::Persistent(info[0].As<Napi::Function>());
  if (!started_) {
    started_ = true;
    asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "flowtap:EbpfSocketTracer");
    Napi::ObjectWrap<EbpfSocketTracer>::Ref();
    uv_poll_start(&handles_->poll, UV_READABLE, OnPoll);
    uv_timer_start(&handles_->timer, OnTimer, flushMs_, flushMs_);
  }
  return env.Undefined();
}

// Synchronous drain, for tests and shutdown: delivers whatever the ring holds now.
Napi::Value EbpfSocketTracer::Drain(const Napi::CallbackInfo& info) {
  if (closed_ || !started_) return Napi::Number::New(info.Env(), 0);
  return Napi::Number::New(info.Env(), DrainRecords());
}

Napi::Value EbpfSocketTracer::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  static const char* kNames[] = {"ringbufFull", "socketMapFull", "activeMapFull", "readUserFault", "events", "tlsNoFd", "mmsgUnreported", "tlsBusy"};
  int cpus = libbpf_num_possible_cpus();
  std::vector<uint64_t> values(cpus > 0 ? cpus : 1);
  for (uint32_t i = 0; i < sizeof(kNames) / sizeof(kNames[0]); i++) {
    uint64_t sum = 0;
    if (countersFd_ >= 0 && bpf_map_lookup_elem(countersFd_, &i, values.data()) == 0) {
      for (uint64_t v : values) sum += v;
    }
    out.Set(kNames[i], Napi::Number::New(env, static_cast<double>(sum)));
  }
  out.Set("oversize", Napi::Number::New(env, static_cast<double>(oversize_)));
  out.Set("areaCorrupt", Napi::Number::New(env, static_cast<double>(areas_.corrupt())));
  return out;
}

namespace {
uint32_t CountKeys(int fd) {
  if (fd < 0) return 0;
  uint64_t key = 0, next = 0;
  uint32_t n = 0;
  void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    n++;
    key = next;
    prev = &key;
  }
  return n;
}
}  // namespace

// Entries currently held by the kernel maps (walks the keys: for tests and a gauge, not per event).
Napi::Value EbpfSocketTracer::MapCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  // In-flight syscalls live in per-thread task storage (freed with the thread), which cannot be
  // listed from user space, so only the socket map is counted.
  out.Set("socketInfo", Napi::Number::New(env, CountKeys(socketInfoFd_)));
  return out;
}

namespace {
// Whether /proc/<tgid>/fd/<fd> still names a socket. Any failure but ENOENT (EACCES, a race with
// exec) counts as "still there".
bool FdStillSocket(uint32_t tgid, uint32_t fd) {
  char path[48];
  char target[16];
  snprintf(path, sizeof(path), "/proc/%u/fd/%u", tgid, fd);
  ssize_t n = readlink(path, target, sizeof(target));
  if (n < 0) return errno != ENOENT;
  return n >= 7 && memcmp(target, "socket:", 7) == 0;
}

// A readlink on /proc costs about 10 us: this many per sweep bounds a sweep to about 20 ms, and
// the next sweep goes on where this one stopped.
constexpr size_t kFdChecksPerSweep = 2048;
}  // namespace

// Removes one listed entry if it still holds the socket it held when listed (a socket opened on
// the same fd meanwhile has a new socket_id and keeps its entry).
bool EbpfSocketTracer::RemoveListedEntry(uint64_t key, uint64_t socketId, std::vector<uint8_t>& value) {
  if (bpf_map_lookup_elem(socketInfoFd_, &key, value.data()) != 0) return false;  // closed meanwhile
  uint64_t now;
  memcpy(&now, value.data(), sizeof(now));
  return now == socketId && bpf_map_delete_elem(socketInfoFd_, &key) == 0;
}

// sweepSocketInfo(): forgets socket_info entries of sockets that are gone. The kernel side
// removes an entry at close(2) only; a process's exit, exec (close-on-exec), dup2 over the fd and
// close_range leave it behind, and on a long-running host those fill the map. Every entry of an
// exited process goes at once (one kill(pid, 0) per process); the entries of live processes are
// checked against /proc/<pid>/fd/<fd>, kFdChecksPerSweep per call, round robin. Returns
// { processExited, fdClosed } (entries removed). /proc must show the kernel's pids (the init pid
// namespace): the caller checks.
Napi::Value EbpfSocketTracer::SweepSocketInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (socketInfoFd_ < 0) throw Napi::Error::New(env, "tracer is closed");
  // (key, socket_id) of every entry, in batches (one syscall per run of buckets, not two per
  // entry), then sorted by key: a process's entries are adjacent.
  std::vector<std::pair<uint64_t, uint64_t>> listed;
  uint32_t chunk = 1024;
  std::vector<uint64_t> keys;
  std::vector<uint8_t> values;
  uint64_t token = 0;
  bool first = true;
  for (;;) {
    keys.resize(chunk);
    values.resize(static_cast<size_t>(chunk) * socketInfoValueSize_);
    uint32_t count = chunk;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(socketInfoFd_, first ? nullptr : &token, &token, keys.data(), values.data(), &count, &opts);
    if (err < 0 && errno == ENOSPC && chunk < (1u << 20)) {
      chunk *= 2;  // one hash bucket holds more entries than fit
      continue;
    }
    for (uint32_t i = 0; i < count; i++) {
      uint64_t socketId;  // struct sock_info starts with socket_id
      memcpy(&socketId, values.data() + static_cast<size_t>(i) * socketInfoValueSize_, sizeof(socketId));
      listed.emplace_back(keys[i], socketId);
    }
    if (err < 0) break;  // ENOENT: that was the last batch
    first = false;
  }
  std::sort(listed.begin(), listed.end());

  std::vector<uint8_t> value(socketInfoValueSize_);
  std::vector<std::pair<uint64_t, uint64_t>> live;
  uint32_t exited = 0, fdClosed = 0;
  uint32_t aliveOf = 0;
  bool alive = true;
  for (const auto& entry : listed) {
    uint32_t tgid = static_cast<uint32_t>(entry.first >> 32);
    if (tgid != aliveOf) {
      aliveOf = tgid;
      alive = kill(static_cast<pid_t>(tgid), 0) == 0 || errno != ESRCH;
    }
    if (alive) live.push_back(entry);
    else if (RemoveListedEntry(entry.first, entry.second, value)) exited++;
  }

  auto it = std::upper_bound(live.begin(), live.end(), std::make_pair(sweepCursor_, ~uint64_t{0}));
  for (size_t n = std::min(live.size(), kFdChecksPerSweep); n > 0; n--, ++it) {
    if (it == live.end()) it = live.begin();
    sweepCursor_ = it->first;
    if (FdStillSocket(static_cast<uint32_t>(it->first >> 32), static_cast<uint32_t>(it->first))) continue;
    if (RemoveListedEntry(it->first, it->second, value)) fdClosed++;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("processExited", Napi::Number::New(env, exited));
  out.Set("fdClosed", Napi::Number::New(env, fdClosed));
  return out;
}

// setPidFilter(pid, mark): mark 1 = trace (pidMode 1), 2 = skip (pidMode 0), 0 = forget.
Napi::Value EbpfSocketTracer::SetPidFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (pidFilterFd_ < 0) throw Napi::Error::New(env, "tracer is closed");
  uint32_t pid = info[0].As<Napi::Number>().Uint32Value();
  uint8_t mark = static_cast<uint8_t>(info[1].As<Napi::Number>().Uint32Value());
  int rc = mark == 0 ? bpf_map_delete_elem(pidFilterFd_, &pid) : bpf_map_update_elem(pidFilterFd_, &pid, &mark, BPF_ANY);
  int savedErrno = errno;
  // Threads cache their verdict per filter generation: a new generation makes them look again.
  TraceConfig cfg;
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(configFd_, &zero, &cfg) == 0) {
    cfg.filterGen = cfg.filterGen + 1 == 0 ? 1 : cfg.filterGen + 1;
    bpf_map_update_elem(configFd_, &zero, &cfg, BPF_ANY);
  }
  errno = savedErrno;
  return Napi::Boolean::New(env, rc == 0 || (mark == 0 && errno == ENOENT));
}

// attachTls(path): uprobes on SSL_read/SSL_write (+ _ex) of the ELF file at `path` (libssl or
// a binary with OpenSSL linked in). A uprobe belongs to the file, so every process that maps it,
// running or started later, is covered. Returns the functions attached (0..4); a file attached
// before (same device and inode) returns 0 without attaching twice.
Napi::Value EbpfSocketTracer::AttachTls(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_ || obj_ == nullptr) throw Napi::Error::New(env, "tracer is closed");
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "path expected");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  struct stat st;
  if (stat(path.c_str(), &st) != 0) ThrowErrno(env, errno, "stat " + path, "");
  std::string inode = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  for (const std::string& seen : tlsFiles_) {
    if (seen == inode) return Napi::Number::New(env, 0);
  }
  struct Probe {
    const char* func;
    const char* prog;
  };
  static const Probe kProbes[] = {
      {"SSL_write", "tls_write_enter"}, {"SSL_write_ex", "tls_write_ex_enter"},
      {"SSL_read", "tls_read_enter"},   {"SSL_read_ex", "tls_read_ex_enter"},
  };
  bpf_program* exitProg = bpf_object__find_program_by_name(obj_, "tls_exit_probe");
  LibbpfLog log;
  uint32_t attached = 0;
  for (const Probe& p : kProbes) {
    bpf_program* prog = bpf_object__find_program_by_name(obj_, p.prog);
    if (prog == nullptr || exitProg == nullptr) continue;
    LIBBPF_OPTS(bpf_uprobe_opts, entryOpts, .retprobe = false, .func_name = p.func);
    bpf_link* entry = bpf_program__attach_uprobe_opts(prog, -1, path.c_str(), 0, &entryOpts);
    if (entry == nullptr) continue;  // this file lacks the function (e.g. no _ex in OpenSSL 1.1.0)
    LIBBPF_OPTS(bpf_uprobe_opts, exitOpts, .retprobe = true, .func_name = p.func);
    bpf_link* exit = bpf_program__attach_uprobe_opts(exitProg, -1, path.c_str(), 0, &exitOpts);
    if (exit == nullptr) {
      bpf_link__destroy(entry);
      continue;
    }
    links_.push_back(entry);
    links_.push_back(exit);
    attached++;
  }
  if (attached == 0) ThrowErrno(env, ENOENT, "no SSL_read/SSL_write to probe in " + path, log.text());
  // SSL_free forgets the SSL*'s fd (its address comes back for the next connection). Optional:
  // close() forgets it too, but a process may free and reuse the SSL* before closing the old fd.
  if (bpf_program* freeProg = bpf_object__find_program_by_name(obj_, "tls_free_enter")) {
    LIBBPF_OPTS(bpf_uprobe_opts, freeOpts, .retprobe = false, .func_name = "SSL_free");
    if (bpf_link* link = bpf_program__attach_uprobe_opts(freeProg, -1, path.c_str(), 0, &freeOpts)) links_.push_back(link);
  }
  tlsFiles_.push_back(inode);
  // Turn on the syscall handlers' TLS lookups (config.tls_enabled).
  int configFd = bpf_object__find_map_fd_by_name(obj_, "trace_config");
  TraceConfig cfg;
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(configFd, &zero, &cfg) == 0 && cfg.tlsEnabled == 0) {
    cfg.tlsEnabled = 1;
    bpf_map_update_elem(configFd, &zero, &cfg, BPF_ANY);
  }
  return Napi::Number::New(env, attached);
}

// Detaching costs a grace period per link (40 - 130 ms each here: about 3.4 s for the 18 programs
// and the TLS uprobes on libssl and node; more with uprobes on a binary many processes map), so
// close() stops delivery at once and leaves the detaching to a background thread; the maps go
// when the last link is gone. Returns a promise that settles then (at once when closed before).
Napi::Value EbpfSocketTracer::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) {
    Napi::Promise::Deferred done = Napi::Promise::Deferred::New(env);
    done.Resolve(env.Undefined());
    return done.Promise();
  }
  closed_ = true;
  CloseLoopHandles();
  ring_.Close();
  areas_.Close();
  Napi::Promise detached = DetachInBackground(env, std::move(links_), obj_);
  links_.clear();
  obj_ = nullptr;
  countersFd_ = socketInfoFd_ = configFd_ = pidFilterFd_ = -1;
  onBatch_.Reset();
  batchView_.Reset();
  if (started_) Napi::ObjectWrap<EbpfSocketTracer>::Unref();
  return detached;
}

// Whether sends and receives come from the sock_ tracepoints (else from the syscall exits).
Napi::Value EbpfSocketTracer::SockHooks(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), sockHooks_);
}

Napi::Value EbpfSocketTracer::Ref(const Napi::CallbackInfo& info) {
  if (handles_ != nullptr) {
    uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
    uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
  }
  return info.Env().Undefined();
}

Napi::Value EbpfSocketTracer::Unref(const Napi::CallbackInfo& info) {
  if (handles_ != nullptr) {
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
  }
  return info.Env().Undefined();
}

}  // namespace flowtap
