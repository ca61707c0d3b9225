// SPDX-License-Identifier: GPL-2.0
/* Socket tracer on tracepoints only (kprobes/fentry do not attach on the target hosts).
 * A send's entry handler (syscalls/sys_enter_*) stamps it and remembers its arguments in the
 * thread's task storage. The bytes a write, writev, sendto, sendmsg, read or readv moved are
 * reported from sock/sock_send_length and sock/sock_recv_length (tp_btf), which fire inside the
 * syscall for sockets only, with the socket at hand: reads and writes of files, pipes and eventfds
 * run no exit program at all. recvfrom, recvmsg and the mmsg calls report at their syscall exits
 * (the peer's address reaches the caller after sock_recv_length; one mmsg call is many socket
 * calls). A receive reads its arguments from the registers the syscall saved. Kernels before 6.4
 * lack the sock/ tracepoints: there the loader attaches the io_exit_ programs instead. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_tracing.h>
#include "socket_trace.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MAX_IOV 8
#define MAX_MMSG 16 /* messages reported per sendmmsg/recvmmsg */

/* Records: one area per CPU (see struct area_ctl). Value size and entries are the loader's. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __uint(key_size, sizeof(__u32));
  __uint(value_size, 4096);
} areas SEC(".maps");

/* Bytes per CPU area minus one, a power of two minus one: set by the loader before load, so the
 * verifier knows it as a constant and can bound a record's place in the element. */
const volatile __u64 area_mask = 0;

/* The TLS uprobes' records (a uprobe can be preempted in the middle of a record: the ring's
 * reserve and commit are safe against that, an area is not), and the reader's wakeups (empty
 * 8-byte records): the areas cannot wake a process. The loader sizes it. */
struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 64 << 10);
} events SEC(".maps");

/* The socket's tuple is cached: once TCP reaches CLOSE the kernel clears the local port, so
 * events after the peer's FIN (and the close itself) report what the socket was. */
struct sock_info {
  __u64 socket_id;
  __u64 sk;       /* the struct sock: an entry left by an fd reused without close is told apart */
  __u8 role;
  __u8 ip_version;
  __u8 protocol;
  __u8 tls;       /* plaintext comes from TLS uprobes: the socket's ciphertext events are dropped */
  __u16 local_port;
  __u16 remote_port;
  __u8 local_addr[16];
  __u8 remote_addr[16];
};

/* (tgid << 32 | fd) -> socket; removed on close so that short connections leave nothing behind. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, struct sock_info);
} socket_info SEC(".maps");

struct active_io {
  __u64 ts_ns;   /* sends only: a receive is stamped at exit */
  __u64 buf;     /* buffer, iovec array, msghdr or mmsghdr array, per `syscall` */
  __u64 addr;    /* sendto/recvfrom: the peer's sockaddr (unconnected UDP), 0 if none */
  __u32 fd;
  __u32 vlen;    /* iovcnt for readv/writev */
  __u8 syscall;  /* 0: the thread is in no traced syscall */
  __u8 direction;
  __u8 pad[2];
};

/* thread_state.tls: TLS work pending on the thread, so that syscall entries skip the TLS maps
 * (and the socket check they need) unless one of these is set. */
#define TLS_IN_CALL 1 /* inside SSL_read/SSL_write: tls_active holds the call */
#define TLS_PENDING 2 /* a TLS write waits in tls_pending for the thread's next socket send */

/* Per thread, in task storage (freed with the thread; no hash update/delete per syscall):
 * the traced syscall it is in, its syscall_trace_id and the pid filter's verdict. */
struct thread_state {
  struct active_io io;
  __u64 trace_id;
  __u32 filter_gen;     /* config.filter_gen the verdict was taken at; 0: none yet */
  __s32 last_in_fd;     /* socket the thread last received on: names the socket of a TLS library
                         * that reads ciphertext outside SSL_read (Node's memory BIOs) */
  __u8 wanted;          /* pid filter verdict for this thread's process */
  __u8 last_direction;
  __u8 inited;
  __u8 tls;             /* TLS_IN_CALL | TLS_PENDING */
  __u8 pad[4];
};

struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct thread_state);
} thread_state SEC(".maps");

/* tgid -> 1 (trace) or 2 (skip), read according to config.pid_mode. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32);
  __type(value, __u8);
} pid_filter SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct sock_trace_config);
} trace_config SEC(".maps");

/* [0]: next socket_id (seeded by the loader); [1] unused (trace ids: trace_id_gen). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 2);
  __type(key, __u32);
  __type(value, __u64);
} id_gen SEC(".maps");

/* Per-CPU syscall_trace_id counters: a shared atomic counter moved its cache line between the
 * CPUs of a client and a server on every request. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} trace_id_gen SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, CNT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

/* A record as the programs build it in an area: the header, then room for 2x the cap, so a
 * verifier-visible bound holds for "offset < cap, length <= cap" when copying several iovecs one
 * after another (AREA_SLACK covers it; only cap_len bytes are ever written). */
struct record {
  struct sock_event ev;
  __u8 data[2 * SOCK_TRACE_MAX_CAP];
};
_Static_assert(sizeof(struct area_ctl) == 128, "area_ctl layout");
_Static_assert(AREA_SLACK >= sizeof(struct record), "a record must fit in the slack");
_Static_assert(__builtin_offsetof(struct sock_event, cap_len) == 40, "the reader (native/src/bpf_area_reader.h) reads cap_len there");

/* Where a TLS uprobe builds its record before bpf_ringbuf_output. `busy`: a preempted uprobe is
 * building one here; another uprobe on the CPU meanwhile loses its plaintext, counted. */
struct tls_scratch {
  __u64 busy;
  struct record rec;
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct tls_scratch);
} tls_scratch SEC(".maps");

/* Two variants for `node dist/bench/ebpf-overhead.js floor`, never built by bpf/build.sh, that
 * price what the programs a request runs cannot avoid. VARIANT_HOOKS_ONLY: the send entries,
 * sock_sent and sock_received return at once (the tracepoints' dispatch alone). VARIANT_FLOOR:
 * they do only what any tracer reporting these events must: a send's entry stamp, and for each
 * socket read or write a record with the header, the tuple, the stamp and the payload; no thread
 * state, socket map, syscall_trace_id, pid filter or TLS check. The send's stamp waits in a
 * per-CPU slot, which is right for the bench's non-blocking server and nothing else. */
#ifdef VARIANT_FLOOR
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} floor_entry_ts SEC(".maps");
#endif

/* The most a record takes in an area: room is checked for this before a record is started. */
#define RECORD_MAX (sizeof(struct sock_event) + SOCK_TRACE_MAX_CAP)
/* Bytes a CPU writes between two looks at its area's fill level. */
#define WAKEUP_CHECK_BYTES (16 << 10)

static __always_inline void count(__u32 idx) {
  __u64 *v = bpf_map_lookup_elem(&counters, &idx);
  if (v) *v += 1;
}

static __always_inline void count_n(__u32 idx, __u64 n) {
  __u64 *v = bpf_map_lookup_elem(&counters, &idx);
  if (v) *v += n;
}

static __always_inline __u64 next_id(__u32 idx) {
  __u64 *v = bpf_map_lookup_elem(&id_gen, &idx);
  if (!v) return 0;
  return __sync_fetch_and_add(v, 1);
}

/* Unique without sharing: this CPU's count times 1024 plus the CPU (ids stay below 2^53 for
 * JavaScript numbers for centuries of requests). Never 0, which means "none". */
static __always_inline __u64 next_trace_id(void) {
  __u32 zero = 0;
  __u64 *c = bpf_map_lookup_elem(&trace_id_gen, &zero);
  if (!c) return 0;
  *c += 1;
  return (*c << 10) | (bpf_get_smp_processor_id() & 1023);
}

static __always_inline struct sock_trace_config *get_config(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&trace_config, &zero);
}

/* Payload bytes to copy per event: the loader's cap_bytes, bounded for the verifier. */
static __always_inline __u32 capture_cap(void) {
  struct sock_trace_config *cfg = get_config();
  __u32 cap = cfg ? cfg->cap_bytes : 0;
  if (cap > SOCK_TRACE_MAX_CAP) cap = SOCK_TRACE_MAX_CAP;
  return cap;
}

/* pid_tgid of `task` (the current task): loads through its BTF pointer instead of another helper
 * call, since every call and return costs more than the loads under this kernel's mitigations. */
static __always_inline __u64 task_pid_tgid(const struct task_struct *task) {
  return ((__u64)task->tgid << 32) | (__u32)task->pid;
}

/* Key of a process's fd in socket_info and fd_ssl. */
static __always_inline __u64 fd_key(__u32 tgid, __u32 fd) {
  return ((__u64)tgid << 32) | fd;
}

/* The current thread's state (task is the current task), created on first use when `create`. */
static __always_inline struct thread_state *thread_state_get(struct task_struct *task, bool create) {
  struct thread_state *st = bpf_task_storage_get(&thread_state, task, 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
  if (st && !st->inited) {
    st->inited = 1;
    st->last_in_fd = -1;
  }
  return st;
}

/* The pid filter's verdict for the current thread's process, kept in the thread's state until the
 * loader changes the filter (it bumps config.filter_gen after updating pid_filter): one hash
 * lookup per thread and filter change instead of one per syscall. */
static __always_inline bool thread_wanted(struct thread_state *st, __u32 tgid, const struct sock_trace_config *cfg) {
  __u32 gen = cfg->filter_gen; /* read before the hash, so a change in between is seen next time */
  if (gen != 0 && st->filter_gen == gen) return st->wanted;
  __u8 *mark = bpf_map_lookup_elem(&pid_filter, &tgid);
  bool wanted = cfg->pid_mode == 1 ? (mark && *mark == 1) : !(mark && *mark == 2);
  st->wanted = wanted;
  st->filter_gen = gen;
  return wanted;
}

/* A kernel pointer read as a number, as the BTF-typed pointer it is: bpf_rdonly_cast, which the
 * verifier turns into a plain move. Loads through it are guarded plain loads, where
 * BPF_CORE_READ makes a bpf_probe_read_kernel call per hop. */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define kernel_cast(ptr, type) ((type *)bpf_rdonly_cast((const void *)(ptr), bpf_core_type_id_kernel(type)))

/* A TCP or UDP socket over IPv4 or IPv6: what the tracer reports. */
static __always_inline bool is_inet_sock(const struct sock *sk) {
  __u16 family = sk->__sk_common.skc_family;
  if (family != AF_INET && family != AF_INET6) return false;
  __u16 proto = sk->sk_protocol;
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

/* The inet sock behind fd of `task` (the current task), or NULL for anything else. One helper
 * call (the fd array slot, indexed by a variable) and plain loads: this check runs for every read
 * and write of a file or pipe that moves bytes, and for the first data of each socket. */
static __always_inline struct sock *inet_sock_of_fd(struct task_struct *task, __u32 fd) {
  struct fdtable *fdt = task->files->fdt; /* a task without files (exiting) loads NULL */
  if (!fdt || fd >= fdt->max_fds) return NULL;
  struct file *file = NULL;
  if (bpf_probe_read_kernel(&file, sizeof(file), &fdt->fd[fd]) || !file) return NULL;
  file = kernel_cast(file, struct file);
  if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK) return NULL;
  struct socket *sock = kernel_cast(file->private_data, struct socket);
  struct sock *sk = sock->sk;
  return sk && is_inet_sock(sk) ? sk : NULL;
}

/* fd is an inet socket: one the tracer already knows (socket_info), else one the fd table says is. */
static __always_inline bool is_inet_socket(struct task_struct *task, __u32 fd) {
  __u64 key = fd_key(task->tgid, fd);
  return bpf_map_lookup_elem(&socket_info, &key) || inet_sock_of_fd(task, fd);
}

/* sk comes from inet_sock_of_fd: plain loads. */
static __always_inline void fill_tuple(struct sock_event *ev, struct sock *sk) {
  __u16 family = sk->__sk_common.skc_family;
  ev->protocol = (__u8)sk->sk_protocol;
  ev->local_port = sk->__sk_common.skc_num;
  ev->remote_port = bpf_ntohs(sk->__sk_common.skc_dport);
  if (family == AF_INET) {
    __u32 src = sk->__sk_common.skc_rcv_saddr;
    __u32 dst = sk->__sk_common.skc_daddr;
    __builtin_memset(ev->local_addr, 0, 10);
    __builtin_memset(ev->remote_addr, 0, 10);
    ev->local_addr[10] = 0xff; ev->local_addr[11] = 0xff;
    ev->remote_addr[10] = 0xff; ev->remote_addr[11] = 0xff;
    __builtin_memcpy(&ev->local_addr[12], &src, 4);
    __builtin_memcpy(&ev->remote_addr[12], &dst, 4);
    ev->ip_version = 4;
  } else {
    for (int i = 0; i < 4; i++) {
      __u32 src = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[i];
      __u32 dst = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32[i];
      __builtin_memcpy(&ev->local_addr[4 * i], &src, 4);
      __builtin_memcpy(&ev->remote_addr[4 * i], &dst, 4);
    }
    /* A v4-mapped v6 socket reports like a v4 one, as the packet path does. */
    ev->ip_version = (ev->remote_addr[10] == 0xff && ev->remote_addr[11] == 0xff &&
                      ev->remote_addr[0] == 0 && ev->remote_addr[8] == 0) ? 4 : 6;
  }
}

static __always_inline struct area_ctl *cpu_area(void) {
  __u32 cpu = bpf_get_smp_processor_id();
  return bpf_map_lookup_elem(&areas, &cpu);
}

/* Room for one record at the head of this CPU's area, or NULL (counted). */
static __always_inline struct record *area_reserve(struct area_ctl *ctl) {
  __u64 head = ctl->head;
  if (head + RECORD_MAX > ctl->limit) {
    /* Looked at only when the room known so far runs out: tail is on the reader's cache line. */
    ctl->limit = *(volatile __u64 *)&ctl->tail + area_mask + 1;
    if (head + RECORD_MAX > ctl->limit) {
      count(CNT_RINGBUF_FULL);
      return NULL;
    }
  }
  return (struct record *)((void *)ctl + sizeof(struct area_ctl) + (head & area_mask));
}

/* The fields every record has. */
static __always_inline void record_header(struct record *s, __u8 kind, struct task_struct *task, __u32 fd) {
  struct sock_event *ev = &s->ev;
  ev->kind = kind;
  ev->pid = task->tgid;
  ev->tid = task->pid;
  ev->fd = fd;
  ev->syscall_len = 0;
  ev->cap_len = 0;
  ev->trace_id = 0;
  ev->direction = 0;
  ev->is_tls = 0;
  ev->pad0 = 0;
  /* The process's name (its main thread's comm), as process_kname: worker threads rename
   * themselves. Read through the BTF task pointer: plain loads, no probe-read helpers. */
  __builtin_memcpy(ev->comm, task->group_leader->comm, sizeof(ev->comm));
}

/* Room for one record at the head of this CPU's area (tracepoint programs only), or NULL. */
static __always_inline struct record *area_record(void) {
  struct area_ctl *ctl = cpu_area();
  return ctl ? area_reserve(ctl) : NULL;
}

/* Starts a record in this CPU's area; NULL when there is no room. */
static __always_inline struct record *record_start(__u8 kind, struct task_struct *task, __u32 fd) {
  struct record *s = area_record();
  if (s) record_header(s, kind, task, fd);
  return s;
}

/* Publishes the record started at the head of this CPU's area. A wakeup per record would cost an
 * irq_work (a self-IPI, expensive in VMs) and a reader wakeup: the reader drains on a short timer
 * and is woken early only once wakeup_bytes wait here, at most once per pass of its. */
static __always_inline void submit(struct record *s) {
  struct area_ctl *ctl = cpu_area();
  if (!ctl) return;
  __u32 cap_len = s->ev.cap_len;
  if (cap_len > SOCK_TRACE_MAX_CAP) cap_len = SOCK_TRACE_MAX_CAP;
  __u64 head = ctl->head + ((sizeof(struct sock_event) + cap_len + 7) & ~7ULL);
  /* The record's stores before the head's: the reader trusts every byte below the head, and x86
   * keeps stores in program order once the compiler does. */
  asm volatile("" ::: "memory");
  *(volatile __u64 *)&ctl->head = head;
  count(CNT_EVENTS);
  if (head < ctl->check_at) return;
  ctl->check_at = head + WAKEUP_CHECK_BYTES;
  struct sock_trace_config *cfg = get_config();
  __u64 threshold = cfg ? cfg->wakeup_bytes : 0;
  __u64 pass = *(volatile __u64 *)&ctl->pass + 1;
  if (head - *(volatile __u64 *)&ctl->tail >= threshold && ctl->kicked_pass != pass) {
    ctl->kicked_pass = pass;
    __u64 kick = 0;
    bpf_ringbuf_output(&events, &kick, sizeof(kick), BPF_RB_FORCE_WAKEUP);
  }
}

/* A TLS uprobe's record: built in this CPU's TLS scratch, claimed against another uprobe that
 * runs while this one is preempted; NULL (counted) when it is held. tls_release gives it back. */
static __always_inline struct tls_scratch *tls_record_start(struct task_struct *task, __u32 fd) {
  __u32 zero = 0;
  struct tls_scratch *t = bpf_map_lookup_elem(&tls_scratch, &zero);
  if (!t) return NULL;
  if (__sync_val_compare_and_swap(&t->busy, 0, 1) != 0) {
    count(CNT_TLS_BUSY);
    return NULL;
  }
  record_header(&t->rec, SOCK_EVENT_DATA, task, fd);
  return t;
}

static __always_inline void tls_release(struct tls_scratch *t) { t->busy = 0; }

/* Sends a TLS record through the ring (the reader merges it with the areas by timestamp). */
static __always_inline void tls_submit(struct tls_scratch *t) {
  __u64 size = sizeof(struct sock_event) + t->rec.ev.cap_len;
  if (size > sizeof(struct record)) size = sizeof(struct record);
  struct sock_trace_config *cfg = get_config();
  __u64 threshold = cfg ? cfg->wakeup_bytes : 0;
  __u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size >= threshold ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
  if (bpf_ringbuf_output(&events, &t->rec, size, flags)) count(CNT_RINGBUF_FULL);
  else count(CNT_EVENTS);
  tls_release(t);
}

/* Remembers a connected/accepted socket with its role; returns its socket_id. */
static __always_inline __u64 remember_socket(__u64 key, __u8 role, const struct sock_event *ev, const struct sock *sk) {
  struct sock_info info = {
    .socket_id = next_id(0), .sk = (__u64)sk, .role = role, .ip_version = ev->ip_version, .protocol = ev->protocol,
    .local_port = ev->local_port, .remote_port = ev->remote_port,
  };
  __builtin_memcpy(info.local_addr, ev->local_addr, 16);
  __builtin_memcpy(info.remote_addr, ev->remote_addr, 16);
  if (bpf_map_update_elem(&socket_info, &key, &info, BPF_ANY)) count(CNT_SOCKET_MAP_FULL);
  return info.socket_id;
}

static __always_inline void cached_tuple(struct sock_event *ev, const struct sock_info *info) {
  ev->ip_version = info->ip_version;
  ev->protocol = info->protocol;
  ev->local_port = info->local_port;
  ev->remote_port = info->remote_port;
  __builtin_memcpy(ev->local_addr, info->local_addr, 16);
  __builtin_memcpy(ev->remote_addr, info->remote_addr, 16);
}

/* The entry holds a connected socket's tuple: no need to read the socket. */
static __always_inline bool knows_tuple(const struct sock_info *info) {
  return info && info->remote_port != 0 && info->local_port != 0;
}

/* ev's socket_id, role and tuple. sk NULL: all from the fd's entry `info` (knows_tuple). Else the
 * tuple from sk, with the entry's id and role if there is one, or the socket remembered now (key:
 * its fd_key) with an unknown role. */
static __always_inline void describe_socket(struct sock_event *ev, const struct sock_info *info, struct sock *sk, __u64 key) {
  if (!sk) {
    if (!info) return;
    ev->socket_id = info->socket_id;
    ev->role = info->role;
    cached_tuple(ev, info);
    return;
  }
  fill_tuple(ev, sk);
  if (info) {
    ev->socket_id = info->socket_id;
    ev->role = info->role;
  } else {
    ev->socket_id = remember_socket(key, SOCK_ROLE_UNKNOWN, ev, sk);
    ev->role = SOCK_ROLE_UNKNOWN;
  }
}

/* syscall_trace_id: the first receive after a send (or ever) on this thread opens a new id;
 * sends carry the thread's current id, linking a server's response to its request. */
static __always_inline void set_trace_id(struct sock_event *ev, struct thread_state *st, __u8 direction, __u32 fd) {
  if (!st) return;
  if (direction == SOCK_DIR_INGRESS) {
    if (st->last_direction != SOCK_DIR_INGRESS || st->trace_id == 0) {
      st->trace_id = next_trace_id();
      st->last_direction = SOCK_DIR_INGRESS;
    }
    st->last_in_fd = fd;
  } else {
    st->last_direction = SOCK_DIR_EGRESS;
  }
  ev->trace_id = st->trace_id;
}

/* ---- TLS: state shared with the syscall handlers ---- */

/* A thread inside SSL_read/SSL_write: the socket syscall it makes meanwhile names the fd. */
struct tls_call {
  __u64 ssl;
  __u64 buf;
  __u64 len_ptr;  /* _ex forms: where the library stores the byte count */
  __u64 ts_ns;
  __s32 fd;       /* -1 until a socket syscall is seen inside the call */
  __u8 direction;
  __u8 ex;
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, __u64);
  __type(value, struct tls_call);
} tls_active SEC(".maps");

struct ssl_key {
  __u32 tgid;
  __u32 pad;
  __u64 ssl;
};

/* (tgid, SSL*) -> fd, learned from the syscalls inside earlier calls: an SSL_read served from
 * the library's buffer makes no syscall. LRU: SSL objects are freed without telling us. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, struct ssl_key);
  __type(value, __s32);
} ssl_fd SEC(".maps");

/* A TLS write whose socket is not known yet (Node encrypts into memory, then writes the
 * ciphertext itself): the event waits here, keyed by thread, for the thread's next socket send,
 * which names the socket. ev.socket_id holds the SSL* meanwhile. Layout = the head of a record. */
struct tls_pending {
  struct sock_event ev;
  __u8 data[SOCK_TRACE_MAX_CAP];
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 4096);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __u64);
  __type(value, struct tls_pending);
} tls_pending SEC(".maps");

/* (tgid << 32 | fd) -> the SSL* learnt for that fd: lets close() forget the SSL*->fd entry. A
 * process frees an SSL* and gets the same address for its next connection; without this the new
 * connection inherited the old, closed fd and its plaintext was lost. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u64);
} fd_ssl SEC(".maps");

/* Records SSL* -> fd (flags BPF_ANY or BPF_NOEXIST) and its reverse; an SSL* the fd was mapped
 * to before is forgotten, since one socket carries one TLS session at a time. */
static __always_inline void learn_ssl_fd(__u32 tgid, __u64 ssl, __u32 fd, __u64 flags) {
  struct ssl_key k = { .tgid = tgid, .ssl = ssl };
  __s32 v = fd;
  if (bpf_map_update_elem(&ssl_fd, &k, &v, flags)) return;
  __u64 fkey = fd_key(tgid, fd);
  __u64 *prev = bpf_map_lookup_elem(&fd_ssl, &fkey);
  if (prev && *prev != ssl) {
    struct ssl_key old = { .tgid = tgid, .ssl = *prev };
    __s32 *oldfd = bpf_map_lookup_elem(&ssl_fd, &old);
    if (oldfd && *oldfd == (__s32)fd) bpf_map_delete_elem(&ssl_fd, &old);
  }
  bpf_map_update_elem(&fd_ssl, &fkey, &ssl, BPF_ANY);
}

/* The fd is closing: its SSL* no longer names it. */
static __always_inline void forget_fd_ssl(__u32 tgid, __u32 fd) {
  __u64 fkey = fd_key(tgid, fd);
  __u64 *ssl = bpf_map_lookup_elem(&fd_ssl, &fkey);
  if (!ssl) return;
  struct ssl_key k = { .tgid = tgid, .ssl = *ssl };
  __s32 *known = bpf_map_lookup_elem(&ssl_fd, &k);
  if (known && *known == (__s32)fd) bpf_map_delete_elem(&ssl_fd, &k);
  bpf_map_delete_elem(&fd_ssl, &fkey);
}

/* True when the thread is inside a TLS call: remember the fd, and let the caller drop the
 * ciphertext event (the uprobe reports the plaintext of the same bytes). */
static __always_inline bool tls_claims_fd(__u64 pid_tgid, __u32 fd) {
  struct tls_call *tc = bpf_map_lookup_elem(&tls_active, &pid_tgid);
  if (!tc) return false;
  tc->fd = fd;
  learn_ssl_fd(pid_tgid >> 32, tc->ssl, fd, BPF_ANY);
  return true;
}

static __always_inline void complete_tls_pending(struct task_struct *task, __u32 fd, struct thread_state *st);

/* An unconnected UDP socket has no peer in the kernel socket: take it from the syscall's
 * sockaddr (sendto's destination, recvfrom's/recvmsg's source) when there is one. */
static __always_inline void peer_from_sockaddr(struct sock_event *ev, __u64 addr) {
  if (!addr || ev->remote_port != 0) return;
  struct sockaddr_in6 sa = {};
  if (bpf_probe_read_user(&sa, sizeof(sa), (const void *)addr)) return;
  if (sa.sin6_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&sa;
    __builtin_memset(ev->remote_addr, 0, 10);
    ev->remote_addr[10] = 0xff;
    ev->remote_addr[11] = 0xff;
    __builtin_memcpy(&ev->remote_addr[12], &in->sin_addr.s_addr, 4);
    ev->remote_port = bpf_ntohs(in->sin_port);
  } else if (sa.sin6_family == AF_INET6) {
    __builtin_memcpy(ev->remote_addr, &sa.sin6_addr, 16);
    ev->remote_port = bpf_ntohs(sa.sin6_port);
  }
}

/* ---- data syscalls ---- */

/* The calling thread's state when its process is traced, with no syscall of its own pending (a
 * thread is in one syscall at a time, so what an earlier entry left there is stale); NULL when
 * the thread is not traced, or its state cannot be had (counted). */
static __always_inline struct thread_state *traced_thread_state(const struct sock_trace_config *cfg, struct task_struct *task) {
  struct thread_state *st = thread_state_get(task, true);
  if (!st) {
    count(CNT_ACTIVE_MAP_FULL);
    return NULL;
  }
  st->io.syscall = 0;
  return thread_wanted(st, task->tgid, cfg) ? st : NULL;
}

/* A send's entry: remembers its arguments and stamps it (a send is timed at its entry). */
static __always_inline int enter_send(__u32 fd, __u64 buf, __u32 vlen, __u8 sys, __u64 addr) {
#if defined(VARIANT_HOOKS_ONLY)
  return 0;
#elif defined(VARIANT_FLOOR)
  __u32 zero = 0;
  __u64 *entry_ts = bpf_map_lookup_elem(&floor_entry_ts, &zero);
  if (entry_ts) *entry_ts = bpf_ktime_get_ns();
  return 0;
#else
  struct sock_trace_config *cfg = get_config();
  if (!cfg) return 0;
  struct task_struct *task = bpf_get_current_task_btf();
  struct thread_state *st = traced_thread_state(cfg, task);
  if (!st) return 0;
  /* Whether fd is an inet socket is decided at the exit, and only when bytes moved: sends to
   * files and pipes cost no lookup here. Only TLS work pending on the thread needs the socket
   * known now. */
  if (st->tls && cfg->tls_enabled) {
    if (!is_inet_socket(task, fd)) return 0;
    if ((st->tls & TLS_IN_CALL) && tls_claims_fd(task_pid_tgid(task), fd)) return 0;
    if (st->tls & TLS_PENDING) complete_tls_pending(task, fd, st);
  }
  st->io.ts_ns = bpf_ktime_get_ns();
  st->io.buf = buf;
  st->io.addr = addr;
  st->io.fd = fd;
  st->io.vlen = vlen;
  st->io.direction = SOCK_DIR_EGRESS;
  st->io.syscall = sys;
  return 0;
#endif
}

/* Copies up to cap - off bytes of src to data[off]; returns the bytes copied. */
static __always_inline __u32 copy_user(struct record *s, __u32 off, __u64 src, __u64 len, __u32 cap) {
  if (off >= cap || off >= SOCK_TRACE_MAX_CAP) return 0;
  __u64 n = len;
  if (n > cap - off) n = cap - off;
  if (n > SOCK_TRACE_MAX_CAP) n = SOCK_TRACE_MAX_CAP;
  if (n == 0) return 0;
  /* off < MAX_CAP already; the mask makes that visible to the verifier after clang reorders. */
  __u32 at = off & (SOCK_TRACE_MAX_CAP - 1);
  asm volatile("" : "+r"(at));
  at &= (SOCK_TRACE_MAX_CAP - 1);
  if (bpf_probe_read_user(&s->data[at], n, (const void *)src)) {
    count(CNT_READ_USER_FAULT);
    return 0;
  }
  return (__u32)n;
}

static __always_inline __u32 copy_iov(struct record *s, __u64 iov_ptr, __u32 iovcnt, __u64 total, __u32 cap) {
  __u32 off = 0;
  __u64 left = total;
  /* The iovec array in one read (the kernel just read it, so it is all readable): each user
   * read has a fixed cost that dominates for small buffers. */
  struct iovec iovs[MAX_IOV];
  __u32 n_iov = iovcnt < MAX_IOV ? iovcnt : MAX_IOV;
  if (n_iov == 0) return 0;
  __u64 bytes = (__u64)n_iov * sizeof(struct iovec);
  asm volatile("" : "+r"(bytes)); /* clamp the value passed, not one clang derived it from */
  if (bytes > sizeof(iovs)) bytes = sizeof(iovs);
  if (bpf_probe_read_user(iovs, bytes, (const void *)iov_ptr)) return 0;
  for (int i = 0; i < MAX_IOV; i++) {
    if (i >= n_iov || left == 0 || off >= cap) break;
    struct iovec iov = iovs[i];
    __u64 n = iov.iov_len < left ? iov.iov_len : left;
    __u32 got = copy_user(s, off, (__u64)iov.iov_base, n, cap);
    if (got == 0) break;
    off += got;
    left -= n;
  }
  return off;
}

/* sendmmsg/recvmmsg: ret is a message count; one event per message (each with its own length,
 * bytes and, for unconnected UDP, peer), up to MAX_MMSG; the rest are counted as lost. The loop
 * runs through bpf_loop: its body is verified once, not once per iteration. */
struct mmsg_walk {
  struct record *s; /* the record being built: each message's starts as a copy of the last's */
  __u64 vec;
  __u32 cap;
  __u32 n;
  __u16 remote_port;
  __u8 remote_addr[16];
};

static long mmsg_one(__u32 i, void *arg) {
  struct mmsg_walk *w = arg;
  struct record *s = w->s;
  if (!s) return 1;
  if (i > 0) {
    struct record *next = area_record();
    if (!next) {
      if (w->n > i + 1) count_n(CNT_RINGBUF_FULL, w->n - i - 1); /* area_reserve counted this one */
      return 1;
    }
    __builtin_memcpy(&next->ev, &s->ev, sizeof(struct sock_event));
    s = next;
    w->s = next;
  }
  struct sock_event *ev = &s->ev;
  struct mmsghdr mm;
  if (bpf_probe_read_user(&mm, sizeof(mm), (const void *)(w->vec + (__u64)i * sizeof(struct mmsghdr)))) {
    count(CNT_READ_USER_FAULT);
    return 1;
  }
  ev->remote_port = w->remote_port;
  __builtin_memcpy(ev->remote_addr, w->remote_addr, 16);
  ev->cap_len = copy_iov(s, (__u64)mm.msg_hdr.msg_iov, (__u32)mm.msg_hdr.msg_iovlen, mm.msg_len, w->cap);
  peer_from_sockaddr(ev, (__u64)mm.msg_hdr.msg_name);
  ev->syscall_len = mm.msg_len;
  submit(s);
  return 0;
}

static __always_inline void submit_mmsg(struct record *s, __u64 vec, long ret, __u32 cap) {
  __u32 n = ret > MAX_MMSG ? MAX_MMSG : (__u32)ret;
  struct mmsg_walk w = { .s = s, .vec = vec, .cap = cap, .n = n, .remote_port = s->ev.remote_port };
  __builtin_memcpy(w.remote_addr, s->ev.remote_addr, 16);
  bpf_loop(n, mmsg_one, &w, 0);
  if (ret > MAX_MMSG) count_n(CNT_MMSG_UNREPORTED, ret - MAX_MMSG);
}

/* Reports the bytes a data syscall moved. `a` holds its arguments: remembered at the entry for a
 * send (whose timestamp is the entry's), read from the registers for a receive. `hook_sk` is the
 * socket the sock/ tracepoint fired for (NULL at an mmsg syscall exit); it must be fd's own: a
 * syscall on a file can send on a kernel socket of its own (an NFS RPC) in the caller's context.
 * `mmsg` is a constant at every call: only the sendmmsg/recvmmsg programs carry the per-message
 * loop, which made loading ten programs take 9 s of verification instead of 0.4 s. */
static __always_inline int emit_io(long ret, const struct active_io *a, struct thread_state *st, struct task_struct *task,
                                   struct sock *hook_sk, const bool mmsg) {
  __u64 key = fd_key(task->tgid, a->fd);
  struct sock_info *info = bpf_map_lookup_elem(&socket_info, &key);
  if (info && info->tls) return 0; /* ciphertext of a socket whose plaintext the uprobes report */
  /* An entry for another socket is stale (the fd was reused without a close the tracer saw). */
  if (info && hook_sk && info->sk != (__u64)hook_sk) info = NULL;
  /* A connected socket keeps its tuple: the cache spares the fd walk on the hot path (and still
   * holds the local port after TCP_CLOSE, which the kernel zeroes). Anything else is looked up
   * before the record is started, so that files, pipes and unix sockets end here. */
  struct sock *sk = NULL;
  if (!knows_tuple(info)) {
    sk = inet_sock_of_fd(task, a->fd);
    if (!sk || (hook_sk && (__u64)sk != (__u64)hook_sk)) return 0;
  }
  struct record *s = record_start(SOCK_EVENT_DATA, task, a->fd);
  if (!s) return 0;
  struct sock_event *ev = &s->ev;
  describe_socket(ev, info, sk, key);
  ev->syscall = a->syscall;
  ev->direction = a->direction;
  ev->ts_ns = a->direction == SOCK_DIR_EGRESS ? a->ts_ns : bpf_ktime_get_ns();

  set_trace_id(ev, st, a->direction, a->fd);

  __u32 cap = capture_cap();
  __u64 len = (__u64)ret;
  switch (a->syscall) {
  case SYS_READV:
  case SYS_WRITEV:
    ev->cap_len = copy_iov(s, a->buf, a->vlen, len, cap);
    break;
  case SYS_SENDMSG:
  case SYS_RECVMSG: {
    struct user_msghdr msg;
    if (bpf_probe_read_user(&msg, sizeof(msg), (const void *)a->buf) == 0) {
      ev->cap_len = copy_iov(s, (__u64)msg.msg_iov, (__u32)msg.msg_iovlen, len, cap);
      peer_from_sockaddr(ev, (__u64)msg.msg_name);
    }
    break;
  }
  case SYS_SENDMMSG:
  case SYS_RECVMMSG:
    if (mmsg) submit_mmsg(s, a->buf, ret, cap);
    return 0;
  default:
    ev->cap_len = copy_user(s, 0, a->buf, len, cap);
    peer_from_sockaddr(ev, a->addr);
  }
  ev->syscall_len = len > 0xffffffffULL ? 0xffffffff : (__u32)len;
  submit(s);
  return 0;
}

/* x86-64 syscall numbers, as pt_regs->orig_ax holds them. */
#define NR_read 0
#define NR_write 1
#define NR_close 3
#define NR_readv 19
#define NR_writev 20
#define NR_connect 42
#define NR_accept 43
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47
#define NR_accept4 288
#define NR_recvmmsg 299
#define NR_sendmmsg 307

#define TS_COMPAT 0x0002 /* thread_info.status: in a 32-bit syscall, whose numbers differ */

static __always_inline bool compat_syscall(struct task_struct *task) {
  return task->thread_info.status & TS_COMPAT;
}

#ifdef VARIANT_FLOOR
/* The least a report can do: no thread state, socket map, trace id, pid filter or TLS check; the
 * header, the tuple from the hook's socket, the stamp and the payload. */
static __always_inline int floor_report(long ret, const struct active_io *a, struct task_struct *task, struct sock *sk) {
  struct record *s = record_start(SOCK_EVENT_DATA, task, a->fd);
  if (!s) return 0;
  struct sock_event *ev = &s->ev;
  fill_tuple(ev, sk);
  ev->syscall = a->syscall;
  ev->direction = a->direction;
  ev->ts_ns = a->ts_ns;
  __u32 cap = capture_cap();
  __u64 len = (__u64)ret;
  if (a->syscall == SYS_WRITEV || a->syscall == SYS_READV) ev->cap_len = copy_iov(s, a->buf, a->vlen, len, cap);
  else ev->cap_len = copy_user(s, 0, a->buf, len, cap);
  ev->syscall_len = (__u32)len;
  submit(s);
  return 0;
}

/* A sock_send_length (egress) or sock_recv_length (ingress) hit of the floor variant: write and
 * writev, or read and readv, with their arguments from the saved registers. */
static __always_inline int floor_hit(struct sock *sk, int ret, __u8 direction) {
  if (ret <= 0 || !is_inet_sock(sk)) return 0;
  struct task_struct *task = bpf_get_current_task_btf();
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
  bool egress = direction == SOCK_DIR_EGRESS;
  struct active_io a = { .buf = regs->si, .fd = (__u32)regs->di, .direction = direction };
  if (regs->orig_ax == (egress ? NR_write : NR_read)) {
    a.syscall = egress ? SYS_WRITE : SYS_READ;
  } else if (regs->orig_ax == (egress ? NR_writev : NR_readv)) {
    a.syscall = egress ? SYS_WRITEV : SYS_READV;
    a.vlen = (__u32)regs->dx;
  } else {
    return 0;
  }
  if (egress) {
    __u32 zero = 0;
    __u64 *entry_ts = bpf_map_lookup_elem(&floor_entry_ts, &zero);
    a.ts_ns = entry_ts ? *entry_ts : 0;
  } else {
    a.ts_ns = bpf_ktime_get_ns();
  }
  return floor_report(ret, &a, task, sk);
}
#endif

/* A send's report, where its bytes are known: `sys` and `fd` name the syscall that moved them
 * (0 when it is none of ours); it must be the one whose entry the thread's state remembers. */
static __always_inline int report_send(long ret, __u8 sys, __u32 fd, struct task_struct *task, struct sock *sk, const bool mmsg) {
  struct thread_state *st = thread_state_get(task, false);
  if (!st || sys == 0 || st->io.syscall != sys || st->io.fd != fd) return 0;
  struct active_io a = st->io;
  st->io.syscall = 0;
  if (ret <= 0) return 0;
  return emit_io(ret, &a, st, task, sk, mmsg);
}

/* The send a sock_send_length hit belongs to, when its entry was traced: the syscall and fd the
 * registers name must be the ones the entry remembered (a sendfile or an io_uring send has no
 * entry of ours; a sendmmsg is reported at its exit). */
SEC("tp_btf/sock_send_length")
int BPF_PROG(sock_sent, struct sock *sk, int ret, int flags) {
#if defined(VARIANT_HOOKS_ONLY)
  return 0;
#elif defined(VARIANT_FLOOR)
  return floor_hit(sk, ret, SOCK_DIR_EGRESS);
#else
  if (ret <= 0 || !is_inet_sock(sk)) return 0;
  struct task_struct *task = bpf_get_current_task_btf();
  if (compat_syscall(task)) return 0;
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
  __u8 sys = 0;
  switch (regs->orig_ax) {
  case NR_write: sys = SYS_WRITE; break;
  case NR_writev: sys = SYS_WRITEV; break;
  case NR_sendto: sys = SYS_SENDTO; break;
  case NR_sendmsg: sys = SYS_SENDMSG; break;
  }
  return report_send(ret, sys, (__u32)regs->di, task, sk, false);
#endif
}

/* A receive has no entry program: its arguments are still in the registers the syscall saved
 * (bpf_task_pt_regs), and it is stamped here, as the syscall returns. x86-64 argument registers:
 * di, si, dx, r10, r8, r9. */
static __always_inline int report_recv(long ret, __u8 sys, struct task_struct *task, struct pt_regs *regs, struct sock *sk, const bool mmsg) {
  struct sock_trace_config *cfg = get_config();
  if (!cfg) return 0;
  struct thread_state *st = traced_thread_state(cfg, task);
  if (!st) return 0;
  struct active_io a = {
    .buf = regs->si, .fd = (__u32)regs->di, .syscall = sys, .direction = SOCK_DIR_INGRESS,
    .vlen = sys == SYS_READV ? (__u32)regs->dx : 0, .addr = sys == SYS_RECVFROM ? regs->r8 : 0,
  };
  /* A read inside SSL_read is the ciphertext of the plaintext the uprobe reports: it names the
   * SSL's socket and is not reported itself. */
  if ((st->tls & TLS_IN_CALL) && cfg->tls_enabled && is_inet_socket(task, a.fd) && tls_claims_fd(task_pid_tgid(task), a.fd)) return 0;
  return emit_io(ret, &a, st, task, sk, mmsg);
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(sock_received, struct sock *sk, int ret, int flags) {
#if defined(VARIANT_HOOKS_ONLY)
  return 0;
#elif defined(VARIANT_FLOOR)
  return floor_hit(sk, ret, SOCK_DIR_INGRESS);
#else
  if (ret <= 0 || !is_inet_sock(sk)) return 0;
  struct task_struct *task = bpf_get_current_task_btf();
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
  __u8 sys = 0;
  switch (regs->orig_ax) {
  case NR_read: sys = SYS_READ; break;
  case NR_readv: sys = SYS_READV; break;
  }
  if (sys == 0 || compat_syscall(task)) return 0;
  return report_recv(ret, sys, task, regs, sk, false);
#endif
}

/* Reports at a syscall exit: recvfrom, recvmsg and the mmsg calls (one report per syscall, one
 * event per message) always, the other data syscalls on kernels without the sock/ tracepoints. */
static __always_inline int exit_send_io(long ret, __u8 sys, const bool mmsg) {
  struct task_struct *task = bpf_get_current_task_btf();
  struct thread_state *st = thread_state_get(task, false);
  return st ? report_send(ret, sys, st->io.fd, task, NULL, mmsg) : 0;
}

static __always_inline int exit_recv_io(long ret, __u8 sys, const bool mmsg) {
  if (ret <= 0) return 0;
  struct task_struct *task = bpf_get_current_task_btf();
  return report_recv(ret, sys, task, (struct pt_regs *)bpf_task_pt_regs(task), NULL, mmsg);
}

#define ARG(i) (ctx->args[i])

SEC("tracepoint/syscalls/sys_enter_write")
int enter_write(struct trace_event_raw_sys_enter *ctx) { return enter_send(ARG(0), ARG(1), 0, SYS_WRITE, 0); }
SEC("tracepoint/syscalls/sys_enter_writev")
int enter_writev(struct trace_event_raw_sys_enter *ctx) { return enter_send(ARG(0), ARG(1), ARG(2), SYS_WRITEV, 0); }
SEC("tracepoint/syscalls/sys_enter_sendto")
int enter_sendto(struct trace_event_raw_sys_enter *ctx) { return enter_send(ARG(0), ARG(1), 0, SYS_SENDTO, ARG(4)); }
SEC("tracepoint/syscalls/sys_enter_sendmsg")
int enter_sendmsg(struct trace_event_raw_sys_enter *ctx) { return enter_send(ARG(0), ARG(1), 0, SYS_SENDMSG, 0); }
SEC("tracepoint/syscalls/sys_enter_sendmmsg")
int enter_sendmmsg(struct trace_event_raw_sys_enter *ctx) { return enter_send(ARG(0), ARG(1), 0, SYS_SENDMMSG, 0); }
SEC("tracepoint/syscalls/sys_exit_sendmmsg")
int exit_sendmmsg(struct trace_event_raw_sys_exit *ctx) { return exit_send_io(ctx->ret, SYS_SENDMMSG, true); }
SEC("tracepoint/syscalls/sys_exit_recvmmsg")
int exit_recvmmsg(struct trace_event_raw_sys_exit *ctx) { return exit_recv_io(ctx->ret, SYS_RECVMMSG, true); }

/* Kernels before 6.4 have no sock/sock_{send,recv}_length: there the loader attaches these to
 * the syscall exits instead (every read and write of the host runs one, sockets or not). */
#define IO_EXIT(name, how, sys) \
  SEC("tracepoint/syscalls/sys_exit_" #name) \
  int io_exit_##name(struct trace_event_raw_sys_exit *ctx) { return how(ctx->ret, sys, false); }
IO_EXIT(read, exit_recv_io, SYS_READ)
IO_EXIT(write, exit_send_io, SYS_WRITE)
IO_EXIT(readv, exit_recv_io, SYS_READV)
IO_EXIT(writev, exit_send_io, SYS_WRITEV)
IO_EXIT(sendto, exit_send_io, SYS_SENDTO)
IO_EXIT(sendmsg, exit_send_io, SYS_SENDMSG)

/* recvfrom and recvmsg always report at their exit: the kernel writes the peer's address to the
 * caller's sockaddr after sock_recv_length, and an unconnected UDP socket has no other. Both take
 * sockets only, so no file I/O pays for these. */
SEC("tracepoint/syscalls/sys_exit_recvfrom")
int exit_recvfrom(struct trace_event_raw_sys_exit *ctx) { return exit_recv_io(ctx->ret, SYS_RECVFROM, false); }
SEC("tracepoint/syscalls/sys_exit_recvmsg")
int exit_recvmsg(struct trace_event_raw_sys_exit *ctx) { return exit_recv_io(ctx->ret, SYS_RECVMSG, false); }

/* ---- connection lifecycle ---- */

static __always_inline int enter_remember(__u32 fd, __u8 sys) {
  struct sock_trace_config *cfg = get_config();
  if (!cfg) return 0;
  struct thread_state *st = traced_thread_state(cfg, bpf_get_current_task_btf());
  if (!st) return 0;
  st->io.ts_ns = bpf_ktime_get_ns();
  st->io.fd = fd;
  st->io.syscall = sys;
  return 0;
}

static __always_inline int emit_lifecycle(struct task_struct *task, __u8 kind, __u8 sys, __u32 fd, __u8 role, __u64 ts) {
  struct sock *sk = inet_sock_of_fd(task, fd);
  if (!sk) return 0;
  __u64 key = fd_key(task->tgid, fd);
  struct record *s = record_start(kind, task, fd);
  if (!s) return 0;
  fill_tuple(&s->ev, sk);
  s->ev.socket_id = remember_socket(key, role, &s->ev, sk);
  s->ev.role = role;
  s->ev.syscall = sys;
  s->ev.ts_ns = ts;
  submit(s);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx) { return enter_remember(ARG(0), SYS_CONNECT); }

static __always_inline int exit_connect_common(long ret) {
  struct task_struct *task = bpf_get_current_task_btf();
  struct thread_state *st = thread_state_get(task, false);
  if (!st || st->io.syscall != SYS_CONNECT) return 0;
  st->io.syscall = 0;
  if (ret != 0 && ret != -EINPROGRESS) return 0;
  return emit_lifecycle(task, SOCK_EVENT_CONNECT, SYS_CONNECT, st->io.fd, SOCK_ROLE_CLIENT, st->io.ts_ns);
}

SEC("tracepoint/syscalls/sys_exit_connect")
int exit_connect(struct trace_event_raw_sys_exit *ctx) { return exit_connect_common(ctx->ret); }

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct trace_event_raw_sys_enter *ctx) { return enter_remember(ARG(0), SYS_ACCEPT); }
SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct trace_event_raw_sys_enter *ctx) { return enter_remember(ARG(0), SYS_ACCEPT4); }

static __always_inline int exit_accept_common(long ret) {
  struct task_struct *task = bpf_get_current_task_btf();
  struct thread_state *st = thread_state_get(task, false);
  if (!st) return 0;
  __u8 sys = st->io.syscall;
  if (sys != SYS_ACCEPT && sys != SYS_ACCEPT4) return 0;
  st->io.syscall = 0;
  if (ret < 0) return 0;
  return emit_lifecycle(task, SOCK_EVENT_ACCEPT, sys, (__u32)ret, SOCK_ROLE_SERVER, bpf_ktime_get_ns());
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(struct trace_event_raw_sys_exit *ctx) { return exit_accept_common(ctx->ret); }
SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx) { return exit_accept_common(ctx->ret); }

/* close: drop the socket's entry at entry (the fd is still valid, so the tuple can be read). */
static __always_inline int enter_close_common(__u32 fd) {
  struct task_struct *task = bpf_get_current_task_btf();
  __u32 tgid = task->tgid;
  __u64 key = fd_key(tgid, fd);
  struct sock_trace_config *cfg = get_config();
  if (cfg && cfg->tls_enabled) {
    forget_fd_ssl(tgid, fd);
    /* A closed fd is nobody's "last receive": TLS reads must not learn it. */
    struct thread_state *st = thread_state_get(task, false);
    if (st && st->last_in_fd == (__s32)fd) st->last_in_fd = -1;
  }
  struct sock_info *info = bpf_map_lookup_elem(&socket_info, &key);
  if (!info) return 0;
  struct record *s = record_start(SOCK_EVENT_CLOSE, task, fd);
  if (!s) {
    bpf_map_delete_elem(&socket_info, &key);
    return 0;
  }
  s->ev.socket_id = info->socket_id;
  s->ev.role = info->role;
  s->ev.syscall = SYS_CLOSE;
  s->ev.ts_ns = bpf_ktime_get_ns();
  cached_tuple(&s->ev, info);
  bpf_map_delete_elem(&socket_info, &key);
  submit(s);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx) { return enter_close_common(ARG(0)); }

/* ---- the same on raw_syscalls (tp_btf/sys_enter, sys_exit): one program per direction for
 * every syscall, filtered by number first, in place of the syscalls/ programs above (the loader
 * picks one of the two sets; the sock_ programs serve both). ---- */

SEC("tp_btf/sys_enter")
int BPF_PROG(raw_sys_enter, struct pt_regs *regs, long id) {
  if (compat_syscall(bpf_get_current_task_btf())) return 0; /* the syscalls/ tracepoints skip them too */
  switch (id) {
  case NR_write: return enter_send(regs->di, regs->si, 0, SYS_WRITE, 0);
  case NR_writev: return enter_send(regs->di, regs->si, regs->dx, SYS_WRITEV, 0);
  case NR_sendto: return enter_send(regs->di, regs->si, 0, SYS_SENDTO, regs->r8);
  case NR_sendmsg: return enter_send(regs->di, regs->si, 0, SYS_SENDMSG, 0);
  case NR_sendmmsg: return enter_send(regs->di, regs->si, 0, SYS_SENDMMSG, 0);
  case NR_connect: return enter_remember(regs->di, SYS_CONNECT);
  case NR_accept: return enter_remember(regs->di, SYS_ACCEPT);
  case NR_accept4: return enter_remember(regs->di, SYS_ACCEPT4);
  case NR_close: return enter_close_common(regs->di);
  }
  return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(raw_sys_exit, struct pt_regs *regs, long ret) {
  if (compat_syscall(bpf_get_current_task_btf())) return 0;
  long nr = regs->orig_ax;
  switch (nr) {
  case NR_sendmmsg: return exit_send_io(ret, SYS_SENDMMSG, true);
  case NR_recvmmsg: return exit_recv_io(ret, SYS_RECVMMSG, true);
  case NR_connect: return exit_connect_common(ret);
  case NR_accept: case NR_accept4: return exit_accept_common(ret);
  case NR_recvfrom: return exit_recv_io(ret, SYS_RECVFROM, false);
  case NR_recvmsg: return exit_recv_io(ret, SYS_RECVMSG, false);
  }
  struct sock_trace_config *cfg = get_config();
  if (!cfg || !cfg->exit_io) return 0; /* the sock_ programs report data */
  switch (nr) {
  case NR_read: return exit_recv_io(ret, SYS_READ, false);
  case NR_write: return exit_send_io(ret, SYS_WRITE, false);
  case NR_readv: return exit_recv_io(ret, SYS_READV, false);
  case NR_writev: return exit_send_io(ret, SYS_WRITEV, false);
  case NR_sendto: return exit_send_io(ret, SYS_SENDTO, false);
  case NR_sendmsg: return exit_send_io(ret, SYS_SENDMSG, false);
  }
  return 0;
}

/* ---- TLS uprobes: SSL_read/SSL_write (+ _ex) of OpenSSL, in libssl or linked into a binary ---- */

static __always_inline int tls_enter(struct pt_regs *ctx, __u8 direction, bool ex) {
  struct task_struct *task = bpf_get_current_task_btf();
  __u64 pid_tgid = task_pid_tgid(task);
  struct sock_trace_config *cfg = get_config();
  struct thread_state *st = thread_state_get(task, true);
  if (!cfg || !st || !thread_wanted(st, pid_tgid >> 32, cfg)) return 0;
  struct tls_call c = {
    .ssl = PT_REGS_PARM1(ctx), .buf = PT_REGS_PARM2(ctx), .len_ptr = ex ? PT_REGS_PARM4(ctx) : 0,
    .ts_ns = bpf_ktime_get_ns(), .fd = -1, .direction = direction, .ex = ex,
  };
  if (bpf_map_update_elem(&tls_active, &pid_tgid, &c, BPF_ANY)) count(CNT_ACTIVE_MAP_FULL);
  else st->tls |= TLS_IN_CALL;
  return 0;
}

static __always_inline int tls_exit(struct pt_regs *ctx) {
  struct task_struct *task = bpf_get_current_task_btf();
  __u64 pid_tgid = task_pid_tgid(task);
  struct tls_call *tc = bpf_map_lookup_elem(&tls_active, &pid_tgid);
  if (!tc) return 0;
  struct tls_call c = *tc;
  bpf_map_delete_elem(&tls_active, &pid_tgid);
  struct thread_state *st = thread_state_get(task, true);
  if (st) st->tls &= ~TLS_IN_CALL;
  long ret = PT_REGS_RC(ctx);
  __u32 tgid = pid_tgid >> 32;
  struct ssl_key sk_key = { .tgid = tgid, .ssl = c.ssl };
  __u64 len = 0;
  if (c.ex) {
    if ((int)ret != 1 || !c.len_ptr) return 0;
    if (bpf_probe_read_user(&len, sizeof(len), (const void *)c.len_ptr)) return 0;
  } else {
    if ((int)ret <= 0) return 0;
    len = (__u32)(int)ret;
  }
  if (c.fd < 0 && c.direction == SOCK_DIR_INGRESS) {
    /* No syscall inside the call: the library was fed ciphertext the thread just read itself
     * (Node), or served buffered bytes. Learn SSL* -> fd from the thread's last receive once,
     * and only from a read that returned plaintext: Node also calls SSL_read on a new
     * connection before reading from it, when the last receive was another (maybe closed) fd. */
    if (st && st->last_in_fd >= 0 && !bpf_map_lookup_elem(&ssl_fd, &sk_key))
      learn_ssl_fd(tgid, c.ssl, (__u32)st->last_in_fd, BPF_NOEXIST);
  }
  __s32 fd = c.fd;
  if (fd < 0) {
    __s32 *known = bpf_map_lookup_elem(&ssl_fd, &sk_key);
    if (known) fd = *known;
  }
  if (fd < 0 && c.direction == SOCK_DIR_INGRESS) {
    count(CNT_TLS_NO_FD);
    return 0;
  }
  if (fd < 0) {
    /* A write on an SSL whose socket is unknown: hold it until the thread sends on a socket. */
    struct tls_scratch *t = tls_record_start(task, 0);
    if (!t) return 0;
    struct record *s = &t->rec;
    struct sock_event *ev = &s->ev;
    ev->socket_id = c.ssl;
    ev->is_tls = 1;
    ev->direction = SOCK_DIR_EGRESS;
    ev->syscall = SYS_SSL_WRITE;
    ev->ts_ns = c.ts_ns;
    set_trace_id(ev, st, SOCK_DIR_EGRESS, 0);
    __u32 cap = capture_cap();
    ev->cap_len = copy_user(s, 0, c.buf, len, cap);
    ev->syscall_len = len > 0xffffffffULL ? 0xffffffff : (__u32)len;
    if (bpf_map_update_elem(&tls_pending, &pid_tgid, s, BPF_ANY)) count(CNT_TLS_NO_FD);
    else if (st) st->tls |= TLS_PENDING;
    tls_release(t);
    return 0;
  }
  __u64 key = fd_key(tgid, (__u32)fd);
  struct sock_info *info = bpf_map_lookup_elem(&socket_info, &key);
  struct sock *sk = NULL;
  if (!knows_tuple(info)) {
    sk = inet_sock_of_fd(task, (__u32)fd);
    if (!sk) {
      count(CNT_TLS_NO_FD);
      return 0;
    }
  }
  struct tls_scratch *t = tls_record_start(task, (__u32)fd);
  if (!t) return 0;
  struct record *s = &t->rec;
  struct sock_event *ev = &s->ev;
  describe_socket(ev, info, sk, key);
  info = bpf_map_lookup_elem(&socket_info, &key);
  if (info) info->tls = 1;
  ev->is_tls = 1;
  ev->direction = c.direction;
  ev->syscall = c.direction == SOCK_DIR_EGRESS ? SYS_SSL_WRITE : SYS_SSL_READ;
  ev->ts_ns = c.direction == SOCK_DIR_EGRESS ? c.ts_ns : bpf_ktime_get_ns();
  set_trace_id(ev, st, c.direction, (__u32)fd);
  __u32 cap = capture_cap();
  ev->cap_len = copy_user(s, 0, c.buf, len, cap);
  ev->syscall_len = len > 0xffffffffULL ? 0xffffffff : (__u32)len;
  tls_submit(t);
  return 0;
}

/* The thread's first socket send after a TLS write with unknown socket: that is the ciphertext
 * of the write, so this fd is the socket. Emits the held plaintext with this socket's tuple. */
static __always_inline void complete_tls_pending(struct task_struct *task, __u32 fd, struct thread_state *st) {
  __u64 pid_tgid = task_pid_tgid(task);
  struct tls_pending *p = bpf_map_lookup_elem(&tls_pending, &pid_tgid);
  if (!p) {
    st->tls &= ~TLS_PENDING;
    return;
  }
  __u32 tgid = pid_tgid >> 32;
  learn_ssl_fd(tgid, p->ev.socket_id, fd, BPF_ANY);
  __u64 key = fd_key(tgid, fd);
  struct sock_info *info = bpf_map_lookup_elem(&socket_info, &key);
  struct sock *sk = NULL;
  if (!knows_tuple(info)) {
    sk = inet_sock_of_fd(task, fd);
    if (!sk) {
      bpf_map_delete_elem(&tls_pending, &pid_tgid);
      count(CNT_TLS_NO_FD);
      return;
    }
  }
  describe_socket(&p->ev, info, sk, key);
  info = bpf_map_lookup_elem(&socket_info, &key);
  if (info) info->tls = 1;
  p->ev.fd = fd;
  __u64 size = sizeof(struct sock_event) + p->ev.cap_len;
  if (size > sizeof(struct tls_pending)) size = sizeof(struct tls_pending);
  struct record *s = area_record(); /* the held record is complete: no header to start */
  if (s && bpf_probe_read_kernel(s, size, p) == 0) submit(s);
  bpf_map_delete_elem(&tls_pending, &pid_tgid);
  st->tls &= ~TLS_PENDING;
}

/* SSL_free: the address may come back for the process's next connection, on another fd. */
static __always_inline int tls_free(struct pt_regs *ctx) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  __u32 tgid = pid_tgid >> 32;
  struct ssl_key k = { .tgid = tgid, .ssl = PT_REGS_PARM1(ctx) };
  __s32 *fd = bpf_map_lookup_elem(&ssl_fd, &k);
  if (!fd) return 0;
  __u64 fkey = fd_key(tgid, (__u32)*fd);
  __u64 *back = bpf_map_lookup_elem(&fd_ssl, &fkey);
  if (back && *back == k.ssl) bpf_map_delete_elem(&fd_ssl, &fkey);
  bpf_map_delete_elem(&ssl_fd, &k);
  return 0;
}

/* Attached by the loader per library/binary (attachTls), never automatically. */
SEC("uprobe")
int tls_write_enter(struct pt_regs *ctx) { return tls_enter(ctx, SOCK_DIR_EGRESS, false); }
SEC("uprobe")
int tls_write_ex_enter(struct pt_regs *ctx) { return tls_enter(ctx, SOCK_DIR_EGRESS, true); }
SEC("uprobe")
int tls_read_enter(struct pt_regs *ctx) { return tls_enter(ctx, SOCK_DIR_INGRESS, false); }
SEC("uprobe")
int tls_read_ex_enter(struct pt_regs *ctx) { return tls_enter(ctx, SOCK_DIR_INGRESS, true); }
SEC("uprobe")
int tls_free_enter(struct pt_regs *ctx) { return tls_free(ctx); }
SEC("uretprobe")
int tls_exit_probe(struct pt_regs *ctx) { return tls_exit(ctx); }
