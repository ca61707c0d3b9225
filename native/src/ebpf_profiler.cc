#include "ebpf_profiler.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "ebpf_util.h"

namespace flowtap {

namespace {

// Mirrors struct sample_key in bpf/profile.bpf.c.
struct SampleKey {
  uint32_t pid;
  uint32_t tid;
  int32_t userStackId;
  int32_t kernelStackId;
  char comm[16];
};
constexpr uint32_t kMaxDepth = 127;

int PerfEventOpen(perf_event_attr* attr, int cpu) {
  return static_cast<int>(syscall(__NR_perf_event_open, attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
}

}  // namespace

Napi::Function EbpfProfiler::Define(Napi::Env env) {
  return DefineClass(env, "EbpfProfiler",
                     {
                         InstanceMethod("collect", &EbpfProfiler::Collect),
                         InstanceMethod("counters", &EbpfProfiler::Counters),
                         InstanceMethod("close", &EbpfProfiler::Close),
                     });
}

EbpfProfiler::EbpfProfiler(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EbpfProfiler>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  if (!o.Has("objectPath") || !o.Get("objectPath").IsString()) throw Napi::TypeError::New(env, "objectPath expected");
  std::string path = o.Get("objectPath").As<Napi::String>().Utf8Value();
  uint32_t frequency = o.Has("frequency") ? o.Get("frequency").As<Napi::Number>().Uint32Value() : 99;
  uint32_t onlyPid = o.Has("pid") ? o.Get("pid").As<Napi::Number>().Uint32Value() : 0;

  LibbpfLog log;
  obj_ = bpf_object__open_file(path.c_str(), nullptr);
  if (obj_ == nullptr) ThrowErrno(env, errno, "open " + path, log.text());
  int err = LoadBpfObject(obj_);
  if (err) {
    Release();
    ThrowErrno(env, -err, "load " + path, log.text());
  }
  samplesFd_ = bpf_object__find_map_fd_by_name(obj_, "samples");
  stacksFd_ = bpf_object__find_map_fd_by_name(obj_, "stacks");
  countersFd_ = bpf_object__find_map_fd_by_name(obj_, "profile_counters");
  int pidFd = bpf_object__find_map_fd_by_name(obj_, "profile_pid");
  uint32_t zero = 0;
  bpf_map_update_elem(pidFd, &zero, &onlyPid, BPF_ANY);
  bpf_program* prog = bpf_object__find_program_by_name(obj_, "on_cpu_sample");
  int cpus = libbpf_num_possible_cpus();
  cpus_ = cpus > 0 ? cpus : 1;
  for (uint32_t cpu = 0; cpu < cpus_; cpu++) {
    perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_CPU_CLOCK;
    attr.freq = 1;
    attr.sample_freq = frequency;
    int fd = PerfEventOpen(&attr, static_cast<int>(cpu));
    if (fd < 0) {
      if (errno == ENODEV) continue;  // possible but offline CPU
      int e = errno;
      Release();
      ThrowErrno(env, e, "perf_event_open cpu " + std::to_string(cpu), "");
    }
    bpf_link* link = bpf_program__attach_perf_event(prog, fd);
    if (link == nullptr) {
      int e = errno;
      close(fd);
      Release();
      ThrowErrno(env, e, "attach perf_event", log.text());
    }
    links_.push_back(link);  // the link closes the perf fd when destroyed
  }
}

EbpfProfiler::~EbpfProfiler() { Release(); }

void EbpfProfiler::Release() {
  for (bpf_link* l : links_) bpf_link__destroy(l);
  links_.clear();
  if (obj_ != nullptr) bpf_object__close(obj_);
  obj_ = nullptr;
  samplesFd_ = stacksFd_ = countersFd_ = -1;
}

// collect(): [{pid, tid, comm, count, user: Float64Array, kernel: BigUint64Array}], reading and
// clearing the counts, then clearing the stack map (ids are only meaningful with their counts).
// User addresses fit doubles exactly (< 2^47); kernel ones do not, hence BigInt.
Napi::Value EbpfProfiler::Collect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  if (samplesFd_ < 0) return out;
  std::vector<SampleKey> keys;
  SampleKey key, next;
  void* prev = nullptr;
  while (bpf_map_get_next_key(samplesFd_, prev, &next) == 0) {
    keys.push_back(next);
    key = next;
    prev = &key;
  }
  uint64_t frames[kMaxDepth];
  uint32_t n = 0;
  for (SampleKey& k : keys) {
    uint64_t count = 0;
    if (bpf_map_lookup_and_delete_elem(samplesFd_, &k, &count) != 0 &&
        (bpf_map_lookup_elem(samplesFd_, &k, &count) != 0 || bpf_map_delete_elem(samplesFd_, &k) != 0)) {
      continue;
    }
    Napi::Object s = Napi::Object::New(env);
    s.Set("pid", Napi::Number::New(env, k.pid));
    s.Set("tid", Napi::Number::New(env, k.tid));
    s.Set("comm", Napi::String::New(env, std::string(k.comm, strnlen(k.comm, sizeof(k.comm)))));
    s.Set("count", Napi::Number::New(env, static_cast<double>(count)));
    uint32_t depth = 0;
    if (k.userStackId >= 0 && bpf_map_lookup_elem(stacksFd_, &k.userStackId, frames) == 0) {
      while (depth < kMaxDepth && frames[depth] != 0) depth++;
    }
    Napi::Float64Array user = Napi::Float64Array::New(env, depth);
    for (uint32_t i = 0; i < depth; i++) user[i] = static_cast<double>(frames[i]);
    s.Set("user", user);
    depth = 0;
    if (k.kernelStackId >= 0 && bpf_map_lookup_elem(stacksFd_, &k.kernelStackId, frames) == 0) {
      while (depth < kMaxDepth && frames[depth] != 0) depth++;
    }
    Napi::BigUint64Array kernel = Napi::BigUint64Array::New(env, depth);
    for (uint32_t i = 0; i < depth; i++) kernel[i] = frames[i];
    s.Set("kernel", kernel);
    s.Set("userStackError", Napi::Number::New(env, k.userStackId < 0 ? -k.userStackId : 0));
    out.Set(n++, s);
  }
  for (SampleKey& k : keys) {
    if (k.userStackId >= 0) bpf_map_delete_elem(stacksFd_, &k.userStackId);
    if (k.kernelStackId >= 0) bpf_map_delete_elem(stacksFd_, &k.kernelStackId);
  }
  return out;
}

Napi::Value EbpfProfiler::Counters(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  std::vector<uint64_t> values(cpus_);
  static const char* kNames[] = {"samplesMapFull", "samples"};
  for (uint32_t i = 0; i < 2; i++) {
    uint64_t sum = 0;
    if (countersFd_ >= 0 && bpf_map_lookup_elem(countersFd_, &i, values.data()) == 0) {
      for (uint64_t v : values) sum += v;
    }
    out.Set(kNames[i], Napi::Number::New(env, static_cast<double>(sum)));
  }
  return out;
}

// Returns a promise that settles once the perf events are detached.
Napi::Value EbpfProfiler::Close(const Napi::CallbackInfo& info) {
  Napi::Promise detached = DetachInBackground(info.Env(), std::move(links_), obj_);
  links_.clear();
  obj_ = nullptr;
  samplesFd_ = stacksFd_ = countersFd_ = -1;
  return detached;
}

}  // namespace flowtap
