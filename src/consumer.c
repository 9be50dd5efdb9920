/*-------------------------------------------------------------------------
 *
 * consumer.c
 *	  The consumer: one background worker per database with subscriptions,
 *	  which reads the subscribed topics from Kafka and applies each message
 *	  with its subscription's handler (apply.c).  This file is the worker's
 *	  life: start-up, reading outbox.subscriptions, one librdkafka client per
 *	  subscription (fetch.c), the partitions each is assigned, the loop, and
 *	  errors.
 *
 * One worker per database, not per subscription: background worker slots
 * are fixed at server start (max_worker_processes), while subscriptions come
 * and go with SQL; a worker per database needs one slot more per database
 * whatever its subscriptions, and keeps one connection.  The price: the
 * subscriptions of a database share one process, and a slow handler delays
 * the others of its database (each still gets its own group, client and
 * transactions, served in turn, a batch each).
 *
 * Started by the launcher while the database's slot says it is wanted: from
 * the commit of any subscription change, or when the relay starting in the
 * database finds subscriptions.  Every change wakes the worker at commit;
 * it reads the table again, makes or drops clients, and exits when no
 * subscription is left.  It also reads the table once per
 * outbox.poll_interval, so a handler or role that changed is noticed.
 *
 * Partitions: at each assignment the worker resumes every partition from
 * the offset stored in outbox.consumer_offsets.  A partition this database
 * never stored an offset for starts from the group's committed offset in
 * Kafka, when it has one (another database of the group, or an application
 * consumer of the same group, handed it over), else from start_from; that
 * offset is stored at once, so a restart before the first message does not
 * choose again.  Revoked partitions have their stored offsets committed to
 * Kafka before they go, so the member taking them over starts where this
 * one ended.
 *
 * Errors: an ERROR outside a message's savepoint (the database refusing
 * the batch's commit, a table gone) aborts the transaction; the worker then
 * drops every client and makes them again after a pause, which resumes from
 * the stored offsets: nothing applied is applied again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "consumer.h"
#include "fetch.h"
#include "kafka.h"
#include "outbox.h"
#include "session.h"
#include "shmem.h"
#include "spiutil.h"
#include "waits.h"

#define CONSUMER_ERROR_PAUSE_MS		1000
#define CONSUMER_ERROR_PAUSE_MAX_MS	30000
/* how long after Kafka refused a commit to commit again */
#define CONSUMER_RECOMMIT_MS		1000

static OutboxSlot *consumer_slot = NULL;
static char *consumer_dbname = NULL;
static MemoryContext consumer_cxt = NULL;
static MemoryContext consumer_pass_cxt = NULL;
static List *consumer_subs = NIL;	/* of ConsumerSubscription, in consumer_cxt */
static OutboxKafkaConfig *consumer_config = NULL;
/* the subscription an ERROR escaping now is recorded against, if any */
static ConsumerSubscription *consumer_current = NULL;
static SPIPlanPtr stored_plan = NULL;
static SPIPlanPtr store_plan = NULL;

static const char *const stored_sql =
"SELECT o.\"offset\" FROM outbox.consumer_offsets o"
" WHERE o.group_id OPERATOR(pg_catalog.=) $1 AND o.topic OPERATOR(pg_catalog.=) $2"
"   AND o.partition OPERATOR(pg_catalog.=) $3";

static const char *const store_sql =
"INSERT INTO outbox.consumer_offsets (group_id, topic, partition, \"offset\", consumer, updated_at)"
" VALUES ($1, $2, $3, $4, $5, pg_catalog.now())"
" ON CONFLICT (group_id, topic, partition) DO NOTHING";

/*
 * Leave the slot when the worker exits.
 */
static void
consumer_detach(int code, Datum arg)
{
	if (consumer_slot != NULL)
		outbox_slot_detach(consumer_slot, OUTBOX_WORKER_CONSUMER);
}

/*
 * Exit: no subscription is left (or the extension is gone, or still at a
 * version without subscriptions), unless one changed since gen was read.
 */
static void
consumer_exit_if_unwanted(uint32 gen)
{
	if (!outbox_slot_release_consumer(consumer_slot, gen))
		return;
	ereport(LOG,
			(errmsg("outbox consumer for database \"%s\": no subscriptions, exiting",
					consumer_dbname)));
	proc_exit(0);
}

/*
 * Remember a subscription's last error for outbox.consumer_stats.
 */
static void
consumer_record_error(ConsumerSubscription *sub, const char *message)
{
	if (sub->last_error != NULL)
		pfree(sub->last_error);
	sub->last_error = MemoryContextStrdup(sub->cxt, message);
	sub->last_error_at = GetCurrentTimestamp();
}

/*
 * Publish every subscription's state for outbox.consumer_stats.
 */
static void
consumer_publish_status(void)
{
	OutboxSubscriptionStatus *st = palloc0(sizeof(OutboxSubscriptionStatus) *
										   OUTBOX_MAX_SUBSCRIPTION_STATES);
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;
	int			n = 0;

	foreach(lc, consumer_subs)
	{
		ConsumerSubscription *sub = lfirst(lc);
		OutboxSubscriptionStatus *s = &st[n];
		HASH_SEQ_STATUS seq;
		ConsumerPartition *part;
		bool		retrying = false;

		if (n == OUTBOX_MAX_SUBSCRIPTION_STATES)
			break;
		n++;
		strlcpy(s->consumer, sub->consumer, sizeof(s->consumer));
		if (sub->last_error != NULL)
			strlcpy(s->last_error, sub->last_error, sizeof(s->last_error));
		s->last_error_at = sub->last_error_at;
		s->assigned = sub->fetch ? hash_get_num_entries(sub->partitions) : 0;
		hash_seq_init(&seq, sub->partitions);
		while ((part = hash_seq_search(&seq)) != NULL)
			retrying |= part->paused;
		if (sub->problem != NULL)
			s->state = OUTBOX_CONSUMER_NOT_CONSUMING;
		else if (sub->fetch == NULL)
			s->state = sub->start_at > now ? OUTBOX_CONSUMER_RESTARTING :
				OUTBOX_CONSUMER_STARTING;
		else if (!outbox_fetch_brokers_up(sub->fetch))
			s->state = OUTBOX_CONSUMER_WAITING_FOR_BROKERS;
		else if (retrying)
			s->state = OUTBOX_CONSUMER_RETRYING;
		else
			s->state = OUTBOX_CONSUMER_RUNNING;
	}
	outbox_slot_set_subscriptions(consumer_slot, st, n);
	pfree(st);
}

/*
 * A subscription's state of a partition: found (HASH_FIND, NULL when it is
 * not assigned), entered or removed.
 */
ConsumerPartition *
outbox_consumer_partition(ConsumerSubscription *sub, const char *topic,
						  int32 partition, HASHACTION action)
{
	ConsumerPartitionKey key;

	memset(&key, 0, sizeof(key));
	strlcpy(key.topic, topic, sizeof(key.topic));
	key.partition = partition;
	return hash_search(sub->partitions, &key, action, NULL);
}

/*
 * The offset this database stored for a partition of the group, or -1;
 * stores offset instead when it has none and offset >= 0.  With SPI
 * connected.
 */
static int64
consumer_stored_offset(ConsumerSubscription *sub, const char *topic,
					   int32 partition, int64 offset)
{
	Oid			argtypes[5] = {TEXTOID, TEXTOID, INT4OID, INT8OID, TEXTOID};
	Datum		args[5];
	bool		isnull;
	int			ret;

	args[0] = CStringGetTextDatum(sub->group_id);
	args[1] = CStringGetTextDatum(topic);
	args[2] = Int32GetDatum(partition);
	args[3] = Int64GetDatum(offset);
	args[4] = CStringGetTextDatum(sub->consumer);
	if (offset >= 0)
	{
		ret = SPI_execute_plan(outbox_plan(&store_plan, store_sql, 5, argtypes, 0),
							   args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "could not store into outbox.consumer_offsets: %s",
				 SPI_result_code_string(ret));
		return offset;
	}
	ret = SPI_execute_plan(outbox_plan(&stored_plan, stored_sql, 3, argtypes, 0),
						   args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox.consumer_offsets: %s",
			 SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return -1;
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}

/*
 * Choose the start offset of each partition assigned (see the file's
 * comment), in a transaction of its own.
 */
static void
consumer_choose_offsets(ConsumerSubscription *sub, OutboxFetch *fetch,
						rd_kafka_topic_partition_list_t *partitions)
{
	rd_kafka_topic_partition_list_t *fresh = rd_kafka_topic_partition_list_new(partitions->cnt);
	int			i;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox consumer: SPI_connect failed");
	for (i = 0; i < partitions->cnt; i++)
	{
		rd_kafka_topic_partition_t *p = &partitions->elems[i];

		p->offset = consumer_stored_offset(sub, p->topic, p->partition, -1);
		if (p->offset < 0)
			rd_kafka_topic_partition_list_add(fresh, p->topic, p->partition);
	}
	if (fresh->cnt > 0)
	{
		rd_kafka_resp_err_t err = outbox_fetch_committed(fetch, fresh);

		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			ereport(ERROR,
					(errmsg("could not read group \"%s\"'s committed offsets: %s",
							sub->group_id, rd_kafka_err2str(err))));
		for (i = 0; i < fresh->cnt; i++)
		{
			rd_kafka_topic_partition_t *f = &fresh->elems[i];
			rd_kafka_topic_partition_t *p =
				rd_kafka_topic_partition_list_find(partitions, f->topic, f->partition);
			int64		offset = f->offset;

			if (offset < 0)
			{
				int64		low;
				int64		high;

				err = outbox_fetch_watermarks(fetch, f->topic, f->partition, &low, &high);
				if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
					ereport(ERROR,
							(errmsg("could not read the offsets of partition %d of topic \"%s\": %s",
									f->partition, f->topic, rd_kafka_err2str(err))));
				offset = sub->latest ? high : low;
			}
			p->offset = consumer_stored_offset(sub, f->topic, f->partition, offset);
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	rd_kafka_topic_partition_list_destroy(fresh);
}

/*
 * Assign callback (fetch.h): choose the offsets, then keep a state per
 * partition.  Any ERROR is caught here: the client then takes nothing and
 * is made again after a pause.
 */
static bool
consumer_on_assign(void *arg, OutboxFetch *fetch,
				   rd_kafka_topic_partition_list_t *partitions)
{
	ConsumerSubscription *sub = (ConsumerSubscription *) arg;
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;
	int			i;

	/*
	 * Assignments come from outbox_fetch_next(), outside any transaction;
	 * one served while a client is being closed in the middle of reading
	 * the subscriptions is refused (the client is going anyway).
	 */
	if (IsTransactionState())
		return false;
	PG_TRY();
	{
		consumer_choose_offsets(sub, fetch, partitions);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(cxt);
		ereport(LOG,
				(errmsg("outbox consumer \"%s\": could not take partitions: %s",
						sub->consumer, edata->message)));
		consumer_record_error(sub, edata->message);
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	if (!ok)
		return false;

	for (i = 0; i < partitions->cnt; i++)
	{
		rd_kafka_topic_partition_t *p = &partitions->elems[i];
		ConsumerPartition *part = outbox_consumer_partition(sub, p->topic, p->partition,
															HASH_ENTER);

		part->next = p->offset;
		part->failing = -1;
		part->attempts = 0;
		part->paused = false;
	}
	ereport(LOG,
			(errmsg("outbox consumer \"%s\" in database \"%s\": assigned %d partitions",
					sub->consumer, consumer_dbname, partitions->cnt)));
	return true;
}

/*
 * Revoke callback (fetch.h): commit the stored offsets of the partitions
 * going to Kafka, synchronously, so that whoever takes them over starts
 * there, and forget them.
 */
static void
consumer_on_revoke(void *arg, OutboxFetch *fetch,
				   rd_kafka_topic_partition_list_t *partitions)
{
	ConsumerSubscription *sub = (ConsumerSubscription *) arg;
	rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new(partitions->cnt);
	int			i;

	for (i = 0; i < partitions->cnt; i++)
	{
		rd_kafka_topic_partition_t *p = &partitions->elems[i];
		ConsumerPartition *part = outbox_consumer_partition(sub, p->topic, p->partition,
															HASH_FIND);

		if (part == NULL)
			continue;
		rd_kafka_topic_partition_list_add(commit, p->topic, p->partition)->offset = part->next;
		(void) outbox_consumer_partition(sub, p->topic, p->partition, HASH_REMOVE);
	}
	outbox_fetch_commit(fetch, commit, false);
	ereport(LOG,
			(errmsg("outbox consumer \"%s\" in database \"%s\": %d partitions revoked",
					sub->consumer, consumer_dbname, partitions->cnt)));
	rd_kafka_topic_partition_list_destroy(commit);
}

/*
 * Drop a subscription's client (leaving its group) and its partitions; a
 * new client may be made after pause_ms.
 */
static void
consumer_stop(ConsumerSubscription *sub, long pause_ms)
{
	HASH_SEQ_STATUS seq;
	ConsumerPartition *part;

	if (sub->fetch != NULL)
	{
		outbox_fetch_destroy(sub->fetch);
		sub->fetch = NULL;
	}
	sub->recommit_at = 0;
	hash_seq_init(&seq, sub->partitions);
	while ((part = hash_seq_search(&seq)) != NULL)
		(void) hash_search(sub->partitions, &part->key, HASH_REMOVE, NULL);
	sub->start_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), pause_ms);
}

/*
 * Make the subscription's client.
 */
static void
consumer_start(ConsumerSubscription *sub)
{
	char	   *client_id = psprintf("outbox-%s-%s", consumer_dbname, sub->consumer);
	/* this database's member of the group, whatever its clients' lives */
	char	   *instance_id = psprintf("outbox-" UINT64_FORMAT "-%u-%s",
									   GetSystemIdentifier(), MyDatabaseId, sub->consumer);
	char	   *label = psprintf("outbox consumer \"%s\" in database \"%s\"",
								 sub->consumer, consumer_dbname);

	sub->fetch = outbox_fetch_create(consumer_config, sub->group_id, sub->topics,
									 sub->ntopics, client_id, instance_id, label,
									 consumer_on_assign, consumer_on_revoke, sub);
	ereport(LOG,
			(errmsg("outbox consumer \"%s\" in database \"%s\" started, group \"%s\"",
					sub->consumer, consumer_dbname, sub->group_id)));
}

/* The subscription of that name, or NULL */
static ConsumerSubscription *
consumer_find(const char *consumer)
{
	ListCell   *lc;

	foreach(lc, consumer_subs)
	{
		ConsumerSubscription *sub = lfirst(lc);

		if (strcmp(sub->consumer, consumer) == 0)
			return sub;
	}
	return NULL;
}

/* Drop a subscription altogether */
static void
consumer_forget(ConsumerSubscription *sub)
{
	consumer_stop(sub, 0);
	hash_destroy(sub->partitions);
	MemoryContextDelete(sub->cxt);
}

/*
 * A subscription as the row gives it, new or updated in place.  What its
 * client was made from (group, topics, handler, role, paused) changing
 * drops the client; the rest takes effect with the next batch.
 */
static void
consumer_take_row(HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	char	   *name = TextDatumGetCString(SPI_getbinval(tuple, desc, 1, &isnull));
	char	   *group_id = TextDatumGetCString(SPI_getbinval(tuple, desc, 2, &isnull));
	ArrayType  *topics = DatumGetArrayTypeP(SPI_getbinval(tuple, desc, 3, &isnull));
	Oid			handler = DatumGetObjectId(SPI_getbinval(tuple, desc, 4, &isnull));
	Oid			run_as = DatumGetObjectId(SPI_getbinval(tuple, desc, 5, &isnull));
	bool		paused = DatumGetBool(SPI_getbinval(tuple, desc, 11, &isnull));
	ConsumerSubscription *sub = consumer_find(name);
	Datum	   *elems;
	int			nelems;
	bool		same;
	int			i;

	deconstruct_array(topics, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
	same = sub != NULL && strcmp(sub->group_id, group_id) == 0 &&
		sub->handler == handler && sub->run_as == run_as &&
		sub->paused == paused && sub->ntopics == nelems;
	for (i = 0; same && i < nelems; i++)
		same = strcmp(sub->topics[i], TextDatumGetCString(elems[i])) == 0;

	if (sub != NULL && !same)
	{
		consumer_forget(sub);
		consumer_subs = list_delete_ptr(consumer_subs, sub);
		sub = NULL;
	}
	if (sub == NULL)
	{
		MemoryContext cxt = AllocSetContextCreate(consumer_cxt, "outbox subscription",
												  ALLOCSET_SMALL_SIZES);
		HASHCTL		ctl;
		MemoryContext old = MemoryContextSwitchTo(cxt);

		sub = palloc0(sizeof(ConsumerSubscription));
		sub->cxt = cxt;
		sub->consumer = pstrdup(name);
		sub->group_id = pstrdup(group_id);
		sub->handler = handler;
		sub->run_as = run_as;
		sub->paused = paused;
		sub->ntopics = nelems;
		sub->topics = palloc(sizeof(char *) * nelems);
		for (i = 0; i < nelems; i++)
			sub->topics[i] = TextDatumGetCString(elems[i]);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(ConsumerPartitionKey);
		ctl.entrysize = sizeof(ConsumerPartition);
		ctl.hcxt = cxt;
		sub->partitions = hash_create("outbox consumer partitions", 64, &ctl,
									  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		MemoryContextSwitchTo(old);
		MemoryContextSwitchTo(consumer_cxt);
		consumer_subs = lappend(consumer_subs, sub);
		MemoryContextSwitchTo(old);
	}
	sub->latest = strcmp(TextDatumGetCString(SPI_getbinval(tuple, desc, 6, &isnull)),
						 "latest") == 0;
	sub->batch_size = DatumGetInt32(SPI_getbinval(tuple, desc, 7, &isnull));
	sub->max_attempts = DatumGetInt32(SPI_getbinval(tuple, desc, 8, &isnull));
	sub->backoff_min_ms = DatumGetInt64(SPI_getbinval(tuple, desc, 9, &isnull));
	sub->backoff_max_ms = DatumGetInt64(SPI_getbinval(tuple, desc, 10, &isnull));
	sub->seen = true;
}

/*
 * Read outbox.subscriptions: make, change and drop subscriptions to match,
 * and check each one's handler and role.  Exits when the extension is
 * gone or has no subscriptions table.
 */
static void
consumer_load(uint32 gen)
{
	ListCell   *lc;
	uint64		i;
	bool		usable;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "reading outbox.subscriptions");
	usable = OidIsValid(get_extension_oid("outbox", true)) &&
		OidIsValid(get_relname_relid("subscriptions", get_namespace_oid("outbox", false))) &&
		OidIsValid(get_relname_relid("consumer_offsets", get_namespace_oid("outbox", false)));
	if (!usable)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(consumer_pass_cxt);
		foreach(lc, consumer_subs)
			consumer_forget(lfirst(lc));
		consumer_subs = NIL;
		consumer_exit_if_unwanted(gen);
		return;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox consumer: SPI_connect failed");
	if (SPI_execute("SELECT s.consumer, s.group_id, s.topics, s.handler::pg_catalog.oid,"
					"       s.run_as, s.start_from, s.batch_size, s.max_attempts,"
					"       (pg_catalog.date_part('epoch', s.backoff_min) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8,"
					"       (pg_catalog.date_part('epoch', s.backoff_max) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8,"
					"       s.paused"
					"  FROM outbox.subscriptions s ORDER BY s.consumer", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox.subscriptions");
	foreach(lc, consumer_subs)
		((ConsumerSubscription *) lfirst(lc))->seen = false;
	for (i = 0; i < SPI_processed; i++)
		consumer_take_row(SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
	foreach(lc, consumer_subs)
	{
		ConsumerSubscription *sub = lfirst(lc);
		char	   *problem;

		if (!sub->seen)
		{
			consumer_forget(sub);
			consumer_subs = foreach_delete_current(consumer_subs, lc);
			continue;
		}
		problem = sub->paused ? NULL : outbox_apply_check(sub);
		if (problem != NULL && (sub->problem == NULL || strcmp(problem, sub->problem) != 0))
			ereport(LOG,
					(errmsg("outbox consumer \"%s\" in database \"%s\" does not consume: %s",
							sub->consumer, consumer_dbname, problem)));
		if (sub->problem != NULL)
			pfree(sub->problem);
		sub->problem = problem ? MemoryContextStrdup(sub->cxt, problem) : NULL;
		if (problem != NULL)
			consumer_record_error(sub, problem);
		if ((sub->problem != NULL || sub->paused) && sub->fetch != NULL)
			consumer_stop(sub, 0);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(consumer_pass_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);
	if (consumer_subs == NIL)
		consumer_exit_if_unwanted(gen);
}

/*
 * When Kafka refused a commit, commit every assigned partition's stored
 * offset again a second later (and so on while it refuses), so that Kafka's
 * offsets, and the lag its tools show, catch up even while no message
 * comes.
 */
static void
consumer_recommit(ConsumerSubscription *sub, TimestampTz now, long *sleep_ms)
{
	rd_kafka_topic_partition_list_t *commit;
	HASH_SEQ_STATUS seq;
	ConsumerPartition *part;

	if (outbox_fetch_take_commit_refusal(sub->fetch) && sub->recommit_at == 0)
		sub->recommit_at = TimestampTzPlusMilliseconds(now, CONSUMER_RECOMMIT_MS);
	if (sub->recommit_at == 0)
		return;
	if (sub->recommit_at > now)
	{
		*sleep_ms = Min(*sleep_ms, (long) ((sub->recommit_at - now) / 1000) + 1);
		return;
	}
	sub->recommit_at = 0;
	commit = rd_kafka_topic_partition_list_new(hash_get_num_entries(sub->partitions));
	hash_seq_init(&seq, sub->partitions);
	while ((part = hash_seq_search(&seq)) != NULL)
		rd_kafka_topic_partition_list_add(commit, part->key.topic,
										  part->key.partition)->offset = part->next;
	outbox_fetch_commit(sub->fetch, commit, true);
	rd_kafka_topic_partition_list_destroy(commit);
}

/*
 * One turn of a subscription: resume partitions whose retry is due, take
 * up to a batch of messages and apply them.  Returns true when it applied
 * (or passed over) any; *sleep_ms shrinks to the next retry due.
 */
static bool
consumer_turn(ConsumerSubscription *sub, long *sleep_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	HASH_SEQ_STATUS seq;
	ConsumerPartition *part;
	rd_kafka_message_t **msgs;
	int			n = 0;
	int			i;
	volatile bool applied = false;

	if (sub->problem != NULL || sub->paused)
		return false;
	if (sub->fetch == NULL)
	{
		if (sub->start_at > now)
		{
			*sleep_ms = Min(*sleep_ms, (long) ((sub->start_at - now) / 1000) + 1);
			return false;
		}
		consumer_current = sub;
		consumer_start(sub);
		consumer_current = NULL;
	}

	hash_seq_init(&seq, sub->partitions);
	while ((part = hash_seq_search(&seq)) != NULL)
	{
		if (!part->paused)
			continue;
		if (part->retry_at <= now)
		{
			part->paused = false;
			outbox_fetch_resume(sub->fetch, part->key.topic, part->key.partition);
		}
		else
			*sleep_ms = Min(*sleep_ms, (long) ((part->retry_at - now) / 1000) + 1);
	}

	msgs = palloc(sizeof(rd_kafka_message_t *) * sub->batch_size);
	while (n < sub->batch_size && (msgs[n] = outbox_fetch_next(sub->fetch)) != NULL)
		n++;
	if (outbox_fetch_failed(sub->fetch))
	{
		consumer_record_error(sub, "the Kafka client failed (see the server log); making a new one");
		for (i = 0; i < n; i++)
			rd_kafka_message_destroy(msgs[i]);
		sub->failures = Min(sub->failures + 1, 5);
		consumer_stop(sub, CONSUMER_ERROR_PAUSE_MS << sub->failures);
		return false;
	}
	consumer_recommit(sub, now, sleep_ms);
	if (n == 0)
		return false;
	consumer_current = sub;
	PG_TRY();
	{
		applied = outbox_apply_batch(sub, msgs, n);
	}
	PG_FINALLY();
	{
		for (i = 0; i < n; i++)
			rd_kafka_message_destroy(msgs[i]);
	}
	PG_END_TRY();
	consumer_current = NULL;
	if (!applied)
	{
		/* the handler or role changed under it: stop until that is mended */
		ereport(LOG,
				(errmsg("outbox consumer \"%s\" in database \"%s\" does not consume: %s",
						sub->consumer, consumer_dbname, sub->problem)));
		consumer_record_error(sub, sub->problem);
		consumer_stop(sub, 0);
		return false;
	}
	sub->failures = 0;
	return true;
}

/*
 * The clients' configuration as the settings give it now, in a context of
 * its own.
 */
static OutboxKafkaConfig *
consumer_read_config(void)
{
	MemoryContext old = MemoryContextSwitchTo(AllocSetContextCreate(consumer_cxt,
																	"outbox consumer configuration",
																	ALLOCSET_SMALL_SIZES));
	OutboxKafkaConfig *config = outbox_kafka_config_read();

	MemoryContextSwitchTo(old);
	return config;
}

/*
 * Error context: every message raised while the consumer works names it.
 */
static void
consumer_error_context(void *arg)
{
	errcontext("outbox consumer for database \"%s\"", consumer_dbname);
}

/*
 * Consumer entry point.  main_arg is the database oid, bgw_extra the slot.
 */
void
outbox_consumer_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	int			slotno;
	sigjmp_buf	local_sigjmp_buf;
	ErrorContextCallback errcallback;
	volatile uint32 seen_gen = 0;
	volatile bool loaded = false;
	volatile int errors_in_a_row = 0;
	volatile TimestampTz next_load = 0;

	memcpy(&slotno, MyBgworkerEntry->bgw_extra, sizeof(int));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	consumer_slot = outbox_slot_attach(slotno, dboid, OUTBOX_WORKER_CONSUMER);
	if (consumer_slot == NULL)
	{
		ereport(LOG,
				(errmsg("outbox consumer for database with OID %u: slot %d is no longer ours, exiting",
						dboid, slotno)));
		proc_exit(0);
	}
	before_shmem_exit(consumer_detach, (Datum) 0);
	outbox_session_save();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	outbox_session_pin(true);

	consumer_cxt = AllocSetContextCreate(TopMemoryContext, "outbox consumer",
										 ALLOCSET_DEFAULT_SIZES);
	consumer_pass_cxt = AllocSetContextCreate(consumer_cxt, "outbox consumer pass",
											  ALLOCSET_DEFAULT_SIZES);
	StartTransactionCommand();
	consumer_dbname = MemoryContextStrdup(consumer_cxt, get_database_name(dboid));
	CommitTransactionCommand();
	consumer_config = consumer_read_config();
	pgstat_report_appname("outbox consumer");
	ereport(LOG, (errmsg("outbox consumer for database \"%s\" started", consumer_dbname)));

	errcallback.callback = consumer_error_context;
	errcallback.arg = NULL;
	errcallback.previous = NULL;

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		/* an ERROR escaped: drop the clients, pause, start over from the database */
		ListCell   *lc;
		long		pause_ms;
		TimestampTz pause_until;

		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		EmitErrorReport();
		if (consumer_current != NULL)
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(consumer_pass_cxt);
			edata = CopyErrorData();
			consumer_record_error(consumer_current, edata->message);
			consumer_current = NULL;
		}
		AbortCurrentTransaction();
		MemoryContextSwitchTo(consumer_pass_cxt);
		FlushErrorState();
		RESUME_INTERRUPTS();
		errors_in_a_row = Min(errors_in_a_row + 1, 5);
		pause_ms = Min((long) CONSUMER_ERROR_PAUSE_MS << (errors_in_a_row - 1),
					   CONSUMER_ERROR_PAUSE_MAX_MS);
		foreach(lc, consumer_subs)
			consumer_stop(lfirst(lc), pause_ms);
		loaded = false;
		/* commits do not cut the pause short; a signal to exit does */
		pause_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), pause_ms);
		while ((pause_ms = (long) ((pause_until - GetCurrentTimestamp()) / 1000)) > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 pause_ms, outbox_wait_event(OUTBOX_WAIT_CONSUMER_IDLE));
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		ListCell   *lc;
		bool		progress = false;
		long		sleep_ms = outbox_poll_interval;
		uint32		gen;

		MemoryContextSwitchTo(consumer_pass_cxt);
		MemoryContextReset(consumer_pass_cxt);
		CHECK_FOR_INTERRUPTS();
		error_context_stack = &errcallback;
		if (ConfigReloadPending)
		{
			OutboxKafkaConfig *next;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next = consumer_read_config();
			if (strcmp(next->signature, consumer_config->signature) != 0 ||
				strcmp(next->consumer_props, consumer_config->consumer_props) != 0)
			{
				/* clients are made again with the new settings */
				MemoryContextDelete(GetMemoryChunkContext(consumer_config));
				consumer_config = next;
				foreach(lc, consumer_subs)
					consumer_stop(lfirst(lc), 0);
			}
			else
				MemoryContextDelete(GetMemoryChunkContext(next));
		}

		gen = outbox_slot_subscriptions_gen(consumer_slot);
		if (!loaded || gen != seen_gen || GetCurrentTimestamp() >= next_load)
		{
			consumer_load(gen);
			seen_gen = gen;
			loaded = true;
			next_load = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													outbox_poll_interval);
		}

		foreach(lc, consumer_subs)
			progress |= consumer_turn(lfirst(lc), &sleep_ms);
		consumer_publish_status();
		errors_in_a_row = 0;
		if (progress)
			continue;
		pgstat_report_stat(true);
		(void) outbox_fetch_wait(Max(sleep_ms, 1),
								 outbox_wait_event(OUTBOX_WAIT_CONSUMER_IDLE));
	}
}
