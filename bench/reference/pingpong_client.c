/*
 * The load generator of scripts/bench.sh: a minimal single-threaded epoll
 * ping-pong client, in one of three modes:
 *
 *   tcp    (default) N connections each send one SIZE-byte message and wait
 *          for its whole echo before sending the next.
 *   udp    N flows, each its own socket (from its own loopback address when
 *          the server is on loopback, so a server that limits each source
 *          sees N sources), each sending one SIZE-byte datagram and waiting
 *          for its echo before sending the next. A datagram not answered
 *          within LOSS_TIMEOUT_MS is counted lost and the flow sends the next
 *          one; an echo that comes after that is counted late, not lost, and
 *          not timed. Every datagram carries its flow's sequence number in
 *          its first 8 bytes, so a late echo is never taken for a fresh one.
 *   churn  N clients each open a connection, send one SIZE-byte message,
 *          wait for its whole echo, close, and open the next: the rate is of
 *          connections, the time is from connect to the echo. Each new
 *          connection comes from the next of 65,536 loopback addresses when
 *          the server is on loopback, so TIME_WAIT never runs out of ports.
 *
 * With -P (tcp and churn), every connection begins with a PROXY protocol v2
 * header, as a load balancer's would, for a server listening with
 * proxy_protocol; the header is not echoed and not timed.
 *
 * Every echo is verified with memcmp (as echo-client does, so the two do
 * the same work) and timed.
 *
 * After a warm-up, it counts echoes for SECONDS and, given the server's
 * process id, reads the server's CPU time from the kernel's scheduler
 * accounting (/proc/PID/task/TID/schedstat, nanoseconds on CPU, summed over
 * the server's threads) at the start and end of that window, so the server's
 * cost per echo leaves out start-up, connecting and warm-up.
 *
 * Besides three percentiles, it prints every echo's time as a histogram, to
 * three significant digits, so that runs can be merged: one run's p99 is at
 * the mercy of a stall of the machine, many runs' is not.
 *
 * Usage: pingpong_client [-m tcp|udp|churn] [-w WARMUP_SECONDS] [-p SERVER_PID] [-P]
 *                        HOST PORT CONNECTIONS SECONDS SIZE
 * Prints one JSON object; exits 1 if an echo did not match, 2 on an error,
 * 64 on bad usage.
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

/* Longer than any echo takes on a loaded loopback (p99.9 at 500 TCP
 * connections is tens of ms), short enough that a flow whose datagram was
 * dropped is not idle for long. */
#define LOSS_TIMEOUT_MS 200
/* How often, at most, the UDP flows are swept for lost datagrams. */
#define SWEEP_INTERVAL_MS 10
#define SEQUENCE_BYTES 8
/* A PROXY protocol v2 header for TCP over IPv4: signature, version and
 * command (PROXY), family (TCP4), 12 address bytes: 198.18.0.1:40000 to
 * 198.18.0.2:7 (addresses reserved for benchmarks). */
static const unsigned char PROXY_V2_HEADER[28] = {
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
    0x21, 0x11, 0x00, 0x0c, 198, 18, 0, 1, 198, 18, 0, 2, 0x9c, 0x40, 0x00, 0x07,
};

enum mode { TCP, UDP, CHURN };

struct conn {
    int fd;
    int connecting;   /* churn: waiting to be able to write the message */
    size_t received;
    uint64_t sent_at; /* when the message now in flight went out (churn: connect), ns */
    uint64_t sequence; /* udp: the number of the datagram in flight */
    char *buf;        /* this connection's partial echo (udp: SIZE + 1 bytes) */
};

/* Echo times of the measured window, in nanoseconds. */
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

/* Everything the modes share. */
struct run {
    enum mode mode;
    struct sockaddr_in server;
    int loopback;        /* the server is on 127.0.0.0/8: spread the sources */
    size_t size;
    char *message;       /* udp: its first SEQUENCE_BYTES are the sequence of the datagram sent */
    char *opening;       /* churn: what a connection sends first: the -P header, then message */
    size_t opening_len;
    int proxy_header;    /* -P */
    int ep;
    int measuring;
    struct samples latencies;
    unsigned long long requests, mismatches, lost, late;
    unsigned next_source; /* churn: the loopback address of the next connection */
};

static void usage(const char *program) {
    fprintf(stderr,
            "usage: %s [-m tcp|udp|churn] [-w WARMUP_SECONDS] [-p SERVER_PID] [-P] "
            "HOST PORT CONNECTIONS SECONDS SIZE\n",
            program);
    exit(64);
}

static void watch(struct run *r, struct conn *c, unsigned events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(r->ep, op, c->fd, &ev) < 0) die("epoll_ctl");
}

/* Binds fd to 127.A.B.C, so that each source is one the server tells apart. */
static void bind_loopback_source(int fd, unsigned a, unsigned index) {
    struct sockaddr_in source = {.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(127u << 24 | a << 16 | (index & 0xffff))};
    if (bind(fd, (struct sockaddr *)&source, sizeof source) < 0) die("bind");
}

/* A full echo arrived on c at `clock`: verify it, count it, time it. */
static void echoed(struct run *r, struct conn *c, uint64_t clock) {
    if (memcmp(c->buf, r->message + (r->mode == UDP ? SEQUENCE_BYTES : 0),
               r->size - (r->mode == UDP ? SEQUENCE_BYTES : 0)) != 0)
        r->mismatches++;
    if (r->measuring) {
        r->requests++;
        record(&r->latencies, clock - c->sent_at);
    }
}

static void tcp_send(struct run *r, struct conn *c) {
    c->sent_at = now_ns();
    if (write(c->fd, r->message, r->size) != (ssize_t)r->size) die("write");
}

/* Reads what has come of c's echo; true once all of it is there. */
static int read_echo(struct run *r, struct conn *c) {
    ssize_t got = read(c->fd, c->buf + c->received, r->size - c->received);
    if (got <= 0) {
        if (got < 0 && errno == EAGAIN) return 0;
        if (got == 0) errno = ECONNRESET;
        die("read");
    }
    c->received += (size_t)got;
    return c->received == r->size;
}

static void tcp_readable(struct run *r, struct conn *c, uint64_t clock) {
    if (!read_echo(r, c)) return;
    echoed(r, c, clock);
    c->received = 0;
    tcp_send(r, c);
}

static void udp_send(struct run *r, struct conn *c) {
    c->sequence++;
    memcpy(r->message, &c->sequence, SEQUENCE_BYTES);
    c->sent_at = now_ns();
    if (send(c->fd, r->message, r->size, 0) != (ssize_t)r->size) die("send");
}

static void udp_readable(struct run *r, struct conn *c, uint64_t clock) {
    for (;;) {
        /* One byte more than sent, so that a longer answer shows. */
        ssize_t got = recv(c->fd, c->buf, r->size + 1, MSG_DONTWAIT);
        if (got < 0) {
            if (errno == EAGAIN) return;
            die("recv");
        }
        uint64_t sequence = 0;
        if (got >= SEQUENCE_BYTES) memcpy(&sequence, c->buf, SEQUENCE_BYTES);
        if (sequence < c->sequence) {
            if (r->measuring) r->late++; /* its datagram was already counted lost */
            continue;
        }
        if ((size_t)got != r->size || sequence != c->sequence) {
            r->mismatches++;
            continue;
        }
        /* The sequence matched; echoed() compares the rest. */
        memmove(c->buf, c->buf + SEQUENCE_BYTES, r->size - SEQUENCE_BYTES);
        echoed(r, c, clock);
        udp_send(r, c);
        /* Whatever else is waiting can only be late: leave it to the next
         * wake-up (epoll is level-triggered) rather than pay a recv that
         * finds nothing after every echo. */
        return;
    }
}

/* Counts the datagrams unanswered for LOSS_TIMEOUT_MS as lost and sends the next. */
static void udp_sweep(struct run *r, struct conn *conns, int nconns, uint64_t clock) {
    for (int i = 0; i < nconns; i++) {
        /* sent_at can be later than clock: the flow may have sent since. */
        if (conns[i].sent_at + (uint64_t)LOSS_TIMEOUT_MS * 1000000u > clock) continue;
        if (r->measuring) r->lost++;
        udp_send(r, &conns[i]);
    }
}

/* Opens c's next connection and sends its message as soon as it can. */
static void churn_open(struct run *r, struct conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    if (r->loopback) {
        int one = 1;
        /* The port is picked at connect, by the whole address pair. */
        setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        bind_loopback_source(c->fd, 2, r->next_source++);
    }
    c->sent_at = now_ns();
    c->received = 0;
    if (connect(c->fd, (struct sockaddr *)&r->server, sizeof r->server) < 0 &&
        errno != EINPROGRESS)
        die("connect");
    /* On loopback the handshake is usually done by now: save a wake-up. */
    if (write(c->fd, r->opening, r->opening_len) == (ssize_t)r->opening_len) {
        c->connecting = 0;
        watch(r, c, EPOLLIN, EPOLL_CTL_ADD);
    } else if (errno == EAGAIN || errno == ENOTCONN) {
        c->connecting = 1;
        watch(r, c, EPOLLOUT, EPOLL_CTL_ADD);
    } else {
        die("write");
    }
}

static void churn_event(struct run *r, struct conn *c, uint64_t clock) {
    if (c->connecting) {
        if (write(c->fd, r->opening, r->opening_len) != (ssize_t)r->opening_len) die("write");
        c->connecting = 0;
        watch(r, c, EPOLLIN, EPOLL_CTL_MOD);
        return;
    }
    if (!read_echo(r, c)) return;
    echoed(r, c, clock);
    close(c->fd); /* also removes it from the epoll set */
    churn_open(r, c);
}

/* Opens connection or flow i and sends its first message. */
static void start(struct run *r, struct conn *c, int i) {
    if (!(c->buf = malloc(r->size + 1))) die("malloc");
    if (r->mode == CHURN) {
        churn_open(r, c);
        return;
    }
    c->fd = socket(AF_INET, r->mode == UDP ? SOCK_DGRAM : SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    if (r->mode == UDP && r->loopback) bind_loopback_source(c->fd, 1, (unsigned)i + 1);
    if (connect(c->fd, (struct sockaddr *)&r->server, sizeof r->server) < 0) die("connect");
    int one = 1;
    if (r->mode == TCP) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (r->mode == TCP && r->proxy_header &&
        write(c->fd, PROXY_V2_HEADER, sizeof PROXY_V2_HEADER) != sizeof PROXY_V2_HEADER)
        die("write");
    watch(r, c, EPOLLIN, EPOLL_CTL_ADD);
}

int main(int argc, char **argv) {
    struct run r = {.mode = TCP};
    double warmup = 0;
    int server_pid = 0, opt;
    while ((opt = getopt(argc, argv, "m:w:p:P")) != -1) {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "tcp") == 0) r.mode = TCP;
            else if (strcmp(optarg, "udp") == 0) r.mode = UDP;
            else if (strcmp(optarg, "churn") == 0) r.mode = CHURN;
            else usage(argv[0]);
            break;
        case 'w': warmup = atof(optarg); break;
        case 'p': server_pid = atoi(optarg); break;
        case 'P': r.proxy_header = 1; break;
        default: usage(argv[0]);
        }
    }
    if (argc - optind != 5) usage(argv[0]);
    char **arg = argv + optind;
    r.server = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(atoi(arg[1]))};
    if (inet_pton(AF_INET, arg[0], &r.server.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", arg[0]);
        return 64;
    }
    r.loopback = (ntohl(r.server.sin_addr.s_addr) >> 24) == 127;
    int nconns = atoi(arg[2]);
    double seconds = atof(arg[3]);
    r.size = (size_t)atol(arg[4]);
    if (nconns < 1 || seconds <= 0 || r.size < 1 || warmup < 0) {
        fprintf(stderr, "CONNECTIONS, SECONDS and SIZE must be positive\n");
        return 64;
    }
    if (r.mode == UDP && r.proxy_header) {
        fprintf(stderr, "-P is for TCP connections (tcp and churn)\n");
        return 64;
    }
    if (r.mode == UDP && (r.size < SEQUENCE_BYTES || r.size > 65507 || nconns > 65535)) {
        fprintf(stderr, "UDP needs a SIZE from %d to 65507 and at most 65535 flows\n",
                SEQUENCE_BYTES);
        return 64;
    }

    size_t header_len = r.proxy_header ? sizeof PROXY_V2_HEADER : 0;
    r.opening_len = header_len + r.size;
    r.opening = malloc(r.opening_len);
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!r.opening || !conns) die("malloc");
    memcpy(r.opening, PROXY_V2_HEADER, header_len);
    r.message = r.opening + header_len;
    for (size_t i = 0; i < r.size; i++) r.message[i] = (char)(i * 131 + 7);

    r.ep = epoll_create1(0);
    if (r.ep < 0) die("epoll_create1");
    if (r.mode != CHURN)
        for (int i = 0; i < nconns; i++) start(&r, &conns[i], i);

    uint64_t start_ns = now_ns();
    uint64_t window_start = start_ns + (uint64_t)(warmup * 1e9);
    uint64_t deadline = window_start + (uint64_t)(seconds * 1e9);
    uint64_t cpu_start = 0;
    r.measuring = warmup == 0;
    if (r.measuring) cpu_start = cpu_ns(server_pid);
    for (int i = 0; i < nconns; i++) {
        if (r.mode == CHURN) start(&r, &conns[i], i);
        else if (r.mode == UDP) udp_send(&r, &conns[i]);
        else tcp_send(&r, &conns[i]);
    }

    struct epoll_event events[256];
    uint64_t clock = start_ns, swept = start_ns;
    while (clock < deadline) {
        int n = epoll_wait(r.ep, events, 256, r.mode == UDP ? SWEEP_INTERVAL_MS : 100);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        clock = now_ns();
        if (!r.measuring && clock >= window_start) {
            r.measuring = 1;
            cpu_start = cpu_ns(server_pid);
            window_start = clock;
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            if (r.mode == UDP) udp_readable(&r, c, clock);
            else if (r.mode == CHURN) churn_event(&r, c, clock);
            else tcp_readable(&r, c, clock);
        }
        if (r.mode == UDP && clock - swept >= (uint64_t)SWEEP_INTERVAL_MS * 1000000u) {
            udp_sweep(&r, conns, nconns, clock);
            swept = clock;
        }
    }
    uint64_t server_cpu = cpu_ns(server_pid) - cpu_start;
    double elapsed = (double)(now_ns() - window_start) / 1e9;
    struct samples *latencies = &r.latencies;
    qsort(latencies->ns, latencies->len, sizeof *latencies->ns, by_value);
    static const char *mode_names[] = {"tcp", "udp", "churn"};
    printf("{\"mode\": \"%s\", \"connections\": %d, \"size\": %zu, \"requests\": %llu, "
           "\"seconds\": %.3f, \"requests_per_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"p999_us\": %.1f, \"mismatches\": %llu, \"lost\": %llu, \"late\": %llu, "
           "\"server_cpu_ns\": %llu, \"latency_histogram_ns\": ",
           mode_names[r.mode], nconns, r.size, r.requests, elapsed,
           (double)r.requests / elapsed, quantile_us(latencies, 0.5), quantile_us(latencies, 0.99),
           quantile_us(latencies, 0.999), r.mismatches, r.lost, r.late,
           (unsigned long long)server_cpu);
    print_histogram(latencies);
    printf("}\n");
    return r.mismatches ? 1 : 0;
}
