/*-------------------------------------------------------------------------
 *
 * waits.c
 *	  The wait events outbox's workers report while they wait: PostgreSQL 17
 *	  and later register named custom wait events (shown in
 *	  pg_stat_activity.wait_event); older versions show the generic
 *	  "Extension".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/wait_event.h"

#include "waits.h"

/*
 * The wait event to report for kind.
 */
uint32
outbox_wait_event(OutboxWait kind)
{
#if PG_VERSION_NUM >= 170000
	static uint32 events[OUTBOX_NWAITS];
	static const char *const names[OUTBOX_NWAITS] = {
		"OutboxRelayIdle", "OutboxRelayDelivery", "OutboxRelayQueueFull",
		"OutboxLauncherMain", "OutboxDropDatabase", "OutboxConsumerIdle"
	};

	if (events[kind] == 0)
		events[kind] = WaitEventExtensionNew(names[kind]);
	return events[kind];
#else
	return PG_WAIT_EXTENSION;
#endif
}
