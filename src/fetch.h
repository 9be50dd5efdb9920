/*-------------------------------------------------------------------------
 *
 * fetch.h
 *	  The consumer's librdkafka clients: one per subscription, in a group,
 *	  with offsets chosen by the consumer at every assignment.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_FETCH_H
#define OUTBOX_FETCH_H

#include <librdkafka/rdkafka.h>

#include "kafka.h"

typedef struct OutboxFetch OutboxFetch;

/*
 * Called from within outbox_fetch_next() when the group gives the client
 * partitions: set each element's offset to where to start.  false (after
 * recording why) when it cannot: the client then takes none of them and
 * reports itself failed.  Must not throw.
 */
typedef bool (*OutboxAssignFn) (void *arg, OutboxFetch *fetch,
								rd_kafka_topic_partition_list_t *partitions);

/* Called likewise when the group takes partitions away; must not throw */
typedef void (*OutboxRevokeFn) (void *arg, OutboxFetch *fetch,
								rd_kafka_topic_partition_list_t *partitions);

extern OutboxFetch *outbox_fetch_create(const OutboxKafkaConfig *config,
										const char *group_id,
										char **topics, int ntopics,
										const char *client_id,
										const char *instance_id,
										const char *label,
										OutboxAssignFn on_assign,
										OutboxRevokeFn on_revoke, void *arg);
extern void outbox_fetch_destroy(OutboxFetch *fetch);
extern rd_kafka_message_t *outbox_fetch_next(OutboxFetch *fetch);
extern bool outbox_fetch_failed(OutboxFetch *fetch);
extern bool outbox_fetch_brokers_up(OutboxFetch *fetch);
extern bool outbox_fetch_take_commit_refusal(OutboxFetch *fetch);
extern void outbox_fetch_commit(OutboxFetch *fetch,
								rd_kafka_topic_partition_list_t *offsets,
								bool async);
extern rd_kafka_resp_err_t outbox_fetch_committed(OutboxFetch *fetch,
												  rd_kafka_topic_partition_list_t *partitions);
extern rd_kafka_resp_err_t outbox_fetch_watermarks(OutboxFetch *fetch,
												   const char *topic,
												   int32 partition,
												   int64 *low, int64 *high);
extern int64 outbox_fetch_cached_high(OutboxFetch *fetch, const char *topic,
									  int32 partition);
extern void outbox_fetch_rewind(OutboxFetch *fetch, const char *topic,
								int32 partition, int64 offset);
extern void outbox_fetch_resume(OutboxFetch *fetch, const char *topic,
								int32 partition);
extern int	outbox_fetch_wait(long timeout, uint32 wait_event_info);

#endif							/* OUTBOX_FETCH_H */
