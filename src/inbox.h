/*-------------------------------------------------------------------------
 *
 * inbox.h
 *	  The inbox's entry points for the relay (periodic purge of expired
 *	  rows) and the consumer (marking what it applies).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_INBOX_H
#define OUTBOX_INBOX_H

#include "postgres.h"

#include "datatype/timestamp.h"

extern long outbox_inbox_purge_in_ms(void);
extern uint64 outbox_inbox_purge(bool own_transactions);
extern Datum outbox_inbox_text_id(const char *s, int len);
extern bool outbox_inbox_mark(Datum consumer, Datum event_id, Datum ttl);
extern Datum outbox_inbox_default_ttl(void);

#endif							/* OUTBOX_INBOX_H */
