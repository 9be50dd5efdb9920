/*-------------------------------------------------------------------------
 *
 * registry.h
 *	  The registry of event types (outbox.event_types), as publish() sees
 *	  it: each type's topic, compiled schema, deprecation date and
 *	  derivation, cached per session and checked against the row the
 *	  current snapshot sees.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_REGISTRY_H
#define OUTBOX_REGISTRY_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "jsonschema.h"

typedef struct OutboxEventType
{
	char	   *name;
	char	   *topic;			/* NULL: none */
	JsonSchema *schema;			/* NULL: none */
	bool		has_deprecation;
	TimestampTz deprecated_after;
	Oid			derive_with;	/* a derived type's function, else InvalidOid */
	List	   *derived;		/* a source: names of the types derived from it */
	/* {"ce_dataschema": ...} for dataschema_prefix, built on first use */
	char	   *dataschema_prefix;
	Jsonb	   *dataschema;
} OutboxEventType;

/* The registered type of that name the current snapshot sees, or NULL */
extern OutboxEventType *outbox_registry_lookup(const char *name);

/* The headers {"ce_dataschema": prefix + name} of t, kept with t */
extern Jsonb *outbox_registry_dataschema(OutboxEventType *t, const char *prefix);

/* The types derived from source, a List of OutboxEventType * */
extern List *outbox_registry_derived(OutboxEventType *source);

/* The highest version ({name}.v{N}) of the same name registered, or NULL */
extern char *outbox_registry_successor(const char *name);

#endif							/* OUTBOX_REGISTRY_H */
