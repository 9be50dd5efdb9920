/*-------------------------------------------------------------------------
 *
 * fetch.c
 *	  The consumer's librdkafka clients.  Each subscription has one: a
 *	  member of the subscription's group, reading its topics, with
 *	  automatic commits and offset stores off, since the consumer chooses
 *	  every start offset itself (at each assignment, through the assign
 *	  callback) and commits only what its database has applied.
 *
 * Threading: as for the producer (kafka.c), nothing reaches PostgreSQL from
 * librdkafka's threads.  Rebalances, errors and log lines are served on the
 * client's consumer queue (the main queue is forwarded to it) by
 * rd_kafka_consumer_poll() in outbox_fetch_next(), in the consumer's own
 * thread.  Every client's queue signals one pipe of the process when it
 * becomes non-empty; the consumer waits on that pipe with its latch, so it
 * never polls on a timer.
 *
 * The assign and revoke callbacks run PostgreSQL code (they read and write
 * the stored offsets) while librdkafka's frames are on the stack below
 * them, so they must catch their own errors: a longjmp out of a callback
 * would skip librdkafka's bookkeeping.
 *
 * Memory: an OutboxFetch lives in TopMemoryContext until destroyed; what
 * librdkafka allocates it owns.  Secrets: as in kafka.c, messages name
 * properties, never values.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"

#include "fetch.h"
#include "outbox.h"

/* How long a blocking request to the brokers may take */
#define FETCH_REQUEST_TIMEOUT_MS 5000

struct OutboxFetch
{
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;	/* the consumer queue */
	OutboxAssignFn on_assign;
	OutboxRevokeFn on_revoke;
	void	   *arg;
	bool		failed;			/* fatal error, or an assignment it could not take */
	bool		all_brokers_down;
	bool		commit_refused; /* a commit Kafka did not take, since asked */
	char	   *label;
};

/* Client settings outbox sets and the user may override */
static const char *const fetch_default_properties[][2] = {
	{"socket.keepalive.enable", "true"},
	{"fetch.wait.max.ms", "100"},
	{NULL, NULL}
};

/* One wake-up pipe for all the process's clients, opened with the first */
static OutboxWakePipe fetch_wake;
static bool fetch_wake_open = false;

static void
fetch_wake_init(void)
{
	if (fetch_wake_open)
		return;
	outbox_wake_pipe_open(&fetch_wake, "outbox consumer");
	fetch_wake_open = true;
}

/*
 * Wait up to timeout ms for the latch or for any client to have something
 * (messages, a rebalance, an error); exits if the postmaster dies.  Returns
 * WL_LATCH_SET, WL_SOCKET_READABLE or WL_TIMEOUT, having reset the latch or
 * drained the pipe.
 */
int
outbox_fetch_wait(long timeout, uint32 wait_event_info)
{
	int			events;

	fetch_wake_init();
	events = outbox_wake_pipe_wait(&fetch_wake, timeout, wait_event_info);
	if (events & WL_SOCKET_READABLE)
		outbox_wake_pipe_drain(&fetch_wake);
	return events;
}

/*
 * Rebalance callback, served by rd_kafka_consumer_poll() in the consumer's
 * thread.  Takes partitions with the offsets the assign callback chose, or
 * none when it could not choose; gives revoked ones back after the revoke
 * callback.  Both the eager and the cooperative protocol (a user may set
 * partition.assignment.strategy).
 */
static void
fetch_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
				   rd_kafka_topic_partition_list_t *partitions, void *opaque)
{
	OutboxFetch *fetch = (OutboxFetch *) opaque;
	bool		cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	rd_kafka_error_t *error = NULL;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
	{
		if (!fetch->on_assign(fetch->arg, fetch, partitions))
		{
			fetch->failed = true;
			if (!cooperative)
				rd_kafka_assign(rk, NULL);
			return;
		}
		if (cooperative)
			error = rd_kafka_incremental_assign(rk, partitions);
		else
			rd_kafka_assign(rk, partitions);
	}
	else
	{
		fetch->on_revoke(fetch->arg, fetch, partitions);
		if (cooperative)
			error = rd_kafka_incremental_unassign(rk, partitions);
		else
			rd_kafka_assign(rk, NULL);
	}
	if (error != NULL)
	{
		ereport(LOG,
				(errmsg("%s: could not change the assignment: %s",
						fetch->label, rd_kafka_error_string(error))));
		rd_kafka_error_destroy(error);
		fetch->failed = true;
	}
}

/*
 * Error callback: a fatal error fails the client (the consumer makes a new
 * one); all brokers down is remembered.
 */
static void
fetch_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	OutboxFetch *fetch = (OutboxFetch *) opaque;

	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		fetch->failed = true;
		ereport(LOG,
				(errmsg("%s: Kafka consumer failed fatally: %s", fetch->label, reason)));
		return;
	}
	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		fetch->all_brokers_down = true;
	ereport(DEBUG1,
			(errmsg("%s: Kafka: %s: %s", fetch->label, rd_kafka_err2name(err), reason)));
}

/*
 * Offset commit callback, served likewise: remember a commit Kafka did not
 * take (during a rebalance, or from a member it no longer knows), so that
 * the consumer commits again instead of leaving Kafka's offsets behind
 * while it idles.
 */
static void
fetch_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
				rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	OutboxFetch *fetch = (OutboxFetch *) opaque;
	int			i;

	if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
		return;
	for (i = 0; err == RD_KAFKA_RESP_ERR_NO_ERROR && offsets != NULL && i < offsets->cnt; i++)
		err = offsets->elems[i].err;
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	fetch->commit_refused = true;
	ereport(DEBUG1,
			(errmsg("%s: Kafka did not take a commit: %s", fetch->label, rd_kafka_err2str(err))));
}

/*
 * librdkafka log lines: warnings and worse to the server log.
 */
static void
fetch_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	OutboxFetch *fetch = (OutboxFetch *) rd_kafka_opaque(rk);

	ereport(level <= 4 ? LOG : DEBUG1,
			(errmsg("%s: librdkafka %s: %s", fetch->label, fac, buf)));
}

/*
 * A client in group_id reading topics, a static member of the group
 * (instance_id): a consumer that restarts takes its partitions back at
 * once, without the group waiting for its old session to time out.  ERROR
 * when librdkafka refuses the configuration.
 */
OutboxFetch *
outbox_fetch_create(const OutboxKafkaConfig *config, const char *group_id,
					char **topics, int ntopics, const char *client_id,
					const char *instance_id, const char *label, OutboxAssignFn on_assign,
					OutboxRevokeFn on_revoke, void *arg)
{
	OutboxFetch *fetch;
	rd_kafka_conf_t *conf;
	rd_kafka_topic_partition_list_t *subscription;
	rd_kafka_resp_err_t err;
	char		errstr[512];
	char	   *detail = NULL;
	int			i;

	fetch_wake_init();
	conf = outbox_kafka_conf_new(config, client_id, fetch_default_properties, &detail);
	if (conf != NULL && !outbox_kafka_conf_apply_consumer(conf, config->consumer_props, &detail))
	{
		rd_kafka_conf_destroy(conf);
		conf = NULL;
	}
	if (conf == NULL ||
		rd_kafka_conf_set(conf, "group.id", group_id, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "group.instance.id", instance_id, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "enable.partition.eof", "false", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "isolation.level", "read_committed", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		if (conf != NULL)
			rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: invalid Kafka consumer configuration", label),
				 errdetail("%s", detail ? detail : errstr)));
	}

	fetch = MemoryContextAllocZero(TopMemoryContext, sizeof(OutboxFetch));
	fetch->label = MemoryContextStrdup(TopMemoryContext, label);
	fetch->on_assign = on_assign;
	fetch->on_revoke = on_revoke;
	fetch->arg = arg;
	rd_kafka_conf_set_opaque(conf, fetch);
	rd_kafka_conf_set_rebalance_cb(conf, fetch_rebalance_cb);
	rd_kafka_conf_set_error_cb(conf, fetch_error_cb);
	rd_kafka_conf_set_log_cb(conf, fetch_log_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, fetch_commit_cb);

	/* rd_kafka_new takes ownership of conf, on success only */
	fetch->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (fetch->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		pfree(fetch->label);
		pfree(fetch);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: could not create the Kafka consumer", label),
				 errdetail("%s", errstr)));
	}
	rd_kafka_set_log_queue(fetch->rk, NULL);
	rd_kafka_poll_set_consumer(fetch->rk);
	fetch->queue = rd_kafka_queue_get_consumer(fetch->rk);
	rd_kafka_queue_io_event_enable(fetch->queue, fetch_wake.fds[1], "c", 1);

	subscription = rd_kafka_topic_partition_list_new(ntopics);
	for (i = 0; i < ntopics; i++)
		rd_kafka_topic_partition_list_add(subscription, topics[i], RD_KAFKA_PARTITION_UA);
	err = rd_kafka_subscribe(fetch->rk, subscription);
	rd_kafka_topic_partition_list_destroy(subscription);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		outbox_fetch_destroy(fetch);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: could not subscribe: %s", label, rd_kafka_err2str(err))));
	}
	return fetch;
}

/*
 * Leave the group (the revoke callback runs first) and free the client.
 */
void
outbox_fetch_destroy(OutboxFetch *fetch)
{
	if (fetch == NULL)
		return;
	(void) rd_kafka_consumer_close(fetch->rk);
	rd_kafka_queue_io_event_enable(fetch->queue, -1, NULL, 0);
	rd_kafka_queue_destroy(fetch->queue);
	rd_kafka_destroy(fetch->rk);
	pfree(fetch->label);
	pfree(fetch);
}

/*
 * The next message, or NULL when none is waiting; serves rebalances, errors
 * and log lines on the way.  The caller destroys the message.  Errors
 * librdkafka gives as messages (a topic that does not exist, a broker
 * refusing a fetch) are logged at DEBUG1 and passed over: librdkafka retries
 * them itself.
 */
rd_kafka_message_t *
outbox_fetch_next(OutboxFetch *fetch)
{
	for (;;)
	{
		rd_kafka_message_t *msg = rd_kafka_consumer_poll(fetch->rk, 0);

		if (msg == NULL)
			return NULL;
		if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			fetch->all_brokers_down = false;
			return msg;
		}
		ereport(DEBUG1,
				(errmsg("%s: Kafka: %s", fetch->label, rd_kafka_message_errstr(msg))));
		rd_kafka_message_destroy(msg);
	}
}

bool
outbox_fetch_failed(OutboxFetch *fetch)
{
	return fetch->failed;
}

/*
 * Did Kafka refuse a commit since the last call?
 */
bool
outbox_fetch_take_commit_refusal(OutboxFetch *fetch)
{
	bool		refused = fetch->commit_refused;

	fetch->commit_refused = false;
	return refused;
}

bool
outbox_fetch_brokers_up(OutboxFetch *fetch)
{
	return !fetch->all_brokers_down;
}

/*
 * Commit offsets (the next offset to read, per partition) to the group;
 * with async the answer comes to fetch_commit_cb, and an error of a
 * synchronous commit is only logged: the database's offsets are the ones
 * that count.
 */
void
outbox_fetch_commit(OutboxFetch *fetch, rd_kafka_topic_partition_list_t *offsets,
					bool async)
{
	rd_kafka_resp_err_t err;

	if (offsets->cnt == 0)
		return;
	err = rd_kafka_commit(fetch->rk, offsets, async ? 1 : 0);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(async ? DEBUG1 : LOG,
				(errmsg("%s: could not commit offsets to Kafka: %s",
						fetch->label, rd_kafka_err2str(err))));
}

/*
 * Read the group's committed offsets of partitions into their elements
 * (RD_KAFKA_OFFSET_INVALID where the group has none).
 */
rd_kafka_resp_err_t
outbox_fetch_committed(OutboxFetch *fetch, rd_kafka_topic_partition_list_t *partitions)
{
	return rd_kafka_committed(fetch->rk, partitions, FETCH_REQUEST_TIMEOUT_MS);
}

/*
 * A partition's first and next offsets, asked of its leader.
 */
rd_kafka_resp_err_t
outbox_fetch_watermarks(OutboxFetch *fetch, const char *topic, int32 partition,
						int64 *low, int64 *high)
{
	return rd_kafka_query_watermark_offsets(fetch->rk, topic, partition, low, high,
											FETCH_REQUEST_TIMEOUT_MS);
}

/*
 * A partition's next offset as the last fetch answer gave it, without asking
 * the broker; -1 when not known yet.
 */
int64
outbox_fetch_cached_high(OutboxFetch *fetch, const char *topic, int32 partition)
{
	int64		low = -1;
	int64		high = -1;

	if (rd_kafka_get_watermark_offsets(fetch->rk, topic, partition, &low, &high) !=
		RD_KAFKA_RESP_ERR_NO_ERROR)
		return -1;
	return high;
}

/* A list of one partition, with offset */
static rd_kafka_topic_partition_list_t *
fetch_one(const char *topic, int32 partition, int64 offset)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);

	rd_kafka_topic_partition_list_add(list, topic, partition)->offset = offset;
	return list;
}

/*
 * Stop fetching a partition and go back to offset: what was fetched after
 * it is thrown away, and fetching resumes from offset at
 * outbox_fetch_resume().
 */
void
outbox_fetch_rewind(OutboxFetch *fetch, const char *topic, int32 partition,
					int64 offset)
{
	rd_kafka_topic_partition_list_t *list = fetch_one(topic, partition, offset);
	rd_kafka_error_t *error;

	(void) rd_kafka_pause_partitions(fetch->rk, list);
	error = rd_kafka_seek_partitions(fetch->rk, list, FETCH_REQUEST_TIMEOUT_MS);
	if (error != NULL)
	{
		ereport(LOG,
				(errmsg("%s: could not seek partition %d of topic \"%s\": %s",
						fetch->label, partition, topic, rd_kafka_error_string(error))));
		rd_kafka_error_destroy(error);
		fetch->failed = true;
	}
	else if (list->elems[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		ereport(LOG,
				(errmsg("%s: could not seek partition %d of topic \"%s\": %s",
						fetch->label, partition, topic, rd_kafka_err2str(list->elems[0].err))));
		fetch->failed = true;
	}
	rd_kafka_topic_partition_list_destroy(list);
}

/*
 * Fetch a rewound partition again.
 */
void
outbox_fetch_resume(OutboxFetch *fetch, const char *topic, int32 partition)
{
	rd_kafka_topic_partition_list_t *list = fetch_one(topic, partition, 0);

	(void) rd_kafka_resume_partitions(fetch->rk, list);
	rd_kafka_topic_partition_list_destroy(list);
}
