/*
 * The load generator of scripts/bench.sh: a minimal single-threaded epoll
 * ping-pong client. N connections each send one SIZE-byte message and wait
 * for its whole echo before sending the next. Every echo is verified with
 * memcmp (as echo-client does, so the two do the same work) and timed.
 *
 * After a warm-up, it counts round trips for SECONDS and, given the server's
 * process id, reads the server's CPU time from the kernel's scheduler
 * accounting (/proc/PID/task/TID/schedstat, nanoseconds on CPU, summed over
 * the server's threads) at the start and end of that window, so the server's
 * cost per round trip leaves out start-up, connecting and warm-up.
 *
 * Besides three percentiles, it prints every round-trip time as a
 * histogram, to three significant digits, so that runs can be merged: one
 * run's p99 is at the mercy of a stall of the machine, many runs' is not.
 *
 * Usage: pingpong_client [-w WARMUP_SECONDS] [-p SERVER_PID]
 *                        HOST PORT CONNECTIONS SECONDS SIZE
 * Prints one JSON object; exits 1 if an echo did not match, 2 on an error.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
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
    uint64_t sent_at; /* when the message now in flight went out, ns */
    char *buf;        /* this connection's partial echo */
};

/* Round-trip times of the measured window, in nanoseconds. */
struct samples {
    uint64_t *ns;
    size_t len, cap;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void record(struct samples *s, uint64_t ns) {
    if (s->len == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1 << 20;
        if (!(s->ns = realloc(s->ns, s->cap * sizeof *s->ns))) die("realloc");
    }
    s->ns[s->len++] = ns;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted samples, in microseconds. */
static double quantile_us(const struct samples *s, double q) {
    if (s->len == 0) return 0;
    size_t i = (size_t)(q * (double)(s->len - 1) + 0.5);
    return (double)s->ns[i] / 1000.0;
}

/* ns to three significant digits (rounded down): a histogram bucket within 1%. */
static uint64_t bucket_of(uint64_t ns) {
    uint64_t scale = 1;
    while (ns / scale >= 1000) scale *= 10;
    return ns / scale * scale;
}

/* Sorted samples as a JSON list of [bucket_ns, count] pairs. */
static void print_histogram(const struct samples *s) {
    const char *separator = "";
    printf("[");
    for (size_t i = 0; i < s->len;) {
        uint64_t bucket = bucket_of(s->ns[i]);
        size_t count = 0;
        while (i < s->len && bucket_of(s->ns[i]) == bucket) i++, count++;
        printf("%s[%llu, %zu]", separator, (unsigned long long)bucket, count);
        separator = ", ";
    }
    printf("]");
}

/* Nanoseconds the process has been on a CPU, over all its threads; 0 if pid is 0. */
static uint64_t cpu_ns(int pid) {
    if (pid == 0) return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", pid);
    DIR *tasks = opendir(path);
    if (!tasks) die(path);
    uint64_t total = 0;
    struct dirent *task;
    while ((task = readdir(tasks)) != NULL) {
        if (task->d_name[0] == '.') continue;
        char stat_path[300];
        snprintf(stat_path, sizeof stat_path, "/proc/%d/task/%s/schedstat", pid, task->d_name);
        FILE *f = fopen(stat_path, "r");
        if (!f) continue; /* the thread just ended */
        unsigned long long on_cpu;
        if (fscanf(f, "%llu", &on_cpu) == 1) total += on_cpu;
        fclose(f);
    }
    closedir(tasks);
    return total;
}

static void usage(const char *program) {
    fprintf(stderr, "usage: %s [-w WARMUP_SECONDS] [-p SERVER_PID] HOST PORT CONNECTIONS SECONDS SIZE\n",
            program);
    exit(64);
}

int main(int argc, char **argv) {
    double warmup = 0;
    int server_pid = 0, opt;
    while ((opt = getopt(argc, argv, "w:p:")) != -1) {
        switch (opt) {
        case 'w': warmup = atof(optarg); break;
        case 'p': server_pid = atoi(optarg); break;
        default: usage(argv[0]);
        }
    }
    if (argc - optind != 5) usage(argv[0]);
    char **arg = argv + optind;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(arg[1]))};
    if (inet_pton(AF_INET, arg[0], &addr.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", arg[0]);
        return 64;
    }
    int nconns = atoi(arg[2]);
    double seconds = atof(arg[3]);
    size_t size = (size_t)atol(arg[4]);
    if (nconns < 1 || seconds <= 0 || size < 1 || warmup < 0) {
        fprintf(stderr, "CONNECTIONS, SECONDS and SIZE must be positive\n");
        return 64;
    }

    char *message = malloc(size);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
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

    struct samples latencies = {0};
    unsigned long long requests = 0, mismatches = 0;
    uint64_t start = now_ns();
    uint64_t window_start = start + (uint64_t)(warmup * 1e9);
    uint64_t deadline = window_start + (uint64_t)(seconds * 1e9);
    uint64_t cpu_start = 0;
    int measuring = warmup == 0;
    if (measuring) cpu_start = cpu_ns(server_pid);
    for (int i = 0; i < nconns; i++) {
        conns[i].sent_at = now_ns();
        if (write(conns[i].fd, message, size) != (ssize_t)size) die("write");
    }

    struct epoll_event events[256];
    uint64_t clock = start;
    while (clock < deadline) {
        int n = epoll_wait(ep, events, 256, 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        clock = now_ns();
        if (!measuring && clock >= window_start) {
            measuring = 1;
            cpu_start = cpu_ns(server_pid);
            window_start = clock;
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            ssize_t got = read(c->fd, c->buf + c->received, size - c->received);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                if (got == 0) errno = ECONNRESET;
                die("read");
            }
            c->received += (size_t)got;
            if (c->received < size) continue;
            if (memcmp(c->buf, message, size) != 0) mismatches++;
            c->received = 0;
            if (measuring) {
                requests++;
                record(&latencies, clock - c->sent_at);
            }
            c->sent_at = now_ns();
            if (write(c->fd, message, size) != (ssize_t)size) die("write");
        }
    }
    uint64_t server_cpu = cpu_ns(server_pid) - cpu_start;
    double elapsed = (double)(now_ns() - window_start) / 1e9;
    qsort(latencies.ns, latencies.len, sizeof *latencies.ns, by_value);
    printf("{\"connections\": %d, \"size\": %zu, \"requests\": %llu, \"seconds\": %.3f, "
           "\"requests_per_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"mismatches\": %llu, \"server_cpu_ns\": %llu, \"latency_histogram_ns\": ",
           nconns, size, requests, elapsed, (double)requests / elapsed, quantile_us(&latencies, 0.5),
           quantile_us(&latencies, 0.99), quantile_us(&latencies, 0.999), mismatches,
           (unsigned long long)server_cpu);
    print_histogram(&latencies);
    printf("}\n");
    return mismatches ? 1 : 0;
}
