/* Layout shared by socket_trace.bpf.c and the native loader (native/src/ebpf_socket_tracer.cc).
 * The TypeScript decoder (services/capture/ebpf-socket-records.ts) reads the same offsets: keep
 * the three in step. Every field is little-endian and naturally aligned; no implicit padding. */
#ifndef FLOWTAP_SOCKET_TRACE_H
#define FLOWTAP_SOCKET_TRACE_H

/* Largest payload copied per event. */
#define SOCK_TRACE_MAX_CAP 8192

enum sock_event_kind {
  SOCK_EVENT_DATA = 1,
  SOCK_EVENT_CONNECT = 2,
  SOCK_EVENT_ACCEPT = 3,
  SOCK_EVENT_CLOSE = 4,
};

enum sock_direction {
  SOCK_DIR_EGRESS = 0, /* the process sent */
  SOCK_DIR_INGRESS = 1, /* the process received */
};

enum sock_role {
  SOCK_ROLE_UNKNOWN = 0, /* socket first seen on data: connect/accept happened before tracing */
  SOCK_ROLE_CLIENT = 1,  /* the process called connect() */
  SOCK_ROLE_SERVER = 2,  /* the process got it from accept() */
};

enum sock_syscall {
  SYS_READ = 1, SYS_WRITE, SYS_READV, SYS_WRITEV, SYS_SENDTO, SYS_RECVFROM, SYS_SENDMSG,
  SYS_RECVMSG, SYS_SENDMMSG, SYS_RECVMMSG, SYS_CONNECT, SYS_ACCEPT, SYS_ACCEPT4, SYS_CLOSE,
  SYS_SSL_READ, SYS_SSL_WRITE, /* TLS plaintext from uprobes (SSL_read/_ex, SSL_write/_ex) */
};

/* Indexes of the per-CPU `counters` map: events lost or degraded, by reason. */
enum sock_counter {
  CNT_RINGBUF_FULL = 0,    /* bpf_ringbuf_output failed: the event is lost */
  CNT_SOCKET_MAP_FULL = 1, /* socket_info had no room: event sent, socket_id not kept */
  CNT_ACTIVE_MAP_FULL = 2, /* no per-thread state (task storage allocation failed): the event is lost */
  CNT_READ_USER_FAULT = 3, /* user buffer unreadable: event sent with fewer captured bytes */
  CNT_EVENTS = 4,          /* events written to the record areas or the TLS ring */
  CNT_TLS_NO_FD = 5,       /* TLS call whose socket could not be found: the plaintext is lost */
  CNT_MMSG_UNREPORTED = 6, /* messages of a sendmmsg/recvmmsg past the per-call limit: not reported */
  CNT_TLS_BUSY = 7,        /* a TLS probe found the CPU's TLS scratch held by a preempted one: the plaintext is lost */
  CNT_MAX = 8,
};

struct sock_event {
  __u64 ts_ns;        /* CLOCK_MONOTONIC: send at syscall entry, receive at exit */
  __u64 socket_id;    /* global id, assigned at connect/accept/first sight */
  __u64 trace_id;     /* syscall_trace_id: opened by a receive, carried by the thread's next sends */
  __u32 pid;          /* tgid */
  __u32 tid;
  __u32 fd;
  __u32 syscall_len;  /* the syscall's return value (bytes), 0 for connect/accept/close */
  __u32 cap_len;      /* bytes of data[] that follow */
  __u16 local_port;
  __u16 remote_port;
  __u8 kind;          /* sock_event_kind */
  __u8 direction;     /* sock_direction */
  __u8 role;          /* sock_role */
  __u8 ip_version;    /* 4 or 6 */
  __u8 protocol;      /* IPPROTO_TCP or IPPROTO_UDP */
  __u8 syscall;       /* sock_syscall */
  __u8 is_tls;
  __u8 pad0;
  __u8 local_addr[16];  /* IPv4 as ::ffff:a.b.c.d */
  __u8 remote_addr[16];
  char comm[16];      /* the process's (thread group leader's) comm */
};
/* sizeof(struct sock_event) == 104; data[cap_len] follows it in the record. */

/* Records of the tracepoint programs go to a per-CPU area of one memory-mapped array map (`areas`,
 * one element per possible CPU): the programs write each record in place and move the area's
 * head; the reader takes records below the head and moves the tail. Tracepoint programs cannot
 * be preempted, so an area has one writer at a time. (TLS uprobes can be: their records go
 * through the `events` ring buffer.) No lock, no helper call and no second copy per
 * event, and no cache line shared between CPUs, which bpf_ringbuf_output has (its lock and
 * positions). An element is this control block, then the area (a power of two the loader
 * chooses), then AREA_SLACK bytes where a record that starts near the end of the area runs on
 * instead of wrapping, so that every record is contiguous. A record is a struct sock_event and
 * its cap_len captured bytes, padded to 8 bytes. */
struct area_ctl {
  /* Written by this CPU's programs. */
  __u64 head;        /* bytes of records written, ever (the reader takes those below it) */
  __u64 limit;       /* head may grow to this without looking at tail again (tail + area bytes) */
  __u64 check_at;    /* head at which the fill level is looked at next (the reader's wakeup) */
  __u64 kicked_pass; /* the reader's pass + 1 at the last wakeup: one wakeup per pass at most */
  __u64 pad1[4];
  /* Written by the reader, on its own cache line. */
  __u64 tail;        /* bytes of records taken, ever */
  __u64 pass;        /* the reader's passes over the areas */
  __u64 pad2[6];
};
/* sizeof(struct area_ctl) == 128: the area starts right after it. */
#define AREA_SLACK (20480 - 128) /* >= sizeof(struct sock_event) + 2 * SOCK_TRACE_MAX_CAP; keeps elements page-sized */

struct sock_trace_config {
  __u32 cap_bytes;    /* bytes copied per event, <= SOCK_TRACE_MAX_CAP */
  __u32 pid_mode;     /* 0: every process but those marked 2 in pid_filter; 1: only those marked 1 */
  __u32 wakeup_bytes; /* wake the reader only once this much is waiting (it also drains on a timer) */
  __u32 tls_enabled;  /* set once TLS uprobes are attached: until then skip the TLS lookups */
  __u32 filter_gen;   /* bumped (from 1) after each pid_filter change: threads re-read their verdict */
  __u32 exit_io;      /* 1: the kernel lacks sock_{send,recv}_length, raw_sys_exit reports data */
};

#endif
