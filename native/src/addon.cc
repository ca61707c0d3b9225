#include <napi.h>

#include "af_packet_socket.h"
#include "ebpf_profiler.h"
#include "ebpf_socket_tracer.h"
#include "packet_ring.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("AfPacketSocket", flowtap::AfPacketSocket::Define(env));
  exports.Set("EbpfSocketTracer", flowtap::EbpfSocketTracer::Define(env));
  exports.Set("EbpfProfiler", flowtap::EbpfProfiler::Define(env));
  exports.Set("INDEX_WORDS", Napi::Number::New(env, flowtap::kIndexWords));
  return exports;
}

}  // namespace

NODE_API_MODULE(flowtap_native, Init)
