/*-------------------------------------------------------------------------
 *
 * status.h
 *	  What the relay reports about itself (pause state, backlog figures) for
 *	  outbox.stats.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_STATUS_H
#define OUTBOX_STATUS_H

#include "postgres.h"

#include "shmem.h"

/* What a relay or the launcher waits for, as a wait event */
typedef enum OutboxWait
{
	OUTBOX_WAIT_RELAY_IDLE = 0,		/* waiting for commits or the poll interval */
	OUTBOX_WAIT_RELAY_DELIVERY,		/* waiting for Kafka's delivery reports */
	OUTBOX_WAIT_LAUNCHER			/* the launcher between passes */
} OutboxWait;

extern uint32 outbox_wait_event(OutboxWait kind);
extern bool outbox_status_paused(void);
extern bool outbox_status_refresh_due(void);
extern void outbox_status_refresh(OutboxSlot *slot, int64 cursor);

#endif							/* OUTBOX_STATUS_H */
