/*-------------------------------------------------------------------------
 *
 * waits.h
 *	  The wait events outbox's workers report while they wait.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_WAITS_H
#define OUTBOX_WAITS_H

#include "postgres.h"

/* What a relay, a consumer or the launcher waits for, as a wait event */
typedef enum OutboxWait
{
	OUTBOX_WAIT_RELAY_IDLE = 0,		/* waiting for commits or the poll interval */
	OUTBOX_WAIT_RELAY_DELIVERY,		/* waiting for Kafka's delivery reports */
	OUTBOX_WAIT_RELAY_QUEUE_FULL,	/* waiting for room in librdkafka's queue */
	OUTBOX_WAIT_LAUNCHER,			/* the launcher between passes */
	OUTBOX_WAIT_DROP_DATABASE,		/* DROP DATABASE waiting for the workers to exit */
	OUTBOX_WAIT_CONSUMER_IDLE		/* the consumer waiting for messages */
} OutboxWait;

#define OUTBOX_NWAITS (OUTBOX_WAIT_CONSUMER_IDLE + 1)

extern uint32 outbox_wait_event(OutboxWait kind);

#endif							/* OUTBOX_WAITS_H */
