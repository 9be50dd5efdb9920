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
#include "utils/json.h"

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

/* The value of one of the headers outbox sets, or NULL */
static const char *
notify_header(const OutboxMessage *msg, const char *name)
{
	int			i;

	for (i = 0; i < msg->nheaders; i++)
		if (strcmp(msg->headers[i].name, name) == 0)
			return pnstrdup(msg->headers[i].value, msg->headers[i].value_len);
	return NULL;
}

/* The JSON object of one delivered event, in the database's encoding */
static char *
notify_object(const OutboxMessage *msg, int32 partition, int64 offset, bool with_key)
{
	StringInfoData obj;
	const char *id = notify_header(msg, "ce_id");
	const char *type = notify_header(msg, "ce_type");

	initStringInfo(&obj);
	appendStringInfoString(&obj, "{\"event_id\": ");
	escape_json(&obj, id ? id : "");
	appendStringInfoString(&obj, ", \"topic\": ");
	escape_json(&obj, msg->topic);
	appendStringInfoString(&obj, ", \"key\": ");
	if (msg->key != NULL && with_key)
		escape_json(&obj, pnstrdup(msg->key, msg->key_len));
	else
		appendStringInfoString(&obj, "null");
	appendStringInfo(&obj, ", \"partition\": %d, \"offset\": " INT64_FORMAT ", \"event_type\": ",
					 partition, offset);
	escape_json(&obj, type ? type : "");
	if (msg->key != NULL && !with_key)
		appendStringInfoString(&obj, ", \"key_omitted\": true");
	appendStringInfoChar(&obj, '}');
	/* the message's key and headers are UTF-8; a payload is database text */
	return pg_any_to_server(obj.data, obj.len, PG_UTF8);
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
	char	   *obj;
	int			len;

	if (notifier == NULL)
		return;
	obj = notify_object(msg, partition, offset, true);
	len = strlen(obj);

	/* "[" + obj + "]" must stay under the limit on its own */
	if (len + 2 >= NOTIFY_MAX_PAYLOAD)
	{
		obj = notify_object(msg, partition, offset, false);
		len = strlen(obj);
	}
	if (notifier->payload.len + 1 + len + 1 >= NOTIFY_MAX_PAYLOAD)
		notify_flush(notifier);
	if (notifier->count > 0)
		appendStringInfoString(&notifier->payload, ", ");
	appendStringInfoString(&notifier->payload, obj);
	notifier->count++;
}

void
outbox_notify_end(OutboxNotifier *notifier)
{
	if (notifier != NULL)
		notify_flush(notifier);
}
