/*-------------------------------------------------------------------------
 *
 * message.c
 *	  A row of outbox.events becomes a Kafka message: the payload as value,
 *	  the key, and headers in CloudEvents binary content mode (ce_specversion,
 *	  ce_id, ce_source, ce_type, ce_time, content-type), then the traceparent
 *	  when given, then the caller's own headers.
 *
 * The header names outbox sets (and a few it reserves) may not come from a
 * caller: a consumer that keeps the last value of a repeated header would
 * otherwise see a forged ce_id, and CloudEvents SDKs refuse a doubled
 * content-type.  publish() refuses them (outbox_header_is_reserved); the
 * relay drops any that reached a row some other way, so a message never
 * carries two of them.
 *
 * Encoding: JSON on the wire is UTF-8 (RFC 8259) and consumers decode keys
 * and headers as UTF-8, so text leaving a database whose encoding is not
 * UTF-8 is converted here (publish() converts a JSON payload when it stores
 * it); binary payloads are sent unchanged.  SQL_ASCII databases have no
 * known encoding: their bytes are sent as they are.
 *
 * Everything is allocated in the current memory context, which the caller
 * keeps until the message's delivery report was served.  Must run inside a
 * transaction (encoding conversion looks up its conversion function).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "message.h"
#include "outbox.h"

/* Header names outbox sets, or keeps for itself, compared case-insensitively */
static const char *const outbox_reserved_headers[] = {
	"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time",
	"ce_datacontenttype", "content-type", "traceparent", NULL
};

/*
 * Header names outbox writes into a row's headers column itself, so the
 * relay sends them as they are: ce_derivedfrom, the event id a derived
 * event was derived from, and ce_causationid and ce_correlationid
 * (causation.c).  (ce_dataschema is refused from callers only for
 * registered types with a schema, where publish() sets it: publish.c.)
 */
static const char *const outbox_stored_headers[] = {
	"ce_derivedfrom", "ce_causationid", "ce_correlationid", NULL
};

/* A prefix kept for headers outbox adds itself (dead-letter forwarding) */
#define OUTBOX_RESERVED_HEADER_PREFIX "x-outbox-"

/* CloudEvents headers a message has besides the caller's */
#define OUTBOX_MAX_OWN_HEADERS 7

/* x-outbox-* headers a record on a dead-letter topic has besides those */
#define OUTBOX_DEAD_LETTER_HEADERS 5

/*
 * Call fn for every (name, value) of a headers object, in order.
 */
void
outbox_headers_walk(Jsonb *headers, OutboxHeaderFn fn, void *arg)
{
	JsonbIterator *it = JsonbIteratorInit(&headers->root);
	JsonbValue	v;
	JsonbIteratorToken tok;
	const char *name = NULL;
	int			name_len = 0;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			name = v.val.string.val;
			name_len = v.val.string.len;
		}
		else if (tok == WJB_VALUE)
			fn(name, name_len, &v, arg);
	}
}

/* True when name (len bytes) is one of names, compared without case */
static bool
message_name_in(const char *const *names, const char *name, int len)
{
	int			i;

	for (i = 0; names[i] != NULL; i++)
	{
		if (len == (int) strlen(names[i]) && pg_strncasecmp(name, names[i], len) == 0)
			return true;
	}
	return false;
}

/*
 * True for a header the relay builds from the row's columns, or one under
 * outbox's own prefix: a row's headers column may not repeat them.
 */
static bool
message_header_is_built(const char *name, int len)
{
	int			plen = strlen(OUTBOX_RESERVED_HEADER_PREFIX);

	return message_name_in(outbox_reserved_headers, name, len) ||
		(len >= plen && pg_strncasecmp(name, OUTBOX_RESERVED_HEADER_PREFIX, plen) == 0);
}

/*
 * True for a header name a caller may not set: one outbox sets itself, or
 * one under outbox's own prefix.  Case does not matter: Kafka header names
 * are bytes, but consumers and CloudEvents SDKs often fold case.
 */
bool
outbox_header_is_reserved(const char *name, int len)
{
	return message_header_is_built(name, len) ||
		message_name_in(outbox_stored_headers, name, len);
}

/* outbox_headers_walk callback of outbox_headers_has */
static void
message_find_header(const char *name, int name_len, JsonbValue *v, void *arg)
{
	const char **wanted = (const char **) arg;

	if (*wanted != NULL && (int) strlen(*wanted) == name_len &&
		pg_strncasecmp(name, *wanted, name_len) == 0)
		*wanted = NULL;
}

/* True when headers has a header of that name, compared without case */
bool
outbox_headers_has(Jsonb *headers, const char *name)
{
	const char *wanted = name;

	outbox_headers_walk(headers, message_find_header, &wanted);
	return wanted == NULL;
}

/*
 * headers (NULL for none) with one more header, name: value.  For the
 * headers outbox stores in the row itself (ce_dataschema, ce_derivedfrom).
 */
Jsonb *
outbox_headers_add(Jsonb *headers, const char *name, const char *value)
{
	JsonbParseState *state = NULL;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (headers != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(&headers->root);

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_END_OBJECT)
			(void) pushJsonbValue(&state, tok, tok == WJB_BEGIN_OBJECT ? NULL : &v);
	}
	else
		(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	v.type = jbvString;
	v.val.string.val = (char *) name;
	v.val.string.len = strlen(name);
	(void) pushJsonbValue(&state, WJB_KEY, &v);
	v.val.string.val = (char *) value;
	v.val.string.len = strlen(value);
	(void) pushJsonbValue(&state, WJB_VALUE, &v);
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/*
 * A W3C trace context traceparent (version 00 form): "vv-" 32 hex "-" 16
 * hex "-" 2 hex, lower case, where the version is not ff and neither the
 * trace id nor the parent id is all zeros.
 */
bool
outbox_traceparent_is_valid(const char *s, int len)
{
	bool		trace_zero = true;
	bool		parent_zero = true;
	int			i;

	if (len != 55)
		return false;
	for (i = 0; i < len; i++)
	{
		if (i == 2 || i == 35 || i == 52)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
		else if (s[i] != '0' && i > 2 && i < 35)
			trace_zero = false;
		else if (s[i] != '0' && i > 35 && i < 52)
			parent_zero = false;
	}
	return !(s[0] == 'f' && s[1] == 'f') && !trace_zero && !parent_zero;
}

/*
 * Database text as UTF-8 (the same bytes when the database is UTF-8 or
 * SQL_ASCII); *len is updated.
 */
static const char *
message_utf8(const char *s, size_t *len)
{
	char	   *converted = pg_server_to_any(s, (int) *len, PG_UTF8);

	if (converted != s)
		*len = strlen(converted);
	return converted;
}

/*
 * A text column as UTF-8, or NULL.
 */
static const char *
message_text(Datum d, bool isnull, size_t *len)
{
	text	   *t;

	if (isnull)
		return NULL;
	t = DatumGetTextPP(d);
	*len = VARSIZE_ANY_EXHDR(t);
	return message_utf8(pnstrdup(VARDATA_ANY(t), *len), len);
}

static void
message_add_header(OutboxMessage *msg, const char *name, const char *value,
				   size_t len)
{
	OutboxHeader *h = &msg->headers[msg->nheaders++];

	h->name = name;
	h->value = value;
	h->value_len = len;
}

/* n as exactly width decimal digits, zero-padded (0 <= n < 10^width) */
static void
message_digits(char *out, int n, int width)
{
	while (width-- > 0)
	{
		out[width] = '0' + n % 10;
		n /= 10;
	}
}

/*
 * ce_time: the event's creation time in RFC 3339, UTC, microseconds.
 */
static char *
message_rfc3339(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char	   *buf;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return pstrdup("1970-01-01T00:00:00Z");
	if (tm.tm_year < 0 || tm.tm_year > 9999)
		return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
						tm.tm_year, tm.tm_mon, tm.tm_mday,
						tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
	/* the common case without vsnprintf: it is built for every message */
	buf = palloc(sizeof("YYYY-MM-DDTHH:MM:SS.ffffffZ"));
	message_digits(buf, tm.tm_year, 4);
	buf[4] = '-';
	message_digits(buf + 5, tm.tm_mon, 2);
	buf[7] = '-';
	message_digits(buf + 8, tm.tm_mday, 2);
	buf[10] = 'T';
	message_digits(buf + 11, tm.tm_hour, 2);
	buf[13] = ':';
	message_digits(buf + 14, tm.tm_min, 2);
	buf[16] = ':';
	message_digits(buf + 17, tm.tm_sec, 2);
	buf[19] = '.';
	message_digits(buf + 20, (int) fsec, 6);
	buf[26] = 'Z';
	buf[27] = '\0';
	return buf;
}

/*
 * A time as Kafka's record timestamp, milliseconds since the Unix epoch; 0
 * (librdkafka's "when produced") for a time before it, which Kafka cannot
 * hold.
 */
static int64
message_unix_ms(TimestampTz ts)
{
	int64		ms = ts / 1000 +
		(int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	return ms > 0 ? ms : 0;
}

/* outbox_headers_walk callback: append a caller's header, as UTF-8 */
static void
message_add_caller_header(const char *name, int name_len, JsonbValue *v,
						  void *arg)
{
	OutboxMessage *msg = (OutboxMessage *) arg;
	size_t		nlen = name_len;
	size_t		vlen;
	const char *value;

	if (v->type != jbvString || message_header_is_built(name, name_len))
		return;
	vlen = v->val.string.len;
	value = message_utf8(pnstrdup(v->val.string.val, vlen), &vlen);
	message_add_header(msg, message_utf8(pnstrdup(name, nlen), &nlen), value, vlen);
}

/*
 * Fill msg from one row (values and nulls indexed by OutboxMessageColumn).
 * default_source is the ce_source of events published without one.
 */
void
outbox_message_build(OutboxMessage *msg, const Datum *values, const bool *nulls,
					 const char *default_source)
{
	Jsonb	   *headers = NULL;
	size_t		len = 0;
	const char *s;
	char	   *id;
	char	   *time;

	memset(msg, 0, sizeof(OutboxMessage));
	msg->topic = TextDatumGetCString(values[MSG_COL_TOPIC]);
	msg->key = message_text(values[MSG_COL_KEY], nulls[MSG_COL_KEY], &msg->key_len);
	if (!nulls[MSG_COL_PAYLOAD])
	{
		bytea	   *value = DatumGetByteaPP(values[MSG_COL_PAYLOAD]);

		/*
		 * A toasted payload was just detoasted into the current context: use
		 * it where it is.  An inline one points into the caller's tuple, which
		 * may go first: copy it.
		 */
		if ((Pointer) value == DatumGetPointer(values[MSG_COL_PAYLOAD]))
		{
			bytea	   *copy = palloc(VARSIZE_ANY(value));

			memcpy(copy, value, VARSIZE_ANY(value));
			value = copy;
		}
		msg->value_len = VARSIZE_ANY_EXHDR(value);
		msg->value = VARDATA_ANY(value);
	}
	if (!nulls[MSG_COL_HEADERS])
		headers = DatumGetJsonbP(values[MSG_COL_HEADERS]);

	msg->headers = palloc(sizeof(OutboxHeader) *
						  (OUTBOX_MAX_OWN_HEADERS +
						   (headers ? JsonContainerSize(&headers->root) : 0)));
	message_add_header(msg, "ce_specversion", "1.0", 3);
	id = DatumGetCString(DirectFunctionCall1(uuid_out, values[MSG_COL_EVENT_ID]));
	message_add_header(msg, "ce_id", id, strlen(id));
	s = message_text(values[MSG_COL_SOURCE], nulls[MSG_COL_SOURCE], &len);
	if (s == NULL)
	{
		len = strlen(default_source);
		s = message_utf8(default_source, &len);
	}
	message_add_header(msg, "ce_source", s, len);
	s = message_text(values[MSG_COL_EVENT_TYPE], nulls[MSG_COL_EVENT_TYPE], &len);
	if (s == NULL)
	{
		s = msg->topic;
		len = strlen(s);
	}
	message_add_header(msg, "ce_type", s, len);
	time = message_rfc3339(DatumGetTimestampTz(values[MSG_COL_CREATED_AT]));
	if (outbox_record_timestamp == OUTBOX_RECORD_TIMESTAMP_EVENT)
		msg->timestamp_ms = message_unix_ms(DatumGetTimestampTz(values[MSG_COL_CREATED_AT]));
	message_add_header(msg, "ce_time", time, strlen(time));
	s = message_text(values[MSG_COL_CONTENT_TYPE], false, &len);
	message_add_header(msg, "content-type", s, len);
	s = message_text(values[MSG_COL_TRACEPARENT], nulls[MSG_COL_TRACEPARENT], &len);
	if (s != NULL)
		message_add_header(msg, "traceparent", s, len);
	Assert(msg->nheaders <= OUTBOX_MAX_OWN_HEADERS);

	if (headers != NULL)
		outbox_headers_walk(headers, message_add_caller_header, msg);
}

/*
 * Turn a message built from a dead letter's row into its record on the
 * dead-letter topic: the same key, value and headers, plus what went wrong,
 * under outbox's own header prefix.
 */
void
outbox_message_to_dead_letter_topic(OutboxMessage *msg, const char *dlq_topic,
									const char *error_code, const char *error,
									int attempts, TimestampTz failed_at)
{
	size_t		len;
	char	   *s;

	msg->headers = repalloc(msg->headers,
							sizeof(OutboxHeader) * (msg->nheaders + OUTBOX_DEAD_LETTER_HEADERS));
	len = strlen(error_code);
	message_add_header(msg, OUTBOX_RESERVED_HEADER_PREFIX "error-code",
					   message_utf8(error_code, &len), len);
	len = strlen(error);
	message_add_header(msg, OUTBOX_RESERVED_HEADER_PREFIX "error",
					   message_utf8(error, &len), len);
	s = psprintf("%d", attempts);
	message_add_header(msg, OUTBOX_RESERVED_HEADER_PREFIX "attempts", s, strlen(s));
	s = message_rfc3339(failed_at);
	message_add_header(msg, OUTBOX_RESERVED_HEADER_PREFIX "failed-at", s, strlen(s));
	/* the topic the original record went to */
	len = strlen(msg->topic);
	message_add_header(msg, OUTBOX_RESERVED_HEADER_PREFIX "original-topic",
					   message_utf8(msg->topic, &len), len);
	msg->topic = dlq_topic;
}

/*
 * What one message weighs against outbox.batch_max_bytes.
 */
Size
outbox_message_bytes(const OutboxMessage *msg)
{
	Size		bytes = msg->value_len + msg->key_len;
	int			i;

	for (i = 0; i < msg->nheaders; i++)
		bytes += strlen(msg->headers[i].name) + msg->headers[i].value_len;
	return bytes;
}
