/*-------------------------------------------------------------------------
 *
 * spiutil.h
 *	  SPI plumbing shared by the parts of outbox: plans prepared once and
 *	  kept, and the relay's unit of work (a transaction with SPI connected
 *	  and a snapshot pushed).
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SPIUTIL_H
#define OUTBOX_SPIUTIL_H

#include "postgres.h"

#include "executor/spi.h"

extern SPIPlanPtr outbox_plan(SPIPlanPtr *plan, const char *sql, int nargs,
							  Oid *argtypes, int cursor_options);
extern int64 outbox_query_int8(SPIPlanPtr *plan, const char *sql);
extern void outbox_work_begin(const char *activity);
extern void outbox_work_end(void);

#endif							/* OUTBOX_SPIUTIL_H */
