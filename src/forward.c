/*-------------------------------------------------------------------------
 *
 * forward.c
 *	  Dead letters on Kafka.  With outbox.dead_letter_topic_suffix set, an
 *	  event that becomes a dead letter is also produced to <topic><suffix>
 *	  (seed 001's topic.dlq), with its original key, value and headers and
 *	  x-outbox-error-code, x-outbox-error, x-outbox-attempts,
 *	  x-outbox-failed-at and x-outbox-original-topic, so that the teams who
 *	  own the topic see it, not only the database's operators.
 *
 * The row in outbox.dead_letters stays the source of truth.  The relay's
 * recording of a failure (pipeline.c) writes the dead-letter topic into
 * forward_topic; this file reads the rows still to forward in id order,
 * produces them with the relay's producer, and once every report of the
 * batch is in, sets forwarded_at on those Kafka took, and for the others
 * counts the attempt and sets next_forward_at (the relay's backoff: every
 * error is retried, since a topic that is missing or refused today may be
 * created or allowed tomorrow).  The row is never deleted or copied here,
 * so a forward cannot lose or duplicate it; a row replayed or discarded
 * while its forward travels is simply not found when the outcome is
 * recorded.  As for the relay's own events, a crash between Kafka's
 * acknowledgement and that record produces the forward again.
 *
 * One batch travels at a time, and only while the suffix is set: rows
 * already queued wait while it is empty and go when it is set again, to the
 * topic recorded when they failed.  Dead letters made while the suffix was
 * empty are never forwarded.  The relay looks for forwards when it starts,
 * after recording new dead letters, and when the earliest next_forward_at
 * comes (outbox_forward_due_in_ms), and once per outbox.poll_interval (for
 * rows it did not make itself); never once per commit, except while the
 * relay is paused, when each wake-up looks whether it was resumed, as the
 * pipeline does.  A paused relay forwards nothing.
 *
 * After an ERROR in the relay the batch in flight is kept, as the
 * pipeline's are: its reports still come, and an outcome that could not be
 * recorded is recorded by the next pass instead of being produced again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "forward.h"
#include "message.h"
#include "outbox.h"
#include "scan.h"
#include "spiutil.h"
#include "status.h"

/* One dead letter being forwarded */
typedef struct ForwardLetter
{
	OutboxDelivery delivery;	/* first: the report finds the letter by it */
	int64		id;				/* outbox.dead_letters.id */
	OutboxMessage msg;
	rd_kafka_resp_err_t err;	/* NO_ERROR only once Kafka acknowledged it */
} ForwardLetter;

static MemoryContext forward_cxt = NULL;	/* the batch, reset when reused */
static const char *forward_default_source = NULL;
static ForwardLetter *letters = NULL;
static int	nletters = 0;		/* in the batch; 0: none in flight */
static int	outstanding = 0;	/* produced, report not yet served */

/*
 * a read may find something; when not, the earliest retry (0: none known);
 * when the last read was; whether it found the relay paused
 */
static bool forward_wanted = true;
static TimestampTz forward_due_at = 0;
static TimestampTz forward_read_at = 0;
static bool forward_paused = false;

static SPIPlanPtr read_plan = NULL;
static SPIPlanPtr due_plan = NULL;
static SPIPlanPtr record_plan = NULL;

/* the message's columns (OUTBOX_MESSAGE_COLUMNS), then what went wrong */
#define READ_COL_FORWARD_TOPIC	MSG_NCOLUMNS
#define READ_COL_ERROR_CODE		(MSG_NCOLUMNS + 1)
#define READ_COL_ERROR			(MSG_NCOLUMNS + 2)
#define READ_COL_ATTEMPTS		(MSG_NCOLUMNS + 3)
#define READ_COL_FAILED_AT		(MSG_NCOLUMNS + 4)
#define READ_NCOLUMNS			(MSG_NCOLUMNS + 5)

static const char *const read_sql =
"SELECT " OUTBOX_MESSAGE_COLUMNS ","
"       e.forward_topic, e.error_code, e.error, e.attempts, e.failed_at"
"  FROM outbox.dead_letters e"
" WHERE e.forward_topic IS NOT NULL AND e.forwarded_at IS NULL"
"   AND (e.next_forward_at IS NULL OR e.next_forward_at <= pg_catalog.now())"
" ORDER BY e.id LIMIT $1";

/* when the next forward that failed may be tried again */
static const char *const due_sql =
"SELECT pg_catalog.min(e.next_forward_at) FROM outbox.dead_letters e"
" WHERE e.forward_topic IS NOT NULL AND e.forwarded_at IS NULL"
"   AND e.next_forward_at > pg_catalog.now()";

/* $1 ids, $2 errors (NULL: Kafka took it), $3 backoff min ms, $4 max ms */
static const char *const record_sql =
"UPDATE outbox.dead_letters d"
"   SET forwarded_at = CASE WHEN f.error IS NULL THEN pg_catalog.now() END,"
"       forward_attempts = d.forward_attempts + CASE WHEN f.error IS NULL THEN 0 ELSE 1 END,"
"       next_forward_at = CASE WHEN f.error IS NOT NULL THEN pg_catalog.now() + "
OUTBOX_BACKOFF_SQL("d.forward_attempts", "$3", "$4") " END,"
"       forward_error = COALESCE(f.error, d.forward_error)"
"  FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.int8[]),"
"                  pg_catalog.unnest($2::pg_catalog.text[])) AS f(id, error)"
" WHERE d.id = f.id AND d.forwarded_at IS NULL";

/*
 * Set up the batch's memory under parent.
 */
void
outbox_forward_init(MemoryContext parent, const char *default_source)
{
	forward_cxt = AllocSetContextCreate(parent, "outbox relay dead-letter forwards",
										ALLOCSET_DEFAULT_SIZES);
	forward_default_source = MemoryContextStrdup(parent, default_source);
}

/*
 * Delivery report: runs inside outbox_kafka_serve(), in this thread.
 */
static void
forward_on_delivery(OutboxDelivery *delivery, rd_kafka_resp_err_t err,
					bool maybe_persisted, int32 partition, int64 offset)
{
	ForwardLetter *l = (ForwardLetter *) delivery;

	Assert(outstanding > 0);
	l->err = err;
	outstanding--;
}

/*
 * Read the next dead letters to forward and build their records, in a unit
 * of work.  Afterwards nletters says how many.
 */
static void
forward_read(void)
{
	Datum		arg = Int32GetDatum(outbox_batch_size);
	Oid			argtype = INT4OID;
	MemoryContext old;
	uint64		i;
	int			ret;

	MemoryContextReset(forward_cxt);
	letters = NULL;
	nletters = 0;
	outbox_work_begin("reading dead letters to forward");
	forward_read_at = GetCurrentTimestamp();
	/* a paused relay produces nothing: resume_relay() wakes it */
	forward_paused = outbox_status_paused();
	if (forward_paused)
	{
		outbox_work_end();
		return;
	}
	if (!outbox_schema_at_1_2())
	{
		forward_wanted = false;
		forward_due_at = 0;
		outbox_work_end();
		return;
	}
	ret = SPI_execute_plan(outbox_plan(&read_plan, read_sql, 1, &argtype,
									   CURSOR_OPT_CUSTOM_PLAN),
						   &arg, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "outbox relay: reading dead letters to forward failed: %s",
			 SPI_result_code_string(ret));
	forward_wanted = SPI_processed == (uint64) outbox_batch_size;

	old = MemoryContextSwitchTo(forward_cxt);
	if (SPI_processed > 0)
		letters = palloc(sizeof(ForwardLetter) * SPI_processed);
	for (i = 0; i < SPI_processed; i++)
	{
		ForwardLetter *l = &letters[i];
		Datum		values[READ_NCOLUMNS];
		bool		nulls[READ_NCOLUMNS];

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, values, nulls);
		l->delivery.on_delivery = forward_on_delivery;
		l->id = DatumGetInt64(values[MSG_COL_ID]);
		l->err = RD_KAFKA_RESP_ERR__IN_PROGRESS;
		outbox_message_build(&l->msg, values, nulls, forward_default_source);
		outbox_message_to_dead_letter_topic(&l->msg,
											TextDatumGetCString(values[READ_COL_FORWARD_TOPIC]),
											TextDatumGetCString(values[READ_COL_ERROR_CODE]),
											TextDatumGetCString(values[READ_COL_ERROR]),
											DatumGetInt32(values[READ_COL_ATTEMPTS]),
											DatumGetTimestampTz(values[READ_COL_FAILED_AT]));
	}
	nletters = (int) SPI_processed;
	MemoryContextSwitchTo(old);

	if (!forward_wanted)
	{
		bool		isnull;

		ret = SPI_execute_plan(outbox_plan(&due_plan, due_sql, 0, NULL,
										   CURSOR_OPT_CUSTOM_PLAN),
							   NULL, NULL, true, 1);
		if (ret != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "outbox relay: looking for forwards to retry failed: %s",
				 SPI_result_code_string(ret));
		forward_due_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc,
														   1, &isnull));
		if (isnull)
			forward_due_at = 0;
	}
	outbox_work_end();
}

/*
 * Produce the batch read, and send it at once.
 */
static void
forward_produce(OutboxProducer *producer)
{
	int			i;

	pgstat_report_activity(STATE_RUNNING, "forwarding dead letters to Kafka");
	for (i = 0; i < nletters; i++)
	{
		rd_kafka_resp_err_t err = outbox_kafka_produce(producer, &letters[i].msg,
													   &letters[i].delivery);

		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
			outstanding++;
		else
			letters[i].err = err;
	}
	outbox_kafka_send_now(producer);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Record the batch's outcome, once every report is in.
 */
static void
forward_record(void)
{
	Datum	   *ids;
	Datum	   *errors;
	bool	   *error_nulls;
	int			nfailed = 0;
	int			i;
	int			ret;
	Datum		args[4];
	Oid			argtypes[4] = {INT8ARRAYOID, TEXTARRAYOID, INT4OID, INT4OID};
	int			dims[1];
	int			lbs[1] = {1};
	TimestampTz retry_at;

	Assert(outstanding == 0 && nletters > 0);
	outbox_work_begin("recording forwarded dead letters");
	ids = palloc(sizeof(Datum) * nletters);
	errors = palloc(sizeof(Datum) * nletters);
	error_nulls = palloc(sizeof(bool) * nletters);
	for (i = 0; i < nletters; i++)
	{
		ids[i] = Int64GetDatum(letters[i].id);
		error_nulls[i] = letters[i].err == RD_KAFKA_RESP_ERR_NO_ERROR;
		errors[i] = error_nulls[i] ? (Datum) 0 :
			CStringGetTextDatum(psprintf("%s: %s", rd_kafka_err2name(letters[i].err),
										 rd_kafka_err2str(letters[i].err)));
		if (!error_nulls[i])
			nfailed++;
	}
	dims[0] = nletters;
	args[0] = PointerGetDatum(construct_array(ids, nletters, INT8OID, 8, true, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_md_array(errors, error_nulls, 1, dims, lbs,
												 TEXTOID, -1, false, TYPALIGN_INT));
	args[2] = Int32GetDatum(outbox_retry_backoff_min);
	args[3] = Int32GetDatum(outbox_retry_backoff_max);
	ret = SPI_execute_plan(outbox_plan(&record_plan, record_sql, 4, argtypes,
									   CURSOR_OPT_CUSTOM_PLAN),
						   args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "outbox relay: recording forwarded dead letters failed: %s",
			 SPI_result_code_string(ret));
	outbox_work_end();

	if (nfailed > 0)
	{
		ForwardLetter *first = NULL;

		for (i = 0; first == NULL; i++)
			if (letters[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
				first = &letters[i];
		ereport(LOG,
				(errmsg("%d dead letter(s) could not be forwarded to their dead-letter topic; they stay in outbox.dead_letters and are tried again",
						nfailed),
				 errdetail("The first, to topic \"%s\": %s: %s.", first->msg.topic,
						   rd_kafka_err2name(first->err), rd_kafka_err2str(first->err))));
		/*
		 * The retries just set are at least half the shortest backoff away;
		 * a read then learns exactly when (due_sql).
		 */
		retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   outbox_retry_backoff_min / 2);
		if (forward_due_at == 0 || retry_at < forward_due_at)
			forward_due_at = retry_at;
	}
	nletters = 0;
}

/*
 * One pass: record the batch in flight once its reports are all in, or read
 * and produce the next one when forwards may be waiting and new reads are
 * not held (the producer is to be recreated).  Reports are served by the
 * pipeline's pass, which runs first with the same producer.
 */
OutboxPassResult
outbox_forward_pass(OutboxProducer *producer, bool hold)
{
	if (nletters > 0)
	{
		if (outstanding > 0)
			return OUTBOX_PASS_WAITING;
		forward_record();
		return OUTBOX_PASS_PROGRESS;
	}
	if (hold || outbox_dead_letter_topic_suffix[0] == '\0')
		return OUTBOX_PASS_IDLE;
	/* once per outbox.poll_interval in any case, for rows not made here */
	if (TimestampDifferenceExceeds(forward_read_at, GetCurrentTimestamp(),
								   outbox_poll_interval))
		forward_wanted = true;
	if (!forward_wanted && !forward_paused &&
		(forward_due_at == 0 || GetCurrentTimestamp() < forward_due_at))
		return OUTBOX_PASS_IDLE;
	forward_read();
	if (nletters == 0)
		return OUTBOX_PASS_IDLE;
	forward_produce(producer);
	return OUTBOX_PASS_PROGRESS;
}

/*
 * New dead letters were recorded: look for forwards at the next pass.
 */
void
outbox_forward_wake(void)
{
	forward_wanted = true;
}

/*
 * True while forwards are in flight (the producer must not be replaced).
 */
bool
outbox_forward_busy(void)
{
	return nletters > 0;
}

/*
 * How long until a forward that failed may be tried again: -1 when none
 * waits, 0 when one can go now.
 */
long
outbox_forward_due_in_ms(void)
{
	long		secs;
	int			usecs;

	if (outbox_dead_letter_topic_suffix[0] == '\0' || nletters > 0 || forward_paused)
		return -1;
	if (forward_wanted)
		return 0;
	if (forward_due_at == 0)
		return -1;
	TimestampDifference(GetCurrentTimestamp(), forward_due_at, &secs, &usecs);
	return secs * 1000 + (usecs + 999) / 1000;
}
