/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  The relay's pipeline: batches of outbox.events move through
 *	  read -> produce -> delivery reports -> record.
 *
 * Each batch:
 *	1. unless outbox.paused has a row, is read in id order in its own short
 *	   transaction, skipping events not yet due for a retry and every later
 *	   event of a (topic, key) that has an earlier event waiting for a retry;
 *	2. WAL is flushed up to the commit records of the transactions that
 *	   wrote what was read, so Kafka never holds an event whose commit a
 *	   crash could still lose (synchronous_commit off), and nothing else:
 *	   the relay never waits for other transactions' WAL;
 *	3. it is produced;
 *	4. its delivery reports are served as they come (outbox_kafka_serve, in
 *	   the relay's own thread);
 *	5. once every message has its report, a second transaction deletes the
 *	   delivered rows (and queues the NOTIFY of outbox.notify_channel for
 *	   them, sent when it commits: notify.c), and for failed ones counts the
 *	   attempt and sets the next attempt time (exponential backoff with
 *	   jitter), or moves them to outbox.dead_letters after
 *	   outbox.max_attempts or at once on a permanent error (from where
 *	   forward.c produces them to their dead-letter topic).
 * No transaction is open while messages travel.  A pass never blocks: it
 * does what can be done now and says whether it made progress, is waiting
 * for Kafka, or is idle; relay.c waits on its latch and librdkafka's queue
 * pipe in between.
 *
 * Two batches can be in flight.  While Kafka acknowledges one, the next is
 * read (past the first one's last id) and produced, and the first one's
 * outcome is recorded while the second travels.  The price: after a crash up
 * to two batches are produced again, and if an event fails while the next
 * batch is already produced, later events of its key in that batch are in
 * Kafka before it.
 *
 * Reading: while no event waits for a retry (the retry floor, below, is
 * known to be none) every row is due, and a read is a scan of the primary
 * key from the cursor, without the planner (scan.c); otherwise it is
 * read_sql, whose rules need the planner.
 *
 * The ordering rule (a later event of a key never overtakes an earlier one
 * waiting for a retry) is kept by three things together: the read skips
 * every event that has an earlier event of its key waiting (read_sql); the
 * cursor never passes the lowest id waiting for a retry (the retry floor),
 * so those skipped rows are read again; and while retries are pending the
 * batches go one at a time (pipeline_may_overlap), so a retry that comes due
 * is read before any later event of its key is produced.
 *
 * Reading past delivered ids: a read starts above the cursor, not at the
 * lowest id, so it does not walk over the dead index entries and tuples of
 * rows already delivered (which pile up while vacuum is held back).  After a
 * batch read from the cursor is recorded, the cursor moves to its last id,
 * but never past what horizon.c said was final at the read (a lower id may
 * still commit) nor below the retry floor.  Every outbox.full_scan_interval,
 * and after an error, the cursor goes back to 0, so a row inserted some way
 * horizon.c does not see is found all the same.
 *
 * After an ERROR (caught by relay.c) the batches in flight are kept, not
 * abandoned: their messages are with librdkafka and their reports still
 * come, and a batch whose outcome could not be recorded is recorded again
 * by the next pass instead of being produced again.  So an error in the
 * relay's own transactions never makes it produce an event twice.
 *
 * Memory: each of the two batches has a context, reset only when the batch
 * is read into again, which is never while it is in flight.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/lwlock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "events.h"
#include "forward.h"
#include "horizon.h"
#include "message.h"
#include "notify.h"
#include "outbox.h"
#include "pipeline.h"
#include "scan.h"
#include "spiutil.h"
#include "status.h"

#if PG_VERSION_NUM >= 170000
#define OUTBOX_TRANSAM TransamVariables
#else
#define OUTBOX_TRANSAM ShmemVariableCache
#endif

/* Batches in flight at most: one waiting for reports while the next is read */
#define PIPELINE_DEPTH 2

typedef struct RelayBatch RelayBatch;

/* One event of a batch */
typedef struct RelayEvent
{
	OutboxDelivery delivery;	/* first: the report finds the event by it */
	int64		id;
	OutboxMessage msg;
	rd_kafka_resp_err_t err;	/* NO_ERROR only once Kafka acknowledged it */
	bool		maybe_persisted;	/* failed, but a broker may have it */
	int32		partition;		/* where Kafka wrote it, from the report */
	int64		offset;
	RelayBatch *batch;
} RelayEvent;

struct RelayBatch
{
	MemoryContext cxt;			/* holds the events, reset when reused */
	RelayEvent *events;
	int			n;
	int			size;			/* events allocated */
	Size		bytes;			/* of the messages built */
	TransactionId last_xmin;	/* of the last row added */
	int			outstanding;	/* produced, delivery report not yet served */
	int64		from;			/* the read started above this id */
	int64		final;			/* ids up to this were final at the read */
	XLogRecPtr	commit_lsn;		/* flush this before producing */
};

static RelayBatch batches[PIPELINE_DEPTH];
static RelayBatch *flight[PIPELINE_DEPTH];	/* in flight, oldest first */
static int	nflight = 0;

static OutboxSlot *pipeline_slot = NULL;
static const char *pipeline_default_source = NULL;

/* a read may find something: cleared by an empty read, set by news */
static bool read_wanted = true;
static bool paused = false;

/*
 * Where reads start: every row with an id up to cursor has been handled and
 * none can still appear.  retry_floor is the lowest id waiting for a retry
 * (PG_INT64_MAX: none; -1: not known).
 */
static int64 cursor = 0;
static int64 retry_floor = -1;
static TimestampTz rescanned_at = 0;

static SPIPlanPtr read_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr fail_dlq_plan = NULL;
static SPIPlanPtr retry_floor_plan = NULL;

/* the message's columns, then the xid that inserted the row */
#define READ_COL_XMIN MSG_NCOLUMNS
static const char *const read_sql =
"SELECT " OUTBOX_MESSAGE_COLUMNS ", e.xmin"
"  FROM outbox.events e"
" WHERE e.id > $2"
"   AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= pg_catalog.now())"
"   AND NOT EXISTS (SELECT 1 FROM outbox.events b"
"                    WHERE b.attempts > 0 AND b.topic = e.topic AND b.key = e.key"
"                      AND b.id < e.id AND b.next_attempt_at > pg_catalog.now())"
" ORDER BY e.id LIMIT $1";

/* the lowest id waiting for a retry, through the partial index on them */
static const char *const retry_floor_sql =
"SELECT pg_catalog.min(id) FROM outbox.events WHERE attempts > 0";

/*
 * $1 ids, $2 error names, $3 error texts, $4 permanent flags,
 * $5 max attempts, $6 backoff min ms, $7 backoff max ms, $8 the dead-letter
 * topic suffix.  Returns (dead-lettered, retried).  A database at 1.2 or
 * later also records where each dead letter is forwarded to (fail_sql_dlq,
 * given to FAIL_SQL): nowhere when the suffix is empty, and nowhere again
 * for a replayed dead letter that was forwarded before.
 */
#define FAIL_SQL(dead_columns, dead_values) \
"WITH f AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"\
"                                     pg_catalog.unnest($2::pg_catalog.text[]),"\
"                                     pg_catalog.unnest($3::pg_catalog.text[]),"\
"                                     pg_catalog.unnest($4::pg_catalog.bool[]))"\
"                   AS f(id, code, message, permanent)),"\
" dead AS (DELETE FROM outbox.events e USING f"\
"           WHERE e.id = f.id AND (f.permanent OR e.attempts + 1 >= $5)"\
"          RETURNING e.event_id, e.topic, e.key, e.payload, e.headers, e.event_type,"\
"                    e.source, e.traceparent, e.content_type, e.created_at,"\
"                    e.attempts + 1 AS attempts, f.code, f.message" dead_values "),"\
" moved AS (INSERT INTO outbox.dead_letters (event_id, topic, key, payload, headers,"\
"                  event_type, source, traceparent, content_type, created_at,"\
"                  attempts, error_code, error" dead_columns ")"\
"           SELECT * FROM dead RETURNING 1),"\
" retried AS (UPDATE outbox.events e"\
"                SET attempts = e.attempts + 1,"\
"                    last_error = f.code || ': ' || f.message,"\
"                    next_attempt_at = pg_catalog.now() + "\
                         OUTBOX_BACKOFF_SQL("e.attempts", "$6", "$7")\
"               FROM f"\
"              WHERE e.id = f.id AND NOT (f.permanent OR e.attempts + 1 >= $5)"\
"             RETURNING 1)"\
"SELECT (SELECT pg_catalog.count(*) FROM moved), (SELECT pg_catalog.count(*) FROM retried)"

static const char *const fail_sql = FAIL_SQL("", "");
static const char *const fail_sql_dlq =
FAIL_SQL(", forward_topic, forwarded_at",
		 ", CASE WHEN $8 <> '' THEN e.topic || $8 END, e.forwarded_at");

/*
 * Set up the batches' memory under parent; slot gets the counters.
 */
void
outbox_pipeline_init(MemoryContext parent, OutboxSlot *slot,
					 const char *default_source)
{
	int			i;

	for (i = 0; i < PIPELINE_DEPTH; i++)
		batches[i].cxt = AllocSetContextCreate(parent, "outbox relay batch",
											   ALLOCSET_DEFAULT_SIZES);
	pipeline_slot = slot;
	pipeline_default_source = MemoryContextStrdup(parent, default_source);
}

/*
 * Delivery report: runs inside outbox_kafka_serve(), in this thread.
 */
static void
pipeline_on_delivery(OutboxDelivery *delivery, rd_kafka_resp_err_t err,
					 bool maybe_persisted, int32 partition, int64 offset)
{
	RelayEvent *ev = (RelayEvent *) delivery;

	Assert(ev->batch->outstanding > 0);
	ev->err = err;
	ev->maybe_persisted = maybe_persisted;
	ev->partition = partition;
	ev->offset = offset;
	ev->batch->outstanding--;
}

/*
 * The WAL a batch needs on disk before Kafka may have it: the commit records
 * of the transactions that inserted its rows.  TransactionIdGetCommitLSN()
 * gives, for an asynchronous commit, a position at or past its commit
 * record (the commit log keeps one per group of transactions, which the
 * hint-bit code relies on the same way), and nothing newer than what a
 * synchronous commit flushed before it became visible.  So a batch of rows
 * whose publishers committed synchronously flushes nothing, and the relay
 * never waits for the WAL of unrelated transactions, whatever the load.
 * Rows written by any means are covered, not only by publish().
 */
static XLogRecPtr
pipeline_commit_lsn(TransactionId xmin)
{
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	if (!TransactionIdIsNormal(xmin))
		return InvalidXLogRecPtr;

	/*
	 * A frozen row read through SQL shows its raw xmin, which may be older
	 * than what the commit log still keeps; such a commit is long durable.
	 * The lock keeps the commit log from being truncated meanwhile (as
	 * pg_xact_status() does).
	 */
	LWLockAcquire(XactTruncationLock, LW_SHARED);
	if (!TransactionIdPrecedes(xmin, OUTBOX_TRANSAM->oldestClogXid))
		lsn = TransactionIdGetCommitLSN(xmin);
	LWLockRelease(XactTruncationLock);
	return lsn;
}

/*
 * Make the relay's own recorded outcomes (deletes and retries, committed
 * without waiting: synchronous_commit is off in the relay) durable.  Called
 * after each produce, so the flush overlaps Kafka's round trip, and what a
 * crash can re-produce stays the two batches in flight: the batch recorded
 * next is in flight now.
 */
static void
pipeline_flush_own(void)
{
	if (!XLogRecPtrIsInvalid(XactLastCommitEnd))
		XLogFlush(XactLastCommitEnd);
}

/*
 * The last id outbox.events_id_seq handed out (0 before the first), for a
 * mark (horizon.c), from pg_sequence_last_value(), which reads the sequence
 * tuple under its buffer lock.  A plain SELECT last_value FROM the sequence
 * does not: nextval() puts the value it pre-logs (up to 32 ahead) into that
 * tuple while it writes its WAL record, so under WAL pressure a SELECT saw
 * ids not handed out yet and the horizon declared them final before their
 * publishers had begun (test/t/010_horizon_stress.pl).
 */
static int64
pipeline_last_id(void)
{
	LOCAL_FCINFO(fcinfo, 1);
	Oid			seqid = get_relname_relid("events_id_seq", get_namespace_oid("outbox", false));
	Datum		last;

	if (!OidIsValid(seqid))
		elog(ERROR, "outbox relay: sequence outbox.events_id_seq does not exist");
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(seqid);
	fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(fcinfo);
	return fcinfo->isnull ? 0 : DatumGetInt64(last);
}

/*
 * The lowest id waiting for a retry, in a unit of work.
 */
static void
pipeline_learn_retry_floor(void)
{
	int64		floor = outbox_query_int8(&retry_floor_plan, retry_floor_sql);

	retry_floor = floor < 0 ? PG_INT64_MAX : floor;
}

/*
 * Append one row to b, building its message in b's memory.
 */
static void
pipeline_add(RelayBatch *b, const Datum *values, const bool *nulls, TransactionId xmin)
{
	RelayEvent *ev;

	if (b->n == b->size)
	{
		b->size = Max(16, b->size * 2);
		b->events = b->events == NULL ? palloc(sizeof(RelayEvent) * b->size) :
			repalloc(b->events, sizeof(RelayEvent) * b->size);
	}
	ev = &b->events[b->n];
	if (b->n == 0 || xmin != b->last_xmin)
		b->commit_lsn = Max(b->commit_lsn, pipeline_commit_lsn(xmin));
	b->last_xmin = xmin;
	ev->delivery.on_delivery = pipeline_on_delivery;
	ev->batch = b;
	ev->id = DatumGetInt64(values[MSG_COL_ID]);
	ev->err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
	ev->maybe_persisted = false;
	Assert(b->n == 0 || ev->id > b->events[b->n - 1].id);
	outbox_message_build(&ev->msg, values, nulls, pipeline_default_source);
	b->bytes += outbox_message_bytes(&ev->msg);
	b->n++;
}

/* b holds as many events as a batch may */
static bool
pipeline_full(RelayBatch *b)
{
	return b->n >= outbox_batch_size || b->bytes >= (Size) outbox_batch_max_bytes;
}

/*
 * The read while no event waits for a retry: the rows above from in id
 * order, straight from the primary key (scan.c).  Every row is due then,
 * unless one for a retry appeared since the retry floor was learned (it can
 * only come from this relay's own recording, so not normally): the batch
 * stops before it, and the retry floor is to be found again, which sends
 * the next reads through read_sql and its rules.
 */
static void
pipeline_read_scan(RelayBatch *b, int64 from)
{
	OutboxEventScan *scan = outbox_scan_begin(from);
	Datum	   *values;
	bool	   *nulls;
	TransactionId xmin;
	MemoryContext old = MemoryContextSwitchTo(b->cxt);

	StaticAssertStmt(MSG_COL_ID == EV_ID - 1 && MSG_COL_CREATED_AT == EV_CREATED_AT - 1,
					 "a message's columns are the first columns of outbox.events");
	while (!pipeline_full(b) && outbox_scan_next(scan, &values, &nulls, &xmin))
	{
		if (DatumGetInt32(values[EV_ATTEMPTS - 1]) != 0 || !nulls[EV_NEXT_ATTEMPT_AT - 1])
		{
			retry_floor = -1;
			break;
		}
		pipeline_add(b, values, nulls, xmin);
	}
	MemoryContextSwitchTo(old);
	outbox_scan_end(scan);
}

/*
 * The read while retries are pending: read_sql, which skips events not yet
 * due and later events of a key that has one waiting.
 */
static void
pipeline_read_sql(RelayBatch *b, int64 from)
{
	Datum		args[2];
	Oid			argtypes[2] = {INT4OID, INT8OID};
	MemoryContext old;
	uint64		i;
	int			ret;

	args[0] = Int32GetDatum(outbox_batch_size);
	args[1] = Int64GetDatum(from);
	ret = SPI_execute_plan(outbox_plan(&read_plan, read_sql, 2, argtypes,
									   CURSOR_OPT_CUSTOM_PLAN),
						   args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "outbox relay: reading outbox.events failed: %s",
			 SPI_result_code_string(ret));

	/*
	 * The SPI result holds large payloads as TOAST pointers, so only what is
	 * built takes memory.
	 */
	old = MemoryContextSwitchTo(b->cxt);
	for (i = 0; i < SPI_processed && !pipeline_full(b); i++)
	{
		Datum		values[MSG_NCOLUMNS + 1];
		bool		nulls[MSG_NCOLUMNS + 1];

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		pipeline_add(b, values, nulls, DatumGetTransactionId(values[READ_COL_XMIN]));
	}
	MemoryContextSwitchTo(old);
}

/*
 * Step 1: read up to outbox.batch_size due events with ids above from, and
 * at most about outbox.batch_max_bytes of them, into b; the rows past that
 * are left for the next pass.
 */
static void
pipeline_read(RelayBatch *b, int64 from)
{
	Assert(from >= cursor);
	MemoryContextReset(b->cxt);
	b->events = NULL;
	b->size = 0;
	b->n = 0;
	b->bytes = 0;
	b->outstanding = 0;
	b->from = from;
	b->commit_lsn = InvalidXLogRecPtr;
	b->last_xmin = InvalidTransactionId;

	outbox_work_begin("reading outbox.events");
	paused = outbox_status_paused();
	if (paused)
	{
		outbox_work_end();
		return;
	}
	if (outbox_horizon_mark_wanted())
		outbox_horizon_mark(MyDatabaseId, pipeline_last_id());

	/*
	 * What is final now (a mark taken just above is final at once when no
	 * publisher was in the middle of a transaction), then a new snapshot for
	 * the read, so that every row up to that id is in it.
	 */
	b->final = outbox_horizon_final();
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (retry_floor < 0)
		pipeline_learn_retry_floor();
	if (retry_floor == PG_INT64_MAX)
		pipeline_read_scan(b, from);
	else
		pipeline_read_sql(b, from);
	outbox_work_end();
}

/*
 * Step 3: produce b, and send it at once.
 */
static void
pipeline_produce(OutboxProducer *producer, RelayBatch *b)
{
	int			i;

	Assert(b->n > 0 && b->outstanding == 0);
	pgstat_report_activity(STATE_RUNNING, "producing to Kafka");
	for (i = 0; i < b->n; i++)
	{
		RelayEvent *ev = &b->events[i];
		rd_kafka_resp_err_t err = outbox_kafka_produce(producer, &ev->msg, &ev->delivery);

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			b->outstanding++;
		else
			ev->err = err;
	}
	outbox_kafka_send_now(producer);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Step 5: delete what Kafka acknowledged; retry or dead-letter the rest.
 */
static void
pipeline_record(RelayBatch *b)
{
	Datum	   *ok_ids;
	Datum	   *bad_ids;
	Datum	   *codes;
	Datum	   *messages;
	Datum	   *permanent;
	int			nok = 0;
	int			nbad = 0;
	int			nmaybe = 0;
	rd_kafka_resp_err_t maybe_err = RD_KAFKA_RESP_ERR_NO_ERROR;
	uint64		dead = 0;
	int			i;

	Assert(b->outstanding == 0);
	/* what is built here lives until the unit of work ends, even on ERROR */
	outbox_work_begin("recording deliveries");
	ok_ids = palloc(sizeof(Datum) * b->n);
	bad_ids = palloc(sizeof(Datum) * b->n);
	codes = palloc(sizeof(Datum) * b->n);
	messages = palloc(sizeof(Datum) * b->n);
	permanent = palloc(sizeof(Datum) * b->n);
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
			if (ev->maybe_persisted && nmaybe++ == 0)
				maybe_err = ev->err;
		}
	}
	if (nok > 0)
	{
		(void) outbox_scan_delete(ok_ids, nok);
		if (outbox_notify_channel[0] != '\0')
		{
			OutboxNotifier *notifier = outbox_notify_begin(outbox_notify_channel);

			for (i = 0; i < b->n; i++)
				if (b->events[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
					outbox_notify_add(notifier, &b->events[i].msg,
									  b->events[i].partition, b->events[i].offset);
			outbox_notify_end(notifier);
		}
	}
	if (nbad > 0)
	{
		Datum		args[8];
		Oid			argtypes[8] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		BOOLARRAYOID, INT4OID, INT4OID, INT4OID, TEXTOID};
		bool		forwarding = outbox_events_forwarding();
		bool		isnull;
		int			ret;

		args[0] = PointerGetDatum(construct_array(bad_ids, nbad, INT8OID, 8, true, TYPALIGN_DOUBLE));
		args[1] = PointerGetDatum(construct_array(codes, nbad, TEXTOID, -1, false, TYPALIGN_INT));
		args[2] = PointerGetDatum(construct_array(messages, nbad, TEXTOID, -1, false, TYPALIGN_INT));
		args[3] = PointerGetDatum(construct_array(permanent, nbad, BOOLOID, 1, true, TYPALIGN_CHAR));
		args[4] = Int32GetDatum(outbox_max_attempts);
		args[5] = Int32GetDatum(outbox_retry_backoff_min);
		args[6] = Int32GetDatum(outbox_retry_backoff_max);
		args[7] = CStringGetTextDatum(outbox_dead_letter_topic_suffix);
		ret = SPI_execute_plan(forwarding ?
							   outbox_plan(&fail_dlq_plan, fail_sql_dlq, 8, argtypes,
										   CURSOR_OPT_CUSTOM_PLAN) :
							   outbox_plan(&fail_plan, fail_sql, 8, argtypes,
										   CURSOR_OPT_CUSTOM_PLAN),
							   args, NULL, false, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "outbox relay: recording failed deliveries failed: %s",
				 SPI_result_code_string(ret));
		dead = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
		if (dead > 0 && forwarding && outbox_dead_letter_topic_suffix[0] != '\0')
			outbox_forward_wake();
		outbox_slot_record_error(pipeline_slot,
								 psprintf("%s: %s",
										  TextDatumGetCString(codes[0]),
										  TextDatumGetCString(messages[0])));
	}
	/* retries are rare: look for them only when some may exist */
	if (nbad > 0 || retry_floor != PG_INT64_MAX)
		pipeline_learn_retry_floor();
	outbox_work_end();
	outbox_slot_count(pipeline_slot, nok, nbad, dead, 0);

	/*
	 * The one way to a duplicate without a crash: a message that failed after
	 * it was sent (typically message.timeout.ms passed while the broker's
	 * acknowledgement was on its way) may be in Kafka already, and its retry
	 * is a new message.  Say so, since only the consumer's inbox can tell.
	 */
	if (nmaybe > 0)
		ereport(LOG,
				(errmsg("%d event(s) failed after they were sent, so Kafka may hold them already; their retry can deliver them twice",
						nmaybe),
				 errdetail("librdkafka reports them as possibly persisted, the first after: %s.",
						   rd_kafka_err2str(maybe_err)),
				 errhint("Raise message.timeout.ms in outbox.kafka_properties above the longest broker outage to expect.")));
}

/*
 * The next batch to read into: one not in flight.
 */
static RelayBatch *
pipeline_free_batch(void)
{
	RelayBatch *b = (nflight > 0 && flight[0] == &batches[0]) ? &batches[1] : &batches[0];

	Assert(nflight < PIPELINE_DEPTH);
	Assert(nflight == 0 || flight[0] != b);
	return b;
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
pipeline_may_overlap(RelayBatch *newest)
{
	return retry_floor == PG_INT64_MAX &&
		newest->final >= newest->events[newest->n - 1].id;
}

/*
 * Read and produce a new batch, when one may be read now.  True when it
 * found events.
 */
static bool
pipeline_read_and_produce(OutboxProducer *producer)
{
	RelayBatch *b;
	int64		from = cursor;

	if (nflight > 0)
	{
		RelayBatch *newest = flight[nflight - 1];

		if (!pipeline_may_overlap(newest))
			return false;
		from = Max(from, newest->events[newest->n - 1].id);
	}
	b = pipeline_free_batch();
	pipeline_read(b, from);
	if (b->n == 0)
	{
		read_wanted = false;
		return false;
	}
	/* no phantom events: what we read must be durable before Kafka has it */
	if (!XLogRecPtrIsInvalid(b->commit_lsn))
		XLogFlush(b->commit_lsn);
	flight[nflight++] = b;
	pipeline_produce(producer, b);
	pipeline_flush_own();
	return true;
}

/*
 * Record the oldest batch in flight, then drop it from the pipeline and move
 * the cursor: a batch read from the cursor holds every due row from there up
 * to its last id that was final when it was read.
 */
static void
pipeline_record_oldest(void)
{
	RelayBatch *b = flight[0];
	int64		before PG_USED_FOR_ASSERTS_ONLY = cursor;

	pipeline_record(b);
	if (b->from <= cursor)
		cursor = Max(cursor, Min(Min(b->events[b->n - 1].id, b->final),
								 retry_floor - 1));
	Assert(cursor >= before);
	flight[0] = flight[1];
	flight[1] = NULL;
	nflight--;
	read_wanted = true;
}

/*
 * One pass: serve delivery reports, read and produce a new batch unless the
 * pipeline is full, held (the producer is to be recreated), paused, or the
 * batch in flight forbids it; then record every batch at the head of the
 * pipeline whose reports are all in.  woken says something new may be there
 * (a commit set the latch, or a timeout passed).
 */
OutboxPassResult
outbox_pipeline_pass(OutboxProducer *producer, bool hold, bool woken)
{
	bool		progress = false;
	TimestampTz now = GetCurrentTimestamp();

	Assert(nflight >= 0 && nflight <= PIPELINE_DEPTH);
	if (woken)
		read_wanted = true;
	outbox_kafka_serve(producer);

	if (nflight == 0 &&
		TimestampDifferenceExceeds(rescanned_at, now, outbox_full_scan_interval))
	{
		cursor = 0;
		rescanned_at = now;
		read_wanted = true;
	}
	if (read_wanted && !hold && nflight < PIPELINE_DEPTH)
		progress = pipeline_read_and_produce(producer);

	while (nflight > 0 && flight[0]->outstanding == 0)
	{
		pipeline_record_oldest();
		progress = true;
	}
	if (progress)
		return OUTBOX_PASS_PROGRESS;
	return nflight > 0 ? OUTBOX_PASS_WAITING : OUTBOX_PASS_IDLE;
}

/*
 * True while any batch is in flight (the producer must not be replaced).
 */
bool
outbox_pipeline_busy(void)
{
	return nflight > 0;
}

/*
 * True when every event read has been recorded, the last read found none,
 * and none waits for a retry: outbox.events holds nothing the relay knows
 * of (reclaim.c carries over whatever else it finds).
 */
bool
outbox_pipeline_drained(void)
{
	return nflight == 0 && !read_wanted && !paused && retry_floor == PG_INT64_MAX;
}

/*
 * True when the last read found the relay paused.
 */
bool
outbox_pipeline_paused(void)
{
	return paused;
}

/*
 * Where reads start: rows with lower ids are handled, except retries.
 */
int64
outbox_pipeline_cursor(void)
{
	return cursor;
}

/*
 * After an ERROR: keep the batches in flight (their reports still come and
 * their outcomes are recorded by the next pass), but read again from the
 * lowest id, and find the retry floor again.
 */
void
outbox_pipeline_after_error(void)
{
	cursor = 0;
	retry_floor = -1;
	read_wanted = true;
}
