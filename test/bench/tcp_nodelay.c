/*
 * tcp_nodelay.c: LD_PRELOAD shim for the benchmark's test broker
 * (test/bench/run_bench.sh).  It measures nothing itself.
 *
 * librdkafka 2.0.2's mock cluster (test/kafka_broker) leaves Nagle's
 * algorithm on for the connections it accepts.  librdkafka sends one
 * ProduceRequest per partition, so a batch spread over several partitions
 * has several requests in flight on one connection, and every response
 * after the first waits for the client's delayed ACK: about 40 ms per round
 * trip on Linux loopback, whatever the batch size (1000 messages over 4
 * partitions: ~45 ms to the last delivery report, ~1.7 ms with this shim;
 * 1 partition: ~1.3 ms either way).  A real Kafka broker sets TCP_NODELAY
 * on its sockets, so the benchmark wraps accept()/accept4() to do the same
 * rather than measure the mock's stall.  BENCH_STOCK_BROKER=1 runs without.
 *
 * Build: cc -O2 -shared -fPIC -o tcp_nodelay.so tcp_nodelay.c -ldl
 * Use:   LD_PRELOAD=/path/tcp_nodelay.so test/kafka_broker ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <sys/socket.h>

static void
set_nodelay(int fd)
{
	int			one = 1;

	/* fails harmlessly on non-TCP sockets */
	if (fd >= 0)
		(void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int
accept(int sockfd, struct sockaddr *addr, socklen_t *addrlen)
{
	static int	(*real) (int, struct sockaddr *, socklen_t *);
	int			fd;

	if (real == NULL)
		real = (int (*) (int, struct sockaddr *, socklen_t *)) dlsym(RTLD_NEXT, "accept");
	fd = real(sockfd, addr, addrlen);
	set_nodelay(fd);
	return fd;
}

int
accept4(int sockfd, struct sockaddr *addr, socklen_t *addrlen, int flags)
{
	static int	(*real) (int, struct sockaddr *, socklen_t *, int);
	int			fd;

	if (real == NULL)
		real = (int (*) (int, struct sockaddr *, socklen_t *, int)) dlsym(RTLD_NEXT, "accept4");
	fd = real(sockfd, addr, addrlen, flags);
	set_nodelay(fd);
	return fd;
}
