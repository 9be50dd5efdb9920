/*-------------------------------------------------------------------------
 *
 * metaschema.h
 *	  The JSON Schema draft-07 meta-schema, built in.
 *
 *-------------------------------------------------------------------------
 */
#ifndef OUTBOX_METASCHEMA_H
#define OUTBOX_METASCHEMA_H

#include "postgres.h"

#include "utils/jsonb.h"

/* Its URI, without the empty fragment */
#define OUTBOX_DRAFT07_URI "http://json-schema.org/draft-07/schema"

/* The meta-schema, parsed in the current memory context */
extern Jsonb *outbox_draft07_metaschema(void);

#endif							/* OUTBOX_METASCHEMA_H */
