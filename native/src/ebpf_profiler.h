// JS binding of the on-CPU profiler (bpf/profile.bpf.c): one perf_event software clock per CPU
// at the requested frequency runs the BPF program, which counts (pid, tid, user stack, kernel
// stack) keys; collect() reads and clears them with the raw stack addresses for symbolisation.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

struct bpf_object;
struct bpf_link;

namespace flowtap {

class EbpfProfiler : public Napi::ObjectWrap<EbpfProfiler> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit EbpfProfiler(const Napi::CallbackInfo& info);
  ~EbpfProfiler() override;

 private:
  Napi::Value Collect(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void Release();

  bpf_object* obj_ = nullptr;
  std::vector<bpf_link*> links_;
  int samplesFd_ = -1;
  int stacksFd_ = -1;
  int countersFd_ = -1;
  uint32_t cpus_ = 0;
};

}  // namespace flowtap
