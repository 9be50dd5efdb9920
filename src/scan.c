/*-------------------------------------------------------------------------
 *
 * scan.c
 *	  Opening outbox.events with the layout events.h describes, and, for
 *	  the relay, reading it in id order and deleting delivered rows without
 *	  the planner: scans of its primary key under the active snapshot.
 *
 * The relay's common read (no event waiting for a retry) is "the next
 * events above the cursor in id order", for which the only good plan is
 * this index scan; planning it costs more than running it for a handful of
 * rows, and a plan cached while the table looked empty could scan the
 * whole backlog.  The read with retries pending, whose rules need a join,
 * stays in SQL (pipeline.c).
 *
 * Rows are returned as the heap has them: values point into the buffer,
 * valid until the next call; the caller copies what it keeps.  The
 * relation is the extension's member, checked by members.c in the same
 * unit of work; no user code runs (a scan fires no trigger, rule or
 * policy).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "executor/tuptable.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "events.h"
#include "scan.h"

struct OutboxEventScan
{
	Relation	heap;
	Relation	index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData key;
};

/*
 * Open outbox.events, checking it has the layout of events.h: for reading
 * here and for publish.c's inserts.
 */
Relation
outbox_events_open(LOCKMODE lockmode)
{
	Oid			relid = get_relname_relid("events", get_namespace_oid("outbox", false));
	Relation	rel;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table outbox.events does not exist"),
				 errhint("Run CREATE EXTENSION outbox or ALTER EXTENSION outbox UPDATE.")));
	rel = table_open(relid, lockmode);
	if (RelationGetDescr(rel)->natts != EV_NATTS &&
		RelationGetDescr(rel)->natts != EV_NATTS_1_1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox.events does not have the columns this version of outbox expects"),
				 errhint("Run ALTER EXTENSION outbox UPDATE.")));
	return rel;
}

/*
 * True when outbox.events has the columns of 1.2, which dead-letter
 * forwarding needs (forwarded_at), false for a database still at 1.1.
 */
bool
outbox_events_forwarding(void)
{
	Relation	rel = outbox_events_open(AccessShareLock);
	bool		result = RelationGetDescr(rel)->natts == EV_NATTS;

	table_close(rel, AccessShareLock);
	return result;
}

/*
 * Open outbox.events and its primary key.
 */
static void
scan_open(OutboxEventScan *s, LOCKMODE lockmode)
{
	Oid			pkey;

	s->heap = outbox_events_open(lockmode);
	/* RelationGetIndexList() sets rd_pkindex */
	list_free(RelationGetIndexList(s->heap));
	pkey = s->heap->rd_pkindex;
	if (!OidIsValid(pkey))
		elog(ERROR, "outbox relay: outbox.events has no primary key");
	s->index = index_open(pkey, lockmode);
}

/*
 * Open outbox.events and its primary key, and position a scan at the first
 * id above from.
 */
OutboxEventScan *
outbox_scan_begin(int64 from)
{
	OutboxEventScan *s = palloc0(sizeof(OutboxEventScan));

	scan_open(s, AccessShareLock);
	ScanKeyInit(&s->key, 1, BTGreaterStrategyNumber, F_INT8GT, Int64GetDatum(from));
	s->slot = table_slot_create(s->heap, NULL);
	s->scan = index_beginscan(s->heap, s->index, GetActiveSnapshot(), 1, 0);
	index_rescan(s->scan, &s->key, 1, NULL, 0);
	return s;
}

/*
 * The next visible row in id order: its values in attribute order (EV_*,
 * index attnum - 1) and the xid that inserted it.  False at the end.
 */
bool
outbox_scan_next(OutboxEventScan *s, Datum **values, bool **nulls, TransactionId *xmin)
{
	HeapTuple	tuple;
	bool		should_free;

	if (!index_getnext_slot(s->scan, ForwardScanDirection, s->slot))
		return false;
	slot_getallattrs(s->slot);
	tuple = ExecFetchSlotHeapTuple(s->slot, false, &should_free);
	Assert(!should_free);
	*xmin = HeapTupleHeaderGetXmin(tuple->t_data);
	*values = s->slot->tts_values;
	*nulls = s->slot->tts_isnull;
	return true;
}

/*
 * End the scan and close what outbox_scan_begin() opened.
 */
void
outbox_scan_end(OutboxEventScan *s)
{
	index_endscan(s->scan);
	ExecDropSingleTupleTableSlot(s->slot);
	index_close(s->index, AccessShareLock);
	table_close(s->heap, AccessShareLock);
	pfree(s);
}

/*
 * Delete the rows of outbox.events with these ids, given in ascending order
 * (those still there); returns how many were deleted.  What DELETE ...
 * WHERE id = ANY (...) does, without a plan (a generic plan made while the
 * table looked empty could scan the whole backlog, and a custom one costs
 * more to make than the delete): one scan of the primary key over the ids'
 * range, walking the ids alongside, so one descent of the index instead of
 * one per id.  Rows in the range that are not in the list (a batch skips
 * rows not yet visible or held behind a retry) are stepped over.  A row
 * updated meanwhile by another transaction is an ERROR (the caller records
 * the batch again).
 */
uint64
outbox_scan_delete(const Datum *ids, int n)
{
	OutboxEventScan *s = palloc0(sizeof(OutboxEventScan));
	ScanKeyData keys[2];
	Snapshot	snapshot = GetActiveSnapshot();
	uint64		deleted = 0;
	int			next = 0;

	Assert(n > 0);
	scan_open(s, RowExclusiveLock);
	ScanKeyInit(&keys[0], 1, BTGreaterEqualStrategyNumber, F_INT8GE, ids[0]);
	ScanKeyInit(&keys[1], 1, BTLessEqualStrategyNumber, F_INT8LE, ids[n - 1]);
	s->slot = table_slot_create(s->heap, NULL);
	s->scan = index_beginscan(s->heap, s->index, snapshot, 2, 0);
	index_rescan(s->scan, keys, 2, NULL, 0);
	while (next < n && index_getnext_slot(s->scan, ForwardScanDirection, s->slot))
	{
		bool		isnull;
		int64		id = DatumGetInt64(slot_getattr(s->slot, EV_ID, &isnull));

		while (next < n && DatumGetInt64(ids[next]) < id)
		{
			Assert(next == 0 || DatumGetInt64(ids[next]) > DatumGetInt64(ids[next - 1]));
			next++;
		}
		if (next < n && DatumGetInt64(ids[next]) == id)
		{
			simple_table_tuple_delete(s->heap, &s->slot->tts_tid, snapshot);
			deleted++;
			next++;
		}
	}
	index_endscan(s->scan);
	ExecDropSingleTupleTableSlot(s->slot);
	index_close(s->index, RowExclusiveLock);
	table_close(s->heap, RowExclusiveLock);
	pfree(s);
	return deleted;
}
