/*
 * A minimal epoll ping-pong load generator for echo servers, the yardstick
 * for `echo-client bench` (see scripts/bench.sh): single-threaded, N
 * connections, each sending one SIZE-byte message and waiting for its whole
 * echo before sending the next. Every echo is verified with memcmp, as
 * echo-client does, so both do the same work.
 *
 * Usage: pingpong_client HOST PORT CONNECTIONS SECONDS SIZE
 * Prints one line: "requests=N seconds=S requests_per_s=R mismatches=M".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn {
    int fd;
    size_t received;
    char *buf; /* this connection's partial echo */
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS SECONDS SIZE\n", argv[0]);
        return 64;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", argv[1]);
        return 64;
    }
    int nconns = atoi(argv[3]);
    double seconds = atof(argv[4]);
    size_t size = (size_t)atol(argv[5]);
    if (nconns < 1 || seconds <= 0 || size < 1) {
        fprintf(stderr, "CONNECTIONS, SECONDS and SIZE must be positive\n");
        return 64;
    }

    char *message = malloc(size);
    struct conn *conns = calloc(nconns, sizeof *conns);
    if (!message || !conns) die("malloc");
    for (size_t i = 0; i < size; i++) message[i] = (char)(i * 131 + 7);

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) die("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[i].fd = fd;
        if (!(conns[i].buf = malloc(size))) die("malloc");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &conns[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }

    unsigned long long requests = 0, mismatches = 0;
    double start = now(), deadline = start + seconds;
    for (int i = 0; i < nconns; i++)
        if (write(conns[i].fd, message, size) != (ssize_t)size) die("write");

    struct epoll_event events[256];
    while (now() < deadline) {
        int n = epoll_wait(ep, events, 256, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            ssize_t got = read(c->fd, c->buf + c->received, size - c->received);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                die("read");
            }
            c->received += (size_t)got;
            if (c->received < size) continue;
            if (memcmp(c->buf, message, size) != 0) mismatches++;
            c->received = 0;
            requests++;
            if (write(c->fd, message, size) != (ssize_t)size) die("write");
        }
    }
    double elapsed = now() - start;
    printf("requests=%llu seconds=%.3f requests_per_s=%.0f mismatches=%llu\n", requests, elapsed,
           requests / elapsed, mismatches);
    return mismatches ? 1 : 0;
}
