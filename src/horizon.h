/*-------------------------------------------------------------------------
 *
 * horizon.h
 *	  Which event ids are final: the id below which no transaction can still
 *	  commit a new row of outbox.events, so the relay may read past the ids
 *	  it delivered instead of rescanning their dead index entries.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_HORIZON_H
#define OUTBOX_HORIZON_H

#include "postgres.h"

#include "access/xact.h"

/* shared memory, sized and created from shmem.c */
extern Size outbox_horizon_shmem_size(void);
extern void outbox_horizon_shmem_startup(void);

/* publishers: before a transaction takes an id from outbox.events_id_seq */
extern void outbox_horizon_enter(void);
extern void outbox_horizon_xact_event(XactEvent event);

/* the relay */
extern int64 outbox_horizon_final(void);
extern bool outbox_horizon_mark_wanted(void);
extern void outbox_horizon_mark(Oid dboid, int64 last_id);

#endif							/* OUTBOX_HORIZON_H */
