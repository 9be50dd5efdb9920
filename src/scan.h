/*-------------------------------------------------------------------------
 *
 * scan.h
 *	  Reading outbox.events in id order, and deleting delivered rows,
 *	  without the planner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SCAN_H
#define OUTBOX_SCAN_H

#include "postgres.h"

#include "storage/lockdefs.h"
#include "utils/relcache.h"

typedef struct OutboxEventScan OutboxEventScan;

extern Relation outbox_events_open(LOCKMODE lockmode);
extern bool outbox_events_forwarding(void);

extern OutboxEventScan *outbox_scan_begin(int64 from);
extern bool outbox_scan_next(OutboxEventScan *s, Datum **values, bool **nulls,
							 TransactionId *xmin);
extern void outbox_scan_end(OutboxEventScan *s);
extern uint64 outbox_scan_delete(const Datum *ids, int n);

#endif							/* OUTBOX_SCAN_H */
