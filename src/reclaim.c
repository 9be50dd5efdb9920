/*-------------------------------------------------------------------------
 *
 * reclaim.c
 *	  Giving outbox.events' space back when vacuum cannot: once every event
 *	  is delivered, the relay truncates the table if it has grown to
 *	  outbox.truncate_threshold.
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
 * second at most, and while attempts fail less and less often.  With vacuum doing its work the table stays far smaller
 * under a steady load, so this happens after a large backlog was drained
 * (and then gives the space to the operating system, which VACUUM does
 * not) or while something holds vacuum back.
 *
 * Why nothing committed is lost: the relay takes ACCESS EXCLUSIVE on
 * outbox.events without waiting for it.  Holding it, no transaction that
 * wrote the table can still be in progress (a writer holds ROW EXCLUSIVE
 * until it ends, a prepared transaction until COMMIT PREPARED) and none
 * can begin.  Then it reads the whole heap under a new snapshot, which
 * sees every row that any committed transaction left, and truncates only
 * when it finds none: whatever wrote a row (publish(), a replay, an
 * INSERT with an id of its own), that row stops the truncation.  What is
 * dropped are the relay's own deletions.
 *
 * The price, paid only when it truncates: publishers wait for the lock
 * while the relay reads the heap (all of it: dead rows cost the same
 * visibility check, but a first read without the lock has set their hint
 * bits and brought the pages into shared buffers) and commits (a
 * truncation's commit flushes WAL).  A
 * session holding any lock on outbox.events (a transaction that read it
 * and stays open) makes every attempt fail until it ends, and the table
 * grows as it would without this.  TRUNCATE is not MVCC-safe: a
 * transaction whose snapshot is older and that reads outbox.events for the
 * first time afterwards finds it empty, without the events that were
 * pending at its snapshot (and have been delivered since).  On a hot
 * standby the lock is replayed, and queries on outbox.events there are
 * cancelled as for any ACCESS EXCLUSIVE lock (max_standby_streaming_delay).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "pgstat.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
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

static TimestampTz next_attempt = 0;
static long retry_ms = RECLAIM_RETRY_MS;

/*
 * Does outbox.events (locked ACCESS EXCLUSIVE) hold no row a new snapshot
 * sees?
 */
static bool
reclaim_heap_empty(Relation rel)
{
	Snapshot	snapshot = RegisterSnapshot(GetLatestSnapshot());
	TableScanDesc scan = table_beginscan(rel, snapshot, 0, NULL);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	bool		found = table_scan_getnextslot(scan, ForwardScanDirection, slot);

	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	return !found;
}

/*
 * Truncate outbox.events if it is large and holds no event; the caller
 * (relay.c) knows the pipeline is drained.  Returns the blocks given back.
 */
BlockNumber
outbox_reclaim(void)
{
	TimestampTz now;
	Relation	rel;
	BlockNumber blocks;
	BlockNumber truncated = 0;
	bool		large;
	bool		empty = false;
	TimestampTz locked_at = 0;

	if (outbox_truncate_threshold <= 0)
		return 0;
	now = GetCurrentTimestamp();
	if (now < next_attempt)
		return 0;

	outbox_work_begin("checking the size of outbox.events");
	rel = outbox_events_open(AccessShareLock);
	blocks = RelationGetNumberOfBlocks(rel);
	/*
	 * A first read without the lock finds rows that stop the truncation
	 * without holding publishers up, and sets the dead rows' hint bits and
	 * brings the heap into shared buffers, so that the read under the lock,
	 * which alone decides, costs a visibility check per row and no I/O.
	 */
	large = blocks >= (BlockNumber) outbox_truncate_threshold;
	if (large && reclaim_heap_empty(rel) &&
		ConditionalLockRelation(rel, AccessExclusiveLock))
	{
		locked_at = GetCurrentTimestamp();
		empty = reclaim_heap_empty(rel);
	}
	/* closed for TRUNCATE, which refuses a table in use; locked till commit */
	table_close(rel, NoLock);
	if (empty)
	{
		int			ret;

		pgstat_report_activity(STATE_RUNNING, "truncating outbox.events");
		ret = SPI_execute("TRUNCATE outbox.events", false, 0);
		if (ret != SPI_OK_UTILITY)
			elog(ERROR, "outbox relay: truncating outbox.events failed: %s",
				 SPI_result_code_string(ret));
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
				(errmsg("truncated outbox.events: every event was delivered, %u blocks given back",
						truncated),
				 errdetail("Publishers waited for the lock for up to %ld ms.",
						   (long) ((GetCurrentTimestamp() - locked_at) / 1000))));
	return truncated;
}
