/*-------------------------------------------------------------------------
 *
 * causation.h
 *	  Causation chains: the event a transaction received last, so that the
 *	  events it publishes afterwards name it (ce_causationid) and carry its
 *	  correlation id (ce_correlationid).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_CAUSATION_H
#define OUTBOX_CAUSATION_H

#include "postgres.h"

/* receive() of event_id in this transaction, with its correlation id or NULL */
extern void outbox_causation_received(const char *event_id, const char *correlation_id);

/*
 * The causation and correlation ids of an event published now, from the
 * explicit arguments (NULL when not given) or the last receive() of the
 * transaction; NULL when there is none.
 */
extern void outbox_causation_for_publish(const char *causation_arg,
										 const char *correlation_arg,
										 const char **causation,
										 const char **correlation);

#endif							/* OUTBOX_CAUSATION_H */
