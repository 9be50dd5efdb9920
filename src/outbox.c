/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  Module load: refuses to run unless preloaded, defines every outbox.*
 *	  setting, reserves the prefix, sets up shared memory and registers the
 *	  launcher.
 *
 * Settings that size shared memory are PGC_POSTMASTER; everything else is
 * PGC_SIGHUP so that an operator changes it in postgresql.conf and reloads.
 * Settings that may carry secrets (librdkafka properties) are
 * GUC_SUPERUSER_ONLY, and their check hooks never echo a value back.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "kafka.h"
#include "notify.h"
#include "outbox.h"
#include "shmem.h"

PG_MODULE_MAGIC;

char	   *outbox_kafka_brokers = NULL;
char	   *outbox_kafka_properties = NULL;
char	   *outbox_kafka_properties_file = NULL;
char	   *outbox_consumer_properties = NULL;
int			outbox_batch_size = 1000;
int			outbox_batch_max_bytes = 16 * 1024 * 1024;
int			outbox_full_scan_interval = 300000;
int			outbox_truncate_threshold = 1024;
int			outbox_poll_interval = 10000;
int			outbox_max_databases = 16;
int			outbox_max_message_size = 983040;
int			outbox_max_attempts = 10;
int			outbox_retry_backoff_min = 1000;
int			outbox_retry_backoff_max = 300000;
int			outbox_inbox_ttl = 7 * 24 * 3600;
int			outbox_purge_interval = 60000;
int			outbox_purge_batch_size = 10000;
bool		outbox_commit_order = false;
bool		outbox_require_registered_types = false;
int			outbox_deprecated_types = OUTBOX_DEPRECATED_WARN;
char	   *outbox_schema_uri_prefix = NULL;
int			outbox_record_timestamp = OUTBOX_RECORD_TIMESTAMP_PRODUCE;
char	   *outbox_notify_channel = NULL;
char	   *outbox_dead_letter_topic_suffix = NULL;
int			outbox_dead_letter_policy = OUTBOX_DEAD_LETTER_CONTINUE;

static const struct config_enum_entry outbox_dead_letter_policy_options[] = {
	{"continue", OUTBOX_DEAD_LETTER_CONTINUE, false},
	{"hold_key", OUTBOX_DEAD_LETTER_HOLD_KEY, false},
	{NULL, 0, false}
};

static const struct config_enum_entry outbox_record_timestamp_options[] = {
	{"produce", OUTBOX_RECORD_TIMESTAMP_PRODUCE, false},
	{"event", OUTBOX_RECORD_TIMESTAMP_EVENT, false},
	{NULL, 0, false}
};

static const struct config_enum_entry outbox_deprecated_types_options[] = {
	{"warn", OUTBOX_DEPRECATED_WARN, false},
	{"error", OUTBOX_DEPRECATED_ERROR, false},
	{"allow", OUTBOX_DEPRECATED_ALLOW, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * Check hook for outbox.kafka_properties: every name=value pair must be a
 * property librdkafka accepts, and none may override what outbox sets itself.
 */
static bool
check_kafka_properties(char **newval, void **extra, GucSource source)
{
	char	   *detail = NULL;

	if (!outbox_kafka_check_properties(*newval, NULL, &detail))
	{
		/* our own message: the default one would print the value, secrets and all */
		GUC_check_errmsg("invalid value for parameter \"%s\"", "outbox.kafka_properties");
		GUC_check_errdetail("%s", detail);
		return false;
	}
	return true;
}

/*
 * Check hook for outbox.kafka_properties_file: the file must be readable and
 * hold only valid librdkafka properties.
 */
static bool
check_kafka_properties_file(char **newval, void **extra, GucSource source)
{
	char	   *detail = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (!outbox_kafka_check_properties(NULL, *newval, &detail))
	{
		GUC_check_errmsg("invalid value for parameter \"%s\"", "outbox.kafka_properties_file");
		GUC_check_errdetail("%s", detail);
		return false;
	}
	return true;
}

/*
 * Check hook for outbox.consumer_properties: consumer-only name=value pairs,
 * none of those outbox sets itself, no secrets.
 */
static bool
check_consumer_properties(char **newval, void **extra, GucSource source)
{
	char	   *detail = NULL;

	if (!outbox_kafka_check_consumer_properties(*newval, &detail))
	{
		GUC_check_errmsg("invalid value for parameter \"%s\"", "outbox.consumer_properties");
		GUC_check_errdetail("%s", detail);
		return false;
	}
	return true;
}

/*
 * Check hook for outbox.kafka_brokers: a non-empty list without spaces.
 */
static bool
check_kafka_brokers(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The broker list must name at least one host:port.");
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == ';')
		{
			GUC_check_errdetail("Separate brokers with commas and no spaces, as in \"kafka1:9092,kafka2:9092\".");
			return false;
		}
	}
	return true;
}

/*
 * Check hook for the retry backoff bounds: the minimum may not exceed the
 * maximum.  Each hook sees only its own new value, so compare against the
 * other setting's current value.
 */
static bool
check_backoff_min(int *newval, void **extra, GucSource source)
{
	if (*newval > outbox_retry_backoff_max)
	{
		GUC_check_errdetail("outbox.retry_backoff_min may not exceed outbox.retry_backoff_max (%d ms).",
							outbox_retry_backoff_max);
		return false;
	}
	return true;
}

static bool
check_backoff_max(int *newval, void **extra, GucSource source)
{
	if (*newval < outbox_retry_backoff_min)
	{
		GUC_check_errdetail("outbox.retry_backoff_max may not be below outbox.retry_backoff_min (%d ms).",
							outbox_retry_backoff_min);
		return false;
	}
	return true;
}

/*
 * Define every outbox.* setting.
 */
/*
 * outbox.dead_letter_topic_suffix: what makes <topic><suffix> a legal Kafka
 * topic name whatever the topic (Kafka allows ASCII letters, digits, '.',
 * '_' and '-', 249 characters in all); empty turns forwarding off.
 */
static bool
outbox_check_dead_letter_topic_suffix(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (strlen(*newval) > OUTBOX_MAX_DLQ_SUFFIX_LEN)
	{
		GUC_check_errdetail("A dead-letter topic suffix has at most %d characters.",
							OUTBOX_MAX_DLQ_SUFFIX_LEN);
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
		{
			GUC_check_errdetail("Kafka topic names hold only ASCII letters, digits, \".\", \"_\" and \"-\".");
			return false;
		}
	}
	return true;
}

/*
 * outbox.notify_channel: a channel name NOTIFY takes (shorter than
 * NAMEDATALEN), without control characters; empty turns notifications off.
 */
static bool
outbox_check_notify_channel(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (strlen(*newval) > OUTBOX_MAX_CHANNEL_LEN)
	{
		GUC_check_errdetail("A channel name has at most %d bytes.", OUTBOX_MAX_CHANNEL_LEN);
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if ((unsigned char) *p < ' ' || *p == 0x7f)
		{
			GUC_check_errdetail("A channel name may not hold control characters.");
			return false;
		}
	}
	return true;
}

/*
 * outbox.schema_uri_prefix: printable ASCII without spaces, so that prefix
 * plus event type can be a URI (RFC 3986 allows no space or control byte).
 */
static bool
outbox_check_schema_uri_prefix(char **newval, void **extra, GucSource source)
{
	const char *p;

	for (p = *newval; *p; p++)
	{
		if (*p <= ' ' || *p >= 0x7f)
		{
			GUC_check_errdetail("The prefix may hold only printable ASCII characters other than space.");
			return false;
		}
	}
	if (strlen(*newval) > 512)
	{
		GUC_check_errdetail("The prefix may have at most 512 bytes.");
		return false;
	}
	return true;
}

static void
outbox_define_settings(void)
{
	DefineCustomStringVariable("outbox.kafka_brokers",
							   gettext_noop("Kafka bootstrap servers the relays produce to."),
							   gettext_noop("A comma-separated list of host:port."),
							   &outbox_kafka_brokers,
							   "localhost:9092",
							   PGC_SIGHUP, 0,
							   check_kafka_brokers, NULL, NULL);

	DefineCustomStringVariable("outbox.kafka_properties",
							   gettext_noop("librdkafka producer properties, as name=value pairs separated by semicolons."),
							   gettext_noop("Applied after outbox.kafka_properties_file; may hold secrets, so only superusers can read it."),
							   &outbox_kafka_properties,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_kafka_properties, NULL, NULL);

	DefineCustomStringVariable("outbox.consumer_properties",
							   gettext_noop("librdkafka consumer properties for the consumers only, as name=value pairs separated by semicolons."),
							   gettext_noop("Applied after outbox.kafka_properties_file and outbox.kafka_properties; no secrets here."),
							   &outbox_consumer_properties,
							   "",
							   PGC_SIGHUP, 0,
							   check_consumer_properties, NULL, NULL);

	DefineCustomStringVariable("outbox.kafka_properties_file",
							   gettext_noop("Path of a Kafka-style properties file with librdkafka producer properties."),
							   NULL,
							   &outbox_kafka_properties_file,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_kafka_properties_file, NULL, NULL);

	DefineCustomIntVariable("outbox.batch_size",
							gettext_noop("Maximum number of events a relay reads and produces in one batch."),
							NULL,
							&outbox_batch_size,
							1000, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.batch_max_bytes",
							gettext_noop("Payload, key and header bytes at which a relay stops adding events to a batch."),
							gettext_noop("Bounds the relay's memory whatever the payload sizes; a batch always holds at least one event."),
							&outbox_batch_max_bytes,
							16 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.poll_interval",
							gettext_noop("Longest time a relay sleeps before looking for events it was not woken for."),
							gettext_noop("Relays are woken at commit; this is only a safety net."),
							&outbox_poll_interval,
							10000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.max_databases",
							gettext_noop("Maximum number of databases served by a relay."),
							gettext_noop("Sizes shared memory; each served database also needs a slot in max_worker_processes."),
							&outbox_max_databases,
							16, 1, 1024,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.full_scan_interval",
							gettext_noop("How often a relay reads from the lowest event id instead of from past the ids it delivered."),
							gettext_noop("Only rows added to outbox.events some other way than publish() need it."),
							&outbox_full_scan_interval,
							300000, 1000, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.truncate_threshold",
							gettext_noop("Size of outbox.events from which its relay, having caught up, truncates it, carrying over the events in it."),
							gettext_noop("Gives back the space of delivered events when vacuum cannot (an old snapshot holds it); 0 never truncates."),
							&outbox_truncate_threshold,
							1024, 0, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_BLOCKS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.max_message_size",
							gettext_noop("Largest payload plus key plus headers publish() accepts."),
							gettext_noop("Keep it below the brokers' message.max.bytes."),
							&outbox_max_message_size,
							983040, 1024, 100 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.max_attempts",
							gettext_noop("Delivery attempts before an event moves to outbox.dead_letters."),
							NULL,
							&outbox_max_attempts,
							10, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.retry_backoff_min",
							gettext_noop("Delay before the first retry of a failed delivery."),
							gettext_noop("Doubles with each attempt, with jitter, up to outbox.retry_backoff_max."),
							&outbox_retry_backoff_min,
							1000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							check_backoff_min, NULL, NULL);

	DefineCustomIntVariable("outbox.retry_backoff_max",
							gettext_noop("Longest delay between two delivery attempts of an event."),
							NULL,
							&outbox_retry_backoff_max,
							300000, 1, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							check_backoff_max, NULL, NULL);

	DefineCustomIntVariable("outbox.inbox_ttl",
							gettext_noop("How long outbox.receive() remembers an event id: the de-duplication window."),
							gettext_noop("A per-call ttl overrides it."),
							&outbox_inbox_ttl,
							7 * 24 * 3600, 1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.purge_interval",
							gettext_noop("How often each relay deletes expired inbox rows."),
							NULL,
							&outbox_purge_interval,
							60000, 100, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("outbox.purge_batch_size",
							gettext_noop("Expired inbox rows deleted per purge transaction."),
							NULL,
							&outbox_purge_batch_size,
							10000, 1, 1000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("outbox.commit_order",
							 gettext_noop("Makes events of one topic and key reach Kafka in the order their transactions commit."),
							 gettext_noop("publish() then holds a lock on the topic and key until the transaction ends, so concurrent publishers of one key wait for each other."),
							 &outbox_commit_order,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("outbox.notify_channel",
							   gettext_noop("Channel on which each relay sends NOTIFY for the events it recorded as delivered."),
							   gettext_noop("Empty: no notifications. The payload is a JSON array of {event_id, topic, key, partition, offset, event_type}."),
							   &outbox_notify_channel,
							   "",
							   PGC_SIGHUP, 0,
							   outbox_check_notify_channel, NULL, NULL);

	DefineCustomStringVariable("outbox.dead_letter_topic_suffix",
							   gettext_noop("Also produces every new dead letter to its topic's name followed by this suffix."),
							   gettext_noop("Empty: dead letters stay in outbox.dead_letters only. \".dlq\" sends those of topic t to t.dlq."),
							   &outbox_dead_letter_topic_suffix,
							   "",
							   PGC_SIGHUP, 0,
							   outbox_check_dead_letter_topic_suffix, NULL, NULL);

	DefineCustomEnumVariable("outbox.dead_letter_policy",
							 gettext_noop("What later events of a key do while an event of the key is a dead letter."),
							 gettext_noop("continue: they go on; hold_key: they wait in outbox.events until it is replayed (first) or discarded."),
							 &outbox_dead_letter_policy,
							 OUTBOX_DEAD_LETTER_CONTINUE,
							 outbox_dead_letter_policy_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("outbox.record_timestamp",
							 gettext_noop("The Kafka record timestamp of an event: when the relay produces it, or when publish() ran."),
							 gettext_noop("produce: the relay's time of sending; event: ce_time. Topic retention counts from it."),
							 &outbox_record_timestamp,
							 OUTBOX_RECORD_TIMESTAMP_PRODUCE,
							 outbox_record_timestamp_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("outbox.require_registered_types",
							 gettext_noop("Refuses to publish an event type that is not in outbox.event_types."),
							 gettext_noop("Off: the registry is opt-in, and unregistered types publish unchecked."),
							 &outbox_require_registered_types,
							 false,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("outbox.deprecated_types",
							 gettext_noop("What publishing an event type after its deprecation date does: warn, error or allow."),
							 NULL,
							 &outbox_deprecated_types,
							 OUTBOX_DEPRECATED_WARN,
							 outbox_deprecated_types_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("outbox.schema_uri_prefix",
							   gettext_noop("Prefix of the ce_dataschema header of a registered event type; the event type follows it."),
							   gettext_noop("Empty: no ce_dataschema header."),
							   &outbox_schema_uri_prefix,
							   "urn:outbox:schema:",
							   PGC_SUSET, 0,
							   outbox_check_schema_uri_prefix, NULL, NULL);

	MarkGUCPrefixReserved("outbox");
}

/*
 * Module load.  Outside shared_preload_libraries there is no shared memory
 * and no launcher, so refuse to load rather than half-work.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox must be loaded via shared_preload_libraries"),
				 errhint("Add outbox to shared_preload_libraries in postgresql.conf and restart the server.")));

	outbox_define_settings();
	outbox_shmem_init();
	outbox_ddl_init();
	outbox_register_launcher();
}

/*
 * SQL functions call this first: when the library was loaded by the function
 * call itself (not preloaded), _PG_init already refused, but a server that
 * dropped outbox from shared_preload_libraries and kept the extension gets
 * the same clear message here.
 */
void
outbox_require_preload(void)
{
	if (!outbox_shmem_ready())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("outbox must be loaded via shared_preload_libraries"),
				 errhint("Add outbox to shared_preload_libraries in postgresql.conf and restart the server.")));
}
