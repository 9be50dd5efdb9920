/*-------------------------------------------------------------------------
 *
 * inbox.h
 *	  The inbox's entry points for the relay: periodic purge of expired rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_INBOX_H
#define OUTBOX_INBOX_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern bool outbox_inbox_purge_due(void);
extern uint64 outbox_inbox_purge_batch(TimestampTz *from);

#endif							/* OUTBOX_INBOX_H */
