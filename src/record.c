/*-------------------------------------------------------------------------
 *
 * record.c
 *	  A Kafka record as a subscription's handler gets it: the composite
 *	  type outbox.message, built from a message just consumed or from a
 *	  consumer dead letter being replayed, and the id the inbox knows it
 *	  by.
 *
 * payload is the value as jsonb when it is JSON text (checked with the
 * JSON parser first, so a value that is not JSON gives NULL, not an
 * error); headers are an object of strings, a header that is not text
 * being null and of repeated names the last counting; event_id, event_type
 * are the CloudEvents binary-mode headers ce_id and ce_type, time is
 * ce_time when it is an RFC 3339 date-time, else the record's timestamp.
 * Text that is not valid in the database's encoding is NULL.  A record
 * whose ce_type is a registered event type with a schema is checked
 * against it (outbox_record_violations()) before any handler sees it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "inbox.h"
#include "jsonformat.h"
#include "jsonschema.h"
#include "record.h"
#include "registry.h"

/* Columns of outbox.message */
enum
{
	MSG_TOPIC,
	MSG_PARTITION,
	MSG_OFFSET,
	MSG_KEY,
	MSG_PAYLOAD,
	MSG_VALUE,
	MSG_HEADERS,
	MSG_EVENT_ID,
	MSG_EVENT_TYPE,
	MSG_TIME,
	MSG_NATTS
};

/*
 * bytes as text of the database's encoding, or NULL when they are not
 * (invalid, or holding a NUL byte).
 */
static char *
record_text(const void *bytes, size_t len)
{
	if (bytes == NULL || len > MaxAllocSize - 1 ||
		memchr(bytes, '\0', len) != NULL ||
		!pg_verify_mbstr(GetDatabaseEncoding(), bytes, (int) len, true))
		return NULL;
	return pnstrdup(bytes, len);
}

/*
 * A message's headers as jsonb, and the CloudEvents attributes that
 * outbox.message has columns for; *ce_time the ce_time header's text.
 */
static void
record_headers(OutboxRecord *rec, const rd_kafka_message_t *msg, char **ce_time)
{
	rd_kafka_headers_t *hdrs = NULL;
	StringInfoData buf;
	const char *name;
	const void *value;
	size_t		size;
	size_t		i;

	if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		rd_kafka_header_cnt(hdrs) == 0)
		return;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) ==
		 RD_KAFKA_RESP_ERR_NO_ERROR; i++)
	{
		char	   *text_name = record_text(name, strlen(name));
		char	   *text_value = record_text(value, size);

		if (text_name == NULL)
			continue;
		if (buf.len > 1)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, text_name);
		appendStringInfoChar(&buf, ':');
		if (text_value == NULL)
		{
			appendStringInfoString(&buf, "null");
			continue;
		}
		escape_json(&buf, text_value);
		if (strcmp(text_name, "ce_id") == 0)
			rec->event_id = text_value;
		else if (strcmp(text_name, "ce_type") == 0)
			rec->event_type = text_value;
		else if (strcmp(text_name, "ce_time") == 0)
			*ce_time = text_value;
	}
	appendStringInfoChar(&buf, '}');
	rec->headers = DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
	rec->headers_null = false;
}

/*
 * The parts of a message just consumed; they point into msg, which must
 * outlive rec.
 */
void
outbox_record_from_kafka(OutboxRecord *rec, const rd_kafka_message_t *msg)
{
	char	   *ce_time = NULL;
	rd_kafka_timestamp_type_t type;
	int64		ms;

	memset(rec, 0, sizeof(OutboxRecord));
	rec->headers_null = true;
	rec->topic = rd_kafka_topic_name(msg->rkt);
	rec->partition = msg->partition;
	rec->offset = msg->offset;
	rec->key_bytes = msg->key;
	rec->key_len = msg->key_len;
	rec->value = msg->payload;
	rec->value_len = msg->len;
	record_headers(rec, msg, &ce_time);

	if (ce_time != NULL &&
		outbox_json_format_check(JSON_FORMAT_DATE_TIME, ce_time, strlen(ce_time)))
	{
		rec->time = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
															CStringGetDatum(ce_time),
															ObjectIdGetDatum(InvalidOid),
															Int32GetDatum(-1)));
		rec->has_time = true;
		return;
	}
	ms = rd_kafka_message_timestamp(msg, &type);
	if (type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ms < 0)
		return;
	rec->time = (TimestampTz) ((ms - (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
								SECS_PER_DAY * 1000) * 1000);
	rec->has_time = true;
}

/*
 * The value as jsonb when it is JSON text, else false; parsed on the first
 * call (the contract check and the message both want it), in the memory
 * context current then.
 */
bool
outbox_record_payload(OutboxRecord *rec, Datum *payload)
{
	char	   *text;
	JsonLexContext *lex;

	if (rec->payload_known)
	{
		*payload = rec->payload;
		return rec->has_payload;
	}
	rec->payload_known = true;
	text = record_text(rec->value, rec->value_len);
	if (text == NULL || rec->value_len == 0)
		return false;
#if PG_VERSION_NUM >= 170000
	lex = makeJsonLexContextCstringLen(NULL, text, (int) rec->value_len,
									   GetDatabaseEncoding(), true);
#else
	lex = makeJsonLexContextCstringLen(text, (int) rec->value_len,
									   GetDatabaseEncoding(), true);
#endif
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
		return false;
	rec->payload = DirectFunctionCall1(jsonb_in, CStringGetDatum(text));
	rec->has_payload = true;
	*payload = rec->payload;
	return true;
}

/* Bytes as a bytea Datum */
Datum
outbox_record_bytea(const char *bytes, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), bytes, len);
	return PointerGetDatum(b);
}

/* A text Datum, or a null */
static Datum
record_text_datum(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * The record as an outbox.message Datum (desc: the type's blessed
 * descriptor).
 */
Datum
outbox_record_message(TupleDesc desc, OutboxRecord *rec)
{
	Datum		values[MSG_NATTS];
	bool		nulls[MSG_NATTS];

	memset(nulls, 0, sizeof(nulls));
	values[MSG_TOPIC] = CStringGetTextDatum(rec->topic);
	values[MSG_PARTITION] = Int32GetDatum(rec->partition);
	values[MSG_OFFSET] = Int64GetDatum(rec->offset);
	values[MSG_KEY] = record_text_datum(rec->key_bytes ? record_text(rec->key_bytes, rec->key_len) : NULL,
										&nulls[MSG_KEY]);
	nulls[MSG_PAYLOAD] = !outbox_record_payload(rec, &values[MSG_PAYLOAD]);
	nulls[MSG_VALUE] = (rec->value == NULL);
	if (rec->value != NULL)
		values[MSG_VALUE] = outbox_record_bytea(rec->value, rec->value_len);
	values[MSG_HEADERS] = rec->headers;
	nulls[MSG_HEADERS] = rec->headers_null;
	values[MSG_EVENT_ID] = record_text_datum(rec->event_id, &nulls[MSG_EVENT_ID]);
	values[MSG_EVENT_TYPE] = record_text_datum(rec->event_type, &nulls[MSG_EVENT_TYPE]);
	values[MSG_TIME] = TimestampTzGetDatum(rec->time);
	nulls[MSG_TIME] = !rec->has_time;
	return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
}

/*
 * The id the inbox knows the record by: its ce_id, else where Kafka wrote
 * it ("topic/partition/offset").
 */
Datum
outbox_record_inbox_id(const OutboxRecord *rec)
{
	char	   *id;

	if (rec->event_id != NULL && rec->event_id[0] != '\0')
		return outbox_inbox_text_id(rec->event_id, strlen(rec->event_id));
	id = psprintf("%s/%d/" INT64_FORMAT, rec->topic, rec->partition, rec->offset);
	return outbox_inbox_text_id(id, strlen(id));
}

/*
 * The type outbox.message of this database.
 */
Oid
outbox_message_type(void)
{
	return GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("message"),
						   ObjectIdGetDatum(get_namespace_oid("outbox", false)));
}

/*
 * outbox.message's descriptor, blessed, for outbox_record_message(); in
 * the current memory context.
 */
TupleDesc
outbox_message_desc(void)
{
	TupleDesc	desc = lookup_rowtype_tupdesc_copy(outbox_message_type(), -1);

	return BlessTupleDesc(desc);
}

/*
 * Why the record breaks the contract of its event type, or NULL: when its
 * ce_type is registered with a schema, its payload must be JSON that
 * matches it (as publish() checks, every violation with its JSON pointer,
 * up to a readable number).
 */
char *
outbox_record_violations(OutboxRecord *rec)
{
	OutboxEventType *t;
	StringInfoData violations;
	Datum		payload;
	int			n;

	if (rec->event_type == NULL ||
		(t = outbox_registry_lookup(rec->event_type)) == NULL || t->schema == NULL)
		return NULL;
	if (!outbox_record_payload(rec, &payload))
		return psprintf("the value is not JSON, and event type \"%s\" has a schema", t->name);
	initStringInfo(&violations);
	n = outbox_schema_validate(t->schema, DatumGetJsonbP(payload), &violations,
							   OUTBOX_SCHEMA_MAX_VIOLATIONS);
	if (n == 0)
		return NULL;
	if (n > OUTBOX_SCHEMA_MAX_VIOLATIONS)
		appendStringInfo(&violations, "; and %d more", n - OUTBOX_SCHEMA_MAX_VIOLATIONS);
	return psprintf("payload does not match the schema of event type \"%s\": %s",
					t->name, violations.data);
}
