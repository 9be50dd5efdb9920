/*-------------------------------------------------------------------------
 *
 * subscriptions.c
 *	  Subscriptions: Kafka topics consumed into the database, each message
 *	  applied by a handler.  outbox.subscribe(), unsubscribe(),
 *	  pause_consumer() and resume_consumer() check what they are given and
 *	  write outbox.subscriptions.
 *
 * Who may: the functions are granted to outbox_subscriber (and the
 * extension's owner has them).  A subscription belongs to the role that made
 * it (run_as): the handler will run as that role, never as the worker, so
 * only a role with its privileges may change, pause or remove it.  The
 * handler must be a function (outbox.message) RETURNS void that the caller
 * may execute, owned by a role that may subscribe itself: a function of
 * someone without that right is not applied to every message in their
 * stead.  Callers hold no privilege on the table: the row is written as the
 * table's owner with search_path pinned (spiutil.c), under a SHARE ROW
 * EXCLUSIVE lock so that two calls for one consumer go one after the other.
 *
 * Each change wakes the database's consumer at commit (consumer.c), which
 * reads the subscriptions again; the launcher starts one when none runs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "consumer.h"
#include "inbox.h"
#include "outbox.h"
#include "record.h"
#include "spiutil.h"
#include "userfunc.h"

/* Longest group id */
#define SUBSCRIPTION_MAX_GROUP_ID 255
/* Most topics one subscription names */
#define SUBSCRIPTION_MAX_TOPICS 100
/* Largest batch_size (the table's check says the same) */
#define SUBSCRIPTION_MAX_BATCH 10000

PG_FUNCTION_INFO_V1(outbox_subscribe);
PG_FUNCTION_INFO_V1(outbox_unsubscribe);
PG_FUNCTION_INFO_V1(outbox_pause_consumer);
PG_FUNCTION_INFO_V1(outbox_resume_consumer);
PG_FUNCTION_INFO_V1(outbox_replay_consumer_dead_letters);

/* outbox.subscriptions, locked; an ERROR when the database is at 1.1 */
static Relation
subscriptions_open(void)
{
	Oid			relid = get_relname_relid("subscriptions", get_namespace_oid("outbox", false));

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table outbox.subscriptions does not exist"),
				 errhint("Run ALTER EXTENSION outbox UPDATE.")));
	return table_open(relid, ShareRowExclusiveLock);
}

/* topics: a one-dimensional array of legal, distinct topic names */
static void
subscription_check_topics(FunctionCallInfo fcinfo)
{
	ArrayType  *topics;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;
	int			j;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topics must not be null")));
	topics = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(topics) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("topics must be a one-dimensional array")));
	deconstruct_array(topics, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topics must name at least one topic")));
	if (n > SUBSCRIPTION_MAX_TOPICS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topics names %d topics", n),
				 errdetail("A subscription has at most %d.", SUBSCRIPTION_MAX_TOPICS)));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("topics must not contain nulls")));
		outbox_check_topic(DatumGetTextPP(elems[i]));
		for (j = 0; j < i; j++)
			if (DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID, elems[i], elems[j])))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("topic \"%s\" is named twice", TextDatumGetCString(elems[i]))));
	}
}

/*
 * The handler: a function (outbox.message) RETURNS void, which the caller
 * may execute, owned by a role that may subscribe.
 */
static void
subscription_check_handler(Oid fn)
{
	Oid			owner = outbox_check_user_function(fn, outbox_message_type(), VOIDOID,
												   "handler must be a function (outbox.message) RETURNS void",
												   "It is called once for each message, in the transaction that stores the message's offset.");

	if (!has_privs_of_role(owner, get_role_oid("outbox_subscriber", false)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("handler %s belongs to role \"%s\", which may not subscribe",
						format_procedure(fn), GetUserNameFromId(owner, false)),
				 errhint("Use a function owned by a member of outbox_subscriber.")));
}

/*
 * As the table's owner: the role a subscription runs as, or InvalidOid when
 * there is none.  An ERROR when it is not the caller's to change.
 */
static Oid
subscription_run_as(text *consumer, Oid caller)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {PointerGetDatum(consumer)};
	bool		isnull;
	Oid			run_as;

	if (SPI_execute_with_args("SELECT s.run_as FROM outbox.subscriptions s"
							  " WHERE s.consumer = $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox.subscriptions");
	if (SPI_processed == 0)
		return InvalidOid;
	run_as = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											1, &isnull));
	if (!has_privs_of_role(caller, run_as))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("subscription \"%s\" belongs to role \"%s\"",
						text_to_cstring(consumer), GetUserNameFromId(run_as, true)),
				 errdetail("Only a role with that role's privileges may change it.")));
	return run_as;
}

/*
 * As the table's owner: the group is no other subscription's here.  The
 * database stores one offset per group and partition, so two subscriptions
 * of one group would store each other's.
 */
static void
subscription_check_group(text *consumer, text *group_id)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		args[2] = {PointerGetDatum(consumer), PointerGetDatum(group_id)};
	bool		isnull;

	if (SPI_execute_with_args("SELECT s.consumer FROM outbox.subscriptions s"
							  " WHERE s.group_id = $2 AND s.consumer <> $1",
							  2, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox.subscriptions");
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("group \"%s\" is already subscription \"%s\"'s",
						text_to_cstring(group_id),
						TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull))),
				 errdetail("A database stores one offset per group and partition, so each of its subscriptions has a group of its own."),
				 errhint("Give group_id another value, or subscribe in another database to share the group's partitions.")));
}

/* a positive interval a, and b not below it */
static void
subscription_check_backoff(Datum min, Datum max)
{
	Interval   *zero = palloc0(sizeof(Interval));

	if (!DatumGetBool(DirectFunctionCall2(interval_gt, min, IntervalPGetDatum(zero))))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backoff_min must be positive")));
	if (DatumGetBool(DirectFunctionCall2(interval_lt, max, min)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backoff_max must not be less than backoff_min")));
}

/*
 * outbox.subscribe(consumer text, topics text[], handler regprocedure,
 *					group_id text, start_from text, batch_size integer,
 *					max_attempts integer, backoff_min interval,
 *					backoff_max interval) RETURNS void
 *
 * Makes a subscription, or changes the caller's: it then runs as the caller.
 */
Datum
outbox_subscribe(PG_FUNCTION_ARGS)
{
	text	   *consumer = outbox_text_arg(fcinfo, 0, "consumer", OUTBOX_MAX_CONSUMER_LEN);
	text	   *group_id;
	char	   *start_from;
	int32		batch_size;
	int32		max_attempts;
	Oid			caller = GetUserId();
	Relation	rel;
	Oid			save_user;
	int			save_sec;
	int			nest;
	Datum		args[10];
	Oid			argtypes[10] = {TEXTOID, TEXTOID, TEXTARRAYOID, REGPROCEDUREOID, OIDOID,
	TEXTOID, INT4OID, INT4OID, INTERVALOID, INTERVALOID};

	outbox_require_preload();
	PreventCommandIfReadOnly("outbox.subscribe()");
	subscription_check_topics(fcinfo);
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("handler must not be null")));
	subscription_check_handler(PG_GETARG_OID(2));
	group_id = PG_ARGISNULL(3) ? consumer :
		outbox_text_arg(fcinfo, 3, "group_id", SUBSCRIPTION_MAX_GROUP_ID);
	start_from = text_to_cstring(outbox_text_arg(fcinfo, 4, "start_from", 16));
	if (strcmp(start_from, "earliest") != 0 && strcmp(start_from, "latest") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("start_from must be \"earliest\" or \"latest\""),
				 errdetail("It says where a group with no stored offset starts reading.")));
	if (PG_ARGISNULL(5) || PG_ARGISNULL(6) || PG_ARGISNULL(7) || PG_ARGISNULL(8))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("batch_size, max_attempts, backoff_min and backoff_max must not be null")));
	batch_size = PG_GETARG_INT32(5);
	if (batch_size < 1 || batch_size > SUBSCRIPTION_MAX_BATCH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_size must be between 1 and %d", SUBSCRIPTION_MAX_BATCH)));
	max_attempts = PG_GETARG_INT32(6);
	if (max_attempts < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_attempts must be at least 1")));
	subscription_check_backoff(PG_GETARG_DATUM(7), PG_GETARG_DATUM(8));

	rel = subscriptions_open();
	nest = outbox_as_owner(rel->rd_rel->relowner, &save_user, &save_sec);
	(void) subscription_run_as(consumer, caller);
	subscription_check_group(consumer, group_id);
	args[0] = PointerGetDatum(consumer);
	args[1] = PointerGetDatum(group_id);
	args[2] = PG_GETARG_DATUM(1);
	args[3] = PG_GETARG_DATUM(2);
	args[4] = ObjectIdGetDatum(caller);
	args[5] = CStringGetTextDatum(start_from);
	args[6] = Int32GetDatum(batch_size);
	args[7] = Int32GetDatum(max_attempts);
	args[8] = PG_GETARG_DATUM(7);
	args[9] = PG_GETARG_DATUM(8);
	if (SPI_execute_with_args("INSERT INTO outbox.subscriptions AS s"
							  " (consumer, group_id, topics, handler, run_as, start_from,"
							  "  batch_size, max_attempts, backoff_min, backoff_max,"
							  "  created_at, updated_at)"
							  " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,"
							  "         pg_catalog.now(), pg_catalog.now())"
							  " ON CONFLICT (consumer) DO UPDATE"
							  " SET group_id = EXCLUDED.group_id, topics = EXCLUDED.topics,"
							  "     handler = EXCLUDED.handler, run_as = EXCLUDED.run_as,"
							  "     start_from = EXCLUDED.start_from,"
							  "     batch_size = EXCLUDED.batch_size,"
							  "     max_attempts = EXCLUDED.max_attempts,"
							  "     backoff_min = EXCLUDED.backoff_min,"
							  "     backoff_max = EXCLUDED.backoff_max,"
							  "     updated_at = pg_catalog.now()",
							  10, argtypes, args,
							  NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write outbox.subscriptions");
	outbox_as_caller(nest, save_user, save_sec);
	table_close(rel, NoLock);
	outbox_wake_consumer_at_commit();
	PG_RETURN_VOID();
}

/*
 * Run sql on the caller's subscription of that name ($1), as the table's
 * owner; true when it changed a row, false when there is no such
 * subscription or nothing to change.
 */
static bool
subscription_change(FunctionCallInfo fcinfo, const char *sql, int expected)
{
	text	   *consumer = outbox_text_arg(fcinfo, 0, "consumer", OUTBOX_MAX_CONSUMER_LEN);
	Relation	rel;
	Oid			save_user;
	int			save_sec;
	int			nest;
	bool		changed = false;

	outbox_require_preload();
	PreventCommandIfReadOnly("outbox.unsubscribe(), pause_consumer() or resume_consumer()");
	rel = subscriptions_open();
	nest = outbox_as_owner(rel->rd_rel->relowner, &save_user, &save_sec);
	if (OidIsValid(subscription_run_as(consumer, save_user)))
	{
		Oid			argtypes[1] = {TEXTOID};
		Datum		args[1] = {PointerGetDatum(consumer)};

		if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, false, 0) != expected)
			elog(ERROR, "could not write outbox.subscriptions");
		changed = SPI_processed > 0;
	}
	if (changed)
		outbox_wake_consumer_at_commit();
	outbox_as_caller(nest, save_user, save_sec);
	table_close(rel, NoLock);
	return changed;
}

/*
 * outbox.unsubscribe(consumer text) RETURNS boolean
 */
Datum
outbox_unsubscribe(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(subscription_change(fcinfo,
									   "DELETE FROM outbox.subscriptions s WHERE s.consumer = $1",
									   SPI_OK_DELETE));
}

/*
 * outbox.pause_consumer(consumer text) RETURNS boolean
 */
Datum
outbox_pause_consumer(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(subscription_change(fcinfo,
									   "UPDATE outbox.subscriptions s"
									   " SET paused = true, updated_at = pg_catalog.now()"
									   " WHERE s.consumer = $1 AND NOT s.paused",
									   SPI_OK_UPDATE));
}

/*
 * outbox.resume_consumer(consumer text) RETURNS boolean
 */
Datum
outbox_resume_consumer(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(subscription_change(fcinfo,
									   "UPDATE outbox.subscriptions s"
									   " SET paused = false, updated_at = pg_catalog.now()"
									   " WHERE s.consumer = $1 AND s.paused",
									   SPI_OK_UPDATE));
}

/* bytea column i of a row, or NULL; *len its length */
static const char *
replay_bytes(HeapTuple tuple, TupleDesc desc, int i, size_t *len)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, i, &isnull);
	bytea	   *b;

	*len = 0;
	if (isnull)
		return NULL;
	b = DatumGetByteaPP(d);
	*len = VARSIZE_ANY_EXHDR(b);
	return VARDATA_ANY(b);
}

/* text column i of a row, or NULL */
static char *
replay_text(HeapTuple tuple, TupleDesc desc, int i)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, i, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * outbox.replay_consumer_dead_letters(consumer text, ids bigint[])
 *	RETURNS bigint
 *
 * Run the subscription's dead letters (those of ids, or all) through its
 * handler again, oldest first, in the caller's transaction, each in a
 * savepoint: its event type's schema is checked and the inbox asked first,
 * as for any message (one whose event
 * was applied meanwhile is only removed), and each applied is removed.  One
 * that fails again stays, with the new error and one attempt more.
 * Returns how many were applied.  Only a role with the privileges of the
 * role that subscribed may, and the handler runs as that role.
 */
Datum
outbox_replay_consumer_dead_letters(PG_FUNCTION_ARGS)
{
	text	   *consumer = outbox_text_arg(fcinfo, 0, "consumer", OUTBOX_MAX_CONSUMER_LEN);
	Relation	rel;
	Oid			save_user;
	int			save_sec;
	int			nest;
	ConsumerSubscription sub;
	SPITupleTable *letters;
	uint64		nletters;
	char	   *problem;
	TupleDesc	desc;
	FmgrInfo	flinfo;
	Datum		ttl;
	int64		replayed = 0;
	Oid			argtypes[2] = {TEXTOID, INT8ARRAYOID};
	Datum		args[2];
	bool		isnull;
	uint64		i;

	outbox_require_preload();
	PreventCommandIfReadOnly("outbox.replay_consumer_dead_letters()");
	rel = subscriptions_open();
	nest = outbox_as_owner(rel->rd_rel->relowner, &save_user, &save_sec);
	memset(&sub, 0, sizeof(sub));
	sub.run_as = subscription_run_as(consumer, save_user);
	if (!OidIsValid(sub.run_as))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("subscription \"%s\" does not exist", text_to_cstring(consumer)),
				 errhint("Its handler is needed to replay its dead letters: subscribe again first.")));
	args[0] = PointerGetDatum(consumer);
	if (SPI_execute_with_args("SELECT s.group_id, s.handler::pg_catalog.oid FROM outbox.subscriptions s"
							  " WHERE s.consumer = $1", 1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read outbox.subscriptions");
	sub.consumer = text_to_cstring(consumer);
	sub.group_id = replay_text(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	sub.handler = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 2, &isnull));
	problem = outbox_apply_check(&sub);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("subscription \"%s\" cannot be applied: %s", sub.consumer, problem)));

	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	if (SPI_execute_with_args("SELECT d.id, d.topic, d.partition, d.\"offset\", d.key, d.value,"
							  "       d.headers, d.event_id, d.event_type, d.time"
							  "  FROM outbox.consumer_dead_letters d"
							  " WHERE d.consumer = $1 AND ($2 IS NULL OR d.id = ANY ($2))"
							  " ORDER BY d.id FOR UPDATE",
							  2, argtypes, args, PG_ARGISNULL(1) ? " n" : "  ", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox.consumer_dead_letters");
	letters = SPI_tuptable;
	nletters = SPI_processed;
	desc = outbox_message_desc();
	fmgr_info(sub.handler, &flinfo);
	ttl = outbox_inbox_default_ttl();

	for (i = 0; i < nletters; i++)
	{
		HeapTuple	tuple = letters->vals[i];
		TupleDesc	ldesc = letters->tupdesc;
		OutboxRecord rec;
		ErrorData  *edata;
		char	   *violations;
		bool		first;
		Oid			ltypes[3] = {INT8OID, TEXTOID, TEXTOID};
		Datum		largs[3];

		memset(&rec, 0, sizeof(rec));
		largs[0] = SPI_getbinval(tuple, ldesc, 1, &isnull);
		rec.topic = replay_text(tuple, ldesc, 2);
		rec.partition = DatumGetInt32(SPI_getbinval(tuple, ldesc, 3, &isnull));
		rec.offset = DatumGetInt64(SPI_getbinval(tuple, ldesc, 4, &isnull));
		rec.key_bytes = replay_bytes(tuple, ldesc, 5, &rec.key_len);
		rec.value = replay_bytes(tuple, ldesc, 6, &rec.value_len);
		rec.headers = SPI_getbinval(tuple, ldesc, 7, &rec.headers_null);
		rec.event_id = replay_text(tuple, ldesc, 8);
		rec.event_type = replay_text(tuple, ldesc, 9);
		rec.time = DatumGetTimestampTz(SPI_getbinval(tuple, ldesc, 10, &isnull));
		rec.has_time = !isnull;

		violations = outbox_record_violations(&rec);
		if (violations != NULL)
		{
			/* still breaking its contract: it stays, with the new error */
			edata = palloc0(sizeof(ErrorData));
			edata->sqlerrcode = ERRCODE_INVALID_PARAMETER_VALUE;
			edata->message = violations;
		}
		else
			edata = outbox_apply_record(&sub, desc, &flinfo, ttl, &rec, &first,
										CurrentMemoryContext);
		if (edata == NULL)
		{
			if (SPI_execute_with_args("DELETE FROM outbox.consumer_dead_letters d WHERE d.id = $1",
									  1, ltypes, largs, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not delete from outbox.consumer_dead_letters");
			replayed += first ? 1 : 0;
			continue;
		}
		largs[1] = CStringGetTextDatum(edata->message ? edata->message : "unknown error");
		largs[2] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
		if (SPI_execute_with_args("UPDATE outbox.consumer_dead_letters d"
								  "   SET attempts = d.attempts OPERATOR(pg_catalog.+) 1,"
								  "       error = $2, error_code = $3, failed_at = pg_catalog.now()"
								  " WHERE d.id = $1",
								  3, ltypes, largs, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update outbox.consumer_dead_letters");
		FreeErrorData(edata);
	}
	outbox_as_caller(nest, save_user, save_sec);
	table_close(rel, NoLock);
	PG_RETURN_INT64(replayed);
}

/*
 * Has this database any subscription?  For the relay at its start, with SPI
 * connected: a database at 1.1 has none.
 */
bool
outbox_has_subscriptions(void)
{
	Oid			nsp = get_namespace_oid("outbox", true);

	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("subscriptions", nsp)))
		return false;
	if (SPI_execute("SELECT FROM outbox.subscriptions LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox.subscriptions");
	return SPI_processed > 0;
}
