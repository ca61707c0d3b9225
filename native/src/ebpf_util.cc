#include "ebpf_util.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <thread>

namespace flowtap {

namespace {
std::mutex logMutex;
std::string logText;
libbpf_print_fn_t previousPrint = nullptr;

int CapturePrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof(line), fmt, args);
  std::lock_guard<std::mutex> lock(logMutex);
  logText.append(line, n > 0 ? std::min<size_t>(n, sizeof(line) - 1) : 0);
  // Keep the tail: the verifier's last lines say why a program was refused.
  if (logText.size() > 8192) logText.erase(0, logText.size() - 8192);
  return n;
}

bool IsDir(const char* p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
}  // namespace

int LoadBpfObject(bpf_object* obj) {
  // Signals stay pending (not lost) while this thread has them blocked; others still get theirs.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = bpf_object__load(obj);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return err;
}

Napi::Promise DetachInBackground(Napi::Env env, std::vector<bpf_link*> links, bpf_object* obj) {
  auto* done = new Napi::Promise::Deferred(env);
  Napi::Promise promise = done->Promise();
  // Keeps the event loop alive until the programs are gone, as any pending I/O would.
  auto settle = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "flowtap-detach", 0, 1);
  std::thread([links = std::move(links), obj, settle, done]() mutable {
    // One after another: the kernel serialises most of them anyway (a thread per link cut 3.4 s
    // to 2.2 s here, but each waiting thread counts in the load average).
    for (bpf_link* l : links) bpf_link__destroy(l);
    if (obj != nullptr) bpf_object__close(obj);
    napi_status s = settle.BlockingCall([done](Napi::Env env, Napi::Function) {
      done->Resolve(env.Undefined());
      delete done;
    });
    if (s != napi_ok) delete done;  // the environment is going away: nobody waits
    settle.Release();
  }).detach();
  return promise;
}

void EnsureTracefs() {
  if (IsDir("/sys/kernel/tracing/events") || IsDir("/sys/kernel/debug/tracing/events")) return;
  mount("nodev", "/sys/kernel/tracing", "tracefs", 0, nullptr);
}

LibbpfLog::LibbpfLog() {
  std::lock_guard<std::mutex> lock(logMutex);
  logText.clear();
  previousPrint = libbpf_set_print(CapturePrint);
}

LibbpfLog::~LibbpfLog() { libbpf_set_print(previousPrint); }

std::string LibbpfLog::text() const {
  std::lock_guard<std::mutex> lock(logMutex);
  return logText;
}

void ThrowErrno(Napi::Env env, int err, const std::string& what, const std::string& log) {
  std::string msg = what + ": " + strerror(err);
  if (!log.empty()) msg += "\n" + log.substr(log.size() > 2000 ? log.size() - 2000 : 0);
  Napi::Error e = Napi::Error::New(env, msg);
  const char* name = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  throw e;
}

}  // namespace flowtap
