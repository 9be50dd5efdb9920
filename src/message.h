/*-------------------------------------------------------------------------
 *
 * message.h
 *	  A row of outbox.events becomes a Kafka message: value, key and
 *	  CloudEvents binary-mode headers.  Also the caller-header rules that
 *	  publish() checks, so that what publish() accepts and what the relay
 *	  sends are decided in one place.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_MESSAGE_H
#define OUTBOX_MESSAGE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "kafka.h"

/*
 * The columns of outbox.events a message is built from, in the order the
 * relay's read query selects them (OUTBOX_MESSAGE_COLUMNS).
 */
typedef enum OutboxMessageColumn
{
	MSG_COL_ID = 0,
	MSG_COL_EVENT_ID,
	MSG_COL_TOPIC,
	MSG_COL_KEY,
	MSG_COL_PAYLOAD,
	MSG_COL_HEADERS,
	MSG_COL_EVENT_TYPE,
	MSG_COL_SOURCE,
	MSG_COL_TRACEPARENT,
	MSG_COL_CONTENT_TYPE,
	MSG_COL_CREATED_AT,
	MSG_NCOLUMNS
} OutboxMessageColumn;

#define OUTBOX_MESSAGE_COLUMNS \
	"e.id, e.event_id, e.topic, e.key, e.payload, e.headers," \
	" e.event_type, e.source, e.traceparent, e.content_type, e.created_at"

/* Called for each caller header of a headers object, in order */
typedef void (*OutboxHeaderFn) (const char *name, int name_len,
								JsonbValue *value, void *arg);

extern void outbox_headers_walk(Jsonb *headers, OutboxHeaderFn fn, void *arg);
extern bool outbox_header_is_reserved(const char *name, int len);
extern bool outbox_headers_has(Jsonb *headers, const char *name);
extern Jsonb *outbox_headers_add(Jsonb *headers, const char *name, const char *value);
extern bool outbox_traceparent_is_valid(const char *s, int len);
extern void outbox_message_build(OutboxMessage *msg, const Datum *values,
								 const bool *nulls, const char *default_source);
extern void outbox_message_to_dead_letter_topic(OutboxMessage *msg,
												const char *dlq_topic,
												const char *error_code,
												const char *error,
												int attempts,
												TimestampTz failed_at);
extern Size outbox_message_bytes(const OutboxMessage *msg);

#endif							/* OUTBOX_MESSAGE_H */
