/*-------------------------------------------------------------------------
 *
 * reclaim.c
 *	  Giving outbox.events' space back when vacuum cannot: when the relay
 *	  has caught up, it truncates the table if it has grown to
 *	  outbox.truncate_threshold, carrying over the few events it holds.
 *
 * A delivered event is a deleted row, and VACUUM can reuse its space only
 * once no snapshot can still see it.  A transaction left open anywhere in
 * the cluster (an idle session, a long report, a replication slot's xmin,
 * hot_standby_feedback) keeps every row deleted after it began, and under
 * a steady load the table then grows for as long as it stays open.
 * TRUNCATE needs no vacuum: it gives the table new, empty files, and the
 * old ones go at commit.
 *
 * When: the relay's pipeline is drained (nothing in flight, the last read
 * found nothing, no event waits for a retry, not paused) and the heap has
 * at least outbox.truncate_threshold blocks; the size is looked at once a
 * second at most, and less and less often while attempts fail.  With
 * vacuum doing its work the table stays far smaller under a steady load,
 * so this happens after a large backlog was drained (and then gives the
 * space to the operating system, which VACUUM does not) or while something
 * holds vacuum back.  Under a steady load the table is rarely empty: the
 * events committed since the last read (up to RECLAIM_MAX_ROWS) are
 * carried over, put back as they were, ids included, in the transaction
 * that truncates.
 *
 * Why nothing committed is lost: the relay takes ACCESS EXCLUSIVE on
 * outbox.events, trying for it without joining the lock queue.  Holding
 * it, no transaction that wrote the table can still be in progress (a
 * writer holds ROW EXCLUSIVE until it ends, a prepared transaction until
 * COMMIT PREPARED) and none can begin.  Then it reads the whole heap under
 * a new snapshot, which sees every row that any committed transaction
 * left, whatever wrote it (publish(), a replay, an INSERT with an id of its
 * own), copies them, truncates, and inserts the copies: one transaction,
 * so it commits all of that or none.  What is dropped are the relay's own
 * deletions.  The rows put back are the relay's writes now; the relay
 * flushes the WAL of a truncation at its commit, so they need no flush
 * before Kafka has them.
 *
 * The price, paid only when it truncates: publishers wait for the lock
 * while the relay reads the heap (all of it: dead rows cost the same
 * visibility check, but a first read without the lock has set their hint
 * bits and brought the pages into shared buffers), puts the rows back and
 * commits (a truncation's commit flushes WAL).  A session holding any lock
 * on outbox.events (a transaction that read it and stays open) makes every
 * attempt fail until it ends, and the table grows as it would without
 * this.  TRUNCATE is not MVCC-safe: a transaction whose snapshot is older
 * and that reads outbox.events for the first time afterwards finds the
 * table as it is now, without the events that were pending at its
 * snapshot (and have been delivered since).  On a hot standby the lock is
 * replayed, and queries on outbox.events there are cancelled as for any
 * ACCESS EXCLUSIVE lock (max_standby_streaming_delay).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "outbox.h"
#include "reclaim.h"
#include "scan.h"
#include "spiutil.h"

/*
 * Between looks at the size; after an attempt that read the heap and did not
 * truncate, the wait doubles up to RECLAIM_RETRY_MAX_MS, so that a session
 * keeping a lock on a large table for hours costs a read of it a minute.
 */
#define RECLAIM_RETRY_MS 1000
#define RECLAIM_RETRY_MAX_MS 64000

/* events carried over a truncation at most: more is a backlog to deliver first */
#define RECLAIM_MAX_ROWS 1000
/* tries at the lock, a millisecond apart */
#define RECLAIM_LOCK_TRIES 20

static TimestampTz next_attempt = 0;
static long retry_ms = RECLAIM_RETRY_MS;

/*
 * The rows of outbox.events a new snapshot sees, at most max of them: false
 * when there are more.  With rows, they are copied there as composite
 * datums (values out of line brought inline), in the current memory
 * context.
 */
static bool
reclaim_live_rows(Relation rel, int max, Datum *rows, int *n)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	TupleDesc	desc = RelationGetDescr(rel);
	HeapTuple	tuple;
	bool		few = true;

	*n = 0;
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		if (*n == max)
		{
			few = false;
			break;
		}
		if (rows != NULL)
			rows[*n] = heap_copy_tuple_as_datum(tuple, desc);
		(*n)++;
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	return few;
}

/*
 * ACCESS EXCLUSIVE on outbox.events, if no other session holds a lock on it
 * at one of RECLAIM_LOCK_TRIES moments a millisecond apart: under a steady
 * load some publisher holds one most of the time, but rarely all the time.
 * Never waits in the lock queue, where publishers would queue behind it.
 */
static bool
reclaim_lock(Relation rel)
{
	int			i;

	for (i = 0; i < RECLAIM_LOCK_TRIES; i++)
	{
		if (ConditionalLockRelation(rel, AccessExclusiveLock))
			return true;
		pg_usleep(1000L);
		CHECK_FOR_INTERRUPTS();
	}
	return false;
}

/*
 * Put rows (composite datums of outbox.events' row type) back into the
 * table, as they were, ids included.
 */
static void
reclaim_put_back(Oid rowtype, Datum *rows, int n)
{
	Oid			arraytype = get_array_type(rowtype);
	Datum		arg = PointerGetDatum(construct_array(rows, n, rowtype, -1, false,
													  TYPALIGN_DOUBLE));
	int			ret;

	ret = SPI_execute_with_args("INSERT INTO outbox.events"
								" SELECT (r).* FROM pg_catalog.unnest($1) AS r",
								1, &arraytype, &arg, NULL, false, 0);
	if (ret != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "outbox relay: putting back the events of outbox.events failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * Truncate outbox.events if it is large, carrying over the few events it
 * holds; the caller (relay.c) knows the pipeline is drained.  Returns the
 * blocks given back.
 */
BlockNumber
outbox_reclaim(void)
{
	TimestampTz now;
	Relation	rel;
	Oid			rowtype;
	BlockNumber blocks;
	BlockNumber truncated = 0;
	bool		large;
	Datum	   *rows = NULL;
	int			n = 0;
	TimestampTz locked_at = 0;

	if (outbox_truncate_threshold <= 0)
		return 0;
	now = GetCurrentTimestamp();
	if (now < next_attempt)
		return 0;

	outbox_work_begin("checking the size of outbox.events");
	rel = outbox_events_open(AccessShareLock);
	rowtype = RelationGetForm(rel)->reltype;
	blocks = RelationGetNumberOfBlocks(rel);

	/*
	 * A first read without the lock finds a backlog that stops the
	 * truncation without holding publishers up, and sets the dead rows' hint
	 * bits and brings the heap into shared buffers, so that the read under
	 * the lock, which alone decides, costs a visibility check per row and no
	 * I/O.
	 */
	large = blocks >= (BlockNumber) outbox_truncate_threshold;
	if (large && reclaim_live_rows(rel, RECLAIM_MAX_ROWS, NULL, &n) && reclaim_lock(rel))
	{
		locked_at = GetCurrentTimestamp();
		rows = palloc(sizeof(Datum) * RECLAIM_MAX_ROWS);
		if (!reclaim_live_rows(rel, RECLAIM_MAX_ROWS, rows, &n))
			rows = NULL;
	}
	/* closed for TRUNCATE, which refuses a table in use; locked till commit */
	table_close(rel, NoLock);
	if (rows != NULL)
	{
		int			ret;

		pgstat_report_activity(STATE_RUNNING, "truncating outbox.events");
		ret = SPI_execute("TRUNCATE outbox.events", false, 0);
		if (ret != SPI_OK_UTILITY)
			elog(ERROR, "outbox relay: truncating outbox.events failed: %s",
				 SPI_result_code_string(ret));
		if (n > 0)
			reclaim_put_back(rowtype, rows, n);
		truncated = blocks;
	}
	outbox_work_end();

	if (truncated > 0 || !large)
		retry_ms = RECLAIM_RETRY_MS;
	else
		retry_ms = Min(retry_ms * 2, RECLAIM_RETRY_MAX_MS);
	next_attempt = truncated > 0 ? 0 : TimestampTzPlusMilliseconds(now, retry_ms);
	if (truncated > 0)
		ereport(DEBUG1,
				(errmsg("truncated outbox.events: %u blocks given back, %d event(s) carried over",
						truncated, n),
				 errdetail("Publishers waited for the lock for up to %ld ms.",
						   (long) ((GetCurrentTimestamp() - locked_at) / 1000))));
	return truncated;
}
