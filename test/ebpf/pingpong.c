// TCP loopback ping-pong of 100-byte messages between two processes (write/read each way):
// prints the CPU time (user + system of both, getrusage) per socket syscall, in microseconds.
// Used by bench/ebpf-overhead.ts to price the tracer per traced syscall.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static double seconds(const struct rusage *r) {
  return r->ru_utime.tv_sec + r->ru_stime.tv_sec + (r->ru_utime.tv_usec + r->ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 200000;
  int one = 1;
  char buf[100] = {0};
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  if (ls < 0 || bind(ls, (void *)&addr, sizeof addr) || listen(ls, 1) || getsockname(ls, (void *)&addr, &len)) {
    perror("listen");
    return 1;
  }
  pid_t child = fork();
  if (child == 0) {
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c, (void *)&addr, sizeof addr)) _exit(1);
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < n; i++) {
      if (write(c, buf, sizeof buf) != sizeof buf || read(c, buf, sizeof buf) <= 0) _exit(1);
    }
    _exit(0);
  }
  int s = accept(ls, 0, 0);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  for (int i = 0; i < n; i++) {
    if (read(s, buf, sizeof buf) <= 0 || write(s, buf, sizeof buf) != sizeof buf) return 1;
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
  struct rusage self, kids;
  getrusage(RUSAGE_SELF, &self);
  getrusage(RUSAGE_CHILDREN, &kids);
  printf("%.3f\n", (seconds(&self) + seconds(&kids)) * 1e6 / (4.0 * n));
  return 0;
}
