/*-------------------------------------------------------------------------
 *
 * consumer.h
 *	  What the consumer worker (consumer.c) and the applying of batches
 *	  (apply.c) share: a subscription as the worker serves it, and where it
 *	  is in each partition it was assigned.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_CONSUMER_H
#define OUTBOX_CONSUMER_H

#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "datatype/timestamp.h"
#include "utils/hsearch.h"

#include "access/tupdesc.h"
#include "fetch.h"
#include "record.h"

/* Kafka's longest topic name, and room for its terminator */
#define OUTBOX_TOPIC_BUFSIZE 256

typedef struct ConsumerPartitionKey
{
	char		topic[OUTBOX_TOPIC_BUFSIZE];
	int32		partition;
} ConsumerPartitionKey;

/*
 * An assigned partition.  next: the next offset to apply (what the database
 * stores); messages before it are old news.  A failed message waits:
 * failing is its offset, attempts how often it failed in a row, and the
 * partition is paused until retry_at.
 */
typedef struct ConsumerPartition
{
	ConsumerPartitionKey key;
	int64		next;
	int64		failing;		/* -1: none */
	int			attempts;
	TimestampTz first_failed_at;
	TimestampTz retry_at;
	bool		paused;			/* rewound, until retry_at */
} ConsumerPartition;

/* One subscription, as read from outbox.subscriptions */
typedef struct ConsumerSubscription
{
	char	   *consumer;
	char	   *group_id;
	char	  **topics;
	int			ntopics;
	Oid			handler;
	Oid			run_as;
	bool		latest;
	int			batch_size;
	int			max_attempts;
	int64		backoff_min_ms;
	int64		backoff_max_ms;
	bool		paused;

	MemoryContext cxt;			/* everything above, and the partitions */
	OutboxFetch *fetch;			/* NULL while not consuming */
	HTAB	   *partitions;		/* ConsumerPartition by key */
	char	   *problem;		/* why it is not consumed, or NULL */
	TimestampTz start_at;		/* not to make a client again before this */
	TimestampTz recommit_at;	/* commit every partition to Kafka again; 0: no */
	int			failures;		/* clients failed in a row */
	char	   *last_error;		/* for outbox.consumer_stats */
	TimestampTz last_error_at;
	bool		seen;			/* still in the table at the last read */
} ConsumerSubscription;

/* consumer.c */
extern ConsumerPartition *outbox_consumer_partition(ConsumerSubscription *sub,
													const char *topic, int32 partition,
													HASHACTION action);

/* apply.c */
extern bool outbox_apply_batch(ConsumerSubscription *sub,
							   rd_kafka_message_t **msgs, int nmsgs);
extern char *outbox_apply_check(ConsumerSubscription *sub);
extern ErrorData *outbox_apply_record(ConsumerSubscription *sub, TupleDesc desc,
									  FmgrInfo *flinfo, Datum ttl,
									  OutboxRecord *rec, bool *first,
									  MemoryContext err_cxt);

#endif							/* OUTBOX_CONSUMER_H */
