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

extern bool outbox_status_paused(void);
extern long outbox_status_refresh_in_ms(void);
extern void outbox_status_refresh(OutboxSlot *slot, int64 cursor);

#endif							/* OUTBOX_STATUS_H */
