/*-------------------------------------------------------------------------
 *
 * status.c
 *	  Status and statistics: the relay's pause check and its periodic
 *	  backlog figures (pending events, oldest pending, dead letters,
 *	  events/s), and outbox.relay_stats(), the set-returning function behind
 *	  the outbox.stats view, which reads every relay's slot from shared
 *	  memory without touching any table; outbox._consumer_states(), the
 *	  consumer's part of outbox.consumer_stats, likewise.
 *
 * Pausing is a row in outbox.paused (1.1 and later): transactional,
 * replicated to standbys and kept across restarts.  A 1.0 installation has
 * no such table and is never paused.
 *
 * The relay calls outbox_status_paused() and outbox_status_refresh() inside
 * its own transactions, with SPI connected; every name is schema-qualified.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "outbox.h"
#include "scan.h"
#include "shmem.h"
#include "spiutil.h"
#include "status.h"

#define OUTBOX_STATS_INTERVAL_MS 1000
/* counting may take at most 1/OUTBOX_STATS_COST_SHARE of the relay's time */
#define OUTBOX_STATS_COST_SHARE 50

PG_FUNCTION_INFO_V1(outbox_relay_stats);
PG_FUNCTION_INFO_V1(outbox_consumer_states);

static SPIPlanPtr refresh_plan = NULL;
static TimestampTz last_refresh = 0;

/*
 * $1: the relay's cursor.  Below it only waiting events remain (see
 * pipeline.c), found through their partial index.
 */
static const char *const refresh_sql =
"SELECT (SELECT pg_catalog.count(*) FROM outbox.events WHERE id > $1)"
"       + (SELECT pg_catalog.count(*) FROM outbox.events WHERE next_attempt_at IS NOT NULL AND id <= $1),"
"       LEAST((SELECT created_at FROM outbox.events WHERE id > $1 ORDER BY id LIMIT 1),"
"             (SELECT pg_catalog.min(created_at) FROM outbox.events WHERE next_attempt_at IS NOT NULL)),"
"       (SELECT pg_catalog.count(*) FROM outbox.dead_letters)";

/*
 * Of those (a database at 1.2): scheduled for a later deliver_at, and
 * waiting behind a dead letter that holds their key ($1: under hold_key).
 */
static const char *const refresh_waiting_sql =
"SELECT (SELECT pg_catalog.count(*) FROM outbox.events"
"         WHERE attempts = 0 AND next_attempt_at > pg_catalog.now()),"
"       CASE WHEN $1 THEN (SELECT pg_catalog.count(*) FROM outbox.events e"
"         WHERE e.next_attempt_at IS NOT NULL"
"           AND EXISTS (SELECT 1 FROM outbox.dead_letters d"
"                        WHERE d.holds_key AND d.topic = e.topic AND d.key = e.key))"
"       ELSE 0 END";
static SPIPlanPtr refresh_waiting_plan = NULL;
static long last_refresh_cost_ms = 0;
static uint64 delivered_at_last_refresh = 0;

/*
 * Is this database's relay paused: has outbox.paused a row?  Read with a
 * plain heap scan under the active snapshot (the table holds one row at
 * most, and the relay asks at every read).
 */
bool
outbox_status_paused(void)
{
	Oid			nsp = get_namespace_oid("outbox", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("paused", nsp) : InvalidOid;
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	bool		found;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	slot = table_slot_create(rel, NULL);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	found = table_scan_getnextslot(scan, ForwardScanDirection, slot);
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Milliseconds until the figures in the slot are due for a refresh (zero or
 * less: now): when they are a second old, or, when counting a large backlog
 * took long, OUTBOX_STATS_COST_SHARE times what the last count took.
 */
long
outbox_status_refresh_in_ms(void)
{
	long		interval = Max(OUTBOX_STATS_INTERVAL_MS,
							   last_refresh_cost_ms * OUTBOX_STATS_COST_SHARE);

	if (last_refresh == 0)
		return 0;
	return interval - (long) ((GetCurrentTimestamp() - last_refresh) / 1000);
}

/*
 * Count the backlog and the dead letters and publish them, with the
 * delivery rate since the last refresh, in the slot.  cursor is where the
 * relay's reads start: below it only waiting rows (pipeline.c) remain, so the
 * backlog is what lies above it plus those retries, and the oldest event the
 * first after it or the oldest retry; both found without walking the dead
 * rows below the cursor, which a held-back xmin keeps (a count(*) of the
 * whole table would scan them all).  Caller has SPI connected.
 */
void
outbox_status_refresh(OutboxSlot *slot, int64 cursor)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		isnull;
	int64		pending;
	int64		dead;
	int64		scheduled = 0;
	int64		held = 0;
	TimestampTz oldest = 0;
	Datum		d;
	uint64		delivered;
	double		secs;
	int			ret;
	Oid			argtypes[1] = {INT8OID};
	Datum		arg = Int64GetDatum(cursor);

	ret = SPI_execute_plan(outbox_plan(&refresh_plan, refresh_sql, 1, argtypes,
									   CURSOR_OPT_CUSTOM_PLAN),
						   &arg, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "outbox relay: counting the backlog failed: %s",
			 SPI_result_code_string(ret));
	pending = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
		oldest = DatumGetTimestampTz(d);
	dead = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (outbox_schema_at_1_2())
	{
		Oid			booltype = BOOLOID;
		Datum		hold = BoolGetDatum(outbox_dead_letter_policy == OUTBOX_DEAD_LETTER_HOLD_KEY);

		ret = SPI_execute_plan(outbox_plan(&refresh_waiting_plan, refresh_waiting_sql, 1,
										   &booltype, CURSOR_OPT_CUSTOM_PLAN),
							   &hold, NULL, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "outbox relay: counting waiting events failed: %s",
				 SPI_result_code_string(ret));
		scheduled = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		held = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}

	SpinLockAcquire(&slot->mutex);
	delivered = slot->delivered;
	secs = last_refresh == 0 ? 0 : (double) (now - last_refresh) / USECS_PER_SEC;
	slot->events_per_second = secs > 0 ?
		(double) (delivered - delivered_at_last_refresh) / secs : 0;
	slot->pending = pending;
	slot->oldest_pending = oldest;
	slot->dead_letters = dead;
	slot->scheduled = scheduled;
	slot->held = held;
	slot->stats_at = now;
	SpinLockRelease(&slot->mutex);

	delivered_at_last_refresh = delivered;
	last_refresh = now;
	last_refresh_cost_ms = (GetCurrentTimestamp() - now) / 1000;
}

/*
 * The name of a relay state, as shown in outbox.stats.
 */
static const char *
outbox_state_name(OutboxRelayState state)
{
	switch (state)
	{
		case OUTBOX_RELAY_STARTING:
			return "starting";
		case OUTBOX_RELAY_RUNNING:
			return "running";
		case OUTBOX_RELAY_WAITING_FOR_BROKERS:
			return "waiting for brokers";
		case OUTBOX_RELAY_PAUSED:
			return "paused";
		case OUTBOX_RELAY_STOPPED:
			break;
	}
	return "stopped";
}

/*
 * outbox.relay_stats(): one row per database served by a relay, from shared
 * memory.  Databases whose relay found no extension are left out.
 */
Datum
outbox_relay_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	outbox_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	for (i = 0; i < outbox_shared->nslots; i++)
	{
		OutboxSlot *slot = &outbox_shared->slots[i];
		OutboxSlot	copy;
		/* a database still at 1.1 has the first 15 columns only */
		Datum		values[17];
		bool		nulls[17];
		char	   *datname;
		Oid			dboid;
		pid_t		pid;
		bool		no_extension;

		LWLockAcquire(outbox_shared->lock, LW_SHARED);
		dboid = slot->dboid;
		pid = slot->relay.pid;
		no_extension = slot->no_extension;
		LWLockRelease(outbox_shared->lock);
		if (!OidIsValid(dboid) || no_extension)
			continue;
		datname = get_database_name(dboid);
		if (datname == NULL)
			continue;

		SpinLockAcquire(&slot->mutex);
		memcpy(&copy, slot, sizeof(OutboxSlot));
		SpinLockRelease(&slot->mutex);

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(datname);
		values[1] = Int32GetDatum(pid);
		nulls[1] = (pid == 0);
		values[2] = CStringGetTextDatum(pid == 0 ? "stopped" : outbox_state_name(copy.state));
		values[3] = CStringGetTextDatum(!copy.brokers_known ? "unknown" :
										copy.brokers_up ? "up" : "down");
		values[4] = Int64GetDatum(copy.pending);
		values[5] = TimestampTzGetDatum(copy.oldest_pending);
		nulls[5] = (copy.oldest_pending == 0);
		values[6] = Int64GetDatum((int64) copy.delivered);
		values[7] = Int64GetDatum((int64) copy.failed);
		values[8] = Int64GetDatum((int64) copy.dead_lettered);
		values[9] = Int64GetDatum(copy.dead_letters);
		values[10] = Int64GetDatum((int64) copy.purged);
		values[11] = Float8GetDatum(copy.events_per_second);
		values[12] = TimestampTzGetDatum(copy.last_delivery);
		nulls[12] = (copy.last_delivery == 0);
		values[13] = CStringGetTextDatum(copy.last_error);
		nulls[13] = (copy.last_error[0] == '\0');
		values[14] = TimestampTzGetDatum(copy.last_error_at);
		values[15] = Int64GetDatum(copy.scheduled);
		values[16] = Int64GetDatum(copy.held);
		nulls[14] = (copy.last_error_at == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * A consumer state's name, as outbox.consumer_stats shows it.
 */
static const char *
outbox_consumer_state_name(OutboxConsumerState state)
{
	switch (state)
	{
		case OUTBOX_CONSUMER_STARTING:
			return "starting";
		case OUTBOX_CONSUMER_RUNNING:
			return "running";
		case OUTBOX_CONSUMER_RETRYING:
			return "retrying";
		case OUTBOX_CONSUMER_WAITING_FOR_BROKERS:
			return "waiting for brokers";
		case OUTBOX_CONSUMER_RESTARTING:
			return "restarting";
		case OUTBOX_CONSUMER_NOT_CONSUMING:
			break;
	}
	return "not consuming";
}

/*
 * outbox._consumer_states(): what this database's consumer says of each
 * subscription it serves, from shared memory: consumer, state, assigned
 * partitions, last error and when.  No row for a subscription while no
 * consumer runs (the view then says stopped).
 */
Datum
outbox_consumer_states(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	OutboxSubscriptionStatus *subs = palloc(sizeof(OutboxSubscriptionStatus) *
											OUTBOX_MAX_SUBSCRIPTION_STATES);
	OutboxSlot *slot;
	bool		running;
	int			n = 0;
	int			i;

	outbox_require_preload();
	InitMaterializedSRF(fcinfo, 0);

	LWLockAcquire(outbox_shared->lock, LW_SHARED);
	slot = outbox_slot_for_database(MyDatabaseId);
	running = slot != NULL && slot->consumer.pid != 0;
	LWLockRelease(outbox_shared->lock);
	if (running)
		n = outbox_slot_get_subscriptions(slot, subs);
	for (i = 0; i < n; i++)
	{
		Datum		values[5];
		bool		nulls[5];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(subs[i].consumer);
		values[1] = CStringGetTextDatum(outbox_consumer_state_name(subs[i].state));
		values[2] = Int32GetDatum(subs[i].assigned);
		values[3] = CStringGetTextDatum(subs[i].last_error);
		nulls[3] = (subs[i].last_error[0] == '\0');
		values[4] = TimestampTzGetDatum(subs[i].last_error_at);
		nulls[4] = (subs[i].last_error_at == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
