/*-------------------------------------------------------------------------
 *
 * inbox.c
 *	  The inbox: outbox.receive() marks an event id as handled by a consumer
 *	  in the caller's transaction, outbox.received() asks without marking,
 *	  and expired rows are purged in small batches, by the relay every
 *	  outbox.purge_interval (one transaction per batch) or by
 *	  outbox.purge_inbox() on demand.
 *
 * De-duplication is one INSERT ... ON CONFLICT DO NOTHING, never a check
 * followed by an insert: a concurrent receive() of the same (consumer, id)
 * waits on the first transaction's index entry and returns false if that
 * transaction committed, true if it rolled back.
 *
 * Ids are stored as uuid (16 bytes, half the index of text): a text id in
 * UUID form is stored as that UUID; any other text id is stored as a
 * name-based UUID (version 3, MD5 of the text), so the same text always maps
 * to the same stored id.
 *
 * Statements are run through SPI with plans kept for the backend's life,
 * every name schema-qualified (operators too), so a caller's search_path
 * cannot redirect them.  They run with the caller's rights: outbox_consumer
 * holds SELECT and INSERT on outbox.inbox.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/md5.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "causation.h"
#include "inbox.h"
#include "jsonformat.h"
#include "outbox.h"
#include "spiutil.h"

/* Longest text event id receive() accepts */
#define OUTBOX_MAX_EVENT_ID_LEN 1024

static SPIPlanPtr receive_plan = NULL;
static SPIPlanPtr received_plan = NULL;
static SPIPlanPtr purge_plan = NULL;

static const char *const receive_sql =
"INSERT INTO outbox.inbox (consumer, event_id, received_at, expires_at)"
" VALUES ($1, $2, pg_catalog.now(), pg_catalog.now() OPERATOR(pg_catalog.+) $3)"
" ON CONFLICT (consumer, event_id) DO NOTHING RETURNING true";

static const char *const received_sql =
"SELECT true FROM outbox.inbox"
" WHERE consumer OPERATOR(pg_catalog.=) $1 AND event_id OPERATOR(pg_catalog.=) $2";

/*
 * $1 batch size, $2 where to resume: the scan starts at the last batch's
 * latest expires_at, so a purge running many batches in one transaction does
 * not walk again past the index entries it already deleted.
 */
static const char *const purge_sql =
"DELETE FROM outbox.inbox WHERE ctid OPERATOR(pg_catalog.=) ANY (ARRAY("
" SELECT ctid FROM outbox.inbox"
"  WHERE expires_at OPERATOR(pg_catalog.<) pg_catalog.now()"
"    AND expires_at OPERATOR(pg_catalog.>=) $2"
"  ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED))"
" RETURNING expires_at";

PG_FUNCTION_INFO_V1(outbox_receive_uuid);
PG_FUNCTION_INFO_V1(outbox_receive_text);
PG_FUNCTION_INFO_V1(outbox_received_uuid);
PG_FUNCTION_INFO_V1(outbox_received_text);
PG_FUNCTION_INFO_V1(outbox_purge_inbox);

/*
 * The consumer argument: not NULL, not empty, at most 200 bytes.
 */
static text *
inbox_consumer_arg(FunctionCallInfo fcinfo)
{
	text	   *consumer;
	int			len;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("consumer must not be null")));
	consumer = PG_GETARG_TEXT_PP(0);
	len = VARSIZE_ANY_EXHDR(consumer);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer must not be empty")));
	if (len > OUTBOX_MAX_CONSUMER_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer is too long"),
				 errdetail("A consumer name has at most %d bytes; this one has %d.",
						   OUTBOX_MAX_CONSUMER_LEN, len)));
	return consumer;
}

/*
 * The event_id argument as the uuid stored in the inbox: a uuid as is; text
 * in UUID form parsed; any other text mapped to a version 3 (MD5) UUID.
 */
static Datum
inbox_event_id_arg(FunctionCallInfo fcinfo, bool is_text)
{
	text	   *t;
	const char *s;
	int			len;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event_id must not be null")));
	if (!is_text)
		return PG_GETARG_DATUM(1);

	t = PG_GETARG_TEXT_PP(1);
	s = VARDATA_ANY(t);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_id must not be empty")));
	if (len > OUTBOX_MAX_EVENT_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event_id is too long"),
				 errdetail("An event id has at most %d bytes; this one has %d.",
						   OUTBOX_MAX_EVENT_ID_LEN, len)));
	return outbox_inbox_text_id(s, len);
}

/*
 * A text event id as the inbox stores it: the UUID it spells, or else the
 * version 3 (MD5) UUID of its bytes.
 */
Datum
outbox_inbox_text_id(const char *s, int len)
{
	pg_uuid_t  *uuid;
	const char *errstr = NULL;

	if (outbox_json_format_check(JSON_FORMAT_UUID, s, len))
		return DirectFunctionCall1(uuid_in, CStringGetDatum(pnstrdup(s, len)));

	uuid = palloc(sizeof(pg_uuid_t));
	if (!pg_md5_binary(s, len, uuid->data, &errstr))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not hash event_id: %s", errstr ? errstr : "out of memory")));
	uuid->data[6] = (uuid->data[6] & 0x0F) | 0x30;
	uuid->data[8] = (uuid->data[8] & 0x3F) | 0x80;
	return UUIDPGetDatum(uuid);
}

/*
 * Mark event id (a uuid Datum) received by consumer (a text Datum) in the
 * current transaction, to expire after ttl (an interval Datum): true the
 * first time, false for a duplicate.
 */
bool
outbox_inbox_mark(Datum consumer, Datum event_id, Datum ttl)
{
	Datum		args[3] = {consumer, event_id, ttl};
	Oid			argtypes[3] = {TEXTOID, UUIDOID, INTERVALOID};
	int			ret;
	bool		first;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox inbox: SPI_connect failed");
	ret = SPI_execute_plan(outbox_plan(&receive_plan, receive_sql, 3, argtypes, 0),
						   args, NULL, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "outbox inbox: insert failed: %s", SPI_result_code_string(ret));
	first = (SPI_processed == 1);
	SPI_finish();
	return first;
}

/*
 * outbox.inbox_ttl as an interval.
 */
Datum
outbox_inbox_default_ttl(void)
{
	Interval   *ttl = palloc0(sizeof(Interval));

	ttl->time = (int64) outbox_inbox_ttl * USECS_PER_SEC;
	return IntervalPGetDatum(ttl);
}

/*
 * The ttl argument, or outbox.inbox_ttl when NULL; must be positive.
 */
static Datum
inbox_ttl_arg(FunctionCallInfo fcinfo)
{
	Interval   *ttl;

	if (PG_ARGISNULL(2))
		return outbox_inbox_default_ttl();
	ttl = PG_GETARG_INTERVAL_P(2);
	if (ttl->time <= 0 && ttl->day <= 0 && ttl->month <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be positive"),
				 errhint("Pass NULL to use outbox.inbox_ttl.")));
	if (ttl->time < 0 || ttl->day < 0 || ttl->month < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must not have negative parts")));
	return IntervalPGetDatum(ttl);
}

/*
 * The correlation_id argument (1.2), NULL when not given: 1 to 1024 bytes,
 * as publish() allows for the attributes it sends.
 */
static char *
inbox_correlation_arg(FunctionCallInfo fcinfo)
{
	text	   *t;

	if (PG_NARGS() < 4 || PG_ARGISNULL(3))
		return NULL;
	t = PG_GETARG_TEXT_PP(3);
	if (VARSIZE_ANY_EXHDR(t) == 0 || VARSIZE_ANY_EXHDR(t) > 1024)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("correlation_id must have 1 to 1024 bytes"),
				 errhint("Pass the ce_correlationid header of the message received, or NULL.")));
	return text_to_cstring(t);
}

/*
 * Shared body of the two receive() variants.
 */
static Datum
inbox_receive(FunctionCallInfo fcinfo, bool is_text)
{
	Datum		consumer;
	Datum		event_id;
	Datum		ttl;
	bool		first;
	char	   *correlation;

	outbox_require_preload();
	consumer = PointerGetDatum(inbox_consumer_arg(fcinfo));
	event_id = inbox_event_id_arg(fcinfo, is_text);
	ttl = inbox_ttl_arg(fcinfo);
	correlation = inbox_correlation_arg(fcinfo);

	first = outbox_inbox_mark(consumer, event_id, ttl);
	outbox_causation_received(is_text ? text_to_cstring(PG_GETARG_TEXT_PP(1)) :
							  DatumGetCString(DirectFunctionCall1(uuid_out, event_id)),
							  correlation);
	PG_RETURN_BOOL(first);
}

/*
 * outbox.receive(consumer text, event_id uuid, ttl interval) RETURNS boolean
 */
Datum
outbox_receive_uuid(PG_FUNCTION_ARGS)
{
	return inbox_receive(fcinfo, false);
}

/*
 * outbox.receive(consumer text, event_id text, ttl interval) RETURNS boolean
 */
Datum
outbox_receive_text(PG_FUNCTION_ARGS)
{
	return inbox_receive(fcinfo, true);
}

/*
 * Shared body of the two received() variants: is the id in the inbox?
 */
static Datum
inbox_received(FunctionCallInfo fcinfo, bool is_text)
{
	Datum		args[2];
	Oid			argtypes[2] = {TEXTOID, UUIDOID};
	int			ret;
	bool		found;

	outbox_require_preload();
	args[0] = PointerGetDatum(inbox_consumer_arg(fcinfo));
	args[1] = inbox_event_id_arg(fcinfo, is_text);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox inbox: SPI_connect failed");
	ret = SPI_execute_plan(outbox_plan(&received_plan, received_sql, 2, argtypes, 0),
						   args, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "outbox inbox: lookup failed: %s", SPI_result_code_string(ret));
	found = (SPI_processed == 1);
	SPI_finish();
	PG_RETURN_BOOL(found);
}

/*
 * outbox.received(consumer text, event_id uuid) RETURNS boolean
 */
Datum
outbox_received_uuid(PG_FUNCTION_ARGS)
{
	return inbox_received(fcinfo, false);
}

/*
 * outbox.received(consumer text, event_id text) RETURNS boolean
 */
Datum
outbox_received_text(PG_FUNCTION_ARGS)
{
	return inbox_received(fcinfo, true);
}

/*
 * Delete up to outbox.purge_batch_size expired rows with expires_at at or
 * after *from, and move *from to the latest one deleted; SPI is connected.
 * Rows locked by someone else are skipped, never waited for.
 */
static uint64
inbox_purge_batch(TimestampTz *from)
{
	Datum		args[2];
	Oid			argtypes[2] = {INT4OID, TIMESTAMPTZOID};
	uint64		i;
	int			ret;

	args[0] = Int32GetDatum(outbox_purge_batch_size);
	args[1] = TimestampTzGetDatum(*from);
	ret = SPI_execute_plan(outbox_plan(&purge_plan, purge_sql, 2, argtypes, 0),
						   args, NULL, false, 0);
	if (ret != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "outbox inbox: purge failed: %s", SPI_result_code_string(ret));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		TimestampTz t = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i],
														  SPI_tuptable->tupdesc, 1, &isnull));

		if (!isnull && t > *from)
			*from = t;
	}
	return SPI_processed;
}

/* when the relay last purged */
static TimestampTz last_purge = 0;

/*
 * Purge every expired row, in batches, until a batch comes back short;
 * returns how many went.  own_transactions (the relay): each batch is a unit
 * of work of its own, so no lock is held long and vacuum can follow;
 * otherwise (purge_inbox()) all run in the caller's transaction, with SPI
 * connected.
 */
uint64
outbox_inbox_purge(bool own_transactions)
{
	TimestampTz from = DT_NOBEGIN;
	uint64		total = 0;
	uint64		n;

	if (own_transactions)
		last_purge = GetCurrentTimestamp();
	do
	{
		CHECK_FOR_INTERRUPTS();
		if (own_transactions)
			outbox_work_begin("purging expired inbox rows");
		n = inbox_purge_batch(&from);
		if (own_transactions)
			outbox_work_end();
		total += n;
	} while (n == (uint64) outbox_purge_batch_size);
	return total;
}

/*
 * outbox.purge_inbox() RETURNS bigint: purge every expired row now, in
 * batches within the caller's transaction, and return how many went.
 */
Datum
outbox_purge_inbox(PG_FUNCTION_ARGS)
{
	uint64		total;

	outbox_require_preload();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox inbox: SPI_connect failed");
	total = outbox_inbox_purge(false);
	SPI_finish();
	PG_RETURN_INT64((int64) total);
}

/*
 * Milliseconds until the relay's next purge is due (zero or less: now); the
 * first comes one outbox.purge_interval after the relay started.
 */
long
outbox_inbox_purge_in_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (last_purge == 0)
		last_purge = now;
	return outbox_purge_interval - (long) ((now - last_purge) / 1000);
}
