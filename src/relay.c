/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  The relay: one background worker per database, which moves committed
 *	  rows of outbox.events to Kafka and deletes each row only after Kafka
 *	  acknowledged it.  This file is the worker's life: start-up, the loop,
 *	  the producer's life, errors, and what it reports about itself; the
 *	  batches themselves move through pipeline.c.
 *
 * The loop, in the shape of worker_spi: each pass runs the pipeline once
 * (read and produce a batch, record the batches whose delivery reports are
 * in) and the forwarding of dead letters to their dead-letter topic
 * (forward.c, the same steps with the same producer), purges expired inbox
 * rows when outbox.purge_interval has passed
 * (inbox.c), and publishes the relay's state and backlog figures for
 * outbox.stats (status.c).  When a pass made progress the next follows at
 * once; otherwise the relay waits on its latch (set by committing
 * publishers) and librdkafka's queue pipe together, with a timeout: a second
 * while batches travel, else outbox.poll_interval, the purge interval, the
 * next statistics refresh, the next waiting event due (a retry, a
 * deliver_at) or the next forward to retry, whichever comes first.  A
 * reload that changes the producer's settings, or a fatal producer error,
 * stops new reads until nothing is in flight, then the producer is
 * recreated.
 *
 * Errors: an ERROR in a pass is caught, its transaction aborted, the message
 * recorded in the slot and logged (the same message at most once a minute);
 * the batches in flight stay (pipeline.c), and the relay waits before going
 * on: a second, doubling while errors repeat, up to ten seconds.
 *
 * Memory: relay_cxt lives as long as the worker (the pipeline's batches hang
 * below it); relay_pass_cxt is reset at the start of every pass, and is the
 * current context whenever no transaction is open, so nothing a pass
 * allocates outlives it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "forward.h"
#include "inbox.h"
#include "kafka.h"
#include "outbox.h"
#include "pipeline.h"
#include "reclaim.h"
#include "session.h"
#include "shmem.h"
#include "spiutil.h"
#include "status.h"
#include "waits.h"

#define RELAY_ERROR_PAUSE_MS		1000
#define RELAY_ERROR_PAUSE_MAX_MS	10000
#define RELAY_ERROR_REPEAT_MS		60000
/* how long to wait for Kafka before looking around again */
#define RELAY_FLIGHT_WAIT_MS		1000

static OutboxSlot *relay_slot = NULL;
static OutboxProducer *relay_producer = NULL;
static char *relay_dbname = NULL;
static char *relay_label = NULL;
static MemoryContext relay_cxt = NULL;
static MemoryContext relay_pass_cxt = NULL;
static bool relay_reload_pending = false;
static bool relay_started = false;
static bool relay_announced = false;
static bool relay_stopping = false;
static bool relay_stats_dirty = true;
static int	relay_errors_in_a_row = 0;

/*
 * The relay's state for outbox.stats, derived in this one place from what
 * the relay knows: stopping, starting, paused, brokers down, or running.
 */
static void
relay_set_state(void)
{
	OutboxRelayState state;
	bool		brokers_up = relay_producer == NULL ||
		outbox_kafka_brokers_up(relay_producer);

	if (relay_stopping)
		state = OUTBOX_RELAY_STOPPED;
	else if (!relay_started)
		state = OUTBOX_RELAY_STARTING;
	else if (outbox_pipeline_paused())
		state = OUTBOX_RELAY_PAUSED;
	else if (!brokers_up)
		state = OUTBOX_RELAY_WAITING_FOR_BROKERS;
	else
		state = OUTBOX_RELAY_RUNNING;
	if (relay_producer != NULL)
		outbox_slot_set_brokers_up(relay_slot, brokers_up);
	outbox_slot_set_state(relay_slot, state);
}

/*
 * Leave the slot when the worker exits, whatever the reason.
 */
static void
relay_detach(int code, Datum arg)
{
	if (relay_slot == NULL)
		return;
	relay_stopping = true;
	relay_set_state();
	outbox_slot_detach(relay_slot, OUTBOX_WORKER_RELAY);
}

/*
 * Take the slot the launcher assigned to this database.
 */
static void
relay_attach(int slotno, Oid dboid)
{
	OutboxSlot *slot = outbox_slot_attach(slotno, dboid, OUTBOX_WORKER_RELAY);

	if (slot == NULL)
	{
		ereport(LOG,
				(errmsg("outbox relay for database with OID %u: slot %d is no longer ours, exiting",
						dboid, slotno)));
		proc_exit(0);
	}
	relay_slot = slot;
	before_shmem_exit(relay_detach, (Datum) 0);
	relay_set_state();
}

/*
 * Exit for good when the extension is absent (never created, or dropped):
 * the launcher starts a relay again when CREATE EXTENSION commits.
 */
void
outbox_relay_exit_without_extension(void)
{
	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	relay_slot->no_extension = true;
	LWLockRelease(outbox_shared->lock);
	ereport(DEBUG1,
			(errmsg("%s: extension outbox is not installed, exiting", relay_label)));
	proc_exit(0);
}

/*
 * Create the producer, or recreate it when its configuration changed at a
 * reload (reloaded is true after one) or after a fatal producer error.  Only
 * called with no batch in flight.
 *
 * A configuration librdkafka would refuse (a bad edit of the properties
 * file: the setting itself was checked at the reload, but the file may
 * change without its name changing) does not stop delivery: the last good
 * producer stays, the refusal is recorded in outbox.stats and logged once,
 * and the file is read again at the next reload.
 */
static void
relay_refresh_producer(bool reloaded)
{
	static OutboxKafkaConfig *config = NULL;	/* the producer's */
	static char *refused = NULL;	/* signature of the last one refused */
	MemoryContext old;
	OutboxKafkaConfig *next;
	char	   *detail = NULL;
	bool		fatal = relay_producer != NULL &&
		outbox_kafka_failed_fatally(relay_producer);
	char	   *client_id;

	Assert(!outbox_pipeline_busy());
	if (relay_producer != NULL && !reloaded && !fatal)
		return;
	/* each configuration in a context of its own, deleted when it goes */
	old = MemoryContextSwitchTo(AllocSetContextCreate(relay_cxt,
													  "outbox producer configuration",
													  ALLOCSET_SMALL_SIZES));
	next = outbox_kafka_config_read();
	MemoryContextSwitchTo(old);
	if (relay_producer != NULL && !fatal &&
		strcmp(next->signature, config->signature) == 0)
	{
		MemoryContextDelete(GetMemoryChunkContext(next));
		return;
	}
	if (!outbox_kafka_config_check(next, &detail))
	{
		bool		new_refusal = refused == NULL ||
			strcmp(refused, next->signature) != 0;

		if (new_refusal)
		{
			if (refused != NULL)
				pfree(refused);
			refused = MemoryContextStrdup(relay_cxt, next->signature);
		}
		MemoryContextDelete(GetMemoryChunkContext(next));
		if (relay_producer == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s: invalid Kafka producer configuration", relay_label),
					 errdetail("%s", detail)));
		outbox_slot_record_error(relay_slot,
								 psprintf("new Kafka producer configuration refused, keeping the last good one: %s",
										  detail));
		if (new_refusal)
			ereport(LOG,
					(errmsg("%s: new Kafka producer configuration refused, keeping the last good one",
							relay_label),
					 errdetail("%s", detail)));
		/* a fatal error still needs a new producer: from the last good one */
		if (!fatal)
			return;
		next = config;
	}
	if (relay_producer != NULL)
	{
		ereport(LOG,
				(errmsg("%s: recreating the Kafka producer (%s)", relay_label,
						fatal ? "fatal producer error" : "configuration changed")));
		outbox_kafka_destroy(relay_producer);
		relay_producer = NULL;
	}
	if (config != NULL && config != next)
		MemoryContextDelete(GetMemoryChunkContext(config));
	config = next;
	client_id = psprintf("outbox-%s", relay_dbname);
	relay_producer = outbox_kafka_create(config, client_id, relay_label);
}

/*
 * Publish the relay's state, and its backlog figures when they may have
 * changed (the relay worked, or was woken: a commit while it is paused or
 * waiting for brokers grows the backlog too), as soon as a refresh is due:
 * a second after the last, longer when counting took long (status.c).  An
 * idle relay with figures to refresh sleeps only until then, so
 * outbox.stats lags by that at most, and counting never runs once per
 * commit.
 */
static void
relay_update_status(OutboxPassResult result, bool woken)
{
	if (result != OUTBOX_PASS_IDLE || woken)
		relay_stats_dirty = true;
	if (relay_stats_dirty && outbox_status_refresh_in_ms() <= 0)
	{
		outbox_work_begin("refreshing statistics");
		outbox_status_refresh(relay_slot, outbox_pipeline_cursor());
		outbox_work_end();
		relay_stats_dirty = (result != OUTBOX_PASS_IDLE);
	}
	relay_set_state();
}

/*
 * What a pass did, from what the pipeline and the forwarding of dead
 * letters did: progress in either, else waiting for Kafka in either.
 */
static OutboxPassResult
relay_combine(OutboxPassResult a, OutboxPassResult b)
{
	if (a == OUTBOX_PASS_PROGRESS || b == OUTBOX_PASS_PROGRESS)
		return OUTBOX_PASS_PROGRESS;
	if (a == OUTBOX_PASS_WAITING || b == OUTBOX_PASS_WAITING)
		return OUTBOX_PASS_WAITING;
	return OUTBOX_PASS_IDLE;
}

/*
 * How long the relay may sleep when a pass was idle or waiting.
 */
static long
relay_sleep_ms(OutboxPassResult result)
{
	long		ms = result == OUTBOX_PASS_WAITING ? RELAY_FLIGHT_WAIT_MS :
		Min(outbox_poll_interval, outbox_inbox_purge_in_ms());
	long		forward_ms = outbox_forward_due_in_ms();
	long		due_ms = outbox_pipeline_due_in_ms();

	if (forward_ms >= 0)
		ms = Min(ms, forward_ms);
	if (due_ms >= 0)
		ms = Min(ms, due_ms);

	if (relay_stats_dirty)
		ms = Min(ms, outbox_status_refresh_in_ms());
	return Max(ms, 1);
}

/*
 * Report an error caught by the main loop: record it in the slot, log it
 * unless the same message was logged less than a minute ago.
 */
static void
relay_report_error(void)
{
	static char *last_message = NULL;
	static TimestampTz last_logged = 0;
	MemoryContext old = MemoryContextSwitchTo(relay_cxt);
	ErrorData  *edata = CopyErrorData();
	TimestampTz now = GetCurrentTimestamp();

	outbox_slot_record_error(relay_slot, edata->message);
	if (last_message == NULL || strcmp(last_message, edata->message) != 0 ||
		TimestampDifferenceExceeds(last_logged, now, RELAY_ERROR_REPEAT_MS))
	{
		EmitErrorReport();
		if (last_message)
			pfree(last_message);
		last_message = pstrdup(edata->message);
		last_logged = now;
	}
	FreeErrorData(edata);
	MemoryContextSwitchTo(old);
}

/*
 * Error context: every message raised while the relay works names it.
 */
static void
relay_error_context(void *arg)
{
	errcontext("%s", relay_label);
}

/*
 * Relay entry point.  main_arg is the database oid, bgw_extra the slot.
 */
void
outbox_relay_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	char	   *default_source;
	int			slotno;
	sigjmp_buf	local_sigjmp_buf;
	ErrorContextCallback errcallback;
	volatile bool woken = true;

	memcpy(&slotno, MyBgworkerEntry->bgw_extra, sizeof(int));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	relay_attach(slotno, dboid);
	outbox_session_save();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	outbox_session_pin(false);

	relay_cxt = AllocSetContextCreate(TopMemoryContext, "outbox relay",
									  ALLOCSET_DEFAULT_SIZES);
	relay_pass_cxt = AllocSetContextCreate(relay_cxt, "outbox relay pass",
										   ALLOCSET_DEFAULT_SIZES);

	StartTransactionCommand();
	relay_dbname = MemoryContextStrdup(relay_cxt, get_database_name(dboid));
	CommitTransactionCommand();
	relay_label = MemoryContextStrdup(relay_cxt,
									  psprintf("outbox relay for database \"%s\"", relay_dbname));
	default_source = psprintf("/outbox/%s", relay_dbname);
	outbox_pipeline_init(relay_cxt, relay_slot, default_source);
	outbox_forward_init(relay_cxt, default_source);
	pgstat_report_appname("outbox relay");

	MemoryContextSwitchTo(relay_pass_cxt);

	errcallback.callback = relay_error_context;
	errcallback.arg = NULL;
	errcallback.previous = NULL;

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		/* an ERROR escaped a pass: clean up, record, pause, go on */
		long		pause_ms;
		TimestampTz pause_until;

		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		relay_report_error();
		AbortCurrentTransaction();
		outbox_pipeline_after_error();
		MemoryContextSwitchTo(relay_pass_cxt);
		FlushErrorState();
		RESUME_INTERRUPTS();
		relay_errors_in_a_row = Min(relay_errors_in_a_row + 1, 10);
		pause_ms = Min((long) RELAY_ERROR_PAUSE_MS << (relay_errors_in_a_row - 1),
					   RELAY_ERROR_PAUSE_MAX_MS);
		/* commits do not cut the pause short; a signal to exit does */
		pause_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), pause_ms);
		while ((pause_ms = (long) ((pause_until - GetCurrentTimestamp()) / 1000)) > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 pause_ms, outbox_wait_event(OUTBOX_WAIT_RELAY_IDLE));
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		woken = true;
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		OutboxPassResult result;
		bool		hold;
		int			rc;

		MemoryContextSwitchTo(relay_pass_cxt);
		MemoryContextReset(relay_pass_cxt);
		CHECK_FOR_INTERRUPTS();
		if (!relay_announced)
		{
			/* a relay of a database without the extension exits quietly */
			bool		subscriptions;

			outbox_work_begin("checking for the outbox extension");
			subscriptions = outbox_has_subscriptions();
			outbox_work_end();
			ereport(LOG, (errmsg("%s started", relay_label)));
			relay_announced = true;
			/* the database's consumer runs while it has subscriptions */
			if (subscriptions)
				outbox_wake_consumer_of_database(dboid);
		}
		error_context_stack = &errcallback;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			relay_reload_pending = true;
		}

		/*
		 * The producer is recreated only with nothing in flight: until then
		 * the pipeline reads nothing new.
		 */
		if (!outbox_pipeline_busy() && !outbox_forward_busy())
		{
			relay_refresh_producer(relay_reload_pending);
			relay_reload_pending = false;
		}
		hold = relay_reload_pending || outbox_kafka_failed_fatally(relay_producer);

		result = outbox_pipeline_pass(relay_producer, hold, woken);
		result = relay_combine(result, outbox_forward_pass(relay_producer, hold));
		relay_started = true;
		if (outbox_inbox_purge_in_ms() <= 0)
			outbox_slot_count(relay_slot, 0, 0, 0, outbox_inbox_purge(true));
		if (result == OUTBOX_PASS_IDLE && outbox_pipeline_drained())
			(void) outbox_reclaim();
		relay_update_status(result, woken);
		relay_errors_in_a_row = 0;
		if (result == OUTBOX_PASS_PROGRESS)
		{
			woken = false;
			continue;
		}

		if (result == OUTBOX_PASS_IDLE)
			pgstat_report_stat(true);
		rc = outbox_kafka_wait(relay_producer, relay_sleep_ms(result),
							   outbox_wait_event(result == OUTBOX_PASS_WAITING ?
												 OUTBOX_WAIT_RELAY_DELIVERY :
												 OUTBOX_WAIT_RELAY_IDLE));
		woken = (rc & (WL_LATCH_SET | WL_TIMEOUT)) != 0;
	}
}
