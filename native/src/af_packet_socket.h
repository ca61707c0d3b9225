// JS binding of PacketRing: hands retired ring blocks to a JS callback as zero-copy Buffer
// views plus a per-packet index, driven by a libuv poll handle on the socket (never blocks
// the event loop, never spins).
#pragma once
#include <napi.h>
#include <uv.h>

#include <memory>
#include <vector>

#include "packet_ring.h"

namespace flowtap {

class AfPacketSocket : public Napi::ObjectWrap<AfPacketSocket> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit AfPacketSocket(const Napi::CallbackInfo& info);
  ~AfPacketSocket() override;

 private:
  // libuv handles live on the heap: uv_close completes asynchronously, after this object may be gone.
  struct LoopHandles {
    uv_poll_t poll;
    uv_timer_t timer;
    AfPacketSocket* owner;
    int closing;
  };
  struct BlockSlot {
    Napi::Reference<Napi::Buffer<uint8_t>> view;  // external Buffer over the block memory
    Napi::Reference<Napi::Uint32Array> index;     // reused; grows when a block holds more packets
    uint32_t* indexData = nullptr;
    uint32_t indexCapacity = 0;  // packets
    bool held = false;           // delivered to JS and not yet released
  };

  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value OnError(const Napi::CallbackInfo& info);
  Napi::Value Release(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value GetIfindex(const Napi::CallbackInfo& info);
  Napi::Value GetHeldBlocks(const Napi::CallbackInfo& info);
  Napi::Value GetMalformed(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  static void OnTimer(uv_timer_t* timer);
  static void OnHandleClosed(uv_handle_t* handle);
  static void OnEnvCleanup(void* arg);

  uint32_t Drain();  // returns the number of blocks delivered
  void DeliverBlock(uint32_t block);
  void ReportError(int err);
  void PausePolling();
  void ResumePolling();
  void CloseNow();
  void CloseHandles();

  Napi::Env env_;
  PacketRing ring_;
  std::string iface_;
  uint32_t blockTimeoutMs_ = 100;
  std::vector<BlockSlot> slots_;
  uint32_t cursor_ = 0;  // next block the kernel will retire
  uint32_t heldCount_ = 0;
  uint32_t malformed_ = 0;
  LoopHandles* handles_ = nullptr;
  bool polling_ = false;  // poll handle started
  bool paused_ = false;   // poll stopped because JS holds the block the kernel wants next
  bool started_ = false;
  bool closed_ = false;
  bool draining_ = false;
  bool cleanupHookAdded_ = false;
  Napi::FunctionReference onBlock_;
  Napi::FunctionReference onError_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
};

}  // namespace flowtap
