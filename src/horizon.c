/*-------------------------------------------------------------------------
 *
 * horizon.c
 *	  Which event ids are final.
 *
 * Rows of outbox.events take their id from a sequence when they are
 * inserted but become visible when their transaction commits, so a row can
 * appear after rows with higher ids were read, delivered and deleted.  A
 * relay that starts every read at the lowest id never misses such a row, but
 * it walks over the index entries and heap tuples of everything it deleted
 * until vacuum removes them; while another session holds back the xmin
 * horizon, vacuum cannot, and every read gets slower with every event
 * delivered since.
 *
 * The horizon tells the relay which ids are final, so that it can start
 * reading above the ids it has handled (relay.c):
 *	- a transaction that inserts into outbox.events (publish(),
 *	  replay_dead_letters()) first makes its entry of a shared array odd, then
 *	  takes ids; the entry is a counter, one per PGPROC, odd while its
 *	  transaction may hold ids, made even again when the transaction ends;
 *	- the relay takes a mark: it reads the last value L the sequence handed
 *	  out, then copies the counters that are odd for its database;
 *	- once every copied counter has moved on, every transaction that took an
 *	  id up to L has ended: it made its counter odd before taking the id, so
 *	  the copy saw it odd, unless it had ended before.  Counters move on in
 *	  the end-of-transaction callback, which runs after the commit became
 *	  visible, so a snapshot taken afterwards shows every row with an id up to
 *	  L that will ever exist: L is final.
 * This relies on the sequence handing out ids in the order of the calls
 * (CACHE 1, as the extension creates it).  A transaction that published
 * cannot be prepared for two-phase commit: its rows would become visible at
 * COMMIT PREPARED, after its counter moved on.  Rows inserted some other way
 * are still found, later: the relay starts again from the lowest id every
 * outbox.full_scan_interval.
 *
 * The last value handed out must be read under the sequence's buffer lock
 * (pg_sequence_last_value(), see pipeline.c): nextval() writes the value it
 * pre-logs into the tuple while it builds its WAL record, and a mark taken
 * from that would cover ids whose publishers have not begun.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"

#include "horizon.h"

#if PG_VERSION_NUM >= 170000
#define OUTBOX_MY_PROCNO MyProcNumber
#else
#define OUTBOX_MY_PROCNO (MyProc->pgprocno)
#endif

/* One PGPROC's publishing counter; dboid is set before it turns odd */
typedef struct OutboxPublisher
{
	pg_atomic_uint64 gen;
	Oid			dboid;
} OutboxPublisher;

typedef struct OutboxHorizonShared
{
	int			n;
	OutboxPublisher entries[FLEXIBLE_ARRAY_MEMBER];
} OutboxHorizonShared;

static OutboxHorizonShared *horizon = NULL;

/* in a publishing backend: this transaction's counter is odd */
static bool publishing = false;

/* in the relay: what is final, and the mark waiting to become final */
static int64 final_id = 0;
static bool mark_taken = false;
static int64 mark_id = 0;
static int	mark_n = 0;
static int *mark_procs = NULL;
static uint64 *mark_gens = NULL;

/*
 * Entries: one per PGPROC that can run a transaction.
 */
static int
horizon_entries(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

Size
outbox_horizon_shmem_size(void)
{
	return add_size(offsetof(OutboxHorizonShared, entries),
					mul_size(horizon_entries(), sizeof(OutboxPublisher)));
}

/*
 * Create or attach; the caller holds AddinShmemInitLock.
 */
void
outbox_horizon_shmem_startup(void)
{
	bool		found;

	horizon = ShmemInitStruct("outbox horizon", outbox_horizon_shmem_size(), &found);
	if (!found)
	{
		int			i;

		horizon->n = horizon_entries();
		for (i = 0; i < horizon->n; i++)
		{
			pg_atomic_init_u64(&horizon->entries[i].gen, 0);
			horizon->entries[i].dboid = InvalidOid;
		}
	}
}

static OutboxPublisher *
horizon_my_entry(void)
{
	int			procno = OUTBOX_MY_PROCNO;

	if (procno < 0 || procno >= horizon->n)
		elog(ERROR, "outbox: process number %d out of range", procno);
	return &horizon->entries[procno];
}

/*
 * From publish.c's transaction callback, before it wakes the relay: at the
 * end of a publishing transaction, turn the counter even (the commit is
 * visible by then).  PREPARE TRANSACTION is refused (see the header
 * comment).
 */
void
outbox_horizon_xact_event(XactEvent event)
{
	if (!publishing)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that published outbox events"),
					 errdetail("The outbox relay cannot tell when events of a prepared transaction become visible.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			pg_atomic_fetch_add_u64(&horizon_my_entry()->gen, 1);
			publishing = false;
			break;
		default:
			break;
	}
}

/*
 * Called before this transaction takes its first id from
 * outbox.events_id_seq; the caller has registered publish.c's transaction
 * callback.
 */
void
outbox_horizon_enter(void)
{
	OutboxPublisher *me;

	if (publishing || horizon == NULL)
		return;
	me = horizon_my_entry();
	me->dboid = MyDatabaseId;
	pg_write_barrier();
	/* a full barrier: odd before the sequence is read */
	pg_atomic_fetch_add_u64(&me->gen, 1);
	publishing = true;
}

/*
 * The highest id known to be final for this relay: the pending mark becomes
 * final when every counter it copied moved on.  Call before taking the
 * snapshot that reads events.
 */
int64
outbox_horizon_final(void)
{
	int			i;

	if (mark_taken)
	{
		for (i = 0; i < mark_n; i++)
		{
			if (pg_atomic_read_u64(&horizon->entries[mark_procs[i]].gen) == mark_gens[i])
				break;
		}
		if (i == mark_n)
		{
			final_id = Max(final_id, mark_id);
			mark_taken = false;
		}
	}
	/* nothing read afterwards may be ordered before the counters */
	pg_memory_barrier();
	return final_id;
}

/*
 * True when no mark is pending, so the relay should take one.
 */
bool
outbox_horizon_mark_wanted(void)
{
	return !mark_taken;
}

/*
 * Take a mark: last_id is the last value the sequence handed out, read just
 * before this call.
 */
void
outbox_horizon_mark(Oid dboid, int64 last_id)
{
	int			i;

	if (mark_procs == NULL)
	{
		mark_procs = MemoryContextAlloc(TopMemoryContext, sizeof(int) * horizon->n);
		mark_gens = MemoryContextAlloc(TopMemoryContext, sizeof(uint64) * horizon->n);
	}
	pg_memory_barrier();
	mark_n = 0;
	for (i = 0; i < horizon->n; i++)
	{
		uint64		gen = pg_atomic_read_u64(&horizon->entries[i].gen);

		pg_read_barrier();
		if ((gen & 1) && horizon->entries[i].dboid == dboid)
		{
			mark_procs[mark_n] = i;
			mark_gens[mark_n] = gen;
			mark_n++;
		}
	}
	mark_id = last_id;
	mark_taken = true;
}
