/*-------------------------------------------------------------------------
 *
 * scan.c
 *	  Opening outbox.events with the layout events.h describes, and, for
 *	  the relay, reading it in id order and deleting delivered rows without
 *	  the planner: scans of its primary key under the active snapshot.
 *
 * The relay's read of new events is "the next events above the cursor in
 * id order", for which the only good plan is this index scan; planning it
 * costs more than running it for a handful of rows, and a plan cached while
 * the table looked empty could scan the whole backlog.  While events wait
 * (for a retry, a deliver_at, or behind a dead letter of their key) each
 * new event with a key is checked against them with a probe of a partial
 * index; the read of waiting events that came due, whose rules need a
 * join, stays in SQL (pipeline.c).
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
#include "catalog/pg_am.h"
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
 * True when the database's outbox tables are those of 1.2 (what dead-letter
 * forwarding, the per-key hold and the counts of waiting events need):
 * outbox.events has forwarded_at, which the same update added with the
 * rest.  False for a database still at 1.1.
 */
bool
outbox_schema_at_1_2(void)
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
 * A probe of a partial index on (topic, key[, id]) for visible rows of one
 * topic and key: events_waiting_idx (is an earlier event of this key
 * waiting?) or dead_letters_held_idx (does a dead letter hold this key?).
 * The relay asks for every event with a key it reads while such rows may
 * exist, so it walks the index itself instead of running a query: a
 * descent of a small index, about a microsecond.
 */
struct OutboxKeyProbe
{
	Relation	heap;
	Relation	index;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	bool		by_id;			/* the index's third column is id */
};

/*
 * Open a probe of index on table (both in schema outbox); NULL when the
 * database has no such index (a database still at 1.1).  by_id: probes ask
 * for ids below a bound too.
 */
OutboxKeyProbe *
outbox_probe_begin(const char *table, const char *index, bool by_id)
{
	Oid			nsp = get_namespace_oid("outbox", false);
	Oid			heapoid = get_relname_relid(table, nsp);
	Oid			indexoid = get_relname_relid(index, nsp);
	OutboxKeyProbe *p;

	if (!OidIsValid(heapoid) || !OidIsValid(indexoid))
		return NULL;
	p = palloc0(sizeof(OutboxKeyProbe));
	p->heap = table_open(heapoid, AccessShareLock);
	p->index = index_open(indexoid, AccessShareLock);
	if (p->index->rd_index->indrelid != heapoid ||
		p->index->rd_rel->relam != BTREE_AM_OID ||
		IndexRelationGetNumberOfKeyAttributes(p->index) < (by_id ? 3 : 2))
		elog(ERROR, "outbox relay: index outbox.%s is not the one this version of outbox expects",
			 index);
	p->by_id = by_id;
	p->slot = table_slot_create(p->heap, NULL);
	p->scan = index_beginscan(p->heap, p->index, GetActiveSnapshot(), by_id ? 3 : 2, 0);
	return p;
}

/*
 * Is a row visible with this topic and key (and, for a probe by id, an id
 * below before_id)?
 */
bool
outbox_probe(OutboxKeyProbe *p, Datum topic, Datum key, int64 before_id)
{
	ScanKeyData keys[3];

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   p->index->rd_indcollation[0], F_TEXTEQ, topic);
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   p->index->rd_indcollation[1], F_TEXTEQ, key);
	if (p->by_id)
		ScanKeyInit(&keys[2], 3, BTLessStrategyNumber, F_INT8LT, Int64GetDatum(before_id));
	index_rescan(p->scan, keys, p->by_id ? 3 : 2, NULL, 0);
	return index_getnext_slot(p->scan, ForwardScanDirection, p->slot);
}

/*
 * Close a probe (NULL: none was opened).
 */
void
outbox_probe_end(OutboxKeyProbe *p)
{
	if (p == NULL)
		return;
	index_endscan(p->scan);
	ExecDropSingleTupleTableSlot(p->slot);
	index_close(p->index, AccessShareLock);
	table_close(p->heap, AccessShareLock);
	pfree(p);
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
