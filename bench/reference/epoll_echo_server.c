/*
 * The reference for scripts/bench.sh: a minimal single-threaded epoll echo
 * server, the tight loop echo-server is measured against. Level-triggered,
 * one shared 16 KiB read buffer (the same size echo-server reads with), and
 * TCP_NODELAY on every connection, as echo-server sets. A write the kernel
 * takes only in part keeps its rest in the connection's own buffer and waits
 * for EPOLLOUT, so it is a correct echo, not only a fast one.
 *
 * Usage: epoll_echo_server HOST PORT   (PORT 0 picks a free one)
 * Prints "listening on HOST:PORT" once it accepts connections.
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
#include <unistd.h>

#define BUFFER_SIZE (16 * 1024)
#define MAX_EVENTS 1024

struct conn {
    int fd;
    char *unsent; /* NULL unless the kernel did not take a whole echo */
    size_t unsent_len;
};

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void close_conn(struct conn *c) {
    close(c->fd); /* also removes it from the epoll set */
    free(c->unsent);
    free(c);
}

/* Sends what is pending; returns 0 when all went, 1 when some is left, -1 on error. */
static int flush(struct conn *c) {
    while (c->unsent_len > 0) {
        ssize_t n = write(c->fd, c->unsent, c->unsent_len);
        if (n < 0) return errno == EAGAIN ? 1 : -1;
        memmove(c->unsent, c->unsent + n, c->unsent_len - (size_t)n);
        c->unsent_len -= (size_t)n;
    }
    return 0;
}

static void watch(int ep, struct conn *c, unsigned events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) die("epoll_ctl");
}

/* Echoes one read; returns -1 when the connection is done. */
static int echo(int ep, struct conn *c, char *buffer) {
    if (c->unsent_len > 0) {
        int left = flush(c);
        if (left < 0) return -1;
        if (left == 0) watch(ep, c, EPOLLIN, EPOLL_CTL_MOD);
        return 0;
    }
    ssize_t got = read(c->fd, buffer, BUFFER_SIZE);
    if (got < 0) return errno == EAGAIN ? 0 : -1;
    if (got == 0) return -1;
    ssize_t sent = write(c->fd, buffer, (size_t)got);
    if (sent < 0) {
        if (errno != EAGAIN) return -1;
        sent = 0;
    }
    if (sent < got) {
        c->unsent_len = (size_t)(got - sent);
        if (!(c->unsent = realloc(c->unsent, c->unsent_len))) die("realloc");
        memcpy(c->unsent, buffer + sent, c->unsent_len);
        watch(ep, c, EPOLLOUT, EPOLL_CTL_MOD);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 64;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", argv[1]);
        return 64;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    if (listener < 0) die("socket");
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 4096) < 0) die("listen");
    socklen_t len = sizeof addr;
    if (getsockname(listener, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
    printf("listening on %s:%d\n", argv[1], ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll_ctl");

    static char buffer[BUFFER_SIZE];
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            if (c == NULL) {
                int fd;
                while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *accepted = calloc(1, sizeof *accepted);
                    if (!accepted) die("calloc");
                    accepted->fd = fd;
                    watch(ep, accepted, EPOLLIN, EPOLL_CTL_ADD);
                }
                continue;
            }
            if (echo(ep, c, buffer) < 0) close_conn(c);
        }
    }
}
