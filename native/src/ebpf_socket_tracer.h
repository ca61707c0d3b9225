// JS binding of the eBPF socket tracer (bpf/socket_trace.bpf.c): opens the CO-RE object with
// libbpf, sizes and seeds its maps, attaches every syscall tracepoint program, and delivers the
// records of its per-CPU areas to JS in batches, from a timer and from a libuv poll handle on the
// ring buffer the programs wake it through.
#pragma once
#include <napi.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "bpf_area_reader.h"
#include "bpf_ring_reader.h"

struct bpf_object;
struct bpf_link;

namespace flowtap {

class EbpfSocketTracer : public Napi::ObjectWrap<EbpfSocketTracer> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit EbpfSocketTracer(const Napi::CallbackInfo& info);
  ~EbpfSocketTracer() override;

 private:
  // libuv handles live on the heap: uv_close completes after this object may be gone.
  struct LoopHandles {
    uv_poll_t poll;    // the ring map: readable when the kernel side asked for a wakeup
    uv_timer_t timer;  // drains every flushMs_: the kernel side wakes us only past wakeupBytes
    EbpfSocketTracer* owner;
    int closing;
  };

  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Counters(const Napi::CallbackInfo& info);
  Napi::Value MapCounts(const Napi::CallbackInfo& info);
  Napi::Value SweepSocketInfo(const Napi::CallbackInfo& info);
  bool RemoveListedEntry(uint64_t key, uint64_t socketId, std::vector<uint8_t>& value);
  Napi::Value SetPidFilter(const Napi::CallbackInfo& info);
  Napi::Value Drain(const Napi::CallbackInfo& info);
  Napi::Value AttachTls(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value SockHooks(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnTimer(uv_timer_t* timer);
  static void OnHandleClosed(uv_handle_t* handle);
  static void OnEnvCleanup(void* arg);

  uint32_t DrainRecords();  // the areas and the TLS ring; returns records delivered
  bool TakeRecord(const uint8_t* data, uint32_t size);  // false: the batch is full, record not taken
  void Deliver();
  void CloseLoopHandles();
  void Release();

  Napi::Env env_;
  bpf_object* obj_ = nullptr;
  std::vector<bpf_link*> links_;
  std::vector<std::string> tlsFiles_;  // "dev:inode" of files with TLS uprobes
  BpfRingReader ring_;   // the TLS probes' records, and wakeups
  BpfAreaReader areas_;  // the tracepoint programs' records
  int countersFd_ = -1;
  int socketInfoFd_ = -1;
  uint32_t socketInfoValueSize_ = 0;
  uint64_t sweepCursor_ = 0;  // the last socket_info key the sweep checked against /proc
  int configFd_ = -1;
  int pidFilterFd_ = -1;
  // Records are copied here until the batch is full or the ring is empty; then one Buffer goes
  // to JS. Layout: headerCap_ bytes of entries [u32 record size, u32 payload offset, 104-byte
  // header], then the payload area (each record's captured bytes, back to back).
  // The memory belongs to batchView_, an external Buffer that frees it when collected, so a JS
  // reference that outlives the tracer stays valid memory (its contents are replaced each batch).
  uint8_t* batch_ = nullptr;
  size_t batchSize_ = 0;
  Napi::Reference<Napi::Buffer<uint8_t>> batchView_;
  size_t headerCap_ = 0;
  size_t payloadCap_ = 0;
  size_t headerUsed_ = 0;
  size_t payloadUsed_ = 0;
  bool batchFull_ = false;  // the last pass stopped at a record that did not fit
  uint32_t batchCount_ = 0;
  uint64_t oversize_ = 0;  // records larger than the payload area (cannot happen with the shipped object)
  LoopHandles* handles_ = nullptr;
  uint32_t flushMs_ = 10;
  bool started_ = false;
  bool closed_ = false;
  bool sockHooks_ = false;  // data reported from sock_{send,recv}_length, not the syscall exits
  bool cleanupHookAdded_ = false;
  Napi::FunctionReference onBatch_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
};

}  // namespace flowtap
