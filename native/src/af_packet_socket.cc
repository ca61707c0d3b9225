#include "af_packet_socket.h"

#include <errno.h>
#include <string.h>

#include <algorithm>

namespace flowtap {

namespace {

uint32_t OptionU32(const Napi::Object& o, const char* name, uint32_t fallback) {
  Napi::Value v = o.Get(name);
  if (v.IsUndefined() || v.IsNull()) return fallback;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("option '") + name + "' must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d))) {
    throw Napi::RangeError::New(o.Env(), std::string("option '") + name + "' must be an integer 0..2^32-1");
  }
  return static_cast<uint32_t>(d);
}

Napi::Error MakeError(Napi::Env env, const std::string& message, const char* code, int errnum) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, errnum));
  return e;
}

const char* CodeOf(int err) {
  switch (err) {
    case ENETDOWN: return "ENETDOWN";
    case ENXIO: return "ENXIO";
    case ENODEV: return "ENODEV";
    case EBADF: return "EBADF";
    case ENOMEM: return "ENOMEM";
    default: return "EIO";
  }
}

}  // namespace

Napi::Function AfPacketSocket::Define(Napi::Env env) {
  return DefineClass(env, "AfPacketSocket", {
    InstanceMethod<&AfPacketSocket::Start>("start"),
    InstanceMethod<&AfPacketSocket::OnError>("onError"),
    InstanceMethod<&AfPacketSocket::Release>("release"),
    InstanceMethod<&AfPacketSocket::Stats>("stats"),
    InstanceMethod<&AfPacketSocket::Close>("close"),
    InstanceMethod<&AfPacketSocket::Ref>("ref"),
    InstanceMethod<&AfPacketSocket::Unref>("unref"),
    InstanceAccessor<&AfPacketSocket::GetIfindex>("ifindex"),
    InstanceAccessor<&AfPacketSocket::GetHeldBlocks>("heldBlocks"),
    InstanceAccessor<&AfPacketSocket::GetMalformed>("malformed"),
  });
}

AfPacketSocket::AfPacketSocket(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<AfPacketSocket>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  RingOptions opts;
  Napi::Value iface = o.Get("iface");
  if (!iface.IsString()) throw Napi::TypeError::New(env, "option 'iface' (interface name) must be a string");
  opts.iface = iface.As<Napi::String>().Utf8Value();
  opts.blockSize = OptionU32(o, "blockSize", opts.blockSize);
  opts.blockCount = OptionU32(o, "blockCount", opts.blockCount);
  opts.frameSize = OptionU32(o, "frameSize", opts.frameSize);
  opts.blockTimeoutMs = OptionU32(o, "blockTimeoutMs", opts.blockTimeoutMs);
  opts.snapLen = OptionU32(o, "snapLen", opts.snapLen);
  Napi::Value promisc = o.Get("promisc");
  opts.promisc = promisc.IsBoolean() && promisc.As<Napi::Boolean>().Value();
  Napi::Value filter = o.Get("filter");
  if (filter.IsString()) opts.filter = filter.As<Napi::String>().Utf8Value();
  Napi::Value group = o.Get("fanoutGroup");
  if (!group.IsUndefined() && !group.IsNull()) opts.fanoutGroup = static_cast<int32_t>(OptionU32(o, "fanoutGroup", 0));
  Napi::Value defrag = o.Get("fanoutDefrag");
  if (defrag.IsBoolean()) opts.fanoutDefrag = defrag.As<Napi::Boolean>().Value();

  try {
    ring_.Open(opts);
  } catch (const RingError& e) {
    throw MakeError(env, e.what(), e.code, e.errnum);
  }
  iface_ = opts.iface;
  blockTimeoutMs_ = std::max<uint32_t>(opts.blockTimeoutMs, 1);

  // One external Buffer per block, made once: delivering a block allocates nothing.
  slots_.resize(ring_.blockCount());
  for (uint32_t b = 0; b < ring_.blockCount(); b++) {
    slots_[b].view = Napi::Persistent(Napi::Buffer<uint8_t>::New(env, ring_.Block(b), ring_.blockSize()));
  }

  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
    ring_.Close();
    throw Napi::Error::New(env, "cannot get the libuv loop");
  }
  handles_ = new LoopHandles();
  handles_->owner = this;
  handles_->closing = 0;
  uv_poll_init(loop, &handles_->poll, ring_.fd());
  uv_timer_init(loop, &handles_->timer);
  handles_->poll.data = handles_;
  handles_->timer.data = handles_;
  // A worker thread that exits with the socket open must not leave handles on its dead loop.
  cleanupHookAdded_ = napi_add_env_cleanup_hook(env, OnEnvCleanup, this) == napi_ok;
}

AfPacketSocket::~AfPacketSocket() {
  // Only reached when never started or already closed: a started socket holds a reference to itself.
  if (cleanupHookAdded_) napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
  closed_ = true;
  ring_.Close();
  CloseHandles();
}

void AfPacketSocket::OnEnvCleanup(void* arg) {
  // The environment is going away: no JS may run, so only the kernel side and libuv are closed.
  auto* self = static_cast<AfPacketSocket*>(arg);
  self->cleanupHookAdded_ = false;
  self->closed_ = true;
  self->CloseHandles();
  self->ring_.Close();
}

void AfPacketSocket::CloseHandles() {
  if (handles_ == nullptr) return;
  handles_->owner = nullptr;
  handles_->closing = 2;
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->poll), OnHandleClosed);  // stops polling first
  uv_close(reinterpret_cast<uv_handle_t*>(&handles_->timer), OnHandleClosed);
  handles_ = nullptr;
}

void AfPacketSocket::OnHandleClosed(uv_handle_t* handle) {
  auto* h = static_cast<LoopHandles*>(handle->data);
  if (--h->closing == 0) delete h;
}

Napi::Value AfPacketSocket::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) throw Napi::Error::New(env, "socket is closed");
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "callback function expected");
  onBlock_ = Napi::Persistent(info[0].As<Napi::Function>());
  if (!started_) {
    started_ = true;
    asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "flowtap:AfPacketSocket");
    Napi::ObjectWrap<AfPacketSocket>::Ref();  // stay alive while the loop may call us
    ResumePolling();
  }
  return env.Undefined();
}

Napi::Value AfPacketSocket::OnError(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "callback function expected");
  onError_ = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

void AfPacketSocket::ResumePolling() {
  if (closed_ || handles_ == nullptr) return;
  uv_timer_stop(&handles_->timer);
  paused_ = false;
  uv_poll_start(&handles_->poll, UV_READABLE, OnPoll);
  polling_ = true;
}

void AfPacketSocket::PausePolling() {
  // The kernel keeps the socket readable while the block before its current one is still
  // ours; with that block held by JS, level-triggered polling would spin. Stop polling until
  // a release, and meanwhile look for newly retired blocks once per block timeout.
  uv_poll_stop(&handles_->poll);
  polling_ = false;
  paused_ = true;
  uv_timer_start(&handles_->timer, OnTimer, blockTimeoutMs_, blockTimeoutMs_);
}

void AfPacketSocket::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* h = static_cast<LoopHandles*>(handle->data);
  AfPacketSocket* self = h->owner;
  if (self == nullptr || self->closed_) return;
  Napi::HandleScope scope(self->env_);
  try {
    if (status < 0) {
      // libuv reports POLLERR as a status and stops the handle; the socket error says why.
      int err = self->ring_.TakeSocketError();
      bool socketError = err != 0;
      if (!socketError) err = -status;
      self->polling_ = false;
      self->ReportError(err);
      // ENETDOWN is cleared by reading it; the kernel re-hooks the socket when the interface comes
      // back up, so keep polling (the caller may also close and reopen).
      if (socketError && !self->closed_) self->ResumePolling();
      return;
    }
    // Readable with nothing new to deliver: the kernel is waiting for a block JS holds.
    if (self->Drain() == 0 && !self->closed_ && self->heldCount_ > 0 && self->polling_) {
      self->PausePolling();
    }
  } catch (const Napi::Error& e) {
    napi_fatal_exception(self->env_, e.Value());
  }
}

void AfPacketSocket::OnTimer(uv_timer_t* timer) {
  auto* h = static_cast<LoopHandles*>(timer->data);
  AfPacketSocket* self = h->owner;
  if (self == nullptr || self->closed_) return;
  Napi::HandleScope scope(self->env_);
  try {
    self->Drain();
  } catch (const Napi::Error& e) {
    napi_fatal_exception(self->env_, e.Value());
  }
}

uint32_t AfPacketSocket::Drain() {
  if (draining_) return 0;
  draining_ = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{draining_};
  const uint32_t n = ring_.blockCount();
  uint32_t delivered = 0;
  while (delivered < n && !closed_) {
    uint32_t b = cursor_;
    if (slots_[b].held || !ring_.BlockReady(b)) break;
    cursor_ = (b + 1 == n) ? 0 : b + 1;
    DeliverBlock(b);
    delivered++;
  }
  return delivered;
}

void AfPacketSocket::DeliverBlock(uint32_t b) {
  BlockSlot& slot = slots_[b];
  uint32_t packets = ring_.PacketCount(b);
  if (packets > slot.indexCapacity) {
    uint32_t capacity = std::max<uint32_t>({packets, slot.indexCapacity * 2, 64});
    Napi::Uint32Array index = Napi::Uint32Array::New(env_, static_cast<size_t>(capacity) * kIndexWords);
    slot.indexData = index.Data();
    slot.indexCapacity = capacity;
    slot.index = Napi::Persistent(index);
  }
  uint32_t count = ring_.IndexBlock(b, slot.indexData, slot.indexCapacity, malformed_);
  slot.held = true;
  heldCount_++;
  onBlock_.MakeCallback(Value(), {Napi::Number::New(env_, b), slot.view.Value(), slot.index.Value(),
                                  Napi::Number::New(env_, count)}, *asyncContext_);
}

void AfPacketSocket::ReportError(int err) {
  std::string message = err == ENETDOWN
      ? "interface '" + iface_ + "' went down (" + strerror(err) + ")"
      : "capture on interface '" + iface_ + "' failed: " + strerror(err);
  if (onError_.IsEmpty()) return;  // the TS wrapper always installs one
  Napi::Error e = MakeError(env_, message, CodeOf(err), err);
  onError_.MakeCallback(Value(), {e.Value()}, *asyncContext_);
}

Napi::Value AfPacketSocket::Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) return Napi::Boolean::New(env, false);
  uint32_t b = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Uint32Value() : UINT32_MAX;
  if (b >= slots_.size()) throw Napi::RangeError::New(env, "release: no such block");
  BlockSlot& slot = slots_[b];
  if (!slot.held) return Napi::Boolean::New(env, false);  // a second release is harmless
  slot.held = false;
  heldCount_--;
  ring_.ReleaseBlock(b);
  if (paused_) ResumePolling();
  return Napi::Boolean::New(env, true);
}

Napi::Value AfPacketSocket::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const RingStats& s = ring_.ReadStats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("packets", Napi::Number::New(env, static_cast<double>(s.packets)));
  o.Set("drops", Napi::Number::New(env, static_cast<double>(s.drops)));
  o.Set("freezes", Napi::Number::New(env, static_cast<double>(s.freezes)));
  return o;
}

void AfPacketSocket::CloseNow() {
  if (closed_) return;
  closed_ = true;
  ring_.ReadStats();  // keep the last counts for stats() after close
  // Detach every view before unmapping: a Buffer JS still holds becomes empty instead of
  // pointing at unmapped memory.
  for (BlockSlot& slot : slots_) {
    if (!slot.view.IsEmpty()) {
      Napi::ArrayBuffer ab = slot.view.Value().ArrayBuffer();
      if (!ab.IsDetached()) ab.Detach();
      slot.view.Reset();
    }
    slot.index.Reset();
    slot.indexData = nullptr;
    slot.held = false;
  }
  heldCount_ = 0;
  CloseHandles();
  ring_.Close();
  if (cleanupHookAdded_) {
    napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
    cleanupHookAdded_ = false;
  }
  if (started_) Napi::ObjectWrap<AfPacketSocket>::Unref();
}

Napi::Value AfPacketSocket::Close(const Napi::CallbackInfo& info) {
  CloseNow();
  return info.Env().Undefined();
}

Napi::Value AfPacketSocket::Ref(const Napi::CallbackInfo& info) {
  if (handles_ != nullptr) {
    uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
    uv_ref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
  }
  return info.Env().Undefined();
}

Napi::Value AfPacketSocket::Unref(const Napi::CallbackInfo& info) {
  if (handles_ != nullptr) {
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->poll));
    uv_unref(reinterpret_cast<uv_handle_t*>(&handles_->timer));
  }
  return info.Env().Undefined();
}

Napi::Value AfPacketSocket::GetIfindex(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ring_.ifindex());
}

Napi::Value AfPacketSocket::GetHeldBlocks(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), heldCount_);
}

Napi::Value AfPacketSocket::GetMalformed(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), malformed_);
}

}  // namespace flowtap
