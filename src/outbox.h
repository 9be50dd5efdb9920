/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  Settings and entry points shared by the parts of the outbox extension.
 *
 * Each part of the extension lives in its own file under src/ and exports
 * only what the others need; this header gathers the settings (defined in
 * outbox.c) and the background worker entry points.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_H
#define OUTBOX_H

#include "postgres.h"

/*
 * Built and tested on PostgreSQL 15, 16 and 17 (test/compat.sh);
 * InitMaterializedSRF() and the shmem_request_hook need 15.1 or later.
 */
#if PG_VERSION_NUM < 150001
#error "outbox needs PostgreSQL 15.1 or later"
#endif

/* EXECUTE right on a function; PostgreSQL 16 folded the per-object checks */
#if PG_VERSION_NUM >= 160000
#define outbox_proc_aclcheck(fn, role, mode) \
	object_aclcheck(ProcedureRelationId, (fn), (role), (mode))
#else
#define outbox_proc_aclcheck(fn, role, mode) pg_proc_aclcheck((fn), (role), (mode))
#endif

/* Settings (outbox.c) */
extern char *outbox_kafka_brokers;
extern char *outbox_kafka_properties;
extern char *outbox_kafka_properties_file;
extern char *outbox_consumer_properties;
extern int	outbox_batch_size;
extern int	outbox_batch_max_bytes;
extern int	outbox_poll_interval;
extern int	outbox_full_scan_interval;
extern int	outbox_truncate_threshold;
extern int	outbox_max_databases;
extern int	outbox_max_message_size;
extern int	outbox_max_attempts;
extern int	outbox_retry_backoff_min;
extern int	outbox_retry_backoff_max;
extern int	outbox_inbox_ttl;
extern int	outbox_purge_interval;
extern int	outbox_purge_batch_size;
extern bool outbox_commit_order;
extern bool outbox_require_registered_types;
extern int	outbox_deprecated_types;
extern char *outbox_schema_uri_prefix;
extern int	outbox_record_timestamp;
extern char *outbox_notify_channel;
extern char *outbox_dead_letter_topic_suffix;
extern int	outbox_dead_letter_policy;

/* Values of outbox.dead_letter_policy */
typedef enum OutboxDeadLetterPolicy
{
	OUTBOX_DEAD_LETTER_CONTINUE,
	OUTBOX_DEAD_LETTER_HOLD_KEY
} OutboxDeadLetterPolicy;

/* Longest consumer name (receive(), subscribe()) */
#define OUTBOX_MAX_CONSUMER_LEN 200

/* Longest outbox.dead_letter_topic_suffix: a topic of a name or two more */
#define OUTBOX_MAX_DLQ_SUFFIX_LEN 64

/* Values of outbox.record_timestamp */
typedef enum OutboxRecordTimestamp
{
	OUTBOX_RECORD_TIMESTAMP_PRODUCE,
	OUTBOX_RECORD_TIMESTAMP_EVENT
}			OutboxRecordTimestamp;

/* Values of outbox.deprecated_types */
typedef enum OutboxDeprecatedTypes
{
	OUTBOX_DEPRECATED_WARN,
	OUTBOX_DEPRECATED_ERROR,
	OUTBOX_DEPRECATED_ALLOW
}			OutboxDeprecatedTypes;

/* Background worker entry points, named in bgw_function_name */
extern PGDLLEXPORT void outbox_launcher_main(Datum main_arg);
extern PGDLLEXPORT void outbox_relay_main(Datum main_arg);
extern PGDLLEXPORT void outbox_consumer_main(Datum main_arg);

/* relay.c */
extern void outbox_relay_exit_without_extension(void) pg_attribute_noreturn();

/* subscriptions.c */
extern bool outbox_has_subscriptions(void);

/* launcher.c */
extern void outbox_register_launcher(void);

/* ddl.c */
extern void outbox_ddl_init(void);

/* publish.c */
extern void outbox_wake_relay_at_commit(void);
extern void outbox_wake_launcher_at_commit(void);
extern void outbox_wake_consumer_at_commit(void);
extern void outbox_check_topic(text *topic);

/* Raise a clear error when a SQL function runs without the preloaded library */
extern void outbox_require_preload(void);

#endif							/* OUTBOX_H */
