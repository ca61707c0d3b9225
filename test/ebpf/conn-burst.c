/* Child of socket-burst.test.ts: a TCP server thread and client threads in one process. After a
 * line on stdin it opens and closes `count` connections: the server accepts, writes one byte and
 * closes; a client connects, reads the byte and resets (SO_LINGER 0), so no TIME_WAIT piles up.
 * Prints {"connected":N,"accepted":N,"failed":N} and exits when stdin closes. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static long total;
static atomic_long next_index, connected, accepted, failed;
static struct sockaddr_in addr;

static void *serve(void *arg) {
  int lfd = *(int *)arg;
  for (;;) {
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue;
    atomic_fetch_add(&accepted, 1);
    (void)!write(c, "x", 1);
    close(c);
  }
  return NULL;
}

static void *client(void *arg) {
  (void)arg;
  while (atomic_fetch_add(&next_index, 1) < total) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char b;
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || read(fd, &b, 1) != 1) {
      atomic_fetch_add(&failed, 1);
    } else {
      atomic_fetch_add(&connected, 1);
      struct linger l = {1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }
    if (fd >= 0) close(fd);
  }
  return NULL;
}

int main(int argc, char **argv) {
  total = argc > 1 ? atol(argv[1]) : 100000;
  int threads = argc > 2 ? atoi(argv[2]) : 4;
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 1024) != 0) return 1;
  getsockname(lfd, (struct sockaddr *)&addr, &len);
  printf("ready\n");
  fflush(stdout);
  char line[16];
  if (!fgets(line, sizeof(line), stdin)) return 1;
  /* The server starts accepting only now: an accept4 already blocked when the tracer attaches
   * would be seen at exit only, without its entry. */
  pthread_t srv;
  pthread_create(&srv, NULL, serve, &lfd);
  pthread_t *cl = calloc(threads, sizeof(pthread_t));
  for (int i = 0; i < threads; i++) pthread_create(&cl[i], NULL, client, NULL);
  for (int i = 0; i < threads; i++) pthread_join(cl[i], NULL);
  while (atomic_load(&accepted) < atomic_load(&connected)) usleep(1000);
  printf("{\"connected\":%ld,\"accepted\":%ld,\"failed\":%ld}\n", atomic_load(&connected), atomic_load(&accepted), atomic_load(&failed));
  fflush(stdout);
  while (fgets(line, sizeof(line), stdin)) {
  }
  return 0;
}
