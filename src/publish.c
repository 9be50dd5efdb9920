/*-------------------------------------------------------------------------
 *
 * publish.c
 *	  outbox.publish() and outbox.publish_binary(): validate an event, write
 *	  it to outbox.events in the caller's transaction, and wake the relay of
 *	  the database when that transaction commits.
 *
 * The row is inserted directly (heap insert plus index entries) rather than
 * through SPI: it is cheaper, it runs no SQL a caller's search_path could
 * redirect, and it needs no table privilege, so EXECUTE on the function
 * (granted to outbox_publisher) is the only right a publisher needs.
 *
 * Wake-up: a transaction callback, registered once per backend, sets the
 * relay's latch at COMMIT when the transaction published; at ABORT it only
 * forgets.  The same callback wakes the launcher after CREATE EXTENSION, and
 * the relay after DROP EXTENSION (ddl.c), so that it exits at once rather
 * than at its next poll.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "events.h"
#include "horizon.h"
#include "outbox.h"
#include "message.h"
#include "scan.h"
#include "shmem.h"

/* Longest Kafka topic name */
#define OUTBOX_MAX_TOPIC_LEN 249
/* Longest event_type, source and content_type */
#define OUTBOX_MAX_ATTR_LEN 1024

static bool wake_relay_pending = false;
static bool wake_launcher_pending = false;
static bool xact_callback_registered = false;

PG_FUNCTION_INFO_V1(outbox_publish);
PG_FUNCTION_INFO_V1(outbox_publish_binary);
PG_FUNCTION_INFO_V1(outbox_wake_relay);
PG_FUNCTION_INFO_V1(outbox_nudge_relay);

/*
 * At commit, wake whoever the transaction asked for; at abort, forget.
 */
static void
outbox_xact_callback(XactEvent event, void *arg)
{
	/* first, so that a woken relay finds this transaction ended */
	outbox_horizon_xact_event(event);
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_relay_pending)
				outbox_set_latch_of_database(MyDatabaseId);
			if (wake_launcher_pending)
				outbox_request_relay(MyDatabaseId);
			wake_relay_pending = false;
			wake_launcher_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_relay_pending = false;
			wake_launcher_pending = false;
			break;
		default:
			break;
	}
}

static void
outbox_register_xact_callback(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(outbox_xact_callback, NULL);
		xact_callback_registered = true;
	}
}

/*
 * Ask for this database's relay to be woken when the transaction commits.
 */
void
outbox_wake_relay_at_commit(void)
{
	outbox_register_xact_callback();
	wake_relay_pending = true;
}

/*
 * Ask for the launcher to be woken when the transaction commits.
 */
void
outbox_wake_launcher_at_commit(void)
{
	outbox_register_xact_callback();
	wake_launcher_pending = true;
}

/*
 * A new UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, 12 bits of
 * sub-millisecond time, then 62 random bits.  Ids from one backend are
 * strictly increasing even when the clock stalls or steps back.
 */
static pg_uuid_t *
outbox_new_uuid_v7(void)
{
	static uint64 last_tick = 0;	/* (ms << 12) | sub-ms fraction */
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	struct timespec ts;
	uint64		ms;
	uint64		tick;

	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	tick = (ms << 12) | (((uint64) (ts.tv_nsec % 1000000) * 4096) / 1000000);
	if (tick <= last_tick)
		tick = last_tick + 1;
	last_tick = tick;

	if (!pg_strong_random(uuid->data + 8, 8))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes for an event id")));

	ms = tick >> 12;
	uuid->data[0] = (unsigned char) (ms >> 40);
	uuid->data[1] = (unsigned char) (ms >> 32);
	uuid->data[2] = (unsigned char) (ms >> 24);
	uuid->data[3] = (unsigned char) (ms >> 16);
	uuid->data[4] = (unsigned char) (ms >> 8);
	uuid->data[5] = (unsigned char) ms;
	uuid->data[6] = (unsigned char) (0x70 | ((tick >> 8) & 0x0F));
	uuid->data[7] = (unsigned char) (tick & 0xFF);
	uuid->data[8] = (unsigned char) (0x80 | (uuid->data[8] & 0x3F));
	return uuid;
}

/*
 * A Kafka topic name: 1 to 249 characters of [a-zA-Z0-9._-], not "." or "..".
 */
static void
outbox_check_topic(text *topic)
{
	const char *s = VARDATA_ANY(topic);
	int			len = VARSIZE_ANY_EXHDR(topic);
	int			i;

	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic must not be empty")));
	if (len > OUTBOX_MAX_TOPIC_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic is too long"),
				 errdetail("A Kafka topic name has at most %d characters; this one has %d.",
						   OUTBOX_MAX_TOPIC_LEN, len)));
	if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic must not be \".\" or \"..\"")));
	for (i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("topic \"%s\" contains an invalid character",
							text_to_cstring(topic)),
					 errdetail("A Kafka topic name may contain only ASCII letters, digits, \".\", \"_\" and \"-\".")));
	}
}

/* outbox_headers_walk callback of outbox_check_headers: one header */
static void
outbox_check_header(const char *name, int name_len, JsonbValue *v, void *arg)
{
	Size	   *size = (Size *) arg;

	if (name_len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must not have an empty name")));
	if (outbox_header_is_reserved(name, name_len))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("header name \"%s\" is reserved by outbox",
						pnstrdup(name, name_len)),
				 errdetail("outbox sets ce_specversion, ce_id, ce_source, ce_type, ce_time, content-type and traceparent itself, and keeps ce_datacontenttype and names starting with x-outbox- (compared without regard to case)."),
				 errhint("Use the event_type, source or traceparent argument; other ce_* extension attributes may be given.")));
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object of strings"),
				 errdetail("The value of header \"%s\" is not a string.",
						   pnstrdup(name, name_len))));
	*size += name_len + v->val.string.len;
}

/*
 * headers must be a JSON object of strings with none of the names outbox
 * sets itself; returns the bytes its names and values add to the message.
 */
static Size
outbox_check_headers(Jsonb *headers)
{
	Size		size = 0;

	if (!JB_ROOT_IS_OBJECT(headers) || JB_ROOT_IS_SCALAR(headers))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("headers must be a JSON object of strings"),
				 errdetail("Pass headers like '{\"x-tenant\": \"acme\"}'.")));
	outbox_headers_walk(headers, outbox_check_header, &size);
	return size;
}

/*
 * An optional text argument: NULL or non-empty and at most maxlen bytes.
 */
static void
outbox_check_optional_text(FunctionCallInfo fcinfo, int argno,
						   const char *argname, int maxlen)
{
	text	   *t;
	int			len;

	if (PG_ARGISNULL(argno))
		return;
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", argname),
				 errhint("Pass NULL to use the default.")));
	if (maxlen > 0 && len > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", argname),
				 errdetail("It may have at most %d bytes.", maxlen)));
}

/*
 * traceparent, when given, must be a valid W3C trace context header.
 */
static void
outbox_check_traceparent(text *tp)
{
	if (!outbox_traceparent_is_valid(VARDATA_ANY(tp), VARSIZE_ANY_EXHDR(tp)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("traceparent is not a W3C trace context header"),
				 errdetail("Expected a value like \"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\": lower-case hex, a version other than ff, and a trace id and parent id that are not all zeros.")));
}

/*
 * Insert one row into outbox.events without going through SQL: heap insert
 * plus index entries, the identity taken from outbox.events_id_seq.
 */
static void
outbox_insert_event(Datum *values, bool *nulls)
{
	Relation	rel = outbox_events_open(RowExclusiveLock);
	Oid			seqid = get_relname_relid("events_id_seq", RelationGetNamespace(rel));
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;

	if (!OidIsValid(seqid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table outbox.events does not exist"),
				 errhint("Run CREATE EXTENSION outbox or ALTER EXTENSION outbox UPDATE.")));

	/* the caller has asked for a wake-up, which registered our callback */
	outbox_horizon_enter();
	values[EV_ID - 1] = Int64GetDatum(nextval_internal(seqid, false));
	nulls[EV_ID - 1] = false;

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
	memcpy(slot->tts_values, values, sizeof(Datum) * EV_NATTS);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * EV_NATTS);
	ExecStoreVirtualTuple(slot);

	simple_table_tuple_insert(rel, slot);
#if PG_VERSION_NUM >= 160000
	ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL, false);
#else
	ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif

	ExecDropSingleTupleTableSlot(slot);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

/*
 * outbox.commit_order: lock the (topic, key) until the transaction ends,
 * before the row gets its id.  A second transaction publishing for the same
 * key waits until the first ends, so ids of one key follow commit order,
 * and the relay, which reads in id order, delivers in commit order.
 *
 * The lock is of the "userlock" type, which no SQL function takes (unlike
 * advisory locks, which any role could take on the same keys to stall a
 * publisher), in this database, on (hash of topic, hash of key,
 * OUTBOX_LOCK_CLASS).  It is held in the transaction's lock set, so deadlock
 * detection and release at commit or abort are PostgreSQL's own.
 */
#define OUTBOX_LOCK_CLASS 0x0B0C

static void
outbox_lock_key(text *topic, text *key)
{
	LOCKTAG		tag;

	tag.locktag_field1 = MyDatabaseId;
	tag.locktag_field2 = hash_bytes((const unsigned char *) VARDATA_ANY(topic),
									VARSIZE_ANY_EXHDR(topic));
	tag.locktag_field3 = hash_bytes((const unsigned char *) VARDATA_ANY(key),
									VARSIZE_ANY_EXHDR(key));
	tag.locktag_field4 = OUTBOX_LOCK_CLASS;
	tag.locktag_type = LOCKTAG_USERLOCK;
	tag.locktag_lockmethodid = USER_LOCKMETHOD;
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/*
 * The work shared by publish() and publish_binary(): argument positions are
 * the same in both (topic, payload, key, headers, event_type, source,
 * traceparent[, content_type]); value is the payload's bytes or NULL.
 */
static Datum
outbox_publish_common(FunctionCallInfo fcinfo, bytea *value,
					  const char *content_type)
{
	Datum		values[EV_NATTS];
	bool		nulls[EV_NATTS];
	text	   *topic;
	Size		size = 0;
	pg_uuid_t  *event_id;
	int			i;

	outbox_require_preload();
	/* the insert below bypasses the executor, so check what it would */
	PreventCommandIfReadOnly("outbox.publish()");
	PreventCommandDuringRecovery("outbox.publish()");

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be null")));
	topic = PG_GETARG_TEXT_PP(0);
	outbox_check_topic(topic);

	if (value != NULL)
		size += VARSIZE_ANY_EXHDR(value);
	if (!PG_ARGISNULL(2))
		size += VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(2));
	if (!PG_ARGISNULL(3))
		size += outbox_check_headers(PG_GETARG_JSONB_P(3));
	outbox_check_optional_text(fcinfo, 4, "event_type", OUTBOX_MAX_ATTR_LEN);
	outbox_check_optional_text(fcinfo, 5, "source", OUTBOX_MAX_ATTR_LEN);
	if (!PG_ARGISNULL(6))
		outbox_check_traceparent(PG_GETARG_TEXT_PP(6));
	if (size > (Size) outbox_max_message_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload is too large for a Kafka message"),
				 errdetail("payload, key and headers take %zu bytes; outbox.max_message_size is %d.",
						   size, outbox_max_message_size)));

	for (i = 0; i < EV_NATTS; i++)
		nulls[i] = true;

	event_id = outbox_new_uuid_v7();
	values[EV_EVENT_ID - 1] = UUIDPGetDatum(event_id);
	nulls[EV_EVENT_ID - 1] = false;
	values[EV_TOPIC - 1] = PointerGetDatum(topic);
	nulls[EV_TOPIC - 1] = false;
	if (!PG_ARGISNULL(2))
	{
		values[EV_KEY - 1] = PG_GETARG_DATUM(2);
		nulls[EV_KEY - 1] = false;
	}
	if (value != NULL)
	{
		values[EV_PAYLOAD - 1] = PointerGetDatum(value);
		nulls[EV_PAYLOAD - 1] = false;
	}
	for (i = 3; i <= 6; i++)
	{
		if (!PG_ARGISNULL(i))
		{
			values[EV_HEADERS - 1 + (i - 3)] = PG_GETARG_DATUM(i);
			nulls[EV_HEADERS - 1 + (i - 3)] = false;
		}
	}
	values[EV_CONTENT_TYPE - 1] = CStringGetTextDatum(content_type);
	nulls[EV_CONTENT_TYPE - 1] = false;
	values[EV_CREATED_AT - 1] = TimestampTzGetDatum(GetCurrentTimestamp());
	nulls[EV_CREATED_AT - 1] = false;
	values[EV_ATTEMPTS - 1] = Int32GetDatum(0);
	nulls[EV_ATTEMPTS - 1] = false;

	if (outbox_commit_order && !PG_ARGISNULL(2))
		outbox_lock_key(topic, PG_GETARG_TEXT_PP(2));
	outbox_wake_relay_at_commit();
	outbox_insert_event(values, nulls);

	PG_RETURN_UUID_P(event_id);
}

/*
 * outbox.publish(topic text, payload jsonb, key text, headers jsonb,
 *				  event_type text, source text, traceparent text) RETURNS uuid
 *
 * A NULL payload publishes a tombstone (a Kafka record with a null value).
 */
Datum
outbox_publish(PG_FUNCTION_ARGS)
{
	bytea	   *value = NULL;

	if (!PG_ARGISNULL(1))
	{
		Jsonb	   *payload = PG_GETARG_JSONB_P(1);
		char	   *json = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
		int			len;

		/* JSON on the wire is UTF-8 (RFC 8259), whatever the database's encoding */
		json = pg_server_to_any(json, strlen(json), PG_UTF8);
		len = strlen(json);

		value = palloc(VARHDRSZ + len);
		SET_VARSIZE(value, VARHDRSZ + len);
		memcpy(VARDATA(value), json, len);
	}
	return outbox_publish_common(fcinfo, value, "application/json");
}

/*
 * outbox.publish_binary(topic text, payload bytea, key text, headers jsonb,
 *						 event_type text, source text, traceparent text,
 *						 content_type text) RETURNS uuid
 *
 * For Avro, Protobuf or any bytes; content_type names the encoding.
 */
Datum
outbox_publish_binary(PG_FUNCTION_ARGS)
{
	bytea	   *value = PG_ARGISNULL(1) ? NULL : PG_GETARG_BYTEA_PP(1);
	char	   *content_type = "application/octet-stream";

	if (!PG_ARGISNULL(7))
	{
		outbox_check_optional_text(fcinfo, 7, "content_type", OUTBOX_MAX_ATTR_LEN);
		content_type = text_to_cstring(PG_GETARG_TEXT_PP(7));
	}
	return outbox_publish_common(fcinfo, value, content_type);
}

/*
 * outbox._wake_relay(): for SQL that queues events without publish()
 * (replay_dead_letters): marks the transaction as taking event ids
 * (horizon.c), and wakes the relay at commit so it does not wait for its
 * poll interval.
 */
Datum
outbox_wake_relay(PG_FUNCTION_ARGS)
{
	outbox_require_preload();
	outbox_wake_relay_at_commit();
	outbox_horizon_enter();
	PG_RETURN_VOID();
}

/*
 * outbox._nudge_relay(): wakes the relay at commit and nothing else, for
 * pause_relay() and resume_relay(), which take no event ids: they neither
 * hold back the relay's read horizon nor stop PREPARE TRANSACTION.
 */
Datum
outbox_nudge_relay(PG_FUNCTION_ARGS)
{
	outbox_require_preload();
	outbox_wake_relay_at_commit();
	PG_RETURN_VOID();
}
