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
#include "catalog/pg_proc.h"
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
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "causation.h"
#include "events.h"
#include "horizon.h"
#include "outbox.h"
#include "message.h"
#include "registry.h"
#include "scan.h"
#include "shmem.h"

/* Longest Kafka topic name */
#define OUTBOX_MAX_TOPIC_LEN 249
/* Longest event_type, source and content_type */
#define OUTBOX_MAX_ATTR_LEN 1024

static bool wake_relay_pending = false;
static bool release_waiting_pending = false;
static bool wake_launcher_pending = false;
static bool wake_consumer_pending = false;
static bool xact_callback_registered = false;

PG_FUNCTION_INFO_V1(outbox_publish);
PG_FUNCTION_INFO_V1(outbox_publish_binary);
PG_FUNCTION_INFO_V1(outbox_wake_relay);
PG_FUNCTION_INFO_V1(outbox_nudge_relay);
PG_FUNCTION_INFO_V1(outbox_release_waiting);

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
			if (wake_relay_pending || release_waiting_pending)
				outbox_wake_relay_of_database(MyDatabaseId, release_waiting_pending);
			if (wake_launcher_pending)
				outbox_request_relay(MyDatabaseId);
			if (wake_consumer_pending)
				outbox_wake_consumer_of_database(MyDatabaseId);
			wake_relay_pending = false;
			release_waiting_pending = false;
			wake_launcher_pending = false;
			wake_consumer_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_relay_pending = false;
			release_waiting_pending = false;
			wake_launcher_pending = false;
			wake_consumer_pending = false;
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
 * Ask for this database's consumer to read the subscriptions again (and to
 * be started when none runs) when the transaction commits.
 */
void
outbox_wake_consumer_at_commit(void)
{
	outbox_register_xact_callback();
	wake_consumer_pending = true;
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
void
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
				 errdetail("outbox sets ce_specversion, ce_id, ce_source, ce_type, ce_time, content-type, traceparent, ce_derivedfrom, ce_causationid and ce_correlationid itself, and keeps ce_datacontenttype and names starting with x-outbox- (compared without regard to case)."),
				 errhint("Use the event_type, source, traceparent, correlation_id or causation_id argument; other ce_* extension attributes may be given.")));
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
	/* a database still at 1.1 has no forwarded_at: the columns before it */
	memcpy(slot->tts_values, values, sizeof(Datum) * RelationGetDescr(rel)->natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * RelationGetDescr(rel)->natts);
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

/* One event to write, and what publish() checked about it */
typedef struct PublishEvent
{
	text	   *topic;
	bytea	   *value;			/* NULL: a tombstone */
	Jsonb	   *headers;		/* NULL: none */
	text	   *event_type;		/* NULL: none */
	pg_uuid_t  *event_id;
	TimestampTz deliver_at;		/* 0: at once */
} PublishEvent;

/*
 * The error of a payload that does not match the schema of its event type:
 * every violation, with its JSON pointer, up to a readable number.
 */
static void
outbox_check_payload(OutboxEventType *t, Jsonb *payload, bool derived)
{
	StringInfoData violations;
	int			n;

	initStringInfo(&violations);
	n = outbox_schema_validate(t->schema, payload, &violations,
							   OUTBOX_SCHEMA_MAX_VIOLATIONS);
	if (n == 0)
		return;
	if (n > OUTBOX_SCHEMA_MAX_VIOLATIONS)
		appendStringInfo(&violations, "; and %d more", n - OUTBOX_SCHEMA_MAX_VIOLATIONS);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 derived ?
			 errmsg("payload derived for event type \"%s\" does not match its schema", t->name) :
			 errmsg("payload does not match the schema of event type \"%s\"", t->name),
			 errdetail_internal("%s", violations.data)));
}

/* True once the transaction's time is past t's deprecation date */
static bool
outbox_is_deprecated(OutboxEventType *t)
{
	return t->has_deprecation &&
		GetCurrentTransactionStartTimestamp() > t->deprecated_after;
}

/*
 * Publishing a deprecated type: a WARNING, an ERROR, or nothing, as
 * outbox.deprecated_types says, naming the successor when one is
 * registered.
 */
static void
outbox_check_deprecation(OutboxEventType *t)
{
	char	   *successor;

	if (outbox_deprecated_types == OUTBOX_DEPRECATED_ALLOW || !outbox_is_deprecated(t))
		return;
	successor = outbox_registry_successor(t->name);
	ereport(outbox_deprecated_types == OUTBOX_DEPRECATED_ERROR ? ERROR : WARNING,
			(errcode(outbox_deprecated_types == OUTBOX_DEPRECATED_ERROR ?
					 ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE :
					 ERRCODE_WARNING_DEPRECATED_FEATURE),
			 errmsg("event type \"%s\" is deprecated since %s", t->name,
					timestamptz_to_str(t->deprecated_after)),
			 successor ?
			 errhint("Publish \"%s\" instead.", successor) :
			 errhint("No later version of it is registered.")));
}

/* The bytes of a JSON payload as sent: its text, in UTF-8 (RFC 8259) */
static bytea *
outbox_json_value(Jsonb *payload)
{
	char	   *json = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
	bytea	   *value;
	int			len;

	json = pg_server_to_any(json, strlen(json), PG_UTF8);
	len = strlen(json);
	value = palloc(VARHDRSZ + len);
	SET_VARSIZE(value, VARHDRSZ + len);
	memcpy(VARDATA(value), json, len);
	return value;
}

/*
 * The payload of derived type d for a source payload: d's function,
 * called as the caller (its EXECUTE right checked: fmgr does not) with
 * search_path pinned, so the function resolves no name the caller's
 * search_path could redirect.
 */
static Jsonb *
outbox_derive(OutboxEventType *d, Jsonb *payload)
{
	LOCAL_FCINFO(call, 1);
	FmgrInfo	flinfo;
	AclResult	aclresult;
	Datum		result;
	int			nest;

	if (!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(d->derive_with)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the derive_with function of event type \"%s\" no longer exists", d->name),
				 errhint("Register the type again with a function, or drop it.")));
	aclresult = outbox_proc_aclcheck(d->derive_with, GetUserId(), ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(d->derive_with));

	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	fmgr_info(d->derive_with, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, 1, InvalidOid, NULL, NULL);
	call->args[0].value = JsonbPGetDatum(payload);
	call->args[0].isnull = false;
	result = FunctionCallInvoke(call);
	AtEOXact_GUC(true, nest);
	if (call->isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the derive_with function of event type \"%s\" returned NULL", d->name),
				 errhint("%s must return the payload of \"%s\".",
						 format_procedure(d->derive_with), d->name)));
	return DatumGetJsonbP(result);
}

/*
 * Write one event: the row of ev, with key, source and traceparent from
 * the call's arguments.
 */
static void
outbox_write_event(FunctionCallInfo fcinfo, PublishEvent *ev,
				   const char *content_type)
{
	Datum		values[EV_NATTS];
	bool		nulls[EV_NATTS];
	int			i;

	for (i = 0; i < EV_NATTS; i++)
		nulls[i] = true;
	values[EV_EVENT_ID - 1] = UUIDPGetDatum(ev->event_id);
	nulls[EV_EVENT_ID - 1] = false;
	values[EV_TOPIC - 1] = PointerGetDatum(ev->topic);
	nulls[EV_TOPIC - 1] = false;
	if (!PG_ARGISNULL(2))
	{
		values[EV_KEY - 1] = PG_GETARG_DATUM(2);
		nulls[EV_KEY - 1] = false;
	}
	if (ev->value != NULL)
	{
		values[EV_PAYLOAD - 1] = PointerGetDatum(ev->value);
		nulls[EV_PAYLOAD - 1] = false;
	}
	if (ev->headers != NULL)
	{
		values[EV_HEADERS - 1] = JsonbPGetDatum(ev->headers);
		nulls[EV_HEADERS - 1] = false;
	}
	if (ev->event_type != NULL)
	{
		values[EV_EVENT_TYPE - 1] = PointerGetDatum(ev->event_type);
		nulls[EV_EVENT_TYPE - 1] = false;
	}
	for (i = 5; i <= 6; i++)
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
	if (ev->deliver_at != 0)
	{
		values[EV_NEXT_ATTEMPT_AT - 1] = TimestampTzGetDatum(ev->deliver_at);
		nulls[EV_NEXT_ATTEMPT_AT - 1] = false;
	}

	if (outbox_commit_order && !PG_ARGISNULL(2))
		outbox_lock_key(ev->topic, PG_GETARG_TEXT_PP(2));
	outbox_insert_event(values, nulls);
}

/* payload, key and headers must fit in a Kafka message */
static void
outbox_check_size(FunctionCallInfo fcinfo, PublishEvent *ev, Size headers_size)
{
	Size		size = headers_size;

	if (ev->value != NULL)
		size += VARSIZE_ANY_EXHDR(ev->value);
	if (!PG_ARGISNULL(2))
		size += VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(2));
	if (size > (Size) outbox_max_message_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("payload is too large for a Kafka message"),
				 errdetail("payload, key and headers take %zu bytes; outbox.max_message_size is %d.",
						   size, outbox_max_message_size)));
}

/*
 * When an event may go, from the deliver_at argument at argno (absent in a
 * database still at 1.1): 0 for at once, when there is none or it is not in
 * the future.  Infinity would never go, and is refused.
 */
static TimestampTz
outbox_deliver_at(FunctionCallInfo fcinfo, int argno)
{
	TimestampTz t;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return 0;
	t = PG_GETARG_TIMESTAMPTZ(argno);
	if (TIMESTAMP_IS_NOEND(t))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deliver_at must be a finite time"),
				 errdetail("An event to be delivered at infinity would never be."),
				 errhint("Pass NULL to deliver it at once.")));
	return t > GetCurrentTimestamp() ? t : 0;
}

/*
 * headers plus ce_causationid and ce_correlationid, from the correlation_id
 * and causation_id arguments (at ids_arg and the next; absent in a database
 * still at 1.1) or the transaction's last receive() (causation.c).
 */
static Jsonb *
outbox_add_causation(FunctionCallInfo fcinfo, int ids_arg, Jsonb *headers, Size *size)
{
	const char *correlation_arg = NULL;
	const char *causation_arg = NULL;
	const char *causation;
	const char *correlation;

	if (PG_NARGS() > ids_arg + 1)
	{
		outbox_check_optional_text(fcinfo, ids_arg, "correlation_id", OUTBOX_MAX_ATTR_LEN);
		outbox_check_optional_text(fcinfo, ids_arg + 1, "causation_id", OUTBOX_MAX_ATTR_LEN);
		if (!PG_ARGISNULL(ids_arg))
			correlation_arg = text_to_cstring(PG_GETARG_TEXT_PP(ids_arg));
		if (!PG_ARGISNULL(ids_arg + 1))
			causation_arg = text_to_cstring(PG_GETARG_TEXT_PP(ids_arg + 1));
	}
	outbox_causation_for_publish(causation_arg, correlation_arg, &causation, &correlation);
	if (causation != NULL)
	{
		headers = outbox_headers_add(headers, "ce_causationid", causation);
		*size += strlen("ce_causationid") + strlen(causation);
	}
	if (correlation != NULL)
	{
		headers = outbox_headers_add(headers, "ce_correlationid", correlation);
		*size += strlen("ce_correlationid") + strlen(correlation);
	}
	return headers;
}

/* headers plus the ce_dataschema of a type with a schema, when configured */
static Jsonb *
outbox_add_dataschema(Jsonb *headers, OutboxEventType *t, Size *size)
{
	Jsonb	   *own;

	if (t->schema == NULL || outbox_schema_uri_prefix == NULL ||
		outbox_schema_uri_prefix[0] == '\0')
		return headers;
	own = outbox_registry_dataschema(t, outbox_schema_uri_prefix);
	*size += strlen("ce_dataschema") + strlen(outbox_schema_uri_prefix) + strlen(t->name);
	if (headers == NULL)
		return own;
	return outbox_headers_add(headers, "ce_dataschema",
							  psprintf("%s%s", outbox_schema_uri_prefix, t->name));
}

/*
 * The events a registered source type's publish() also writes: one per
 * derived type not past its deprecation date, in the registry's order,
 * with the source's headers (the caller's, causation and correlation) and
 * ce_derivedfrom.
 */
static List *
outbox_derived_events(FunctionCallInfo fcinfo, OutboxEventType *source,
					  PublishEvent *src, Jsonb *payload, Jsonb *shared_headers,
					  Size shared_size)
{
	List	   *derived = outbox_registry_derived(source);
	List	   *events = NIL;
	ListCell   *lc;
	char	   *src_id = NULL;

	foreach(lc, derived)
	{
		OutboxEventType *d = lfirst(lc);
		PublishEvent *ev;
		Size		size = shared_size;

		if (outbox_is_deprecated(d))
			continue;
		if (payload == NULL && src->value != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event type \"%s\" has derived types, which need a JSON payload",
							source->name),
					 errhint("Publish it with outbox.publish().")));
		if (src_id == NULL)
			src_id = DatumGetCString(DirectFunctionCall1(uuid_out,
														 UUIDPGetDatum(src->event_id)));
		ev = palloc0(sizeof(PublishEvent));
		ev->topic = d->topic ? cstring_to_text(d->topic) : src->topic;
		ev->event_type = cstring_to_text(d->name);
		ev->event_id = outbox_new_uuid_v7();
		/* a tombstone stays a tombstone: no payload to map */
		if (payload != NULL)
		{
			Jsonb	   *mapped = outbox_derive(d, payload);

			if (d->schema != NULL)
				outbox_check_payload(d, mapped, true);
			ev->value = outbox_json_value(mapped);
		}
		ev->headers = outbox_headers_add(shared_headers, "ce_derivedfrom", src_id);
		size += strlen("ce_derivedfrom") + strlen(src_id);
		ev->headers = outbox_add_dataschema(ev->headers, d, &size);
		outbox_check_size(fcinfo, ev, size);
		events = lappend(events, ev);
	}
	return events;
}

/*
 * The work shared by publish() and publish_binary(): argument positions are
 * the same in both (topic, payload, key, headers, event_type, source,
 * traceparent[, content_type]); value is the payload's bytes or NULL, and
 * payload the jsonb it came from (publish() only).
 *
 * A registered event type: the topic defaults to the registry's, the
 * payload must match the type's schema, a deprecated type warns or fails,
 * and each derived type gets an event of its own, written after this one.
 * Everything is checked before anything is written.
 */
static Datum
outbox_publish_common(FunctionCallInfo fcinfo, bytea *value, Jsonb *payload,
					  const char *content_type, int ids_arg)
{
	PublishEvent ev;
	OutboxEventType *type = NULL;
	List	   *derived = NIL;
	ListCell   *lc;
	Size		headers_size = 0;
	Jsonb	   *shared_headers;
	Size		shared_size;

	outbox_require_preload();
	/* the insert below bypasses the executor, so check what it would */
	PreventCommandIfReadOnly("outbox.publish()");
	PreventCommandDuringRecovery("outbox.publish()");

	memset(&ev, 0, sizeof(ev));
	outbox_check_optional_text(fcinfo, 4, "event_type", OUTBOX_MAX_ATTR_LEN);
	if (!PG_ARGISNULL(4))
	{
		ev.event_type = PG_GETARG_TEXT_PP(4);
		type = outbox_registry_lookup(text_to_cstring(ev.event_type));
	}
	if (type == NULL && outbox_require_registered_types)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 ev.event_type == NULL ?
				 errmsg("event_type must be given") :
				 errmsg("event type \"%s\" is not registered",
						text_to_cstring(ev.event_type)),
				 errdetail("outbox.require_registered_types is on."),
				 errhint("Register it with outbox.register_event_type().")));

	if (!PG_ARGISNULL(0))
		ev.topic = PG_GETARG_TEXT_PP(0);
	else if (type != NULL && type->topic != NULL)
		ev.topic = cstring_to_text(type->topic);
	else
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be null"),
				 type != NULL ?
				 errdetail("Event type \"%s\" is registered without a topic.", type->name) : 0,
				 errhint("Pass a topic, or register the event type with one.")));
	outbox_check_topic(ev.topic);

	if (!PG_ARGISNULL(3))
	{
		headers_size = outbox_check_headers(PG_GETARG_JSONB_P(3));
		ev.headers = PG_GETARG_JSONB_P(3);
	}
	outbox_check_optional_text(fcinfo, 5, "source", OUTBOX_MAX_ATTR_LEN);
	if (!PG_ARGISNULL(6))
		outbox_check_traceparent(PG_GETARG_TEXT_PP(6));
	ev.headers = outbox_add_causation(fcinfo, ids_arg, ev.headers, &headers_size);
	ev.deliver_at = outbox_deliver_at(fcinfo, ids_arg + 2);
	shared_headers = ev.headers;
	shared_size = headers_size;
	ev.value = value;

	if (type != NULL)
	{
		outbox_check_deprecation(type);
		if (type->schema != NULL)
		{
			if (value != NULL && payload == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event type \"%s\" has a JSON schema; its payload cannot be checked as bytes",
								type->name),
						 errhint("Publish it with outbox.publish().")));
			if (ev.headers != NULL &&
				outbox_headers_has(ev.headers, "ce_dataschema"))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("header name \"ce_dataschema\" is set by outbox for event type \"%s\"",
								type->name),
						 errdetail("A registered event type with a schema carries ce_dataschema = outbox.schema_uri_prefix followed by its name.")));
			if (payload != NULL)
				outbox_check_payload(type, payload, false);
			ev.headers = outbox_add_dataschema(ev.headers, type, &headers_size);
		}
	}
	outbox_check_size(fcinfo, &ev, headers_size);

	ev.event_id = outbox_new_uuid_v7();
	if (type != NULL)
		derived = outbox_derived_events(fcinfo, type, &ev, payload, shared_headers,
										shared_size);

	outbox_wake_relay_at_commit();
	outbox_write_event(fcinfo, &ev, content_type);
	foreach(lc, derived)
	{
		PublishEvent *d = lfirst(lc);

		/* a derived event goes with its source */
		d->deliver_at = ev.deliver_at;
		outbox_write_event(fcinfo, d, content_type);
	}

	PG_RETURN_UUID_P(ev.event_id);
}

/*
 * outbox.publish(topic text, payload jsonb, key text, headers jsonb,
 *				  event_type text, source text, traceparent text,
 *				  correlation_id text, causation_id text,
 *				  deliver_at timestamptz) RETURNS uuid
 *
 * A NULL payload publishes a tombstone (a Kafka record with a null value).
 */
Datum
outbox_publish(PG_FUNCTION_ARGS)
{
	Jsonb	   *payload = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);

	return outbox_publish_common(fcinfo, payload ? outbox_json_value(payload) : NULL,
								 payload, "application/json", 7);
}

/*
 * outbox.publish_binary(topic text, payload bytea, key text, headers jsonb,
 *						 event_type text, source text, traceparent text,
 *						 content_type text, correlation_id text,
 *						 causation_id text, deliver_at timestamptz) RETURNS uuid
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
	return outbox_publish_common(fcinfo, value, NULL, content_type, 8);
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

/*
 * outbox._release_waiting(): for replay_dead_letters() and
 * discard_dead_letters(), which may release a key that events wait behind:
 * at commit the relay is told to look at the waiting events again, and
 * woken.  Otherwise the relay looks at them only when one comes due.
 */
Datum
outbox_release_waiting(PG_FUNCTION_ARGS)
{
	outbox_require_preload();
	outbox_register_xact_callback();
	release_waiting_pending = true;
	PG_RETURN_VOID();
}
