// Helpers shared by the eBPF loaders: tracefs mount, libbpf log capture, errno-coded errors.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

struct bpf_object;
struct bpf_link;

namespace flowtap {

// Mounts tracefs at /sys/kernel/tracing when it is missing (libbpf resolves tracepoint ids there).
// Failure is left to the attach step to report.
void EnsureTracefs();

// While alive, captures libbpf's warnings (verifier logs, missing BTF, ...) for error messages.
class LibbpfLog {
 public:
  LibbpfLog();
  ~LibbpfLog();
  std::string text() const;
};

// bpf_object__load with this thread's signals blocked: the verifier gives up with EAGAIN when a
// signal is pending (V8's profiler SIGPROF, a child's SIGCHLD), and libbpf retries only 5 times.
int LoadBpfObject(bpf_object* obj);

// Destroys the links, then the object, on a detached thread (each link waits for an RCU grace
// period, so this takes up to seconds). The promise settles once the programs no longer run.
Napi::Promise DetachInBackground(Napi::Env env, std::vector<bpf_link*> links, bpf_object* obj);

// Throws an Error whose `code` is the errno name (EPERM, ENOENT, ...), `errno` the number, and
// whose message ends with the tail of the libbpf log.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const std::string& what, const std::string& log);

}  // namespace flowtap
