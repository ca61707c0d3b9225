/* Child of socket-mmsg.test.ts: UDP over loopback with sendmmsg/recvmmsg. An unconnected client
 * sends each batch size given on the command line as one sendmmsg call (every message with its
 * own destination sockaddr and two iovecs: "mmsg-<call>-<index>-" and "payload"); the server takes
 * each batch with one recvmmsg. Prints "<client port> <server port>" and exits 0 when every
 * message arrived. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BATCH 64

int main(int argc, char **argv) {
  int srv = socket(AF_INET, SOCK_DGRAM, 0), cli = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof(to);
  if (srv < 0 || cli < 0 || bind(srv, (struct sockaddr *)&to, sizeof(to)) || getsockname(srv, (struct sockaddr *)&to, &alen)) {
    perror("server socket");
    return 1;
  }
  struct sockaddr_in from = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(cli, (struct sockaddr *)&from, sizeof(from)) || getsockname(cli, (struct sockaddr *)&from, &alen)) {
    perror("client socket");
    return 1;
  }
  static char heads[MAX_BATCH][32], bufs[MAX_BATCH][64];
  static struct iovec send_iov[MAX_BATCH][2], recv_iov[MAX_BATCH];
  static struct mmsghdr out[MAX_BATCH], in[MAX_BATCH];
  static struct sockaddr_in peers[MAX_BATCH];
  for (int call = 1; call < argc; call++) {
    int n = atoi(argv[call]);
    if (n < 1 || n > MAX_BATCH) return 2;
    for (int i = 0; i < n; i++) {
      int len = snprintf(heads[i], sizeof(heads[i]), "mmsg-%d-%d-", call, i);
      send_iov[i][0] = (struct iovec){heads[i], (size_t)len};
      send_iov[i][1] = (struct iovec){"payload", 7};
      out[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &to, .msg_namelen = sizeof(to), .msg_iov = send_iov[i], .msg_iovlen = 2}};
      recv_iov[i] = (struct iovec){bufs[i], sizeof(bufs[i])};
      in[i] = (struct mmsghdr){.msg_hdr = {.msg_name = &peers[i], .msg_namelen = sizeof(peers[i]), .msg_iov = &recv_iov[i], .msg_iovlen = 1}};
    }
    if (sendmmsg(cli, out, n, 0) != n) {
      perror("sendmmsg");
      return 1;
    }
    int got = recvmmsg(srv, in, n, 0, NULL);
    if (got != n) {
      perror("recvmmsg");
      return 1;
    }
  }
  printf("%d %d\n", ntohs(from.sin_port), ntohs(to.sin_port));
  return 0;
}
