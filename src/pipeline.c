/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  The relay's pipeline: batches of outbox.events move through
 *	  read -> produce -> delivery reports -> record.
 *
 * Each batch:
 *	1. unless outbox.paused has a row, is read in id order in its own short
 *	   transaction: new events above the cursor (a scan of the primary key,
 *	   without the planner: scan.c), or the waiting events that came due
 *	   (below);
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
 * Waiting events.  An event waits in outbox.events while its next_attempt_at
 * is set: for a retry, until the deliver_at it was published with, or
 * behind an earlier waiting event of its key (or, under
 * outbox.dead_letter_policy = hold_key, a dead letter of its key).  The
 * rule that keeps per-key order: an event never goes while an earlier event
 * of its key waits.  The cursor passes waiting events (so one scheduled for
 * next week does not make every read walk the week's deliveries), and they
 * are read apart, through the partial indexes that hold only them:
 *	- the read of new events skips rows that wait, and checks each new
 *	  event with a key against the waiting ones (a probe of
 *	  events_waiting_idx for an earlier one, and of dead_letters_held_idx
 *	  under hold_key: scan.c), but only while some may exist (waiting_exist,
 *	  held_exist), so an outbox with none pays nothing, and only for keys
 *	  a Bloom filter of the waiting keys may hold (waitkeys.c), so a key
 *	  with nothing waiting pays a hash; an event whose key
 *	  has one waits too ("parked": its next_attempt_at is set to now when
 *	  the batch is recorded; until then the keys parked in flight are kept
 *	  in parked_keys, so that the next read parks that key's events too);
 *	- the read of waiting events (waiting_sql) takes, in id order, the
 *	  due ones with no earlier not-due event of their key and no holding
 *	  dead letter, up to the last id the reads of new events looked at
 *	  (swept), since every new event below it has been read, and one above
 *	  may not have been;
 *	- it runs only when one may be due: when the earliest next_attempt_at
 *	  known comes (waiting_due_at, learned from events_due_idx), after the
 *	  relay recorded a retry, a park or the delivery of waiting events, when
 *	  a replay or discard released a key (shmem.c), and every
 *	  outbox.poll_interval while some wait; never once per commit, so
 *	  events that only wait cost no reads.  One such batch travels at a
 *	  time: its rows still wait in the table until they are recorded.
 *
 * Reading past delivered ids: a read starts above the cursor, not at the
 * lowest id, so it does not walk over the dead index entries and tuples of
 * rows already delivered (which pile up while vacuum is held back).  After a
 * batch read from the cursor is recorded, the cursor moves to the last id
 * it looked at, but never past what horizon.c said was final at the read (a
 * lower id may still commit).  Every outbox.full_scan_interval, and after an
 * error, the cursor goes back to 0, so a row inserted some way horizon.c
 * does not see is found all the same.
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
#include "utils/hsearch.h"
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
#include "waitkeys.h"

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
	bool		park;			/* not produced: waits behind its key */
	bool		has_key;
	uint64		key_hash;		/* of its topic and key (waitkeys.c) */
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
	bool		waiting;		/* read from the waiting events, not the cursor */
	uint64		waiting_epoch;	/* waiting_epoch when it was read */
	int64		from;			/* the read started above this id */
	int64		last_seen;		/* the last id the read looked at */
	int			seen;			/* rows it looked at, waiting ones included */
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
 * Where reads start: every row with an id up to cursor has been handled
 * (delivered, or waiting) and none can still appear.  swept: every row up
 * to it that was visible when a read of new events looked has been handled
 * (a row below it that commits later was concurrent with those above it),
 * so a waiting event up to swept has no earlier event of its key still to
 * read.  Unlike the cursor, it is not held back by a transaction that took
 * an id and stays open.
 */
static int64 cursor = 0;
static int64 swept = 0;
static TimestampTz rescanned_at = 0;

/*
 * What the relay knows of the waiting events (see the top): whether some
 * may exist (true until learned otherwise), whether a dead letter may hold
 * a key, whether a read of them may find some due, when the earliest known
 * comes due (0: none known), when they were last read.
 */
static bool waiting_exist = true;
static bool held_exist = true;
static bool waiting_wanted = true;
static TimestampTz waiting_due_at = 0;
static TimestampTz waiting_read_at = 0;
static int	last_policy = -1;

/*
 * Counts what may let waiting events go (a batch of them recorded, a key
 * released, the policy changed): a batch that parked events behind their
 * key asks for a read of waiting events only if one of those happened
 * since it was read, since until then what they wait behind still waits.
 */
static uint64 waiting_epoch = 0;

/* keys of the events parked in flight: hash -> how many */
typedef struct ParkedKey
{
	uint64		hash;
	int			count;
} ParkedKey;
static HTAB *parked_keys = NULL;
static int	nparked_in_flight = 0;

static SPIPlanPtr waiting_plan = NULL;
static SPIPlanPtr waiting_hold_plan = NULL;
static SPIPlanPtr learn_plan = NULL;
static SPIPlanPtr held_plan = NULL;
static SPIPlanPtr park_plan = NULL;
static SPIPlanPtr fail_plan = NULL;
static SPIPlanPtr fail_1_2_plan = NULL;

/*
 * The waiting events that may go now, in id order: due, up to $2 (swept),
 * with no earlier event of their key waiting for a later time, and (the
 * second form, under hold_key) no dead letter holding their key.  $1: how
 * many.  The message's columns, then the xid that inserted the row.
 */
#define READ_COL_XMIN MSG_NCOLUMNS
#define WAITING_SQL(held) \
"SELECT " OUTBOX_MESSAGE_COLUMNS ", e.xmin"\
"  FROM outbox.events e"\
" WHERE e.next_attempt_at <= pg_catalog.now() AND e.id <= $2"\
"   AND NOT EXISTS (SELECT 1 FROM outbox.events b"\
"                    WHERE b.next_attempt_at IS NOT NULL AND b.topic = e.topic AND b.key = e.key"\
"                      AND b.id < e.id AND b.next_attempt_at > pg_catalog.now())" held \
" ORDER BY e.id LIMIT $1"
static const char *const waiting_sql = WAITING_SQL("");
static const char *const waiting_hold_sql =
WAITING_SQL("   AND NOT EXISTS (SELECT 1 FROM outbox.dead_letters d"
			"                    WHERE d.holds_key AND d.topic = e.topic AND d.key = e.key)");

/* do events wait, and when does the next one come due */
static const char *const learn_sql =
"SELECT EXISTS (SELECT 1 FROM outbox.events WHERE next_attempt_at IS NOT NULL),"
"       (SELECT pg_catalog.min(next_attempt_at) FROM outbox.events"
"         WHERE next_attempt_at > pg_catalog.now())";

/* does a dead letter hold its key (a database at 1.2) */
static const char *const held_sql =
"SELECT EXISTS (SELECT 1 FROM outbox.dead_letters WHERE holds_key)";

/* $1 ids of events parked behind their key */
static const char *const park_sql =
"UPDATE outbox.events SET next_attempt_at = pg_catalog.now()"
" WHERE id = ANY ($1::pg_catalog.int8[]) AND next_attempt_at IS NULL";

/*
 * $1 ids, $2 error names, $3 error texts, $4 permanent flags,
 * $5 max attempts, $6 backoff min ms, $7 backoff max ms, $8 the dead-letter
 * topic suffix, $9 whether dead letters hold their key.  Returns
 * (dead-lettered, retried).  A database at 1.2 or later also records where
 * each dead letter is forwarded to (fail_sql_1_2, given to FAIL_SQL):
 * nowhere when the suffix is empty, and nowhere again for a replayed dead
 * letter that was forwarded before; and whether it holds its key, with its
 * id, which a replay puts it back under.
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
static const char *const fail_sql_1_2 =
FAIL_SQL(", forward_topic, forwarded_at, holds_key, outbox_id",
		 ", CASE WHEN $8 <> '' THEN e.topic || $8 END, e.forwarded_at,"
		 " $9 AND e.key IS NOT NULL, e.id");

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
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(uint64);
		ctl.entrysize = sizeof(ParkedKey);
		ctl.hcxt = parent;
		parked_keys = hash_create("outbox relay parked keys", 64, &ctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	outbox_waitkeys_init(parent);
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
 * Learn whether events wait and when the next comes due, and whether a dead
 * letter holds a key, in a unit of work.
 */
static void
pipeline_learn_waiting(void)
{
	bool		isnull;
	Datum		d;
	int			ret;

	ret = SPI_execute_plan(outbox_plan(&learn_plan, learn_sql, 0, NULL,
									   CURSOR_OPT_CUSTOM_PLAN),
						   NULL, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "outbox relay: looking for waiting events failed: %s",
			 SPI_result_code_string(ret));
	waiting_exist = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	waiting_due_at = isnull ? 0 : DatumGetTimestampTz(d);
	held_exist = false;
	if (outbox_dead_letter_policy == OUTBOX_DEAD_LETTER_HOLD_KEY &&
		outbox_schema_at_1_2())
		held_exist = outbox_query_int8(&held_plan, held_sql) > 0;
	if (!waiting_exist && !held_exist && nparked_in_flight == 0)
		outbox_waitkeys_clear();
}

/*
 * Count a parked event's key in parked_keys (delta 1) or take it out (-1).
 * Two keys with the same hash only make an event wait that need not: it
 * goes at the next read of waiting events.
 */
static void
pipeline_parked_key(uint64 hash, int delta)
{
	bool		found;
	ParkedKey  *k = hash_search(parked_keys, &hash, delta > 0 ? HASH_ENTER : HASH_FIND, &found);

	Assert(delta > 0 || found);
	if (k == NULL)
		return;
	k->count = (found ? k->count : 0) + delta;
	nparked_in_flight += delta;
	if (k->count == 0)
		(void) hash_search(parked_keys, &hash, HASH_REMOVE, NULL);
}

/*
 * Room for one more event at the end of b (b->n is not advanced).
 */
static RelayEvent *
pipeline_next_event(RelayBatch *b)
{
	if (b->n == b->size)
	{
		b->size = Max(16, b->size * 2);
		b->events = b->events == NULL ? palloc(sizeof(RelayEvent) * b->size) :
			repalloc(b->events, sizeof(RelayEvent) * b->size);
	}
	return &b->events[b->n];
}

/* the hash of a row's topic and key (waitkeys.c), 0 for a row without a key */
static uint64
pipeline_row_key_hash(const Datum *values, const bool *nulls)
{
	return nulls[MSG_COL_KEY] ? 0 :
		outbox_waitkeys_hash(values[MSG_COL_TOPIC], values[MSG_COL_KEY]);
}

/*
 * Append one row to b, building its message in b's memory; key_hash is
 * pipeline_row_key_hash() of it.
 */
static void
pipeline_add(RelayBatch *b, const Datum *values, const bool *nulls, TransactionId xmin,
			 uint64 key_hash)
{
	RelayEvent *ev = pipeline_next_event(b);

	if (b->n == 0 || xmin != b->last_xmin)
		b->commit_lsn = Max(b->commit_lsn, pipeline_commit_lsn(xmin));
	b->last_xmin = xmin;
	ev->delivery.on_delivery = pipeline_on_delivery;
	ev->batch = b;
	ev->id = DatumGetInt64(values[MSG_COL_ID]);
	ev->err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
	ev->maybe_persisted = false;
	ev->park = false;
	ev->has_key = !nulls[MSG_COL_KEY];
	ev->key_hash = key_hash;
	Assert(b->n == 0 || ev->id > b->events[b->n - 1].id);
	outbox_message_build(&ev->msg, values, nulls, pipeline_default_source);
	b->bytes += outbox_message_bytes(&ev->msg);
	b->n++;
}

/*
 * Append a parked event to b: its id, and its key in parked_keys.
 */
static void
pipeline_add_parked(RelayBatch *b, int64 id, uint64 key_hash)
{
	RelayEvent *ev = pipeline_next_event(b);

	b->n++;
	memset(ev, 0, sizeof(RelayEvent));
	ev->batch = b;
	ev->id = id;
	ev->park = true;
	ev->has_key = true;
	ev->key_hash = key_hash;
	pipeline_parked_key(key_hash, 1);
	outbox_waitkeys_add(key_hash);
}

/* b holds as many events as a batch may, or its read looked at enough rows */
static bool
pipeline_full(RelayBatch *b)
{
	return b->n >= outbox_batch_size || b->bytes >= (Size) outbox_batch_max_bytes ||
		b->seen >= 4 * outbox_batch_size;
}

/*
 * A row the read of new events found waiting: the read of waiting events
 * takes it; learn that one waits, and when it comes due.
 */
static void
pipeline_saw_waiting(TimestampTz next_attempt_at)
{
	waiting_exist = true;
	if (next_attempt_at <= GetCurrentTimestamp())
		waiting_wanted = true;
	else if (waiting_due_at == 0 || next_attempt_at < waiting_due_at)
		waiting_due_at = next_attempt_at;
}

/*
 * The read of new events: the rows above from in id order, straight from
 * the primary key (scan.c).  A row that waits is left to the read of
 * waiting events; an event whose key has an earlier event waiting, parked
 * in flight, or (under hold_key) a dead letter holding it, is parked.
 */
static void
pipeline_read_scan(RelayBatch *b, int64 from)
{
	OutboxEventScan *scan = outbox_scan_begin(from);
	OutboxKeyProbe *waiting_probe = NULL;
	OutboxKeyProbe *held_probe = NULL;
	bool		waiting_probed = false;
	Datum	   *values;
	bool	   *nulls;
	TransactionId xmin;
	MemoryContext old;

	StaticAssertStmt(MSG_COL_ID == EV_ID - 1 && MSG_COL_CREATED_AT == EV_CREATED_AT - 1,
					 "a message's columns are the first columns of outbox.events");
	if (held_exist && outbox_dead_letter_policy == OUTBOX_DEAD_LETTER_HOLD_KEY)
		held_probe = outbox_probe_begin("dead_letters", "dead_letters_held_idx", false);
	if ((waiting_exist || held_probe != NULL) && !outbox_waitkeys_valid())
		outbox_waitkeys_load(held_probe != NULL);
	/* after the load, which runs SPI: the messages go in the batch's memory */
	old = MemoryContextSwitchTo(b->cxt);
	while (!pipeline_full(b) && outbox_scan_next(scan, &values, &nulls, &xmin))
	{
		int64		id = DatumGetInt64(values[EV_ID - 1]);
		uint64		hash = pipeline_row_key_hash(values, nulls);

		b->seen++;
		b->last_seen = id;
		if (!nulls[EV_NEXT_ATTEMPT_AT - 1])
		{
			pipeline_saw_waiting(DatumGetTimestampTz(values[EV_NEXT_ATTEMPT_AT - 1]));
			if (!nulls[EV_KEY - 1])
				outbox_waitkeys_add(hash);
			continue;
		}
		/* from the first row once events may wait, even if this read found it */
		if (waiting_exist && !waiting_probed)
		{
			waiting_probe = outbox_probe_begin("events", "events_waiting_idx", true);
			/* a database still at 1.1 indexes only its retries */
			if (waiting_probe == NULL)
				waiting_probe = outbox_probe_begin("events", "events_retry_idx", true);
			waiting_probed = true;
		}
		if (!nulls[EV_KEY - 1] &&
			((nparked_in_flight > 0 &&
			  hash_search(parked_keys, &hash, HASH_FIND, NULL) != NULL) ||
			 ((waiting_probe != NULL || held_probe != NULL) &&
			  outbox_waitkeys_may_have(hash) &&
			  ((waiting_probe != NULL &&
				outbox_probe(waiting_probe, values[EV_TOPIC - 1], values[EV_KEY - 1], id)) ||
			   (held_probe != NULL &&
				outbox_probe(held_probe, values[EV_TOPIC - 1], values[EV_KEY - 1], 0))))))
		{
			pipeline_add_parked(b, id, hash);
			continue;
		}
		pipeline_add(b, values, nulls, xmin, hash);
	}
	MemoryContextSwitchTo(old);
	outbox_probe_end(held_probe);
	outbox_probe_end(waiting_probe);
	outbox_scan_end(scan);
}

/*
 * The read of waiting events that may go now (waiting_sql).  When it finds
 * fewer than a batch, the relay learns again whether events wait and when
 * the next comes due.
 */
static void
pipeline_read_waiting(RelayBatch *b)
{
	Datum		args[2];
	Oid			argtypes[2] = {INT4OID, INT8OID};
	bool		hold = outbox_dead_letter_policy == OUTBOX_DEAD_LETTER_HOLD_KEY &&
		outbox_schema_at_1_2();
	MemoryContext old;
	uint64		i;
	int			ret;

	args[0] = Int32GetDatum(outbox_batch_size);
	args[1] = Int64GetDatum(swept);
	ret = SPI_execute_plan(hold ?
						   outbox_plan(&waiting_hold_plan, waiting_hold_sql, 2, argtypes,
									   CURSOR_OPT_CUSTOM_PLAN) :
						   outbox_plan(&waiting_plan, waiting_sql, 2, argtypes,
									   CURSOR_OPT_CUSTOM_PLAN),
						   args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "outbox relay: reading waiting events failed: %s",
			 SPI_result_code_string(ret));
	waiting_read_at = GetCurrentTimestamp();

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
		pipeline_add(b, values, nulls, DatumGetTransactionId(values[READ_COL_XMIN]),
					 pipeline_row_key_hash(values, nulls));
	}
	MemoryContextSwitchTo(old);
	if (SPI_processed < (uint64) outbox_batch_size)
	{
		waiting_wanted = false;
		pipeline_learn_waiting();
	}
}

/*
 * Step 1: read into b up to outbox.batch_size events, and at most about
 * outbox.batch_max_bytes of them: the new ones with ids above from, or
 * (waiting) the waiting ones that may go now.  The rows past that are left
 * for the next pass.
 */
static void
pipeline_read(RelayBatch *b, int64 from, bool waiting)
{
	Assert(from >= cursor);
	MemoryContextReset(b->cxt);
	b->events = NULL;
	b->size = 0;
	b->n = 0;
	b->seen = 0;
	b->bytes = 0;
	b->outstanding = 0;
	b->waiting = waiting;
	b->waiting_epoch = waiting_epoch;
	b->from = from;
	b->last_seen = from;
	b->commit_lsn = InvalidXLogRecPtr;
	b->last_xmin = InvalidTransactionId;

	outbox_work_begin(waiting ? "reading waiting events" : "reading outbox.events");
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
	if (waiting)
		pipeline_read_waiting(b);
	else
		pipeline_read_scan(b, from);
	outbox_work_end();
}

/*
 * Step 3: produce b, and send it at once.
 */
static void
pipeline_produce(OutboxProducer *producer, RelayBatch *b)
{
	int			i;

	Assert(b->outstanding == 0);
	pgstat_report_activity(STATE_RUNNING, "producing to Kafka");
	for (i = 0; i < b->n; i++)
	{
		RelayEvent *ev = &b->events[i];
		rd_kafka_resp_err_t err;

		if (ev->park)
			continue;
		err = outbox_kafka_produce(producer, &ev->msg, &ev->delivery);
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
	Datum	   *park_ids;
	int			nok = 0;
	int			nbad = 0;
	int			npark = 0;
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
	park_ids = palloc(sizeof(Datum) * b->n);
	for (i = 0; i < b->n; i++)
	{
		RelayEvent *ev = &b->events[i];

		if (ev->park)
			park_ids[npark++] = Int64GetDatum(ev->id);
		else if (ev->err == RD_KAFKA_RESP_ERR_NO_ERROR)
			ok_ids[nok++] = Int64GetDatum(ev->id);
		else
		{
			/* retried or dead-lettered: its key may now wait or be held */
			if (ev->has_key)
				outbox_waitkeys_add(ev->key_hash);
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
				if (!b->events[i].park && b->events[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
					outbox_notify_add(notifier, &b->events[i].msg,
									  b->events[i].partition, b->events[i].offset);
			outbox_notify_end(notifier);
		}
	}
	if (npark > 0)
	{
		Datum		arg = PointerGetDatum(construct_array(park_ids, npark, INT8OID, 8, true,
														  TYPALIGN_DOUBLE));
		Oid			argtype = INT8ARRAYOID;
		int			ret = SPI_execute_plan(outbox_plan(&park_plan, park_sql, 1, &argtype,
													   CURSOR_OPT_CUSTOM_PLAN),
										   &arg, NULL, false, 0);

		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "outbox relay: parking events behind their key failed: %s",
				 SPI_result_code_string(ret));
	}
	if (nbad > 0)
	{
		Datum		args[9];
		Oid			argtypes[9] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		BOOLARRAYOID, INT4OID, INT4OID, INT4OID, TEXTOID, BOOLOID};
		bool		hold = outbox_dead_letter_policy == OUTBOX_DEAD_LETTER_HOLD_KEY;
		bool		at_1_2 = outbox_schema_at_1_2();
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
		args[8] = BoolGetDatum(hold);
		ret = SPI_execute_plan(at_1_2 ?
							   outbox_plan(&fail_1_2_plan, fail_sql_1_2, 9, argtypes,
										   CURSOR_OPT_CUSTOM_PLAN) :
							   outbox_plan(&fail_plan, fail_sql, 9, argtypes,
										   CURSOR_OPT_CUSTOM_PLAN),
							   args, NULL, false, 0);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "outbox relay: recording failed deliveries failed: %s",
				 SPI_result_code_string(ret));
		dead = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
		if (dead > 0 && at_1_2 && outbox_dead_letter_topic_suffix[0] != '\0')
			outbox_forward_wake();
		if (dead > 0 && hold && at_1_2)
			held_exist = true;
		outbox_slot_record_error(pipeline_slot,
								 psprintf("%s: %s",
										  TextDatumGetCString(codes[0]),
										  TextDatumGetCString(messages[0])));
	}
	outbox_work_end();

	/*
	 * Waiting events went (delivered, dead-lettered): others may go now.
	 * Events now wait (retried, parked); a retry comes due at the earliest
	 * after half the shortest backoff, and parked events wait behind what
	 * still waits, unless that may have gone since the read (see
	 * waiting_epoch).
	 */
	if (b->waiting)
	{
		waiting_wanted = true;
		waiting_epoch++;
	}
	if (nbad > 0 || npark > 0)
		waiting_exist = true;
	if (npark > 0 && b->waiting_epoch != waiting_epoch)
		waiting_wanted = true;
	if (nbad > 0)
	{
		TimestampTz retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   outbox_retry_backoff_min / 2);

		if (waiting_due_at == 0 || retry_at < waiting_due_at)
			waiting_due_at = retry_at;
	}
	for (i = 0; i < b->n; i++)
		if (b->events[i].park)
			pipeline_parked_key(b->events[i].key_hash, -1);
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
 * Where the next read of new events may start, while batches are in
 * flight: past the last id of the newest such batch, unless that batch's
 * ids were not all final at its read (a row below its last id may still
 * commit, and only a read from the cursor finds it, so the cursor must
 * catch up first instead of lagging behind a pipeline that never empties):
 * then -1, no read now.
 */
static int64
pipeline_next_from(void)
{
	int64		from = cursor;
	int			i;

	for (i = 0; i < nflight; i++)
	{
		RelayBatch *b = flight[i];

		if (b->waiting)
			continue;
		if (b->final < b->last_seen)
			return -1;
		from = Max(from, b->last_seen);
	}
	return from;
}

/* true when a batch of waiting events is in flight */
static bool
pipeline_waiting_in_flight(void)
{
	int			i;

	for (i = 0; i < nflight; i++)
		if (flight[i]->waiting)
			return true;
	return false;
}

/*
 * Read a new batch and produce it.  waiting: of the waiting events that may
 * go now; else of new events, when one may be read now.  True when it did
 * something (a read of new events that found only waiting rows moves the
 * cursor past them).
 */
static bool
pipeline_read_and_produce(OutboxProducer *producer, bool waiting)
{
	RelayBatch *b;
	int64		from = waiting ? cursor : pipeline_next_from();

	if (from < 0)
		return false;
	b = pipeline_free_batch();
	pipeline_read(b, from, waiting);
	if (b->n == 0)
	{
		if (waiting)
			return false;
		/*
		 * Only waiting rows, or none: step past them and look further if the
		 * read stopped early.  Past a batch in flight, wait for its record.
		 */
		if (b->seen == 0 || b->from > cursor)
		{
			read_wanted = false;
			return false;
		}
		cursor = Max(cursor, Min(b->last_seen, b->final));
		swept = Max(swept, b->last_seen);
		read_wanted = pipeline_full(b);
		return true;
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
 * the cursor: a batch of new events read from the cursor handled every row
 * from there up to the last id it looked at that was final when it was
 * read (delivered, failed, parked, or left waiting).
 */
static void
pipeline_record_oldest(void)
{
	RelayBatch *b = flight[0];
	int64		before PG_USED_FOR_ASSERTS_ONLY = cursor;

	pipeline_record(b);
	if (!b->waiting)
		swept = Max(swept, b->last_seen);
	if (!b->waiting && b->from <= cursor)
		cursor = Max(cursor, Min(b->last_seen, b->final));
	Assert(cursor >= before);
	flight[0] = flight[1];
	flight[1] = NULL;
	nflight--;
	read_wanted = true;
}

/*
 * One pass: serve delivery reports; unless the pipeline is full or held
 * (the producer is to be recreated), read and produce the waiting events
 * that came due, and a batch of new events unless the batch in flight
 * forbids it; then record every batch at the head of the pipeline whose
 * reports are all in.  woken says something new may be there (a commit set
 * the latch, or a timeout passed).
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

	/* when waiting events may have come due */
	if (outbox_slot_take_release(pipeline_slot))
	{
		waiting_wanted = true;
		waiting_epoch++;
	}
	if (outbox_dead_letter_policy != last_policy)
	{
		last_policy = outbox_dead_letter_policy;
		waiting_wanted = true;
		waiting_epoch++;
		held_exist = true;
		outbox_waitkeys_forget();
	}
	if (waiting_exist && waiting_due_at != 0 && now >= waiting_due_at)
	{
		waiting_wanted = true;
		waiting_due_at = 0;
	}
	if (waiting_exist &&
		TimestampDifferenceExceeds(waiting_read_at, now, outbox_poll_interval))
		waiting_wanted = true;

	if (waiting_wanted && !hold && nflight < PIPELINE_DEPTH && !pipeline_waiting_in_flight())
		progress = pipeline_read_and_produce(producer, true);
	if (read_wanted && !hold && nflight < PIPELINE_DEPTH)
		progress = pipeline_read_and_produce(producer, false) || progress;

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
 * How long until a waiting event comes due, as far as the relay knows: -1
 * when it knows of none (or is paused: resuming wakes it).
 */
long
outbox_pipeline_due_in_ms(void)
{
	long		secs;
	int			usecs;

	if (paused || !waiting_exist || waiting_due_at == 0)
		return -1;
	TimestampDifference(GetCurrentTimestamp(), waiting_due_at, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
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
 * and no waiting event is known to be due: outbox.events holds only events
 * that wait (reclaim.c carries them over, with whatever else it finds).
 */
bool
outbox_pipeline_drained(void)
{
	return nflight == 0 && !read_wanted && !paused && !waiting_wanted;
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
 * lowest id, and learn again what waits.
 */
void
outbox_pipeline_after_error(void)
{
	cursor = 0;
	read_wanted = true;
	waiting_exist = true;
	held_exist = true;
	waiting_wanted = true;
	waiting_epoch++;
	outbox_waitkeys_forget();
}
