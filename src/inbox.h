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

extern long outbox_inbox_purge_in_ms(void);
extern uint64 outbox_inbox_purge(bool own_transactions);

#endif							/* OUTBOX_INBOX_H */
