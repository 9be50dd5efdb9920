/*-------------------------------------------------------------------------
 *
 * spiutil.c
 *	  SPI plumbing shared by the parts of outbox.
 *
 *	- outbox_plan(): a statement prepared once per process and kept for its
 *	  life (SPI_keepplan), for the relay's statements and the inbox's.
 *	- outbox_work_begin() / outbox_work_end(): one unit of the relay's work,
 *	  in the order worker_spi gives it: start a transaction, connect SPI,
 *	  push a snapshot, report the activity; then pop, finish, commit, report
 *	  idle.  The memory context current at the start is current again after
 *	  the commit (CommitTransactionCommand leaves TopMemoryContext current),
 *	  so whatever the relay allocates between units goes to its per-pass
 *	  context, never to TopMemoryContext.  A unit exits the relay when the
 *	  extension is gone, and checks that the extension's objects are its own
 *	  (members.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "members.h"
#include "outbox.h"
#include "spiutil.h"

/* the context current when the unit of work began */
static MemoryContext work_caller_cxt = NULL;

/*
 * Prepare sql once, keep the plan in *plan, and return it.  cursor_options
 * as for SPI_prepare_cursor (CURSOR_OPT_CUSTOM_PLAN where a generic plan
 * made on a nearly empty table would scan a large backlog later).
 */
SPIPlanPtr
outbox_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			int cursor_options)
{
	SPIPlanPtr	p;

	if (*plan != NULL)
		return *plan;
	p = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);
	if (p == NULL)
		elog(ERROR, "outbox: preparing a statement failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(p) != 0)
		elog(ERROR, "outbox: keeping a prepared statement failed");
	*plan = p;
	return p;
}

/*
 * Run a kept single-value bigint query without arguments; NULL gives -1.
 * Not read-only, so that it sees what this transaction changed before.
 */
int64
outbox_query_int8(SPIPlanPtr *plan, const char *sql)
{
	bool		isnull;
	Datum		d;

	if (SPI_execute_plan(outbox_plan(plan, sql, 0, NULL, CURSOR_OPT_CUSTOM_PLAN),
						 NULL, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "outbox relay: query failed: %s", sql);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? -1 : DatumGetInt64(d);
}

/*
 * Begin one unit of the relay's work; exits the relay when the extension is
 * not installed (any more).
 */
void
outbox_work_begin(const char *activity)
{
	Oid			extoid;

	Assert(!IsTransactionState());
	work_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox relay: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);

	extoid = outbox_members_checked();
	if (OidIsValid(extoid))
		return;
	extoid = get_extension_oid("outbox", true);
	if (!OidIsValid(extoid))
	{
		SPI_finish();
		PopActiveSnapshot();
		AbortCurrentTransaction();
		outbox_relay_exit_without_extension();
	}
	outbox_members_check(extoid);
}

/*
 * Commit the unit of work and return to the caller's memory context.
 */
void
outbox_work_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(work_caller_cxt);
	/* table statistics, so autovacuum learns of the rows the relay deleted */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Run SQL as owner (the owner of the extension's table it writes) with a
 * pinned search_path, with SPI connected: for SQL-callable functions whose
 * callers hold only EXECUTE, so that whatever the caller set (search_path,
 * operators of its own) never reaches statements run with the owner's
 * rights.  Returns the GUC nest level to pass to outbox_as_caller().
 */
int
outbox_as_owner(Oid owner, Oid *save_user, int *save_sec)
{
	int			nest;

	GetUserIdAndSecContext(save_user, save_sec);
	SetUserIdAndSecContext(owner, *save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	return nest;
}

/*
 * Back to the caller after outbox_as_owner().
 */
void
outbox_as_caller(int nest, Oid save_user, int save_sec)
{
	SPI_finish();
	AtEOXact_GUC(true, nest);
	SetUserIdAndSecContext(save_user, save_sec);
}
