// SPDX-License-Identifier: GPL-2.0
/* On-CPU profiler: a perf_event software clock (99 Hz per CPU, opened by the loader) samples
 * the running task; each sample counts one (pid, tid, user stack, kernel stack) key. User space
 * reads and clears the counts every interval and symbolises the stacks itself. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define PERF_MAX_STACK_DEPTH 127

struct sample_key {
  __u32 pid;
  __u32 tid;
  __s32 user_stack_id;   /* -EFAULT etc. when the stack could not be walked */
  __s32 kernel_stack_id;
  char comm[16];         /* the process's (group leader's) name */
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, struct sample_key);
  __type(value, __u64);
} samples SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_STACK_TRACE);
  __uint(max_entries, 16384);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, PERF_MAX_STACK_DEPTH * sizeof(__u64));
} stacks SEC(".maps");

/* [0] samples dropped because the samples map was full, [1] samples taken. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u64);
} profile_counters SEC(".maps");

/* 0: every process; otherwise only this tgid (tests, focused profiling). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} profile_pid SEC(".maps");

static __always_inline void bump(__u32 idx) {
  __u64 *v = bpf_map_lookup_elem(&profile_counters, &idx);
  if (v) *v += 1;
}

SEC("perf_event")
int on_cpu_sample(struct bpf_perf_event_data *ctx) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  __u32 tgid = pid_tgid >> 32;
  if (tgid == 0) return 0; /* idle */
  __u32 zero = 0;
  __u32 *only = bpf_map_lookup_elem(&profile_pid, &zero);
  if (only && *only && *only != tgid) return 0;
  struct sample_key key = {};
  key.pid = tgid;
  key.tid = (__u32)pid_tgid;
  key.user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
  key.kernel_stack_id = bpf_get_stackid(ctx, &stacks, 0);
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  if (BPF_CORE_READ_STR_INTO(&key.comm, task, group_leader, comm) < 0)
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
  __u64 one = 1;
  __u64 *count = bpf_map_lookup_elem(&samples, &key);
  if (count) __sync_fetch_and_add(count, 1);
  else if (bpf_map_update_elem(&samples, &key, &one, BPF_NOEXIST)) bump(0);
  bump(1);
  return 0;
}
