/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Applying a batch of Kafka messages to the database: one transaction
 *	  per batch, one savepoint per message.
 *
 * For each message, in its savepoint: mark its event id received in the
 * inbox under the subscription's consumer name (ce_id, or
 * "topic/partition/offset" when it has none; inbox.c maps either to the
 * stored uuid), and when it is new call the handler with the message as an
 * outbox.message.  Then, in the same transaction, store per partition the
 * next offset to apply in outbox.consumer_offsets.  So the effects of a
 * message and the offset after it commit or vanish together: a crash
 * anywhere applies nothing twice and skips nothing (the consumer resumes
 * from the stored offsets; Kafka's are committed after the database
 * commit, asynchronously, for Kafka's tools to show the group's lag).
 *
 * The handler runs as the role that subscribed, with SECURITY_RESTRICTED
 * (no temporary objects, no session state left behind), search_path
 * pg_catalog, pg_temp, and a GUC nest level undone when it returns, so
 * nothing it sets reaches the next message.  Its own SET clauses work.
 *
 * A handler error rolls back that message's savepoint only.  The message is
 * tried again after the subscription's backoff: its partition is rewound to
 * it and paused meanwhile, so later messages of the partition (and so of
 * its keys) wait; other partitions go on.  The attempt that reaches
 * max_attempts stores the message whole in outbox.consumer_dead_letters
 * instead, and the partition goes on after it.  Attempts are counted in the
 * worker's memory: a restart counts again from zero.  A message whose
 * registered event type's schema it breaks (record.c) is stored there at
 * once, with no attempt.
 *
 * Nothing of the worker's state changes until the transaction committed:
 * the batch's outcome per partition is kept aside and taken over after the
 * commit, and an error that aborts the transaction leaves the worker where
 * the database is (the caller then drops its clients and starts again from
 * the stored offsets).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "causation.h"
#include "consumer.h"
#include "inbox.h"
#include "outbox.h"
#include "record.h"
#include "spiutil.h"

/* What a batch did to one partition, taken over after the commit */
typedef struct ApplyOutcome
{
	ConsumerPartition *part;
	int64		next;
	int64		failing;
	int			attempts;
	TimestampTz first_failed_at;
	bool		blocked;		/* failed in this batch: skip the rest */
	int64		processed;
	int64		duplicates;
	int64		failed;
	int64		dead_lettered;
	char	   *last_error;
	TimestampTz last_time;
	bool		has_time;
} ApplyOutcome;

static SPIPlanPtr offsets_plan = NULL;
static SPIPlanPtr dead_letter_plan = NULL;

static const char *const offsets_sql =
"INSERT INTO outbox.consumer_offsets AS o"
" (group_id, topic, partition, \"offset\", consumer, high_watermark, last_message_at,"
"  processed, duplicates, failed, dead_lettered, last_error, last_error_at, updated_at)"
" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,"
"         CASE WHEN $12 IS NULL THEN NULL ELSE pg_catalog.now() END, pg_catalog.now())"
" ON CONFLICT (group_id, topic, partition) DO UPDATE"
" SET \"offset\" = EXCLUDED.\"offset\", consumer = EXCLUDED.consumer,"
"     high_watermark = COALESCE(EXCLUDED.high_watermark, o.high_watermark),"
"     last_message_at = COALESCE(EXCLUDED.last_message_at, o.last_message_at),"
"     processed = o.processed OPERATOR(pg_catalog.+) EXCLUDED.processed,"
"     duplicates = o.duplicates OPERATOR(pg_catalog.+) EXCLUDED.duplicates,"
"     failed = o.failed OPERATOR(pg_catalog.+) EXCLUDED.failed,"
"     dead_lettered = o.dead_lettered OPERATOR(pg_catalog.+) EXCLUDED.dead_lettered,"
"     last_error = COALESCE(EXCLUDED.last_error, o.last_error),"
"     last_error_at = COALESCE(EXCLUDED.last_error_at, o.last_error_at),"
"     updated_at = pg_catalog.now()";

static const char *const dead_letter_sql =
"INSERT INTO outbox.consumer_dead_letters"
" (consumer, group_id, topic, partition, \"offset\", key, value, headers,"
"  event_id, event_type, time, error, error_code, attempts, first_failed_at, failed_at)"
" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
"         pg_catalog.now())";

/*
 * Call the handler with the message, as the subscription's role.
 */
static void
apply_call_handler(ConsumerSubscription *sub, FmgrInfo *flinfo, Datum message)
{
	LOCAL_FCINFO(fcinfo, 1);
	Oid			save_user;
	int			save_sec;
	int			nest;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(sub->run_as, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	InitFunctionCallInfoData(*fcinfo, flinfo, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = message;
	fcinfo->args[0].isnull = false;
	(void) FunctionCallInvoke(fcinfo);
	AtEOXact_GUC(false, nest);
	SetUserIdAndSecContext(save_user, save_sec);
}

/* A text Datum, or a null, for SPI's nulls string */
static Datum
apply_text_arg(const char *s, char *nulls, int i)
{
	nulls[i] = s ? ' ' : 'n';
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * Store a message the handler failed on for the last time.
 */
static void
apply_dead_letter(ConsumerSubscription *sub, const OutboxRecord *rec,
				  ErrorData *edata, int attempts, TimestampTz first_failed_at)
{
	Oid			argtypes[15] = {TEXTOID, TEXTOID, TEXTOID, INT4OID, INT8OID,
		BYTEAOID, BYTEAOID, JSONBOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID,
	TEXTOID, INT4OID, TIMESTAMPTZOID};
	Datum		args[15];
	char		nulls[16];
	int			ret;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox consumer: SPI_connect failed");
	memset(nulls, ' ', sizeof(nulls));
	nulls[15] = '\0';
	args[0] = CStringGetTextDatum(sub->consumer);
	args[1] = CStringGetTextDatum(sub->group_id);
	args[2] = CStringGetTextDatum(rec->topic);
	args[3] = Int32GetDatum(rec->partition);
	args[4] = Int64GetDatum(rec->offset);
	args[5] = rec->key_bytes ? outbox_record_bytea(rec->key_bytes, rec->key_len) : (Datum) 0;
	nulls[5] = rec->key_bytes ? ' ' : 'n';
	args[6] = rec->value ? outbox_record_bytea(rec->value, rec->value_len) : (Datum) 0;
	nulls[6] = rec->value ? ' ' : 'n';
	args[7] = rec->headers;
	nulls[7] = rec->headers_null ? 'n' : ' ';
	args[8] = apply_text_arg(rec->event_id, nulls, 8);
	args[9] = apply_text_arg(rec->event_type, nulls, 9);
	args[10] = TimestampTzGetDatum(rec->time);
	nulls[10] = rec->has_time ? ' ' : 'n';
	args[11] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
	args[12] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	args[13] = Int32GetDatum(attempts);
	args[14] = TimestampTzGetDatum(first_failed_at);
	ret = SPI_execute_plan(outbox_plan(&dead_letter_plan, dead_letter_sql, 15, argtypes, 0),
						   args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not insert into outbox.consumer_dead_letters: %s",
			 SPI_result_code_string(ret));
	SPI_finish();
}

/*
 * Store the partition's next offset and what the batch counted.
 */
static void
apply_store_offset(ConsumerSubscription *sub, ApplyOutcome *out)
{
	Oid			argtypes[12] = {TEXTOID, TEXTOID, INT4OID, INT8OID, TEXTOID, INT8OID,
	TIMESTAMPTZOID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID};
	Datum		args[12];
	char		nulls[13];
	int64		high = outbox_fetch_cached_high(sub->fetch, out->part->key.topic,
												out->part->key.partition);
	int			ret;

	memset(nulls, ' ', sizeof(nulls));
	nulls[12] = '\0';
	args[0] = CStringGetTextDatum(sub->group_id);
	args[1] = CStringGetTextDatum(out->part->key.topic);
	args[2] = Int32GetDatum(out->part->key.partition);
	args[3] = Int64GetDatum(out->next);
	args[4] = CStringGetTextDatum(sub->consumer);
	args[5] = Int64GetDatum(high);
	nulls[5] = high < 0 ? 'n' : ' ';
	args[6] = TimestampTzGetDatum(out->last_time);
	nulls[6] = out->has_time ? ' ' : 'n';
	args[7] = Int64GetDatum(out->processed);
	args[8] = Int64GetDatum(out->duplicates);
	args[9] = Int64GetDatum(out->failed);
	args[10] = Int64GetDatum(out->dead_lettered);
	args[11] = apply_text_arg(out->last_error, nulls, 11);
	ret = SPI_execute_plan(outbox_plan(&offsets_plan, offsets_sql, 12, argtypes, 0),
						   args, nulls, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not store into outbox.consumer_offsets: %s",
			 SPI_result_code_string(ret));
}

/*
 * The wait before attempt attempts + 1: backoff_min doubling up to
 * backoff_max, with jitter (half of it to all of it).
 */
static TimestampTz
apply_retry_at(ConsumerSubscription *sub, int attempts)
{
	double		ms = (double) sub->backoff_min_ms;

	while (--attempts > 0 && ms < sub->backoff_max_ms)
		ms *= 2;
	ms = Min(ms, (double) sub->backoff_max_ms);
	ms *= 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) ms);
}

/*
 * The outcome slot of a message's partition, or NULL when the partition is
 * no longer assigned or the message is old news (before the partition's
 * next offset, fetched before a rewind).
 */
static ApplyOutcome *
apply_outcome_for(ConsumerSubscription *sub, const rd_kafka_message_t *msg,
				  ApplyOutcome *outcomes, int *noutcomes)
{
	ConsumerPartition *part = outbox_consumer_partition(sub, rd_kafka_topic_name(msg->rkt),
														msg->partition, HASH_FIND);
	ApplyOutcome *out = NULL;
	int			i;

	if (part == NULL || part->paused)
		return NULL;
	for (i = 0; i < *noutcomes; i++)
	{
		if (outcomes[i].part == part)
		{
			out = &outcomes[i];
			break;
		}
	}
	if (out == NULL)
	{
		out = &outcomes[(*noutcomes)++];
		memset(out, 0, sizeof(ApplyOutcome));
		out->part = part;
		out->next = part->next;
		out->failing = part->failing;
		out->attempts = part->attempts;
		out->first_failed_at = part->first_failed_at;
	}
	if (out->blocked || msg->offset < out->next)
		return NULL;
	return out;
}

/*
 * In a savepoint of its own: mark the record received in the inbox and,
 * when it is new, call the handler with it.  NULL when that went well (*first
 * says whether the handler ran), else the error, copied into err_cxt (the
 * savepoint then rolled back).
 */
ErrorData *
outbox_apply_record(ConsumerSubscription *sub, TupleDesc desc, FmgrInfo *flinfo,
					Datum ttl, OutboxRecord *rec, bool *first,
					MemoryContext err_cxt)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		*first = outbox_inbox_mark(CStringGetTextDatum(sub->consumer),
								   outbox_record_inbox_id(rec), ttl);
		if (*first)
		{
			if (rec->event_id != NULL)
				outbox_causation_received(rec->event_id, NULL);
			apply_call_handler(sub, flinfo, outbox_record_message(desc, rec));
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(err_cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return edata;
}

/*
 * A message went to outbox.consumer_dead_letters: say so, and let its
 * partition go on after it.
 */
static void
apply_moved(ConsumerSubscription *sub, const OutboxRecord *rec, ApplyOutcome *out)
{
	ereport(LOG,
			(errmsg("outbox consumer \"%s\": message at offset " INT64_FORMAT " of partition %d of topic \"%s\" moved to outbox.consumer_dead_letters after %d attempts",
					sub->consumer, rec->offset, rec->partition, rec->topic, out->attempts),
			 errdetail("The last error was: %s", out->last_error)));
	out->dead_lettered++;
	out->next = rec->offset + 1;
	out->failing = -1;
	out->attempts = 0;
}

/*
 * Apply one message in a savepoint of its own.  The outcome says what
 * happened: applied or a duplicate (next moves on), failed (blocked, to be
 * rewound), or failed for the last time (dead-lettered, next moves on).
 */
static void
apply_one(ConsumerSubscription *sub, TupleDesc desc, FmgrInfo *flinfo,
		  Datum ttl, const rd_kafka_message_t *msg, ApplyOutcome *out,
		  MemoryContext msg_cxt)
{
	MemoryContext batch_cxt = MemoryContextSwitchTo(msg_cxt);
	OutboxRecord rec;
	bool		first;
	ErrorData  *edata;
	char	   *violations;

	outbox_record_from_kafka(&rec, msg);
	violations = outbox_record_violations(&rec);
	if (violations != NULL)
	{
		/* it breaks its contract: a dead letter at once, never handled */
		MemoryContextSwitchTo(batch_cxt);
		edata = palloc0(sizeof(ErrorData));
		edata->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
		edata->message = pstrdup(violations);
		out->failing = msg->offset;
		out->attempts = 0;
		out->first_failed_at = GetCurrentTimestamp();
		out->last_error = edata->message;
		MemoryContextSwitchTo(msg_cxt);
		apply_dead_letter(sub, &rec, edata, 0, out->first_failed_at);
		MemoryContextSwitchTo(batch_cxt);
		apply_moved(sub, &rec, out);
		return;
	}
	edata = outbox_apply_record(sub, desc, flinfo, ttl, &rec, &first, batch_cxt);
	if (edata == NULL)
	{
		if (first)
			out->processed++;
		else
			out->duplicates++;
		out->next = msg->offset + 1;
		out->failing = -1;
		out->attempts = 0;
		if (rec.has_time)
		{
			out->last_time = rec.time;
			out->has_time = true;
		}
		MemoryContextSwitchTo(batch_cxt);
		return;
	}

	/* it failed: count the attempt */
	if (out->failing != msg->offset)
	{
		out->failing = msg->offset;
		out->attempts = 0;
		out->first_failed_at = GetCurrentTimestamp();
	}
	out->attempts++;
	out->failed++;
	MemoryContextSwitchTo(batch_cxt);
	out->last_error = pstrdup(edata->message ? edata->message : "unknown error");
	if (out->attempts < sub->max_attempts)
	{
		out->blocked = true;
		FreeErrorData(edata);
		return;
	}
	/* for the last time: keep it whole with its error, and go on */
	MemoryContextSwitchTo(msg_cxt);
	apply_dead_letter(sub, &rec, edata, out->attempts, out->first_failed_at);
	MemoryContextSwitchTo(batch_cxt);
	apply_moved(sub, &rec, out);
	FreeErrorData(edata);
}

/*
 * Why the subscription cannot be applied now, or NULL when it can: its
 * handler or role gone, the role without the right to subscribe or to
 * execute the handler, the handler's owner without the right to subscribe.
 * Runs in a transaction.
 */
char *
outbox_apply_check(ConsumerSubscription *sub)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			subscriber = get_role_oid("outbox_subscriber", true);
	Oid			message_type = outbox_message_type();
	char	   *problem = NULL;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(sub->run_as)))
		return psprintf("the role that subscribed (OID %u) no longer exists", sub->run_as);
	if (!OidIsValid(subscriber) || !has_privs_of_role(sub->run_as, subscriber))
		return psprintf("role \"%s\" may no longer subscribe",
						GetUserNameFromId(sub->run_as, false));
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(sub->handler));
	if (!HeapTupleIsValid(tup))
		return psprintf("handler (OID %u) no longer exists", sub->handler);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->prokind != PROKIND_FUNCTION || proc->pronargs != 1 ||
		proc->proargtypes.values[0] != message_type || proc->prorettype != VOIDOID ||
		proc->proretset)
		problem = psprintf("handler %s is no longer a function (outbox.message) RETURNS void",
						   format_procedure(sub->handler));
	else if (!has_privs_of_role(proc->proowner, subscriber))
		problem = psprintf("handler %s belongs to role \"%s\", which may not subscribe",
						   format_procedure(sub->handler),
						   GetUserNameFromId(proc->proowner, false));
	else if (outbox_proc_aclcheck(sub->handler, sub->run_as, ACL_EXECUTE) != ACLCHECK_OK)
		problem = psprintf("role \"%s\" may no longer execute handler %s",
						   GetUserNameFromId(sub->run_as, false),
						   format_procedure(sub->handler));
	ReleaseSysCache(tup);
	return problem;
}

/*
 * Apply a batch of messages of one subscription in one transaction; see the
 * file's comment.  false, with nothing applied, when the subscription can
 * no longer be applied (sub->problem says why).  ERRORs escape (the
 * transaction is then aborted by the caller).
 */
bool
outbox_apply_batch(ConsumerSubscription *sub, rd_kafka_message_t **msgs, int nmsgs)
{
	MemoryContext caller_cxt = CurrentMemoryContext;
	MemoryContext batch_cxt;
	MemoryContext msg_cxt;
	ApplyOutcome *outcomes;
	int			noutcomes = 0;
	rd_kafka_topic_partition_list_t *commit;
	TupleDesc	desc;
	FmgrInfo	flinfo;
	Datum		ttl;
	int			i;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "applying a batch of messages");
	batch_cxt = AllocSetContextCreate(caller_cxt, "outbox consumer batch",
									  ALLOCSET_DEFAULT_SIZES);
	msg_cxt = AllocSetContextCreate(batch_cxt, "outbox consumer message",
									ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(batch_cxt);

	sub->problem = outbox_apply_check(sub);
	if (sub->problem != NULL)
	{
		sub->problem = MemoryContextStrdup(sub->cxt, sub->problem);
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller_cxt);
		MemoryContextDelete(batch_cxt);
		pgstat_report_activity(STATE_IDLE, NULL);
		return false;
	}
	desc = outbox_message_desc();
	fmgr_info(sub->handler, &flinfo);
	ttl = outbox_inbox_default_ttl();
	outcomes = palloc(sizeof(ApplyOutcome) * nmsgs);

	for (i = 0; i < nmsgs; i++)
	{
		ApplyOutcome *out = apply_outcome_for(sub, msgs[i], outcomes, &noutcomes);

		if (out == NULL)
			continue;
		apply_one(sub, desc, &flinfo, ttl, msgs[i], out, msg_cxt);
		MemoryContextReset(msg_cxt);
		CHECK_FOR_INTERRUPTS();
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox consumer: SPI_connect failed");
	for (i = 0; i < noutcomes; i++)
	{
		if (outcomes[i].next != outcomes[i].part->next || outcomes[i].failed > 0)
			apply_store_offset(sub, &outcomes[i]);
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(batch_cxt);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* committed: the worker's state follows, then Kafka's */
	commit = rd_kafka_topic_partition_list_new(noutcomes);
	for (i = 0; i < noutcomes; i++)
	{
		ApplyOutcome *out = &outcomes[i];
		ConsumerPartition *part = out->part;

		if (out->next != part->next)
			rd_kafka_topic_partition_list_add(commit, part->key.topic,
											  part->key.partition)->offset = out->next;
		part->next = out->next;
		part->failing = out->failing;
		part->attempts = out->attempts;
		part->first_failed_at = out->first_failed_at;
		if (out->blocked)
		{
			part->retry_at = apply_retry_at(sub, part->attempts);
			part->paused = true;
			outbox_fetch_rewind(sub->fetch, part->key.topic, part->key.partition,
								part->failing);
		}
	}
	outbox_fetch_commit(sub->fetch, commit, true);
	rd_kafka_topic_partition_list_destroy(commit);
	MemoryContextSwitchTo(caller_cxt);
	MemoryContextDelete(batch_cxt);
	return true;
}
