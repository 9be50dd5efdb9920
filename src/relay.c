/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  The relay: one background worker per database, which moves committed
 *	  rows of outbox.events to Kafka and deletes each row only after Kafka
 *	  acknowledged it.
 *
 * Each batch goes through:
 *	1. unless outbox.paused has a row, read it in id order, in its own short
 *	   transaction, skipping events not yet due for a retry and every later
 *	   event of a (topic, key) that has an earlier event waiting for a retry;
 *	2. flush WAL up to what was read, so Kafka never holds an event whose
 *	   commit record a crash could still lose (synchronous_commit = off);
 *	3. produce it;
 *	4. serve delivery reports until every message has one, waiting on the
 *	   latch and librdkafka's queue pipe together;
 *	5. in a second transaction delete the delivered rows, and for failed ones
 *	   count the attempt and set the next attempt time (exponential backoff
 *	   with jitter), or move them to outbox.dead_letters after
 *	   outbox.max_attempts or at once on a permanent error.
 * No transaction is open while waiting for Kafka.
 *
 * Pipeline: two batches can be in flight.  While Kafka acknowledges one, the
 * next is read (past the first one's last id) and produced, and the first
 * one's outcome is recorded while the second travels; so reading and
 * recording overlap Kafka's round trips.  While retries are pending, or when
 * a batch's ids were not all final at its read, the batches go one at a
 * time (see relay_pipeline_ok).  The price: after a crash up to two batches
 * are produced again, and if an event fails while the next batch is already
 * produced, later events of its key in that batch are in Kafka before it.
 *
 * Reading past delivered ids: a read starts above relay_cursor, not at the
 * lowest id, so it does not walk over the dead index entries and tuples of
 * rows already delivered (which pile up while vacuum is held back).  After
 * a batch read from the cursor, the cursor moves to its last id, but never
 * past what horizon.c said was final at the read (a lower id may still
 * commit) nor past the lowest id waiting for a retry (the rows after it of
 * the same key are skipped by the read, and must be read again).  Every
 * outbox.full_scan_interval, and after an error, the cursor goes back to 0,
 * so a row inserted some way horizon.c does not see is found all the same.
 *
 * After each pass the relay purges expired inbox rows when
 * outbox.purge_interval has passed (inbox.c) and publishes its state and
 * backlog figures for outbox.stats (status.c).  While batches are in flight
 * or a pass found events it goes on at once; otherwise it sleeps until a
 * committing publisher sets its latch, librdkafka has news, or
 * outbox.poll_interval (or the purge interval) passes.  A reload that
 * changes the producer's settings, or a fatal producer error, stops new
 * reads until nothing is in flight, then the producer is recreated.
 *
 * Errors: an ERROR in a pass is caught, its transaction aborted, the batches
 * in flight abandoned (the producer is destroyed, so no late delivery report
 * can touch reused memory; the rows stay and are produced again), the
 * message recorded in the slot and logged (the same message at most once a
 * minute); then the relay waits a second and goes on.
 *
 * Memory: relay_cxt lives as long as the worker; each of the two batches has
 * a context, reset when the batch is read into again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <setjmp.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "horizon.h"
#include "inbox.h"
#include "kafka.h"
#include "outbox.h"
#include "shmem.h"
#include "status.h"

#define RELAY_ERROR_PAUSE_MS	1000
#define RELAY_ERROR_REPEAT_MS	60000

/* Batches in flight at most: one waiting for reports while the next is read */
#define RELAY_PIPELINE 2

typedef struct RelayBatch RelayBatch;

/* One event of a batch being relayed */
typedef struct RelayEvent
{
	int64		id;
	OutboxMessage msg;
	bool		done;			/* delivery report served (or immediate error) */
	rd_kafka_resp_err_t err;
	RelayBatch *batch;
} RelayEvent;

struct RelayBatch
{
	MemoryContext cxt;			/* holds the events, reset when reused */
	RelayEvent *events;
	int			n;
	int			outstanding;	/* produced, delivery report not yet served */
	int64		from;			/* the read started above this id */
	int64		final;			/* ids up to this were final at the read */
};

static OutboxSlot *relay_slot = NULL;
static OutboxProducer *relay_producer = NULL;
static char *relay_config_signature = NULL;
static char *relay_dbname = NULL;
static char *relay_label = NULL;
static char *relay_default_source = NULL;
static MemoryContext relay_cxt = NULL;
static RelayBatch batches[RELAY_PIPELINE];
static RelayBatch *flight[RELAY_PIPELINE];	/* in flight, oldest first */
static int	nflight = 0;
static bool relay_reload_pending = false;
static bool relay_paused = false;
static bool relay_stats_dirty = true;
static SPIPlanPtr read_plan = NULL;
static SPIPlanPtr delete_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr last_id_plan = NULL;
static SPIPlanPtr retry_floor_plan = NULL;

/*
 * Where reads start (see "Reading past delivered ids" above): every row with
 * an id up to relay_cursor has been handled and none can still appear.
 * relay_retry_floor is the lowest id waiting for a retry (PG_INT64_MAX:
 * none; -1: not known).
 */
static int64 relay_cursor = 0;
static int64 relay_retry_floor = -1;
static TimestampTz relay_rescanned_at = 0;

static const char *const read_sql =
"SELECT e.id, e.event_id, e.topic, e.key, e.payload, e.headers,"
"       e.event_type, e.source, e.traceparent, e.content_type, e.created_at"
"  FROM outbox.events e"
" WHERE e.id > $2"
"   AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= pg_catalog.now())"
"   AND NOT EXISTS (SELECT 1 FROM outbox.events b"
"                    WHERE b.attempts > 0 AND b.topic = e.topic AND b.key = e.key"
"                      AND b.id < e.id AND b.next_attempt_at > pg_catalog.now())"
" ORDER BY e.id LIMIT $1";

static const char *const delete_sql =
"DELETE FROM outbox.events WHERE id = ANY ($1)";

/* the last id outbox.events_id_seq handed out */
static const char *const last_id_sql =
"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END"
"  FROM outbox.events_id_seq";

/* the lowest id waiting for a retry, through the partial index on them */
static const char *const retry_floor_sql =
"SELECT pg_catalog.min(id) FROM outbox.events WHERE attempts > 0";

/*
 * $1 ids, $2 error names, $3 error texts, $4 permanent flags,
 * $5 max attempts, $6 backoff min ms, $7 backoff max ms.
 * Returns (dead-lettered, retried).
 */
static const char *const fail_sql =
"WITH f AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
"                                     pg_catalog.unnest($2::pg_catalog.text[]),"
"                                     pg_catalog.unnest($3::pg_catalog.text[]),"
"                                     pg_catalog.unnest($4::pg_catalog.bool[]))"
"                   AS f(id, code, message, permanent)),"
" dead AS (DELETE FROM outbox.events e USING f"
"           WHERE e.id = f.id AND (f.permanent OR e.attempts + 1 >= $5)"
"          RETURNING e.event_id, e.topic, e.key, e.payload, e.headers, e.event_type,"
"                    e.source, e.traceparent, e.content_type, e.created_at,"
"                    e.attempts + 1 AS attempts, f.code, f.message),"
" moved AS (INSERT INTO outbox.dead_letters (event_id, topic, key, payload, headers,"
"                  event_type, source, traceparent, content_type, created_at,"
"                  attempts, error_code, error)"
"           SELECT * FROM dead RETURNING 1),"
" retried AS (UPDATE outbox.events e"
"                SET attempts = e.attempts + 1,"
"                    last_error = f.code || ': ' || f.message,"
"                    next_attempt_at = pg_catalog.now() + pg_catalog.make_interval(secs =>"
"                        LEAST($6::pg_catalog.float8 * pg_catalog.power(2, e.attempts),"
"                              $7::pg_catalog.float8)"
"                        * (0.5 + pg_catalog.random() * 0.5) / 1000)"
"               FROM f"
"              WHERE e.id = f.id AND NOT (f.permanent OR e.attempts + 1 >= $5)"
"             RETURNING 1)"
"SELECT (SELECT pg_catalog.count(*) FROM moved), (SELECT pg_catalog.count(*) FROM retried)";

/*
 * Leave the slot when the worker exits, whatever the reason.
 */
static void
relay_detach(int code, Datum arg)
{
	if (relay_slot == NULL)
		return;
	outbox_slot_set_state(relay_slot, OUTBOX_RELAY_STOPPED);
	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	relay_slot->pid = 0;
	relay_slot->latch = NULL;
	LWLockRelease(outbox_shared->lock);
}

/*
 * Take the slot the launcher assigned to this database.
 */
static void
relay_attach(int slotno, Oid dboid)
{
	OutboxSlot *slot;

	if (slotno < 0 || slotno >= outbox_shared->nslots)
		elog(FATAL, "outbox relay started with invalid slot %d", slotno);
	slot = &outbox_shared->slots[slotno];

	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	if (slot->dboid != dboid || slot->pid != 0)
	{
		LWLockRelease(outbox_shared->lock);
		ereport(LOG,
				(errmsg("outbox relay for database with OID %u: slot %d is no longer ours, exiting",
						dboid, slotno)));
		proc_exit(0);
	}
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	LWLockRelease(outbox_shared->lock);

	relay_slot = slot;
	before_shmem_exit(relay_detach, (Datum) 0);
	outbox_slot_set_state(slot, OUTBOX_RELAY_STARTING);
}

/*
 * Exit for good when the extension is absent (never created, or dropped):
 * the launcher starts a relay again when CREATE EXTENSION commits.
 */
static void
relay_exit_without_extension(void)
{
	LWLockAcquire(outbox_shared->lock, LW_EXCLUSIVE);
	relay_slot->no_extension = true;
	LWLockRelease(outbox_shared->lock);
	ereport(DEBUG1,
			(errmsg("%s: extension outbox is not installed, exiting", relay_label)));
	proc_exit(0);
}

/*
 * Delivery report: runs inside outbox_kafka_serve(), in this thread.
 */
static void
relay_on_delivery(void *opaque, rd_kafka_resp_err_t err, void *arg)
{
	RelayEvent *ev = (RelayEvent *) opaque;

	ev->err = err;
	ev->done = true;
	ev->batch->outstanding--;
}

/*
 * Create the producer from the current settings.
 */
static void
relay_connect_kafka(void)
{
	char	   *client_id = psprintf("outbox-%s", relay_dbname);

	relay_producer = outbox_kafka_create(client_id, relay_label,
										 relay_on_delivery, NULL);
	pfree(client_id);
}

/*
 * Create the producer, or recreate it when its configuration changed at a
 * reload (reloaded is true after one) or after a fatal producer error.  Only
 * called with no batch in flight.
 */
static void
relay_refresh_producer(bool reloaded)
{
	MemoryContext old;
	char	   *signature;
	bool		changed;

	if (relay_producer != NULL && !reloaded &&
		!outbox_kafka_failed_fatally(relay_producer))
		return;
	old = MemoryContextSwitchTo(relay_cxt);
	signature = outbox_kafka_config_signature();
	changed = relay_config_signature == NULL ||
		strcmp(signature, relay_config_signature) != 0;
	MemoryContextSwitchTo(old);
	if (relay_producer != NULL &&
		!changed && !outbox_kafka_failed_fatally(relay_producer))
	{
		pfree(signature);
		return;
	}
	if (relay_producer != NULL)
	{
		ereport(LOG,
				(errmsg("%s: recreating the Kafka producer (%s)", relay_label,
						changed ? "configuration changed" : "fatal producer error")));
		outbox_kafka_destroy(relay_producer);
		relay_producer = NULL;
	}
	if (relay_config_signature)
		pfree(relay_config_signature);
	relay_config_signature = signature;
	relay_connect_kafka();
}

/*
 * ce_time: the event's creation time in RFC 3339, UTC, microseconds.
 */
static char *
relay_rfc3339(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup("1970-01-01T00:00:00Z");
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					tm.tm_year, tm.tm_mon, tm.tm_mday,
					tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

/*
 * A text column of the current SPI row as a C string, or NULL.
 */
static char *
relay_text_col(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/*
 * Add one header to ev's message.
 */
static void
relay_add_header(RelayEvent *ev, const char *name, const char *value, size_t len)
{
	OutboxHeader *h = &ev->msg.headers[ev->msg.nheaders++];

	h->name = name;
	h->value = value;
	h->value_len = len;
}

/*
 * Turn one row of the read query into a Kafka message with CloudEvents
 * binary-mode headers, then the traceparent, then the caller's headers.
 */
static void
relay_build_event(RelayEvent *ev, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	Datum		d;
	char	   *event_type;
	char	   *source;
	char	   *traceparent;
	char	   *content_type;
	Jsonb	   *headers = NULL;
	int			nuser = 0;

	ev->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	ev->msg.topic = relay_text_col(tup, desc, 3);

	d = SPI_getbinval(tup, desc, 4, &isnull);
	if (!isnull)
	{
		text	   *key = DatumGetTextPP(d);

		ev->msg.key_len = VARSIZE_ANY_EXHDR(key);
		ev->msg.key = pnstrdup(VARDATA_ANY(key), ev->msg.key_len);
	}
	d = SPI_getbinval(tup, desc, 5, &isnull);
	if (!isnull)
	{
		bytea	   *value = DatumGetByteaPP(d);

		/*
		 * A toasted payload was just detoasted into the batch: use it where
		 * it is.  An inline one points into the SPI result, which goes at
		 * SPI_finish(): copy it.
		 */
		if ((Pointer) value == DatumGetPointer(d))
		{
			bytea	   *copy = palloc(VARSIZE_ANY(value));

			memcpy(copy, value, VARSIZE_ANY(value));
			value = copy;
		}
		ev->msg.value_len = VARSIZE_ANY_EXHDR(value);
		ev->msg.value = VARDATA_ANY(value);
	}
	d = SPI_getbinval(tup, desc, 6, &isnull);
	if (!isnull)
	{
		headers = DatumGetJsonbP(d);
		nuser = JsonContainerSize(&headers->root);
	}
	event_type = relay_text_col(tup, desc, 7);
	source = relay_text_col(tup, desc, 8);
	traceparent = relay_text_col(tup, desc, 9);
	content_type = relay_text_col(tup, desc, 10);

	ev->msg.headers = palloc(sizeof(OutboxHeader) * (7 + nuser));
	relay_add_header(ev, "ce_specversion", "1.0", 3);
	{
		char	   *id = DatumGetCString(DirectFunctionCall1(uuid_out,
															 SPI_getbinval(tup, desc, 2, &isnull)));

		relay_add_header(ev, "ce_id", id, strlen(id));
	}
	source = source ? source : relay_default_source;
	relay_add_header(ev, "ce_source", source, strlen(source));
	event_type = event_type ? event_type : unconstify(char *, ev->msg.topic);
	relay_add_header(ev, "ce_type", event_type, strlen(event_type));
	{
		char	   *time = relay_rfc3339(DatumGetTimestampTz(SPI_getbinval(tup, desc, 11, &isnull)));

		relay_add_header(ev, "ce_time", time, strlen(time));
	}
	relay_add_header(ev, "content-type", content_type, strlen(content_type));
	if (traceparent)
		relay_add_header(ev, "traceparent", traceparent, strlen(traceparent));

	if (headers != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&headers->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		char	   *name = NULL;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				name = pnstrdup(v.val.string.val, v.val.string.len);
			else if (tok == WJB_VALUE && v.type == jbvString)
				relay_add_header(ev, name,
								 pnstrdup(v.val.string.val, v.val.string.len),
								 v.val.string.len);
		}
	}
}

/*
 * What one message weighs against outbox.batch_max_bytes.
 */
static Size
relay_event_bytes(const RelayEvent *ev)
{
	Size		bytes = ev->msg.value_len + ev->msg.key_len;
	int			i;

	for (i = 0; i < ev->msg.nheaders; i++)
		bytes += strlen(ev->msg.headers[i].name) + ev->msg.headers[i].value_len;
	return bytes;
}

/*
 * Prepare and keep a plan, once per worker.
 */
static SPIPlanPtr
relay_prepare(const char *sql, int nargs, Oid *argtypes)
{
	/*
	 * Custom plans only: a generic plan made while outbox.events was nearly
	 * empty would scan the whole backlog for every batch later.
	 */
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, CURSOR_OPT_CUSTOM_PLAN);

	if (plan == NULL)
		elog(ERROR, "outbox relay: SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "outbox relay: SPI_keepplan failed");
	return plan;
}

/*
 * Run a kept single-value bigint query; NULL gives -1.  Not read-only, so
 * that it sees what this transaction changed before.
 */
static int64
relay_query_int8(SPIPlanPtr *plan, const char *sql)
{
	bool		isnull;
	Datum		d;

	if (*plan == NULL)
		*plan = relay_prepare(sql, 0, NULL);
	if (SPI_execute_plan(*plan, NULL, NULL, false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "outbox relay: query failed: %s", sql);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? -1 : DatumGetInt64(d);
}

/*
 * Start a transaction with SPI and a snapshot, as worker_spi does; exits the
 * worker when the extension is gone.
 */
static void
relay_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "outbox relay: SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);

	if (!OidIsValid(get_extension_oid("outbox", true)))
	{
		SPI_finish();
		PopActiveSnapshot();
		AbortCurrentTransaction();
		relay_exit_without_extension();
	}
}

static void
relay_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	/* table statistics, so autovacuum learns of the rows the relay deleted */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Step 1: read up to outbox.batch_size due events with ids above from, and
 * at most about outbox.batch_max_bytes of them, into b.
 */
static void
relay_read_batch(RelayBatch *b, int64 from)
{
	Datum		args[2];
	MemoryContext old;
	uint64		i;
	Size		bytes = 0;
	int			ret;

	MemoryContextReset(b->cxt);
	b->n = 0;
	b->outstanding = 0;
	b->from = from;

	relay_begin("reading outbox.events");
	relay_paused = outbox_status_paused();
	if (relay_paused)
	{
		relay_end();
		return;
	}
	if (outbox_horizon_mark_wanted())
		outbox_horizon_mark(MyDatabaseId, relay_query_int8(&last_id_plan, last_id_sql));

	/*
	 * What is final now (a mark taken just above is final at once when no
	 * publisher was in the middle of a transaction), then a new snapshot for
	 * the read, so that every row up to that id is in it.
	 */
	b->final = outbox_horizon_final();
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (read_plan == NULL)
	{
		Oid			argtypes[2] = {INT4OID, INT8OID};

		read_plan = relay_prepare(read_sql, 2, argtypes);
	}
	args[0] = Int32GetDatum(outbox_batch_size);
	args[1] = Int64GetDatum(from);
	ret = SPI_execute_plan(read_plan, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "outbox relay: reading outbox.events failed: %s",
			 SPI_result_code_string(ret));

	/*
	 * Build messages until outbox.batch_max_bytes is reached; the rows read
	 * past that are left for the next pass.  The SPI result holds large
	 * payloads as TOAST pointers, so only what is built takes memory.
	 */
	old = MemoryContextSwitchTo(b->cxt);
	b->events = palloc0(sizeof(RelayEvent) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed && bytes < (Size) outbox_batch_max_bytes; i++)
	{
		RelayEvent *ev = &b->events[b->n++];

		ev->batch = b;
		relay_build_event(ev, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
		bytes += relay_event_bytes(ev);
	}
	MemoryContextSwitchTo(old);
	relay_end();
}

/*
 * Step 3: produce b, and send it at once.
 */
static void
relay_produce_batch(RelayBatch *b)
{
	int			i;

	pgstat_report_activity(STATE_RUNNING, "producing to Kafka");
	for (i = 0; i < b->n; i++)
	{
		RelayEvent *ev = &b->events[i];
		rd_kafka_resp_err_t err = outbox_kafka_produce(relay_producer, &ev->msg, ev);

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			b->outstanding++;
		else
		{
			ev->err = err;
			ev->done = true;
		}
	}
	outbox_kafka_send_now(relay_producer);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Step 4: serve delivery reports until each message of b has its outcome.
 * Interrupts are served while waiting; a latch set by a committing
 * publisher is not lost, since the relay reads again right after a
 * non-empty batch.
 */
static void
relay_wait_batch(RelayBatch *b)
{
	pgstat_report_activity(STATE_RUNNING, "waiting for Kafka");
	while (b->outstanding > 0)
	{
		int			rc;

		outbox_kafka_serve(relay_producer);
		if (b->outstanding == 0)
			break;
		outbox_slot_set_brokers_up(relay_slot, outbox_kafka_brokers_up(relay_producer));
		outbox_slot_set_state(relay_slot, outbox_kafka_brokers_up(relay_producer) ?
							  OUTBOX_RELAY_RUNNING : OUTBOX_RELAY_WAITING_FOR_BROKERS);
		rc = WaitLatchOrSocket(MyLatch,
							   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   outbox_kafka_event_fd(relay_producer), 1000,
							   outbox_wait_event(OUTBOX_WAIT_RELAY_DELIVERY));
		if (rc & WL_LATCH_SET)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Step 5: delete what Kafka acknowledged; retry or dead-letter the rest.
 */
static void
relay_record_outcome(RelayBatch *b)
{
	Datum	   *ok_ids = MemoryContextAlloc(b->cxt, sizeof(Datum) * b->n);
	Datum	   *bad_ids = MemoryContextAlloc(b->cxt, sizeof(Datum) * b->n);
	Datum	   *codes = MemoryContextAlloc(b->cxt, sizeof(Datum) * b->n);
	Datum	   *messages = MemoryContextAlloc(b->cxt, sizeof(Datum) * b->n);
	Datum	   *permanent = MemoryContextAlloc(b->cxt, sizeof(Datum) * b->n);
	int			nok = 0;
	int			nbad = 0;
	uint64		dead = 0;
	int			i;

	for (i = 0; i < b->n; i++)
	{
		RelayEvent *ev = &b->events[i];

		if (ev->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			ok_ids[nok++] = Int64GetDatum(ev->id);
		else
		{
			bad_ids[nbad] = Int64GetDatum(ev->id);
			codes[nbad] = CStringGetTextDatum(rd_kafka_err2name(ev->err));
			messages[nbad] = CStringGetTextDatum(rd_kafka_err2str(ev->err));
			permanent[nbad] = BoolGetDatum(outbox_kafka_error_is_permanent(ev->err));
			nbad++;
		}
	}

	relay_begin("recording deliveries");
	if (nok > 0)
	{
		Datum		arg = PointerGetDatum(construct_array(ok_ids, nok, INT8OID, 8, true, TYPALIGN_DOUBLE));
		int			ret;

		if (delete_plan == NULL)
		{
			Oid			argtypes[1] = {INT8ARRAYOID};

			delete_plan = relay_prepare(delete_sql, 1, argtypes);
		}
		ret = SPI_execute_plan(delete_plan, &arg, NULL, false, 0);
		if (ret != SPI_OK_DELETE)
			elog(ERROR, "outbox relay: deleting delivered events failed: %s",
				 SPI_result_code_string(ret));
	}
	if (nbad > 0)
	{
		Datum		args[7];
		bool		isnull;
		int			ret;

		if (fail_plan == NULL)
		{
			Oid			argtypes[7] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
			BOOLARRAYOID, INT4OID, INT4OID, INT4OID};

			fail_plan = relay_prepare(fail_sql, 7, argtypes);
		}
		args[0] = PointerGetDatum(construct_array(bad_ids, nbad, INT8OID, 8, true, TYPALIGN_DOUBLE));
		args[1] = PointerGetDatum(construct_array(codes, nbad, TEXTOID, -1, false, TYPALIGN_INT));
		args[2] = PointerGetDatum(construct_array(messages, nbad, TEXTOID, -1, false, TYPALIGN_INT));
		args[3] = PointerGetDatum(construct_array(permanent, nbad, BOOLOID, 1, true, TYPALIGN_CHAR));
		args[4] = Int32GetDatum(outbox_max_attempts);
		args[5] = Int32GetDatum(outbox_retry_backoff_min);
		args[6] = Int32GetDatum(outbox_retry_backoff_max);
		ret = SPI_execute_plan(fail_plan, args, NULL, false, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "outbox relay: recording failed deliveries failed: %s",
				 SPI_result_code_string(ret));
		dead = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
		outbox_slot_record_error(relay_slot,
								 psprintf("%s: %s",
										  TextDatumGetCString(codes[0]),
										  TextDatumGetCString(messages[0])));
	}
	/* retries are rare: look for them only when some may exist */
	if (nbad > 0 || relay_retry_floor != PG_INT64_MAX)
	{
		int64		floor = relay_query_int8(&retry_floor_plan, retry_floor_sql);

		relay_retry_floor = floor < 0 ? PG_INT64_MAX : floor;
	}
	relay_end();
	outbox_slot_count(relay_slot, nok, nbad, dead, 0);
}

/*
 * The end of the WAL inserted so far, a position XLogFlush() accepts.
 * GetXLogInsertRecPtr() gives the next insert position, which at a page
 * boundary lies past the header of a page not written yet; step back over
 * that header (PostgreSQL 17 has GetXLogInsertEndRecPtr() for this).
 */
static XLogRecPtr
relay_wal_end(void)
{
#if PG_VERSION_NUM >= 170000
	return GetXLogInsertEndRecPtr();
#else
	XLogRecPtr	ptr = GetXLogInsertRecPtr();

	if (XLogSegmentOffset(ptr, wal_segment_size) == SizeOfXLogLongPHD)
		ptr -= SizeOfXLogLongPHD;
	else if (ptr % XLOG_BLCKSZ == SizeOfXLogShortPHD)
		ptr -= SizeOfXLogShortPHD;
	return ptr;
#endif
}

/*
 * The next batch to read into: one not in flight.
 */
static RelayBatch *
relay_free_batch(void)
{
	return (nflight > 0 && flight[0] == &batches[0]) ? &batches[1] : &batches[0];
}

/*
 * May the next batch be read while newest is in flight, starting past its
 * last id?  Not while retries are pending (a retry that comes due must be
 * read before later events of its key, and it lies below), and not when
 * newest's ids were not all final at its read: a row below its last id may
 * still commit, and only a read from the cursor finds it, so the cursor must
 * catch up first instead of lagging behind a pipeline that never empties.
 */
static bool
relay_pipeline_ok(RelayBatch *newest)
{
	return relay_retry_floor == PG_INT64_MAX &&
		newest->final >= newest->events[newest->n - 1].id;
}

/*
 * One pass of the pipeline.  First read and produce a new batch, unless the
 * pipeline is full, or held (the producer is to be recreated), or the
 * newest batch in flight forbids it (relay_pipeline_ok).  A batch read
 * while another is in flight starts past that one's last id.  Then, once the pipeline is full
 * or nothing more was read, wait for the oldest batch's reports and record
 * them.  Returns the events read or recorded: non-zero while any batch is
 * in flight.
 */
static int
relay_pass(bool hold)
{
	int			handled = 0;
	bool		found = false;
	TimestampTz now = GetCurrentTimestamp();

	if (nflight == 0 &&
		TimestampDifferenceExceeds(relay_rescanned_at, now, outbox_full_scan_interval))
	{
		relay_cursor = 0;
		relay_rescanned_at = now;
	}
	if (nflight < RELAY_PIPELINE && !hold &&
		(nflight == 0 || relay_pipeline_ok(flight[nflight - 1])))
	{
		RelayBatch *b = relay_free_batch();
		int64		from = relay_cursor;

		if (nflight > 0)
		{
			RelayBatch *newest = flight[nflight - 1];

			from = Max(from, newest->events[newest->n - 1].id);
		}
		relay_read_batch(b, from);
		if (b->n > 0)
		{
			/* no phantom events: what we read must be durable before Kafka has it */
			XLogFlush(relay_wal_end());
			relay_produce_batch(b);
			flight[nflight++] = b;
			found = true;
			handled += b->n;
		}
	}
	if (nflight > 0 && (nflight == RELAY_PIPELINE || !found))
	{
		RelayBatch *b = flight[0];

		relay_wait_batch(b);
		relay_record_outcome(b);

		/*
		 * A batch read from the cursor holds every due row from there up to
		 * its last id that was final when it was read.
		 */
		if (b->from <= relay_cursor)
			relay_cursor = Max(relay_cursor,
							   Min(Min(b->events[b->n - 1].id, b->final),
								   relay_retry_floor - 1));
		flight[0] = flight[1];
		nflight--;
		handled += b->n;
	}
	return handled;
}

/*
 * Delete expired inbox rows, one transaction per batch, so no lock is held
 * long and vacuum can follow, until a batch comes back short.
 */
static void
relay_purge_inbox(void)
{
	TimestampTz from = DT_NOBEGIN;
	uint64		total = 0;
	uint64		n;

	do
	{
		CHECK_FOR_INTERRUPTS();
		relay_begin("purging expired inbox rows");
		n = outbox_inbox_purge_batch(&from);
		relay_end();
		total += n;
	} while (n == (uint64) outbox_purge_batch_size);
	outbox_slot_count(relay_slot, 0, 0, 0, total);
}

/*
 * Publish the relay's state, and its backlog figures: at most once a second
 * whenever it wakes, and once more when it goes idle, so outbox.stats never
 * shows a backlog that is gone.
 */
static void
relay_update_status(int handled)
{
	bool		brokers_up = outbox_kafka_brokers_up(relay_producer);

	if (handled > 0)
		relay_stats_dirty = true;
	if (outbox_status_refresh_due() || (relay_stats_dirty && handled == 0))
	{
		relay_begin("refreshing statistics");
		outbox_status_refresh(relay_slot, relay_cursor);
		relay_end();
		relay_stats_dirty = (handled > 0);
	}
	outbox_slot_set_brokers_up(relay_slot, brokers_up);
	outbox_slot_set_state(relay_slot, relay_paused ? OUTBOX_RELAY_PAUSED :
						  brokers_up ? OUTBOX_RELAY_RUNNING :
						  OUTBOX_RELAY_WAITING_FOR_BROKERS);
}

/*
 * After an ERROR with messages in flight, drop the producer so that no late
 * delivery report writes into a batch that is about to be reused.  The rows
 * are still in outbox.events and will be produced again.
 */
static void
relay_abandon_batches(void)
{
	int			i;

	for (i = 0; i < nflight; i++)
	{
		if (flight[i]->outstanding > 0 && relay_producer != NULL)
		{
			outbox_kafka_destroy(relay_producer);
			relay_producer = NULL;
		}
	}
	nflight = 0;
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
	int			slotno;
	int			i;
	sigjmp_buf	local_sigjmp_buf;

	memcpy(&slotno, MyBgworkerEntry->bgw_extra, sizeof(int));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	relay_attach(slotno, dboid);
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	/* nothing the relay runs may resolve through a user's schema */
	SetConfigOption("search_path", "pg_catalog", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * The relay's own commits (deleting delivered rows, recording failures)
	 * do not wait for the WAL flush.  One lost in a crash only means its
	 * events are delivered again, and the flush before the next batch is
	 * produced (relay_pass) covers it, so a crash repeats no more than the
	 * batches in flight.  The events themselves were committed by their
	 * publishers.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	relay_cxt = AllocSetContextCreate(TopMemoryContext, "outbox relay",
									  ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < RELAY_PIPELINE; i++)
		batches[i].cxt = AllocSetContextCreate(relay_cxt, "outbox relay batch",
											   ALLOCSET_DEFAULT_SIZES);

	StartTransactionCommand();
	relay_dbname = MemoryContextStrdup(relay_cxt, get_database_name(dboid));
	CommitTransactionCommand();
	relay_label = MemoryContextStrdup(relay_cxt,
									  psprintf("outbox relay for database \"%s\"", relay_dbname));
	relay_default_source = MemoryContextStrdup(relay_cxt,
											   psprintf("/outbox/%s", relay_dbname));
	pgstat_report_appname("outbox relay");

	relay_begin("checking for the outbox extension");
	relay_end();
	ereport(LOG, (errmsg("%s started", relay_label)));

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		/* an ERROR escaped a pass: clean up, record, pause, go on */
		error_context_stack = NULL;
		HOLD_INTERRUPTS();
		relay_report_error();
		AbortCurrentTransaction();
		relay_abandon_batches();
		relay_cursor = 0;
		relay_retry_floor = -1;
		MemoryContextSwitchTo(TopMemoryContext);
		FlushErrorState();
		RESUME_INTERRUPTS();
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 RELAY_ERROR_PAUSE_MS, outbox_wait_event(OUTBOX_WAIT_RELAY_IDLE));
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		int			handled;
		bool		hold;
		ErrorContextCallback errcallback;

		errcallback.callback = relay_error_context;
		errcallback.arg = NULL;
		errcallback.previous = NULL;
		error_context_stack = &errcallback;

		CHECK_FOR_INTERRUPTS();
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
		if (nflight == 0)
		{
			relay_refresh_producer(relay_reload_pending);
			relay_reload_pending = false;
		}
		hold = relay_reload_pending || outbox_kafka_failed_fatally(relay_producer);

		handled = relay_pass(hold);
		if (outbox_inbox_purge_due())
			relay_purge_inbox();
		relay_update_status(handled);
		if (handled > 0)
			continue;

		/*
		 * Going idle: make the relay's own deletes durable now, so that the
		 * flush before the next batch (relay_pass) has nothing of ours to wait
		 * for when the next event comes.
		 */
		XLogFlush(relay_wal_end());
		pgstat_report_stat(true);
		(void) WaitLatchOrSocket(MyLatch,
								 WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 outbox_kafka_event_fd(relay_producer),
								 Min(outbox_poll_interval, outbox_purge_interval),
								 outbox_wait_event(OUTBOX_WAIT_RELAY_IDLE));
		ResetLatch(MyLatch);
		outbox_kafka_serve(relay_producer);
	}
}
