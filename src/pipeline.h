/*-------------------------------------------------------------------------
 *
 * pipeline.h
 *	  The relay's pipeline: batches of outbox.events read in id order,
 *	  produced, and their outcomes recorded; the read cursor and the retry
 *	  floor that decide where reads start.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_PIPELINE_H
#define OUTBOX_PIPELINE_H

#include "postgres.h"

#include "kafka.h"
#include "shmem.h"

/* What one pass of the pipeline did */
typedef enum OutboxPassResult
{
	OUTBOX_PASS_IDLE,			/* nothing in flight, nothing to read */
	OUTBOX_PASS_WAITING,		/* batches in flight wait for Kafka */
	OUTBOX_PASS_PROGRESS		/* read, produced or recorded: go on at once */
} OutboxPassResult;

extern void outbox_pipeline_init(MemoryContext parent, OutboxSlot *slot,
								 const char *default_source);
extern OutboxPassResult outbox_pipeline_pass(OutboxProducer *producer,
											 bool hold, bool woken);
extern bool outbox_pipeline_busy(void);
extern bool outbox_pipeline_drained(void);
extern bool outbox_pipeline_paused(void);
extern int64 outbox_pipeline_cursor(void);
extern long outbox_pipeline_due_in_ms(void);
extern void outbox_pipeline_after_error(void);

#endif							/* OUTBOX_PIPELINE_H */
