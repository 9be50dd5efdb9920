/*-------------------------------------------------------------------------
 *
 * inbox.h
 *	  The inbox's entry point for the relay: periodic purge of expired rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_INBOX_H
#define OUTBOX_INBOX_H

#include "postgres.h"

extern uint64 outbox_inbox_purge_if_due(void);

#endif							/* OUTBOX_INBOX_H */
