/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory of the outbox extension: the slot array that tells which
 *	  database is served by which relay, each relay's latch (so committing
 *	  backends can wake it) and its counters.  The publishers' counters of
 *	  horizon.c are created here too.
 *
 * Locking:
 *	- OutboxShared->lock (an LWLock of the "outbox" tranche) protects slot
 *	  assignment and the relay's life: dboid, pid, latch, no_extension,
 *	  launching, dropping and the restart bookkeeping.  The launcher takes it
 *	  exclusively to assign or free a slot and to start a relay, a relay to
 *	  attach or detach, DROP DATABASE to stop one; committing backends take
 *	  it shared to find a latch.
 *	- Each slot's spinlock protects its state, counters and last error; they
 *	  are written by the slot's relay only and read by status functions.
 *	- launcher_pid and launcher_latch are written under the LWLock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include <signal.h>

#include "utils/timestamp.h"

#include "horizon.h"
#include "outbox.h"
#include "shmem.h"
#include "waits.h"

OutboxShared *outbox_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Bytes of shared memory for outbox.max_databases slots.
 */
static Size
outbox_shmem_size(void)
{
	return add_size(add_size(offsetof(OutboxShared, slots),
							 mul_size(outbox_max_databases, sizeof(OutboxSlot))),
					mul_size(mul_size(outbox_max_databases, OUTBOX_MAX_SUBSCRIPTION_STATES),
							 sizeof(OutboxSubscriptionStatus)));
}

/*
 * Ask the postmaster for our shared memory and one named LWLock.
 */
static void
outbox_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(outbox_shmem_size());
	RequestAddinShmemSpace(outbox_horizon_shmem_size());
	RequestNamedLWLockTranche("outbox", 1);
}

/*
 * Create or attach to the shared state, once, under AddinShmemInitLock.
 */
static void
outbox_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	outbox_shared = ShmemInitStruct("outbox", outbox_shmem_size(), &found);
	if (!found)
	{
		OutboxSubscriptionStatus *statuses;
		int			i;

		memset(outbox_shared, 0, outbox_shmem_size());
		outbox_shared->lock = &(GetNamedLWLockTranche("outbox"))->lock;
		outbox_shared->nslots = outbox_max_databases;
		statuses = (OutboxSubscriptionStatus *) &outbox_shared->slots[outbox_max_databases];
		for (i = 0; i < outbox_shared->nslots; i++)
		{
			SpinLockInit(&outbox_shared->slots[i].mutex);
			outbox_shared->slots[i].subscriptions = statuses + i * OUTBOX_MAX_SUBSCRIPTION_STATES;
		}
	}
	outbox_horizon_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Install the hooks; called from _PG_init in the postmaster.
 */
void
outbox_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = outbox_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = outbox_shmem_startup;
}

/*
 * True when the library was preloaded and the shared state exists.
 */
bool
outbox_shmem_ready(void)
{
	return outbox_shared != NULL;
}

/*
 * The slot assigned to a database, or NULL.  Caller holds the LWLock.
 */
OutboxSlot *
outbox_slot_for_database(Oid dboid)
{
	int			i;

	for (i = 0; i < outbox_shared->nslots; i++)
	{
		if (outbox_shared->slots[i].dboid == dboid)
			return &outbox_shared->slots[i];
	}
	return NULL;
}

/*
 * Wake the relay of a database, if it runs, and with release_waiting tell it
 * that events waiting in outbox.events may go now (a replay or discard
 * released the key they waited behind).  Called at commit, so it must not
 * fail: it takes the LWLock shared, the slot's spinlock and sets a latch,
 * nothing else.
 */
void
outbox_wake_relay_of_database(Oid dboid, bool release_waiting)
{
	OutboxSlot *slot;

	if (outbox_shared == NULL)
		return;
	LWLockAcquire(outbox_shared->lock, LW_SHARED);
	slot = outbox_slot_for_database(dboid);
	if (slot != NULL && release_waiting)
	{
		SpinLockAcquire(&slot->mutex);
		slot->release_waiting = true;
		SpinLockRelease(&slot->mutex);
	}
	if (slot != NULL && slot->relay.latch != NULL)
		SetLatch(slot->relay.latch);
	LWLockRelease(outbox_shared->lock);
}

/*
 * A subscription of a database changed (or the relay found it has some):
 * its consumer should run, and read the subscriptions again.  Wakes the
 * consumer, or the launcher when none runs.  Called at commit, so it must
 * not fail.
 */
void
outbox_wake_consumer_of_database(Oid dboid)
{
	OutboxSlot *slot;

	if (outbox_shared == NULL)
		return;
	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	slot = outbox_slot_for_database(dboid);
	if (slot != NULL)
	{
		slot->consumer_wanted = true;
		slot->subscriptions_gen++;
		if (slot->consumer.latch != NULL)
			SetLatch(slot->consumer.latch);
		else if (outbox_shared->launcher_latch != NULL)
			SetLatch(outbox_shared->launcher_latch);
	}
	LWLockRelease(outbox_shared->lock);
}

/*
 * How many subscription changes the slot has seen; a consumer reads it
 * before it reads the subscriptions.
 */
uint32
outbox_slot_subscriptions_gen(OutboxSlot *slot)
{
	uint32		gen;

	LWLockAcquire(outbox_shared->lock, LW_SHARED);
	gen = slot->subscriptions_gen;
	LWLockRelease(outbox_shared->lock);
	return gen;
}

/*
 * For a consumer that found no subscription to serve, having read them after
 * seeing gen: the database needs no consumer now, unless a subscription
 * changed since.  True when the consumer may exit.
 */
bool
outbox_slot_release_consumer(OutboxSlot *slot, uint32 gen)
{
	bool		release;

	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	release = slot->subscriptions_gen == gen;
	if (release)
		slot->consumer_wanted = false;
	LWLockRelease(outbox_shared->lock);
	return release;
}

/*
 * The slot's relay or consumer.
 */
OutboxWorker *
outbox_slot_worker(OutboxSlot *slot, OutboxWorkerKind kind)
{
	return kind == OUTBOX_WORKER_RELAY ? &slot->relay : &slot->consumer;
}

/*
 * A worker just started takes the place the launcher registered it for in
 * slot slotno: NULL when that is no longer its (the database's slot was
 * reassigned, a worker of its kind runs already, or the database is being
 * dropped).
 */
OutboxSlot *
outbox_slot_attach(int slotno, Oid dboid, OutboxWorkerKind kind)
{
	OutboxSlot *slot;
	OutboxWorker *w;

	if (slotno < 0 || slotno >= outbox_shared->nslots)
		elog(FATAL, "outbox worker started with invalid slot %d", slotno);
	slot = &outbox_shared->slots[slotno];
	w = outbox_slot_worker(slot, kind);

	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	if (slot->dboid != dboid || w->pid != 0 || slot->dropping)
	{
		LWLockRelease(outbox_shared->lock);
		return NULL;
	}
	w->pid = MyProcPid;
	w->latch = MyLatch;
	w->launching = false;
	LWLockRelease(outbox_shared->lock);
	return slot;
}

/*
 * A worker leaves its slot when it exits, and wakes the launcher, which
 * learns of the exit from the slot.
 */
void
outbox_slot_detach(OutboxSlot *slot, OutboxWorkerKind kind)
{
	OutboxWorker *w = outbox_slot_worker(slot, kind);

	if (kind == OUTBOX_WORKER_CONSUMER)
	{
		SpinLockAcquire(&slot->mutex);
		slot->nsubscriptions = 0;
		SpinLockRelease(&slot->mutex);
	}
	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	w->pid = 0;
	w->latch = NULL;
	if (outbox_shared->launcher_latch != NULL)
		SetLatch(outbox_shared->launcher_latch);
	LWLockRelease(outbox_shared->lock);
}

/*
 * For the relay: was it told that waiting events may go?  Clears the mark.
 */
bool
outbox_slot_take_release(OutboxSlot *slot)
{
	bool		release;

	SpinLockAcquire(&slot->mutex);
	release = slot->release_waiting;
	slot->release_waiting = false;
	SpinLockRelease(&slot->mutex);
	return release;
}

/*
 * Ask the launcher to (re)start the relay of a database: clears the slot's
 * no_extension and dropping marks, if the database has a slot, and wakes the
 * launcher, which gives a new database a slot on its next pass.  Called at
 * commit of CREATE EXTENSION, so it must not fail, and when a DROP DATABASE
 * that stopped the relay failed after all.
 */
void
outbox_request_relay(Oid dboid)
{
	OutboxSlot *slot;

	if (outbox_shared == NULL)
		return;
	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	slot = outbox_slot_for_database(dboid);
	if (slot != NULL)
	{
		slot->no_extension = false;
		slot->dropping = false;
	}
	if (outbox_shared->launcher_latch != NULL)
		SetLatch(outbox_shared->launcher_latch);
	LWLockRelease(outbox_shared->lock);
}

/*
 * DROP DATABASE is about to run: stop the database's relay, and keep the
 * launcher from starting another, so the drop does not fail with "being
 * accessed by other users".  Waits until the relay has left its slot (the
 * drop itself waits a few seconds more for the process to be gone).
 */
void
outbox_stop_relay_for_drop(Oid dboid)
{
	OutboxSlot *slot;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 30000);

	if (outbox_shared == NULL)
		return;
	for (;;)
	{
		pid_t		relay_pid = 0;
		pid_t		consumer_pid = 0;

		LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
		slot = outbox_slot_for_database(dboid);
		if (slot != NULL)
		{
			slot->dropping = true;
			relay_pid = slot->relay.pid;
			consumer_pid = slot->consumer.pid;
		}
		LWLockRelease(outbox_shared->lock);
		if ((relay_pid == 0 && consumer_pid == 0) ||
			GetCurrentTimestamp() > deadline)
			return;
		if (relay_pid != 0)
			kill(relay_pid, SIGTERM);
		if (consumer_pid != 0)
			kill(consumer_pid, SIGTERM);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10,
						 outbox_wait_event(OUTBOX_WAIT_DROP_DATABASE));
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Publish the state of a consumer's subscriptions (the first
 * OUTBOX_MAX_SUBSCRIPTION_STATES of them) for outbox.consumer_stats.
 */
void
outbox_slot_set_subscriptions(OutboxSlot *slot, const OutboxSubscriptionStatus *subs,
							  int nsubs)
{
	nsubs = Min(nsubs, OUTBOX_MAX_SUBSCRIPTION_STATES);
	SpinLockAcquire(&slot->mutex);
	memcpy(slot->subscriptions, subs, sizeof(OutboxSubscriptionStatus) * nsubs);
	slot->nsubscriptions = nsubs;
	SpinLockRelease(&slot->mutex);
}

/*
 * Copy what the consumer published into subs (room for
 * OUTBOX_MAX_SUBSCRIPTION_STATES); returns how many.
 */
int
outbox_slot_get_subscriptions(OutboxSlot *slot, OutboxSubscriptionStatus *subs)
{
	int			n;

	SpinLockAcquire(&slot->mutex);
	n = slot->nsubscriptions;
	memcpy(subs, slot->subscriptions, sizeof(OutboxSubscriptionStatus) * n);
	SpinLockRelease(&slot->mutex);
	return n;
}

/*
 * Publish a relay's state for outbox.stats.
 */
void
outbox_slot_set_state(OutboxSlot *slot, OutboxRelayState state)
{
	SpinLockAcquire(&slot->mutex);
	slot->state = state;
	SpinLockRelease(&slot->mutex);
}

/*
 * Publish whether the relay's producer reaches its brokers.
 */
void
outbox_slot_set_brokers_up(OutboxSlot *slot, bool up)
{
	SpinLockAcquire(&slot->mutex);
	slot->brokers_up = up;
	slot->brokers_known = true;
	SpinLockRelease(&slot->mutex);
}

/*
 * Remember a relay's last error, truncated, with its time.
 */
void
outbox_slot_record_error(OutboxSlot *slot, const char *message)
{
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->last_error, message, OUTBOX_ERROR_LEN);
	slot->last_error_at = now;
	SpinLockRelease(&slot->mutex);
}

/*
 * Add a batch's outcome, or a purge's, to the relay's counters.
 */
void
outbox_slot_count(OutboxSlot *slot, uint64 delivered, uint64 failed,
				  uint64 dead_lettered, uint64 purged)
{
	TimestampTz now = delivered > 0 ? GetCurrentTimestamp() : 0;

	SpinLockAcquire(&slot->mutex);
	slot->delivered += delivered;
	slot->failed += failed;
	slot->dead_lettered += dead_lettered;
	slot->purged += purged;
	if (delivered > 0)
		slot->last_delivery = now;
	SpinLockRelease(&slot->mutex);
}
