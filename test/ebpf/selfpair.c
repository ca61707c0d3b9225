// One thread, one TCP loopback connection to itself: write a 100 B request on one end, read it
// on the other, writev a 512 B response back in two pieces, read it: the socket syscalls of an
// HTTP exchange, with no sleeping and no other process (the ping-pong's wakeups dominate on an
// idle VM). Prints the CPU time of this process per socket syscall, in nanoseconds.
// Used by bench/ebpf-overhead.ts (`selfpair`) to price the tracer per traced syscall.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000;
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
  socklen_t al = sizeof(a);
  if (bind(l, (void *)&a, sizeof(a)) || listen(l, 1) || getsockname(l, (void *)&a, &al)) return 1;
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (void *)&a, sizeof(a))) return 1;
  int s = accept(l, 0, 0);
  int one = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  char req[100], resp[512], buf[1024];
  memset(req, 'a', sizeof(req));
  memcpy(req, "GET / HTTP/1.1\r\n", 16);
  memset(resp, 'b', sizeof(resp));
  struct iovec iov[2] = { { resp, 64 }, { resp + 64, 448 } };
  struct timespec t0, t1;
  long syscalls = 0;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  for (long i = 0; i < n; i++) {
    if (write(c, req, sizeof(req)) != sizeof(req)) return 2;
    if (read(s, buf, sizeof(buf)) != sizeof(req)) return 3;
    if (writev(s, iov, 2) != sizeof(resp)) return 4;
    syscalls += 3;
    for (long got = 0; got < (long)sizeof(resp); syscalls++) {
      long r = read(c, buf, sizeof(buf));
      if (r <= 0) return 5;
      got += r;
    }
  }
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
  printf("%.1f\n", ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / syscalls);
  return 0;
}
