/*-------------------------------------------------------------------------
 *
 * jsonschema.h
 *	  JSON Schema draft-07: a schema (jsonb) compiled once into a tree that
 *	  validates payloads (jsonb) without parsing the schema again.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_JSONSCHEMA_H
#define OUTBOX_JSONSCHEMA_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

/* A compiled schema; everything it holds lives in the context given */
typedef struct JsonSchema JsonSchema;

/* At most this many violations are listed in an error's DETAIL */
#define OUTBOX_SCHEMA_MAX_VIOLATIONS 10

/*
 * Compile schema into cxt.  A schema that is not valid draft-07, or uses a
 * keyword outbox does not implement, is an ERROR (22023) naming the JSON
 * pointer of what is wrong; nothing is left in cxt then but garbage the
 * caller frees with the context.
 */
extern JsonSchema *outbox_schema_compile(Jsonb *schema, MemoryContext cxt);

/*
 * Validate doc.  Returns the number of violations found (0 when doc is
 * valid); when violations is not NULL, appends up to max of them to it,
 * "; "-separated, each as "at <pointer>: <what>".
 */
extern int	outbox_schema_validate(JsonSchema *schema, Jsonb *doc,
								   StringInfo violations, int max);

/*
 * True when a keyword is an annotation draft-07 defines and validation
 * ignores (title, description, default, examples, $comment, $schema, $id,
 * readOnly, writeOnly, contentMediaType, contentEncoding).
 */
extern bool outbox_schema_is_annotation(const char *keyword, int len);

/*
 * What validating and comparing schemas (evolution.c) share: JSON values
 * and numbers as draft-07 compares them, and "pattern" as it matches.
 */
extern bool outbox_json_equal(JsonbValue *a, JsonbValue *b);
extern int	outbox_numeric_cmp(Numeric a, Numeric b);
extern bool outbox_numeric_is_integer(Numeric n);
extern bool outbox_numeric_is_multiple(Numeric n, Numeric m);
extern char *outbox_numeric_text(Numeric n);
extern bool outbox_schema_regex_search(text *re, const char *s, int len);

#endif							/* OUTBOX_JSONSCHEMA_H */
