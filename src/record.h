/*-------------------------------------------------------------------------
 *
 * record.h
 *	  A Kafka record as a handler gets it (outbox.message), from a message
 *	  just consumed or from a consumer dead letter being replayed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_RECORD_H
#define OUTBOX_RECORD_H

#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "access/tupdesc.h"
#include "datatype/timestamp.h"

/*
 * A record's parts.  The raw ones point into the message (or the dead
 * letter's row); the text ones are NULL where absent or not valid text of
 * the database's encoding.
 */
typedef struct OutboxRecord
{
	const char *topic;
	int32		partition;
	int64		offset;
	const char *key_bytes;		/* NULL: no key */
	size_t		key_len;
	const char *value;			/* NULL: no value */
	size_t		value_len;
	Datum		headers;		/* jsonb object of strings */
	bool		headers_null;
	char	   *event_id;		/* ce_id */
	char	   *event_type;		/* ce_type */
	TimestampTz time;			/* ce_time, else the record's timestamp */
	bool		has_time;
	/* the value as jsonb, parsed once by outbox_record_payload() */
	bool		payload_known;
	bool		has_payload;
	Datum		payload;
} OutboxRecord;

extern void outbox_record_from_kafka(OutboxRecord *rec, const rd_kafka_message_t *msg);
extern Datum outbox_record_message(TupleDesc desc, OutboxRecord *rec);
extern Datum outbox_record_inbox_id(const OutboxRecord *rec);
extern bool outbox_record_payload(OutboxRecord *rec, Datum *payload);
extern char *outbox_record_violations(OutboxRecord *rec);
extern Datum outbox_record_bytea(const char *bytes, size_t len);
extern Oid	outbox_message_type(void);
extern TupleDesc outbox_message_desc(void);

#endif							/* OUTBOX_RECORD_H */
