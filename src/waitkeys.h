/*-------------------------------------------------------------------------
 *
 * waitkeys.h
 *	  Which (topic, key)s may have an event waiting in outbox.events or a
 *	  dead letter holding them: a Bloom filter that spares the relay an
 *	  index probe for the events of every other key.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_WAITKEYS_H
#define OUTBOX_WAITKEYS_H

#include "postgres.h"

extern void outbox_waitkeys_init(MemoryContext parent);
extern uint64 outbox_waitkeys_hash(Datum topic, Datum key);
extern bool outbox_waitkeys_valid(void);
extern void outbox_waitkeys_load(bool holds);
extern void outbox_waitkeys_clear(void);
extern void outbox_waitkeys_forget(void);
extern void outbox_waitkeys_add(uint64 hash);
extern bool outbox_waitkeys_may_have(uint64 hash);

#endif							/* OUTBOX_WAITKEYS_H */
