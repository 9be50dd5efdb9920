/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The outbox launcher: a static background worker, connected to no
 *	  database, that decides which databases get a relay and keeps one
 *	  running in each, and a consumer in each database with subscriptions.
 *
 * Which databases: every database that accepts connections and is not a
 * template gets a relay once; a relay that finds no outbox extension marks
 * its slot no_extension and exits, and is started again only when
 * CREATE EXTENSION outbox commits in that database (the install script asks
 * for it, see outbox_request_relay) or the server restarts.  New databases
 * are found by rescanning pg_database every OUTBOX_LAUNCHER_NAPTIME and
 * whenever the launcher's latch is set.
 *
 * Consumers: a database's consumer (consumer.c) is wanted from the commit of
 * a subscription change (subscribe() and the others mark the slot, see
 * outbox_wake_consumer_of_database) or the start of a relay that finds
 * subscriptions, until the consumer finds none left and exits.  It restarts
 * like a relay.
 *
 * Restarts: relays are dynamic workers with BGW_NEVER_RESTART; a relay that
 * exits clears its slot's pid and sets the launcher's latch, and the
 * launcher starts it again after 1 s, doubling up to 60 s while a relay
 * keeps failing within 10 s of its start.  The launcher is registered with
 * a 1 s restart time, and keeps nothing of its own about relays: whether
 * one runs, is being started, or when it may start again is in its slot in
 * shared memory, so a restarted launcher adopts the relays that run.  It
 * starts only once recovery has finished, so a standby never runs a relay.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "fmgr.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "outbox.h"
#include "shmem.h"
#include "waits.h"

#define OUTBOX_LAUNCHER_NAPTIME_MS	10000
#define OUTBOX_RESTART_MIN_MS		1000
#define OUTBOX_RESTART_MAX_MS		60000
#define OUTBOX_QUICK_EXIT_MS		10000
#define OUTBOX_WARN_INTERVAL_MS		60000

/* pg_database.datconnlimit of a database half-dropped (PG 15.4 and later) */
#define OUTBOX_DATCONNLIMIT_INVALID_DB	(-2)

static TimestampTz last_slot_warning = 0;
static TimestampTz last_worker_warning = 0;

/*
 * Register the launcher; called from _PG_init in the postmaster.
 */
void
outbox_register_launcher(void)
{
	BackgroundWorker worker;

	if (IsBinaryUpgrade)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "outbox");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "outbox_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "outbox launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "outbox launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Forget the launcher's latch when it exits.
 */
static void
launcher_detach(int code, Datum arg)
{
	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	outbox_shared->launcher_latch = NULL;
	outbox_shared->launcher_pid = 0;
	LWLockRelease(outbox_shared->lock);
}

/*
 * True once per OUTBOX_WARN_INTERVAL_MS, so a persistent shortage is logged
 * without flooding.
 */
static bool
launcher_warning_due(TimestampTz *last)
{
	TimestampTz now = GetCurrentTimestamp();

	if (*last != 0 && !TimestampDifferenceExceeds(*last, now, OUTBOX_WARN_INTERVAL_MS))
		return false;
	*last = now;
	return true;
}

/*
 * The oids of databases that may have a relay: they accept connections, are
 * not templates and are not half-dropped.  Allocated in mcxt.
 */
static List *
launcher_list_databases(MemoryContext mcxt)
{
	List	   *oids = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	pgstat_report_activity(STATE_RUNNING, "scanning pg_database");

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate ||
			db->datconnlimit == OUTBOX_DATCONNLIMIT_INVALID_DB)
			continue;
		old = MemoryContextSwitchTo(mcxt);
		oids = lappend_oid(oids, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return oids;
}

/*
 * Match slots to databases: free the slots of dropped databases, give new
 * databases a slot.
 */
static void
launcher_assign_slots(List *oids)
{
	ListCell   *lc;
	int			i;

	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < outbox_shared->nslots; i++)
	{
		OutboxSlot *slot = &outbox_shared->slots[i];

		if (OidIsValid(slot->dboid) && !list_member_oid(oids, slot->dboid) &&
			slot->relay.pid == 0 && !slot->relay.launching &&
			slot->consumer.pid == 0 && !slot->consumer.launching)
		{
			slock_t		mutex = slot->mutex;

			memset(slot, 0, sizeof(OutboxSlot));
			slot->mutex = mutex;
		}
	}
	foreach(lc, oids)
	{
		Oid			dboid = lfirst_oid(lc);

		if (outbox_slot_for_database(dboid) != NULL)
			continue;
		for (i = 0; i < outbox_shared->nslots; i++)
		{
			if (!OidIsValid(outbox_shared->slots[i].dboid))
			{
				outbox_shared->slots[i].dboid = dboid;
				outbox_shared->slots[i].no_extension = false;
				break;
			}
		}
		if (i == outbox_shared->nslots && launcher_warning_due(&last_slot_warning))
			ereport(WARNING,
					(errmsg("outbox launcher: no free slot for database with OID %u", dboid),
					 errhint("Raise outbox.max_databases (currently %d) and restart the server.",
							 outbox_shared->nslots)));
	}
	LWLockRelease(outbox_shared->lock);
}

/*
 * Register the relay or the consumer of slot i.  false when no worker slot
 * was free.
 */
static bool
launcher_start_worker(int i, Oid dboid, OutboxWorkerKind kind)
{
	BackgroundWorker worker;
	const char *what = kind == OUTBOX_WORKER_RELAY ? "relay" : "consumer";

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "outbox");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "outbox_%s_main", what);
	snprintf(worker.bgw_name, BGW_MAXLEN, "outbox %s for database %u", what, dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "outbox %s", what);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	StaticAssertStmt(sizeof(int) <= BGW_EXTRALEN, "slot number must fit in bgw_extra");
	memcpy(worker.bgw_extra, &i, sizeof(int));

	if (!RegisterDynamicBackgroundWorker(&worker, NULL))
	{
		if (launcher_warning_due(&last_worker_warning))
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("outbox launcher: no background worker slot free for the %s of database with OID %u",
							what, dboid),
					 errhint("Raise max_worker_processes (currently %d): outbox needs one for its launcher, one per database it serves and one more per database with subscriptions.",
							 max_worker_processes)));
		return false;
	}
	return true;
}

/*
 * Milliseconds from now until ts (at least 1).
 */
static long
launcher_ms_until(TimestampTz now, TimestampTz ts)
{
	long		secs;
	int			usecs;

	TimestampDifference(now, ts, &secs, &usecs);
	return secs * 1000 + usecs / 1000 + 1;
}

/*
 * Decide for worker w of a slot, under the lock held exclusively: start it
 * now, or not, and until when the launcher may sleep.  wanted: the database
 * needs it (a relay: unless it found no extension; a consumer: while the
 * database has subscriptions).  A worker runs while it has its pid; one
 * registered but not yet attached counts as running for
 * OUTBOX_QUICK_EXIT_MS; one that exited is started again after a backoff
 * that grows while it keeps exiting soon after its start, unless it exited
 * because it was no longer wanted.
 */
static bool
launcher_worker_due(OutboxSlot *slot, OutboxWorker *w, bool wanted,
					TimestampTz now, long *sleep_ms)
{
	if (!OidIsValid(slot->dboid) || slot->dropping || w->pid != 0)
		return false;
	if (w->launching)
	{
		TimestampTz give_up = TimestampTzPlusMilliseconds(w->launched_at,
														  OUTBOX_QUICK_EXIT_MS);

		if (now < give_up)
		{
			*sleep_ms = Min(*sleep_ms, OUTBOX_RESTART_MIN_MS);
			return false;
		}
		w->launching = false;	/* it never attached */
	}
	if (w->launched_at != 0)
	{
		/* it ran and exited: when may it start again? */
		bool		quick = !TimestampDifferenceExceeds(w->launched_at, now,
														OUTBOX_QUICK_EXIT_MS);

		w->launched_at = 0;
		w->quick_exits = (!wanted || !quick) ? 0 : Min(w->quick_exits + 1, 7);
		w->restart_at = !wanted ? 0 :
			TimestampTzPlusMilliseconds(now, Min(OUTBOX_RESTART_MAX_MS,
												 OUTBOX_RESTART_MIN_MS << w->quick_exits));
	}
	if (!wanted)
		return false;
	if (w->restart_at > now)
	{
		*sleep_ms = Min(*sleep_ms, launcher_ms_until(now, w->restart_at));
		return false;
	}
	return true;
}

/*
 * Start worker kind of slot i when it is due.
 */
static void
launcher_reconcile_worker(int i, OutboxWorkerKind kind, TimestampTz now,
						  long *sleep_ms)
{
	OutboxSlot *slot = &outbox_shared->slots[i];
	OutboxWorker *w = outbox_slot_worker(slot, kind);
	Oid			dboid = InvalidOid;
	bool		wanted;

	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	wanted = !slot->no_extension &&
		(kind == OUTBOX_WORKER_RELAY || slot->consumer_wanted);
	if (launcher_worker_due(slot, w, wanted, now, sleep_ms))
	{
		dboid = slot->dboid;
		w->launching = true;
		w->launched_at = now;
	}
	LWLockRelease(outbox_shared->lock);

	if (OidIsValid(dboid) && !launcher_start_worker(i, dboid, kind))
	{
		LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
		w->launching = false;
		w->launched_at = 0;
		LWLockRelease(outbox_shared->lock);
		*sleep_ms = Min(*sleep_ms, OUTBOX_RESTART_MIN_MS * 5);
	}
}

/*
 * One pass: assign slots, then start every relay and consumer that should
 * run and does not.  Returns how long the launcher may sleep before the next pass.
 */
static long
launcher_reconcile(MemoryContext mcxt)
{
	List	   *oids = launcher_list_databases(mcxt);
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = OUTBOX_LAUNCHER_NAPTIME_MS;
	int			i;

	launcher_assign_slots(oids);

	for (i = 0; i < outbox_shared->nslots; i++)
	{
		launcher_reconcile_worker(i, OUTBOX_WORKER_RELAY, now, &sleep_ms);
		launcher_reconcile_worker(i, OUTBOX_WORKER_CONSUMER, now, &sleep_ms);
	}
	list_free(oids);
	return sleep_ms;
}

/*
 * outbox._start_relay(): called by the install script, so that the relay of
 * this database starts as soon as CREATE EXTENSION commits.
 */
PG_FUNCTION_INFO_V1(outbox_start_relay);
Datum
outbox_start_relay(PG_FUNCTION_ARGS)
{
	outbox_require_preload();
	outbox_wake_launcher_at_commit();
	PG_RETURN_VOID();
}

/*
 * Launcher entry point.
 */
void
outbox_launcher_main(Datum main_arg)
{
	MemoryContext mcxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	before_shmem_exit(launcher_detach, (Datum) 0);
	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	outbox_shared->launcher_pid = MyProcPid;
	outbox_shared->launcher_latch = MyLatch;
	LWLockRelease(outbox_shared->lock);

	mcxt = AllocSetContextCreate(TopMemoryContext, "outbox launcher",
								 ALLOCSET_DEFAULT_SIZES);

	ereport(LOG, (errmsg("outbox launcher started")));

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		sleep_ms = launcher_reconcile(mcxt);
		MemoryContextReset(mcxt);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, outbox_wait_event(OUTBOX_WAIT_LAUNCHER));
		ResetLatch(MyLatch);
	}
}
