// A 64-bit process that makes one 32-bit syscall: read(2) through int $0x80 (ia32 number 3,
// which is close(2) in the 64-bit table), on a connected TCP socket, with the socket's fd also in
// rdi. A tracer that takes the number as a 64-bit one sees "close(fd)" and forgets the socket
// while it is still in use. Then the usual: send, receive, close. Prints "<client port> <server port>".
// Built with -no-pie so that the buffer has a 32-bit address.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char buf32[64];

static long ia32_read(int fd, char *buf, unsigned len) {
  long ret;
  register long rdi __asm__("rdi") = fd; /* what a 64-bit reading of the registers takes for close's fd */
  __asm__ volatile("int $0x80" : "=a"(ret) : "a"(3), "b"(fd), "c"(buf), "d"(len), "r"(rdi) : "memory");
  return ret;
}

int main(void) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
  socklen_t al = sizeof(a);
  if (bind(l, (void *)&a, sizeof(a)) || listen(l, 1) || getsockname(l, (void *)&a, &al)) return 1;
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(c, (void *)&a, sizeof(a))) return 1;
  int s = accept(l, 0, 0);
  struct sockaddr_in me;
  socklen_t ml = sizeof(me);
  getsockname(c, (void *)&me, &ml);
  if (write(c, "compat-1", 8) != 8) return 2;
  if (ia32_read(s, buf32, 8) != 8 || memcmp(buf32, "compat-1", 8) != 0) return 3;
  if (write(c, "compat-2", 8) != 8) return 4;
  char b[16];
  if (read(s, b, 8) != 8) return 5;
  close(c);
  close(s);
  printf("%d %d\n", ntohs(me.sin_port), ntohs(a.sin_port));
  return 0;
}
