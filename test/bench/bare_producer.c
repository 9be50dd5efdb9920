/*
 * bare_producer.c: the ceiling of section 4 of test/bench/run_bench.sh.
 * A plain librdkafka producer, no database, sending the events the relay
 * sends in the drain section, with the relay's producer settings.
 *
 * Events: number i = 1..N, the payload of benchlib.payload_json(i) (the
 * bytes PostgreSQL's jsonb output gives for drain.py's payload), key
 * i % 100, and the relay's CloudEvents headers: ce_specversion, ce_id (a
 * random UUID v4, made here), ce_source, ce_type (the topic), ce_time (now,
 * RFC 3339 with microseconds), content-type.
 *
 * Settings: enable.idempotence=true, acks=all, partitioner=murmur2_random,
 * message.timeout.ms=30000, and linger.ms as given (--linger MS), or
 * librdkafka's defaults for linger and batching (--linger default: 5 ms in
 * librdkafka 2.0).  Every message is produced with RD_KAFKA_MSG_F_COPY, as
 * the relay does.
 *
 * Modes: by default messages are produced back to back (a full local queue
 * is waited out with rd_kafka_poll) and flushed once at the end: the
 * streaming ceiling.  --flush-every K waits for every delivery report after
 * each K messages, the way the relay works through its batches (read K,
 * produce them, wait for all reports, delete), minus the database.
 *
 * Before the clock starts, one warm-up message (key "warmup") is produced
 * and flushed, so that the topic's metadata and the idempotent producer id
 * are in place, as for the relay, which has relayed a warm-up event.  The
 * clock runs from the first produce to the last delivery report.
 *
 * Prints one JSON object: events, delivered, failed, seconds, events_per_s,
 * linger_ms ("default" or a number), flush_every.  Exit status 0 when every
 * message was delivered, 1 otherwise.
 *
 * Build: cc -O2 -o bare_producer bare_producer.c -lrdkafka
 * Use:   bare_producer BOOTSTRAP TOPIC EVENTS LINGER_MS|default [FLUSH_EVERY]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

#include <librdkafka/rdkafka.h>

static long delivered = 0;
static long failed = 0;
static char first_error[256] = "";

static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		delivered++;
	else
	{
		if (failed++ == 0)
			snprintf(first_error, sizeof(first_error), "%s", rd_kafka_err2str(msg->err));
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64*: random bits for the v4 ids */
static uint64_t rng_state = 88172645463325252ULL;

static uint64_t
rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static void
uuid_v4(char *out)
{
	unsigned char b[16];
	uint64_t	a = rng(),
				c = rng();
	int			i;

	memcpy(b, &a, 8);
	memcpy(b + 8, &c, 8);
	b[6] = (b[6] & 0x0F) | 0x40;
	b[8] = (b[8] & 0x3F) | 0x80;
	for (i = 0; i < 16; i++)
	{
		static const char hex[] = "0123456789abcdef";

		*out++ = hex[b[i] >> 4];
		*out++ = hex[b[i] & 15];
		if (i == 3 || i == 5 || i == 7 || i == 9)
			*out++ = '-';
	}
	*out = '\0';
}

static void
rfc3339_now(char *out, size_t len)
{
	struct timeval tv;
	struct tm	tm;
	char		buf[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out, len, "%s.%06ldZ", buf, (long) tv.tv_usec);
}

/* Produce one message, waiting out a full local queue. */
static int
produce(rd_kafka_t *rk, const char *topic, const char *key, const char *value,
		const char *source)
{
	char		id[40];
	char		ts[40];

	uuid_v4(id);
	rfc3339_now(ts, sizeof(ts));
	for (;;)
	{
		rd_kafka_headers_t *h = rd_kafka_headers_new(6);
		rd_kafka_resp_err_t err;

		rd_kafka_header_add(h, "ce_specversion", -1, "1.0", 3);
		rd_kafka_header_add(h, "ce_id", -1, id, -1);
		rd_kafka_header_add(h, "ce_source", -1, source, -1);
		rd_kafka_header_add(h, "ce_type", -1, topic, -1);
		rd_kafka_header_add(h, "ce_time", -1, ts, -1);
		rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
		err = rd_kafka_producev(rk,
								RD_KAFKA_V_TOPIC(topic),
								RD_KAFKA_V_KEY((void *) key, strlen(key)),
								RD_KAFKA_V_VALUE((void *) value, strlen(value)),
								RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								RD_KAFKA_V_HEADERS(h),
								RD_KAFKA_V_END);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			return 0;
		rd_kafka_headers_destroy(h);	/* not taken over on failure */
		if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
		{
			fprintf(stderr, "bare_producer: produce failed: %s\n", rd_kafka_err2str(err));
			return -1;
		}
		rd_kafka_poll(rk, 5);
	}
}

static void
set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "bare_producer: %s: %s\n", name, errstr);
		exit(2);
	}
}

int
main(int argc, char **argv)
{
	const char *bootstrap,
			   *topic,
			   *linger;
	long		n,
				flush_every = 0,
				i;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	char		errstr[512];
	char		key[16];
	char		value[256];
	double		t0,
				t1;
	FILE	   *ur;

	if (argc < 5 || argc > 6)
	{
		fprintf(stderr, "usage: %s BOOTSTRAP TOPIC EVENTS LINGER_MS|default [FLUSH_EVERY]\n", argv[0]);
		return 2;
	}
	bootstrap = argv[1];
	topic = argv[2];
	n = atol(argv[3]);
	linger = argv[4];
	if (argc == 6)
		flush_every = atol(argv[5]);

	ur = fopen("/dev/urandom", "rb");
	if (ur == NULL || fread(&rng_state, sizeof(rng_state), 1, ur) != 1)
		rng_state ^= (uint64_t) time(NULL);
	if (ur)
		fclose(ur);
	if (rng_state == 0)
		rng_state = 1;

	conf = rd_kafka_conf_new();
	set(conf, "bootstrap.servers", bootstrap);
	set(conf, "client.id", "bench-bare-c");
	set(conf, "enable.idempotence", "true");
	set(conf, "acks", "all");
	set(conf, "partitioner", "murmur2_random");
	set(conf, "message.timeout.ms", "30000");
	if (strcmp(linger, "default") != 0)
		set(conf, "linger.ms", linger);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "bare_producer: %s\n", errstr);
		return 2;
	}

	/* warm-up: metadata and producer id */
	if (produce(rk, topic, "warmup", "{}", "/outbox/bench") != 0 ||
		rd_kafka_flush(rk, 60000) != RD_KAFKA_RESP_ERR_NO_ERROR || delivered != 1)
	{
		fprintf(stderr, "bare_producer: the warm-up message was not delivered%s%s\n",
				first_error[0] ? ": " : "", first_error);
		return 1;
	}
	delivered = 0;

	t0 = now_s();
	for (i = 1; i <= n; i++)
	{
		long long	v = i;

		snprintf(key, sizeof(key), "%lld", v % 100);
		snprintf(value, sizeof(value),
				 "{\"items\": %lld, \"amount\": %lld, \"status\": \"placed\", "
				 "\"currency\": \"EUR\", \"customer\": \"customer-%06lld\", \"order_id\": %lld}",
				 v % 7 + 1, (v * 7919) % 100000, v % 1000, v);
		if (produce(rk, topic, key, value, "/outbox/bench") != 0)
			break;
		if (flush_every > 0 && i % flush_every == 0)
			rd_kafka_flush(rk, 60000);
		else
			rd_kafka_poll(rk, 0);
	}
	rd_kafka_flush(rk, 60000);
	t1 = now_s();

	printf("{\"events\": %ld, \"delivered\": %ld, \"failed\": %ld, \"seconds\": %.6f, "
		   "\"events_per_s\": %.1f, \"linger_ms\": \"%s\", \"flush_every\": %ld, "
		   "\"first_error\": \"%s\"}\n",
		   n, delivered, failed, t1 - t0, (t1 - t0) > 0 ? delivered / (t1 - t0) : 0.0,
		   linger, flush_every, first_error);
	rd_kafka_destroy(rk);
	return (delivered == n && failed == 0) ? 0 : 1;
}
