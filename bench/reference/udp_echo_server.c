/*
 * The UDP references for scripts/bench.sh: a minimal single-threaded UDP
 * echo on one blocking socket, the tight loops echo-server's UDP is measured
 * against, in one of two modes:
 *
 *   plain  recvfrom one datagram, sendto it back: two system calls a datagram.
 *   batch  recvmmsg up to BATCH datagrams (waiting only for the first, so a
 *          lone datagram is answered at once), sendmmsg them all back: two
 *          system calls a batch, which is what batching can save when many
 *          sources send at once.
 *
 * Both answer every datagram with exactly the bytes it carried, up to the
 * protocol's maximum (65,507 bytes over IPv4), and leave the socket's buffer
 * sizes as the kernel sets them, as echo-server does. A reply the kernel
 * refuses is dropped, as a UDP echo must: the sender counts it lost.
 *
 * Usage: udp_echo_server plain|batch HOST PORT   (PORT 0 picks a free one)
 * Prints "listening on udp://HOST:PORT" once it answers datagrams.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_DATAGRAM 65507
#define BATCH 64

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void plain_loop(int fd) {
    static char buffer[MAX_DATAGRAM];
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        ssize_t got = recvfrom(fd, buffer, sizeof buffer, 0, (struct sockaddr *)&peer, &peer_len);
        if (got < 0) {
            if (errno == EINTR) continue;
            die("recvfrom");
        }
        sendto(fd, buffer, (size_t)got, 0, (struct sockaddr *)&peer, peer_len);
    }
}

static void batch_loop(int fd) {
    static char buffers[BATCH][MAX_DATAGRAM];
    static struct sockaddr_storage peers[BATCH];
    static struct iovec iovs[BATCH];
    static struct mmsghdr messages[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iovs[i] = (struct iovec){.iov_base = buffers[i], .iov_len = MAX_DATAGRAM};
            messages[i].msg_hdr = (struct msghdr){.msg_name = &peers[i],
                                                  .msg_namelen = sizeof peers[i],
                                                  .msg_iov = &iovs[i],
                                                  .msg_iovlen = 1};
        }
        int got = recvmmsg(fd, messages, BATCH, MSG_WAITFORONE, NULL);
        if (got < 0) {
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
        for (int i = 0; i < got; i++) iovs[i].iov_len = messages[i].msg_len;
        /* sendmmsg stops at the first reply the kernel refuses: skip that one. */
        for (int sent = 0; sent < got;) {
            int n = sendmmsg(fd, messages + sent, (unsigned)(got - sent), 0);
            sent += n > 0 ? n : 1;
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "plain") != 0 && strcmp(argv[1], "batch") != 0)) {
        fprintf(stderr, "usage: %s plain|batch HOST PORT\n", argv[0]);
        return 64;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", argv[2]);
        return 64;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
    printf("listening on udp://%s:%d\n", argv[2], ntohs(addr.sin_port));
    fflush(stdout);
    if (strcmp(argv[1], "plain") == 0) plain_loop(fd);
    else batch_loop(fd);
}
