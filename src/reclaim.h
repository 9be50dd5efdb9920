/*-------------------------------------------------------------------------
 *
 * reclaim.h
 *	  Truncating outbox.events when the relay has caught up.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_RECLAIM_H
#define OUTBOX_RECLAIM_H

#include "postgres.h"

#include "storage/block.h"

extern BlockNumber outbox_reclaim(void);

#endif							/* OUTBOX_RECLAIM_H */
