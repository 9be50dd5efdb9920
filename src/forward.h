/*-------------------------------------------------------------------------
 *
 * forward.h
 *	  Dead letters on Kafka: the relay produces each new dead letter to its
 *	  topic's dead-letter topic (outbox.dead_letter_topic_suffix).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_FORWARD_H
#define OUTBOX_FORWARD_H

#include "postgres.h"

#include "kafka.h"
#include "pipeline.h"

extern void outbox_forward_init(MemoryContext parent, const char *default_source);
extern OutboxPassResult outbox_forward_pass(OutboxProducer *producer, bool hold);
extern void outbox_forward_wake(void);
extern bool outbox_forward_busy(void);
extern long outbox_forward_due_in_ms(void);

#endif							/* OUTBOX_FORWARD_H */
