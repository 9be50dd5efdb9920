/*-------------------------------------------------------------------------
 *
 * jsonformat.h
 *	  The string formats of JSON Schema draft-07 that outbox checks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_JSONFORMAT_H
#define OUTBOX_JSONFORMAT_H

#include "postgres.h"

typedef enum JsonStringFormat
{
	JSON_FORMAT_NONE = 0,
	JSON_FORMAT_DATE_TIME,
	JSON_FORMAT_DATE,
	JSON_FORMAT_TIME,
	JSON_FORMAT_EMAIL,
	JSON_FORMAT_UUID,
	JSON_FORMAT_IPV4,
	JSON_FORMAT_IPV6,
	JSON_FORMAT_URI,
	JSON_FORMAT_URI_REFERENCE,
	JSON_FORMAT_REGEX
} JsonStringFormat;

/* The format of that name, or JSON_FORMAT_NONE when outbox has none */
extern JsonStringFormat outbox_json_format_lookup(const char *name, int len);

/* The name of a format, for messages */
extern const char *outbox_json_format_name(JsonStringFormat format);

/* True when the string s (len bytes, not terminated) has the format */
extern bool outbox_json_format_check(JsonStringFormat format, const char *s, int len);

#endif							/* OUTBOX_JSONFORMAT_H */
