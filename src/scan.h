/*-------------------------------------------------------------------------
 *
 * scan.h
 *	  Reading outbox.events in id order, deleting delivered rows, and
 *	  probing for a key's waiting events or holding dead letters, without
 *	  the planner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SCAN_H
#define OUTBOX_SCAN_H

#include "postgres.h"

#include "storage/lockdefs.h"
#include "utils/relcache.h"

typedef struct OutboxEventScan OutboxEventScan;
typedef struct OutboxKeyProbe OutboxKeyProbe;

extern Relation outbox_events_open(LOCKMODE lockmode);
extern bool outbox_schema_at_1_2(void);

extern OutboxEventScan *outbox_scan_begin(int64 from);
extern bool outbox_scan_next(OutboxEventScan *s, Datum **values, bool **nulls,
							 TransactionId *xmin);
extern void outbox_scan_end(OutboxEventScan *s);
extern uint64 outbox_scan_delete(const Datum *ids, int n);

extern OutboxKeyProbe *outbox_probe_begin(const char *table, const char *index,
										  bool by_id);
extern bool outbox_probe(OutboxKeyProbe *p, Datum topic, Datum key, int64 before_id);
extern void outbox_probe_end(OutboxKeyProbe *p);

#endif							/* OUTBOX_SCAN_H */
