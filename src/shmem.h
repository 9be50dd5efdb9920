/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared state of the launcher and the relays: one slot per served
 *	  database, with its relay's latch, state and counters.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SHMEM_H
#define OUTBOX_SHMEM_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

/* What a relay is doing, shown in outbox.stats */
typedef enum OutboxRelayState
{
	OUTBOX_RELAY_STOPPED = 0,
	OUTBOX_RELAY_STARTING,
	OUTBOX_RELAY_RUNNING,
	OUTBOX_RELAY_WAITING_FOR_BROKERS,
	OUTBOX_RELAY_PAUSED
} OutboxRelayState;

#define OUTBOX_ERROR_LEN 256

/*
 * One served database: the one record of whether its relay runs, read by
 * every launcher (a restarted one adopts running relays from here).  The
 * fields up to the mutex are set under OutboxShared->lock; the state,
 * counters and figures under the slot's mutex.
 */
typedef struct OutboxSlot
{
	Oid			dboid;			/* InvalidOid: slot is free */
	pid_t		pid;			/* relay's pid, 0 when not running */
	Latch	   *latch;			/* relay's latch, NULL when not running */
	bool		no_extension;	/* relay found no extension and exited */
	bool		launching;		/* registered, not yet attached */
	bool		dropping;		/* DROP DATABASE stopped it: do not restart */
	TimestampTz launched_at;	/* when last registered; 0 once its exit was seen */
	TimestampTz restart_at;		/* not to be started again before this */
	int			quick_exits;	/* exits soon after start, in a row */

	slock_t		mutex;
	OutboxRelayState state;
	uint64		delivered;
	uint64		failed;
	uint64		dead_lettered;
	uint64		purged;
	TimestampTz last_delivery;
	TimestampTz last_error_at;
	char		last_error[OUTBOX_ERROR_LEN];
	/* refreshed by the relay about once a second, see status.c */
	int64		pending;
	TimestampTz oldest_pending;	/* 0 when nothing is pending */
	int64		dead_letters;
	double		events_per_second;
	bool		brokers_up;
	bool		brokers_known;
	TimestampTz stats_at;
	int64		scheduled;		/* of pending: waiting for their deliver_at */
	int64		held;			/* of pending: behind a dead letter of their key */
	/* set at commit by a replay or discard: waiting events may go now */
	bool		release_waiting;
} OutboxSlot;

typedef struct OutboxShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	int			nslots;
	OutboxSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} OutboxShared;

extern OutboxShared *outbox_shared;

extern void outbox_shmem_init(void);
extern bool outbox_shmem_ready(void);
extern OutboxSlot *outbox_slot_for_database(Oid dboid);
extern void outbox_wake_relay_of_database(Oid dboid, bool release_waiting);
extern bool outbox_slot_take_release(OutboxSlot *slot);
extern void outbox_request_relay(Oid dboid);
extern void outbox_stop_relay_for_drop(Oid dboid);
extern void outbox_slot_set_state(OutboxSlot *slot, OutboxRelayState state);
extern void outbox_slot_set_brokers_up(OutboxSlot *slot, bool up);
extern void outbox_slot_record_error(OutboxSlot *slot, const char *message);
extern void outbox_slot_count(OutboxSlot *slot, uint64 delivered,
							  uint64 failed, uint64 dead_lettered,
							  uint64 purged);

#endif							/* OUTBOX_SHMEM_H */
