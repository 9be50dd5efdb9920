/*-------------------------------------------------------------------------
 *
 * spiutil.h
 *	  SPI plumbing shared by the parts of outbox: plans prepared once and
 *	  kept, the relay's unit of work (a transaction with SPI connected and a
 *	  snapshot pushed), and running SQL as a table's owner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_SPIUTIL_H
#define OUTBOX_SPIUTIL_H

#include "postgres.h"

#include "executor/spi.h"

/*
 * SQL for the wait before the next attempt after `attempts` failed ones:
 * doubling from min_ms up to max_ms (SQL expressions, milliseconds), with
 * jitter (half of it to all of it), so that retries do not come in waves.
 */
#define OUTBOX_BACKOFF_SQL(attempts, min_ms, max_ms) \
	"pg_catalog.make_interval(secs => LEAST(" min_ms "::pg_catalog.float8" \
	" * pg_catalog.power(2, " attempts "), " max_ms "::pg_catalog.float8)" \
	" * (0.5 + pg_catalog.random() * 0.5) / 1000)"

extern SPIPlanPtr outbox_plan(SPIPlanPtr *plan, const char *sql, int nargs,
							  Oid *argtypes, int cursor_options);
extern int64 outbox_query_int8(SPIPlanPtr *plan, const char *sql);
extern void outbox_work_begin(const char *activity);
extern void outbox_work_end(void);
extern int	outbox_as_owner(Oid owner, Oid *save_user, int *save_sec);
extern void outbox_as_caller(int nest, Oid save_user, int save_sec);

#endif							/* OUTBOX_SPIUTIL_H */
