/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Shared state of the launcher and the workers: one slot per served
 *	  database, with its relay's and its consumer's latch, and the relay's
 *	  state and counters.
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

#include "outbox.h"

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

/* Subscriptions of one database whose consumer state outbox.consumer_stats shows */
#define OUTBOX_MAX_SUBSCRIPTION_STATES 32

/* What a consumer does for one subscription, shown in outbox.consumer_stats */
typedef enum OutboxConsumerState
{
	OUTBOX_CONSUMER_STARTING = 0,
	OUTBOX_CONSUMER_RUNNING,
	OUTBOX_CONSUMER_RETRYING,	/* a failed message waits for its next attempt */
	OUTBOX_CONSUMER_WAITING_FOR_BROKERS,
	OUTBOX_CONSUMER_RESTARTING,	/* its client failed: a new one after a pause */
	OUTBOX_CONSUMER_NOT_CONSUMING	/* its handler or role cannot be applied */
} OutboxConsumerState;

/* One subscription's state, published by its database's consumer */
typedef struct OutboxSubscriptionStatus
{
	char		consumer[OUTBOX_MAX_CONSUMER_LEN + 1];
	OutboxConsumerState state;
	int32		assigned;		/* partitions */
	TimestampTz last_error_at;
	char		last_error[OUTBOX_ERROR_LEN];
} OutboxSubscriptionStatus;

/*
 * One worker of a database (its relay, its consumer): whether it runs, and
 * when it may be started again.  Set under OutboxShared->lock.
 */
typedef struct OutboxWorker
{
	pid_t		pid;			/* 0 when not running */
	Latch	   *latch;			/* NULL when not running */
	bool		launching;		/* registered, not yet attached */
	TimestampTz launched_at;	/* when last registered; 0 once its exit was seen */
	TimestampTz restart_at;		/* not to be started again before this */
	int			quick_exits;	/* exits soon after start, in a row */
} OutboxWorker;

/* The workers a database may have */
typedef enum OutboxWorkerKind
{
	OUTBOX_WORKER_RELAY,
	OUTBOX_WORKER_CONSUMER
} OutboxWorkerKind;

/*
 * One served database: the one record of whether its relay and its consumer
 * run, read by every launcher (a restarted one adopts running workers from
 * here).  The fields up to the mutex are set under OutboxShared->lock; the
 * state, counters and figures under the slot's mutex.
 */
typedef struct OutboxSlot
{
	Oid			dboid;			/* InvalidOid: slot is free */
	OutboxWorker relay;
	OutboxWorker consumer;
	bool		no_extension;	/* relay found no extension and exited */
	bool		dropping;		/* DROP DATABASE stopped it: do not restart */
	/* the database has subscriptions: run its consumer */
	bool		consumer_wanted;
	/* bumped at every commit that changed a subscription */
	uint32		subscriptions_gen;

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
	/* the consumer's subscriptions, OUTBOX_MAX_SUBSCRIPTION_STATES of room */
	int			nsubscriptions;
	OutboxSubscriptionStatus *subscriptions;
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
extern OutboxWorker *outbox_slot_worker(OutboxSlot *slot, OutboxWorkerKind kind);
extern OutboxSlot *outbox_slot_attach(int slotno, Oid dboid, OutboxWorkerKind kind);
extern void outbox_slot_detach(OutboxSlot *slot, OutboxWorkerKind kind);
extern void outbox_wake_consumer_of_database(Oid dboid);
extern bool outbox_slot_release_consumer(OutboxSlot *slot, uint32 gen);
extern uint32 outbox_slot_subscriptions_gen(OutboxSlot *slot);
extern void outbox_request_relay(Oid dboid);
extern void outbox_stop_relay_for_drop(Oid dboid);
extern void outbox_slot_set_state(OutboxSlot *slot, OutboxRelayState state);
extern void outbox_slot_set_brokers_up(OutboxSlot *slot, bool up);
extern void outbox_slot_record_error(OutboxSlot *slot, const char *message);
extern void outbox_slot_set_subscriptions(OutboxSlot *slot,
										  const OutboxSubscriptionStatus *subs,
										  int nsubs);
extern int	outbox_slot_get_subscriptions(OutboxSlot *slot,
										  OutboxSubscriptionStatus *subs);
extern void outbox_slot_count(OutboxSlot *slot, uint64 delivered,
							  uint64 failed, uint64 dead_lettered,
							  uint64 purged);

#endif							/* OUTBOX_SHMEM_H */
