/*-------------------------------------------------------------------------
 *
 * notify.c
 *	  Delivery notifications.  With outbox.notify_channel set, the relay's
 *	  transaction that records a batch as delivered also queues NOTIFY on
 *	  that channel, so listeners (a websocket gateway, say) learn of each
 *	  event once Kafka has it, without polling.  NOTIFY is transactional:
 *	  it is sent when that transaction commits, never for a delivery whose
 *	  recording rolled back, and not at all for dead letters.
 *
 * Payload: a JSON array of one object per delivered event, in the batch's
 * order (the order the events were produced in):
 *
 *	 {"event_id": ce_id, "topic": ..., "key": ... or null, "partition": N,
 *	  "offset": N, "event_type": ce_type}
 *
 * packed into as few notifications as PostgreSQL's payload limit (8000
 * bytes) allows.  An object too large for one notification (a key of
 * kilobytes) goes with "key": null and "key_omitted": true.  The text is
 * in the database's encoding, as every NOTIFY payload is.
 *
 * Notifications are best effort, deliveries are not: a listener anywhere
 * in the cluster that stops reading holds back the shared NOTIFY queue,
 * and a full queue would make the commit that records deliveries fail,
 * again and again.  So while the queue is more than half full the relay
 * sends none (and logs it once), and records its deliveries all the same.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/async.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/fmgrprotos.h"
#include "utils/builtins.h"

#include "notify.h"

/* NOTIFY refuses a payload of this many bytes or more (async.c) */
#define NOTIFY_MAX_PAYLOAD (BLCKSZ - NAMEDATALEN - 128)

/* Above this share of the NOTIFY queue in use, send no notifications */
#define NOTIFY_MAX_QUEUE_USAGE 0.5

struct OutboxNotifier
{
	const char *channel;
	StringInfoData payload;		/* "[" then objects, "," between */
	int			count;			/* objects in payload */
};

/* pg_notification_queue_usage(): the share of the NOTIFY queue in use */
static double
notify_queue_usage(void)
{
	LOCAL_FCINFO(fcinfo, 0);

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	return DatumGetFloat8(pg_notification_queue_usage(fcinfo));
}

OutboxNotifier *
outbox_notify_begin(const char *channel)
{
	static bool skipping = false;	/* logged once until there is room */
	OutboxNotifier *notifier;
	double		usage = notify_queue_usage();

	if (usage > NOTIFY_MAX_QUEUE_USAGE)
	{
		if (skipping)
			return NULL;
		skipping = true;
		ereport(LOG,
				(errmsg("outbox relay: no delivery notifications on \"%s\": the NOTIFY queue is %.0f%% full",
						channel, usage * 100),
				 errhint("A session that listens and does not read holds the queue back; pg_notification_queue_usage() shows it.")));
		return NULL;
	}
	skipping = false;
	notifier = palloc0(sizeof(OutboxNotifier));

	notifier->channel = channel;
	initStringInfo(&notifier->payload);
	appendStringInfoChar(&notifier->payload, '[');
	return notifier;
}

/* One of the headers outbox sets, or NULL */
static const OutboxHeader *
notify_header(const OutboxMessage *msg, const char *name)
{
	int			i;

	for (i = 0; i < msg->nheaders; i++)
		if (strcmp(msg->headers[i].name, name) == 0)
			return &msg->headers[i];
	return NULL;
}

/* s (len bytes) as a JSON string: quoted, with \", \\ and \u00XX escapes */
static void
notify_string(StringInfo buf, const char *s, size_t len)
{
	size_t		run = 0;
	size_t		i;

	appendStringInfoChar(buf, '"');
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(buf, s + run, i - run);
		if (c == '"' || c == '\\')
		{
			appendStringInfoChar(buf, '\\');
			appendStringInfoChar(buf, (char) c);
		}
		else
			appendStringInfo(buf, "\\u%04x", c);
		run = i + 1;
	}
	appendBinaryStringInfo(buf, s + run, len - run);
	appendStringInfoChar(buf, '"');
}

/* A number, without a format string: this runs for every event */
static void
notify_int(StringInfo buf, int64 n)
{
	char		digits[MAXINT8LEN + 1];

	appendBinaryStringInfo(buf, digits, pg_lltoa(n, digits));
}

/*
 * The JSON object of one delivered event, appended to buf.  The message's
 * key and headers are UTF-8; a NOTIFY payload is database text, so in a
 * database of another encoding the object is converted.
 */
static void
notify_object(StringInfo buf, const OutboxMessage *msg, int32 partition,
			  int64 offset, bool with_key)
{
	const OutboxHeader *id = notify_header(msg, "ce_id");
	const OutboxHeader *type = notify_header(msg, "ce_type");
	int			encoding = GetDatabaseEncoding();
	StringInfoData converted;
	StringInfo	obj = buf;

	if (encoding != PG_UTF8 && encoding != PG_SQL_ASCII)
	{
		initStringInfo(&converted);
		obj = &converted;
	}
	appendStringInfoString(obj, "{\"event_id\": ");
	notify_string(obj, id ? id->value : "", id ? id->value_len : 0);
	appendStringInfoString(obj, ", \"topic\": ");
	notify_string(obj, msg->topic, strlen(msg->topic));
	appendStringInfoString(obj, ", \"key\": ");
	if (msg->key != NULL && with_key)
		notify_string(obj, msg->key, msg->key_len);
	else
		appendStringInfoString(obj, "null");
	appendStringInfoString(obj, ", \"partition\": ");
	notify_int(obj, partition);
	appendStringInfoString(obj, ", \"offset\": ");
	notify_int(obj, offset);
	appendStringInfoString(obj, ", \"event_type\": ");
	notify_string(obj, type ? type->value : "", type ? type->value_len : 0);
	if (msg->key != NULL && !with_key)
		appendStringInfoString(obj, ", \"key_omitted\": true");
	appendStringInfoChar(obj, '}');
	if (obj != buf)
		appendStringInfoString(buf, pg_any_to_server(obj->data, obj->len, PG_UTF8));
}

/* Send what has been packed, if anything, and start again */
static void
notify_flush(OutboxNotifier *notifier)
{
	if (notifier->count == 0)
		return;
	appendStringInfoChar(&notifier->payload, ']');
	Async_Notify(notifier->channel, notifier->payload.data);
	resetStringInfo(&notifier->payload);
	appendStringInfoChar(&notifier->payload, '[');
	notifier->count = 0;
}

void
outbox_notify_add(OutboxNotifier *notifier, const OutboxMessage *msg,
				  int32 partition, int64 offset)
{
	StringInfo	payload;
	int			start;

	if (notifier == NULL)
		return;
	payload = &notifier->payload;
	start = payload->len;
	if (notifier->count > 0)
		appendStringInfoString(payload, ", ");
	notify_object(payload, msg, partition, offset, true);
	/* with its "]", the payload must stay under the limit */
	if (payload->len + 1 < NOTIFY_MAX_PAYLOAD)
	{
		notifier->count++;
		return;
	}
	/* too much: send what was there before it, then try it alone */
	payload->len = start;
	payload->data[start] = '\0';
	notify_flush(notifier);
	notify_object(payload, msg, partition, offset, true);
	if (payload->len + 1 >= NOTIFY_MAX_PAYLOAD)
	{
		/* too large on its own (a key of kilobytes): without its key */
		payload->len = 1;
		payload->data[1] = '\0';
		notify_object(payload, msg, partition, offset, false);
	}
	notifier->count++;
}

void
outbox_notify_end(OutboxNotifier *notifier)
{
	if (notifier != NULL)
		notify_flush(notifier);
}
