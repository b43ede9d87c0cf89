/*
 * nfqueue_holder: delays and reorders packets for real, for the emulated
 * networks of tests/common/netns.rs.
 *
 * Why: this machine's kernel has no netem, so nothing in the kernel alone
 * can hold a packet back. iptables' NFQUEUE target hands each matching packet
 * to this program, which gives its verdict (accept) only when the packet is
 * due, and may give verdicts out of the order the packets came in: the
 * kernel sends each on when its verdict comes. Every pattern is
 * deterministic, so a test knows exactly what was injected.
 *
 * Usage: nfqueue_holder QUEUE MODE ARG
 *   delay MS      every packet leaves MS milliseconds after it came
 *   alternate MS  every second packet is held MS milliseconds, the others
 *                 leave at once
 *   swap K        the first of every K packets is held until the next one
 *                 has left (or for a second, if none comes): one reordered
 *                 packet in K
 *
 * It prints "ready" once bound to the queue, and exits when its standard
 * input closes, so it never outlives the test that started it. Packets
 * still held then are dropped by the kernel with the queue.
 *
 * Built at test time against Debian's libnetfilter-queue-dev:
 *   gcc -O2 -Wall -Wextra -Werror -o nfqueue_holder nfqueue_holder.c -lnetfilter_queue
 */

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define MAX_HELD 4096
/* How long a swapped packet waits for a successor, at most. */
#define SWAP_PATIENCE_NS 1000000000ULL

enum mode { DELAY, ALTERNATE, SWAP };

struct held {
	uint32_t id;
	uint64_t release_ns;
};

static enum mode mode;
static uint64_t amount; /* nanoseconds, or K for swap */
static uint64_t seen;
static struct held held[MAX_HELD];
static size_t held_count;
/* The packet swap mode holds for its successor, if any. */
static int swap_waiting;
static struct held swap_held;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "nfqueue_holder: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void accept_packet(struct nfq_q_handle *queue, uint32_t id)
{
	if (nfq_set_verdict(queue, id, NF_ACCEPT, 0, NULL) < 0)
		die("verdict");
}

static void hold(struct nfq_q_handle *queue, uint32_t id, uint64_t release_ns)
{
	if (held_count == MAX_HELD) {
		/* Never drop: a full holder lets the packet through late rather
		 * than make loss the test did not ask for. */
		fprintf(stderr, "nfqueue_holder: %d packets held, passing one on\n", MAX_HELD);
		accept_packet(queue, id);
		return;
	}
	held[held_count].id = id;
	held[held_count].release_ns = release_ns;
	held_count++;
}

static int on_packet(struct nfq_q_handle *queue, struct nfgenmsg *message,
		     struct nfq_data *packet, void *data)
{
	(void)message;
	(void)data;
	struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(packet);
	if (!header)
		return 0;
	uint32_t id = ntohl(header->packet_id);
	uint64_t number = seen++;
	uint64_t now = now_ns();
	switch (mode) {
	case DELAY:
		hold(queue, id, now + amount);
		break;
	case ALTERNATE:
		if (number % 2 == 1)
			hold(queue, id, now + amount);
		else
			accept_packet(queue, id);
		break;
	case SWAP:
		if (swap_waiting) {
			accept_packet(queue, id);
			accept_packet(queue, swap_held.id);
			swap_waiting = 0;
		} else if (number % amount == 0) {
			swap_held.id = id;
			swap_held.release_ns = now + SWAP_PATIENCE_NS;
			swap_waiting = 1;
		} else {
			accept_packet(queue, id);
		}
		break;
	}
	return 0;
}

/* Lets every held packet that is due go, and returns how many milliseconds
 * until the next one is (-1: none held). */
static int release_due(struct nfq_q_handle *queue)
{
	uint64_t now = now_ns();
	uint64_t next = UINT64_MAX;
	size_t kept = 0;
	for (size_t i = 0; i < held_count; i++) {
		if (held[i].release_ns <= now) {
			accept_packet(queue, held[i].id);
		} else {
			if (held[i].release_ns < next)
				next = held[i].release_ns;
			held[kept++] = held[i];
		}
	}
	held_count = kept;
	if (swap_waiting) {
		if (swap_held.release_ns <= now) {
			accept_packet(queue, swap_held.id);
			swap_waiting = 0;
		} else if (swap_held.release_ns < next) {
			next = swap_held.release_ns;
		}
	}
	if (next == UINT64_MAX)
		return -1;
	/* Rounded up: waking early would only loop once more. */
	return (int)((next - now + 999999) / 1000000);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: nfqueue_holder QUEUE delay|alternate|swap ARG\n");
		return 2;
	}
	uint16_t queue_number = (uint16_t)strtoul(argv[1], NULL, 10);
	uint64_t arg = strtoull(argv[3], NULL, 10);
	if (strcmp(argv[2], "delay") == 0) {
		mode = DELAY;
		amount = arg * 1000000ULL;
	} else if (strcmp(argv[2], "alternate") == 0) {
		mode = ALTERNATE;
		amount = arg * 1000000ULL;
	} else if (strcmp(argv[2], "swap") == 0 && arg >= 2) {
		mode = SWAP;
		amount = arg;
	} else {
		fprintf(stderr, "nfqueue_holder: unknown mode %s %s\n", argv[2], argv[3]);
		return 2;
	}

	struct nfq_handle *handle = nfq_open();
	if (!handle)
		die("nfq_open (root, and the nfnetlink_queue module?)");
	struct nfq_q_handle *queue = nfq_create_queue(handle, queue_number, on_packet, NULL);
	if (!queue)
		die("nfq_create_queue (is another holder bound to this queue?)");
	/* The verdict needs only the packet's id, not its bytes. */
	if (nfq_set_mode(queue, NFQNL_COPY_META, 0) < 0)
		die("nfq_set_mode");
	if (nfq_set_queue_maxlen(queue, MAX_HELD) < 0)
		die("nfq_set_queue_maxlen");
	int fd = nfq_fd(handle);
	printf("ready\n");
	fflush(stdout);

	char buf[65536] __attribute__((aligned));
	int wait_ms = -1;
	for (;;) {
		struct pollfd fds[2] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = STDIN_FILENO, .events = POLLIN },
		};
		if (poll(fds, 2, wait_ms) < 0 && errno != EINTR)
			die("poll");
		if (fds[1].revents) {
			ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
			if (got <= 0)
				break;
		}
		if (fds[0].revents & POLLIN) {
			ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
			if (got < 0 && errno == ENOBUFS) {
				/* The kernel had to drop packets it could not queue:
				 * say so, the test will see the loss. */
				fprintf(stderr, "nfqueue_holder: queue overrun\n");
			} else if (got < 0 && errno != EAGAIN && errno != EINTR) {
				die("recv");
			} else if (got > 0) {
				nfq_handle_packet(handle, buf, (int)got);
			}
		}
		wait_ms = release_due(queue);
	}
	nfq_destroy_queue(queue);
	nfq_close(handle);
	return 0;
}
